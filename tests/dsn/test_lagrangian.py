"""Augmented-Lagrangian objective, multiplier/penalty updates and the Welch test."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from dsn import lagrangian


def test_objective_value_is_minus_entropy_plus_linear_plus_half_batch_penalty():
    g = torch.Generator().manual_seed(0)
    log_q, T = torch.randn(10, generator=g), torch.randn(10, 3, generator=g)
    mu, lam, c = torch.tensor([0.1, -0.2, 0.3]), torch.tensor([1.0, 2.0, -1.0]), 3.0
    loss, parts = lagrangian.al_objective(log_q, T, mu, lam, c)
    R = T.mean(0) - mu
    R1, R2 = T[:5].mean(0) - mu, T[5:].mean(0) - mu
    assert float(parts["entropy"]) == pytest.approx(float(-log_q.mean()))
    torch.testing.assert_close(parts["R"], R)
    assert float(loss) == pytest.approx(float(log_q.mean() + lam @ R + 0.5 * c * (R1 @ R2)), rel=1e-6)


def _penalty_gradients(n: int, replicates: int, theta0: float, sigma: float, mu: float, c: float,
                       seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Half-batch and naive penalty gradients for T(z) = z^2, z = theta + sigma eps.

    Every column is an independent replicate with its own copy of theta, so one backward
    pass gives ``replicates`` independent gradient estimates.
    """
    g = torch.Generator().manual_seed(seed)
    theta = torch.full((replicates,), theta0, dtype=torch.float64, requires_grad=True)
    eps = torch.randn(n, replicates, generator=g, dtype=torch.float64)
    T = (theta + sigma * eps) ** 2  # (n, replicates)
    mus = torch.full((replicates,), mu, dtype=torch.float64)
    loss, _ = lagrangian.al_objective(torch.zeros(n, dtype=torch.float64), T, mus, torch.zeros_like(mus), c)
    half = torch.autograd.grad(loss, theta, retain_graph=True)[0]
    naive = torch.autograd.grad(0.5 * c * ((T.mean(0) - mus) ** 2).sum(), theta)[0]
    return half, naive


def test_half_batch_penalty_gradient_is_unbiased_for_c_JT_R():
    """E[grad] = c J^T R exactly; the naive c/2 ||R_hat||^2 is biased by c Cov(J_hat, R_hat)."""
    n, theta0, sigma, mu, c = 4, 0.7, 1.0, 1.5, 2.0
    half, naive = _penalty_gradients(n, 400_000, theta0, sigma, mu, c, seed=0)
    # closed forms: E[T] = theta^2 + sigma^2, J = dE[T]/dtheta = 2 theta
    exact = c * 2 * theta0 * (theta0 ** 2 + sigma ** 2 - mu)
    se = float(half.std() / half.numel() ** 0.5)
    assert abs(float(half.mean()) - exact) < 4 * se
    # the naive estimator's bias c/n Cov(2z, z^2) = c/n * 4 theta sigma^2 is clearly visible
    bias = c / n * 4 * theta0 * sigma ** 2
    assert float(naive.mean()) - exact == pytest.approx(bias, abs=4 * float(naive.std() / naive.numel() ** 0.5))
    assert bias > 20 * se


def test_multiplier_update():
    lam = torch.tensor([1.0, -2.0])
    torch.testing.assert_close(lagrangian.update_multipliers(lam, 4.0, torch.tensor([0.5, 0.25])),
                               torch.tensor([3.0, -1.0]))


def test_penalty_update_rules():
    assert lagrangian.penalty_update(1e-4, 0.01, 4.0, "test", u=0.99) == pytest.approx(4e-4)
    assert lagrangian.penalty_update(1e-4, 0.20, 4.0, "test", u=0.0) == pytest.approx(1e-4)
    # published rule: grow with probability 1 - p
    assert lagrangian.penalty_update(1.0, 0.3, 4.0, "probability", u=0.69) == 4.0
    assert lagrangian.penalty_update(1.0, 0.3, 4.0, "probability", u=0.71) == 1.0
    rng = np.random.default_rng(0)
    grown = np.mean([lagrangian.penalty_update(1.0, 0.3, 4.0, "probability", u=u) == 4.0
                     for u in rng.uniform(size=4000)])
    assert grown == pytest.approx(0.7, abs=0.03)
    with pytest.raises(ValueError):
        lagrangian.penalty_update(1.0, 0.3, 4.0, "sometimes", u=0.5)


