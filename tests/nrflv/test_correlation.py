"""Correlation and synchrony measures against closed forms, numpy/scipy references and
synthetic signals with known lags, phase statistics and correlogram shapes."""
from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.signal
import torch

from nrflv.measures.correlation import (
    analytic_signal,
    bootstrap_ci,
    circular_channel_distance,
    cross_correlation,
    damped_cosine,
    fit_damped_cosine,
    oscillation_index,
    peak_lag,
    phase_locking_value,
    relative_modulation,
    shift_predictor,
    shuffle_corrected,
)

FS = 1000.0 / (70.0 / 17.0)  # the sampler's rate: one sample every 70/17 ms, ~242.86 Hz


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _fractional_delay(x: torch.Tensor, delay: float) -> torch.Tensor:
    """``x (..., T)`` delayed by ``delay`` samples (circularly) by an FFT phase shift."""
    freq = torch.fft.rfftfreq(x.shape[-1], dtype=torch.float64)
    return torch.fft.irfft(torch.fft.rfft(x) * torch.exp(-2j * math.pi * freq * delay), n=x.shape[-1])


def _smooth_gaussian(shape: tuple[int, ...], width: float, generator: torch.Generator) -> torch.Tensor:
    """Stationary Gaussian noise ``shape (..., T)`` of unit variance, smoothed by a Gaussian
    kernel of sd ``width`` samples (so its spectrum stays far below 40 Hz at FS)."""
    half = int(6 * width)
    k = torch.arange(-half, half + 1, dtype=torch.float64)
    kernel = torch.exp(-k ** 2 / (2 * width ** 2))
    kernel = kernel / kernel.norm()  # unit-variance output for unit-variance white input
    white = torch.randn(*shape[:-1], shape[-1] + 2 * half, generator=generator, dtype=torch.float64)
    flat = white.reshape(-1, 1, white.shape[-1])
    return torch.nn.functional.conv1d(flat, kernel[None, None]).reshape(shape)


# ----------------------------------------------------------------------------- cross-correlation


@pytest.mark.parametrize("k", [3, -5])
def test_lagged_copy_peaks_at_its_lag_with_the_documented_sign(k):
    """a[t] = b[t - k]: a lags b by k samples, so the peak is at +k, with correlation ~1."""
    x = torch.randn(2, 520, generator=_gen(0), dtype=torch.float64)
    b = x[:, 10:510]
    a = x[:, 10 - k:510 - k]  # a[t] = x[10 - k + t] = b[t - k]
    t = torch.arange(20, 480)
    assert torch.equal(a[:, t], b[:, t - k])
    lags, c = cross_correlation(a, b, max_lag=8)
    lag, value = peak_lag(lags, c, interpolate=False)
    assert torch.equal(lag, torch.full((2,), float(k), dtype=torch.float64))
    assert torch.all(value > 0.97) and torch.all(value <= 1.0 + 1e-12)
    lag_i, _ = peak_lag(lags, c)  # interpolation stays at the integer lag of a clean copy
    assert torch.allclose(lag_i, torch.full((2,), float(k), dtype=torch.float64), atol=0.1)
    lag_swapped, _ = peak_lag(*cross_correlation(b, a, max_lag=8), interpolate=False)
    assert torch.equal(lag_swapped, -lag)


@pytest.mark.parametrize("n_time,max_lag", [(64, 10), (37, 36), (50, 0)])
@pytest.mark.parametrize("normalise", [True, False])
def test_equals_numpy_correlate(n_time, max_lag, normalise):
    g = _gen(1)
    a = torch.randn(3, 2, n_time, generator=g, dtype=torch.float64) + 2.0
    b = torch.randn(3, 2, n_time, generator=g, dtype=torch.float64).cumsum(-1)
    lags, c = cross_correlation(a, b, max_lag, normalise=normalise)
    assert lags.dtype == torch.int64 and torch.equal(lags, torch.arange(-max_lag, max_lag + 1))
    assert c.shape == (3, 2, 2 * max_lag + 1)
    for i in range(3):
        for j in range(2):
            x, y = a[i, j].numpy(), b[i, j].numpy()
            xc, yc = x - x.mean(), y - y.mean()
            full = np.correlate(xc, yc, "full") / n_time
            if normalise:
                full = full / (xc.std() * yc.std())
            ref = full[n_time - 1 - max_lag:n_time + max_lag]
            np.testing.assert_allclose(c[i, j].numpy(), ref, rtol=1e-10, atol=1e-12)


