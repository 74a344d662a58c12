"""An independent maximum-entropy reference: the dual problem on a Monte-Carlo sample.

On a box B of volume V the maximum-entropy density with E[T] = mu is
p(z) ∝ exp(eta^T (T(z) - mu)), eta minimising the convex dual

    g(eta) = log V + log E_{u ~ U(B)}[exp(eta^T (T(u) - mu))],   H* = min g.

E_u is replaced by the mean over N uniform draws; Newton's method with backtracking
(gradient = weighted mean of T - mu, Hessian = weighted covariance) finds eta. The
effective sample size of the weights and how far the weighted moments miss mu are returned,
and :func:`reliable` judges the estimate from them: when the target lies in a tail that few
draws reach, the dual can return any number (an entropy of -1e8 nats has been seen), so the
analyses mark such a reference instead of reporting its gap as if it were exact.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor


def maxent_dual(T: Tensor, mu: Tensor, log_volume: float, iters: int = 100, tol: float = 1e-10
                ) -> dict[str, float | Tensor]:
    """Solve the dual on samples T (N, m) of T(u), u uniform on the box (float64 inside).

    Returns eta (m,), entropy H*, the moments reached under the weights and the ESS.
    """
    T = T.double()
    dev = T - mu.double()
    scale = dev.std(0).clamp(min=1e-12)  # work in standardised units for conditioning
    X = dev / scale
    eta = torch.zeros(X.shape[1], dtype=torch.float64)
    N = X.shape[0]

    def g(e: Tensor) -> Tensor:
        return torch.logsumexp(X @ e, 0) - math.log(N)

    val = g(eta)
    for _ in range(iters):
        w = torch.softmax(X @ eta, 0)
        grad = w @ X
        Xc = X - grad
        hess = (Xc * w[:, None]).T @ Xc + 1e-10 * torch.eye(X.shape[1], dtype=torch.float64)
        step = torch.linalg.solve(hess, grad)
        t = 1.0
        while t > 1e-8:
            new = g(eta - t * step)
            if new <= val - 1e-4 * t * (grad @ step):
                break
            t *= 0.5
        eta, old = eta - t * step, val
        val = g(eta)
        if abs(old - val) < tol:
            break
    w = torch.softmax(X @ eta, 0)
    return {"eta": eta / scale, "entropy": float(val) + log_volume,
            "moments": (w @ T).float(), "ess": float(1.0 / (w ** 2).sum()),
            "moment_error": float((w @ X).abs().max())}


#: below this effective sample size, or with weighted moments further than this many standard
#: deviations (of T over the box) from mu, the dual's entropy is not trusted
MIN_RELIABLE_ESS = 100.0
MAX_MOMENT_ERROR = 0.05


def reliable(ref: dict) -> tuple[bool, str]:
    """Whether a dual reference can be trusted, and why not (see the module doc)."""
    if not math.isfinite(ref["entropy"]):
        return False, "non-finite entropy"
    if ref["ess"] < MIN_RELIABLE_ESS:
        return False, f"effective sample size {ref['ess']:.0f} < {MIN_RELIABLE_ESS:.0f}: use more maxent_samples"
    if ref.get("moment_error", 0.0) > MAX_MOMENT_ERROR:
        return False, (f"the weighted moments miss mu by {ref['moment_error']:.2g} sd "
                       f"(> {MAX_MOMENT_ERROR}): the target lies beyond the draws")
    return True, ""


def maxent_reference(system, n_samples: int = 2_000_000, seed: int = 0, chunk: int = 500_000,
                     keep_samples: bool = False) -> dict[str, float | Tensor]:
    """H* for a system with a bounded box support from ``n_samples`` uniform draws.

    With ``keep_samples`` the result also holds the draws ``z`` (N, D) and their
    max-entropy weights ``weights`` (N,), so any expectation under p* can be estimated as
    ``weights @ f(z)``.
    """
    g = torch.Generator().manual_seed(seed)
    lo, hi = system.lower.double(), system.upper.double()
    Ts, us = [], []
    for start in range(0, n_samples, chunk):
        k = min(chunk, n_samples - start)
        u = lo + (hi - lo) * torch.rand(k, system.D, generator=g, dtype=torch.float64)
        with torch.no_grad():
            Ts.append(system.suff_stats(u).double())
        if keep_samples:
            us.append(u)
    log_volume = float(torch.log(hi - lo).sum())
    T = torch.cat(Ts)
    out = maxent_dual(T, system.mu, log_volume)
    if keep_samples:
        out["z"] = torch.cat(us)
        out["weights"] = torch.softmax((T - system.mu.double()) @ out["eta"], 0)
    return out
