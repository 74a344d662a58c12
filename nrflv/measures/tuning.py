"""Direction and orientation tuning of recorded units.

A unit's mean response ``r`` to a drifting grating of direction ``theta`` (degrees in
[0, 360)) is fitted by least squares with the first two circular harmonics

    r(theta) = b + c1 cos(theta) + s1 sin(theta) + c2 cos(2 theta) + s2 sin(2 theta)
             = b + amp1 cos(theta - pref_direction) + amp2 cos(2 (theta - pref_orientation)),

with ``amp = sqrt(c^2 + s^2)``, ``pref_direction = atan2(s1, c1)`` wrapped to [0, 360) and
``pref_orientation = atan2(s2, c2) / 2`` wrapped to [-90, 90) (period 180, the convention of
``core.gratings.wrap_orientation``). The 1-theta harmonic is direction selectivity, the
2-theta harmonic orientation selectivity. ``r2_1`` and ``r2_2`` are the coefficients of
determination of the fits with only the constant and one harmonic; ``r2`` that of the full
fit. For equally spaced directions the harmonics are orthogonal, so ``r2 = r2_1 + r2_2`` and
the coefficients of the single-harmonic fits equal those of the full fit.

All fits of all units are one batched least-squares solve per model, in float64 on the
responses' device; results come back in the responses' floating dtype.
"""
from __future__ import annotations

from typing import NamedTuple

import torch


class TuningFit(NamedTuple):
    """Harmonic tuning fit; every field but ``n`` is a tensor of shape ``units`` (the
    trailing dims of the responses).

    baseline: ``b`` of the full fit. amp1, amp2: amplitudes of the 1- and 2-theta harmonics
    (full fit, >= 0). pref_direction: degrees in [0, 360). pref_orientation: degrees in
    [-90, 90). r2_1, r2_2, r2: coefficient of determination of the 1-theta-only, 2-theta-only
    and full fits, in [0, 1] (0 for a constant unit). n: number of stimuli (an int).
    """

    baseline: torch.Tensor
    amp1: torch.Tensor
    pref_direction: torch.Tensor
    amp2: torch.Tensor
    pref_orientation: torch.Tensor
    r2_1: torch.Tensor
    r2_2: torch.Tensor
    r2: torch.Tensor
    n: int


MIN_DIRECTIONS = 5


def _as_float(x: torch.Tensor | float, like: torch.Tensor | None = None) -> torch.Tensor:
    """``x`` as a floating tensor (float64 if it was an int or a Python number), on ``like``'s
    device when given."""
    device = like.device if like is not None else None
    t = torch.as_tensor(x, device=device)
    if not t.is_floating_point():
        t = t.to(torch.float64)
    return t


def wrap_period(angle: torch.Tensor, period: float, low: float) -> torch.Tensor:
    """``angle (...)`` mapped into ``[low, low + period)`` (guarding the float rounding
    that would return ``low + period``). Same shape."""
    out = torch.remainder(angle - low, period)
    out = torch.where(out >= period, torch.zeros_like(out), out)
    return out + low


def harmonic_design(direction_deg: torch.Tensor, harmonics: tuple[int, ...]) -> torch.Tensor:
    """Design matrix ``(N, 1 + 2 len(harmonics))``: a constant column, then ``cos(k theta),
    sin(k theta)`` for each harmonic ``k``, for directions ``(N,)`` in degrees."""
    theta = torch.deg2rad(direction_deg)
    columns = [torch.ones_like(theta)]
    for k in harmonics:
        columns += [torch.cos(k * theta), torch.sin(k * theta)]
    return torch.stack(columns, dim=1)


