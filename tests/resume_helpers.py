"""Helpers of the exact-resume tests: stop a run at a chosen call, compare checkpoints bitwise."""
from __future__ import annotations

from typing import Any

import pytest
import torch


def die_at_call(monkeypatch, owner: Any, name: str, n: int) -> None:
    """Make ``owner.name`` raise KeyboardInterrupt (a kill) on its ``n``-th call; other calls pass."""
    real = getattr(owner, name)
    calls = {"n": 0}

    def dying(*a, **k):
        calls["n"] += 1
        if calls["n"] == n:
            raise KeyboardInterrupt("killed")
        return real(*a, **k)
    monkeypatch.setattr(owner, name, dying)


def killed(run_main, monkeypatch, owner: Any, name: str, n: int, *argv) -> None:
    """Run ``main.py argv`` killed at the ``n``-th call of ``owner.name``; the patch is undone after."""
    with monkeypatch.context() as m:
        die_at_call(m, owner, name, n)
        with pytest.raises(KeyboardInterrupt):
            run_main(*argv)


def differences(a: Any, b: Any, where: str = "") -> list[str]:
    """Every place where two checkpoint trees differ; tensors must be bitwise equal (dtype, shape,
    values, NaNs at the same places)."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        same = isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.dtype == b.dtype \
            and a.shape == b.shape and (torch.equal(a, b) or (a.is_floating_point() and torch.equal(
                a.isnan(), b.isnan()) and torch.equal(a.nan_to_num(0.0), b.nan_to_num(0.0))))
        return [] if same else [where or "<root>"]
    if isinstance(a, dict) and isinstance(b, dict):
        if set(a) != set(b):
            return [f"{where}: keys {sorted(map(str, set(a) ^ set(b)))}"]
        return [d for k in a for d in differences(a[k], b[k], f"{where}/{k}")]
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            return [f"{where}: lengths {len(a)} vs {len(b)}"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f"{where}[{i}]")]
    return [] if a == b else [f"{where}: {a!r} vs {b!r}"]


def count_tensors(tree: Any) -> int:
    if isinstance(tree, torch.Tensor):
        return 1
    if isinstance(tree, dict):
        return sum(count_tensors(v) for v in tree.values())
    if isinstance(tree, (list, tuple)):
        return sum(count_tensors(v) for v in tree)
    return 0


def assert_same_training_state(a: dict, b: dict, skip: tuple[str, ...] = ("torch_version",)) -> None:
    """Two checkpoints hold the same step, weights, optimiser state, suite and loop state, bit for bit."""
    a = {k: v for k, v in a.items() if k not in skip}
    b = {k: v for k, v in b.items() if k not in skip}
    diff = differences(a, b)
    assert not diff, f"{len(diff)} of {count_tensors(a)} tensors/values differ, e.g. {diff[:5]}"
