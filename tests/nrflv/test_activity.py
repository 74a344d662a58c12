"""Welch's t-test against scipy, and the false-positive rate of block-mean tests on
autocorrelated null traces."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.signal
import scipy.stats
import torch

from nrflv.measures.activity import active_units, block_means, welch_t_test


def test_welch_equals_scipy_with_unequal_variances_and_sizes():
    rng = np.random.default_rng(0)
    a = rng.normal(0.3, 1.0, size=(4, 5, 12))
    b = rng.normal(0.0, 3.0, size=(4, 5, 30))
    t, df, p = welch_t_test(torch.from_numpy(a), torch.from_numpy(b))
    ref = scipy.stats.ttest_ind(a, b, axis=-1, equal_var=False)
    assert t.shape == df.shape == p.shape == (4, 5)
    np.testing.assert_allclose(t.numpy(), ref.statistic, rtol=1e-10)
    np.testing.assert_allclose(p.numpy(), ref.pvalue, rtol=1e-8)
    np.testing.assert_allclose(df.numpy(), ref.df, rtol=1e-10)
    # closed form of the Welch-Satterthwaite df for one pair
    va, vb = a[0, 0].var(ddof=1) / 12, b[0, 0].var(ddof=1) / 30
    assert float(df[0, 0]) == pytest.approx((va + vb) ** 2 / (va ** 2 / 11 + vb ** 2 / 29))


def test_welch_broadcasts_leading_axes_and_keeps_float32():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(3, 1, 8)).astype(np.float32)
    b = rng.normal(1.0, 2.0, size=(1, 2, 6)).astype(np.float32)
    t, df, p = welch_t_test(torch.from_numpy(a), torch.from_numpy(b))
    assert t.shape == (3, 2) and t.dtype == torch.float32 and p.dtype == torch.float32
    ab, bb = np.broadcast_to(a, (3, 2, 8)), np.broadcast_to(b, (3, 2, 6))
    ref = scipy.stats.ttest_ind(ab.astype(np.float64), bb.astype(np.float64), axis=-1,
                                equal_var=False)
    np.testing.assert_allclose(t.numpy(), ref.statistic, rtol=1e-4)
    np.testing.assert_allclose(p.numpy(), ref.pvalue, rtol=1e-4)


@pytest.mark.filterwarnings("ignore:Precision loss")
def test_welch_zero_variance_conventions():
    a = torch.tensor([[0.1, 0.1, 0.1], [0.1, 0.1, 0.1], [0.1, 0.1, 0.1], [1.0, 2.0, 3.0]])
    b = torch.tensor([[0.1, 0.1], [0.2, 0.2], [0.0, 0.0], [1.0, 1.0]])
    t, df, p = welch_t_test(a.double(), b.double())
    assert t[0] == 0 and p[0] == 1
    assert t[1] == -torch.inf and p[1] == 0
    assert t[2] == torch.inf and p[2] == 0
    assert df[:3].tolist() == [3.0, 3.0, 3.0]
    assert not torch.isnan(torch.stack([t, df, p])).any()
    # one constant sample: the ordinary formula (df = na - 1)
    ref = scipy.stats.ttest_ind(a[3].double().numpy(), b[3].double().numpy(), equal_var=False)
    assert float(t[3]) == pytest.approx(ref.statistic) and float(df[3]) == pytest.approx(2.0)
    assert float(p[3]) == pytest.approx(ref.pvalue)
    t, _, p = welch_t_test(torch.tensor([1.0, float("nan"), 2.0]), torch.tensor([0.0, 1.0]))
    assert torch.isnan(t) and torch.isnan(p)
    with pytest.raises(ValueError, match="at least 2"):
        welch_t_test(torch.ones(1), torch.ones(3))


def test_block_means_are_means_of_contiguous_blocks():
    x = torch.arange(23, dtype=torch.float64).reshape(1, 23).repeat(2, 1)
    blocks = block_means(x, 5)  # 5 blocks of 4 steps; the last 3 steps are dropped
    expected = torch.tensor([1.5, 5.5, 9.5, 13.5, 17.5], dtype=torch.float64)
    torch.testing.assert_close(blocks, expected.expand(2, 5))
    assert block_means(torch.arange(6), 6).dtype == torch.get_default_dtype()
    with pytest.raises(ValueError, match="blocks"):
        block_means(x, 24)
    with pytest.raises(ValueError, match="n_blocks"):
        block_means(x, 0)


def _ar1(n_units: int, steps: int, phi: float, seed: int) -> torch.Tensor:
    """Stationary AR(1) traces ``(n_units, steps)`` with unit innovation variance."""
    rng = np.random.default_rng(seed)
    burn_in = 200
    noise = rng.normal(size=(n_units, steps + burn_in))
    return torch.from_numpy(scipy.signal.lfilter([1.0], [1.0, -phi], noise, axis=-1)[:, burn_in:])


def test_block_means_keep_the_false_positive_rate_near_alpha_on_ar1_null():
    """Null: the same AR(1) process (autocorrelation time ~ 19 steps) during and outside the
    stimulus. Block means of 100-step blocks keep the two-sided Welch test near its level;
    single steps treated as independent samples reject most units."""
    alpha = 0.05
    x = _ar1(2000, 3000, phi=0.9, seed=0)
    during, outside = x[:, 2000:], x[:, :2000]
    result = active_units(during, outside, alpha=alpha, n_blocks=10)
    false_two_sided = float((result["p"] < alpha).double().mean())
    assert 0.02 <= false_two_sided <= 0.1
    assert 0.005 <= float(result["active"].double().mean()) <= 0.05  # one-sided half
    _, _, p_steps = welch_t_test(during, outside)
    assert float((p_steps < alpha).double().mean()) > 0.4
    torch.testing.assert_close(result["mean_during"], during.mean(-1))
    torch.testing.assert_close(result["mean_outside"], outside.mean(-1))


def test_active_units_detects_a_raised_mean_only():
    x = _ar1(200, 3000, phi=0.9, seed=1)
    shift = torch.zeros(200, dtype=torch.float64)
    shift[:100] = 2.5   # about 1.1 standard deviations of the process
    shift[100:150] = -2.5
    during, outside = x[:, 2000:] + shift[:, None], x[:, :2000]
    result = active_units(during, outside)
    assert result["active"][:100].double().mean() > 0.95
    assert not result["active"][100:150].any()          # significantly lower is not active
    assert (result["p"][100:150] < 0.05).double().mean() > 0.95
    assert result["active"].shape == (200,) and result["active"].dtype == torch.bool
    with pytest.raises(ValueError, match="alpha"):
        active_units(during, outside, alpha=0.0)
    with pytest.raises(ValueError, match="n_blocks"):
        active_units(during, outside, n_blocks=1)
