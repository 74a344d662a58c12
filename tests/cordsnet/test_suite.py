"""CordsNet through the command line: every stage on the embedded digits, exact resume inside
a phase, published weights loaded as-is, and the recording compared with V1 by rsa."""
import numpy as np
import pandas as pd
import pytest
import torch

from core.checkpoint import load_checkpoint
from core.store import RecordingStore

TINY = ["--model", "cordsnet", "--dataset", "digits", "--depth", "2", "--input_size", "16",
        "--blank_steps", "4", "--stimulus_steps", "6", "--post_blank_steps", "4", "--loss_steps", "3",
        "--spont_steps", "2", "--cnn_steps", "6", "--inversion_steps", "4", "--linear_steps", "3",
        "--anneal_steps", "4", "--anneal_levels", "2", "--finetune_steps", "3", "--batch_size", "16",
        "--n_eval", "32", "--eval_every", "10", "--ckpt_every", "4", "--cnn_lr", "0.02", "--cnn_warmup", "2",
        "--n_orientations", "6", "--n_phases", "1", "--record_batch", "4", "--record_stride", "2",
        "--arnoldi_iters", "20", "--n_eigs", "5", "--power_iters", "60", "--power_trials", "4",
        "--dense_limit", "500", "--n_trajectories", "3", "--noise_levels", "0,1"]


def test_every_stage_runs_and_the_recording_compares_with_v1(run_main, tmp_path):
    rc, err = run_main(*TINY, "--run_name", "all", "--viz", "--gen_exp_stim", "--experiment", "--analyze")
    assert rc == 0, err
    run = tmp_path / "runs/all"
    for name in ("accuracy_time", "dynamics", "spectra", "jacobian", "robustness", "trajectories"):
        assert (run / "tables" / name / f"{name}.csv").is_file(), name
        assert list((run / "figures" / name).glob("*.png")), name
    assert (run / "figures/viz/stimuli.png").is_file()
    evals = pd.read_csv(run / "tables/training/evaluations.csv")
    assert {"cnn_test_accuracy_full", "test_accuracy_full", "n_test", "evaluated_on", "phase"} <= set(evals.columns)
    assert list(evals["step"]) == [6, 10, 13, 17, 20]  # each phase's end (every 10th step falls on one)
    spectra = pd.read_csv(run / "tables/spectra/spectra.csv")
    assert set(spectra["method"]) == {"arnoldi_20"}  # 64 x 4 x 4 = 1024 units > dense_limit
    assert (spectra["ritz_residual"] >= 0).all()
    acc = pd.read_csv(run / "tables/accuracy_time/accuracy_time.csv")
    assert len(acc) == 14 and set(acc["phase"]) == {"blank", "stimulus", "post"}
    store = RecordingStore.open(run / "recordings/activity.zarr")
    assert store.complete and set(store.variables) == {"area0", "area1", "logits"}
    assert store.dims("area0") == ("trial", "time", "channel", "y", "x")
    assert store.shape("area0") == (6, 7, 64, 4, 4)  # 14 steps recorded every 2nd
    np.testing.assert_allclose(np.sort(store.coords["orientation"]), -90 + 30 * np.arange(6))
    assert np.isfinite(store.read("area1")).all()

    # CordsNet against V1: rsa's v1_likeness on this recording (the README command)
    rc, err = run_main("--config", "configs/rsa_quick.yaml", "--no_train_model", "--analyze", "--only",
                       "v1_likeness", "--compare_recording", str(run / "recordings/activity.zarr"),
                       "--v1_source", "synthetic", "--run_name", "v1")
    assert rc == 0, err
    best = pd.read_csv(tmp_path / "runs/v1/tables/v1_likeness/most_v1_like.csv")
    assert set(best["variable"]) <= {"area0", "area1", "logits"} and len(best)


