"""Straight-line trends of a measure against a covariate (e.g. synchrony amplitude against
distance or against the difference of preferred directions), with bootstrap intervals over the
independent units (trials, or pairs).

Conventions: ``x`` and ``y`` have shape ``(N, ..., K)`` (``x`` broadcasts to ``y``): dim 0 holds
the resampling units (trials), the last axis ``K`` the points each unit contributes (distances,
pairs), the axes between are batch axes. A line is fitted by ordinary least squares to every
finite ``(x, y)`` point pooled over dims 0 and -1; non-finite points are left out.
"""
from __future__ import annotations

import numpy as np
import torch

__all__ = ["pooled_slope", "bootstrap_slope_ci"]


def _row_moments(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per unit ``(N, ..., 5)``: the count, sum x, sum y, sum x^2, sum xy of its finite points."""
    y = torch.as_tensor(y)
    y = y if y.is_floating_point() else y.to(torch.get_default_dtype())
    x = torch.as_tensor(x, dtype=y.dtype, device=y.device)
    x, y = torch.broadcast_tensors(x, y)
    if y.dim() < 2:
        raise ValueError(f"x and y need shape (N, ..., K) with N units and K points each; got {tuple(y.shape)}")
    ok = torch.isfinite(x) & torch.isfinite(y)
    w = ok.to(y.dtype)
    x0, y0 = torch.where(ok, x, 0.0), torch.where(ok, y, 0.0)
    return torch.stack([w.sum(-1), x0.sum(-1), y0.sum(-1), (x0 * x0).sum(-1), (x0 * y0).sum(-1)], -1)


def _line(m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Slope and intercept ``(...)`` from pooled moments ``(..., 5)``; NaN below 2 distinct x."""
    n, sx, sy, sxx, sxy = m.unbind(-1)
    den = n * sxx - sx * sx
    ok = (n >= 2) & (den > 1e-12 * n * sxx.abs().clamp_min(1e-300))
    safe = torch.where(ok, den, torch.ones_like(den))
    slope = torch.where(ok, (n * sxy - sx * sy) / safe, torch.full_like(den, float("nan")))
    intercept = torch.where(ok, (sy - slope * sx) / n.clamp_min(1), torch.full_like(den, float("nan")))
    return slope, intercept


def pooled_slope(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Least-squares line ``y ~ intercept + slope * x`` through every finite point of
    ``y (N, ..., K)`` (``x`` broadcast), pooled over dims 0 and -1. Returns ``slope, intercept``
    ``(...)``; NaN when fewer than two points or all x equal."""
    return _line(_row_moments(x, y).sum(0))


def bootstrap_slope_ci(x: torch.Tensor, y: torch.Tensor, n_boot: int = 1000, level: float = 0.95,
                       generator: torch.Generator | None = None
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`pooled_slope` of ``y (N, ..., K)`` on ``x`` and its percentile bootstrap interval,
    resampling the N units (dim 0) with replacement, each with all its points (a cluster
    bootstrap: points of one trial are not independent). Resamples where the slope is undefined
    are left out of the quantiles. Returns ``slope, lo, hi`` ``(...)`` (NaN bounds below two
    units)."""
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 1:
        raise ValueError(f"n_boot must be a positive int, got {n_boot!r}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie strictly between 0 and 1, got {level}")
    rows = _row_moments(x, y)                                  # (N, ..., 5)
    n = rows.shape[0]
    slope, _ = _line(rows.sum(0))
    if n < 2:
        nan = torch.full_like(slope, float("nan"))
        return slope, nan, nan
    flat = rows.reshape(n, -1)
    rng_device = generator.device if generator is not None else rows.device
    idx = torch.randint(0, n, (n_boot, n), generator=generator, device=rng_device).to(rows.device)
    counts = torch.zeros(n_boot, n, dtype=rows.dtype, device=rows.device).scatter_add_(
        1, idx, torch.ones_like(idx, dtype=rows.dtype))
    boot, _ = _line((counts @ flat).reshape(n_boot, *rows.shape[1:]))   # (B, ...)
    alpha = (1.0 - level) / 2.0
    lo = torch.nanquantile(boot, alpha, dim=0)
    hi = torch.nanquantile(boot, 1 - alpha, dim=0)
    return slope, lo, hi
