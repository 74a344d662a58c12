"""Augmented-Lagrangian training objective and its between-epoch updates.

For multipliers lambda (m,) and penalty c, the inner loop minimises over theta

    L(theta; lambda, c) = -H(q_theta) + lambda^T R(theta) + c/2 ||R(theta)||^2,
    R(theta) = E_q[T(x(z))] - mu,   H(q_theta) ~= -1/n sum_i log q(z_i).

The penalty's gradient c J_R^T R is estimated without bias by splitting the batch into
halves with means R_1, R_2: the surrogate c/2 R_1^T R_2 has gradient
c/2 (J_1^T R_2 + J_2^T R_1), whose expectation is c J^T R (the average of the two
one-sided estimators c J_{R1}^T R_2 and c J_{R2}^T R_1).

With ``constraint_grad: score`` the constraint terms' gradient is instead the
score-function (likelihood-ratio) estimate with z held fixed,
grad E_q[T] = E_q[(T - b) grad_theta log q_theta(z)] (:func:`score_constraint_surrogate`):
it needs no derivative of T, so it also sees samples on plateaus where dT/dz = 0.

After each AL epoch k (on fresh samples):

    lambda_{k+1} = lambda_k + c_k R_hat              (published; "newton" and "tilt" add the
                                                    dual's step on the epoch's samples)
    c_{k+1} = beta c_k   with probability 1 - p   (rule "probability", as published)
                         or when p < 0.05         (rule "test")

where p is the one-sided Welch t-test p-value of H1: E||R_{k+1}|| > gamma E||R_k||,
computed from ||R|| over several independent batches at the ends of epochs k and k+1.
"""
from __future__ import annotations

import math

import torch
from scipy import stats
from torch import Tensor

from dsn.maxent import maxent_dual

C_RULES = ("probability", "test", "hold")


def al_objective(log_q: Tensor, T: Tensor, mu: Tensor, lam: Tensor, c: float
                 ) -> tuple[Tensor, dict[str, Tensor]]:
    """The AL loss for one batch.

    Args:
        log_q: (n,) log q(z_i) of a reparameterised batch.
        T: (n, m) sufficient statistics of the same batch.
        mu: (m,), lam: (m,), c: penalty coefficient.
    Returns the scalar loss and detached parts: entropy, R (m,), penalty.
    """
    entropy = -log_q.mean()
    dev = T - mu
    R = dev.mean(0)
    half = T.shape[0] // 2
    R1, R2 = dev[:half].mean(0), dev[half:2 * half].mean(0)
    penalty = 0.5 * c * (R1 * R2).sum()
    loss = -entropy + (lam * R).sum() + penalty
    return loss, {"entropy": entropy.detach(), "R": R.detach(), "penalty": penalty.detach()}


def score_constraint_surrogate(log_q_fixed: Tensor, T: Tensor, mu: Tensor, lam: Tensor, c: float) -> Tensor:
    """Surrogate whose gradient is the score-function estimate of grad[lam^T R + c/2 ||R||^2].

    Args:
        log_q_fixed: (n,) log q_theta(z_i) at the samples held fixed (through the inverse flow).
        T: (n, m) statistics of those samples (no gradient needed).
    Each half's score term is centred by the *other* half's mean (a baseline independent of
    its own samples, so unbiased) and, as in :func:`al_objective`, the penalty pairs the
    Jacobian of one half with the residual of the other: c/2 (J_1^T R_2 + J_2^T R_1).
    """
    dev = (T - mu).detach()
    half = T.shape[0] // 2
    d1, d2 = dev[:half], dev[half:2 * half]
    R1, R2 = d1.mean(0), d2.mean(0)
    w1 = (d1 - R2) @ (0.5 * lam + 0.5 * c * R2)
    w2 = (d2 - R1) @ (0.5 * lam + 0.5 * c * R1)
    return (w1 * log_q_fixed[:half]).mean() + (w2 * log_q_fixed[half:2 * half]).mean()


def update_multipliers(lam: Tensor, c: float, R_hat: Tensor) -> Tensor:
    """lambda <- lambda + c R_hat."""
    return lam + c * R_hat


