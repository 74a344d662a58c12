"""Nothing silent: divergence, resume and bad input that used to pass as success.

One test (or more) per case of the hardening issue that lives in the shared machinery, so
every model family inherits the fix.
"""
import os
import shutil
import threading

import numpy as np
import pytest
import torch
import yaml

from core.checkpoint import load_checkpoint
from core.errors import UserError
from core.health import nonfinite_entries, nonfinite_parameters, weights_fingerprint
from core.rundir import RunDir
from core.store import DONE, RecordingStore
from tests.conftest import TOY

COMMON = ["--model", TOY, "--lr", "0.05"]


def _finite(ckpt):
    return not nonfinite_entries(ckpt)


# --- 1. divergence that does not show in the loss ---------------------------------
def test_nonfinite_weights_with_a_finite_loss_stop_with_status_3(run_main, tmp_path):
    rc, err = run_main(*COMMON, "--steps", "20", "--ckpt_every", "1", "--run_name", "p",
                       "--poison_at_step", "7", "--eval_every", "1")
    assert rc == 3, err
    assert "parameters net.weight became non-finite" in err and "step 7" in err
    ckpts = sorted((tmp_path / "runs/p/checkpoints").glob("*.pt"))
    assert ckpts, "the good checkpoints are kept"
    for path in ckpts:  # none of last.pt, best.pt or the periodic ones holds a NaN
        assert _finite(load_checkpoint(path)), path
    # step 7 started from the step-7 checkpoint and ended non-finite: the good one is step 6
    assert load_checkpoint(tmp_path / "runs/p/checkpoints/last.pt")["step"] == 6


def test_health_helpers_find_nonfinite_tensors_anywhere():
    good = {"modules": {"net": {"w": torch.ones(3)}}, "optimizer": {"state": {0: {"exp_avg": torch.zeros(2)}}}}
    assert nonfinite_entries(good) == []
    bad = {"modules": {"net": {"w": torch.ones(3)}},
           "optimizer": {"state": {0: {"exp_avg_sq": torch.tensor([1.0, float("inf")])}}}}
    assert nonfinite_entries(bad) == ["optimizer.state.0.exp_avg_sq"]
    assert nonfinite_parameters([("a", torch.tensor([1e35])), ("b", torch.tensor([float("nan")])),
                                 ("i", torch.tensor([1, 2]))]) == ["b"]


def test_a_nonfinite_optimiser_state_is_never_written(tmp_path):
    from managers import TrainingManager

    class Run:
        checkpoints = tmp_path
        last_checkpoint = tmp_path / "last.pt"

    mgr = TrainingManager.__new__(TrainingManager)
    mgr.ctx = type("C", (), {"env": type("E", (), {"is_main": True})()})()
    mgr.run, mgr._good, mgr._pending = Run(), None, None
    from core.errors import TrainingDiverged
    ckpt = {"step": 4, "modules": {"net": {"w": torch.ones(2)}},
            "optimizer": {"state": {0: {"exp_avg_sq": torch.tensor([float("nan")])}}}}
    with pytest.raises(TrainingDiverged, match="optimizer.state.0.exp_avg_sq"):
        mgr._save("step_00000004.pt", ckpt)
    assert not list(tmp_path.glob("*.pt"))


# --- 2. the last good checkpoint is one followed by a finite step -------------------
def test_huge_but_finite_weights_are_not_called_good(run_main, tmp_path):
    rc, err = run_main(*COMMON, "--steps", "20", "--ckpt_every", "1", "--run_name", "x",
                       "--explode_at_step", "5")
    assert rc == 3, err
    # step_6 holds weights of 1e35 (finite) and step 6 then diverged: step_5 is the good one
    assert "step_00000005.pt" in err and "last.pt now points to it" in err
    last = load_checkpoint(tmp_path / "runs/x/checkpoints/last.pt")
    assert last["step"] == 5 and last["modules"]["net"]["weight"].abs().max() < 100
    # resuming from it with the same settings is deterministic: it diverges the same way
    # but a resume that removes the fault goes through
    rc, err = run_main("--resume", str(tmp_path / "runs/x"), "--explode_at_step", "-1")
    assert rc == 0, err


def test_no_good_checkpoint_is_said_plainly(run_main, tmp_path):
    rc, err = run_main(*COMMON, "--steps", "20", "--ckpt_every", "1", "--run_name", "n",
                       "--explode_at_step", "0")
    assert rc == 3, err
    assert "none is good" in err
    assert not (tmp_path / "runs/n/checkpoints/last.pt").exists()


