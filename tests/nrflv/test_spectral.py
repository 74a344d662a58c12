"""Spectral measures against scipy.signal (the reference implementation) and closed forms:
a sinusoid's peak and power, Parseval, the coherence of partially shared noise, the 1/K bias of
independent signals' coherence, and the cross-spectrum's phase for a delay."""
from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.signal as ss
import torch

from nrflv.measures.spectral import band_power, coherence, csd, peak, spectrogram, taper, welch

FS_MODEL = 1000 / (70 / 17)  # the model's time base, ~242.86 Hz
SHAPES = [(600,), (3, 517), (2, 3, 300)]


def _noise(shape, seed=0):
    """Standard normal float64 numpy array of ``shape``."""
    return np.random.default_rng(seed).standard_normal(shape)


def _close(ours: torch.Tensor, theirs: np.ndarray, rtol: float):
    """Elementwise closeness, with an absolute floor far below the spectrum's scale."""
    ours = ours.detach().cpu().to(torch.complex128 if ours.is_complex() else torch.float64)
    np.testing.assert_allclose(ours.numpy(), theirs, rtol=rtol,
                               atol=rtol * 1e-3 * np.abs(theirs).max())


# ------------------------------------------------------------------ equal to scipy.signal


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype, rtol", [(torch.float64, 1e-9), (torch.float32, 1e-4)])
@pytest.mark.parametrize("window, nperseg, noverlap, detrend", [
    ("hann", 128, None, "constant"), ("hamming", 100, 30, "linear"),
    ("blackman", 64, 0, False), ("boxcar", 77, 76, "constant")])
def test_welch_equals_scipy(shape, dtype, rtol, window, nperseg, noverlap, detrend):
    x = _noise(shape)
    freqs, psd = welch(torch.tensor(x, dtype=dtype), 250.0, nperseg, noverlap, window, detrend)
    f_ref, p_ref = ss.welch(x, 250.0, window, nperseg, noverlap, detrend=detrend)
    assert psd.dtype == dtype and freqs.dtype == dtype and psd.shape == p_ref.shape
    _close(freqs, f_ref, 1e-12 if dtype == torch.float64 else 1e-6)
    _close(psd, p_ref, rtol)


def test_windows_equal_scipys_periodic_windows():
    for name in ("hann", "hamming", "blackman", "boxcar"):
        for n in (1, 7, 64):
            _close(taper(name, n, torch.float64), ss.get_window(name, n), 1e-12)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype, rtol", [(torch.float64, 1e-9), (torch.float32, 1e-4)])
def test_csd_and_coherence_equal_scipy(shape, dtype, rtol):
    x, y = _noise(shape, 1), _noise(shape, 2) + 0.5 * _noise(shape, 1)
    tx, ty = torch.tensor(x, dtype=dtype), torch.tensor(y, dtype=dtype)
    _, pxy = csd(tx, ty, 100.0, nperseg=64, noverlap=16)
    _, cxy = coherence(tx, ty, 100.0, nperseg=64, noverlap=16)
    assert pxy.dtype == (torch.complex128 if dtype == torch.float64 else torch.complex64)
    _close(pxy, ss.csd(x, y, 100.0, "hann", 64, 16)[1], rtol)
    _close(cxy, ss.coherence(x, y, 100.0, "hann", 64, 16)[1], 10 * rtol)


def test_csd_broadcasts_batch_axes_like_scipy():
    x, y = _noise((4, 400), 3), _noise((400,), 4)
    _, pxy = csd(torch.tensor(x), torch.tensor(y), 10.0, nperseg=50)
    _close(pxy, ss.csd(x, y, 10.0, nperseg=50)[1], 1e-9)
    _, pxx = csd(torch.tensor(x), torch.tensor(x), 10.0, nperseg=50)
    _close(pxx, welch(torch.tensor(x), 10.0, nperseg=50)[1].numpy(), 1e-12)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("nperseg, noverlap", [(64, None), (40, 20), (33, 0)])
