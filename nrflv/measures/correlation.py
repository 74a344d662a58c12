"""Correlation and synchrony measures for recorded unit activity.

Conventions shared by every function here:

* time is the LAST axis; leading axes are batch axes (units, trials, pairs) and are carried
  through, broadcasting where two signals are combined;
* ``fs`` is the sampling rate in Hz; lags are returned in samples (callers convert with
  ``ms = samples * 1000 / fs``); the damped-cosine ("Gabor") fit works in ms and Hz;
* a peak of ``cross_correlation(a, b)`` at lag ``k > 0`` means ``a`` LAGS ``b`` by ``k``
  samples (``a[t] ~ b[t - k]``), as in ``numpy.correlate(a, b, "full")``;
* heavy numerics are torch, on the device of the input tensors; only the nonlinear
  least-squares fit of :func:`fit_damped_cosine` runs in scipy, one curve at a time.
"""
from __future__ import annotations

import math
import warnings
from typing import Callable, Sequence

import numpy as np
import torch

__all__ = [
    "cross_correlation",
    "peak_lag",
    "bootstrap_ci",
    "analytic_signal",
    "phase_locking_value",
    "shift_predictor",
    "shuffle_corrected",
    "circular_channel_distance",
    "damped_cosine",
    "fit_damped_cosine",
    "relative_modulation",
    "oscillation_index",
]

Measure = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


# ----------------------------------------------------------------------------- helpers


