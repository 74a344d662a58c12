"""nrflv resume is exact with each preset's own schedule: the decaying Adam rate (x lr_decay_gamma per
epoch), the initialiser's SGD, element-wise clipping and the replay buffer, compared bit for bit
with an uninterrupted run."""
import pytest

from core.checkpoint import load_checkpoint
from nrflv import suite as nrflv_suite
from nrflv.replay import ReplayBuffer
from tests.resume_helpers import assert_same_training_state, killed

# small sizes; the schedule keys (lr, lr_decay_gamma, initter_network_lr, clip_grad, initializer,
# weight norms) stay the preset's. 16 images in batches of 8: the rate decays every 2 updates.
SMALL = ["--steps", "7", "--batch_size", "8", "--n_images", "16", "--num_it_pos", "3", "--num_it_neg", "3",
         "--num_burn_in_steps", "2", "--buffer_size", "12", "--model_save_interval", "1",
         "--img_logging_interval", "0", "--scalar_logging_interval", "1", "--dataset", "natural_patches",
         "--keep_checkpoints", "20"]
# the thesis preset's schedule on the quick architecture (the real one: marked slow, ~20 s)
THESIS_SCHEDULE_SMALL = ["--architecture", "nrflv_quick", "--max_sq_sigma", "0.0001"]


def _buffer(run, ckpt):
    state = ckpt["suite_state"]["replay"]
    buf = ReplayBuffer(state["shapes"], capacity=state["capacity"])
    buf.load(state, run / "replay")
    return buf.contents()


@pytest.mark.parametrize("preset, extra", [("nrflv_quick", []), ("nrflv_thesis", THESIS_SCHEDULE_SMALL),
                                           pytest.param("nrflv_thesis", [], marks=pytest.mark.slow,
                                                        id="nrflv_thesis-thesis_architecture")])
def test_resume_with_the_presets_decaying_rate_is_bitwise_exact(run_main, tmp_path, monkeypatch, preset, extra):
    argv = ["--config", f"configs/{preset}.yaml", *SMALL, *extra, "--threads", "1"]
    rc, err = run_main(*argv, "--run_name", "full")
    assert rc == 0, err
    full = tmp_path / "runs/full"
    # killed inside step 3 (checkpoint of step 3 written), resumed twice more after kills at later steps
    killed(run_main, monkeypatch, nrflv_suite.NRFLVSuite, "negative_phase", 4, *argv, "--run_name", "cut")
    cut = tmp_path / "runs/cut"
    assert load_checkpoint(cut / "checkpoints/last.pt")["step"] == 3
    killed(run_main, monkeypatch, nrflv_suite.NRFLVSuite, "negative_phase", 2, "--resume", str(cut))
    assert load_checkpoint(cut / "checkpoints/last.pt")["step"] == 4
    rc, err = run_main("--resume", str(cut))
    assert rc == 0, err
    for step in range(4, 8):
        a = load_checkpoint(full / f"checkpoints/step_{step:08d}.pt")
        b = load_checkpoint(cut / f"checkpoints/step_{step:08d}.pt")
        assert_same_training_state(a, b)
        rates = [g["lr"] for g in b["optimizer"]["adam"]["param_groups"]]
        cfg = b["config"]
        assert rates == [cfg["lr"] * cfg["lr_decay_gamma"] ** ((step - 1) * 8 // 16)]
    # the replay buffer itself (the manifests compared above name the same chunk hashes)
    a, b = (load_checkpoint(r / "checkpoints/last.pt") for r in (full, cut))
    for x, y in zip(_buffer(full, a), _buffer(cut, b), strict=True):
        assert x.shape[0] == 12 and x.equal(y)


def test_kill_9_at_any_moment_then_resume_is_bitwise_exact(run_main, tmp_path):
    """A real SIGKILL of a training process (wherever it is: sampling, writing a checkpoint or a replay
    chunk), then --resume: the same checkpoints and buffer as the uninterrupted run."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    argv = ["--config", "configs/nrflv_quick.yaml", *SMALL, "--threads", "1"]
    rc, err = run_main(*argv, "--run_name", "full")
    assert rc == 0, err
    cut = tmp_path / "runs/cut"
    proc = subprocess.Popen([sys.executable, "main.py", *argv, "--run_name", "cut", "--out_dir", str(tmp_path / "runs")],
                            cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "PYTHONPATH": str(root)})
    end = time.monotonic() + 120
    while not (cut / "checkpoints/step_00000003.pt").exists() and proc.poll() is None:
        assert time.monotonic() < end
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=60) == -signal.SIGKILL  # killed, not finished
    assert load_checkpoint(cut / "checkpoints/last.pt")["step"] < 7
    rc, err = run_main("--resume", str(cut))
    assert rc == 0, err
    full = tmp_path / "runs/full"
    for step in range(4, 8):
        name = f"checkpoints/step_{step:08d}.pt"
        assert_same_training_state(load_checkpoint(full / name), load_checkpoint(cut / name))
    a, b = (load_checkpoint(r / "checkpoints/last.pt") for r in (full, cut))
    for x, y in zip(_buffer(full, a), _buffer(cut, b), strict=True):
        assert x.equal(y)
