"""Single-unit oscillation measures against scipy, matplotlib and closed forms: the detrended
power spectrum, prominent peaks and the oscillating class, the autocorrelation."""
import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import scipy.signal as ss  # noqa: E402
import torch  # noqa: E402

from nrflv.measures.oscillation import (autocorrelation, detrended_spectrum, linear_detrend,  # noqa: E402
                                        oscillation_classes, prominent_peaks)

FS = 1000.0 / (70.0 / 17.0)


def test_detrended_spectrum_is_scipys_welch_of_the_detrended_trace_as_power():
    x = np.random.default_rng(0).normal(size=(3, 300)) + np.linspace(0, 5, 300)
    f, p = detrended_spectrum(torch.from_numpy(x), FS, 64)
    f2, p2 = ss.welch(ss.detrend(x, axis=-1), fs=FS, nperseg=64, scaling="spectrum")
    np.testing.assert_allclose(f.numpy(), f2, rtol=1e-12)
    np.testing.assert_allclose(p.numpy(), p2, rtol=1e-10, atol=1e-14)
    torch.testing.assert_close(linear_detrend(torch.from_numpy(x)), torch.from_numpy(ss.detrend(x, axis=-1)))


def test_autocorrelation_equals_matplotlibs_acorr_and_closed_forms():
    rng = np.random.default_rng(1)
    x = rng.normal(size=400)
    lags, c, _, _ = plt.acorr(x, detrend=matplotlib.mlab.detrend_linear, maxlags=12)
    plt.close("all")
    np.testing.assert_allclose(autocorrelation(torch.from_numpy(x), 12).numpy(), c[12:], atol=1e-12)
    # AR(1) with phi: acf(k) = phi^k
    phi, n = 0.8, 200_000
    e = rng.normal(size=n)
    ar = ss.lfilter([1.0], [1.0, -phi], e)
    acf = autocorrelation(torch.from_numpy(ar), 5).numpy()
    np.testing.assert_allclose(acf, phi ** np.arange(6), atol=0.01)
    # a sinusoid of 25 Hz: cos(2 pi f k / fs) (biased estimator: x (1 - k/n))
    t = np.arange(2000)
    s = np.cos(2 * np.pi * 25.0 * t / FS)
    acf = autocorrelation(torch.from_numpy(s), 20, detrend=False).numpy()
    k = np.arange(21)
    np.testing.assert_allclose(acf, np.cos(2 * np.pi * 25.0 * k / FS) * (1 - k / 2000), atol=5e-3)
    with pytest.raises(ValueError, match="max_lag"):
        autocorrelation(torch.from_numpy(s[:10]), 10)


def test_a_rhythm_in_noise_oscillates_at_its_frequency_white_noise_rarely_does():
    rng = np.random.default_rng(2)
    t = np.arange(250)
    n_units = 2000
    f0 = 38.0
    rhythm = np.cos(2 * np.pi * f0 * t / FS + rng.uniform(0, 2 * np.pi, (n_units, 1))) + 0.7 * rng.normal(
        size=(n_units, len(t)))
    noise = rng.normal(size=(n_units, len(t)))
    for name, x in (("rhythm", rhythm), ("noise", noise)):
        f, p = detrended_spectrum(torch.from_numpy(x), FS, 64)
        cls = oscillation_classes(f, p)
        if name == "rhythm":
            assert cls["oscillating"].mean() > 0.95
            res = float(f[1] - f[0])
            assert np.nanmax(np.abs(cls["peak_hz"][cls["oscillating"]] - f0)) <= res
            assert (cls["freq_power_product"] > 0).all()
        else:
            assert cls["oscillating"].mean() < 0.05          # its chance rate on white noise
    # one isolated peak: the product is its frequency x its power
    spec = np.ones(33)
    spec[10] = 50.0
    f = torch.arange(33, dtype=torch.float64) * 2.0
    cls = oscillation_classes(f, torch.from_numpy(spec)[None])
    assert cls["oscillating"].tolist() == [True] and cls["peak_hz"][0] == 20.0
    assert cls["freq_power_product"][0] == pytest.approx(20.0 * 50.0)
    # a peak in the lowest bins (a drift, not a rhythm) does not count
    spec = np.ones(33)
    spec[1] = 50.0
    assert not oscillation_classes(f, torch.from_numpy(spec)[None])["oscillating"][0]
    assert prominent_peaks(np.zeros(10)).size == 0 and prominent_peaks(np.full(10, math.nan)).size == 0
