"""Convergence of a DSN: are all constraint violations zero?

For each constraint j the mean of T_j - mu_j over n fresh samples is bootstrapped; the
two-sided percentile p-value of "the mean violation is zero" is

    p_j = min(1, 2 min(#(mean* <= 0) + 1, #(mean* >= 0) + 1) / (B + 1)).

With Bonferroni correction the DSN has converged when every p_j > alpha / m. Among the
accepted epochs the one with maximum entropy is kept.
"""
from __future__ import annotations

import torch
from torch import Tensor


def bootstrap_p_values(dev: Tensor, n_boot: int = 1000, generator: torch.Generator | None = None) -> Tensor:
    """Per-constraint bootstrap p-values for zero mean; dev (n, m) -> (m,)."""
    n, m = dev.shape
    if m == 0:
        return dev.new_ones(0)
    idx = torch.randint(0, n, (n_boot, n), generator=generator, device=dev.device)
    means = dev[idx].mean(1)  # (n_boot, m)
    below = (means <= 0).sum(0) + 1
    above = (means >= 0).sum(0) + 1
    return (2.0 * torch.minimum(below, above).to(dev.dtype) / (n_boot + 1)).clamp(max=1.0)


def constraints_satisfied(p_values: Tensor, alpha: float = 0.05) -> bool:
    """Bonferroni: accept when every p_j > alpha / m (trivially true with no constraints)."""
    m = p_values.numel()
    return bool((p_values > alpha / max(m, 1)).all()) if m else True


def max_entropy_epoch(entropy: list[float], accepted: list[bool]) -> int:
    """Index of the maximum-entropy accepted epoch, or -1 if none was accepted."""
    best, best_h = -1, -float("inf")
    for k, (h, ok) in enumerate(zip(entropy, accepted)):
        if ok and h > best_h:
            best, best_h = k, h
    return best