def newton_multipliers(lam: Tensor, c: float, R_hat: Tensor, cov_T: Tensor, step: float = 1.0,
                       ridge: float = 1e-6, max_kl: float = float("inf")) -> Tensor:
    """Dual Newton update: lambda <- lambda + step (Cov_q[T]^-1 + c I) R_hat.

    The minimiser of L(q; lambda, c) is the exponential family q ∝ exp(-(lambda + c R)^T T)
    (on the support), whose moments move with its multiplier as dE[T]/d(lambda) = -Cov[T]; the
    step that zeroes R to first order is therefore (Cov^-1 + c I) R, the published c R plus
    the dual's Newton term Cov^-1 R. It reaches the multipliers without a large c, which
    would otherwise outweigh the entropy in the inner problem.

    Args:
        lam, R_hat: (m,); cov_T: (m, m) covariance of T under the current q (fresh samples);
        ridge: added to the diagonal, relative to its mean, so a near-singular Cov stays invertible.
        max_kl: trust region: the Newton term d = Cov^-1 R moves the exponential family by
            KL ~ d^T Cov d / 2 = R^T Cov^-1 R / 2 nats; a larger step is shortened to max_kl (far
            from the solution, e.g. from a narrow initial flow, a full step overshoots wildly).

    A statistic that is constant over the samples (zero variance; e.g. an accuracy that is 0
    on every sample) gets no Newton term, only c R: its Cov^-1 R would be ~R / ridge, and the
    quadratic KL, which weighs d by that zero variance, would not shorten it.
    """
    R = R_hat.double()
    cov = cov_T.double()
    d = torch.zeros_like(R)
    moving = _spread_exceeds(cov.diagonal().clamp_min(0).sqrt(), R)
    if moving.any():
        sub = cov[moving][:, moving]
        m = int(moving.sum())
        sub = sub + ridge * sub.diagonal().mean().clamp_min(1e-30) * torch.eye(m, dtype=sub.dtype, device=sub.device)
        d[moving] = torch.linalg.solve(sub, R[moving])
    kl = 0.5 * float(R @ d)
    if kl > max_kl:
        d = d * math.sqrt(max_kl / kl)
    return lam + step * (d + c * R).to(lam.dtype)


def tilted_multipliers(lam: Tensor, c: float, R_hat: Tensor, dev: Tensor, step: float = 1.0,
                       max_kl: float = 0.5, ridge: float = 0.0) -> Tensor:
    """Dual update by exponential tilting of the epoch's samples: lambda <- lambda + step (d + c R_hat).

    The samples z_i of q stand for the exponential family q ∝ exp(-lambda_eff^T T) that the
    inner problem fits; tilting their weights by exp(-d^T (T_i - mu)) gives the family at
    lambda_eff + d without another simulation. d solves the dual on those weights (the
    Monte-Carlo dual of :func:`dsn.maxent.maxent_dual` with q's samples as the draws), and its
    trust region is the weights' own KL from uniform (at most ``max_kl`` nats), not the
    quadratic estimate of :func:`newton_multipliers`. The first Newton step of that dual is
    Cov^-1 R, so near the solution the two updates agree; far from it, where T's
    distribution is far from Gaussian (accuracies on plateaus, with their squared deviations
    as statistics), the quadratic estimate can call a step small that moves nearly all weight
    onto a few samples, and this one cannot.

    Args:
        lam, R_hat: (m,); dev: (N, m) samples of T - mu under the current q (fresh samples,
            the same units as lam).
        ridge: the dual's ridge (:func:`dsn.maxent.maxent_dual`): it shrinks d along directions
            the samples leave undetermined. Accuracies that take only a few values over the
            samples (a plateau at chance, 0.5, and little else) make p and (p - mu)^2 nearly
            linearly dependent; without a ridge d grows large along that direction (it barely
            changes any sample's weight), and the resulting multipliers, e.g. a negative one on
            (p - mu)^2, push q away from intermediate accuracies. The ridge changes the step,
            not its fixed point (d = 0 at R = 0).
    """
    dev = dev.detach().double().cpu()
    d = torch.zeros(dev.shape[1], dtype=torch.float64)
    moving = identifiable(dev)
    if moving.any():
        d[moving] = -maxent_dual(dev[:, moving], torch.zeros(int(moving.sum()), dtype=torch.float64), 0.0,
                                 max_kl=max_kl, ridge=ridge)["eta"]
    return lam + step * (d.to(lam) + c * R_hat)


