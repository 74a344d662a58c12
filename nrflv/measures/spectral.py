"""Spectral measures of recorded activity: Welch PSD, cross-spectrum, coherence, spectrogram,
spectral peak and band power.

Conventions (all functions):

* Time is the LAST axis; every leading axis (units, trials, channels) is a batch axis and is
  carried through unchanged. ``fs`` is the sampling rate in Hz; frequencies are in Hz, times in
  seconds, PSDs in (signal unit)^2 / Hz.
* Spectra are one-sided ("density" scaling): bins 0 < f < fs/2 are doubled so that
  ``band_power(freqs, psd, 0, fs / 2)`` is the signal's (windowed, detrended) variance.
* ``welch``, ``csd``, ``coherence`` and ``spectrogram`` equal ``scipy.signal``'s functions of
  the same names called with the same ``window``, ``nperseg``, ``noverlap`` and ``detrend``
  (``nfft = nperseg``, ``average = "mean"``, no padding or boundary extension).
* Cross-spectra use scipy's sign: ``Pxy = conj(X) * Y``, so a ``y`` that lags ``x`` by ``d``
  seconds has phase ``angle(Pxy) = -2 pi f d``.
* Computation runs on the input's device in its floating type promoted to at least float32
  (float16/bfloat16 -> float32; float64 stays float64); results have that type (complex
  for ``csd``). Segments come from ``Tensor.unfold`` and one batched ``torch.fft.rfft``.
"""
from __future__ import annotations

import math
import warnings

import torch

WINDOWS = ("hann", "hamming", "blackman", "boxcar")
DETRENDS = ("constant", "linear", False, None)


# ---------------------------------------------------------------- argument checks and set-up


def _as_signal(x: torch.Tensor, name: str = "x") -> torch.Tensor:
    """``x: (..., T)`` real tensor (or array-like) -> the same values as a tensor of floating type
    >= float32 on the same device. Raises ValueError for complex, 0-d or empty input."""
    x = torch.as_tensor(x)
    if x.is_complex():
        raise ValueError(f"{name} must be real; got a complex tensor ({x.dtype})")
    if x.ndim == 0:
        raise ValueError(f"{name} must have a time axis (the last one); got a 0-d tensor")
    if x.shape[-1] == 0:
        raise ValueError(f"{name} has no samples: its last (time) axis has length 0")
    dtype = x.dtype if x.dtype == torch.float64 else torch.float32
    return x.to(dtype)


def _check_fs(fs: float) -> float:
    """The sampling rate as a positive finite float (Hz)."""
    fs = float(fs)
    if not math.isfinite(fs) or fs <= 0:
        raise ValueError(f"fs (sampling rate, Hz) must be positive and finite; got {fs}")
    return fs


def _segment_lengths(n_samples: int, nperseg: int, noverlap: int | None,
                     window: str | torch.Tensor, overlap_divisor: int = 2) -> tuple[int, int]:
    """``(nperseg, noverlap)`` as scipy triages them for a signal of ``n_samples``.

    A string window longer than the signal is shortened to the signal (with a warning, as scipy
    does); a tensor window must fit. ``noverlap`` defaults to ``nperseg // overlap_divisor``
    (computed after any shortening) and must lie in ``[0, nperseg)``.
    """
    if isinstance(nperseg, bool) or int(nperseg) != nperseg or nperseg < 1:
        raise ValueError(f"nperseg must be a positive integer; got {nperseg!r}")
    nperseg = int(nperseg)
    if isinstance(window, torch.Tensor):
        if window.ndim != 1 or window.numel() != nperseg:
            raise ValueError(f"a tensor window must be 1-D of length nperseg={nperseg}; "
                             f"got shape {tuple(window.shape)}")
        if n_samples < nperseg:
            raise ValueError(f"the window (length {nperseg}) is longer than the signal "
                             f"({n_samples} samples)")
    elif n_samples < nperseg:
        warnings.warn(f"nperseg={nperseg} is greater than the signal length {n_samples}; "
                      f"using nperseg={n_samples}", UserWarning, stacklevel=4)
        nperseg = n_samples
    if noverlap is None:
        noverlap = nperseg // overlap_divisor
    if isinstance(noverlap, bool) or int(noverlap) != noverlap or not 0 <= noverlap < nperseg:
        raise ValueError(f"noverlap must be an integer in [0, nperseg={nperseg}); got {noverlap!r}")
    return nperseg, int(noverlap)


