"""A full or read-only disk mid-run: one line naming the path, exit 2, temporary files
removed, and the run resumes afterwards (issue 23, item 13)."""
import errno

import numpy as np
import pytest

from core.store import RecordingStore
from tests.conftest import TOY


def test_disk_full_while_writing_a_checkpoint(run_main, tmp_path, monkeypatch):
    import core.checkpoint as ck

    real = ck.torch.save
    calls = {"n": 0}

    def full(obj, path, *a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            with open(path, "wb") as fh:
                fh.write(b"PK partial")
            (tmp_path / "runs/d/checkpoints/.step_00000002.pt.stray.tmp").write_bytes(b"left behind")
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(obj, path, *a, **k)

    monkeypatch.setattr(ck.torch, "save", full)
    rc, err = run_main("--model", TOY, "--steps", "6", "--ckpt_every", "1", "--run_name", "d", "--experiment")
    assert rc == 2, err
    line = [l for l in err.splitlines() if "error" in l]
    assert len(line) == 1 and "Traceback" not in err
    assert "disk full / not writable" in line[0] and "nothing lost" in line[0]
    assert "--resume" in line[0] and "runs/d" in line[0] and "--experiment" in line[0]
    run = tmp_path / "runs/d"
    assert not list((run / "checkpoints").glob(".*.tmp")), list((run / "checkpoints").iterdir())
    monkeypatch.setattr(ck.torch, "save", real)
    rc, err = run_main("--resume", str(run), "--experiment")
    assert rc == 0, err


@pytest.mark.parametrize("code", [errno.EROFS, errno.ENOSPC])
def test_read_only_while_recording(run_main, tmp_path, monkeypatch, code):
    real = RecordingStore.write

    def ro(self, start, data, dims):
        if self.attrs.get("kind") == "activity" and start > 0:
            raise OSError(code, "Read-only file system" if code == errno.EROFS else "No space left on device",
                          str(self.path / "y"))
        return real(self, start, data, dims)

    monkeypatch.setattr(RecordingStore, "write", ro)
    rc, err = run_main("--model", TOY, "--steps", "2", "--run_name", "r", "--experiment",
                       "--n_trials", "8", "--record_batch", "4")
    assert rc == 2 and "Traceback" not in err, err
    assert "disk full / not writable" in err and "activity.zarr" in err
    monkeypatch.setattr(RecordingStore, "write", real)
    rc, err = run_main("--resume", str(tmp_path / "runs/r"), "--no_train_model", "--experiment")
    assert rc == 0 and "resuming recording: 1 block" in err, err
    assert RecordingStore.open(tmp_path / "runs/r/recordings/activity.zarr").complete


def test_read_only_while_writing_tables(run_main, tmp_path, monkeypatch, capsys):
    import analysis_main
    from core import outputs

    rc, err = run_main("--model", TOY, "--steps", "2", "--run_name", "t", "--experiment")
    assert rc == 0, err

    def ro(*a, **k):
        raise OSError(errno.EROFS, "Read-only file system", str(tmp_path / "runs/t/tables/x.csv"))

    monkeypatch.setattr(outputs, "atomic_write_text", ro)
    rc = analysis_main.main(["--run", str(tmp_path / "runs/t")])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err, err
    assert "disk full / not writable" in err and "tables/x.csv" in err and "analysis_main.py --run" in err
    assert np  # noqa