def test_autocorrelation_is_one_at_zero_lag_and_symmetric():
    x = torch.randn(4, 5, 100, generator=_gen(2))  # float32 input stays float32
    lags, c = cross_correlation(x, x, 20)
    assert c.dtype == torch.float32
    assert torch.allclose(c[..., 20], torch.ones(4, 5), atol=1e-5)
    assert torch.allclose(c, c.flip(-1), atol=1e-5)
    assert torch.all(c.abs() <= 1 + 1e-5)


def test_broadcasts_leading_axes_like_a_loop_over_pairs():
    g = _gen(3)
    a = torch.randn(3, 1, 80, generator=g, dtype=torch.float64)
    b = torch.randn(4, 80, generator=g, dtype=torch.float64)
    _, c = cross_correlation(a, b, 6)
    assert c.shape == (3, 4, 13)
    for i in range(3):
        for j in range(4):
            assert torch.allclose(c[i, j], cross_correlation(a[i, 0], b[j], 6)[1], atol=1e-12)


def test_constant_trace_gives_zeros_not_nan():
    const = torch.full((2, 60), 0.1, dtype=torch.float32)
    noise = torch.randn(2, 60, generator=_gen(4))
    for normalise in (True, False):
        _, c = cross_correlation(const, noise, 5, normalise=normalise)
        assert torch.equal(c, torch.zeros_like(c))
        _, c = cross_correlation(const, const, 5, normalise=normalise)
        assert torch.equal(c, torch.zeros_like(c))


def test_cross_correlation_rejects_bad_arguments():
    x = torch.randn(10)
    with pytest.raises(ValueError, match="same number of time samples"):
        cross_correlation(x, torch.randn(11), 2)
    with pytest.raises(ValueError, match="max_lag"):
        cross_correlation(x, x, 10)
    with pytest.raises(ValueError, match="max_lag"):
        cross_correlation(x, x, -1)
    with pytest.raises(ValueError, match="real"):
        cross_correlation(x.to(torch.complex64), x, 1)


# ----------------------------------------------------------------------------- peak lag


def test_parabolic_interpolation_is_exact_for_a_parabola():
    lags = torch.arange(-5, 6)
    true_lag = torch.tensor([1.7, -2.2, 0.0], dtype=torch.float64)
    c = 3.0 - 0.5 * (lags[None].double() - true_lag[:, None]) ** 2
    lag, value = peak_lag(lags, c)
    assert torch.allclose(lag, true_lag, atol=1e-12)
    assert torch.allclose(value, torch.full((3,), 3.0, dtype=torch.float64), atol=1e-12)
    lag_int, value_int = peak_lag(lags, c, interpolate=False)
    assert torch.equal(lag_int, true_lag.round())
    # a trough is found with absolute=True and keeps its sign
    lag_abs, value_abs = peak_lag(lags, -c - 10.0, absolute=True)
    assert torch.allclose(lag_abs, true_lag, atol=1e-12)
    assert torch.allclose(value_abs, torch.full((3,), -13.0, dtype=torch.float64), atol=1e-12)


def test_peak_at_the_edge_is_not_interpolated():
    lags = torch.arange(-3, 4)
    c = torch.arange(7, dtype=torch.float64)  # rising: maximum at the last lag
    lag, value = peak_lag(lags, c)
    assert lag.item() == 3.0 and value.item() == 6.0


@pytest.mark.parametrize("delay", [2.5, -1.3, 0.25])
def test_interpolation_recovers_a_fractional_delay(delay):
    t = torch.arange(256, dtype=torch.float64)
    bump = torch.exp(-(t - 128) ** 2 / (2 * 4.0 ** 2))
    lags, c = cross_correlation(_fractional_delay(bump, delay), bump, 10)
    lag, value = peak_lag(lags, c)
    assert abs(lag.item() - delay) < 0.1
    assert value.item() == pytest.approx(1.0, abs=0.01)


# ----------------------------------------------------------------------------- bootstrap


