"""Closed-form maximum-entropy solutions that a trained DSN must reproduce.

* E[z] = m, E[z^2] = m^2 + s^2 on R^D        ->  N(m, s^2),  H = sum 1/2 log(2 pi e s^2)
* no constraint on the box [a, b]^D           ->  uniform,    H = D log(b - a)
* E[z] = m on [0, b]^D                        ->  q ∝ exp(eta z), a truncated exponential

Stated tolerances (2-D, short CPU runs of a few thousand Adam steps): entropy within
0.1 nats of the closed form (0.05 for the cheaper uniform and truncated-exponential cases),
means within 0.1, standard deviations within 10 %.
"""
from __future__ import annotations

import math

import pytest
import torch

from dsn.systems.moments import truncated_exponential
from tests.dsn.helpers import make_suite, train

COMMON = dict(couplings=4, hidden=[16, 16], n=500, init_steps=100, norm_batches=10, n_boot=300,
              test_samples=2000, c0=1.0, seed=0)


def _kept_samples(suite, modules, n=40_000):
    flow = suite.kept_flow(modules)
    with torch.no_grad():
        z, log_q = flow.rsample_and_log_prob(n, torch.Generator().manual_seed(123))
    return z.double(), float(-log_q.mean())


@pytest.fixture(scope="module")
def gaussian():
    torch.set_num_threads(1)
    suite = make_suite(system="gaussian", iters_per_epoch=300, epochs=6, **COMMON)
    return suite, train(suite)


def test_gaussian_moments_give_the_gaussian(gaussian):
    suite, modules = gaussian
    assert suite.best_epoch >= 0, "no epoch passed the convergence test"
    z, H = _kept_samples(suite, modules)
    sys_ = suite.system
    assert H == pytest.approx(sys_.entropy(), abs=0.1)
    torch.testing.assert_close(z.mean(0), sys_.target_mean.double(), rtol=0, atol=0.1)
    torch.testing.assert_close(z.std(0), sys_.target_std.double(), rtol=0.1, atol=0)
    assert abs(float(torch.corrcoef(z.T)[0, 1])) < 0.1  # independent dimensions


def test_no_constraint_on_a_box_gives_the_uniform():
    torch.set_num_threads(1)
    suite = make_suite(system="uniform", iters_per_epoch=600, epochs=1, **COMMON)
    modules = train(suite)
    assert suite.best_epoch == 0  # nothing to violate: the only epoch is accepted
    z, H = _kept_samples(suite, modules)
    H_ref = suite.system.entropy()  # 2 log 3
    assert H_ref - 0.05 < H < H_ref + 0.01
    torch.testing.assert_close(z.mean(0), torch.full((2,), 0.5, dtype=torch.float64), rtol=0, atol=0.03)
    torch.testing.assert_close(z.std(0), torch.full((2,), 3 / math.sqrt(12), dtype=torch.float64),
                               rtol=0.03, atol=0)
    thirds = torch.stack([((z >= a) & (z < a + 1)).double().mean(0) for a in (-1.0, 0.0, 1.0)])
    torch.testing.assert_close(thirds, torch.full((3, 2), 1 / 3, dtype=torch.float64), rtol=0, atol=0.03)


def test_mean_on_a_half_line_box_gives_the_truncated_exponential():
    torch.set_num_threads(1)
    suite = make_suite(system="truncexp", iters_per_epoch=300, epochs=5, **COMMON)
    modules = train(suite)
    assert suite.best_epoch >= 0, "no epoch passed the convergence test"
    z, H = _kept_samples(suite, modules)
    eta, _ = truncated_exponential(1.0, 4.0)
    # closed-form variance of q ∝ exp(eta z) on [0, b]: 1/eta^2 - b^2 e^{eta b} / (e^{eta b} - 1)^2
    b = 4.0
    var = 1 / eta ** 2 - b ** 2 * math.exp(eta * b) / math.expm1(eta * b) ** 2
    assert H == pytest.approx(suite.system.entropy(), abs=0.05)
    torch.testing.assert_close(z.mean(0), torch.ones(2, dtype=torch.float64), rtol=0, atol=0.05)
    torch.testing.assert_close(z.std(0), torch.full((2,), math.sqrt(var), dtype=torch.float64), rtol=0.05, atol=0)
    # the density falls off as exp(eta z): compare the mass of [0, 1) with that of [1, 2)
    ratio = float(((z < 1).double().mean()) / ((z >= 1) & (z < 2)).double().mean())
    assert ratio == pytest.approx(math.exp(-eta), rel=0.1)


@pytest.mark.parametrize("update,extra", [("newton", {}), ("tilt", {}), ("tilt", {"tilt_ridge": 0.1})])
def test_dual_multipliers_reach_the_truncated_exponential_and_its_multiplier(update, extra):
    """multiplier_update: newton or tilt (with the annealed learning rate and c held at c0):
    the kept flow is the truncated exponential, and lambda reaches the closed-form multiplier:
    the AL's q ∝ exp(-lambda^T T), so lambda = -eta in every dimension (the tilt's ridge
    changes its steps, not where they end)."""
    torch.set_num_threads(1)
    suite = make_suite(system="truncexp", iters_per_epoch=300, epochs=5, multiplier_update=update,
                       anneal_fraction=0.3, beta=1.0, **COMMON, **extra)
    modules = train(suite)
    assert suite.best_epoch >= 0, "no epoch passed the convergence test"
    assert suite.c == COMMON["c0"]  # beta = 1: the penalty never grew
    z, H = _kept_samples(suite, modules)
    eta, _ = truncated_exponential(1.0, 4.0)
    assert H == pytest.approx(suite.system.entropy(), abs=0.05)
    torch.testing.assert_close(z.mean(0), torch.ones(2, dtype=torch.float64), rtol=0, atol=0.05)
    torch.testing.assert_close(suite.lam.double(), torch.full((2,), -eta, dtype=torch.float64), rtol=0, atol=0.1)
