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


# --- a phase that makes its optimiser afresh at given steps (Phase.restarts) ----------------
from core.suite import Phase  # noqa: E402
from tests.toy_suite import ToySuite  # noqa: E402


class RestartingToy(ToySuite):
    """Phase a (3 steps, evaluated at its end), then phase b (6 steps) whose Adam is made afresh
    at its steps 2 and 4, as a script that creates a new optimiser per stage."""

    def phases(self):
        return [Phase("a", 3, evaluate_at_end=True), Phase("b", 6, restarts=(2, 4))]


def test_optimiser_restarts_are_fresh_and_resume_exactly(run_main, tmp_path, monkeypatch):
    argv = ["--model", "tests.core.test_resume_exact:RestartingToy", "--steps", "9", "--eval_every", "0",
            "--ckpt_every", "1", "--keep_checkpoints", "20", "--threads", "1"]
    rc, err = run_main(*argv, "--run_name", "full")
    assert rc == 0, err
    full, cut = tmp_path / "runs/full", tmp_path / "runs/cut"
    counts = [int(next(iter(load_checkpoint(full / f"checkpoints/step_{s:08d}.pt")["optimizer"]["state"]
                            .values()))["step"]) for s in range(1, 10)]
    assert counts == [1, 2, 3, 1, 2, 1, 2, 1, 2]  # phase b's Adam restarts at its steps 0, 2, 4
    import pandas as pd
    assert pd.read_csv(full / "tables/training/evaluations.csv")["step"].tolist() == [3, 9]
    # killed at a restart (checkpoint 5: the next step makes a new Adam), then inside a stretch (6)
    killed(run_main, monkeypatch, RestartingToy, "loss", 6, *argv, "--run_name", "cut")
    assert load_checkpoint(cut / "checkpoints/last.pt")["step"] == 5
    killed(run_main, monkeypatch, RestartingToy, "loss", 2, "--resume", str(cut))
    assert load_checkpoint(cut / "checkpoints/last.pt")["step"] == 6
    rc, err = run_main("--resume", str(cut))
    assert rc == 0, err
    for step in range(6, 10):
        name = f"checkpoints/step_{step:08d}.pt"
        assert_same_training_state(load_checkpoint(full / name), load_checkpoint(cut / name))