def _as_real_float(x: torch.Tensor, name: str) -> torch.Tensor:
    """``x`` as a real floating tensor (integers and bools become the default dtype)."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.is_complex():
        raise ValueError(f"{name} must be real, got dtype {x.dtype}")
    if x.dim() == 0:
        raise ValueError(f"{name} must have a time axis (last axis); got a 0-d tensor")
    return x if x.is_floating_point() else x.to(torch.get_default_dtype())


def _check_same_length(a: torch.Tensor, b: torch.Tensor) -> int:
    """The common number of time samples of ``a (..., T)`` and ``b (..., T)``."""
    if a.shape[-1] != b.shape[-1]:
        raise ValueError(f"a and b must have the same number of time samples (last axis); "
                         f"got {a.shape[-1]} and {b.shape[-1]}")
    if a.shape[-1] < 1:
        raise ValueError("signals must have at least one time sample")
    return a.shape[-1]


def _centred(x: torch.Tensor) -> torch.Tensor:
    """``x (..., T)`` minus its time mean; traces that are constant (up to rounding of the
    mean) become exact zeros, so that they correlate to zero rather than to noise or NaN."""
    xc = x - x.mean(dim=-1, keepdim=True)
    scale = x.abs().amax(dim=-1, keepdim=True)
    eps = torch.finfo(x.dtype).eps
    flat = xc.abs().amax(dim=-1, keepdim=True) <= 16 * eps * scale
    return torch.where(flat, torch.zeros_like(xc), xc)


def _fft_length(n: int) -> int:
    """The smallest power of two ``>= n``."""
    return 1 << max(0, (n - 1).bit_length())


def _lagged_products(a: torch.Tensor, b: torch.Tensor, max_lag: int) -> torch.Tensor:
    """``r[..., L + k] = sum_t a[t + k] b[t]`` for ``k = -L..L`` (zero outside ``0..T-1``):
    linear correlation of ``a (..., T)`` and ``b (..., T)`` by FFT; result ``(..., 2L + 1)``."""
    n = _fft_length(a.shape[-1] + max_lag)  # long enough that no lag |k| <= L wraps round
    spec = torch.fft.rfft(a, n=n) * torch.fft.rfft(b, n=n).conj()
    r = torch.fft.irfft(spec, n=n)
    return torch.cat([r[..., n - max_lag:], r[..., : max_lag + 1]], dim=-1)


def _quantile_sorted(sorted_x: torch.Tensor, q: float) -> torch.Tensor:
    """Linear-interpolation quantile (numpy's default) along dim 0 of an already sorted
    ``sorted_x (N, ...)``; result ``(...)``."""
    pos = q * (sorted_x.shape[0] - 1)
    lo = int(math.floor(pos))
    hi = min(lo + 1, sorted_x.shape[0] - 1)
    w = pos - lo
    return sorted_x[lo] * (1.0 - w) + sorted_x[hi] * w


def _statistic(x: torch.Tensor, statistic: str, dim: int) -> torch.Tensor:
    """Mean, or median (mean of the two middle values when their count is even, as numpy),
    of ``x`` along ``dim``."""
    if statistic == "mean":
        return x.mean(dim=dim)
    return _quantile_sorted(x.sort(dim=dim).values.movedim(dim, 0), 0.5)


def _wrap_phase(phi: np.ndarray | float) -> np.ndarray:
    """Angles wrapped into ``(-pi, pi]``."""
    return np.pi - np.mod(np.pi - np.asarray(phi, dtype=float), 2 * np.pi)


# ----------------------------------------------------------------------------- correlation


def cross_correlation(a: torch.Tensor, b: torch.Tensor, max_lag: int,
                      normalise: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Linear (zero-padded) cross-correlation of ``a (..., T)`` with ``b (..., T)``.

    ``c[..., L + k] = sum_t a~[t + k] b~[t] / (T * sd(a) * sd(b))`` for lags ``k = -L..L``,
    where ``a~, b~`` have their time mean removed and ``sd`` is the population standard
    deviation (divisor ``T``), so a normalised autocorrelation is exactly 1 at lag 0. With
    ``normalise=False`` the division by the sds is dropped (the cross-covariance, still ``/ T``).
    Equals the middle ``2L + 1`` entries of ``numpy.correlate(a~, b~, "full") / (T sa sb)``.

    Sign: a peak at ``k > 0`` means ``a`` lags ``b`` by ``k`` samples (``a[t] ~ b[t - k]``).
    A constant trace gives zeros (no NaN). Leading axes of ``a`` and ``b`` broadcast.

    Returns ``lags (2L + 1,)`` int64 and ``c (..., 2L + 1)`` on the inputs' device.
    """
    a = _as_real_float(a, "a")
    b = _as_real_float(b, "b")
    n_time = _check_same_length(a, b)
    if isinstance(max_lag, bool) or not isinstance(max_lag, (int, np.integer)):
        raise ValueError(f"max_lag must be an int, got {max_lag!r}")
    if not 0 <= max_lag <= n_time - 1:
        raise ValueError(f"max_lag must lie in [0, T - 1] = [0, {n_time - 1}], got {max_lag}")
    dtype = torch.promote_types(a.dtype, b.dtype)
    a_c = _centred(a.to(dtype))
    b_c = _centred(b.to(dtype))
    c = _lagged_products(a_c, b_c, int(max_lag)) / n_time
    if normalise:
        sd = (a_c.pow(2).mean(dim=-1, keepdim=True) * b_c.pow(2).mean(dim=-1, keepdim=True)).sqrt()
        c = torch.where(sd > 0, c / torch.where(sd > 0, sd, torch.ones_like(sd)), torch.zeros_like(c))
    lags = torch.arange(-int(max_lag), int(max_lag) + 1, dtype=torch.int64, device=c.device)
    return lags, c


def peak_lag(lags: torch.Tensor, c: torch.Tensor, interpolate: bool = True,
             absolute: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Lag and value of the maximum of ``c (..., L)`` over equally spaced ``lags (L,)``.

    With ``absolute`` the maximum of ``|c|`` is sought (the returned value keeps its sign).
    With ``interpolate`` a parabola through the peak and its two neighbours gives a sub-sample
    lag ``lags[i] + delta * step`` (``|delta| <= 1/2``) and the parabola's vertex value; a peak
    at either end of the range, a flat top, or a peak beside a non-finite value (e.g. lags masked
    with ``-inf`` to restrict the search) is not interpolated.

    Returns ``lag (...)`` (float, in the units of ``lags``) and ``value (...)``.
    """
    if not isinstance(c, torch.Tensor) or c.dim() < 1:
        raise ValueError("c must be a tensor with the lag axis last")
    lags = torch.as_tensor(lags, device=c.device)
    if lags.dim() != 1 or lags.shape[0] != c.shape[-1]:
        raise ValueError(f"lags must be 1-D with c.shape[-1] = {c.shape[-1]} entries, "
                         f"got shape {tuple(lags.shape)}")
    c = _as_real_float(c, "c")
    lags_f = lags.to(c.dtype)
    idx = (c.abs() if absolute else c).argmax(dim=-1, keepdim=True)
    value = c.gather(-1, idx)
    lag = lags_f[idx]
    n = c.shape[-1]
    if interpolate and n >= 3:
        inner = (idx > 0) & (idx < n - 1)
        y0 = c.gather(-1, (idx - 1).clamp(0, n - 1))
        y2 = c.gather(-1, (idx + 1).clamp(0, n - 1))
        curvature = y0 - 2 * value + y2
        ok = inner & (curvature != 0) & torch.isfinite(y0) & torch.isfinite(y2)
        safe = torch.where(ok, curvature, torch.ones_like(curvature))
        diff = torch.where(ok, y0 - y2, torch.zeros_like(value))
        delta = (0.5 * diff / safe).clamp(-0.5, 0.5)
        step = lags_f[1] - lags_f[0]
        lag = lag + delta * step
        value = value - 0.25 * diff * delta
    return lag.squeeze(-1), value.squeeze(-1)


# ----------------------------------------------------------------------------- bootstrap


def bootstrap_ci(x: torch.Tensor, n_boot: int = 1000, level: float = 0.95, statistic: str = "mean",
                 generator: torch.Generator | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Percentile-bootstrap confidence interval of the mean or median over samples.

    ``x (N, ...)``: samples along dim 0, batched over the rest (each column resampled with the
    same resample indices). ``n_boot`` resamples of size ``N`` with replacement; the interval is
    the ``(1 - level)/2`` and ``(1 + level)/2`` quantiles (linear interpolation) of the
    resampled statistic. The median of an even count is the mean of the two middle values.

    Returns ``estimate, lo, hi``, each ``(...)``: the statistic of ``x`` itself and the bounds.
    """
    x = _as_real_float(x, "x")
    if statistic not in ("mean", "median"):
        raise ValueError(f"statistic must be 'mean' or 'median', got {statistic!r}")
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 1:
        raise ValueError(f"n_boot must be a positive int, got {n_boot!r}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie strictly between 0 and 1, got {level}")
    n = x.shape[0]
    if n < 1:
        raise ValueError("x needs at least one sample along dim 0")
    rng_device = generator.device if generator is not None else x.device
    per_resample = max(1, x.numel())
    chunk = max(1, (1 << 24) // per_resample)  # bound the (chunk, N, ...) gather's memory
    stats = []
    for start in range(0, n_boot, chunk):
        m = min(chunk, n_boot - start)
        idx = torch.randint(0, n, (m, n), generator=generator, device=rng_device).to(x.device)
        stats.append(_statistic(x[idx], statistic, dim=1))
    boot = torch.cat(stats, dim=0).sort(dim=0).values
    alpha = (1.0 - level) / 2.0
    return _statistic(x, statistic, dim=0), _quantile_sorted(boot, alpha), _quantile_sorted(boot, 1 - alpha)


# ----------------------------------------------------------------------------- phase synchrony


def _analytic_weights(n_time: int, fs: float, band: Sequence[float] | None,
                      device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Per-FFT-bin weights ``(T,)`` turning a spectrum into an analytic signal's: 1 at DC and
    (even ``T``) Nyquist, 2 at positive frequencies, 0 at negative ones; outside ``band``
    (inclusive, Hz) 0 as well."""
    k = torch.arange(n_time, device=device)
    weights = torch.where(k <= n_time // 2, 2.0, 0.0).to(dtype)
    weights[0] = 1.0
    if n_time % 2 == 0:
        weights[n_time // 2] = 1.0
    if band is not None:
        freq = k.to(dtype) * (fs / n_time)
        weights = weights * ((freq >= band[0]) & (freq <= band[1])).to(dtype)
    return weights


def _check_band(fs: float, band: Sequence[float] | None) -> None:
    """Raise ValueError unless ``fs > 0`` and ``band`` is None or ``0 <= fmin < fmax <= fs/2``."""
    if not (isinstance(fs, (int, float, np.floating, np.integer)) and fs > 0 and math.isfinite(fs)):
        raise ValueError(f"fs must be a positive sampling rate in Hz, got {fs!r}")
    if band is None:
        return
    if len(band) != 2:
        raise ValueError(f"band must be (fmin, fmax) in Hz, got {band!r}")
    fmin, fmax = float(band[0]), float(band[1])
    if not 0.0 <= fmin < fmax <= fs / 2:
        raise ValueError(f"band must satisfy 0 <= fmin < fmax <= fs/2 = {fs / 2:g} Hz, got {band!r}")


def analytic_signal(x: torch.Tensor, fs: float, band: Sequence[float] | None = None) -> torch.Tensor:
    """FFT-based (Hilbert) analytic signal of ``x (..., T)``; complex ``(..., T)``.

    Without ``band`` it equals ``scipy.signal.hilbert(x)``: its real part is ``x`` and its
    imaginary part the Hilbert transform. With ``band = (fmin, fmax)`` (Hz, inclusive) only the
    positive-frequency bins in that band are kept: an ideal (brick-wall) band-pass, whose real
    part is the band-passed ``x``. The whole record is one FFT period (no padding).
    """
    x = _as_real_float(x, "x")
    _check_band(fs, band)
    weights = _analytic_weights(x.shape[-1], float(fs), band, x.device, x.dtype)
    return torch.fft.ifft(torch.fft.fft(x, dim=-1) * weights, dim=-1)


def phase_locking_value(a: torch.Tensor, b: torch.Tensor, fs: float,
                        band: Sequence[float]) -> torch.Tensor:
    """Phase-locking value ``|mean_t exp(i (phi_a[t] - phi_b[t]))|`` of ``a, b (..., T)``.

    ``phi`` are the phases of the band-passed analytic signals (:func:`analytic_signal` with
    ``band``). In [0, 1]: 1 for a constant phase difference, ~``1/sqrt(T_eff)`` for independent
    signals, ``exp(-s^2/2)`` for a (slow, in-band) Gaussian phase difference of sd ``s``.
    Samples where either analytic signal is exactly zero contribute 0. Returns ``(...)``.
    """
    if band is None:
        raise ValueError("band = (fmin, fmax) in Hz is required for the phase-locking value")
    a = _as_real_float(a, "a")
    b = _as_real_float(b, "b")
    _check_same_length(a, b)
    dtype = torch.promote_types(a.dtype, b.dtype)
    cross = analytic_signal(a.to(dtype), fs, band) * analytic_signal(b.to(dtype), fs, band).conj()
    size = cross.abs()
    unit = torch.where(size > 0, cross / torch.where(size > 0, size, torch.ones_like(size)),
                       torch.zeros_like(cross))
    return unit.mean(dim=-1).abs()


# ----------------------------------------------------------------------------- shift predictor


def _check_trials(a: torch.Tensor, b: torch.Tensor, n_shifts: int | None) -> int:
    """The number of shifts to use for trial-major ``a, b (trials, ..., T)``."""
    if not isinstance(a, torch.Tensor) or not isinstance(b, torch.Tensor):
        raise ValueError("a and b must be torch tensors of shape (trials, ..., T)")
    if a.dim() < 2 or b.dim() < 2:
        raise ValueError("a and b must have shape (trials, ..., T) with at least 2 dims")
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"a and b must have the same number of trials (dim 0); "
                         f"got {a.shape[0]} and {b.shape[0]}")
    n_trials = a.shape[0]
    if n_trials < 2:
        raise ValueError("the shift predictor needs at least 2 trials")
    if n_shifts is None:
        return n_trials - 1
    if isinstance(n_shifts, bool) or not isinstance(n_shifts, (int, np.integer)) \
            or not 1 <= n_shifts <= n_trials - 1:
        raise ValueError(f"n_shifts must be an int in [1, trials - 1] = [1, {n_trials - 1}], "
                         f"got {n_shifts!r}")
    return int(n_shifts)


def shift_predictor(measure: Measure, a: torch.Tensor, b: torch.Tensor,
                    n_shifts: int | None = None) -> torch.Tensor:
    """Trial-shuffle (shift-predictor) baseline of ``measure`` for ``a, b (trials, ..., T)``.

    The mean over ``k = 1..n_shifts`` (default ``trials - 1``, i.e. every other trial) of
    ``measure(a, b.roll(k, dims=0))``: ``a`` of trial ``i`` paired with ``b`` of trial
    ``i - k``. Such pairs share only what is locked to the stimulus, so this is the part of
    ``measure(a, b)`` the stimulus alone explains. ``measure`` is any callable
    ``(a, b) -> tensor``; the result has its output shape (typically still per trial).
    """
    n = _check_trials(a, b, n_shifts)
    total = measure(a, b.roll(1, dims=0))
    for k in range(2, n + 1):
        total = total + measure(a, b.roll(k, dims=0))
    return total / n


def shuffle_corrected(measure: Measure, a: torch.Tensor, b: torch.Tensor, n_shifts: int | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``raw = measure(a, b)``, ``predictor = shift_predictor(...)`` and ``raw - predictor``:
    the synchrony not explained by stimulus locking. ``a, b (trials, ..., T)``."""
    predictor = shift_predictor(measure, a, b, n_shifts)
    raw = measure(a, b)
    return raw, predictor, raw - predictor


# ----------------------------------------------------------------------------- channels


def circular_channel_distance(i: int | torch.Tensor, j: int | torch.Tensor,
                              n_channels: int) -> int | torch.Tensor:
    """Distance between channels ``i`` and ``j`` on a ring of ``n_channels``:
    ``min(|i - j| mod n, n - |i - j| mod n)`` (in ``0..n//2``). Ints give an int; tensors
    (broadcast) give an int64 tensor."""
    if isinstance(n_channels, bool) or not isinstance(n_channels, (int, np.integer)) or n_channels < 1:
        raise ValueError(f"n_channels must be a positive int, got {n_channels!r}")
    if isinstance(i, torch.Tensor) or isinstance(j, torch.Tensor):
        i_t, j_t = torch.as_tensor(i), torch.as_tensor(j)
        if i_t.is_floating_point() or j_t.is_floating_point():
            raise ValueError("channel indices must be integers")
        d = torch.remainder((i_t - j_t).abs().long(), n_channels)
        return torch.minimum(d, n_channels - d)
    d = abs(int(i) - int(j)) % n_channels
    return min(d, n_channels - d)


# ----------------------------------------------------------------------------- Gabor fit


ArrayLike = torch.Tensor | np.ndarray | float


def damped_cosine(tau_ms: ArrayLike, amplitude: ArrayLike, frequency_hz: ArrayLike, phase: ArrayLike,
                  decay_ms: ArrayLike, offset: ArrayLike) -> torch.Tensor | np.ndarray:
    """Gabor function fitted to cross-correlograms (Gray et al. 1989):
    ``A * exp(-tau^2 / (2 s^2)) * cos(2 pi f tau / 1000 + phi) + offset``.

    ``tau_ms`` lags in ms, ``frequency_hz`` in Hz, ``phase`` in rad, ``decay_ms`` (the sd ``s``
    of the Gaussian envelope) in ms. Arguments broadcast; if any is a torch tensor the result
    is a tensor (on its device), else a numpy array.
    """
    args = (tau_ms, amplitude, frequency_hz, phase, decay_ms, offset)
    if any(isinstance(v, torch.Tensor) for v in args):
        ref = next(v for v in args if isinstance(v, torch.Tensor))
        dtype = ref.dtype if ref.is_floating_point() else torch.get_default_dtype()
        tau, amp, freq, phi, decay, off = (torch.as_tensor(v, dtype=dtype, device=ref.device) for v in args)
        xp = torch
    else:
        tau, amp, freq, phi, decay, off = (np.asarray(v, dtype=float) for v in args)
        xp = np
    envelope = xp.exp(-tau ** 2 / (2 * decay ** 2))
    return amp * envelope * xp.cos(2 * math.pi * freq * tau / 1000.0 + phi) + off


def _grid_start(lags_ms: torch.Tensor, curves: torch.Tensor, f_guess: float | None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Starting values for every curve of ``curves (N, L)`` by variable projection on a grid.

    For each (frequency, decay) on a grid the model is linear in ``(A cos phi, -A sin phi,
    offset)``; those are solved by least squares for all curves at once and the grid point with
    the smallest residual is kept. Returns ``params (N, 5)`` in the order (amplitude, frequency,
    phase, decay, offset) and the grid's frequency and decay bounds ``(2,)`` each.
    """
    dt = float((lags_ms[1:] - lags_ms[:-1]).abs().median())
    span = float(lags_ms.max() - lags_ms.min())
    f_nyq = 1000.0 / (2 * dt)
    if f_guess is None:
        freqs = torch.linspace(0.0, f_nyq, max(16, 2 * lags_ms.shape[0]), dtype=torch.float64)
    else:
        freqs = torch.linspace(0.7 * f_guess, min(1.3 * f_guess, f_nyq), 25, dtype=torch.float64)
    decays = torch.logspace(math.log10(dt), math.log10(2 * span), 12, dtype=torch.float64)
    tau = lags_ms[None, None, :]
    env = torch.exp(-tau ** 2 / (2 * decays[None, :, None] ** 2)).expand(freqs.shape[0], -1, -1)
    arg = 2 * math.pi * freqs[:, None, None] * tau / 1000.0
    design = torch.stack([env * torch.cos(arg), env * torch.sin(arg),
                          torch.ones_like(env)], dim=-1)                     # (F, D, L, 3)
    gram = design.transpose(-1, -2) @ design + 1e-10 * torch.eye(3, dtype=torch.float64)
    proj = design.transpose(-1, -2) @ curves.T                                # (F, D, 3, N)
    coef = torch.linalg.solve(gram, proj)                                     # (F, D, 3, N)
    sse = (curves ** 2).sum(-1) - (coef * proj).sum(-2)                       # (F, D, N)
    best = sse.reshape(-1, curves.shape[0]).argmin(0)
    fi, di = best // decays.shape[0], best % decays.shape[0]
    p, q, off = coef[fi, di, :, torch.arange(curves.shape[0])].unbind(-1)
    start = torch.stack([torch.hypot(p, q), freqs[fi], torch.atan2(-q, p), decays[di], off], dim=-1)
    return start, torch.tensor([0.0, f_nyq]), torch.tensor([0.25 * dt, 10 * span])


def _damped_cosine_jacobian(tau: np.ndarray, amplitude: float, frequency_hz: float, phase: float,
                            decay_ms: float, offset: float) -> np.ndarray:
    """Derivatives ``(L, 5)`` of :func:`damped_cosine` at ``tau (L,)`` with respect to
    (amplitude, frequency_hz, phase, decay_ms, offset)."""
    envelope = np.exp(-tau ** 2 / (2 * decay_ms ** 2))
    arg = 2 * np.pi * frequency_hz * tau / 1000.0 + phase
    cos_part, sin_part = envelope * np.cos(arg), envelope * np.sin(arg)
    return np.stack([cos_part,
                     -amplitude * sin_part * 2 * np.pi * tau / 1000.0,
                     -amplitude * sin_part,
                     amplitude * cos_part * tau ** 2 / decay_ms ** 3,
                     np.ones_like(tau)], axis=-1)


def _fit_one(tau: np.ndarray, y: np.ndarray, start: np.ndarray, f_bounds: np.ndarray,
             s_bounds: np.ndarray) -> np.ndarray:
    """Least-squares Gabor fit of one curve ``y (L,)``; returns (amplitude >= 0, frequency,
    phase in (-pi, pi], decay, offset, r2), all NaN when the fit fails."""
    from scipy.optimize import OptimizeWarning, curve_fit

    failed = np.full(6, np.nan)
    if not (np.all(np.isfinite(y)) and np.all(np.isfinite(start))):
        return failed
    ss_tot = float(((y - y.mean()) ** 2).sum())
    if np.ptp(y) <= 8 * np.finfo(float).eps * np.abs(y).max():  # flat: nothing to describe
        return np.array([0.0, np.nan, np.nan, np.nan, float(y.mean()), np.nan])
    lower = [0.0, f_bounds[0], -3 * np.pi, s_bounds[0], -np.inf]
    upper = [np.inf, f_bounds[1], 3 * np.pi, s_bounds[1], np.inf]
    x0 = np.clip(start, lower, upper)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", OptimizeWarning)
            params, _ = curve_fit(damped_cosine, tau, y, p0=x0, bounds=(lower, upper),
                                  jac=_damped_cosine_jacobian, x_scale="jac", max_nfev=2000)
    except (RuntimeError, ValueError, np.linalg.LinAlgError):
        return failed
    if not np.all(np.isfinite(params)):
        return failed
    amp, freq, phi, decay, off = params
    if amp < 0:  # fold the sign into the phase
        amp, phi = -amp, phi + np.pi
    ss_res = float(((y - damped_cosine(tau, amp, freq, phi, decay, off)) ** 2).sum())
    r2 = 1.0 - ss_res / ss_tot
    return np.array([amp, freq, float(_wrap_phase(phi)), decay, off, r2])


def fit_damped_cosine(lags_ms: torch.Tensor, c: torch.Tensor, f_guess: float | None = None
                      ) -> dict[str, torch.Tensor]:
    """Least-squares fit of :func:`damped_cosine` to every correlogram of ``c (..., L)``.

    ``lags_ms (L,)``: the lags in ms (equally spaced, e.g. ``lags * 1000 / fs``). Starting
    values come from a grid over frequency (0 to the lags' Nyquist, or ``0.7..1.3 f_guess``) and
    decay on which the linear parameters are solved exactly; ``scipy.optimize.curve_fit`` then
    refines all five with bounds (amplitude >= 0, frequency in [0, Nyquist], decay in
    [dt/4, 10 * span]). A failed fit (or a non-finite curve) gives NaN everywhere, never an
    exception; a constant curve gives ``r2`` NaN.

    Returns a dict of float64 tensors ``(...)`` on ``c``'s device: ``amplitude`` (>= 0),
    ``frequency_hz``, ``phase`` (rad, in (-pi, pi]), ``decay_ms``, ``offset`` and ``r2``
    (``1 - SS_res / SS_tot``).
    """
    c = _as_real_float(c, "c")
    lags = torch.as_tensor(lags_ms, dtype=torch.float64).detach().cpu()
    if lags.dim() != 1 or lags.shape[0] != c.shape[-1]:
        raise ValueError(f"lags_ms must be 1-D with c.shape[-1] = {c.shape[-1]} entries, "
                         f"got shape {tuple(lags.shape)}")
    if lags.shape[0] < 6:
        raise ValueError(f"need at least 6 lags to fit 5 parameters, got {lags.shape[0]}")
    if not bool(torch.all(lags[1:] > lags[:-1])):
        raise ValueError("lags_ms must be strictly increasing")
    if f_guess is not None and not (f_guess > 0 and math.isfinite(f_guess)):
        raise ValueError(f"f_guess must be a positive frequency in Hz, got {f_guess!r}")
    curves = c.detach().to(device="cpu", dtype=torch.float64).reshape(-1, c.shape[-1])
    finite = torch.isfinite(curves).all(-1)
    start, f_bounds, s_bounds = _grid_start(lags, torch.where(finite[:, None], curves, 0.0), f_guess)
    tau, ys, x0 = lags.numpy(), curves.numpy(), start.numpy()
    out = np.stack([_fit_one(tau, ys[n], x0[n], f_bounds.numpy(), s_bounds.numpy())
                    for n in range(ys.shape[0])]) if ys.shape[0] else np.zeros((0, 6))
    result = torch.from_numpy(out).to(c.device).reshape(*c.shape[:-1], 6)
    names = ("amplitude", "frequency_hz", "phase", "decay_ms", "offset", "r2")
    return {name: result[..., k] for k, name in enumerate(names)}


def relative_modulation(fit: dict[str, torch.Tensor]) -> torch.Tensor:
    """Relative modulation ``A / (|offset| + A)`` of a Gabor fit, in [0, 1].

    The relative modulation amplitude of Gray/König (``RMA = A / offset``, defined for raw
    coincidence-count correlograms with a positive offset) mapped monotonically to a bounded
    index: ``RMA / (1 + RMA)``. 0 for a flat correlogram, 1 when there is no offset. Note that a
    mean-removed correlogram (:func:`cross_correlation`) has offset ~0, so this index is then ~1
    for any fitted peak; use :func:`oscillation_index` for rhythmicity. NaN where the fit failed.
    """
    amp = fit["amplitude"]
    total = fit["offset"].abs() + amp
    return torch.where(total > 0, amp / torch.where(total > 0, total, torch.ones_like(total)),
                       torch.where(torch.isnan(total), total, torch.zeros_like(total)))


def oscillation_index(fit: dict[str, torch.Tensor]) -> torch.Tensor:
    """How rhythmic a fitted correlogram is: the Gabor envelope one period from zero lag,
    ``exp(-(1000 / f)^2 / (2 s^2))``, i.e. the height of the first side peak relative to the
    central peak. In [0, 1]: ~1 for a sustained oscillation (many side peaks), ~0 for a single
    non-repeating peak (or ``f = 0``). NaN where the fit failed."""
    period = 1000.0 / fit["frequency_hz"]
    return torch.exp(-period ** 2 / (2 * fit["decay_ms"] ** 2))
