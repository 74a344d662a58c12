"""torchrun with 2 CPU processes (gloo): replicas stay identical and only rank 0 writes."""
import os
import subprocess
import sys
from pathlib import Path

import torch

from tests.conftest import TOY

ROOT = Path(__file__).resolve().parents[2]


def _torchrun(tmp_path, name, *extra, nproc=2):
    env = {**os.environ, "TOY_DUMP_DIR": str(tmp_path / name), "OMP_NUM_THREADS": "1"}
    (tmp_path / name).mkdir()
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "main.py", "--model", TOY, "--device", "cpu", "--steps", "15", "--ckpt_every", "5",
           "--out_dir", str(tmp_path / "runs"), "--run_name", name, *extra]
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return out


def test_ddp_replicas_stay_identical(tmp_path):
    _torchrun(tmp_path, "ddp")
    r0 = torch.load(tmp_path / "ddp/rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "ddp/rank1.pt", weights_only=True)
    for k in r0:
        torch.testing.assert_close(r0[k], r1[k], rtol=0, atol=0)
    # the ranks saw different data, so without gradient averaging they would differ:
    # the DDP result must differ from a single process trained on rank 0's batches alone
    runs = list((tmp_path / "runs").iterdir())
    assert [r.name for r in runs] == ["ddp"]  # one run folder, made by rank 0
    ckpt = torch.load(tmp_path / "runs/ddp/checkpoints/last.pt", weights_only=True)
    assert ckpt["step"] == 15
    torch.testing.assert_close(ckpt["modules"]["net"]["weight"], r0["weight"])
    import yaml
    assert yaml.safe_load((tmp_path / "runs/ddp/meta.yaml").read_text())["world_size"] == 2

    out = subprocess.run([sys.executable, "main.py", "--model", TOY, "--device", "cpu", "--steps", "15",
                          "--out_dir", str(tmp_path / "single"), "--run_name", "one"],
                         cwd=ROOT, env={**os.environ, "TOY_DUMP_DIR": str(tmp_path / "ddp")},
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    single = torch.load(tmp_path / "ddp/rank0.pt", weights_only=True)
    assert not torch.equal(single["weight"], r1["weight"])


def test_a_recording_split_between_two_ranks_equals_one_process(tmp_path):
    """The generic split (``ExperimentsManager.record`` under torchrun): 10 trials in blocks of 3
    (a short last block) recorded by 2 ranks in rounds equal the one-process recording."""
    from core.store import RecordingStore

    common = ["--no_train_model", "--experiment", "--record_batch", "3"]
    out = _torchrun(tmp_path, "two", *common)
    assert "record (2 ranks)" in out.stderr
    one = subprocess.run([sys.executable, "main.py", "--model", TOY, "--device", "cpu", *common,
                          "--out_dir", str(tmp_path / "runs"), "--run_name", "one"],
                         cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                         timeout=300)
    assert one.returncode == 0, one.stderr[-2000:]
    a = RecordingStore.open(tmp_path / "runs/two/recordings/activity.zarr")
    b = RecordingStore.open(tmp_path / "runs/one/recordings/activity.zarr")
    assert a.complete and b.complete and a.n_trials == b.n_trials == 10
    assert a.attrs["weights_sha256"] == b.attrs["weights_sha256"]
    import numpy as np
    np.testing.assert_array_equal(a.read("y"), b.read("y"))
    assert np.abs(a.read("y")).sum() > 0


def test_rank0_failing_before_a_split_recording_stops_every_rank_with_one_line(tmp_path):
    """Rank 0 makes the stimuli alone while the others wait to record with it: when it fails, it
    prints its one line and exits with status 2, and the other ranks stop without a traceback of
    their own (torchrun then reports rank 0's failure)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOY_STIMULI_FAIL": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "main.py", "--model", TOY, "--device", "cpu", "--no_train_model", "--gen_exp_stim", "--experiment",
           "--out_dir", str(tmp_path / "runs"), "--run_name", "fail"]
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode != 0
    assert out.stderr.count("main.py: error: toy: the stimulus set cannot be made") == 1, out.stderr[-3000:]
    assert "[rank0]: Traceback" not in out.stderr and "[rank1]: Traceback" not in out.stderr, out.stderr[-3000:]
    assert "Connection" not in out.stderr and "exitcode  : 2" in out.stderr, out.stderr[-3000:]