# --- 3. a recording is tied to the weights that made it ------------------------------
def _half_undone(path):
    store = RecordingStore.open(path, mode="r+")
    done = store.done
    done[len(done) // 2:] = False
    store.group[DONE][...] = done


def test_resumed_recording_uses_the_same_weights_or_refuses(run_main, tmp_path):
    rc, err = run_main(*COMMON, "--steps", "30", "--eval_every", "5", "--lr", "0.3", "--noise", "3",
                       "--batch_size", "2", "--run_name", "r",
                       "--experiment", "--n_trials", "12", "--record_batch", "3")
    assert rc == 0, err
    run = tmp_path / "runs/r"
    act_path = run / "recordings/activity.zarr"
    ref = RecordingStore.open(act_path).read("y")
    attrs = RecordingStore.open(act_path).attrs
    assert "best.pt" in attrs["weights_source"] and len(attrs["weights_sha256"]) == 64
    best, last = load_checkpoint(run / "checkpoints/best.pt"), load_checkpoint(run / "checkpoints/last.pt")
    assert best["step"] != last["step"]  # the two differ, so mixing them would show

    _half_undone(act_path)  # as if the recording had been killed half-way
    rc, err = run_main("--resume", str(run), "--no_train_model", "--experiment")
    assert rc == 0, err  # resumes with best.pt, as the first part did
    np.testing.assert_array_equal(RecordingStore.open(act_path).read("y"), ref)

    _half_undone(act_path)
    (run / "checkpoints/best.pt").unlink()  # now only last.pt (other weights) is there
    before = (run / "meta.yaml").read_text()
    rc, err = run_main("--resume", str(run), "--no_train_model", "--experiment")
    assert rc == 2 and "mix two models" in err
    assert (run / "meta.yaml").read_text() == before  # refused before writing anything


def test_fingerprint_sees_every_element():
    a = {"net": torch.nn.Linear(3, 2)}
    h = weights_fingerprint(a)
    assert h == weights_fingerprint(a)
    with torch.no_grad():
        a["net"].bias[1] += 1e-7
    assert weights_fingerprint(a) != h


# --- 4. nothing is rewritten before a refusal ----------------------------------------
def test_regenerating_stimuli_of_a_recorded_run_is_refused_before_writing(run_main, tmp_path):
    rc, err = run_main(*COMMON, "--steps", "3", "--run_name", "s", "--experiment", "--n_trials", "8")
    assert rc == 0, err
    run = tmp_path / "runs/s"
    snap = {p: p.read_bytes() for p in run.rglob("*") if p.is_file() and "tb" not in p.parts}
    rc, err = run_main("--resume", str(run), "--gen_exp_stim", "--n_trials", "3")
    assert rc == 2 and "would orphan it" in err
    after = {p: p.read_bytes() for p in run.rglob("*") if p.is_file() and "tb" not in p.parts}
    assert after == snap


# --- 5. config.yaml keeps describing the run's first part ------------------------------
def test_resume_overrides_go_to_meta_and_persist(run_main, tmp_path):
    rc, err = run_main(*COMMON, "--steps", "10", "--run_name", "c", "--seed", "4")
    assert rc == 0, err
    run = tmp_path / "runs/c"
    first = (run / "config.yaml").read_text()
    rc, err = run_main("--resume", str(run), "--seed", "5")
    assert rc == 2 and "keeps its seed (4)" in err
    rc, err = run_main("--resume", str(run), "--steps", "15", "--lr", "0.01")
    assert rc == 0, err
    assert (run / "config.yaml").read_text() == first
    meta = yaml.safe_load((run / "meta.yaml").read_text())
    assert meta["resumed"][-1]["overrides"] == {"steps": 15, "lr": 0.01}
    assert load_checkpoint(run / "checkpoints/last.pt")["step"] == 15
    # a later resume keeps the earlier override (steps 15: nothing left to do)
    rc, err = run_main("--resume", str(run))
    assert rc == 0 and "already complete at step 15/15" in err
    # and --config RUN/config.yaml repeats the first part exactly
    rc, err = run_main("--config", str(run / "config.yaml"), "--run_name", "again")
    assert rc == 0, err
    a = load_checkpoint(tmp_path / "runs/again/checkpoints/last.pt")
    b = load_checkpoint(run / "checkpoints/step_00000010.pt") if (run / "checkpoints/step_00000010.pt").exists() \
        else None
    assert a["step"] == 10 and (b is None or torch.equal(a["modules"]["net"]["weight"], b["modules"]["net"]["weight"]))


# --- 9. a moved run resumes its recording ------------------------------------------------
def test_a_copied_run_resumes_its_recording(run_main, tmp_path):
    rc, err = run_main(*COMMON, "--steps", "3", "--run_name", "m", "--experiment", "--n_trials", "9",
                       "--record_batch", "3")
    assert rc == 0, err
    ref = RecordingStore.open(tmp_path / "runs/m/recordings/activity.zarr").read("y")
    moved = tmp_path / "elsewhere" / "m"
    shutil.copytree(tmp_path / "runs/m", moved)
    shutil.rmtree(tmp_path / "runs/m")
    _half_undone(moved / "recordings/activity.zarr")
    rc, err = run_main("--resume", str(moved), "--no_train_model", "--experiment")
    assert rc == 0, err
    np.testing.assert_array_equal(RecordingStore.open(moved / "recordings/activity.zarr").read("y"), ref)


def test_dsn_init_cache_lives_under_data_root(tmp_path, monkeypatch):
    from dsn.init_cache import cache_dir

    monkeypatch.delenv("DSN_INIT_CACHE", raising=False)
    assert cache_dir("auto", tmp_path / "data") == tmp_path / "data" / "cache" / "dsn_init"
    assert cache_dir("off", tmp_path) is None


# --- 12. bad input: one line and exit 2, no half-written run ------------------------------
def _bad(run_main, tmp_path, *argv):
    rc, err = run_main(*argv)
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("main.py: error: "), err
    runs = tmp_path / "runs"
    assert not runs.exists() or not any(runs.iterdir())
    return lines[0]


@pytest.mark.parametrize("flag,value,needle", [
    ("--lr", "nan", "finite"), ("--lr", ".nan", "finite"), ("--lr", "inf", "finite"),
    ("--seed", str(2**64), "--seed"), ("--run_name", "x" * 300, "at most 200 bytes"),
])
def test_bad_values_are_refused(run_main, tmp_path, flag, value, needle):
    assert needle in _bad(run_main, tmp_path, *COMMON, "--steps", "2", flag, value)


def test_out_dir_that_is_a_file_or_cannot_be_written(run_main, tmp_path, monkeypatch):
    f = tmp_path / "afile"
    f.write_text("x")
    rc, err = run_main(*COMMON, "--steps", "2", out_dir=f)
    assert rc == 2 and "is not a folder" in err
    from pathlib import Path
    real_mkdir = Path.mkdir

    def refuse(self, *a, **k):
        if self.parent.name == "ro":
            raise PermissionError(1, "Operation not permitted")
        return real_mkdir(self, *a, **k)
    monkeypatch.setattr(Path, "mkdir", refuse)
    (tmp_path / "ro").mkdir()
    rc, err = run_main(*COMMON, "--steps", "2", out_dir=tmp_path / "ro")
    assert rc == 2 and "cannot create a run folder" in err and "not permitted" in err


def test_out_of_memory_is_one_line_and_leaves_no_run(run_main, tmp_path, monkeypatch):
    from tests import toy_suite

    def oom(self, step):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate memory: "
                           "you tried to allocate 40000000000000 bytes.")
    monkeypatch.setattr(toy_suite.ToySuite, "training_batch", oom)
    rc, err = run_main(*COMMON, "--steps", "2", "--batch_size", "100000000")
    assert rc == 2 and "out of memory" in err and "Reduce the batch size" in err
    assert not any((tmp_path / "runs").iterdir())


