"""cordsnet resume is bitwise exact on the CPU with the quick preset's schedule: five phases with
their own optimisers, phase 1's warm-up and lr stages (a new SGD each), the gradient-norm clips of
phases 2-5, the anneal's slope levels (a new AdamW each), killed inside a phase, at a phase boundary,
at a stage or level boundary, inside a level, and again after a resume."""
from core.checkpoint import load_checkpoint
from cordsnet.suite import CordsNetSuite
from tests.resume_helpers import assert_same_training_state, killed

# the quick preset's rates and clips (rnn_clip, inversion_clip 1.0; cnn warm-up and stages) at a small size
SMALL = ["--config", "configs/cordsnet_quick.yaml", "--input_size", "16", "--blank_steps", "3",
         "--stimulus_steps", "4", "--post_blank_steps", "3", "--loss_steps", "2", "--spont_steps", "1",
         "--cnn_steps", "6", "--cnn_warmup", "1", "--inversion_steps", "4", "--linear_steps", "3",
         "--anneal_steps", "4", "--anneal_levels", "2", "--finetune_steps", "3", "--batch_size", "8",
         "--n_eval", "16", "--eval_every", "5", "--ckpt_every", "1", "--keep_checkpoints", "30",
         "--log_every", "1", "--threads", "1"]
# phases: cnn 0-5, inversion 6-9, linear 10-12, anneal 13-16, finetune 17-19


def test_resume_inside_and_across_phases_is_bitwise_exact(run_main, tmp_path, monkeypatch):
    rc, err = run_main(*SMALL, "--run_name", "full")
    assert rc == 0, err
    full, cut = tmp_path / "runs/full", tmp_path / "runs/cut"
    # killed in step 8 (inside the inversion: checkpoint of step 8), then in step 11 (inside the linear
    # phase, resumed from the inversion's checkpoint across a boundary), then at step 13 (the anneal's
    # first), then to the end
    # first killed at phase 1's second lr stage (a new SGD from step 2), then in step 8
    killed(run_main, monkeypatch, CordsNetSuite, "loss", 3, *SMALL, "--run_name", "cut")
    assert load_checkpoint(cut / "checkpoints/last.pt")["step"] == 2
    killed(run_main, monkeypatch, CordsNetSuite, "loss", 7, "--resume", str(cut))
    assert load_checkpoint(cut / "checkpoints/last.pt")["step"] == 8
    killed(run_main, monkeypatch, CordsNetSuite, "loss", 4, "--resume", str(cut))
    assert load_checkpoint(cut / "checkpoints/last.pt")["step"] == 11
    killed(run_main, monkeypatch, CordsNetSuite, "loss", 3, "--resume", str(cut))
    assert load_checkpoint(cut / "checkpoints/last.pt")["step"] == 13
    # the anneal's two slope levels (steps 13-14, 15-16) each have a fresh AdamW: killed inside the
    # first level, at the second's first step, and inside the second
    for at in (14, 15, 16):
        killed(run_main, monkeypatch, CordsNetSuite, "loss", 2, "--resume", str(cut))
        assert load_checkpoint(cut / "checkpoints/last.pt")["step"] == at
    rc, err = run_main("--resume", str(cut))
    assert rc == 0, err
    for step in range(3, 21):
        a = load_checkpoint(full / f"checkpoints/step_{step:08d}.pt")
        b = load_checkpoint(cut / f"checkpoints/step_{step:08d}.pt")
        assert_same_training_state(a, b)
    evals = [(r / "tables/training/evaluations.csv").read_text() for r in (full, cut)]
    # every 5 steps and at each phase's end (steps 6, 10, 13, 17, 20)
    assert evals[0] == evals[1] and len(evals[0].splitlines()) == 8  # steps 5, 6, 10, 13, 15, 17, 20
