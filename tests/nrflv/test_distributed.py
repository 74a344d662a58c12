"""nrflv under torchrun (2 gloo processes on the CPU): the same chains, energies, parameters and
replay buffer as one process with the whole batch, and an exact resume after kill -9, also on
another number of processes."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from core.checkpoint import load_checkpoint
from nrflv.replay import ReplayBuffer

ROOT = Path(__file__).resolve().parents[2]
PY = sys.executable
# 4 chains per update (2 per rank), 3 of them replayed (rank 0: both, rank 1: one replayed, one fresh);
# a buffer of 6 rows (slots 0-2 on rank 0, 3-5 on rank 1) that wraps in the middle of an update
TINY = ["--config", "configs/nrflv_quick.yaml", "--device", "cpu", "--batch_size", "4", "--n_images", "16",
        "--num_it_pos", "3", "--num_it_neg", "4", "--num_burn_in_steps", "2", "--buffer_size", "6",
        "--sample_buffer_prob", "0.75", "--model_save_interval", "1", "--scalar_logging_interval", "1",
        "--img_logging_interval", "0", "--keep_checkpoints", "20", "--neg_it_schedule", "true",
        "--threads", "1"]


def _cmd(nproc: int, *args) -> list[str]:
    head = [PY, "main.py"] if nproc == 1 else \
        [PY, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", "main.py"]
    return head + list(args)


def _run(nproc: int, *args) -> subprocess.CompletedProcess:
    out = subprocess.run(_cmd(nproc, *args), cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"},
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return out


def _buffer(run: Path, ckpt: dict) -> list[torch.Tensor]:
    """The replay buffer of a checkpoint, loaded in this (single) process."""
    state = ckpt["suite_state"]["replay"]
    buf = ReplayBuffer(state["shapes"], capacity=state["capacity"])
    buf.load(state, run / "replay")
    return buf.contents()


def _assert_close_runs(a: Path, b: Path, steps, exact: bool) -> None:
    tol = dict(rtol=0, atol=0) if exact else dict(rtol=1e-5, atol=1e-6)
    for step in steps:
        x, y = (load_checkpoint(r / f"checkpoints/step_{step:08d}.pt") for r in (a, b))
        for name in x["modules"]:
            for key, t in x["modules"][name].items():
                torch.testing.assert_close(y["modules"][name][key], t, **tol, msg=f"{name}.{key} at {step}")
        hx, hy = x["suite_state"]["neg_it_schedule"], y["suite_state"]["neg_it_schedule"]
        assert len(hx["pos"]) == step  # the global energies E+, E- of every update so far
        torch.testing.assert_close(torch.tensor(hy["pos"] + hy["neg"], dtype=torch.float64),
                                   torch.tensor(hx["pos"] + hx["neg"], dtype=torch.float64),
                                   rtol=0 if exact else 1e-5, atol=0 if exact else 1e-3)
        assert y["suite_state"]["replay"]["total_pushed"] == x["suite_state"]["replay"]["total_pushed"] == 4 * step
    # the final negative states of the last updates (the chains' trajectories), in chain order (the
    # chunk files of older checkpoints are pruned: the latest one's buffer)
    for s, t in zip(_buffer(b, y), _buffer(a, x), strict=True):
        assert s.shape[0] == 6
        torch.testing.assert_close(s, t, **tol)


@pytest.mark.slow  # two torchrun launches (~40 s each case)
@pytest.mark.parametrize("initializer", ["ff_init", "random"])
def test_two_processes_follow_the_chains_of_one(tmp_path, initializer):
    """2 ranks x 2 chains == 1 process x 4 chains: states, energies and parameters over 4 updates (the
    positive phase starting from the initialiser, or from U[-1, 1] drawn for the whole batch)."""
    runs = tmp_path / "runs"
    args = [*TINY, "--steps", "4", "--initializer", initializer, "--out_dir", str(runs)]
    _run(1, *args, "--run_name", "one")
    _run(2, *args, "--run_name", "two")
    _assert_close_runs(runs / "one", runs / "two", range(1, 5), exact=False)
    # each rank wrote the rows of its slots: chunk files of both ranks, one manifest
    chunks = load_checkpoint(runs / "two/checkpoints/last.pt")["suite_state"]["replay"]["chunks"]
    assert len(chunks) >= 2


@pytest.mark.slow  # a torchrun launch (~15 s); the check itself: tests/nrflv/test_chain_shares.py
def test_refuses_a_batch_that_does_not_divide(tmp_path):
    out = subprocess.run(_cmd(2, *TINY, "--batch_size", "5", "--steps", "1", "--out_dir", str(tmp_path / "runs")),
                         cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode != 0
    assert "--batch_size 5" in out.stderr and "divide between 2 processes" in out.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("*.pt"))


def _descendants(pid: int) -> list[int]:
    """Every live process below ``pid`` (from /proc): torchrun's workers run in sessions of their own."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _kill_after_checkpoint(cmd: list[str], ckpt: Path) -> None:
    """Start ``cmd`` and, once ``ckpt`` exists, SIGKILL it and every process below it (the workers first)."""
    proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        while not ckpt.exists():
            if proc.poll() is not None:
                pytest.fail(f"the run ended before {ckpt.name}: {proc.stderr.read()[-2000:]}")
            time.sleep(0.02)
        for pid in reversed(_descendants(proc.pid)):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.kill()
    finally:
        proc.wait()
        proc.stderr.close()