def test_resume_inside_the_inversion_phase_is_exact(run_main, tmp_path, monkeypatch):
    """Killed inside phase 2 and resumed: the same weights as an uninterrupted run through the
    later phase boundaries, bit for bit (the gradient-norm clip once counted stale phase-1
    gradients in an uninterrupted process only)."""
    rc, err = run_main(*TINY, "--run_name", "full", "--keep_checkpoints", "9")
    assert rc == 0, err
    from cordsnet import pipeline

    real = pipeline.inversion_loss
    calls = {"n": 0}

    def dying(*a, **k):
        calls["n"] += 1
        if calls["n"] == 4:  # step 9, inside the inversion (steps 6..9); last checkpoint: step 8
            raise KeyboardInterrupt("killed")
        return real(*a, **k)
    monkeypatch.setattr(pipeline, "inversion_loss", dying)
    with pytest.raises(KeyboardInterrupt):
        run_main(*TINY, "--run_name", "cut", "--keep_checkpoints", "9")
    assert load_checkpoint(tmp_path / "runs/cut/checkpoints/last.pt")["step"] == 8
    monkeypatch.setattr(pipeline, "inversion_loss", real)
    rc, err = run_main("--resume", str(tmp_path / "runs/cut"))
    assert rc == 0, err
    for name in ("step_00000012.pt", "step_00000016.pt", "last.pt"):
        a = load_checkpoint(tmp_path / "runs/full/checkpoints" / name)
        b = load_checkpoint(tmp_path / "runs/cut/checkpoints" / name)
        assert a["step"] == b["step"]
        for mod in ("rnn", "cnn"):
            for k in a["modules"][mod]:
                x, y = a["modules"][mod][k], b["modules"][mod][k]
                torch.testing.assert_close(x, y, rtol=0, atol=0, msg=f"{name} {mod} {k}")


def test_published_state_dict_loads_as_is(run_main, tmp_path):
    from cordsnet.model import CordsNet

    torch.manual_seed(0)
    net = CordsNet(2, 1, 10, 16)
    state = net.state_dict()
    path = tmp_path / "published.pth"
    torch.save(state, path)  # the published format: a bare state dict with weight-norm keys
    rc, err = run_main(*TINY, "--pipeline", "direct", "--cnn_steps", "0", "--inversion_steps", "0",
                       "--linear_steps", "0", "--anneal_steps", "0", "--finetune_steps", "0",
                       "--pretrained", str(path), "--no_train_model", "--analyze", "--only", "spectra",
                       "--dense_limit", "2000", "--run_name", "pub")
    assert rc == 0, err
    spectra = pd.read_csv(tmp_path / "runs/pub/tables/spectra/spectra.csv")
    from cordsnet import eigen
    w = net.recurrent_weight(0).detach().double()
    top = eigen.conv_eigs(w, 4, 4, k=1, dense_max=10**6)
    assert spectra[spectra["area"] == "area0"]["modulus"].max() == pytest.approx(float(top.abs()[0]), rel=1e-4)
    # a file of another depth is refused with one line before anything is written
    torch.save(CordsNet(4, 1, 10, 16).state_dict(), tmp_path / "r4.pth")
    rc, err = run_main(*TINY, "--pretrained", str(tmp_path / "r4.pth"), "--run_name", "bad")
    assert rc == 2 and "does not fit CordsNet R2" in err and not (tmp_path / "runs/bad").exists()


def test_own_images_folder_is_recorded(run_main, tmp_path):
    from PIL import Image

    folder = tmp_path / "mine"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray((rng.random((20, 30, 3)) * 255).astype("uint8")).save(folder / f"im{i}.png")
    rc, err = run_main(*TINY, "--pipeline", "direct", "--cnn_steps", "0", "--inversion_steps", "0",
                       "--linear_steps", "0", "--anneal_steps", "0", "--no_train_model",
                       "--stimulus_folder", str(folder), "--experiment", "--run_name", "own")
    assert rc == 0, err
    store = RecordingStore.open(tmp_path / "runs/own/recordings/activity.zarr")
    assert store.n_trials == 3 and list(store.coords["file"]) == ["im0.png", "im1.png", "im2.png"]
    rc, err = run_main(*TINY, "--stimulus_folder", str(tmp_path / "nothing"), "--experiment", "--run_name", "x")
    assert rc == 2 and "--stimulus_folder" in err
    (folder / "z_broken.png").write_bytes(b"not an image")  # refused before anything is written
    rc, err = run_main(*TINY, "--stimulus_folder", str(folder), "--experiment", "--run_name", "broken")
    assert rc == 2 and "z_broken.png" in err and not (tmp_path / "runs/broken").exists()