def test_spectrogram_equals_scipy(shape, nperseg, noverlap):
    x = _noise(shape, 5)
    freqs, times, sxx = spectrogram(torch.tensor(x), FS_MODEL, nperseg, noverlap)
    scipy_overlap = nperseg // 8 if noverlap is None else noverlap  # our default is scipy's
    f_ref, t_ref, s_ref = ss.spectrogram(x, FS_MODEL, "hann", nperseg, scipy_overlap)
    assert sxx.shape == s_ref.shape == shape[:-1] + (len(f_ref), len(t_ref))
    _close(freqs, f_ref, 1e-12)
    _close(times, t_ref, 1e-12)
    _close(sxx, s_ref, 1e-9)
    _, _, s32 = spectrogram(torch.tensor(x, dtype=torch.float32), FS_MODEL, nperseg, noverlap)
    _close(s32, s_ref, 1e-4)


def test_short_signal_shortens_nperseg_as_scipy_does():
    x = _noise((2, 50), 6)
    with pytest.warns(UserWarning, match="nperseg"):
        freqs, psd = welch(torch.tensor(x), 10.0)  # nperseg 256 > 50 samples
    with pytest.warns(UserWarning):
        ref = ss.welch(x, 10.0)
    assert freqs.shape == (26,)
    _close(psd, ref[1], 1e-9)
    with pytest.warns(UserWarning):
        sxx = spectrogram(torch.tensor(x), 10.0)[2]  # nperseg 64 > 50; noverlap = 50 // 8
    with pytest.warns(UserWarning):
        _close(sxx, ss.spectrogram(x, 10.0, "hann", 64)[2], 1e-9)


def test_batched_result_equals_unit_by_unit():
    x = torch.tensor(_noise((2, 3, 400), 7))
    _, psd = welch(x, 50.0, nperseg=64)
    for a in range(2):
        for b in range(3):
            torch.testing.assert_close(psd[a, b], welch(x[a, b], 50.0, nperseg=64)[1])


# --------------------------------------------------------------------- ground truth


def test_40hz_sinusoid_in_noise_peaks_within_one_bin_with_its_power():
    """A 40 Hz sinusoid of amplitude A in white noise of variance 1 at the model's time base:
    the peak is within one bin (fs/256 ~ 0.95 Hz) of 40 Hz, and the power in 35..45 Hz is the
    sinusoid's A^2/2 plus the noise's 2/fs per Hz over the band."""
    n, amplitude, f0 = 8192, 1.0, 40.0
    t = torch.arange(n, dtype=torch.float64) / FS_MODEL
    noise = torch.tensor(_noise((3, n), 8))
    x = amplitude * torch.sin(2 * math.pi * f0 * t + torch.tensor([[0.0], [1.0], [2.0]])) + noise
    freqs, psd = welch(x, FS_MODEL, nperseg=256)
    f_peak, p_peak = peak(freqs, psd)
    bin_width = FS_MODEL / 256
    assert f_peak.shape == (3,) and torch.all((f_peak - f0).abs() <= bin_width)
    assert torch.equal(p_peak, psd.max(dim=-1).values)
    band = freqs[(freqs >= 35) & (freqs <= 45)]
    expected = amplitude ** 2 / 2 + 2 / FS_MODEL * (band[-1] - band[0] + bin_width)
    power = band_power(freqs, psd, 35.0, 45.0)
    torch.testing.assert_close(power, expected.expand(3), rtol=0.06, atol=0.0)


def test_parseval_exact_for_one_boxcar_segment():
    x = torch.tensor(_noise((4, 256), 9)) * 3 + 1
    freqs, psd = welch(x, 123.0, nperseg=256, window="boxcar", detrend=False)
    total = band_power(freqs, psd, 0.0, 123.0 / 2)
    torch.testing.assert_close(total, (x ** 2).mean(dim=-1), rtol=1e-12, atol=0.0)


@pytest.mark.parametrize("sigma", [0.5, 2.0])
def test_welch_of_white_noise_integrates_to_its_variance(sigma):
    x = sigma * torch.tensor(_noise((8, 16384), 10))
    freqs, psd = welch(x, FS_MODEL, nperseg=256)
    total = band_power(freqs, psd, 0.0, FS_MODEL / 2)
    torch.testing.assert_close(total.mean(), torch.tensor(sigma ** 2, dtype=torch.float64),
                               rtol=0.02, atol=0.0)
    flat = psd[:, 1:-1].mean()  # white noise: 2 sigma^2 / fs per Hz, one-sided
    assert flat.item() == pytest.approx(2 * sigma ** 2 / FS_MODEL, rel=0.02)


