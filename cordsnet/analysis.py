"""Measurements on CordsNet time courses: accuracy over time, response dynamics, PCA of state
trajectories and eigenvalue stability tables (robustness to pixel noise: :mod:`cordsnet.robustness`).

Pure functions: tensors/arrays in, NumPy arrays or pandas DataFrames out, no file I/O.

**Time convention.** A time course has ``T = blank + stimulus + post`` steps and entry ``t``
(0-based) of a trace is the state *after* step ``t + 1`` (as :class:`cordsnet.model.Trajectory`
records it). So entry ``blank - 1`` is the spontaneous state the stimulus starts from, entry
``blank + k`` is the state after ``k + 1`` stimulus steps, and entry ``blank + stimulus - 1``
the state at stimulus offset. Latencies are counted in steps (``alpha * tau`` each).

**Stability** of the linear(ised) dynamics ``tau dr/dt = -r + R r + u``: stable iff every
eigenvalue of ``R`` has ``Re lambda < 1``; its Euler map ``r <- (1 - alpha) r + alpha (R r + u)``
is stable iff every ``|1 - alpha + alpha lambda| < 1``.
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from core.outputs import to_numpy

# ---- time course ---------------------------------------------------------------------
def phases(blank_steps: int, stimulus_steps: int, post_steps: int = 0) -> tuple[slice, slice, slice]:
    """Slices of the blank, stimulus and post-stimulus blank along a trace's time axis."""
    if min(blank_steps, stimulus_steps, post_steps) < 0:
        raise ValueError(f"step counts must be >= 0, got blank={blank_steps}, stimulus={stimulus_steps}, "
                         f"post={post_steps}")
    on, off = blank_steps, blank_steps + stimulus_steps
    return slice(0, on), slice(on, off), slice(off, off + post_steps)


def _tail(n: int, fraction: float = 0.1) -> int:
    """Length of the last ``fraction`` of ``n`` steps (at least 1)."""
    return max(1, int(round(fraction * n)))


def _hard_labels(labels: torch.Tensor) -> torch.Tensor:
    """Class indices ``(B,)`` from integer labels ``(B,)`` or soft labels ``(B, K)`` (argmax)."""
    labels = torch.as_tensor(labels)
    if labels.ndim == 2:
        return labels.argmax(-1)
    if labels.ndim == 1:
        return labels.long()
    raise ValueError(f"labels must be (B,) class indices or (B, K) soft labels, got shape {tuple(labels.shape)}")


def accuracy_over_time(logits: torch.Tensor, labels: torch.Tensor) -> np.ndarray:
    """Fraction of the batch classified correctly (argmax of the logits) after each step.

    ``logits``: ``(B, T, K)``; ``labels``: ``(B,)`` class indices or ``(B, K)`` soft labels
    (compared by their argmax). Returns ``(T,)``.
    """
    logits = torch.as_tensor(logits)
    if logits.ndim != 3:
        raise ValueError(f"logits must be (B, T, K) (forward with readout='all'), got {tuple(logits.shape)}")
    y = _hard_labels(labels).to(logits.device)
    if y.shape[0] != logits.shape[0]:
        raise ValueError(f"labels have {y.shape[0]} items but logits {logits.shape[0]}")
    return to_numpy((logits.argmax(-1) == y[:, None]).double().mean(0))


def mean_rate_traces(rates: Mapping[int, torch.Tensor], rectify: bool = False) -> np.ndarray:
    """Mean rate per area and step, over the batch and every unit of the area.

    ``rates``: area -> ``(B, T, C, H, W)`` (``Trajectory.rates``); rows follow the areas in
    ascending order. ``rectify``: average ``relu(r)`` (what the next area receives) instead of
    ``r``. Returns ``(A, T)`` float64.
    """
    if not rates:
        raise ValueError("rates is empty: run the model with record=[areas]")
    rows = []
    for a in sorted(rates):
        r = rates[a]
        if r.ndim < 2:
            raise ValueError(f"rates[{a}] must be (B, T, ...), got {tuple(r.shape)}")
        r = r.detach()
        if rectify:
            r = r.clamp_min(0)
        rows.append(r.double().transpose(0, 1).reshape(r.shape[1], -1).mean(1))
    return to_numpy(torch.stack(rows))


