"""Finite-value checks and weight fingerprints: a number computed from NaN, or from other
weights than the user thinks, is worse than an error.

* :func:`nonfinite_parameters` -- which parameters hold NaN or +-inf (checked after every
  optimiser step, since a diverged network can keep a finite loss: a silent layer of
  NaN weights still gives a constant, finite cross-entropy).
* :func:`nonfinite_entries` -- the same for any nested checkpoint dict (module states and
  optimiser moments); a checkpoint with one is never written.
* :func:`weights_fingerprint` -- a SHA-256 of the model's tensors, stored with every
  recording so a resumed recording cannot continue with other weights.
"""
from __future__ import annotations

import hashlib
from typing import Any, Iterable, Mapping

import numpy as np
import torch
from torch import nn


def nonfinite_parameters(named: Iterable[tuple[str, torch.Tensor]]) -> list[str]:
    """Names of the tensors that contain a NaN or an infinity (one device sync in all)."""
    named = [(n, t) for n, t in named if t.is_floating_point() or t.is_complex()]
    if not named:
        return []
    flags = torch.stack([torch.isfinite(t.detach()).all() for _, t in named]).cpu()
    return [n for (n, _), ok in zip(named, flags.tolist()) if not ok]


def _walk(obj: Any, prefix: str) -> Iterable[tuple[str, torch.Tensor]]:
    if isinstance(obj, torch.Tensor):
        yield prefix, obj
    elif isinstance(obj, Mapping):
        for k, v in obj.items():
            yield from _walk(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from _walk(v, f"{prefix}[{i}]")


def nonfinite_entries(ckpt: Mapping[str, Any], keys: Iterable[str] = ("modules", "optimizer")) -> list[str]:
    """Dotted paths of the non-finite tensors under ``ckpt[key]`` for each of ``keys``."""
    found = []
    for key in keys:
        found += nonfinite_parameters(_walk(ckpt.get(key), key))
    return found


def weights_fingerprint(modules: Mapping[str, nn.Module]) -> str:
    """SHA-256 (hex) of every module's state: names, dtypes, shapes and bytes, in a fixed order.

    Equal weights give equal fingerprints on any device; any changed element changes it."""
    h = hashlib.sha256()
    for mname in sorted(modules):
        for key, t in sorted(modules[mname].state_dict().items()):
            if not isinstance(t, torch.Tensor):
                continue
            arr = t.detach().cpu().contiguous()
            h.update(f"{mname}/{key}:{arr.dtype}:{tuple(arr.shape)};".encode())
            if arr.dtype == torch.bfloat16:
                arr = arr.view(torch.int16)
            h.update(np.ascontiguousarray(arr.numpy()).tobytes())
    return h.hexdigest()


def summarise(names: list[str], limit: int = 4) -> str:
    """``a, b, c and 5 more``: a short list for a one-line message."""
    head = ", ".join(names[:limit])
    return head + (f" and {len(names) - limit} more" if len(names) > limit else "")