def test_real_data_path_with_workers_resumes_exactly(run_main, tmp_path):
    """A torchvision-layout Fashion-MNIST (written here): published transforms in two loader
    workers, CutMix/MixUp, per-phase batch sizes; a run stopped and resumed sees the same batches."""
    from tests.core.test_data import _write_mnist

    _write_mnist(tmp_path / "data", "FashionMNIST", n=40)
    argv = [*TINY, "--dataset", "fashion_mnist", "--data_root", str(tmp_path / "data"), "--workers", "2",
            "--phase_batch_sizes", "8,8,4,4,4", "--n_eval", "16", "--cnn_steps", "4", "--inversion_steps", "2",
            "--linear_steps", "2", "--anneal_steps", "2", "--finetune_steps", "2", "--eval_every", "0"]
    rc, err = run_main(*argv, "--run_name", "full")
    assert rc == 0, err
    rc, err = run_main(*argv, "--run_name", "half", "--cnn_steps", "4", "--inversion_steps", "2",
                       "--linear_steps", "0", "--anneal_steps", "0", "--finetune_steps", "0")
    assert rc == 0, err
    rc, err = run_main("--resume", str(tmp_path / "runs/half"), "--linear_steps", "2", "--anneal_steps", "2",
                       "--finetune_steps", "2", "--data_root", str(tmp_path / "data"))
    assert rc == 0, err
    a = load_checkpoint(tmp_path / "runs/full/checkpoints/last.pt")
    b = load_checkpoint(tmp_path / "runs/half/checkpoints/last.pt")
    assert a["step"] == b["step"] == 12
    for k, v in a["modules"]["rnn"].items():
        torch.testing.assert_close(v, b["modules"]["rnn"][k], rtol=0, atol=0)
    # a missing real set is one line before anything is written
    rc, err = run_main(*TINY, "--dataset", "cifar10", "--data_root", str(tmp_path / "none"), "--run_name", "m")
    assert rc == 2 and "data set 'cifar10' not found" in err and not (tmp_path / "runs/m").exists()


