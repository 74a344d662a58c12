"""Circular statistics of phases (radians), for the phase test of synchrony.

Conventions shared by every function here:

* samples lie along dim 0 and every further axis is a batch axis: ``phi (N, ...)`` gives results
  ``(...)`` (as :func:`nrflv.measures.correlation.bootstrap_ci`);
* non-finite samples (NaN) are left out, per batch column; a column without a finite sample gives
  NaN (and a p-value of NaN);
* angles come back wrapped into ``(-pi, pi]``, except the bounds of
  :func:`circular_bootstrap_ci`, which are unwrapped around the mean so that ``lo <= mean <= hi``.
"""
from __future__ import annotations

import math

import numpy as np
import torch

__all__ = ["wrap", "circular_mean", "circular_bootstrap_ci", "interval_contains", "v_test", "rayleigh_test"]


def _as_angles(phi) -> torch.Tensor:
    phi = torch.as_tensor(phi)
    if phi.is_complex():
        raise ValueError("phases must be real angles in radians; take torch.angle of a complex value first")
    if phi.dim() == 0:
        raise ValueError("phases need a sample axis (dim 0); got a 0-d tensor")
    return phi if phi.is_floating_point() else phi.to(torch.get_default_dtype())


def wrap(phi: torch.Tensor) -> torch.Tensor:
    """``phi (...)`` wrapped into ``(-pi, pi]``."""
    phi = torch.as_tensor(phi)
    return math.pi - torch.remainder(math.pi - phi, 2 * math.pi)


