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

    lambda_{k+1} = lambda_k + c_k R_hat
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
    """
    m = lam.numel()
    cov = cov_T.double()
    cov = cov + ridge * cov.diagonal().mean().clamp_min(1e-30) * torch.eye(m, dtype=cov.dtype, device=cov.device)
    R = R_hat.double()
    d = torch.linalg.solve(cov, R)
    kl = 0.5 * float(R @ d)
    if kl > max_kl:
        d = d * math.sqrt(max_kl / kl)
    return lam + step * (d + c * R).to(lam.dtype)


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
