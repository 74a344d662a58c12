"""Augmented-Lagrangian objective, multiplier/penalty updates and the Welch test."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from dsn import lagrangian
from dsn.systems.moments import truncated_exponential


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


def test_hold_rule_keeps_c_once_the_constraints_are_met():
    # unmet: the published probability rule
    assert lagrangian.penalty_update(1.0, 0.3, 4.0, "hold", u=0.69, satisfied=False) == 4.0
    assert lagrangian.penalty_update(1.0, 0.3, 4.0, "hold", u=0.71, satisfied=False) == 1.0
    # met: c stays whatever the Welch test says (||R|| at sampling noise cannot fall by gamma)
    assert lagrangian.penalty_update(1.0, 0.0, 4.0, "hold", u=0.0, satisfied=True) == 1.0


def _gaussian_moments(lam):
    """E[T], Cov[T] of q ∝ exp(-lam1 z - lam2 z^2) on R, T = (z, z^2) (a Gaussian, exact)."""
    var = 1.0 / (2.0 * lam[1])
    m = -lam[0] * var
    E = torch.stack([m, var + m ** 2])
    cov = torch.stack([torch.stack([var, 2 * m * var]),
                       torch.stack([2 * m * var, 2 * var ** 2 + 4 * m ** 2 * var])])
    return E, cov


def test_newton_multipliers_solve_the_dual_of_a_gaussian():
    """With exact moments the Newton update is the dual's Newton method: from a wrong start it
    reaches the multipliers of N(1.5, 0.5^2), (-6, 2), quadratically."""
    mu = torch.tensor([1.5, 0.25 + 1.5 ** 2], dtype=torch.float64)
    lam = torch.tensor([-3.0, 1.5], dtype=torch.float64)  # N(1, 1/3)
    errs = []
    for _ in range(8):
        E, cov = _gaussian_moments(lam)
        lam = lagrangian.newton_multipliers(lam, 0.0, E - mu, cov, step=1.0, ridge=0.0)
        errs.append(float((lam - torch.tensor([-6.0, 2.0], dtype=torch.float64)).abs().max()))
    assert errs[-1] < 1e-10
    k = next(i for i, e in enumerate(errs) if e < 0.1)
    assert errs[k + 1] < 0.05 * errs[k]  # quadratic once close
    # with a penalty the step adds the published c R; damping scales the whole step
    E, cov = _gaussian_moments(torch.tensor([-3.0, 1.5], dtype=torch.float64))
    R = E - mu
    full = lagrangian.newton_multipliers(torch.zeros(2, dtype=torch.float64), 3.0, R, cov, step=1.0, ridge=0.0)
    torch.testing.assert_close(full, torch.linalg.solve(cov, R) + 3.0 * R)
    half = lagrangian.newton_multipliers(torch.zeros(2, dtype=torch.float64), 3.0, R, cov, step=0.5, ridge=0.0)
    torch.testing.assert_close(half, 0.5 * full)


def test_newton_trust_region_caps_the_step_in_kl():
    cov = torch.diag(torch.tensor([0.01, 4.0], dtype=torch.float64))
    R = torch.tensor([0.5, 1.0], dtype=torch.float64)  # R^T Cov^-1 R / 2 = 12.625 nats
    lam0 = torch.zeros(2, dtype=torch.float64)
    free = lagrangian.newton_multipliers(lam0, 0.0, R, cov, ridge=0.0)
    capped = lagrangian.newton_multipliers(lam0, 0.0, R, cov, ridge=0.0, max_kl=0.5)
    torch.testing.assert_close(capped, free * (0.5 / 12.625) ** 0.5)
    assert float(capped @ cov @ capped) / 2 == pytest.approx(0.5)
    # the published c R part is not shortened
    with_c = lagrangian.newton_multipliers(lam0, 2.0, R, cov, ridge=0.0, max_kl=0.5)
    torch.testing.assert_close(with_c, capped + 2.0 * R)


def test_tilted_update_from_uniform_samples_is_the_exact_dual():
    """Samples of U(0, 4) stand for q at lambda = 0; with no trust region the tilt solves the
    dual on them, which for E[z] = 1 is the truncated exponential exp(eta z) (closed form,
    eta = -0.90; lambda = -eta in q ∝ exp(-lambda^T T)); on a Gaussian one step is exact and
    equals newton_multipliers' Cov^-1 R."""
    g = torch.Generator().manual_seed(0)
    z = 4.0 * torch.rand(400_000, 1, generator=g, dtype=torch.float64)
    dev = z - 1.0
    lam = lagrangian.tilted_multipliers(torch.zeros(1, dtype=torch.float64), 0.0, dev.mean(0), dev,
                                        max_kl=math.inf)
    eta, _ = truncated_exponential(1.0, 4.0)
    assert float(lam) == pytest.approx(-eta, abs=0.01)
    # a Gaussian's tilt is exact in one Newton step: d = Cov^-1 R for T = z
    x = 1.0 + 2.0 * torch.randn(400_000, 1, generator=g, dtype=torch.float64)
    dev = x - 1.5
    tilt = lagrangian.tilted_multipliers(torch.zeros(1, dtype=torch.float64), 0.0, dev.mean(0), dev,
                                         max_kl=math.inf)
    newton = lagrangian.newton_multipliers(torch.zeros(1, dtype=torch.float64), 0.0, dev.mean(0),
                                           torch.cov(dev.T).reshape(1, 1), ridge=0.0)
    torch.testing.assert_close(tilt, newton, rtol=1e-3, atol=0.0)
    assert float(tilt) == pytest.approx(-0.125, abs=0.005)  # exp(0.125 x) moves N(1, 4)'s mean to 1.5
    # the published c R part is added unchanged, the step scales both
    R = dev.mean(0)
    with_c = lagrangian.tilted_multipliers(torch.zeros(1, dtype=torch.float64), 2.0, R, dev, step=0.5,
                                           max_kl=math.inf)
    torch.testing.assert_close(with_c, 0.5 * (tilt + 2.0 * R))