@pytest.mark.parametrize("statistic", ["mean", "median"])
def test_bootstrap_interval_covers_the_truth_about_95_percent_of_the_time(statistic):
    """200 independent data sets (batched as columns) of 40 normal samples, mean = median = 1."""
    x = 1.0 + 2.0 * torch.randn(40, 200, generator=_gen(5), dtype=torch.float64)
    est, lo, hi = bootstrap_ci(x, n_boot=1000, level=0.95, statistic=statistic, generator=_gen(6))
    assert est.shape == lo.shape == hi.shape == (200,)
    assert torch.all(lo <= est) and torch.all(est <= hi)
    coverage = ((lo <= 1.0) & (1.0 <= hi)).double().mean().item()
    assert 0.88 <= coverage <= 0.99
    reference = x.mean(0).numpy() if statistic == "mean" else np.median(x.numpy(), axis=0)
    np.testing.assert_allclose(est.numpy(), reference, rtol=1e-12)
    # the interval's width is about 2 * 1.96 * (standard error): sd / sqrt(N) for the mean
    # (the bootstrap's plug-in sd has divisor N), sqrt(pi / 2) sd / sqrt(N) for the median
    width = (hi - lo).mean().item()
    if statistic == "mean":
        assert width == pytest.approx(2 * 1.96 * 2.0 * math.sqrt(39 / 40) / math.sqrt(40), rel=0.04)
    else:
        assert width == pytest.approx(2 * 1.96 * 2.0 * math.sqrt(math.pi / 2) / math.sqrt(40), rel=0.1)


def test_bootstrap_is_reproducible_with_a_generator_and_batches_trailing_axes():
    x = torch.rand(25, 3, 2, generator=_gen(7))
    first = bootstrap_ci(x, n_boot=200, generator=_gen(8))
    second = bootstrap_ci(x, n_boot=200, generator=_gen(8))
    assert all(torch.equal(u, v) for u, v in zip(first, second))
    assert first[1].shape == (3, 2)
    # each column's interval equals the one computed on that column alone with the same draws
    alone = bootstrap_ci(x[:, 1, 0], n_boot=200, generator=_gen(8))
    assert torch.allclose(alone[1], first[1][1, 0]) and torch.allclose(alone[2], first[2][1, 0])


def test_bootstrap_rejects_bad_arguments():
    x = torch.randn(10)
    with pytest.raises(ValueError, match="statistic"):
        bootstrap_ci(x, statistic="mode")
    with pytest.raises(ValueError, match="level"):
        bootstrap_ci(x, level=1.0)
    with pytest.raises(ValueError, match="n_boot"):
        bootstrap_ci(x, n_boot=0)


# ----------------------------------------------------------------------------- analytic signal, PLV


@pytest.mark.parametrize("n_time", [128, 101])
def test_analytic_signal_equals_scipy_hilbert(n_time):
    x = torch.randn(3, n_time, generator=_gen(9), dtype=torch.float64)
    z = analytic_signal(x, FS)
    np.testing.assert_allclose(z.numpy(), scipy.signal.hilbert(x.numpy(), axis=-1), atol=1e-12)


def test_band_keeps_only_the_in_band_component():
    """Two sinusoids on FFT bins: the band around the first leaves exactly exp(i w1 t)."""
    n_time = 243
    t = torch.arange(n_time, dtype=torch.float64)
    f1, f2 = 40 * FS / n_time, 80 * FS / n_time  # bins 40 and 80: ~40 Hz and ~80 Hz
    x = torch.cos(2 * math.pi * f1 * t / FS + 0.4) + 0.5 * torch.cos(2 * math.pi * f2 * t / FS)
    z = analytic_signal(x, FS, band=(30.0, 50.0))
    expected = torch.exp(1j * (2 * math.pi * f1 * t / FS + 0.4))
    assert torch.allclose(z, expected, atol=1e-10)
    with pytest.raises(ValueError, match="band"):
        analytic_signal(x, FS, band=(50.0, 30.0))
    with pytest.raises(ValueError, match="band"):
        analytic_signal(x, FS, band=(30.0, FS))
    with pytest.raises(ValueError, match="fs"):
        analytic_signal(x, -1.0)


@pytest.mark.parametrize("sd", [0.5, 1.0])
def test_plv_of_a_gaussian_phase_difference_is_exp_minus_half_variance(sd):
    """Two 40 Hz oscillators whose phase difference is normal with sd ``sd`` at every sample
    (a slow stationary process, so that it stays inside the band): PLV = |E exp(i dphi)| =
    exp(-sd^2 / 2). (White per-sample phase jitter would not do: the band-pass removes most
    of it, and the band-passed phases lock more tightly than exp(-sd^2/2).)"""
    g = _gen(10)
    n_trials, n_time = 8, 20000
    t = torch.arange(n_time, dtype=torch.float64) / FS
    start = 2 * math.pi * torch.rand(n_trials, 1, generator=g, dtype=torch.float64)
    dphi = sd * _smooth_gaussian((n_trials, n_time), width=10.0, generator=g)
    a = torch.cos(2 * math.pi * 40 * t + start)
    b = torch.cos(2 * math.pi * 40 * t + start + dphi)
    plv = phase_locking_value(a, b, FS, band=(20.0, 60.0))
    assert plv.shape == (n_trials,)
    assert plv.mean().item() == pytest.approx(math.exp(-sd ** 2 / 2), abs=0.03)


