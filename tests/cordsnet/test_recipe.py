"""The published training recipe (issue 25, section 2): ResNet-18 start, global batches that do
not depend on the number of processes, neighbour pairing of CutMix/MixUp, mixed images in the
inversion, a fresh AdamW per slope level, and the whole test set evaluated at each phase end."""
import torch

from core.runtime import generator
from core.suite import RunContext, StepContext
from cordsnet import data as D


def make_suite(*argv, stages=("train",), world_size=1, rank=0):
    """A CordsNet suite as main.py would build it from ``argv`` (on the CPU)."""
    import main
    from core.runtime import DistEnv

    _, suite_cls, cfg = main.parse_args(["--model", "cordsnet", *argv])
    env = DistEnv(rank=rank, world_size=world_size)
    return suite_cls(RunContext(cfg=cfg, device=torch.device("cpu"), env=env, stages=stages))


DIGITS = ["--dataset", "digits", "--depth", "2", "--input_size", "16", "--batch_size", "8"]


def _step(phase, phase_step=0, seed=5, rank=0, world_size=1):
    return StepContext(step=phase_step, phase=phase, phase_step=phase_step, rank=rank, world_size=world_size,
                       device=torch.device("cpu"), generator=generator(seed))


def test_the_inversion_phase_mixes_images_where_published():
    mixed_suite = make_suite(*DIGITS, "--mix", "on", "--inversion_steps", "4")
    plain_suite = make_suite(*DIGITS, "--mix", "off", "--inversion_steps", "4")
    images, labels = mixed_suite.training_batch(_step("inversion", 2))
    raw, raw_labels = plain_suite.training_batch(_step("inversion", 2))
    expect, soft, info = D.mix_batch(raw, raw_labels, 10, generator(5))
    assert torch.equal(images, expect) and not torch.equal(images, raw)
    assert torch.equal(labels, soft)  # unused by the inversion's loss, which fits the mixed images
    assert D.uses_mixing("fashion_mnist", "auto") and D.uses_mixing("cifar10", "auto")
    assert not D.uses_mixing("mnist", "auto") and not D.uses_mixing("imagenet", "auto")


# --- 1. the ResNet-18 start -------------------------------------------------------------
SMALL8 = ["--model", "cordsnet", "--dataset", "digits", "--depth", "8", "--input_size", "16",
          "--blank_steps", "2", "--stimulus_steps", "3", "--post_blank_steps", "2", "--loss_steps", "2",
          "--spont_steps", "1", "--cnn_steps", "1", "--inversion_steps", "0", "--linear_steps", "0",
          "--anneal_steps", "0", "--finetune_steps", "0", "--batch_size", "180", "--n_eval", "8",
          "--phase_batch_sizes", "4,4,4,4,4",
          "--cnn_warmup", "0"]