def test_stimuli_from_another_model_or_unreadable(run_main, tmp_path):
    other = tmp_path / "other.zarr"
    RecordingStore.create(other, 2, attrs={"kind": "stimuli", "model": "rsa"})
    assert "stimulus set of model 'rsa'" in _bad(run_main, tmp_path, *COMMON, "--no_train_model",
                                                 "--experiment", "--stimuli", str(other))
    junk = tmp_path / "junk.zarr"
    junk.mkdir()
    (junk / "zarr.json").write_text("{not json")
    assert "junk.zarr" in _bad(run_main, tmp_path, *COMMON, "--no_train_model", "--experiment",
                               "--stimuli", str(junk))


def test_malformed_run_config_is_one_line(run_main, tmp_path):
    rc, err = run_main(*COMMON, "--steps", "2", "--run_name", "bad")
    assert rc == 0
    (tmp_path / "runs/bad/config.yaml").write_text("steps: [1, 2\nlr: {")
    rc, err = run_main("--resume", str(tmp_path / "runs/bad"))
    assert rc == 2 and "is not valid YAML" in err and len(err.strip().splitlines()) == 1
    (tmp_path / "runs/bad/config.yaml").write_text("- just\n- a list\n")
    rc, err = run_main("--resume", str(tmp_path / "runs/bad"))
    assert rc == 2 and "must hold a mapping" in err


