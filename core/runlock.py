"""An exclusive lock on a run folder, so that two processes never write one run at once.

Every ``main.py`` that writes a run (a new one, or ``--resume RUN``) and every
``analysis_main.py --run RUN`` holds ``RUN/.lock`` with ``fcntl.flock`` until it exits; a
second one is refused with one line naming the holder. The kernel drops the lock when its
process ends however it ends (``kill -9``, a crash), so a lock is never stale: a later
command simply takes it. The file holds the holder's pid, host and command while it is
held, and is emptied on release.
"""
from __future__ import annotations

import datetime as _dt
import errno
import fcntl
import os
import platform
import sys
from pathlib import Path

from core.errors import UserError

LOCK_NAME = ".lock"


class RunLock:
    """``with RunLock(run_path, "--resume"):`` -- held for the block; :meth:`acquire`/:meth:`release` too."""

    def __init__(self, run_path: str | Path, flag: str):
        self.path = Path(run_path) / LOCK_NAME
        self.run_path, self.flag = Path(run_path), flag
        self.fd: int | None = None

    def acquire(self) -> "RunLock":
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise UserError(f"{self.flag}: cannot lock {self.run_path} ({exc.strerror or exc}); "
                            "the run folder must be writable") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _read(fd)
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise UserError(f"{self.flag}: {self.run_path} is in use by another process"
                                f"{f' ({holder})' if holder else ''}; wait for it to end (a killed or "
                                "crashed process releases its lock)") from None
            raise UserError(f"{self.flag}: cannot lock {self.run_path} ({exc.strerror or exc})") from None
        self.fd = fd
        note = (f"pid {os.getpid()} on {platform.node()} since "
                f"{_dt.datetime.now().isoformat(timespec='seconds')}: {' '.join(sys.argv)}")
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, note.encode(errors="replace")[:1000], 0)
        except OSError:
            pass  # the note only helps the message; the lock is what counts
        return self

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            os.ftruncate(self.fd, 0)
        except OSError:
            pass
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)
        self.fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _read(fd: int) -> str:
    try:
        text = os.pread(fd, 1000, 0).decode(errors="replace")
    except OSError:
        return ""
    return " ".join(text.split())