def test_missing_torchvision_resnet18_is_one_line_naming_where_and_how(run_main, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    rc, err = run_main(*SMALL8, "--resnet18_weights", "torchvision", "--run_name", "r")
    assert rc == 2, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    where = tmp_path / "torch/hub/checkpoints/resnet18-f37072fd.pth"
    assert str(where) in err and "weights='IMAGENET1K_V1'" in err and "--resnet18_weights none" in err
    assert not (tmp_path / "runs/r").exists()
    # no ResNet start is needed without phase 1 (own images, analyses) or below depth 8 (as published)
    rc, err = run_main(*SMALL8, "--resnet18_weights", "torchvision", "--no_train_model", "--run_name", "n")
    assert rc == 0, err
    rc, err = run_main(*SMALL8, "--resnet18_weights", "torchvision", "--depth", "2", "--run_name", "d2")
    assert rc == 0, err


def test_resnet18_none_is_the_explicit_opt_out(run_main, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    rc, err = run_main(*SMALL8, "--resnet18_weights", "none", "--run_name", "none")
    assert rc == 0, err
    assert (tmp_path / "runs/none/checkpoints/last.pt").is_file()


def test_torchvision_resnet18_in_the_hub_cache_is_mapped_into_the_cnn(tmp_path, monkeypatch):
    import torchvision

    from cordsnet.cnn import resnet18_to_cnn

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    torch.manual_seed(3)
    fake = torchvision.models.resnet18(weights=None).state_dict()  # ResNet-18's keys and shapes
    where = tmp_path / "torch/hub/checkpoints/resnet18-f37072fd.pth"
    where.parent.mkdir(parents=True)
    torch.save(fake, where)
    suite = make_suite(*SMALL8[2:], "--resnet18_weights", "torchvision")
    suite.prepare()
    cnn = suite.build()["cnn"].state_dict()
    mapped = resnet18_to_cnn(fake, in_channels=1, n_classes=10)  # digits: one channel, ten classes
    assert len(mapped) > 80
    for k, v in mapped.items():
        assert torch.equal(cnn[k], v), k
    # and a depth-2 model of the same preset starts from random weights, as published
    assert make_suite(*SMALL8[2:], "--resnet18_weights", "torchvision", "--depth", "2")._resnet18_start() is None


# --- 2. the global batch under torchrun ---------------------------------------------------
def test_the_ranks_draw_together_the_global_batch_of_one_process():
    """Per step, the union of what 2 ranks draw (their share of the global batch of 8) is the
    batch one process draws: the same images, in the same order, with the same sample seeds."""
    from core.data import epoch_batch_indices

    one = list(D.StepBatches(50, 8, seed=3, start=0, stop=14))
    two = [list(D.StepBatches(50, 4, seed=3, start=0, stop=14, rank=r, world_size=2)) for r in (0, 1)]
    for step in range(14):
        assert two[0][step] + two[1][step] == one[step]
        assert torch.equal(torch.cat([epoch_batch_indices(50, 4, step, 3, r, 2) for r in (0, 1)]),
                           epoch_batch_indices(50, 8, step, 3))
    suite = make_suite(*DIGITS, "--phase_batch_sizes", "8,8,4,4,4")
    assert [suite.cfg.rank_batch(p, 2) for p in ("cnn", "linear")] == [4, 2]


def test_a_world_size_that_does_not_divide_the_global_batch_is_refused():
    import pytest

    from core.errors import UserError

    suite = make_suite(*DIGITS, "--phase_batch_sizes", "8,8,4,4,2", world_size=4)
    with pytest.raises(UserError, match="finetune phase's global batch of 2 images does not split evenly "
                                        "between 4 processes"):
        suite.prepare()
    make_suite(*DIGITS, "--phase_batch_sizes", "8,8,4,4,4", world_size=4).prepare()
    make_suite(*DIGITS, "--phase_batch_sizes", "8,8,4,4,2", world_size=4, stages=("analyze",)).prepare()


def test_one_and_two_gloo_processes_take_the_same_steps(run_main, tmp_path):
    """The same preset on 1 process and under torchrun with 2 (gloo): every phase's global batch
    is the same, so the gradient averaged by DDP and the updates are those of one process (to
    float rounding), and not those of one process on half the batch (the old per-rank batch)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from core.checkpoint import load_checkpoint

    argv = [*DIGITS, "--blank_steps", "2", "--stimulus_steps", "4", "--post_blank_steps", "2", "--loss_steps", "2",
            "--spont_steps", "1", "--cnn_steps", "0", "--inversion_steps", "2", "--linear_steps", "2",
            "--anneal_steps", "2", "--anneal_levels", "2", "--finetune_steps", "2", "--eval_every", "0",
            "--inversion_lr", "0.01", "--rnn_lr", "0.001", "--rnn_clip", "0", "--inversion_clip", "0"]
    root = Path(__file__).resolve().parents[2]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "main.py",
           "--model", "cordsnet", *argv, "--device", "cpu", "--out_dir", str(tmp_path / "runs"), "--run_name", "two"]
    out = subprocess.run(cmd, cwd=root, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    rc, err = run_main("--model", "cordsnet", *argv, "--run_name", "one")
    assert rc == 0, err
    rc, err = run_main("--model", "cordsnet", *argv, "--batch_size", "4", "--run_name", "half")
    assert rc == 0, err
    w = {name: load_checkpoint(tmp_path / f"runs/{name}/checkpoints/last.pt")["modules"]["rnn"]
         for name in ("one", "two", "half")}
    same = other = 0.0
    for k, v in w["one"].items():
        same = max(same, float((w["two"][k] - v).abs().max()))
        other = max(other, float((w["half"][k] - v).abs().max()))
    assert same < 1e-4, same  # float rounding of the all-reduce, through AdamW
    print(f"max |w(2 processes) - w(1)| = {same:.3g}; with half the batch: {other:.3g}")
    assert other > 100 * max(same, 1e-7), (same, other)


# --- 5. a fresh optimiser at each slope level (and each phase-1 stage) ---------------------
def test_restarts_fall_where_the_slope_level_and_the_cnn_stage_change():
    from cordsnet import pipeline as P

    for steps, levels in [(6, 3), (7, 3), (20, 20), (5, 20), (125000, 20), (13, 4), (4, 1)]:
        slopes = [P.anneal_slope(s, steps, 0.95, levels) for s in range(steps)]
        changes = tuple(s for s in range(1, steps) if slopes[s] != slopes[s - 1])
        assert P.anneal_level_starts(steps, levels) == changes, (steps, levels)
    assert len(P.anneal_level_starts(125000, 20)) == 19  # published: a new AdamW at each of 20 epochs
    for steps in (1, 2, 3, 6, 7, 58800):
        rates = [P.cnn_learning_rate(s, steps, 0.1, 0) for s in range(steps)]
        assert P.cnn_stage_starts(steps) == tuple(s for s in range(1, steps) if rates[s] != rates[s - 1])


def test_the_anneal_phase_makes_a_fresh_adamw_at_each_slope_level(run_main, tmp_path):
    """Checkpoints after every step: AdamW's step count (and so its moments) starts again at the
    first step of each of the 3 slope levels (anneal steps 0-1, 2-3, 4-5)."""
    from core.checkpoint import load_checkpoint

    tiny = ["--blank_steps", "2", "--stimulus_steps", "3", "--post_blank_steps", "2", "--loss_steps", "2",
            "--spont_steps", "1", "--n_eval", "8", "--eval_every", "0"]
    phases = ["--cnn_steps", "0", "--inversion_steps", "0", "--linear_steps", "0", "--anneal_steps", "6",
              "--anneal_levels", "3", "--finetune_steps", "0"]
    rc, err = run_main("--model", "cordsnet", *DIGITS, *tiny, *phases, "--ckpt_every", "1",
                       "--keep_checkpoints", "10", "--run_name", "a")
    assert rc == 0, err
    counts = []
    for done in range(1, 7):
        ckpt = load_checkpoint(tmp_path / f"runs/a/checkpoints/step_{done:08d}.pt")
        state = ckpt["optimizer"]["state"]
        steps = {float(v["step"]) for v in state.values()}
        assert len(state) and len(steps) == 1  # every parameter's moments restarted together
        counts.append(int(steps.pop()))
    assert counts == [1, 2, 1, 2, 1, 2]


# --- 6. the whole test set at each phase's end ---------------------------------------------
def test_each_phase_ends_with_an_evaluation_on_every_test_image(run_main, tmp_path, monkeypatch):
    """The evaluation at each phase's end sees every test image once (360 embedded digits, not
    the n_eval = 8 of the subset used in between), and its accuracy is the model's on all of them."""
    import pandas as pd

    from core.checkpoint import load_checkpoint
    from cordsnet import probes
    from cordsnet.model import CordsNet

    seen = []
    real = probes.hits_over_time

    def spy(rnn, x, y, course=None):
        seen.append(x.clone())
        return real(rnn, x, y, course)
    monkeypatch.setattr(probes, "hits_over_time", spy)
    tiny = ["--blank_steps", "2", "--stimulus_steps", "3", "--post_blank_steps", "2", "--loss_steps", "2",
            "--spont_steps", "1", "--n_eval", "8", "--eval_every", "3", "--anneal_levels", "2"]
    phases = ["--cnn_steps", "2", "--inversion_steps", "2", "--linear_steps", "2", "--anneal_steps", "2",
              "--finetune_steps", "2"]
    rc, err = run_main("--model", "cordsnet", *DIGITS, *tiny, *phases, "--batch_size", "64",
                       "--ckpt_every", "2", "--keep_checkpoints", "10", "--run_name", "e")
    assert rc == 0, err
    evals = pd.read_csv(tmp_path / "runs/e/tables/training/evaluations.csv").set_index("step")
    test_x, test_y = D.embedded_digits(16, train=False)
    ends = evals.loc[[2, 4, 6, 8, 10]]
    assert list(ends["phase"]) == ["cnn", "inversion", "linear", "anneal", "finetune"]
    assert len(test_y) == 360
    assert (ends["evaluated_on"] == "whole test set").all() and (ends["n_test"] == 360).all()
    assert ends["test_accuracy_full"].isna().tolist() == [True, False, False, False, False]  # RNN from the inversion on
    assert ends["cnn_test_accuracy_full"].notna().tolist() == [True, True, False, False, False]
    sub = evals.loc[[3, 9]]
    assert (sub["evaluated_on"] == "subset (n_eval)").all() and (sub["n_eval"] == 8).all()
    # the RNN's evaluations (steps 3, 4, 6, 8, 9, 10): the subset of 8 at steps 3 and 9, all 360
    # images (batches of 64) at the ends of the inversion, linear, anneal and finetune phases
    every = [64] * 5 + [40]
    assert [len(x) for x in seen] == [8, *every, *every, *every, 8, *every]
    assert torch.equal(torch.cat(seen[1:7]), test_x)  # every test image, once, in order
    # the final row is the trained model's accuracy on the whole test set
    ckpt = load_checkpoint(tmp_path / "runs/e/checkpoints/last.pt")
    suite = make_suite(*DIGITS, *tiny, *phases)
    rnn = CordsNet.from_config(suite.cfg)
    rnn.load_state_dict(ckpt["modules"]["rnn"])
    rnn.slope = 0.0
    with torch.no_grad():
        acc = probes.accuracy_over_time(rnn, test_x, test_y, 500, (2, 3, 2))
    assert ends.loc[10, "test_accuracy_full"] == float(acc[2 + 3 - 1])


def test_the_full_evaluation_streams_a_real_test_set(tmp_path):
    from tests.core.test_data import _write_mnist

    imgs, labels = _write_mnist(tmp_path / "data", "FashionMNIST", n=23)
    suite = make_suite(*DIGITS, "--dataset", "fashion_mnist", "--workers", "0", "--batch_size", "5",
                       "--n_eval", "4")
    suite.ctx.data_root = tmp_path / "data"
    batches = list(suite._full_test_batches())
    assert [len(y) for _, y in batches] == [5, 5, 5, 5, 3]
    assert torch.cat([y for _, y in batches]).tolist() == labels.tolist()
    want = torch.stack([suite._test_source[(0, i)][0] for i in range(23)])
    assert torch.equal(torch.cat([x for x, _ in batches]), want)


def test_a_resumed_run_needs_no_resnet18_file(run_main, tmp_path, monkeypatch):
    """The checkpoint holds the CNN that started from ResNet-18: a resume does not ask for the file."""
    import torchvision

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    where = tmp_path / "torch/hub/checkpoints/resnet18-f37072fd.pth"
    where.parent.mkdir(parents=True)
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), where)
    rc, err = run_main(*SMALL8, "--resnet18_weights", "torchvision", "--run_name", "r")
    assert rc == 0, err
    where.unlink()
    rc, err = run_main("--resume", str(tmp_path / "runs/r"), "--finetune_steps", "1")
    assert rc == 0, err
