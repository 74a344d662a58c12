"""Harmonic tuning fits against tuning curves of known preference, amplitude and baseline."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from nrflv.measures.tuning import (TuningFit, circular_difference, fit_direction_tuning,
                                   matched, tuned)


def _tuning_curves(direction: torch.Tensor, baseline, amp1, pref_dir, amp2, pref_ori):
    """Responses ``(N, units)``: b + a1 cos(th - pd) + a2 cos(2 (th - po)), all in degrees."""
    th = torch.deg2rad(direction)[:, None]
    b, a1, pd, a2, po = (torch.as_tensor(v, dtype=torch.float64)[None] for v in
                         (baseline, amp1, pref_dir, amp2, pref_ori))
    return (b + a1 * torch.cos(th - torch.deg2rad(pd))
            + a2 * torch.cos(2 * (th - torch.deg2rad(po))))


def _directions(n: int) -> torch.Tensor:
    return torch.arange(n, dtype=torch.float64) * (360.0 / n)


PREF_DIR = [3.0, 123.0, 200.0, 359.0, 270.5, 45.0]
PREF_ORI = [-89.0, -30.0, 0.0, 60.0, 89.5, -45.0]
AMP1 = [0.8, 0.5, 1.0, 0.3, 0.6, 0.9]
AMP2 = [0.4, 0.5, 0.2, 0.6, 0.3, 0.1]
BASE = [1.0, 2.0, 0.0, -1.0, 5.0, 0.5]


def test_noise_free_fit_is_exact_and_r2_splits_by_harmonic():
    direction = _directions(16)
    fit = fit_direction_tuning(direction, _tuning_curves(direction, BASE, AMP1, PREF_DIR,
                                                         AMP2, PREF_ORI))
    assert isinstance(fit, TuningFit) and fit.n == 16
    torch.testing.assert_close(fit.baseline, torch.tensor(BASE, dtype=torch.float64))
    torch.testing.assert_close(fit.amp1, torch.tensor(AMP1, dtype=torch.float64))
    torch.testing.assert_close(fit.amp2, torch.tensor(AMP2, dtype=torch.float64))
    assert circular_difference(fit.pref_direction, torch.tensor(PREF_DIR)).max() < 1e-6
    torch.testing.assert_close(fit.pref_orientation, torch.tensor(PREF_ORI, dtype=torch.float64))
    torch.testing.assert_close(fit.r2, torch.ones(6, dtype=torch.float64))
    # equally spaced directions: orthogonal harmonics, r2_k = a_k^2 / (a1^2 + a2^2)
    a1, a2 = np.array(AMP1), np.array(AMP2)
    np.testing.assert_allclose(fit.r2_1.numpy(), a1 ** 2 / (a1 ** 2 + a2 ** 2), atol=1e-9)
    np.testing.assert_allclose(fit.r2_2.numpy(), a2 ** 2 / (a1 ** 2 + a2 ** 2), atol=1e-9)
    assert ((fit.pref_direction >= 0) & (fit.pref_direction < 360)).all()
    assert ((fit.pref_orientation >= -90) & (fit.pref_orientation < 90)).all()


@pytest.mark.parametrize("n_dir, noise", [(128, 0.03), (16, 0.01)])
def test_noisy_fit_recovers_known_tuning(n_dir, noise):
    direction = _directions(n_dir)
    clean = _tuning_curves(direction, BASE, AMP1, PREF_DIR, AMP2, PREF_ORI)
    g = torch.Generator().manual_seed(1)
    noisy = clean + noise * torch.randn(clean.shape, generator=g, dtype=torch.float64)
    # trailing unit dims are kept: (N, 2, 3) responses -> (2, 3) fits
    fit = fit_direction_tuning(direction, noisy.reshape(n_dir, 2, 3))
    clean_fit = fit_direction_tuning(direction, clean)
    assert fit.r2.shape == (2, 3)
    # least-squares standard error of a harmonic's phase: noise / (amp sqrt(N / 2)) rad,
    # halved for the orientation (the 2-theta phase / 2); allow 4 standard errors
    se_dir = np.rad2deg(noise / (np.array(AMP1) * np.sqrt(n_dir / 2)))
    se_ori = np.rad2deg(noise / (np.array(AMP2) * np.sqrt(n_dir / 2))) / 2
    err_dir = circular_difference(fit.pref_direction.reshape(-1), torch.tensor(PREF_DIR))
    err_ori = circular_difference(fit.pref_orientation.reshape(-1), torch.tensor(PREF_ORI),
                                  period=180.0)
    assert (err_dir.numpy() < 4 * se_dir).all() and (err_ori.numpy() < 4 * se_ori).all()
    assert err_dir.max() < 2.0 and err_ori.max() < 2.0
    np.testing.assert_allclose(fit.amp1.reshape(-1), AMP1, atol=4 * noise)
    np.testing.assert_allclose(fit.baseline.reshape(-1), BASE, atol=4 * noise)
    np.testing.assert_allclose(fit.r2.reshape(-1), clean_fit.r2, atol=0.03)
    np.testing.assert_allclose(fit.r2_1.reshape(-1), clean_fit.r2_1, atol=0.05)
    # a bad fit must be detectable: shuffled responses explain little
    perm = torch.randperm(n_dir, generator=g)
    assert fit_direction_tuning(direction, noisy[perm]).r2.mean() < fit.r2.mean() - 0.3


def test_unequally_spaced_directions_agree_with_numpy_least_squares():
    g = torch.Generator().manual_seed(2)
    direction = torch.rand(9, generator=g, dtype=torch.float64) * 720 - 180  # any real degrees
    responses = torch.randn(9, 4, generator=g, dtype=torch.float64)
    fit = fit_direction_tuning(direction, responses)
    th = np.deg2rad(direction.numpy())
    design = np.stack([np.ones_like(th), np.cos(th), np.sin(th), np.cos(2 * th), np.sin(2 * th)], 1)
    coef, *_ = np.linalg.lstsq(design, responses.numpy(), rcond=None)
    np.testing.assert_allclose(fit.baseline, coef[0], atol=1e-10)
    np.testing.assert_allclose(fit.amp1, np.hypot(coef[1], coef[2]), atol=1e-10)
    np.testing.assert_allclose(fit.amp2, np.hypot(coef[3], coef[4]), atol=1e-10)
    pred = design @ coef
    y = responses.numpy()
    r2 = 1 - ((y - pred) ** 2).sum(0) / ((y - y.mean(0)) ** 2).sum(0)
    np.testing.assert_allclose(fit.r2, r2, atol=1e-10)
    expected_dir = np.mod(np.rad2deg(np.arctan2(coef[2], coef[1])), 360)
    assert circular_difference(fit.pref_direction, torch.as_tensor(expected_dir)).max() < 1e-8


@pytest.mark.parametrize("pref_ori", [-90.0, -85.0, 0.0, 60.0, 89.0])
def test_pure_orientation_tuning(pref_ori):
    direction = _directions(24)
    responses = _tuning_curves(direction, 1.0, 0.0, 0.0, 0.7, pref_ori)[:, 0]
    fit = fit_direction_tuning(direction, responses)
    assert fit.pref_orientation.shape == ()
    assert -90.0 <= float(fit.pref_orientation) < 90.0
    assert float(fit.pref_orientation) == pytest.approx(pref_ori, abs=1e-8)
    assert float(fit.r2_1) == pytest.approx(0.0, abs=1e-10)
    assert float(fit.r2_2) == pytest.approx(1.0, abs=1e-10)
    assert float(fit.amp1) == pytest.approx(0.0, abs=1e-10)


def test_constant_unit_gets_zero_r2_and_amplitudes():
    direction = _directions(8)
    responses = torch.stack([torch.full((8,), 0.1, dtype=torch.float32),
                             torch.cos(torch.deg2rad(direction)).float() + 0.1], dim=1)
    fit = fit_direction_tuning(direction, responses)
    assert fit.r2.dtype == torch.float32
    for field in (fit.r2, fit.r2_1, fit.r2_2, fit.amp1, fit.amp2):
        assert float(field[0]) == 0.0 and not torch.isnan(field).any()
    assert float(fit.baseline[0]) == pytest.approx(0.1)
    assert float(fit.r2[1]) == pytest.approx(1.0, abs=1e-5)
    assert tuned(fit).tolist() == [False, True]
    assert tuned(fit, r2_threshold=1.0 - 1e-3).tolist() == [False, True]


def test_too_few_distinct_directions_rejected():
    with pytest.raises(ValueError, match="distinct directions"):
        fit_direction_tuning(torch.tensor([0.0, 90.0, 180.0, 270.0, 360.0]), torch.randn(5, 3))
    with pytest.raises(ValueError, match="responses"):
        fit_direction_tuning(_directions(8), torch.randn(7, 3))
    with pytest.raises(ValueError, match="r2_threshold"):
        tuned(fit_direction_tuning(_directions(8), torch.randn(8)), 1.5)


def test_circular_difference_and_matching_wrap_around():
    assert float(circular_difference(175.0, -175.0, period=180.0)) == pytest.approx(10.0)
    assert bool(matched(175.0, -175.0, tolerance=10.0))
    assert not bool(matched(175.0, -174.0, tolerance=10.0))
    assert float(circular_difference(350.0, 10.0)) == pytest.approx(20.0)
    assert float(circular_difference(0.0, 180.0)) == pytest.approx(180.0)
    assert float(circular_difference(0.0, 180.0, period=180.0)) == pytest.approx(0.0)
    assert bool(matched(0.0, 180.0))            # opposite directions share an orientation
    assert not bool(matched(0.0, 180.0, period=360.0))
    # broadcasting: units (3,) against stimuli (2, 1)
    pref = torch.tensor([-88.0, 0.0, 45.0])
    stim = torch.tensor([[85.0], [50.0]])
    m = matched(pref, stim, tolerance=8.0)
    assert m.tolist() == [[True, False, False], [False, False, True]]
    g = torch.Generator().manual_seed(3)
    a, b = torch.rand(500, generator=g) * 1000 - 500, torch.rand(500, generator=g) * 1000 - 500
    d = circular_difference(a, b, 90.0)
    assert ((d >= 0) & (d <= 45.0 + 1e-4)).all()
    reference = np.abs((a.numpy() - b.numpy() + 45.0) % 90.0 - 45.0)
    np.testing.assert_allclose(d.numpy(), reference, atol=1e-3)


def test_tuning_f_test_false_positive_rate_is_its_level():
    """On untuned units (Gaussian noise over 16 directions) the F-test passes ~alpha of them, where
    an R^2 >= 0.3 threshold passes ~37 %; the shuffled-direction chance level agrees."""
    from nrflv.measures.tuning import shuffled_tuned_fraction, significantly_tuned, tuning_p_value

    g = torch.Generator().manual_seed(0)
    n_units = 20000
    direction = torch.arange(16, dtype=torch.float64) * 22.5
    noise = torch.randn(16, n_units, generator=g, dtype=torch.float64)
    fit = fit_direction_tuning(direction, noise)
    for alpha in (0.01, 0.05, 0.2):
        rate = float(significantly_tuned(fit, alpha).double().mean())
        sd = (alpha * (1 - alpha) / n_units) ** 0.5
        assert abs(rate - alpha) < 4 * sd, (alpha, rate)
    assert 0.3 < float((fit.r2 >= 0.3).double().mean()) < 0.45       # the old criterion's chance level
    # p-values of untuned units are uniform
    p = tuning_p_value(fit)
    assert abs(float(p.mean()) - 0.5) < 0.01
    chance = shuffled_tuned_fraction(direction, noise[:, :2000], 0.05, n_shuffles=10,
                                     generator=torch.Generator().manual_seed(1))
    assert abs(chance - 0.05) < 0.012
    # a tuned unit (amplitude = noise sd) is found nearly always; a flat one is p = 1
    tuned_resp = torch.cos(2 * torch.deg2rad(direction - 30))[:, None] * 1.5 + noise[:, :2000]
    assert float(significantly_tuned(fit_direction_tuning(direction, tuned_resp), 0.05).double().mean()) > 0.8
    assert float(tuning_p_value(fit_direction_tuning(direction, torch.ones(16, 1)))) == 1.0
    # too few directions for a residual: NaN, never "tuned"
    few = fit_direction_tuning(direction[:5], noise[:5, :3])
    assert torch.isnan(tuning_p_value(few)).all() and not significantly_tuned(few, 0.05).any()