def test_plv_is_one_for_a_fixed_lag_and_small_for_independent_noise():
    g = _gen(11)
    t = torch.arange(4000, dtype=torch.float64) / FS
    a = torch.cos(2 * math.pi * 40 * t)
    locked = phase_locking_value(a, 0.3 * torch.cos(2 * math.pi * 40 * t - 1.1), FS, (30.0, 50.0))
    assert locked.item() == pytest.approx(1.0, abs=1e-3)
    noise = torch.randn(2, 6, 4000, generator=g, dtype=torch.float64)
    plv = phase_locking_value(noise[0], noise[1], FS, (30.0, 50.0))
    assert plv.shape == (6,) and plv.max().item() < 0.1


# ----------------------------------------------------------------------------- shift predictor


def _zero_lag_correlation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return cross_correlation(a, b, 0)[1][..., 0]


def test_shift_predictor_removes_stimulus_locked_correlation_only():
    """Per trial a = s + n_a, b = s + n_b (+ z shared within the trial), all unit variance:
    raw r = 1/2 and predictor 1/2 without z (corrected 0); with z raw = 2/3, predictor 1/3,
    corrected 1/3."""
    g = _gen(12)
    n_trials, n_units, n_time = 20, 3, 2000
    stimulus = torch.randn(n_units, n_time, generator=g, dtype=torch.float64)  # same each trial
    noise_a, noise_b, shared = torch.randn(3, n_trials, n_units, n_time, generator=g, dtype=torch.float64)
    raw, pred, corrected = shuffle_corrected(_zero_lag_correlation, stimulus + noise_a, stimulus + noise_b)
    assert raw.shape == pred.shape == corrected.shape == (n_trials, n_units)
    assert raw.mean().item() == pytest.approx(0.5, abs=0.03)
    assert pred.mean().item() == pytest.approx(0.5, abs=0.03)
    assert abs(corrected.mean().item()) < 0.01
    raw, pred, corrected = shuffle_corrected(_zero_lag_correlation, stimulus + shared + noise_a,
                                             stimulus + shared + noise_b)
    assert raw.mean().item() == pytest.approx(2 / 3, abs=0.03)
    assert pred.mean().item() == pytest.approx(1 / 3, abs=0.03)
    assert corrected.mean().item() == pytest.approx(1 / 3, abs=0.03)


def test_shift_predictor_is_the_mean_over_rolled_trials():
    g = _gen(13)
    a, b = torch.randn(2, 5, 2, 7, generator=g, dtype=torch.float64)
    inner = lambda x, y: (x * y).sum(-1)  # noqa: E731
    expected = sum(inner(a, b.roll(k, 0)) for k in (1, 2)) / 2
    assert torch.allclose(shift_predictor(inner, a, b, n_shifts=2), expected)
    # all other trials by default: trial i's a against the mean over j != i of b_j
    everyone = (a[:, None] * b[None]).sum(-1)  # (i, j, unit)
    off_diagonal = (everyone.sum(1) - torch.diagonal(everyone, dim1=0, dim2=1).T) / 4
    assert torch.allclose(shift_predictor(inner, a, b), off_diagonal)
    with pytest.raises(ValueError, match="n_shifts"):
        shift_predictor(inner, a, b, n_shifts=5)
    with pytest.raises(ValueError, match="trials"):
        shift_predictor(inner, a[:1], b[:1])


# ----------------------------------------------------------------------------- channels


def test_circular_channel_distance_on_a_ring_of_32():
    assert circular_channel_distance(0, 31, 32) == 1
    assert circular_channel_distance(31, 0, 32) == 1
    assert circular_channel_distance(0, 16, 32) == 16
    assert circular_channel_distance(3, 20, 32) == 15
    assert circular_channel_distance(7, 7, 32) == 0
    i = torch.arange(32)[:, None]
    j = torch.arange(32)[None, :]
    d = circular_channel_distance(i, j, 32)
    brute = torch.tensor([[min((a - b) % 32, (b - a) % 32) for b in range(32)] for a in range(32)])
    assert torch.equal(d, brute)
    with pytest.raises(ValueError, match="n_channels"):
        circular_channel_distance(0, 1, 0)


