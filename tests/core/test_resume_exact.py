"""Killed at a random step and resumed, rsa, snn_dales and dsn (their quick presets' optimisers,
rates and evaluation/early-stopping schedule at a small size; dsn's annealed rate and multiplier
updates) reach the uninterrupted run's checkpoints bit for bit. nrflv and cordsnet have their
own tests (tests/nrflv/test_resume.py, tests/cordsnet/test_resume.py)."""
import random

import pytest

from core.checkpoint import load_checkpoint
from tests.resume_helpers import assert_same_training_state, killed

STEPS = 8
CASES = {
    "rsa": (["--config", "configs/rsa_quick.yaml", "--n_train", "40", "--batch_size", "10", "--n_test", "20",
             "--v1_source", "synthetic", "--eval_every", "3"], "rsa.suite", "RSASuite"),
    "snn_dales": (["--config", "configs/snn_dales_quick.yaml", "--batch_size", "8", "--batches_per_epoch", "3",
                   "--eval_every", "3", "--val_batches", "1", "--test_batches", "1", "--duration_steps", "30"],
                  "snn_dales.suite", "SNNDalesSuite"),
    "dsn": (["--config", "configs/dsn_quick.yaml", "--couplings", "2", "--hidden", "[8]", "--n", "64",
             "--init_steps", "20", "--iters_per_epoch", "4", "--epochs", "2", "--norm_batches", "3",
             "--test_samples", "128", "--n_boot", "100", "--init_cache", "off"], "dsn.suite", "DSNSuite"),
}


@pytest.mark.parametrize("family", CASES)
def test_killed_at_a_random_step_and_resumed_is_bitwise_exact(run_main, tmp_path, monkeypatch, family):
    import importlib

    argv, module, cls = CASES[family]
    suite = getattr(importlib.import_module(module), cls)
    steps = [] if family == "dsn" else ["--steps", str(STEPS)]  # dsn: epochs x iters_per_epoch
    argv = [*argv, *steps, "--ckpt_every", "1", "--keep_checkpoints", "20", "--threads", "1"]
    rc, err = run_main(*argv, "--run_name", "full")
    assert rc == 0, err
    kill = random.Random(family).randrange(2, STEPS)  # killed inside step kill - 1: checkpoint kill - 1
    killed(run_main, monkeypatch, suite, "loss", kill, *argv, "--run_name", "cut")
    full, cut = tmp_path / "runs/full", tmp_path / "runs/cut"
    assert load_checkpoint(cut / "checkpoints/last.pt")["step"] == kill - 1
    rc, err = run_main("--resume", str(cut))
    assert rc == 0, err
    for step in range(kill, STEPS + 1):
        name = f"checkpoints/step_{step:08d}.pt"
        assert_same_training_state(load_checkpoint(full / name), load_checkpoint(cut / name))
    if (full / "checkpoints/best.pt").exists() or (cut / "checkpoints/best.pt").exists():
        assert_same_training_state(load_checkpoint(full / "checkpoints/best.pt"),
                                   load_checkpoint(cut / "checkpoints/best.pt"))