def test_tilt_trust_region_is_the_weights_kl():
    """Accuracies far from their target, with their squares as statistics (the SC circuit's
    form): the tilted weights move at most max_kl nats from uniform, and the moments they reach
    move towards mu."""
    g = torch.Generator().manual_seed(1)
    p = 0.5 * torch.rand(4000, generator=g, dtype=torch.float64)  # accuracies in [0, 0.5]
    T = torch.stack([p, (p - 0.75) ** 2], 1)
    mu = torch.tensor([0.75, 0.075 ** 2], dtype=torch.float64)
    dev = T - mu
    for max_kl in (0.1, 0.5, 2.0):
        lam = lagrangian.tilted_multipliers(torch.zeros(2, dtype=torch.float64), 0.0, dev.mean(0), dev,
                                            max_kl=max_kl)
        logw = torch.log_softmax(-(dev @ lam), 0)
        kl = float((logw.exp() * (logw + math.log(len(p)))).sum())
        assert kl == pytest.approx(max_kl, rel=1e-6)
        moved = logw.exp() @ dev
        assert float(moved.norm()) < float(dev.mean(0).norm())


def test_tilt_leaves_a_constant_statistic_to_the_penalty():
    """An accuracy that is 0 on every sample cannot be moved by re-weighting: its dual step
    stays 0 (the sample dual is unbounded along it, and its weights' KL stays 0, so nothing
    else would stop it) and only c R moves its multiplier; the other statistic is tilted as
    usual."""
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2000, generator=g, dtype=torch.float64)
    dev = torch.stack([x - 0.3, torch.full_like(x, -0.75)], 1)
    R = dev.mean(0)
    lam = lagrangian.tilted_multipliers(torch.zeros(2, dtype=torch.float64), 1.0, R, dev, max_kl=math.inf)
    assert float(lam[1]) == pytest.approx(-0.75)
    alone = lagrangian.tilted_multipliers(torch.zeros(1, dtype=torch.float64), 1.0, R[:1], dev[:, :1],
                                          max_kl=math.inf)
    assert float(lam[0]) == pytest.approx(float(alone))


def test_newton_leaves_a_constant_statistic_to_the_penalty():
    """Zero variance (the SC trial's accuracy of 0 on every sample drove lambda to -6.5e5):
    that statistic gets only c R, the others their Newton step as without it."""
    cov = torch.tensor([[0.04, 0.0], [0.0, 0.0]], dtype=torch.float64)
    R = torch.tensor([0.1, -0.75], dtype=torch.float64)
    lam = lagrangian.newton_multipliers(torch.zeros(2, dtype=torch.float64), 1.0, R, cov, ridge=0.0, max_kl=0.5)
    torch.testing.assert_close(lam, torch.tensor([0.1 / 0.04 + 0.1, -0.75], dtype=torch.float64))