# ----------------------------------------------------------------------------- Gabor fit


def test_damped_cosine_closed_form_in_numpy_and_torch():
    tau = np.array([0.0, 12.5, -25.0])
    y = damped_cosine(tau, 2.0, 40.0, 0.3, 10.0, 0.1)
    expected = 2.0 * np.exp(-tau ** 2 / 200.0) * np.cos(2 * np.pi * 40.0 * tau / 1000.0 + 0.3) + 0.1
    np.testing.assert_allclose(y, expected, rtol=1e-14)
    by_hand = [2 * math.cos(0.3) + 0.1, 2 * math.exp(-0.78125) * math.cos(math.pi + 0.3) + 0.1]
    np.testing.assert_allclose(y[:2], by_hand, rtol=1e-14)
    y_torch = damped_cosine(torch.tensor(tau), 2.0, 40.0, 0.3, 10.0, 0.1)
    assert isinstance(y_torch, torch.Tensor)
    np.testing.assert_allclose(y_torch.numpy(), expected, rtol=1e-14)


def test_fit_recovers_a_noisy_damped_cosine():
    """Lags at the sampler's rate (+-41 samples, +-169 ms); the third curve is written with a
    negative amplitude, which the fit must fold into the phase (phi + pi, wrapped)."""
    lags_ms = torch.arange(-41, 42, dtype=torch.float64) * 1000 / FS
    truth = torch.tensor([  # amplitude, frequency, phase, decay, offset
        [0.6, 40.0, 0.7, 20.0, 0.05],
        [0.5, 33.0, -2.9, 35.0, -0.10],
        [-0.7, 52.0, 2.5, 15.0, 0.00],
    ], dtype=torch.float64)
    clean = damped_cosine(lags_ms[None], *truth.T[:, :, None])
    noisy = clean + 0.02 * torch.randn(clean.shape, generator=_gen(14), dtype=torch.float64)
    fit = fit_damped_cosine(lags_ms, noisy[None])  # a leading batch axis is kept
    assert fit["frequency_hz"].shape == (1, 3)
    fit = {k: v[0] for k, v in fit.items()}
    amp = truth[:, 0].abs()
    phase = torch.tensor([0.7, -2.9, 2.5 - math.pi], dtype=torch.float64)
    assert torch.allclose(fit["amplitude"], amp, rtol=0.1)
    assert torch.all((fit["frequency_hz"] - truth[:, 1]).abs() < 1.0)
    assert torch.all(((fit["decay_ms"] - truth[:, 3]) / truth[:, 3]).abs() < 0.1)
    phase_error = torch.remainder(fit["phase"] - phase + math.pi, 2 * math.pi) - math.pi
    assert torch.all(phase_error.abs() < 0.1)
    assert torch.all((fit["phase"] > -math.pi) & (fit["phase"] <= math.pi))
    assert torch.allclose(fit["offset"], truth[:, 4], atol=0.02)
    assert torch.all(fit["r2"] > 0.95)
    # least squares: the fit is at least as good as the true parameters
    fitted = damped_cosine(lags_ms[None], *[fit[k][:, None] for k in
                                            ("amplitude", "frequency_hz", "phase", "decay_ms", "offset")])
    assert torch.all(((noisy - fitted) ** 2).sum(-1) <= ((noisy - clean) ** 2).sum(-1) + 1e-12)