def population_states(rates: Mapping[int, torch.Tensor], areas: Sequence[int] | None = None) -> torch.Tensor:
    """Every unit of the chosen areas side by side: ``(B, T, N)``, ``N = sum_a C_a H_a W_a``.

    ``rates``: area -> ``(B, T, C, H, W)``; ``areas``: which (default all, ascending).
    The input to :func:`pca_trajectories`.
    """
    areas = sorted(rates) if areas is None else list(areas)
    missing = [a for a in areas if a not in rates]
    if missing:
        raise ValueError(f"areas {missing} were not recorded; recorded: {sorted(rates)}")
    return torch.cat([rates[a].detach().flatten(2) for a in areas], dim=2)


def _decay_steps(dev: np.ndarray, d0: float) -> float:
    """Steps (linearly interpolated) for ``|dev|`` to fall to ``|d0| / e``; ``dev[k]`` after ``k+1`` steps."""
    target = abs(d0) / math.e
    a = np.concatenate([[abs(d0)], np.abs(dev)])      # a[k]: deviation after k steps
    below = np.nonzero(a <= target)[0]
    if below.size == 0:
        return float("nan")
    k = int(below[0])                                 # k >= 1 since a[0] = |d0| > target
    hi, lo = a[k - 1], a[k]
    return float(k - 1 + (hi - target) / (hi - lo)) if hi > lo else float(k)


def response_dynamics(traces, blank_steps: int, stimulus_steps: int, post_steps: int = 0,
                      area_names: Sequence[str] | None = None, rtol: float = 1e-6, peak_drop: float = 0.02,
                      steady_rtol: float = 0.01) -> pd.DataFrame:
    """Onset transient, steady state and offset decay of each area's mean-rate trace.

    ``traces``: ``(T,)`` or ``(A, T)`` with ``T = blank_steps + stimulus_steps + post_steps``
    (see the module's time convention). One row per area with columns:

    * ``area``: ``area_names[i]`` (default ``i``);
    * ``spontaneous``: mean over the last 10 % of the blank (at least 1 step);
    * ``onset_peak``: whether the response has a peak: the largest ``|r - spontaneous|``
      during the stimulus is reached before its last step and has fallen by at least
      ``peak_drop`` (default 2 %) of itself by the end of the stimulus (a trace that rises
      through the whole image has none);
    * ``peak``, ``time_to_peak``: that peak's ``|r - spontaneous|`` and the number of stimulus
      steps after which it is reached (1 = the first step); NaN without a peak;
    * ``steady``: mean over the last 10 % of the stimulus (the level at the end of the image);
    * ``steady_change``: ``|r(end) - r(end - k)| / |steady - spontaneous|``, the relative change
      over the last ``k = max(2, 10 %)`` stimulus steps (at most ``stimulus_steps - 1``);
    * ``steady_reached``: ``steady_change <= steady_rtol`` (default 1 %); when False, ``steady``
      is where the response was at the end of the image, not a steady state;
    * ``overshoot``: ``peak / |steady - spontaneous|``; NaN without a peak;
    * ``return_fraction``: ``|r(end) - spontaneous| / |steady - spontaneous|`` (0 = back to
      spontaneous; NaN without a post-stimulus blank);
    * ``decay_steps``: steps after stimulus offset for ``|r - spontaneous|`` to fall to 1/e
      of its value at offset, linearly interpolated between steps (NaN if never).

    A ratio whose denominator is below ``rtol`` times the trace's largest ``|r|`` is NaN (a flat
    trace: no peak, and its steady state is reached when it changes by less than that).
    """
    x = np.asarray(to_numpy(traces), dtype=np.float64)
    if x.ndim == 1:
        x = x[None]
    if x.ndim != 2:
        raise ValueError(f"traces must be (T,) or (A, T), got shape {x.shape}")
    blank, stim, post = phases(blank_steps, stimulus_steps, post_steps)
    if blank_steps < 1 or stimulus_steps < 1:
        raise ValueError("response_dynamics needs at least one blank and one stimulus step "
                         f"(got blank_steps={blank_steps}, stimulus_steps={stimulus_steps})")
    if x.shape[1] != post.stop:
        raise ValueError(f"traces have {x.shape[1]} steps but blank + stimulus + post = {post.stop}")
    names = list(range(x.shape[0])) if area_names is None else list(area_names)
    if len(names) != x.shape[0]:
        raise ValueError(f"{len(names)} area names for {x.shape[0]} traces")
    nan = float("nan")
    window = min(max(2, _tail(stimulus_steps)), stimulus_steps - 1)
    rows = []
    for name, tr in zip(names, x):
        tiny = rtol * max(float(np.abs(tr).max()), np.finfo(np.float64).tiny)
        spont = float(tr[blank][-_tail(blank_steps):].mean())
        dev = np.abs(tr[stim] - spont)
        k = int(dev.argmax())
        top = float(dev[k])
        has_peak = bool(k < stimulus_steps - 1 and top > tiny and top - dev[-1] >= peak_drop * top)
        steady = float(tr[stim][-_tail(stimulus_steps):].mean())
        step = abs(steady - spont)
        ok = step > tiny
        change = abs(float(tr[stim][-1] - tr[stim][-1 - window])) if window >= 1 else nan
        if ok:
            steady_change = change / step
            reached = bool(steady_change <= steady_rtol)
        else:  # no response: steady when it does not move either
            steady_change = nan
            reached = bool(window >= 1 and change <= tiny)
        d0 = float(tr[stim.stop - 1] - spont)
        rows.append({
            "area": name, "spontaneous": spont, "onset_peak": has_peak,
            "peak": top if has_peak else nan, "time_to_peak": k + 1 if has_peak else nan, "steady": steady,
            "steady_change": steady_change, "steady_reached": reached,
            "overshoot": top / step if ok and has_peak else nan,
            "return_fraction": abs(float(tr[-1]) - spont) / step if ok and post_steps > 0 else nan,
            "decay_steps": _decay_steps(tr[post] - spont, d0) if post_steps > 0 and abs(d0) > tiny else nan,
        })
    return pd.DataFrame(rows)