@pytest.mark.parametrize("name", ["imagenet", "cifar10", "cifar100", "mnist", "fashion_mnist"])
def test_full_scale_presets_parse_and_ask_for_their_data(run_main, tmp_path, name):
    import main

    args, suite, cfg = main.parse_args(["--config", f"configs/cordsnet_{name}.yaml", "--no_train_model"])
    assert cfg.dataset == name and cfg.depth == 8 and cfg.input_size == 224
    assert list(cfg.phase_steps) == ["cnn", "inversion", "linear", "anneal", "finetune"]
    # the published global batches (phase 1 in one process, phase 2 on 2 GPUs, phases 3-5 on 4) and start
    assert cfg.phase_batch_sizes == [256, 128, 32, 8, 8] and cfg.blank_steps == cfg.stimulus_steps == 100
    assert cfg.resnet18_weights == "torchvision"
    n = {"imagenet": 1281167, "cifar10": 50000, "cifar100": 50000, "mnist": 60000, "fashion_mnist": 60000}[name]

    def epoch(gpus, per_gpu):  # a published epoch: DistributedSampler(drop_last=False) batches per rank
        return -(-(-(-n // gpus)) // per_gpu)
    assert cfg.phase_steps == {"cnn": 300 * epoch(1, 256), "inversion": 100 * epoch(2, 64),
                               "linear": 100 * epoch(4, 8), "anneal": 20 * epoch(4, 2),
                               "finetune": 20 * epoch(4, 2)}
    rc, err = run_main("--config", f"configs/cordsnet_{name}.yaml", "--data_root", str(tmp_path / "none"))
    assert rc == 2 and f"data set '{name}' not found" in err


def test_every_phase_under_torchrun(tmp_path):
    """Two CPU processes (gloo): each phase trains another part of the model, so DDP is set up
    per phase; the run finishes and rank 0 alone writes it."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "main.py",
           *TINY, "--device", "cpu", "--ddp_find_unused", "true", "--out_dir", str(tmp_path / "runs"),
           "--run_name", "ddp"]
    out = subprocess.run(cmd, cwd=root, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    ckpt = load_checkpoint(tmp_path / "runs/ddp/checkpoints/last.pt")
    assert ckpt["step"] == 20 and ckpt["phase_index"] == 4
    assert [p.name for p in (tmp_path / "runs").iterdir()] == ["ddp"]


def test_own_images_use_the_published_process_image(tmp_path):
    """Own images through the published ``process_image`` (ImageNet: Resize(256), CenterCrop(224),
    the set's mean/std), for a square and a non-square (300 x 240) image."""
    from PIL import Image
    from torchvision.transforms import v2

    from cordsnet import data as D
    from cordsnet import stimuli

    rng = np.random.default_rng(1)
    for i, (h, w) in enumerate([(224, 224), (240, 300)]):
        Image.fromarray((rng.random((h, w, 3)) * 255).astype("uint8")).save(tmp_path / f"im{i}.png")
    process_image = v2.Compose([v2.Resize(256), v2.CenterCrop(224), v2.ToImage(), v2.ToDtype(torch.float32, scale=True),
                                v2.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])])
    want = torch.stack([process_image(Image.open(tmp_path / f"im{i}.png").convert("RGB")) for i in range(2)])
    images, _ = stimuli.folder_images(tmp_path, 224, 3, resize=D.eval_resize("imagenet", 224))
    mean, std = D.channel_stats("imagenet", 224)
    torch.testing.assert_close((images - mean) / std, want, rtol=0, atol=1e-5)


def test_own_images_through_published_weights_need_no_data_set(run_main, tmp_path):
    """The README's own-images command (--pretrained, no training, own images recorded) with no
    data set on disk: it runs, and the weights file (path, SHA-256) is the recorded source."""
    import hashlib

    import yaml
    from PIL import Image

    from cordsnet.model import CordsNet

    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i, (h, w) in enumerate([(16, 16), (24, 30)]):
        Image.fromarray((rng.random((h, w, 3)) * 255).astype("uint8")).save(folder / f"im{i}.png")
    torch.manual_seed(0)
    path = tmp_path / "r2.pth"
    torch.save(CordsNet(2, 3, 1000, 16).state_dict(), path)  # the published format, ImageNet classes
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    argv = [*TINY, "--dataset", "imagenet", "--data_root", str(tmp_path / "no_data"), "--pretrained", str(path),
            "--no_train_model"]
    rc, err = run_main(*argv, "--gen_exp_stim", "--experiment", "--stimulus_folder", str(folder), "--run_name", "own")
    assert rc == 0, err
    assert "initial weights" not in err
    run = tmp_path / "runs/own"
    store = RecordingStore.open(run / "recordings/activity.zarr")
    assert store.n_trials == 2
    assert str(path.resolve()) in store.attrs["weights_source"] and sha in store.attrs["weights_source"]
    meta = yaml.safe_load((run / "meta.yaml").read_text())
    assert str(path.resolve()) in meta["loaded_from"] and sha in meta["loaded_from"]
    # spectra read no data set either; an analysis that reads test images asks for it
    rc, err = run_main(*argv, "--analyze", "--only", "spectra", "--run_name", "sp")
    assert rc == 0, err
    rc, err = run_main(*argv, "--analyze", "--only", "robustness", "--run_name", "rob")
    assert rc == 2 and "imagenet" in err and not (tmp_path / "runs/rob").exists()


def test_own_image_fit_pad_and_none_closed_form():
    """pad letterboxes (the longer side to the input size, the rest the fill colour), none
    resizes a square image only, crop stays the published centre crop."""
    from PIL import Image
    from torchvision.transforms import v2

    from cordsnet import stimuli

    wide = Image.fromarray(np.full((10, 20), 255, np.uint8))           # 20 wide, 10 high, white
    x = stimuli.fit_image(wide, 16, "pad", fill=torch.full((1, 1, 1), 0.25))
    assert x.shape == (1, 16, 16)
    assert (x[:, 4:12] == 1).all() and (x[:, :4] == 0.25).all() and (x[:, 12:] == 0.25).all()
    tall = Image.fromarray(np.full((30, 3), 255, np.uint8))            # 3 wide, 30 high: 2 px after resize
    x = stimuli.fit_image(tall, 16, "pad")
    assert (x[:, :, 7:9] == 1).all() and (x[:, :, :7] == 0).all() and (x[:, :, 9:] == 0).all()
    rng = np.random.default_rng(2)
    square = Image.fromarray((rng.random((24, 24)) * 255).astype("uint8"))
    want = v2.Compose([v2.Resize((16, 16)), v2.ToImage(), v2.ToDtype(torch.float32, scale=True)])(square)
    torch.testing.assert_close(stimuli.fit_image(square, 16, "none"), want, rtol=0, atol=0)
    with pytest.raises(ValueError, match="not square"):
        stimuli.fit_image(wide, 16, "none")
