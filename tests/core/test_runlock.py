"""One process writes a run at a time: a second `--resume RUN` (or `analysis_main.py --run RUN`)
while another process holds the run is refused with one line; a killed holder leaves no lock."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from core.checkpoint import load_checkpoint
from tests.conftest import TOY

ROOT = Path(__file__).resolve().parents[2]


def _wait_for(predicate, proc, timeout=120.0):
    end = time.monotonic() + timeout
    while not predicate():
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        assert time.monotonic() < end, "timed out"
        time.sleep(0.1)


def test_a_second_process_is_refused_and_a_killed_one_leaves_no_lock(run_main, tmp_path):
    import analysis_main

    rc, err = run_main("--model", TOY, "--steps", "10", "--ckpt_every", "5", "--run_name", "r")
    assert rc == 0, err
    run = tmp_path / "runs/r"
    assert (run / ".lock").read_text() == ""  # released (and emptied) by the first command
    # another process resumes the run for a long time
    holder = subprocess.Popen([sys.executable, "main.py", "--resume", str(run), "--steps", "100000000",
                               "--ckpt_every", "1000000", "--threads", "1"],
                              cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        _wait_for(lambda: len(yaml.safe_load((run / "meta.yaml").read_text()).get("resumed") or []) == 1, holder)
        meta_before = (run / "meta.yaml").read_bytes()
        rc, err = run_main("--resume", str(run), "--steps", "20")
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert rc == 2 and lines == [lines[-1]] and "--resume" in err and "is in use by another process" in err
        assert f"pid {holder.pid}" in err
        assert (run / "meta.yaml").read_bytes() == meta_before  # nothing written by the refused one
        assert analysis_main.main(["--run", str(run), "--only", "weight_error"]) == 2
        assert not (run / "tables/weight_error").exists()
    finally:
        holder.send_signal(signal.SIGKILL)  # a crash: no clean-up at all
        holder.wait(timeout=60)
        holder.stderr.close()
    # the kernel dropped the killed process's lock: the run resumes and is analysed
    rc, err = run_main("--resume", str(run), "--steps", "20")
    assert rc == 0, err
    assert load_checkpoint(run / "checkpoints/last.pt")["step"] == 20
    assert analysis_main.main(["--run", str(run), "--only", "weight_error"]) == 0


def test_lock_is_held_for_the_command_and_refuses_in_process(tmp_path):
    from core.errors import UserError
    from core.runlock import RunLock

    with RunLock(tmp_path, "--resume"):
        try:
            RunLock(tmp_path, "--resume").acquire()
        except UserError as exc:
            assert "is in use by another process" in str(exc) and f"pid {os.getpid()}" in str(exc)
        else:
            raise AssertionError("a second lock was granted")
    with RunLock(tmp_path, "--resume"):  # released on exit
        pass