# ---- trajectories --------------------------------------------------------------------
#: above this many samples *and* units PCA uses the randomised ``torch.pca_lowrank``
EXACT_PCA_LIMIT = 2048


def pca_trajectories(states: torch.Tensor, n_components: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Project state trajectories on their leading principal components.

    ``states``: ``(B, T, N)`` (e.g. :func:`population_states`). The PCA is fitted on all
    ``B * T`` states, centred on their mean; exact SVD (float64) unless both ``B * T`` and
    ``N`` exceed :data:`EXACT_PCA_LIMIT` (then ``torch.pca_lowrank`` with a fixed seed). Each
    component's sign is fixed so that its largest-magnitude loading is positive.

    Returns the projections ``(B, T, n_components)`` and the explained-variance ratio of each
    component ``(n_components,)`` (of the total variance of all ``N`` units).
    """
    states = torch.as_tensor(states).detach()
    if states.ndim != 3:
        raise ValueError(f"states must be (B, T, N), got shape {tuple(states.shape)}")
    b, t, n = states.shape
    m = b * t
    if not 1 <= n_components <= min(m, n):
        raise ValueError(f"n_components must be in 1..{min(m, n)} for {m} states of {n} units, got {n_components}")
    exact = min(m, n) <= EXACT_PCA_LIMIT
    x = states.reshape(m, n).to(torch.float64 if exact else torch.float32)
    x = x - x.mean(0, keepdim=True)
    total = (x.double() ** 2).sum()
    if exact:
        _, s, vh = torch.linalg.svd(x, full_matrices=False)
        v = vh[:n_components].T                                   # (N, k)
        s = s[:n_components]
    else:
        with torch.random.fork_rng(devices=[x.device] if x.is_cuda else []):
            torch.manual_seed(0)
            _, s, v = torch.pca_lowrank(x, q=min(n_components + 10, m, n), center=False, niter=6)
        v, s = v[:, :n_components], s[:n_components]
    idx = v.abs().argmax(0)
    v = v * torch.sign(v[idx, torch.arange(n_components, device=v.device)])
    proj = (x @ v).reshape(b, t, n_components)
    ratio = (s.double() ** 2) / total if total > 0 else torch.zeros_like(s, dtype=torch.float64)
    return to_numpy(proj.double()), to_numpy(ratio)


# ---- spectra -------------------------------------------------------------------------
def euler_modulus(eigenvalues, alpha: float) -> np.ndarray:
    """``|1 - alpha + alpha lambda|``: the modulus of the Euler map's eigenvalue for ``lambda``."""
    lam = np.asarray(to_numpy(eigenvalues), dtype=np.complex128)
    return np.abs(1 - alpha + alpha * lam)


def spectrum_table(eigenvalues, alpha: float) -> pd.DataFrame:
    """One row per eigenvalue ``lambda`` of a recurrent operator ``R`` (input order kept).

    ``eigenvalues``: complex ``(k,)`` (array or tensor); ``alpha = dt / tau``. Columns ``re``,
    ``im``, ``modulus`` ``|lambda|``, ``euler_modulus`` ``|1 - alpha + alpha lambda|``,
    ``stable_linear`` (``Re lambda < 1``: the mode of ``tau dr/dt = -r + R r`` decays) and
    ``stable_euler`` (``euler_modulus < 1``: it decays under the Euler step).
    """
    if not 0 < alpha <= 1:
        raise ValueError(f"alpha = dt / tau must be in (0, 1], got {alpha}")
    lam = np.asarray(to_numpy(eigenvalues), dtype=np.complex128).reshape(-1)
    em = euler_modulus(lam, alpha)
    return pd.DataFrame({"re": lam.real, "im": lam.imag, "modulus": np.abs(lam), "euler_modulus": em,
                         "stable_linear": lam.real < 1, "stable_euler": em < 1})


def stability_verdict(eigenvalues, alpha: float, residuals=None) -> dict:
    """Whether a recurrent operator's spectrum lies inside the stability boundaries.

    ``eigenvalues``: complex ``(k,)`` that include the rightmost eigenvalue (largest
    ``Re lambda``) and the one with the largest ``|1 - alpha + alpha lambda|`` (all of them for
    a dense matrix; for Arnoldi the Ritz values sorted both ways); ``residuals`` ``(k,)``: their
    Ritz residuals (None: exact). Returns ``rightmost_re``, ``rightmost_im``, ``boundary``
    (``Re lambda < 1``: ``tau dr/dt = -r + R r + u`` is stable), ``inside`` and ``margin``
    ``= 1 - max Re lambda`` (> 0 inside), ``euler_max_modulus`` ``max |1 - alpha + alpha lambda|``
    with ``euler_inside`` and ``euler_margin`` ``= 1 - euler_max_modulus`` (the Euler step's
    boundary), ``spectral_radius`` and ``rightmost_residual`` (0 when exact), and ``verdict``:
    ``'inside both'``, ``'inside Re λ < 1 only (Euler-unstable)'`` or ``'outside'``.
    """
    if not 0 < alpha <= 1:
        raise ValueError(f"alpha = dt / tau must be in (0, 1], got {alpha}")
    lam = np.asarray(to_numpy(eigenvalues), dtype=np.complex128).reshape(-1)
    if lam.size == 0:
        raise ValueError("no eigenvalues")
    res = np.zeros(lam.size) if residuals is None else np.asarray(to_numpy(residuals), dtype=np.float64).reshape(-1)
    i = int(np.argmax(lam.real))
    em = euler_modulus(lam, alpha)
    inside, euler_inside = bool(lam.real[i] < 1), bool(em.max() < 1)
    return {"rightmost_re": float(lam.real[i]), "rightmost_im": float(abs(lam.imag[i])), "boundary": "Re λ < 1",
            "inside": inside, "margin": float(1 - lam.real[i]),
            "euler_max_modulus": float(em.max()), "euler_inside": euler_inside, "euler_margin": float(1 - em.max()),
            "spectral_radius": float(np.abs(lam).max()), "rightmost_residual": float(res[i]),
            "verdict": ("inside both" if inside and euler_inside else
                        "inside Re λ < 1 only (Euler-unstable)" if inside else "outside")}
