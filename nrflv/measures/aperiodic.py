"""A spectral peak above the aperiodic (1/f) background, and slopes against a condition.

**Peak over the aperiodic fit.** A power spectrum ``P(f)`` of neural activity falls as a power
law, ``log10 P = a - chi log10 f``, plus narrow-band peaks where the activity oscillates. Per
spectrum: fit that line by least squares on log-log axes over ``f >= fmin`` (the DC bin left
out), take the bin of largest residual as the candidate peak, refit the line without the
``exclude`` bins on either side of it, and report the peak's frequency and its excess
``log10 P(f_peak) - fit(f_peak)`` (1 = ten times the background). A pure power law still has a
largest residual, so the excess of noise is not zero: compare with a control.

**Slope against a condition.** The least-squares slope of per-trial values ``y`` against a
per-trial condition ``x`` (e.g. contrast), its bootstrap interval over trials, and the null
interval of the slope with ``x`` shuffled across trials (the shuffled control).
"""
from __future__ import annotations

import numpy as np
import torch


def _line_fit(x: torch.Tensor, y: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted least-squares line of ``y (..., F)`` on ``x (F,)`` with 0/1 weights ``w (..., F)``:
    intercept and slope ``(...)`` each."""
    sw = w.sum(-1)
    mx = (w * x).sum(-1) / sw
    my = (w * y).sum(-1) / sw
    dx = x - mx[..., None]
    slope = (w * dx * (y - my[..., None])).sum(-1) / (w * dx * dx).sum(-1)
    return my - slope * mx, slope


def peak_over_aperiodic(freqs: torch.Tensor, psd: torch.Tensor, fmin: float | None = None,
                        exclude: int = 2) -> dict[str, torch.Tensor]:
    """Narrow-band peak of each spectrum ``psd (..., F)`` above its power-law background.

    Returns ``peak_hz``, ``excess`` (log10 units) and ``exponent`` (chi of the background fit),
    each ``(...)``. ``fmin``: lowest frequency fitted (default: the first bin above 0).
    Raises ValueError with fewer than ``2 exclude + 4`` bins to fit.
    """
    f = freqs.to(torch.float64)
    p = psd.to(torch.float64).clamp_min(1e-300)
    fmin = float(f[1]) if fmin is None else float(fmin)
    use = f >= max(fmin, float(f[f > 0].min()))
    if int(use.sum()) < 2 * exclude + 4:
        raise ValueError(f"too few frequency bins above {fmin:g} Hz to fit a background "
                         f"({int(use.sum())}; need {2 * exclude + 4})")
    x = torch.log10(f[use])
    y = torch.log10(p[..., use])
    ones = torch.ones_like(y)
    a, b = _line_fit(x, y, ones)
    k = (y - (a[..., None] + b[..., None] * x)).argmax(-1)                 # candidate peak bin
    idx = torch.arange(x.numel(), device=y.device)
    keep = ((idx - k[..., None]).abs() > exclude).to(y.dtype)
    a, b = _line_fit(x, y, keep)
    fit_at_k = a + b * x[k]
    excess = y.gather(-1, k[..., None])[..., 0] - fit_at_k
    return {"peak_hz": f[use][k], "excess": excess, "exponent": -b}


def slope(x: np.ndarray, y: np.ndarray) -> float:
    """Least-squares slope of ``y`` on ``x`` (finite pairs only); NaN with < 3 pairs or constant x."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if x.size < 3 or np.ptp(x) == 0:
        return float("nan")
    xc = x - x.mean()
    return float((xc * (y - y.mean())).sum() / (xc * xc).sum())


def slope_with_controls(x: np.ndarray, y: np.ndarray, n_boot: int, seed: int, level: float = 0.95
                        ) -> dict[str, float]:
    """``slope`` of ``y`` on ``x`` with its percentile bootstrap interval over trials (pairs
    resampled) and the ``level`` interval of slopes with ``x`` shuffled across trials.

    Returns ``slope, lo, hi, null_lo, null_hi, n`` (trials with finite values)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    n = x.size
    out = {"slope": slope(x, y), "n": float(n)}
    if n < 3 or np.ptp(x) == 0:
        return {**out, "lo": float("nan"), "hi": float("nan"), "null_lo": float("nan"), "null_hi": float("nan")}
    rng = np.random.default_rng(seed)
    q = [(1 - level) / 2, 1 - (1 - level) / 2]
    idx = rng.integers(0, n, (n_boot, n))
    xb, yb = x[idx], y[idx]
    xc = xb - xb.mean(1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        boots = (xc * (yb - yb.mean(1, keepdims=True))).sum(1) / (xc * xc).sum(1)
    lo, hi = np.nanquantile(boots, q)
    xs = np.stack([rng.permutation(x) for _ in range(n_boot)])
    xc = xs - xs.mean(1, keepdims=True)
    null = (xc * (y - y.mean())[None]).sum(1) / (xc * xc).sum(1)
    nlo, nhi = np.quantile(null, q)
    return {**out, "lo": float(lo), "hi": float(hi), "null_lo": float(nlo), "null_hi": float(nhi)}