@pytest.mark.parametrize("vs, v1, v2", [(1.0, 0.5, 1.0), (1.0, 2.0, 2.0), (2.0, 0.2, 0.2)])
def test_coherence_of_shared_noise_matches_closed_form(vs, v1, v2):
    """x = s + n1, y = s + n2 (independent white noises): Cxy = vs^2 / ((vs+v1)(vs+v2))."""
    s, n1, n2 = (torch.tensor(_noise((32768,), seed)) for seed in (11, 12, 13))
    x, y = s * math.sqrt(vs) + n1 * math.sqrt(v1), s * math.sqrt(vs) + n2 * math.sqrt(v2)
    _, cxy = coherence(x, y, FS_MODEL, nperseg=128)
    truth = vs ** 2 / ((vs + v1) * (vs + v2))
    assert cxy[1:-1].mean().item() == pytest.approx(truth, abs=0.02)


def test_coherence_of_independent_signals_is_about_one_over_segments():
    n, nperseg = 8192, 128
    x, y = torch.tensor(_noise((4, n), 14)), torch.tensor(_noise((4, n), 15))
    _, cxy = coherence(x, y, FS_MODEL, nperseg=nperseg)
    segments = (n - nperseg) // (nperseg // 2) + 1
    mean = cxy[:, 1:-1].mean().item()
    assert 0.7 / segments < mean < 1.5 / segments
    assert torch.all((cxy >= 0) & (cxy <= 1 + 1e-12))


def test_cross_spectrum_phase_of_a_delay():
    """y(t) = x(t - d): Pxy = conj(X) Y = Pxx exp(-2 pi i f d)."""
    delay = 3
    z = torch.tensor(_noise((20000,), 16))
    x, y = z[delay:], z[:-delay]
    freqs, pxy = csd(x, y, FS_MODEL, nperseg=256)
    expected = torch.exp(-2j * math.pi * freqs * delay / FS_MODEL)
    error = torch.angle(pxy / expected)[1:-1]
    assert error.abs().max().item() < 0.1
    assert error.abs().mean().item() < 0.02


def test_float16_input_works():
    x = torch.tensor(_noise((3, 1000), 17)).half()
    freqs, psd = welch(x, FS_MODEL, nperseg=128)
    assert psd.dtype == torch.float32 and freqs.dtype == torch.float32
    reference = ss.welch(x.double().numpy(), FS_MODEL, nperseg=128)[1]
    _close(psd, reference, 1e-4)
    _, cxy = coherence(x, x[0].flip(-1), FS_MODEL, nperseg=128)
    assert cxy.dtype == torch.float32 and cxy.shape == (3, 65)
    _, _, sxx = spectrogram(x, FS_MODEL)
    assert sxx.dtype == torch.float32 and torch.isfinite(sxx).all()


# ------------------------------------------------------------------------ peak, band_power


def test_peak_excludes_dc_by_default_and_respects_the_band():
    freqs = torch.arange(6, dtype=torch.float64)  # 0..5 Hz
    psd = torch.tensor([[9.0, 1.0, 3.0, 2.0, 5.0, 4.0], [0.0, 7.0, 1.0, 1.0, 1.0, 8.0]],
                       dtype=torch.float64)
    f, p = peak(freqs, psd)
    assert f.tolist() == [4.0, 5.0] and p.tolist() == [5.0, 8.0]
    f, p = peak(freqs, psd, fmin=0.0)
    assert f.tolist() == [0.0, 5.0]
    f, p = peak(freqs, psd, fmin=1.5, fmax=3.0)
    assert f.tolist() == [2.0, 2.0] and p.tolist() == [3.0, 1.0]
    f, p = peak(freqs, psd.T, dim=0)  # a spectrogram-like (F, S) layout
    assert f.tolist() == [4.0, 5.0]