def test_constraint_norms():
    dev = torch.tensor([[[3.0, 0.0], [3.0, 8.0]], [[1.0, 1.0], [-1.0, -1.0]]])  # (2 batches, 2, 2)
    torch.testing.assert_close(lagrangian.constraint_norms(dev), torch.tensor([5.0, 0.0]))


def test_welch_p_value_matches_the_hand_formula():
    rng = np.random.default_rng(1)
    a, b = rng.normal(1.0, 1.0, 12), rng.normal(0.6, 3.0, 7)
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    t = (a.mean() - b.mean()) / np.sqrt(va + vb)
    df = (va + vb) ** 2 / (va ** 2 / (a.size - 1) + vb ** 2 / (b.size - 1))  # Welch-Satterthwaite
    p = lagrangian.welch_greater_p(torch.tensor(a), torch.tensor(b))
    assert p == pytest.approx(stats.t.sf(t, df), rel=1e-9)
    # reversed order: the one-sided p-values add up to one
    assert lagrangian.welch_greater_p(torch.tensor(b), torch.tensor(a)) == pytest.approx(1 - p, rel=1e-9)


def test_welch_p_value_is_uniform_under_the_null_and_small_under_h1():
    rng = np.random.default_rng(2)
    null = [lagrangian.welch_greater_p(torch.tensor(rng.normal(0, 1, 20)), torch.tensor(rng.normal(0, 2, 20)))
            for _ in range(2000)]
    assert np.mean(np.array(null) < 0.05) == pytest.approx(0.05, abs=0.015)
    # ||R|| not reduced to gamma = 1/4 of before: H1 holds, p small, c grows
    new, old = torch.full((20,), 1.0) + 0.05 * torch.randn(20), torch.full((20,), 1.0) + 0.05 * torch.randn(20)
    assert lagrangian.welch_greater_p(new, 0.25 * old) < 1e-6
    assert lagrangian.welch_greater_p(0.1 * new, 0.25 * old) > 0.999


def test_score_surrogate_gradient_is_unbiased():
    """q = N(theta, 1), T(z) = (z, z^2): grad[lam^T R + c/2 ||R||^2] has the closed form
    lam_1 + 2 theta lam_2 + c (R_1 + 2 theta R_2) with R = (theta - mu_1, theta^2 + 1 - mu_2)."""
    from dsn.lagrangian import score_constraint_surrogate

    theta0, lam, c = 0.7, torch.tensor([0.3, 0.2], dtype=torch.float64), 2.0
    mu = torch.tensor([0.2, 1.1], dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    reps, n = 4000, 64
    theta = torch.full((reps, 1), theta0, dtype=torch.float64, requires_grad=True)  # one copy per replicate
    z = theta0 + torch.randn(reps, n, generator=g, dtype=torch.float64)
    T = torch.stack([z, z ** 2], -1)
    log_q = -0.5 * (z - theta) ** 2
    surrogate = torch.stack([score_constraint_surrogate(log_q[r], T[r], mu, lam, c) for r in range(reps)])
    (grads,) = torch.autograd.grad(surrogate.sum(), theta)
    R = torch.tensor([theta0 - mu[0], theta0 ** 2 + 1 - mu[1]], dtype=torch.float64)
    expected = lam[0] + 2 * theta0 * lam[1] + c * (R[0] + 2 * theta0 * R[1])
    se = grads.std() / reps ** 0.5
    assert abs(float(grads.mean() - expected)) < 4 * float(se), (float(grads.mean()), float(expected), float(se))
