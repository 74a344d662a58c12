"""main.py: parsing, one-line errors with exit status 2, and nothing written on bad input."""
import subprocess
import sys

import pytest
import torch

from tests.conftest import TOY

import main


def _bad(run_main, tmp_path, *argv):
    rc, err = run_main(*argv)
    assert rc == 2
    lines = [l for l in err.strip().splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("main.py: error: "), err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
    return lines[0]


def test_unknown_config_key(run_main, tmp_path):
    line = _bad(run_main, tmp_path, "--model", TOY, "--steps", "2", "--no_such_key", "3")
    assert "--no_such_key" in line and "--lr" in line


def test_wrong_type_and_out_of_range(run_main, tmp_path):
    assert "--lr: expected float >= 0.0, got 'fast'" in _bad(run_main, tmp_path, "--model", TOY, "--lr", "fast")
    assert "--batch_size: expected int >= 1" in _bad(run_main, tmp_path, "--model", TOY, "--batch_size", "0")
    assert "--mode: expected one of a, b" in _bad(run_main, tmp_path, "--model", TOY, "--mode", "c")
    assert "--seed" in _bad(run_main, tmp_path, "--model", TOY, "--seed", "x")


def test_missing_files_and_names(run_main, tmp_path):
    assert "--config: file not found" in _bad(run_main, tmp_path, "--config", str(tmp_path / "x.yaml"))
    assert "--load_model: no such run" in _bad(run_main, tmp_path, "--model", TOY, "--load_model",
                                               str(tmp_path / "nope"))
    assert "unknown model 'nosuch'" in _bad(run_main, tmp_path, "--model", "nosuch")
    assert "--model: required" in _bad(run_main, tmp_path, "--steps", "3")
    assert "--viz_type: unknown nope; valid: weights" in _bad(
        run_main, tmp_path, "--model", TOY, "--viz", "--viz_type", "nope")
    assert "--only: unknown nope" in _bad(run_main, tmp_path, "--model", TOY, "--analyze", "--only", "nope")


def test_preset_with_unknown_key_and_model_mismatch(run_main, tmp_path):
    p = tmp_path / "p.yaml"
    p.write_text(f"model: {TOY}\nsteps: 2\nwidht: 3\n")
    assert "unknown config key(s) widht" in _bad(run_main, tmp_path, "--config", str(p))
    p.write_text("model: nrflv\nsteps: 2\n")
    assert "preset for nrflv" in _bad(run_main, tmp_path, "--config", str(p), "--model", TOY)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only message")
def test_cuda_requested_without_cuda(run_main, tmp_path):
    assert "CUDA is not available" in _bad(run_main, tmp_path, "--model", TOY, "--device", "cuda")


def test_unavailable_stage_is_an_error(run_main, tmp_path, monkeypatch):
    from tests import toy_suite

    class NoViz(toy_suite.ToySuite):
        _visualizations = {}
    monkeypatch.setattr(toy_suite, "NoViz", NoViz, raising=False)
    # a subclass without visualisations: __init_subclass__ recomputes the table, so force it empty
    NoViz._visualizations = {}
    line = _bad(run_main, tmp_path, "--model", "tests.toy_suite:NoViz", "--viz")
    assert "has no viz stage" in line


def test_help_lists_flags_and_model_keys():
    out = subprocess.run([sys.executable, "main.py", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    for flag in ("--model", "--config", "--no_train_model", "--load_model", "--viz", "--viz_type",
                 "--gen_exp_stim", "--experiment", "--analyze", "--device", "--seed", "--run_name",
                 "--out_dir", "--data_root", "--resume", "--download"):
        assert flag in out.stdout
    out = subprocess.run([sys.executable, "main.py", "--model", TOY, "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    assert "--batch_size (int >= 1; default 8)" in out.stdout
    assert "--n_in (int >= 1; default 4) [architecture]" in out.stdout
    assert "stages: train, viz, gen_exp_stim, experiment, analyze" in out.stdout
    assert "mean_response" in out.stdout


def test_every_family_is_listed_and_unimplemented_ones_say_so(run_main, tmp_path):
    from core.registry import FAMILIES, available

    assert set(FAMILIES) == {"nrflv", "cordsnet", "snn_dales", "dsn", "rsa"}
    for name in set(FAMILIES) - set(available()):
        assert "not available in this version" in _bad(run_main, tmp_path, "--model", name)
