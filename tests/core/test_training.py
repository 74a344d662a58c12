"""TrainingManager: learning, TensorBoard output, resume continuity, NaN guard, best/early stop."""
import pandas as pd
import torch
import yaml

from core.checkpoint import load_checkpoint
from tests.conftest import TOY
from tests.toy_suite import TRUE_W

COMMON = ["--model", TOY, "--ckpt_every", "5", "--lr", "0.05"]


def _params(path):
    return load_checkpoint(path)["modules"]["net"]


def test_training_learns_and_writes_run_directory(run_main, tmp_path):
    rc, err = run_main(*COMMON, "--steps", "200", "--run_name", "r", "--image_every", "50",
                       "--hist_every", "50", "--eval_every", "50", "--seed", "3")
    assert rc == 0, err
    run = tmp_path / "runs" / "r"
    for sub in ("config.yaml", "meta.yaml", "checkpoints/last.pt", "checkpoints/best.pt", "tb"):
        assert (run / sub).exists(), sub
    meta = yaml.safe_load((run / "meta.yaml").read_text())
    assert meta["seed"] == 3 and meta["device"] == "cpu" and meta["torch_version"] == torch.__version__
    assert "git_revision" in meta and meta["model"] == TOY
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["steps"] == 200 and cfg["seed"] == 3 and cfg["model"] == TOY
    w = _params(run / "checkpoints/last.pt")["weight"][0]
    torch.testing.assert_close(w, TRUE_W, atol=0.05, rtol=0)  # it really regressed
    # TensorBoard got scalars, images and histograms
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    acc = EventAccumulator(str(run / "tb"), size_guidance={"images": 0, "histograms": 0}).Reload()
    tags = acc.Tags()
    assert "train/loss" in tags["scalars"] and "eval/val_mse" in tags["scalars"]
    assert [e.step for e in acc.Scalars("train/loss")][:2] == [10, 20]
    assert "train/weights" in tags["images"]
    assert any(t.startswith("params/net/") for t in tags["histograms"])
    # only keep_checkpoints periodic files besides last/best
    assert len(list((run / "checkpoints").glob("step_*.pt"))) == 2
    assert not list((run / "checkpoints").glob(".*tmp"))


def test_crash_then_resume_matches_uninterrupted_run(run_main, tmp_path, monkeypatch):
    rc, _ = run_main(*COMMON, "--steps", "23", "--run_name", "full")
    assert rc == 0
    import pytest
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_main(*COMMON, "--steps", "23", "--run_name", "crashy", "--crash_at_step", "13")
    crashed = tmp_path / "runs" / "crashy"
    assert load_checkpoint(crashed / "checkpoints/last.pt")["step"] == 10
    monkeypatch.setenv("TOY_CRASH", "0")  # the same config, but the fault is gone
    rc, err = run_main("--resume", str(crashed))
    assert rc == 0, err
    a = _params(tmp_path / "runs/full/checkpoints/last.pt")
    b = _params(crashed / "checkpoints/last.pt")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)
    full_opt = load_checkpoint(tmp_path / "runs/full/checkpoints/last.pt")["optimizer"]["state"]
    res_opt = load_checkpoint(crashed / "checkpoints/last.pt")["optimizer"]["state"]
    torch.testing.assert_close(full_opt[0]["exp_avg"], res_opt[0]["exp_avg"], rtol=0, atol=0)
    meta = yaml.safe_load((crashed / "meta.yaml").read_text())
    assert len(meta["resumed"]) == 1
    # resuming a finished run does nothing and changes nothing
    rc, err = run_main("--resume", str(crashed))
    assert rc == 0 and "already complete" in err