def taper(window: str | torch.Tensor, nperseg: int, dtype: torch.dtype,
          device: torch.device | str | None = None) -> torch.Tensor:
    """The analysis window ``(nperseg,)``: periodic (DFT-even) ``"hann"``, ``"hamming"``,
    ``"blackman"`` or ``"boxcar"``, equal to ``scipy.signal.get_window(name, nperseg)``; a 1-D
    tensor is used as given (cast to ``dtype``/``device``)."""
    if isinstance(window, torch.Tensor):
        return window.to(dtype=dtype, device=device)
    makers = {
        "hann": lambda: torch.hann_window(nperseg, periodic=True, dtype=dtype, device=device),
        "hamming": lambda: torch.hamming_window(nperseg, periodic=True, dtype=dtype,
                                                device=device),
        "blackman": lambda: torch.blackman_window(nperseg, periodic=True, dtype=dtype,
                                                  device=device),
        "boxcar": lambda: torch.ones(nperseg, dtype=dtype, device=device),
    }
    if window not in makers:
        raise ValueError(f"window must be one of {WINDOWS} or a 1-D tensor; got {window!r}")
    return makers[window]()


def rfft_frequencies(nperseg: int, fs: float, dtype: torch.dtype = torch.float64,
                     device: torch.device | str | None = None) -> torch.Tensor:
    """Frequencies (Hz) of the one-sided spectrum of ``nperseg``-sample segments:
    ``(nperseg // 2 + 1,)``, from 0 to fs/2 (inclusive when nperseg is even)."""
    return torch.arange(nperseg // 2 + 1, dtype=dtype, device=device) * (fs / nperseg)


def segment_centres(n_samples: int, nperseg: int, noverlap: int, fs: float,
                    dtype: torch.dtype = torch.float64,
                    device: torch.device | str | None = None) -> torch.Tensor:
    """Times (s) of the centres of the segments Welch/spectrogram cut from ``n_samples``:
    ``(S,)`` with ``S = (n_samples - nperseg) // step + 1``, ``step = nperseg - noverlap``;
    sample k sits at time k / fs, so the first centre is ``nperseg / 2 / fs``."""
    step = nperseg - noverlap
    n_segments = (n_samples - nperseg) // step + 1
    return (nperseg / 2 + step * torch.arange(n_segments, dtype=dtype, device=device)) / fs


# ------------------------------------------------------------------------ the numerical core


def detrend_segments(segments: torch.Tensor, detrend: str | bool | None) -> torch.Tensor:
    """Remove from each segment ``segments: (..., S, L)`` its mean (``"constant"``), its
    least-squares line (``"linear"``), or nothing (``False``/``None``); returns ``(..., S, L)``."""
    if detrend is False or detrend is None:
        return segments
    if detrend == "constant":
        return segments - segments.mean(dim=-1, keepdim=True)
    if detrend == "linear":
        length = segments.shape[-1]
        t = torch.arange(length, dtype=segments.dtype, device=segments.device) - (length - 1) / 2
        centred = segments - segments.mean(dim=-1, keepdim=True)
        slope = (centred * t).sum(dim=-1, keepdim=True) / (t * t).sum().clamp_min(1e-30)
        return centred - slope * t
    raise ValueError(f"detrend must be one of {DETRENDS}; got {detrend!r}")


def windowed_spectra(x: torch.Tensor, win: torch.Tensor, noverlap: int,
                     detrend: str | bool | None) -> torch.Tensor:
    """Fourier coefficients of the detrended, windowed segments of ``x: (..., T)`` cut with
    ``win: (L,)`` every ``L - noverlap`` samples: complex ``(..., S, L // 2 + 1)``."""
    nperseg = win.shape[0]
    segments = x.unfold(-1, nperseg, nperseg - noverlap)
    return torch.fft.rfft(detrend_segments(segments, detrend) * win, dim=-1)


def one_sided(power: torch.Tensor, nperseg: int) -> torch.Tensor:
    """Fold a two-sided spectrum ``power: (..., nperseg // 2 + 1)`` onto positive frequencies:
    doubles every bin except 0 Hz and (for even ``nperseg``) the Nyquist bin."""
    gain = torch.full((power.shape[-1],), 2.0, dtype=power.real.dtype, device=power.device)
    gain[0] = 1.0
    if nperseg % 2 == 0:
        gain[-1] = 1.0
    return power * gain


def density_scale(win: torch.Tensor, fs: float) -> torch.Tensor:
    """Factor turning ``|rfft(segment * win)|^2`` into a PSD (units^2/Hz): ``1 / (fs sum w^2)``."""
    return 1.0 / (fs * (win * win).sum())


# ---------------------------------------------------------------------------- public measures


def welch(x: torch.Tensor, fs: float, nperseg: int = 256, noverlap: int | None = None,
          window: str | torch.Tensor = "hann",
          detrend: str | bool | None = "constant") -> tuple[torch.Tensor, torch.Tensor]:
    """One-sided Welch power spectral density of ``x: (..., T)`` sampled at ``fs`` Hz.

    Segments of ``nperseg`` samples overlapping by ``noverlap`` (default ``nperseg // 2``;
    ``nperseg`` is cut to T, with a warning, when T is shorter) are detrended, windowed and
    their periodograms averaged. Returns ``freqs: (F,)`` Hz, ``F = nperseg // 2 + 1``, and
    ``psd: (..., F)`` in units^2/Hz; equals ``scipy.signal.welch`` with the same arguments.
    """
    x, fs = _as_signal(x), _check_fs(fs)
    nperseg, noverlap = _segment_lengths(x.shape[-1], nperseg, noverlap, window)
    win = taper(window, nperseg, x.dtype, x.device)
    spectra = windowed_spectra(x, win, noverlap, detrend)
    power = (spectra.real ** 2 + spectra.imag ** 2).mean(dim=-2) * density_scale(win, fs)
    return rfft_frequencies(nperseg, fs, x.dtype, x.device), one_sided(power, nperseg)


def csd(x: torch.Tensor, y: torch.Tensor, fs: float, nperseg: int = 256,
        noverlap: int | None = None, window: str | torch.Tensor = "hann",
        detrend: str | bool | None = "constant") -> tuple[torch.Tensor, torch.Tensor]:
    """One-sided Welch cross power spectral density of ``x: (..., T)`` and ``y: (..., T)``.

    Leading axes broadcast; both must have the same T (scipy would zero-pad the shorter; here
    that is an error). ``Pxy = mean over segments of conj(X) Y`` scaled as in :func:`welch`, so
    ``csd(x, x) == welch(x)``. Returns ``freqs: (F,)`` Hz and complex ``Pxy: (..., F)``; equals
    ``scipy.signal.csd`` with the same arguments.
    """
    x, y, fs = _as_signal(x, "x"), _as_signal(y, "y"), _check_fs(fs)
    if x.shape[-1] != y.shape[-1]:
        raise ValueError(f"x and y must have the same number of samples (last axis); "
                         f"got {x.shape[-1]} and {y.shape[-1]}")
    try:
        torch.broadcast_shapes(x.shape, y.shape)
    except RuntimeError as error:
        raise ValueError(f"the leading (batch) axes of x {tuple(x.shape)} and y "
                         f"{tuple(y.shape)} do not broadcast") from error
    dtype = torch.promote_types(x.dtype, y.dtype)
    x, y = x.to(dtype), y.to(device=x.device, dtype=dtype)
    nperseg, noverlap = _segment_lengths(x.shape[-1], nperseg, noverlap, window)
    win = taper(window, nperseg, dtype, x.device)
    spectra_x = windowed_spectra(x, win, noverlap, detrend)
    spectra_y = windowed_spectra(y, win, noverlap, detrend)
    cross = (spectra_x.conj() * spectra_y).mean(dim=-2) * density_scale(win, fs)
    return rfft_frequencies(nperseg, fs, dtype, x.device), one_sided(cross, nperseg)


def coherence(x: torch.Tensor, y: torch.Tensor, fs: float, nperseg: int = 256,
              noverlap: int | None = None, window: str | torch.Tensor = "hann",
              detrend: str | bool | None = "constant") -> tuple[torch.Tensor, torch.Tensor]:
    """Magnitude-squared coherence ``|Pxy|^2 / (Pxx Pyy)`` of ``x: (..., T)`` and ``y: (..., T)``
    from Welch estimates (arguments as in :func:`csd`). Returns ``freqs: (F,)`` Hz and
    ``Cxy: (..., F)`` in [0, 1]; equals ``scipy.signal.coherence``. Estimated from K segments,
    independent signals give ``E[Cxy] ~ 1/K`` (an upward bias), not 0.
    """
    freqs, cross = csd(x, y, fs, nperseg, noverlap, window, detrend)
    _, power_x = welch(x, fs, nperseg, noverlap, window, detrend)
    _, power_y = welch(y, fs, nperseg, noverlap, window, detrend)
    dtype = cross.real.dtype
    power_y = power_y.to(dtype=dtype, device=cross.device)
    magnitude2 = cross.real ** 2 + cross.imag ** 2
    return freqs, magnitude2 / power_x.to(dtype) / power_y


def spectrogram(x: torch.Tensor, fs: float, nperseg: int = 64, noverlap: int | None = None,
                window: str | torch.Tensor = "hann", detrend: str | bool | None = "constant",
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Short-time one-sided PSD of ``x: (..., T)``: the periodogram of each segment, unaveraged.

    ``noverlap`` defaults to ``nperseg // 8`` (scipy's spectrogram default; the window default
    here is ``"hann"``, scipy's is a Tukey window, so pass ``window="hann"`` to scipy to
    compare). Returns ``freqs: (F,)`` Hz, ``times: (S,)`` s at segment centres (sample k at
    k / fs) and ``Sxx: (..., F, S)`` in units^2/Hz; equals ``scipy.signal.spectrogram`` with the
    same window, nperseg, noverlap and detrend (mode "psd", scaling "density").
    """
    x, fs = _as_signal(x), _check_fs(fs)
    nperseg, noverlap = _segment_lengths(x.shape[-1], nperseg, noverlap, window,
                                         overlap_divisor=8)
    win = taper(window, nperseg, x.dtype, x.device)
    spectra = windowed_spectra(x, win, noverlap, detrend)
    power = (spectra.real ** 2 + spectra.imag ** 2) * density_scale(win, fs)
    freqs = rfft_frequencies(nperseg, fs, x.dtype, x.device)
    times = segment_centres(x.shape[-1], nperseg, noverlap, fs, x.dtype, x.device)
    return freqs, times, one_sided(power, nperseg).transpose(-1, -2)


# ------------------------------------------------------------------- reading off a spectrum


def _band_mask(freqs: torch.Tensor, values: torch.Tensor, fmin: float | None, fmax: float | None,
               dim: int) -> torch.Tensor:
    """Check that ``freqs: (F,)`` labels axis ``dim`` of ``values`` and return the boolean
    ``(F,)`` mask of ``fmin <= f <= fmax`` (``fmin=None``: f > 0; ``fmax=None``: no upper
    bound). Raises ValueError when the band holds no bin."""
    if freqs.ndim != 1:
        raise ValueError(f"freqs must be 1-D; got shape {tuple(freqs.shape)}")
    if values.ndim == 0 or values.shape[dim] != freqs.shape[0]:
        raise ValueError(f"axis {dim} of the spectrum {tuple(values.shape)} must match "
                         f"freqs ({freqs.shape[0]} bins)")
    if fmin is not None and fmax is not None and fmin > fmax:
        raise ValueError(f"fmin ({fmin}) must not exceed fmax ({fmax})")
    freqs = freqs.to(values.device)
    mask = freqs > 0 if fmin is None else freqs >= fmin
    if fmax is not None:
        mask = mask & (freqs <= fmax)
    if not bool(mask.any()):
        raise ValueError(f"no frequency bin lies in [{fmin}, {fmax}] Hz "
                         f"(freqs span {float(freqs.min())}..{float(freqs.max())} Hz)")
    return mask


def peak(freqs: torch.Tensor, psd: torch.Tensor, fmin: float | None = None,
         fmax: float | None = None, dim: int = -1) -> tuple[torch.Tensor, torch.Tensor]:
    """Frequency and power of the largest bin of ``psd: (..., F)`` within ``[fmin, fmax]`` Hz.

    ``freqs: (F,)`` labels axis ``dim`` of ``psd`` (use ``dim=-2`` for a spectrogram's
    ``(..., F, S)``). Default band: every bin above 0 Hz (pass ``fmin=0`` to include 0 Hz).
    Returns ``f_peak`` and ``p_peak``, each ``psd``'s shape without axis ``dim``. The peak
    frequency is a bin centre (resolution ``fs / nperseg``); no interpolation.
    """
    psd = torch.as_tensor(psd)
    mask = _band_mask(freqs, psd, fmin, fmax, dim)
    index = mask.nonzero().squeeze(-1)
    inside = psd.index_select(dim, index)
    p_peak, where = inside.max(dim=dim)
    f_peak = freqs.to(device=psd.device)[index][where]
    return f_peak, p_peak


def band_power(freqs: torch.Tensor, psd: torch.Tensor, fmin: float, fmax: float,
               dim: int = -1) -> torch.Tensor:
    """Power in ``[fmin, fmax]`` Hz of ``psd: (..., F)`` (units^2/Hz) -> ``(...)`` in units^2.

    Rectangle rule: ``df * sum of psd over the bins whose centre f satisfies fmin <= f <= fmax``,
    with ``df = freqs[1] - freqs[0]`` (``freqs: (F,)`` must be evenly spaced). With a one-sided
    PSD, ``band_power(freqs, psd, 0, fs / 2)`` is the signal's variance (Parseval, exactly for a
    boxcar-windowed single segment). ``freqs`` labels axis ``dim`` of ``psd``.
    """
    psd = torch.as_tensor(psd)
    if fmin is None or fmax is None:
        raise ValueError("band_power needs both fmin and fmax (Hz)")
    mask = _band_mask(freqs, psd, fmin, fmax, dim)
    if freqs.shape[0] < 2:
        raise ValueError("band_power needs at least 2 frequency bins to know the bin width")
    steps = freqs.diff()
    df = steps[0]
    if not torch.allclose(steps, df.expand_as(steps), rtol=1e-6, atol=0.0) or float(df) <= 0:
        raise ValueError("freqs must be evenly spaced and increasing")
    index = mask.nonzero().squeeze(-1)
    return psd.index_select(dim, index).sum(dim=dim) * float(df)


# ------------------------------------------------------------------------- band coherency


def coherency_in_band(freqs: torch.Tensor, pxy: torch.Tensor, pxx: torch.Tensor, pyy: torch.Tensor,
                      fmin: float, fmax: float) -> torch.Tensor:
    """Complex coherency of a band from Welch spectra: ``sum Pxy / sqrt(sum Pxx * sum Pyy)``
    over the bins with ``fmin <= f <= fmax`` (``freqs: (F,)``; ``pxy`` complex and ``pxx``,
    ``pyy`` real, each ``(..., F)``, broadcasting). Its modulus is in [0, 1]; its angle is the
    band's phase with :func:`csd`'s sign (``y`` lagging ``x`` by ``d`` s at frequency f:
    ``-2 pi f d``). Zero where a signal has no power in the band. Returns complex ``(...)``."""
    mask = _band_mask(freqs, pxy, fmin, fmax, -1)
    sxy = pxy[..., mask].sum(-1)
    norm = (pxx[..., mask].sum(-1) * pyy[..., mask].sum(-1)).sqrt().to(sxy.real.dtype)
    ok = norm > 0
    return torch.where(ok, sxy / torch.where(ok, norm, torch.ones_like(norm)), torch.zeros_like(sxy))


def band_coherency(x: torch.Tensor, y: torch.Tensor, fs: float, fmin: float, fmax: float,
                   nperseg: int = 256, noverlap: int | None = None, window: str | torch.Tensor = "hann",
                   detrend: str | bool | None = "constant") -> torch.Tensor:
    """Complex coherency of ``x, y: (..., T)`` in the band ``[fmin, fmax]`` Hz (Welch spectra as
    in :func:`csd`; see :func:`coherency_in_band`). For a ``y`` that repeats ``x`` ``d`` s later,
    ``angle = -2 pi f0 d`` at the band's centre ``f0`` (a 90-degree lag of ``y``: ``-pi/2``);
    for independent signals the modulus is ~``1/sqrt(segments x bins)`` and the angle uniform.
    Returns complex ``(...)``."""
    freqs, pxy = csd(x, y, fs, nperseg, noverlap, window, detrend)
    _, pxx = welch(x, fs, nperseg, noverlap, window, detrend)
    _, pyy = welch(y, fs, nperseg, noverlap, window, detrend)
    return coherency_in_band(freqs, pxy, pxx, pyy, fmin, fmax)
