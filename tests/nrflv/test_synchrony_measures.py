"""The measures behind the synchrony analysis's phase test and trends against known answers:
circular means and intervals, the V and Rayleigh tests at their level, the band coherency's phase
of a known lag, the shift-corrected amplitude of shared and of independent rhythms, and the slope
of an amplitude that decays linearly with distance."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from nrflv.measures.circular import (circular_bootstrap_ci, circular_mean, interval_contains, rayleigh_test,
                                     v_test, wrap)
from nrflv.measures.correlation import cross_correlation, shuffle_corrected
from nrflv.measures.spectral import band_coherency
from nrflv.measures.trend import bootstrap_slope_ci, pooled_slope

FS = 1000.0 / (70.0 / 17.0)          # the recordings' sampling rate, ~242.9 Hz
F0 = 40.0


def narrowband(rng: np.random.Generator, shape: tuple[int, ...], n: int, sd_hz: float = 3.0) -> np.ndarray:
    """``shape + (n,)`` unit-variance Gaussian noise with a Gaussian power spectrum around F0."""
    f = np.fft.rfftfreq(n, 1.0 / FS)
    gain = np.exp(-(f - F0) ** 2 / (4 * sd_hz ** 2))
    x = np.fft.irfft(np.fft.rfft(rng.standard_normal(shape + (n,)), axis=-1) * gain, n=n, axis=-1)
    return x / x.std(-1, keepdims=True)


def delayed(x: np.ndarray, seconds: float) -> np.ndarray:
    """``x`` delayed by ``seconds`` (an exact fractional delay: a phase ramp on the periodic FFT)."""
    n = x.shape[-1]
    f = np.fft.rfftfreq(n, 1.0 / FS)
    return np.fft.irfft(np.fft.rfft(x, axis=-1) * np.exp(-2j * np.pi * f * seconds), n=n, axis=-1)


# ------------------------------------------------------------------------------------ circular


def test_circular_mean_wraps_round_pi_and_measures_concentration():
    phi = torch.tensor([[math.pi - 0.1, 0.3], [-math.pi + 0.1, -0.3], [float("nan"), 0.0]], dtype=torch.float64)
    mean, r = circular_mean(phi)
    assert abs(float(wrap(mean[0] - math.pi))) < 1e-12 and abs(float(mean[1])) < 1e-12
    assert float(r[0]) == pytest.approx(math.cos(0.1))                       # NaN left out: 2 samples
    assert float(r[1]) == pytest.approx((1 + 2 * math.cos(0.3)) / 3)
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.vonmises(2.9, 4.0, (400, 3)))
    m, r = circular_mean(x)
    np.testing.assert_allclose(wrap(m - 2.9).numpy(), 0.0, atol=0.1)
    assert (r > 0.8).all()


def test_circular_bootstrap_interval_covers_the_true_direction_at_its_level():
    rng = np.random.default_rng(1)
    mu = 3.0                                                 # near the wrap: intervals cross +-pi
    phi = torch.from_numpy(rng.vonmises(mu, 2.0, (30, 400)))
    mean, lo, hi = circular_bootstrap_ci(phi, 300, 0.95, generator=torch.Generator().manual_seed(0))
    assert ((lo <= mean) & (mean <= hi)).all()
    coverage = float(interval_contains(mu, lo, hi).double().mean())
    assert 0.88 <= coverage <= 0.99
    assert float(interval_contains(mu + math.pi, lo, hi).double().mean()) == 0.0


def test_v_and_rayleigh_tests_hold_their_level_on_uniform_phases_and_reject_a_concentration():
    rng = np.random.default_rng(2)
    uniform = torch.from_numpy(rng.uniform(-math.pi, math.pi, (25, 4000)))
    _, u, p_v = v_test(uniform, 0.0)
    _, p_r = rayleigh_test(uniform)
    assert 0.04 <= float((p_v < 0.05).double().mean()) <= 0.06
    assert 0.035 <= float((p_r < 0.05).double().mean()) <= 0.065
    assert abs(float(u.mean())) < 0.05 and float(u.std()) == pytest.approx(1.0, abs=0.05)
    at_zero = torch.from_numpy(rng.vonmises(0.0, 2.0, (25, 200)))
    at_quarter = torch.from_numpy(rng.vonmises(math.pi / 2, 2.0, (25, 200)))
    assert (v_test(at_zero)[2] < 1e-2).all() and (rayleigh_test(at_zero)[1] < 1e-2).all()
    # concentrated, but at 90 degrees: Rayleigh rejects, the V-test (towards 0) does not
    assert (rayleigh_test(at_quarter)[1] < 1e-2).all()
    assert float((v_test(at_quarter)[2] < 0.05).double().mean()) < 0.15


# --------------------------------------------------------------------------- phase and amplitude


def test_band_coherency_recovers_a_90_degree_lag_of_a_shared_rhythm():
    rng = np.random.default_rng(3)
    n = 256
    a = narrowband(rng, (12,), n)
    lag = 0.25 / F0                                            # a quarter period
    b = delayed(a, lag) + 0.5 * rng.standard_normal((12, n))
    a = a + 0.5 * rng.standard_normal((12, n))
    coh = band_coherency(torch.from_numpy(a), torch.from_numpy(b), FS, F0 - 8, F0 + 8, nperseg=64)
    phase_lag = -torch.angle(coh)                              # positive: b lags a
    mean, lo, hi = circular_bootstrap_ci(phase_lag, 500, generator=torch.Generator().manual_seed(1))
    assert math.degrees(float(mean)) == pytest.approx(90.0, abs=10.0)
    assert bool(interval_contains(math.pi / 2, lo, hi)) and not bool(interval_contains(0.0, lo, hi))
    assert float(v_test(phase_lag)[2]) > 0.05                   # not at zero lag ...
    assert float(rayleigh_test(phase_lag)[1]) < 1e-4            # ... but locked
    assert (coh.abs() > 0.5).all()


def test_shared_rhythm_is_synchronous_and_independent_rhythms_are_not():
    """Shift-corrected zero-lag correlation and the phase test on trials of two units:
    a rhythm shared with zero lag, and two independent rhythms of the same frequency."""
    rng = np.random.default_rng(4)
    trials, pairs, n = 16, 200, 256
    shared = narrowband(rng, (trials, pairs), n)
    noise = lambda: 0.7 * rng.standard_normal((trials, pairs, n))  # noqa: E731
    cases = {"shared": (shared + noise(), shared + noise()),
             "independent": (narrowband(rng, (trials, pairs), n) + noise(),
                             narrowband(rng, (trials, pairs), n) + noise())}
    out = {}
    for name, (a, b) in cases.items():
        a, b = torch.from_numpy(a), torch.from_numpy(b)
        _, _, corr = shuffle_corrected(lambda x, y: cross_correlation(x, y, 0)[1][..., 0], a, b)
        coh = band_coherency(a, b, FS, F0 - 8, F0 + 8, nperseg=64)
        _, _, coh_corr = shuffle_corrected(lambda x, y: band_coherency(x, y, FS, F0 - 8, F0 + 8, nperseg=64), a, b)
        out[name] = corr.mean(0), -torch.angle(coh_corr), coh
    amp, phase, _ = out["shared"]
    np.testing.assert_allclose(amp.mean(), 1 / (1 + 0.49), atol=0.03)
    assert (v_test(phase)[2] < 1e-3).all()
    amp, phase, coh = out["independent"]
    assert abs(float(amp.mean())) < 0.01 and float(amp.std()) < 0.05
    # the phase test at its level: 200 independent pairs, 16 trials each
    rate = float((v_test(phase)[2] < 0.05).double().mean())
    assert 0.02 <= rate <= 0.09


# ------------------------------------------------------------------------------------ trends


def test_slope_of_a_linearly_decaying_amplitude_and_its_interval():
    rng = np.random.default_rng(5)
    d = torch.arange(1, 9, dtype=torch.float64)                           # distances 1..8
    trials = 30
    offsets = 0.05 * rng.standard_normal((trials, 1))                     # per-trial level
    y = torch.from_numpy(0.6 - 0.05 * d.numpy() + offsets + 0.05 * rng.standard_normal((trials, 8)))
    y[3, 2] = float("nan")                                               # a missing point is left out
    slope, intercept = pooled_slope(d, y)
    assert float(slope) == pytest.approx(-0.05, abs=0.005) and float(intercept) == pytest.approx(0.6, abs=0.03)
    s, lo, hi = bootstrap_slope_ci(d, y, 500, generator=torch.Generator().manual_seed(0))
    assert float(s) == float(slope) and float(lo) < -0.05 < float(hi) and float(hi) < 0


def test_slope_interval_covers_a_flat_profile_at_its_level():
    rng = np.random.default_rng(6)
    d = torch.arange(1, 7, dtype=torch.float64)
    y = torch.from_numpy(0.3 + 0.1 * rng.standard_normal((20, 500, 1)) + 0.1 * rng.standard_normal((20, 500, 6)))
    slope, lo, hi = bootstrap_slope_ci(d, y, 400, generator=torch.Generator().manual_seed(0))
    assert slope.shape == (500,)
    coverage = float(((lo <= 0) & (0 <= hi)).double().mean())
    assert 0.88 <= coverage <= 0.98
    # a unit's points are resampled together; one x value gives no slope
    assert torch.isnan(pooled_slope(torch.ones(6), y[:, 0])[0])