# --- 13. an analysis asked for by name runs or fails ----------------------------------------
def test_skipped_analysis_is_an_error_when_named(run_main, tmp_path):
    rc, err = run_main(*COMMON, "--steps", "2", "--run_name", "a", "--analyze")
    assert rc == 0 and "skipped: analysis 'needs_level'" in err
    rc, err = run_main(*COMMON, "--steps", "2", "--run_name", "b", "--analyze", "--only", "needs_level")
    assert rc == 2 and "no stimulus level above 1" in err
    import analysis_main
    assert analysis_main.main(["--run", str(tmp_path / "runs/a"), "--only", "needs_level"]) == 2


# --- 14. concurrent creation of the same run name ---------------------------------------------
def test_concurrent_run_creation_never_collides(tmp_path):
    made, errors = [], []

    def create():
        try:
            made.append(RunDir.create(tmp_path, "toy", "same").path)
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)
    threads = [threading.Thread(target=create) for _ in range(80)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(set(made)) == 80
    assert all((p / "checkpoints").is_dir() for p in made)


def test_run_name_checks():
    from core.rundir import check_run_name

    for bad in ("a/b", "..", "", "x" * 201):
        with pytest.raises(UserError):
            check_run_name(bad)
    check_run_name("x" * 200)


# --- 20. each family's default thread count, applied by main and recorded -------------------
def test_threads_key_is_applied_and_recorded(run_main, tmp_path, monkeypatch):
    from core.config import BaseConfig
    from dsn.config import DSNConfig
    from snn_dales.config import SNNDalesConfig

    assert BaseConfig().threads == 0  # torch's default unless a family measured better
    assert SNNDalesConfig().threads == 1 and DSNConfig().threads == 1
    from core import runtime

    seen, real = {}, runtime.seed_everything

    def spy(seed):  # main sets the threads before seeding and building anything
        seen["threads"] = torch.get_num_threads()
        return real(seed)
    monkeypatch.setattr(runtime, "seed_everything", spy)
    before = torch.get_num_threads()
    rc, err = run_main(*COMMON, "--steps", "2", "--threads", "1", "--run_name", "t")
    assert rc == 0, err
    assert seen["threads"] == 1
    assert yaml.safe_load((tmp_path / "runs/t/meta.yaml").read_text())["threads"] == 1
    assert torch.get_num_threads() == before  # the test helper restores it


def test_resume_and_analysis_use_the_runs_data_root(run_main, tmp_path, monkeypatch):
    """--data_root is stored in meta.yaml; a resume (and analysis_main.py) without it uses that one."""
    from tests import toy_suite

    seen = []
    real = toy_suite.ToySuite.prepare

    def spy(self):
        seen.append(self.ctx.data_root)
        return real(self)
    monkeypatch.setattr(toy_suite.ToySuite, "prepare", spy)
    rc, err = run_main(*COMMON, "--steps", "4", "--run_name", "d", "--data_root", str(tmp_path / "mydata"))
    assert rc == 0, err
    run = tmp_path / "runs/d"
    assert yaml.safe_load((run / "meta.yaml").read_text())["data_root"] == str((tmp_path / "mydata").resolve())
    rc, err = run_main("--resume", str(run), "--steps", "6")
    assert rc == 0, err
    assert seen[-1] == (tmp_path / "mydata").resolve()
    rc, err = run_main("--resume", str(run), "--steps", "8", "--data_root", str(tmp_path / "moved"))
    assert rc == 0 and seen[-1] == tmp_path / "moved"
    import analysis_main
    assert analysis_main.main(["--run", str(run), "--list"]) == 0
