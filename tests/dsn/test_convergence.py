"""Bootstrap convergence test, Bonferroni acceptance, choice of the kept epoch."""
from __future__ import annotations

import pytest
import torch
from scipy import stats

from dsn.convergence import bootstrap_p_values, constraints_satisfied, max_entropy_epoch


def test_bootstrap_p_values_match_the_normal_approximation():
    """Each column is its own constraint: p ~ 2 (1 - Phi(|mean| / se)) for a large sample."""
    n, g = 4000, torch.Generator().manual_seed(0)
    x = torch.randn(n, 4, generator=g, dtype=torch.float64)
    x = (x - x.mean(0)) / x.std(0)  # exact mean 0, sd 1 per column
    shifts = torch.tensor([0.0, 1.0, 2.0, 6.0], dtype=torch.float64) / n ** 0.5  # 0, 1, 2, 6 standard errors
    p = bootstrap_p_values(x + shifts, n_boot=4000, generator=torch.Generator().manual_seed(1))
    expected = 2 * stats.norm.sf(shifts.numpy() * n ** 0.5)
    assert p[0] > 0.9
    assert float(p[1]) == pytest.approx(expected[1], abs=0.04)
    assert float(p[2]) == pytest.approx(expected[2], abs=0.015)
    assert float(p[3]) == pytest.approx(2 / 4001)  # nothing crosses zero: the smallest p possible


def test_bootstrap_rejection_rate_is_alpha_under_the_null():
    g = torch.Generator().manual_seed(2)
    dev = torch.randn(300, 800, generator=g)  # 800 independent true-null constraints
    p = bootstrap_p_values(dev, n_boot=1000, generator=g)
    assert float((p < 0.05).float().mean()) == pytest.approx(0.05, abs=0.02)


def test_bonferroni_acceptance():
    assert constraints_satisfied(torch.tensor([0.03, 0.5]), 0.05)  # 0.03 > 0.05 / 2
    assert not constraints_satisfied(torch.tensor([0.02, 0.5]), 0.05)  # 0.02 < 0.025
    assert constraints_satisfied(torch.tensor([]), 0.05)  # no constraints: always met
    assert bootstrap_p_values(torch.zeros(10, 0), 100).numel() == 0


def test_kept_epoch_is_the_max_entropy_accepted_one():
    assert max_entropy_epoch([5.0, 4.0, 3.9, 4.5, 2.0], [False, True, True, True, False]) == 3
    assert max_entropy_epoch([5.0, 4.0], [False, False]) == -1