def least_squares(design: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Coefficients ``(P, M)`` and residual sum of squares ``(M,)`` of the least-squares fits
    of the columns of ``y (N, M)`` on ``design (N, P)`` (full column rank)."""
    coef = torch.linalg.lstsq(design, y).solution
    residual = y - design @ coef
    return coef, (residual ** 2).sum(dim=0)


def coefficient_of_determination(ss_res: torch.Tensor, ss_tot: torch.Tensor,
                                 constant: torch.Tensor) -> torch.Tensor:
    """``1 - ss_res / ss_tot`` clamped to [0, 1], and 0 where the unit is ``constant``.
    All ``(M,)``."""
    r2 = 1.0 - ss_res / torch.where(constant, torch.ones_like(ss_tot), ss_tot)
    return torch.where(constant, torch.zeros_like(r2), r2.clamp(0.0, 1.0))


def _check_directions(direction: torch.Tensor, responses: torch.Tensor) -> None:
    """ValueError unless ``direction`` is ``(N,)`` with >= 5 distinct directions (mod 360)
    and ``responses`` is ``(N, ...)``."""
    if direction.ndim != 1:
        raise ValueError(f"direction must be 1-D (N,), got shape {tuple(direction.shape)}")
    if responses.ndim < 1 or responses.shape[0] != direction.shape[0]:
        raise ValueError(f"responses must be (N, ...) with N = {direction.shape[0]} "
                         f"directions, got shape {tuple(responses.shape)}")
    distinct = torch.unique(torch.round(wrap_period(direction, 360.0, 0.0) * 1e6) % 360_000_000)
    if distinct.numel() < MIN_DIRECTIONS:
        raise ValueError(f"need at least {MIN_DIRECTIONS} distinct directions (mod 360) to fit "
                         f"two harmonics, got {distinct.numel()}")


def fit_direction_tuning(direction: torch.Tensor, responses: torch.Tensor) -> TuningFit:
    """Fit the two-harmonic tuning curve of every unit in one batched solve.

    Args:
        direction: ``(N,)`` stimulus directions in degrees (any real values; used mod 360),
            at least 5 of them distinct.
        responses: ``(N, ...)`` mean response of each unit (trailing dims) to each stimulus.
    Returns:
        ``TuningFit`` whose tensors have the trailing shape ``...`` of ``responses``.
    """
    responses = torch.as_tensor(responses)
    direction = _as_float(direction, like=responses).to(torch.float64)
    _check_directions(direction, responses)
    out_dtype = responses.dtype if responses.is_floating_point() else torch.get_default_dtype()
    n = responses.shape[0]
    units = responses.shape[1:]
    y = responses.to(torch.float64).reshape(n, -1)
    constant = y.amax(dim=0) == y.amin(dim=0)
    ss_tot = ((y - y.mean(dim=0, keepdim=True)) ** 2).sum(dim=0)

    coef, ss_res = least_squares(harmonic_design(direction, (1, 2)), y)
    _, ss_res_1 = least_squares(harmonic_design(direction, (1,)), y)
    _, ss_res_2 = least_squares(harmonic_design(direction, (2,)), y)

    zero = torch.zeros_like(coef[0])
    c1, s1, c2, s2 = (torch.where(constant, zero, coef[i]) for i in (1, 2, 3, 4))
    baseline = torch.where(constant, y[0], coef[0])
    pref_direction = wrap_period(torch.rad2deg(torch.atan2(s1, c1)), 360.0, 0.0)
    pref_orientation = wrap_period(torch.rad2deg(torch.atan2(s2, c2)) / 2.0, 180.0, -90.0)

    def shaped(t: torch.Tensor) -> torch.Tensor:
        return t.reshape(units).to(out_dtype)

    return TuningFit(
        baseline=shaped(baseline),
        amp1=shaped(torch.hypot(c1, s1)),
        pref_direction=shaped(pref_direction),
        amp2=shaped(torch.hypot(c2, s2)),
        pref_orientation=shaped(pref_orientation),
        r2_1=shaped(coefficient_of_determination(ss_res_1, ss_tot, constant)),
        r2_2=shaped(coefficient_of_determination(ss_res_2, ss_tot, constant)),
        r2=shaped(coefficient_of_determination(ss_res, ss_tot, constant)),
        n=int(n),
    )


def tuning_p_value(fit: TuningFit) -> torch.Tensor:
    """p-value ``units`` of the F-test of the two-harmonic fit against a constant response.

    ``F = (r2 / 4) / ((1 - r2) / (n - 5))`` with ``(4, n - 5)`` degrees of freedom: under the
    null of an untuned unit with independent Gaussian noise across the stimuli, ``p < alpha``
    happens with probability exactly ``alpha``. NaN with fewer than 6 stimuli (no residual
    degrees of freedom); a constant unit has p = 1, a perfect fit p = 0.
    """
    from scipy.stats import f as f_dist

    dfd = fit.n - 5
    r2 = fit.r2.detach().double().cpu()
    if dfd < 1:
        return torch.full_like(fit.r2, float("nan"))
    stat = (r2 / 4.0) / ((1.0 - r2).clamp_min(1e-300) / dfd)
    p = torch.from_numpy(f_dist.sf(stat.numpy(), 4, dfd)).reshape(r2.shape)
    return p.to(fit.r2.device, fit.r2.dtype)


def significantly_tuned(fit: TuningFit, alpha: float, r2_min: float = 0.0) -> torch.Tensor:
    """Bool ``units``: the F-test (:func:`tuning_p_value`) rejects "untuned" at ``alpha`` and
    the fit explains at least ``r2_min`` of the variance (an effect-size floor; 0: none)."""
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    return (tuning_p_value(fit) < alpha) & tuned(fit, r2_min)


def shuffled_tuned_fraction(direction: torch.Tensor, responses: torch.Tensor, alpha: float, r2_min: float = 0.0,
                            n_shuffles: int = 20, generator: torch.Generator | None = None) -> float:
    """The fraction of units :func:`significantly_tuned` when the directions are shuffled
    across the stimuli (the same permutation for all units, ``n_shuffles`` times): the chance
    level of the criterion on these very responses, whatever their noise distribution.
    ``direction (N,)``, ``responses (N, ...)``."""
    direction = torch.as_tensor(direction)
    n = direction.shape[0]
    hits = 0.0
    for _ in range(int(n_shuffles)):
        perm = torch.randperm(n, generator=generator)
        fit = fit_direction_tuning(direction[perm.to(direction.device)], responses)
        hits += float(significantly_tuned(fit, alpha, r2_min).double().mean())
    return hits / max(1, int(n_shuffles))


def tuned(fit: TuningFit, r2_threshold: float = 0.5) -> torch.Tensor:
    """Bool tensor ``units``: the full harmonic fit explains at least ``r2_threshold`` of the
    response variance (``fit.r2 >= r2_threshold``)."""
    if not 0.0 <= r2_threshold <= 1.0:
        raise ValueError(f"r2_threshold must lie in [0, 1], got {r2_threshold}")
    return fit.r2 >= r2_threshold


def circular_difference(a: torch.Tensor | float, b: torch.Tensor | float,
                        period: float = 360.0) -> torch.Tensor:
    """Unsigned circular distance between angles ``a`` and ``b`` (broadcast), in
    ``[0, period / 2]``; e.g. 175 and -175 at period 180 are 10 apart."""
    if not period > 0:
        raise ValueError(f"period must be positive, got {period}")
    a = _as_float(a)
    b = _as_float(b, like=a)
    d = torch.remainder(a - b, period)
    return torch.minimum(d, period - d).clamp_min(0.0)


def matched(preference: torch.Tensor | float, stimulus: torch.Tensor | float,
            tolerance: float = 10.0, period: float = 180.0) -> torch.Tensor:
    """Bool tensor (broadcast shape): the unit's preferred angle lies within ``tolerance``
    (inclusive) of the stimulus angle on a circle of ``period`` (180 for orientations, 360
    for directions)."""
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance}")
    return circular_difference(preference, stimulus, period) <= tolerance
