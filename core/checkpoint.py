"""Checkpoints: atomic writes, safe loads, clear errors on mismatch.

A checkpoint is a plain dict of tensors and Python scalars/strings/lists/dicts::

    {"format_version": 1, "model": "snn_dales", "config": {...},
     "modules": {name: state_dict}, "optimizer": state_dict | None,
     "step": int, "suite_state": {...}, "loop_state": {...}, "torch_version": str}

It is written to a temporary file in the same folder and moved into place with
``os.replace`` (atomic on POSIX), and read back with ``torch.load(weights_only=True)`` on
the CPU, so a checkpoint from the internet cannot run code.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Any, Mapping

import torch

from core.config import to_dict
from core.errors import CheckpointMismatch, UserError

FORMAT_VERSION = 1


@contextlib.contextmanager
def atomic_target(path: str | Path):
    """Yield a temporary path beside ``path``; on success it is synced and renamed onto ``path``.

    Readers see the old file or the new one, never half a file; on error the temporary
    file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield tmp
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_target(path) as tmp:
        Path(tmp).write_bytes(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def save_checkpoint(obj: Mapping[str, Any], path: str | Path) -> None:
    """Atomically save a checkpoint dict (read back on the CPU by :func:`load_checkpoint`)."""
    with atomic_target(path) as tmp:
        torch.save(dict(obj), tmp)


def safe_load(path: str | Path, what: str) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU, quietly: a file that is not a
    PyTorch file, is truncated, or holds Python objects (a pickle that would run code) is a
    one-line :class:`UserError` naming ``what`` (e.g. ``--resnet18_weights file``), and torch's
    warnings about old pickle protocols are not printed above it."""
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - pickle errors, truncated files, unsafe globals
        raise UserError(f"cannot read {what} {path} safely (weights_only=True): {_load_reason(exc)}") from None


def _load_reason(exc: BaseException) -> str:
    """The informative part of a failed ``torch.load`` (not its advice to load unsafely)."""
    text = " ".join(str(exc).split())
    if text.startswith("Weights only load failed"):
        detail = text.split("trusted source.", 1)[-1].split("Check the documentation", 1)[0]
        detail = detail.split("WeightsUnpickler error:", 1)[-1].strip().rstrip(".")
        return (f"the safe loader refused it ({detail or 'unsupported content'}): it is not a file of plain "
                "tensors but damaged bytes or a pickle of other objects, which could run code")
    return text[:300] or type(exc).__name__


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint on the CPU with ``weights_only=True``; unreadable files are a UserError."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path}")
    ckpt = safe_load(path, "checkpoint")
    if not isinstance(ckpt, dict):
        raise UserError(f"{path} is not a checkpoint of this toolkit (expected a dict)")
    return ckpt


def state_dict_mismatches(expected: Mapping[str, torch.Tensor],
                          found: Mapping[str, torch.Tensor]) -> list[str]:
    """Differences between two state dicts: missing keys, unexpected keys, shape changes."""
    problems = []
    for k in sorted(set(expected) - set(found)):
        problems.append(f"missing {k} {tuple(expected[k].shape)}")
    for k in sorted(set(found) - set(expected)):
        problems.append(f"unexpected {k} {tuple(getattr(found[k], 'shape', ()))}")
    for k in sorted(set(expected) & set(found)):
        a, b = expected[k], found[k]
        if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape != b.shape:
            problems.append(f"shape of {k}: model {tuple(a.shape)} vs checkpoint {tuple(b.shape)}")
    return problems


def load_module_states(modules: Mapping[str, torch.nn.Module],
                       states: Mapping[str, Mapping[str, torch.Tensor]], source: str) -> None:
    """Load each module's state dict, after checking that every key and shape fits.

    Raises :class:`CheckpointMismatch` listing all mismatches at once.
    """
    problems = []
    for name in sorted(set(modules) - set(states)):
        problems.append(f"module {name!r} missing from checkpoint")
    for name in sorted(set(states) - set(modules)):
        problems.append(f"checkpoint has unknown module {name!r}")
    for name in sorted(set(modules) & set(states)):
        problems += [f"{name}: {p}" for p in state_dict_mismatches(modules[name].state_dict(), states[name])]
    if problems:
        raise CheckpointMismatch(f"checkpoint {source} does not fit the model: " + "; ".join(problems))
    for name, module in modules.items():
        module.load_state_dict(states[name])


def checkpoint_dict(suite, modules: dict[str, torch.nn.Module], *, step: int,
                    optimizer: torch.optim.Optimizer | None = None, phase_index: int = 0,
                    loop_state: dict | None = None) -> dict[str, Any]:
    """A checkpoint of ``suite`` (a :class:`core.suite.ModelSuite`) at ``step``, in the format above."""
    return {
        "format_version": FORMAT_VERSION,
        "model": suite.name,
        "config": to_dict(suite.cfg),
        "modules": {k: m.state_dict() for k, m in modules.items()},
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "step": int(step),
        "phase_index": int(phase_index),
        "suite_state": suite.state_dict(),
        "loop_state": dict(loop_state or {}),
        "torch_version": str(torch.__version__),
    }


def load_into(suite, modules: dict[str, torch.nn.Module], ckpt: dict, source: str) -> None:
    """Load a checkpoint's module states (and the suite's own state) with full checking."""
    if ckpt.get("model") not in (None, suite.name):
        raise UserError(f"checkpoint {source} is of model {ckpt.get('model')!r}, not {suite.name!r}")
    if "modules" not in ckpt:
        raise UserError(f"checkpoint {source} has no 'modules' entry; is it from this toolkit?")
    load_module_states(modules, ckpt["modules"], source)
    suite.load_state_dict(ckpt.get("suite_state") or {})