def test_fit_of_a_simulated_gamma_correlogram_finds_40_hz():
    """Two noisy units sharing a 40 Hz rhythm with slowly drifting phase, b lagging a by 2
    samples: the correlogram peaks at lag -2 (a leads), so the Gabor fit gives 40 Hz and the
    phase that puts the cosine's peak at tau = -2 samples: phi = +2 pi f (2 / FS)."""
    g = _gen(15)
    n_time = 6000
    t = torch.arange(n_time, dtype=torch.float64) / FS
    drift = 2.0 * _smooth_gaussian((n_time,), width=15.0, generator=g)
    rhythm = torch.cos(2 * math.pi * 40 * t + drift)
    a = rhythm + torch.randn(n_time, generator=g, dtype=torch.float64)
    b = _fractional_delay(rhythm, 2.0) + torch.randn(n_time, generator=g, dtype=torch.float64)
    lags, c = cross_correlation(a, b, 30)
    fit = fit_damped_cosine(lags.double() * 1000 / FS, c, f_guess=35.0)
    assert fit["frequency_hz"].item() == pytest.approx(40.0, abs=1.0)
    expected_phase = 2 * math.pi * 40 * 2 / FS  # a leads b by 2 samples (8.2 ms)
    assert peak_lag(lags, c)[0].item() == pytest.approx(-2.0, abs=0.2)
    assert abs(math.remainder(fit["phase"].item() - expected_phase, 2 * math.pi)) < 0.15
    assert fit["r2"].item() > 0.8


def test_noise_flat_and_nan_correlograms_fit_without_raising():
    lags_ms = torch.arange(-25, 26, dtype=torch.float64) * 1000 / FS
    noise = torch.randn(10, 51, generator=_gen(16), dtype=torch.float64)
    fit = fit_damped_cosine(lags_ms, noise)
    r2 = fit["r2"]
    assert torch.all(torch.isnan(r2) | (r2 < 0.5))
    curves = torch.stack([torch.full((51,), 0.3, dtype=torch.float64),
                          torch.full((51,), float("nan"), dtype=torch.float64)])
    fit = fit_damped_cosine(lags_ms, curves)
    assert torch.isnan(fit["r2"]).all()
    assert fit["amplitude"][0].item() == 0.0 and fit["offset"][0].item() == pytest.approx(0.3)
    assert all(torch.isnan(v[1]) for v in fit.values())
    with pytest.raises(ValueError, match="lags_ms"):
        fit_damped_cosine(lags_ms[:-1], noise)


def test_relative_modulation_and_oscillation_index_closed_forms():
    fit = {"amplitude": torch.tensor([1.0, 0.5, 0.0, float("nan"), 0.4]),
           "offset": torch.tensor([1.0, 0.0, 0.0, 0.2, -0.6]),
           "frequency_hz": torch.tensor([40.0, 40.0, 0.0, 40.0, 20.0]),
           "decay_ms": torch.tensor([25.0, 12.5, 10.0, 25.0, 1e9])}
    rm = relative_modulation(fit)
    assert torch.allclose(rm[[0, 1, 2, 4]], torch.tensor([0.5, 1.0, 0.0, 0.4]))
    assert torch.isnan(rm[3])
    oi = oscillation_index(fit)
    expected = torch.tensor([math.exp(-0.5), math.exp(-2.0), 0.0, math.exp(-0.5), 1.0])
    assert torch.allclose(oi, expected, atol=1e-6)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_runs_on_the_inputs_device():
    x = torch.randn(4, 3, 300, generator=_gen(17), dtype=torch.float64)
    y = torch.randn(4, 3, 300, generator=_gen(18), dtype=torch.float64)
    _, c_cpu = cross_correlation(x, y, 12)
    lags, c_gpu = cross_correlation(x.cuda(), y.cuda(), 12)
    assert c_gpu.is_cuda and lags.is_cuda and torch.allclose(c_gpu.cpu(), c_cpu, atol=1e-12)
    plv = phase_locking_value(x.cuda(), y.cuda(), FS, (30.0, 50.0))
    assert torch.allclose(plv.cpu(), phase_locking_value(x, y, FS, (30.0, 50.0)), atol=1e-12)
    est, lo, hi = bootstrap_ci(x.cuda(), n_boot=100, generator=torch.Generator(device="cuda").manual_seed(0))
    assert lo.is_cuda and torch.all(lo <= hi)


def test_peak_lag_beside_a_masked_lag_is_not_interpolated_into_nan():
    """A search restricted by masking lags with -inf (as the E-I lag does) must not turn a peak
    at the window's edge into NaN."""
    lags = torch.arange(-4, 5)
    c = torch.tensor([[0.0, 0.1, 0.2, 0.5, 0.9, 0.95, 0.99, 0.3, 0.1]], dtype=torch.float64)
    masked = c.masked_fill(lags.abs() > 2, float("-inf"))
    lag, value = peak_lag(lags, masked, interpolate=True)
    assert lag.item() == 2.0 and value.item() == 0.99
    lag, _ = peak_lag(lags, c, interpolate=True)          # unmasked: interpolated near 2
    assert 1.5 < lag.item() < 2.5