def test_nan_loss_stops_and_keeps_last_good_checkpoint(run_main, tmp_path):
    rc, err = run_main(*COMMON, "--steps", "30", "--run_name", "nan", "--nan_at_step", "12")
    assert rc == 3
    assert "loss became nan at step 12" in err and "last.pt" in err
    ckpt = load_checkpoint(tmp_path / "runs/nan/checkpoints/last.pt")
    assert ckpt["step"] == 10
    assert all(torch.isfinite(v).all() for v in ckpt["modules"]["net"].values())


def test_best_checkpoint_and_early_stopping(run_main, tmp_path):
    # lr 0 never improves after the first evaluation -> stops after `patience` more evaluations
    rc, err = run_main("--model", TOY, "--steps", "100", "--lr", "0", "--eval_every", "5",
                       "--early_stop_patience", "2", "--run_name", "es")
    assert rc == 0 and "early stop at step 15" in err
    run = tmp_path / "runs/es"
    assert load_checkpoint(run / "checkpoints/best.pt")["step"] == 5
    last = load_checkpoint(run / "checkpoints/last.pt")
    assert last["step"] == 15 and last["loop_state"]["stopped_early"]
    evals = pd.read_csv(run / "tables/training/evaluations.csv")
    assert evals["step"].tolist() == [5, 10, 15]


def test_load_model_makes_a_new_run_and_leaves_the_source_alone(run_main, tmp_path):
    rc, _ = run_main(*COMMON, "--steps", "10", "--run_name", "src")
    src = tmp_path / "runs/src"
    before = {p: p.read_bytes() for p in src.rglob("*") if p.is_file()}
    rc, err = run_main("--model", TOY, "--no_train_model", "--load_model", str(src), "--viz",
                       "--run_name", "child")
    assert rc == 0, err
    after = {p: p.read_bytes() for p in src.rglob("*") if p.is_file()}
    assert before == after
    child = tmp_path / "runs/child"
    assert (child / "figures/viz/weights.png").exists()
    meta = yaml.safe_load((child / "meta.yaml").read_text())
    assert meta["loaded_from"].endswith("best.pt") or meta["loaded_from"].endswith("last.pt")
    torch.testing.assert_close(_params(child / "checkpoints/last.pt")["weight"],
                               _params(src / "checkpoints/last.pt")["weight"])
    # architecture keys come from the checkpoint; a conflicting override is an error
    rc, err = run_main("--model", TOY, "--no_train_model", "--load_model", str(src), "--n_in", "3")
    assert rc == 2 and "architecture keys cannot change" in err


def test_sigterm_saves_a_checkpoint_and_resume_continues(run_main, tmp_path, monkeypatch):
    """A batch scheduler's SIGTERM: stop after the step, checkpoint, exit 143; --resume finishes."""
    rc, _ = run_main(*COMMON, "--steps", "20", "--run_name", "full")
    rc, err = run_main(*COMMON, "--steps", "20", "--run_name", "term", "--signal_at_step", "7")
    assert rc == 143 and "stopped by SIGTERM after step 8/20" in err and "--resume" in err
    run = tmp_path / "runs/term"
    assert load_checkpoint(run / "checkpoints/last.pt")["step"] == 8
    monkeypatch.setenv("TOY_CRASH", "0")
    rc, err = run_main("--resume", str(run))
    assert rc == 0, err
    a, b = _params(tmp_path / "runs/full/checkpoints/last.pt"), _params(run / "checkpoints/last.pt")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)


def test_keep_checkpoints_keeps_that_many_and_no_fewer(run_main, tmp_path):
    """keep_checkpoints larger than the files written so far deletes nothing (a negative slice
    stop once deleted the oldest of them)."""
    rc, err = run_main(*COMMON, "--steps", "60", "--ckpt_every", "10", "--keep_checkpoints", "8",
                       "--run_name", "keep")
    assert rc == 0, err
    names = sorted(p.name for p in (tmp_path / "runs/keep/checkpoints").glob("step_*.pt"))
    assert names == [f"step_{k:08d}.pt" for k in (10, 20, 30, 40, 50, 60)]
