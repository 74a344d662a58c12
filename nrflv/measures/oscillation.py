"""Is a single unit oscillating? Detrended spectra, their prominent peaks, autocorrelation.

The original thesis code calls a unit "oscillating" from its power spectrum: the trace of one
period (during the stimulus, or before it) is linearly detrended, its Welch spectrum (power,
not density) computed, and its *prominent* peaks found -- local maxima whose prominence is at
least half the spectrum's maximum (``scipy.signal.find_peaks(psd, prominence=max/2,
distance=3)``). The summed "peak frequency x peak power" over those peaks measures how much
fast rhythm a unit carries, and is what the thesis plots against contrast.

Here a unit is classed ``oscillating`` in a period when it has a prominent peak away from the
lowest ``min_bin`` bins (where a drift left by the detrending, not a rhythm, shows up) whose
power is at least ``peak_to_median`` times the spectrum's median -- a white-noise spectrum
from a few Welch segments has local maxima too, and the ratio keeps those out (its chance
rate on white noise is measured in the tests). All functions are pure; the spectra are batched
torch, the peak search runs per spectrum in numpy (scipy's ``find_peaks``).
"""
from __future__ import annotations

import numpy as np
import torch

from nrflv.measures.spectral import taper, welch


def linear_detrend(x: torch.Tensor) -> torch.Tensor:
    """``x (..., T)`` minus its least-squares line along the last axis (same shape)."""
    n = x.shape[-1]
    t = torch.arange(n, dtype=x.dtype, device=x.device)
    t = t - t.mean()
    xm = x.mean(-1, keepdim=True)
    denom = (t * t).sum()
    slope = ((x - xm) * t).sum(-1, keepdim=True) / denom if n > 1 else torch.zeros_like(xm)
    return x - xm - slope * t


def detrended_spectrum(x: torch.Tensor, fs: float, nperseg: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Welch power spectrum (``scaling='spectrum'``: units^2 per bin) of ``x (..., T)`` after a
    linear detrend of the whole trace, as the original's oscillation test. Returns
    ``freqs (F,)`` and ``power (..., F)``."""
    xd = linear_detrend(x)
    f, psd = welch(xd, fs, nperseg=min(nperseg, x.shape[-1]))
    df = float(f[1] - f[0]) if f.numel() > 1 else fs
    return f, psd * df * _enbw_factor(min(nperseg, x.shape[-1]), x)


def _enbw_factor(nperseg: int, like: torch.Tensor) -> float:
    """density -> spectrum: scipy's spectrum scaling is density x fs x sum(w^2) / sum(w)^2,
    and ``psd * df`` already carries ``fs / nperseg``: the factor left is ``nperseg sum(w^2) /
    sum(w)^2`` of the Hann taper."""
    w = taper("hann", nperseg, torch.float64, like.device)
    return float(nperseg * (w * w).sum() / w.sum() ** 2)


def prominent_peaks(power: np.ndarray, rel_prominence: float = 0.5, distance: int = 3) -> np.ndarray:
    """Indices of the local maxima of one spectrum ``power (F,)`` whose prominence is at least
    ``rel_prominence`` times its maximum, at least ``distance`` bins apart (the original's
    criterion); empty when there are none."""
    from scipy.signal import find_peaks

    power = np.asarray(power, dtype=np.float64)
    if power.size < 3 or not np.isfinite(power).all() or power.max() <= 0:
        return np.zeros(0, dtype=np.int64)
    idx, _ = find_peaks(power, prominence=rel_prominence * power.max(), distance=distance)
    return idx.astype(np.int64)


def oscillation_classes(freqs: torch.Tensor, power: torch.Tensor, *, rel_prominence: float = 0.5,
                        distance: int = 3, min_bin: int = 2, peak_to_median: float = 5.0) -> dict[str, np.ndarray]:
    """Per spectrum of ``power (..., F)``: whether it oscillates and its peaks.

    Returns numpy arrays of shape ``(...)``: ``oscillating`` (bool: a prominent peak at bin >=
    ``min_bin`` with power >= ``peak_to_median`` x the median), ``peak_hz`` and ``peak_power``
    of the strongest such peak (NaN without one), ``n_peaks`` (prominent peaks anywhere) and
    ``freq_power_product`` (sum of frequency x power over the prominent peaks, the original's
    measure; 0 without peaks).
    """
    f = freqs.detach().double().cpu().numpy()
    p = power.detach().double().cpu().numpy()
    shape = p.shape[:-1]
    flat = p.reshape(-1, p.shape[-1])
    out = {"oscillating": np.zeros(len(flat), bool), "peak_hz": np.full(len(flat), np.nan),
           "peak_power": np.full(len(flat), np.nan), "n_peaks": np.zeros(len(flat), np.int64),
           "freq_power_product": np.zeros(len(flat))}
    for k, spec in enumerate(flat):
        idx = prominent_peaks(spec, rel_prominence, distance)
        out["n_peaks"][k] = idx.size
        if idx.size == 0:
            continue
        out["freq_power_product"][k] = float((f[idx] * spec[idx]).sum())
        good = idx[(idx >= min_bin) & (spec[idx] >= peak_to_median * np.median(spec))]
        if good.size:
            best = good[np.argmax(spec[good])]
            out["oscillating"][k] = True
            out["peak_hz"][k], out["peak_power"][k] = f[best], spec[best]
    return {k: v.reshape(shape) for k, v in out.items()}


def autocorrelation(x: torch.Tensor, max_lag: int, detrend: bool = True) -> torch.Tensor:
    """Normalised autocorrelation ``(..., max_lag + 1)`` of ``x (..., T)`` at lags 0..max_lag
    (1 at lag 0; the biased estimator ``sum_t x_t x_{t+k} / sum_t x_t^2`` of the linearly
    detrended -- or mean-removed -- trace, as ``matplotlib.pyplot.acorr`` with
    ``detrend_linear``). A constant trace gives NaN."""
    if not 0 <= max_lag < x.shape[-1]:
        raise ValueError(f"max_lag must lie in [0, {x.shape[-1] - 1}], got {max_lag}")
    x = x.double()
    x = linear_detrend(x) if detrend else x - x.mean(-1, keepdim=True)
    n = x.shape[-1]
    size = 1 << (2 * n - 1).bit_length()
    spec = torch.fft.rfft(x, n=size)
    ac = torch.fft.irfft(spec * spec.conj(), n=size)[..., :max_lag + 1]
    return ac / ac[..., :1]
