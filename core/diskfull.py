"""A full or read-only disk in the middle of a run: one line, not a traceback.

Every file a run writes is written atomically (a temporary file renamed into place:
checkpoints, tables, ``meta.yaml``) or committed block by block (recordings), so a write
that fails leaves the previous state intact. :func:`disk_failure` recognises such a
failure (``ENOSPC``, ``EROFS``, a quota, a permission, or torch's own message for a
checkpoint it could not finish) anywhere in an exception's chain; the entry points then
remove the temporary files left behind (:func:`remove_temporaries`) and say what to rerun.
"""
from __future__ import annotations

import errno
from pathlib import Path

#: errno values that mean "cannot write here", not a bug
DISK_ERRNOS = {errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EFBIG}
_TORCH_WRITE_FAILED = ("PytorchStreamWriter failed writing", "file write failed", "unexpected pos")


def disk_failure(exc: BaseException) -> tuple[str, str] | None:
    """``(path or '', reason)`` when ``exc`` (or an exception it was raised from) is a failed
    write to disk; None otherwise."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in DISK_ERRNOS:
            path = exc.filename if isinstance(exc.filename, (str, Path)) else ""
            reason = "disk full" if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG) else "not writable"
            return str(path), f"{reason}: {exc.strerror or errno.errorcode.get(exc.errno, exc.errno)}"
        if isinstance(exc, RuntimeError) and any(s in str(exc) for s in _TORCH_WRITE_FAILED):
            return "", "could not finish writing a checkpoint (disk full?)"
        exc = exc.__cause__ or exc.__context__
    return None


def remove_temporaries(run_path: str | Path | None) -> list[Path]:
    """Remove the temporary files of interrupted atomic writes in a run folder
    (``checkpoints/.step_*.pt.*.tmp``, ``.last.pt.*.tmp``, ``tables/**/.*.tmp``, ...)."""
    removed: list[Path] = []
    if run_path is None or not Path(run_path).is_dir():
        return removed
    root = Path(run_path)
    candidates = [*root.glob(".*.tmp"), *root.glob("checkpoints/.*.tmp"), *root.glob("tables/**/.*.tmp")]
    for p in candidates:
        try:
            p.unlink()
            removed.append(p)
        except OSError:
            pass  # read-only: nothing can be cleaned, and nothing was half-written in place
    return removed


def message(exc: BaseException, run_path: str | Path | None, rerun: str) -> str | None:
    """The one-line message for a disk failure, or None when ``exc`` is not one."""
    found = disk_failure(exc)
    if found is None:
        return None
    path, reason = found
    where = path or (str(run_path) if run_path else "the run folder")
    return (f"disk full / not writable: {where} ({reason}); nothing lost (every file is replaced "
            f"atomically, recordings by whole blocks); free space or fix permissions, then resume with: {rerun}")