@pytest.mark.slow
def test_kill_9_under_torchrun_then_resume_on_two_or_one_processes(tmp_path):
    """A 2-process run killed -9 after its checkpoint of step 2 resumes on 2 processes bit for bit, and on
    1 process (the buffer re-sharded: same chains) to float tolerance."""
    runs = tmp_path / "runs"
    args = [*TINY, "--steps", "5", "--out_dir", str(runs)]
    _run(2, *args, "--run_name", "full")
    for name in ("cut2", "cut1"):
        _kill_after_checkpoint(_cmd(2, *args, "--run_name", name), runs / name / "checkpoints/step_00000002.pt")
        assert load_checkpoint(runs / name / "checkpoints/last.pt")["step"] in (2, 3)  # killed mid-run
    _run(2, "--resume", str(runs / "cut2"))
    _assert_close_runs(runs / "full", runs / "cut2", range(3, 6), exact=True)
    _run(1, "--resume", str(runs / "cut1"))
    _assert_close_runs(runs / "full", runs / "cut1", range(3, 6), exact=False)


@pytest.mark.slow
def test_recording_split_between_two_processes_is_the_one_process_recording(tmp_path):
    """--experiment under torchrun: blocks recorded by both ranks in turn, committed by rank 0; the
    activity and the control recordings equal a single process's bit for bit."""
    from core.store import RecordingStore

    runs = tmp_path / "runs"
    rec = [*TINY, "--no_train_model", "--experiment", "--stimulus_sets", "just_angle", "--just_angle_directions", "8",
           "--record_batch", "3", "--exp_burn_in", "2", "--exp_blank_before", "3", "--exp_stimulus", "3",
           "--exp_blank_after", "2", "--record_movie_every", "2", "--out_dir", str(runs)]
    _run(1, *rec, "--run_name", "one")
    out = _run(2, *rec, "--run_name", "two")
    assert "record (2 ranks)" in out.stderr
    for name in ("activity", "control"):
        a, b = (RecordingStore.open(runs / r / f"recordings/{name}.zarr") for r in ("one", "two"))
        assert a.complete and b.complete and a.n_trials == b.n_trials and a.n_trials % 3 != 0  # a last short block
        assert a.variables == b.variables and "state" in a.variables
        for v in a.variables:
            x, y = a.read(v), b.read(v)
            assert x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes(), (name, v)