def identifiable(dev: Tensor, rel: float = 1e-6) -> Tensor:
    """(m,) bool: statistics whose spread over the samples dev (N, m) is more than ``rel`` of
    their distance |mean| from mu. A statistic that is (nearly) constant over q, e.g. an
    accuracy that is 0 on every sample, cannot be moved by re-weighting the samples: the dual
    step along it is unbounded and its weights' KL stays 0, so the dual steps leave it at 0
    and only the published c R moves its multiplier."""
    return _spread_exceeds(dev.std(0), dev.mean(0), rel)


def _spread_exceeds(sd: Tensor, R: Tensor, rel: float = 1e-6) -> Tensor:
    """sd > rel |R| elementwise: the test of :func:`identifiable`, from sd and R directly."""
    return sd > rel * R.abs().clamp_min(1e-12)


MULTIPLIER_UPDATES = ("al", "newton", "tilt")


def next_multipliers(rule: str, lam: Tensor, c: float, R_hat: Tensor, dev: Tensor, step: float = 1.0,
                     max_kl: float = 0.5, ridge: float = 0.0) -> Tensor:
    """The between-epoch multiplier update named by ``rule`` (the config's multiplier_update):
    "al" :func:`update_multipliers`, "newton" :func:`newton_multipliers` (Cov from dev),
    "tilt" :func:`tilted_multipliers`. dev: (N, m) fresh samples of T - mu; R_hat their mean."""
    if rule == "al":
        return update_multipliers(lam, c, R_hat)
    if rule == "newton":
        m = R_hat.numel()
        cov = torch.cov(dev.T.double()).reshape(m, m)
        return newton_multipliers(lam, c, R_hat, cov, step, max_kl=max_kl)
    if rule == "tilt":
        return tilted_multipliers(lam, c, R_hat, dev, step, max_kl=max_kl, ridge=ridge)
    raise ValueError(f"multiplier update must be one of {', '.join(MULTIPLIER_UPDATES)}, got {rule!r}")


def constraint_norms(dev: Tensor) -> Tensor:
    """||R|| of each batch: dev (batches, n, m) of T - mu  ->  (batches,)."""
    return dev.mean(1).norm(dim=-1)


def welch_greater_p(new: Tensor, old_scaled: Tensor) -> float:
    """One-sided Welch t-test p-value of H1: mean(new) > mean(old_scaled)."""
    a, b = new.double().cpu().numpy(), old_scaled.double().cpu().numpy()
    if a.size < 2 or b.size < 2:
        return 0.0
    if a.std() == 0 and b.std() == 0:
        return 0.0 if a.mean() > b.mean() else 1.0
    p = stats.ttest_ind(a, b, equal_var=False, alternative="greater").pvalue
    return 0.0 if math.isnan(p) else float(p)


def penalty_update(c: float, p: float, beta: float, rule: str, u: float, satisfied: bool = False) -> float:
    """The next c given the Welch p-value; ``u`` is a uniform draw for the probability rule.

    Rule "hold" is the probability rule while the epoch's convergence test rejects the
    constraints, and keeps c once they are ``satisfied``: at convergence ||R|| is sampling
    noise and cannot fall by gamma again, so the published rule would grow c every epoch.
    """
    if rule == "hold":
        return c if satisfied else penalty_update(c, p, beta, "probability", u)
    if rule == "probability":
        return c * beta if u < 1.0 - p else c
    if rule == "test":
        return c * beta if p < 0.05 else c
    raise ValueError(f"c rule must be one of {', '.join(C_RULES)}, got {rule!r}")