def test_band_power_is_a_rectangle_sum():
    freqs = torch.arange(11, dtype=torch.float64) * 0.5  # 0..5 Hz, df 0.5
    psd = torch.full((2, 11), 3.0, dtype=torch.float64)
    power = band_power(freqs, psd, 1.0, 2.0)  # bins 1.0, 1.5, 2.0
    torch.testing.assert_close(power, torch.full((2,), 3 * 3.0 * 0.5, dtype=torch.float64))
    whole = band_power(freqs, psd, 0.0, 5.0)  # every bin, 0 Hz included
    torch.testing.assert_close(whole, torch.full((2,), 11 * 3.0 * 0.5, dtype=torch.float64))
    with pytest.raises(ValueError, match="no frequency bin"):
        band_power(freqs, psd, 1.1, 1.4)  # between bin centres


def test_spectrogram_band_power_over_time_tracks_a_burst():
    """A 40 Hz burst in the second half only: gamma power per segment jumps at its onset."""
    n = 4096
    t = torch.arange(n, dtype=torch.float64) / FS_MODEL
    x = torch.tensor(_noise((n,), 18)) * 0.1 + torch.sin(2 * math.pi * 40 * t) * (t > t[n // 2])
    freqs, times, sxx = spectrogram(x, FS_MODEL, nperseg=64)
    gamma = band_power(freqs, sxx, 35.0, 45.0, dim=-2)
    assert gamma.shape == times.shape
    late, early = gamma[times > t[n // 2] + 0.3], gamma[times < t[n // 2] - 0.3]
    assert late.min() > 20 * early.max()
    assert late.mean().item() == pytest.approx(0.5, rel=0.15)


# ---------------------------------------------------------------------------- validation


@pytest.mark.parametrize("call, message", [
    (lambda x: welch(x, 0.0), "fs"),
    (lambda x: welch(x, 10.0, nperseg=0), "nperseg"),
    (lambda x: welch(x, 10.0, nperseg=64, noverlap=64), "noverlap"),
    (lambda x: welch(x, 10.0, nperseg=64, window="kaiser"), "window"),
    (lambda x: welch(x, 10.0, nperseg=64, window=torch.ones(32)), "window"),
    (lambda x: welch(x, 10.0, nperseg=64, detrend="quadratic"), "detrend"),
    (lambda x: welch(x.to(torch.complex64), 10.0, nperseg=64), "real"),
    (lambda x: welch(x[..., :0], 10.0), "no samples"),
    (lambda x: csd(x, x[:, :100], 10.0, nperseg=64), "same number"),
    (lambda x: csd(x, x[:2], 10.0, nperseg=64), "broadcast"),
    (lambda x: peak(torch.arange(5.0), x), "match"),
    (lambda x: peak(torch.arange(200.0), x, fmin=300.0), "no frequency bin"),
    (lambda x: band_power(torch.arange(200.0), x, 5.0, 1.0), "fmin"),
    (lambda x: band_power(torch.arange(200.0) ** 2, x, 1.0, 5.0), "evenly"),
])
def test_bad_arguments_raise_value_errors(call, message):
    x = torch.randn(3, 200, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match=message):
        call(x)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_results_equal_cpu_results():
    x, y = torch.tensor(_noise((3, 2000), 19)), torch.tensor(_noise((3, 2000), 20))
    for name, fn in [("welch", lambda a, b: welch(a, FS_MODEL)),
                     ("coherence", lambda a, b: coherence(a, b, FS_MODEL)),
                     ("spectrogram", lambda a, b: spectrogram(a, FS_MODEL))]:
        cpu, gpu = fn(x, y), fn(x.cuda(), y.cuda())
        assert all(g.device.type == "cuda" for g in gpu), name
        for c, g in zip(cpu, gpu):
            torch.testing.assert_close(g.cpu(), c, rtol=1e-9, atol=1e-12)
    freqs, psd = welch(x.cuda().float(), FS_MODEL)
    f, p = peak(freqs, psd, fmin=10.0, fmax=80.0)
    assert f.device.type == "cuda" and band_power(freqs, psd, 10.0, 80.0).device.type == "cuda"