def _sums(phi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``sum cos, sum sin, n`` over dim 0 of the finite samples of ``phi (N, ...)``."""
    ok = torch.isfinite(phi)
    safe = torch.where(ok, phi, torch.zeros_like(phi))
    w = ok.to(phi.dtype)
    return (torch.cos(safe) * w).sum(0), (torch.sin(safe) * w).sum(0), w.sum(0)


def circular_mean(phi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean direction and mean resultant length of ``phi (N, ...)`` (radians) over dim 0.

    ``mean = atan2(sum sin, sum cos)`` in ``(-pi, pi]`` and ``R = |sum exp(i phi)| / n`` in
    [0, 1] (1: all equal; ~``sqrt(pi / (4 n))`` for uniform phases). Returns two ``(...)``
    tensors; NaN where a column has no finite sample."""
    phi = _as_angles(phi)
    c, s, n = _sums(phi)
    nan = torch.full_like(c, float("nan"))
    mean = torch.where(n > 0, torch.atan2(s, c), nan)
    r = torch.where(n > 0, torch.hypot(c, s) / n.clamp_min(1), nan)
    return mean, r


def circular_bootstrap_ci(phi: torch.Tensor, n_boot: int = 1000, level: float = 0.95,
                          generator: torch.Generator | None = None
                          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Percentile bootstrap interval of the mean direction of ``phi (N, ...)`` over dim 0.

    ``n_boot`` resamples of the N samples with replacement (the same indices for every batch
    column); each resample's mean direction is taken relative to the sample's mean ``m``
    (wrapped into ``(-pi, pi]``) and the interval is ``m + `` the ``(1 - level)/2`` and
    ``(1 + level)/2`` quantiles of those deviations, so ``lo <= m <= hi`` (bounds may pass +-pi;
    use :func:`interval_contains` to ask whether an angle lies inside). For uniform phases the
    interval widens towards the whole circle. Returns ``mean, lo, hi`` each ``(...)``; NaN bounds
    below two finite samples."""
    phi = _as_angles(phi)
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 1:
        raise ValueError(f"n_boot must be a positive int, got {n_boot!r}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie strictly between 0 and 1, got {level}")
    mean, _ = circular_mean(phi)
    n = phi.shape[0]
    ok = torch.isfinite(phi)
    safe = torch.where(ok, phi, torch.zeros_like(phi))
    unit_c, unit_s, w = torch.cos(safe) * ok, torch.sin(safe) * ok, ok.to(phi.dtype)
    rng_device = generator.device if generator is not None else phi.device
    chunk = max(1, (1 << 22) // max(1, phi.numel()))
    devs = []
    for start in range(0, n_boot, chunk):
        m = min(chunk, n_boot - start)
        idx = torch.randint(0, n, (m, n), generator=generator, device=rng_device).to(phi.device)
        # multiplicities (m, N) times per-sample unit vectors: the resamples' resultants
        counts = torch.zeros(m, n, dtype=phi.dtype, device=phi.device).scatter_add_(
            1, idx, torch.ones_like(idx, dtype=phi.dtype))
        flat = lambda v: v.reshape(n, -1)  # noqa: E731
        c, s = counts @ flat(unit_c), counts @ flat(unit_s)
        devs.append(wrap(torch.atan2(s, c) - mean.reshape(1, -1)))
    dev = torch.cat(devs).reshape(n_boot, *phi.shape[1:]).sort(0).values
    alpha = (1.0 - level) / 2.0
    lo, hi = (torch.quantile(dev, q, dim=0) for q in (alpha, 1 - alpha))
    enough = w.sum(0) >= 2
    nan = torch.full_like(mean, float("nan"))
    return mean, torch.where(enough, mean + lo, nan), torch.where(enough, mean + hi, nan)


def interval_contains(angle, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """Whether ``angle`` (broadcast) lies in the arc from ``lo`` counter-clockwise to ``hi``
    (``hi - lo <= 2 pi``, as :func:`circular_bootstrap_ci` returns); False where a bound is NaN."""
    lo, hi = torch.as_tensor(lo), torch.as_tensor(hi)
    angle = torch.as_tensor(angle, dtype=lo.dtype, device=lo.device)
    inside = torch.remainder(angle - lo, 2 * math.pi) <= (hi - lo)
    return inside & torch.isfinite(lo) & torch.isfinite(hi)


def v_test(phi: torch.Tensor, mu: float | torch.Tensor = 0.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """V-test (modified Rayleigh test) of ``phi (N, ...)`` against uniformity, with the alternative
    of phases concentrated around the known direction ``mu`` (radians; broadcast to ``(...)``).

    ``V = sum cos(phi - mu)``, ``u = V sqrt(2 / n)`` (standard normal under uniform phases: each
    cosine has mean 0 and variance 1/2), one-sided ``p = 1 - Phi(u)`` (Durand & Greenwood 1958;
    Zar 1999, 27.1; as CircStat's ``circ_vtest``). It rejects for phases clustered at ``mu``, not
    for phases clustered elsewhere (at ``mu + pi/2``, ``V ~ 0``). The normal approximation is the
    large-sample form: below ~10 samples its p-values are rough. Returns ``V, u, p`` ``(...)``."""
    phi = _as_angles(phi)
    mu = torch.as_tensor(mu, dtype=phi.dtype, device=phi.device)
    ok = torch.isfinite(phi)
    cos = torch.where(ok, torch.cos(torch.where(ok, phi, torch.zeros_like(phi)) - mu), torch.zeros_like(phi))
    n = ok.to(phi.dtype).sum(0)
    v = cos.sum(0)
    nan = torch.full_like(v, float("nan"))
    u = torch.where(n > 0, v * torch.sqrt(2.0 / n.clamp_min(1)), nan)
    p = 0.5 * torch.erfc(u / math.sqrt(2.0))
    return torch.where(n > 0, v, nan), u, p


def rayleigh_test(phi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rayleigh test of ``phi (N, ...)`` against uniformity (any preferred direction).

    ``Z = n R^2`` with ``R`` the mean resultant length; ``p = exp(sqrt(1 + 4n + 4(n^2 - R_n^2))
    - (1 + 2n))``, ``R_n = n R`` (Zar 1999, eq. 27.4; as CircStat's ``circ_rtest``), clipped to
    [0, 1]. Returns ``Z, p`` ``(...)``."""
    phi = _as_angles(phi)
    c, s, n = _sums(phi)
    rn = torch.hypot(c, s)
    nan = torch.full_like(c, float("nan"))
    z = torch.where(n > 0, rn ** 2 / n.clamp_min(1), nan)
    p = torch.exp(torch.sqrt(1 + 4 * n + 4 * (n ** 2 - rn ** 2)) - (1 + 2 * n)).clamp(0, 1)
    return z, torch.where(n > 0, p, nan)
