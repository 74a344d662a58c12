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

import itertools
import math

import torch
from torch import Tensor


def maxent_dual(T: Tensor, mu: Tensor, log_volume: float, iters: int = 100, tol: float = 1e-10,
                max_kl: float = math.inf, ridge: float = 0.0, log_inv_density: Tensor | None = None
                ) -> dict[str, float | Tensor]:
    """Solve the dual on samples T (N, m) of T(u), u uniform on the box (float64 inside).

    With ``log_inv_density`` (N,) = -log r(u_i) the draws come from a proposal r on the box
    instead (importance sampling): E_U[f] = E_r[f / (V r)], so the dual becomes
    log (1/N) sum_i exp(eta^T (T_i - mu) - log r(u_i)), and ``log_volume`` should then be 0.

    ``max_kl`` caps how far the weights may move from uniform, KL(w || 1/N) = sum w log(N w)
    nats: the Newton path is followed until that KL would be exceeded, then cut (bisection)
    where it equals ``max_kl``. Unlike a quadratic estimate from the covariance, this KL is
    the samples' own, so it also holds where the exponential family is far from Gaussian.

    ``ridge`` adds (ridge / 2) ||eta||^2 in standardised units (eta times T's sd) to the dual:
    where the draws leave a direction undetermined (two statistics that are functions of each
    other on every draw, as an accuracy of exactly 0 or 1 and its squared deviation are), the
    plain dual is flat or unbounded along it and Newton runs off; the ridge picks the smallest
    eta instead. The reference itself uses ridge 0 (its entropy is then the dual's own).

    Returns eta (m,), entropy H*, the moments reached under the weights, the ESS and the
    weights' KL from uniform.
    """
    T = T.double()
    dev = T - mu.double()
    scale = dev.std(0).clamp(min=1e-12)  # work in standardised units for conditioning
    X = dev / scale
    eta = torch.zeros(X.shape[1], dtype=torch.float64)
    N = X.shape[0]

    base = torch.zeros(N, dtype=torch.float64) if log_inv_density is None else log_inv_density.double().cpu()

    def g(e: Tensor) -> Tensor:
        return torch.logsumexp(X @ e + base, 0) - math.log(N) + 0.5 * ridge * (e @ e)

    def kl(e: Tensor) -> float:
        logw = torch.log_softmax(X @ e + base, 0)
        return float((logw.exp() * (logw + math.log(N))).sum())

    val = g(eta)
    for _ in range(iters):
        w = torch.softmax(X @ eta + base, 0)
        Xbar = w @ X
        grad = Xbar + ridge * eta
        Xc = X - Xbar
        hess = (Xc * w[:, None]).T @ Xc + (ridge + 1e-10) * torch.eye(X.shape[1], dtype=torch.float64)
        step = torch.linalg.solve(hess, grad)
        t = 1.0
        while t > 1e-8:
            new = g(eta - t * step)
            if new <= val - 1e-4 * t * (grad @ step):
                break
            t *= 0.5
        if max_kl < math.inf and kl(eta - t * step) > max_kl:  # cut the step at the trust region's edge
            lo, hi = 0.0, t
            for _ in range(50):
                mid = 0.5 * (lo + hi)
                lo, hi = (mid, hi) if kl(eta - mid * step) <= max_kl else (lo, mid)
            eta = eta - lo * step
            val = g(eta)
            break
        eta, old = eta - t * step, val
        val = g(eta)
        if abs(old - val) < tol:
            break
    w = torch.softmax(X @ eta + base, 0)
    return {"eta": eta / scale, "entropy": float(val) + log_volume,
            "moments": (w @ T).float(), "ess": float(1.0 / (w ** 2).sum()),
            "moment_error": float((w @ X).abs().max()), "kl": kl(eta)}


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
                     keep_samples: bool = False, proposal=None, proposal_fraction: float = 0.5
                     ) -> dict[str, float | Tensor]:
    """H* for a system with a bounded box support from ``n_samples`` draws.

    The draws are uniform on the box, or with ``proposal`` (a flow with ``rsample_and_log_prob``
    and ``log_prob`` on the same box) a defensive mixture: ``proposal_fraction`` of them from
    the proposal and the rest uniform, each weighted by 1 / r(z) with
    r = (1 - f) / V + f q(z) (a deterministic-mixture importance sampler; r >= (1 - f) / V
    everywhere, so no part of the box is left out and the weights stay bounded). A proposal
    that covers the max-entropy solution, e.g. a trained flow, raises the effective sample
    size by orders of magnitude where the solution occupies a small part of the box.

    With ``keep_samples`` the result also holds the draws ``z`` (N, D) and their
    max-entropy weights ``weights`` (N,), so any expectation under p* can be estimated as
    ``weights @ f(z)``.
    """
    g = torch.Generator().manual_seed(seed)
    lo, hi = system.lower.double(), system.upper.double()
    log_volume = float(torch.log(hi - lo).sum())
    n_prop = 0 if proposal is None else int(round(proposal_fraction * n_samples))
    if proposal is not None:
        if not 0.0 < proposal_fraction < 1.0:
            raise ValueError(f"proposal_fraction must lie in (0, 1), got {proposal_fraction}")
        ref = next(itertools.chain(proposal.parameters(), proposal.buffers()))  # its device and dtype
        gq = torch.Generator(device=ref.device).manual_seed(seed + 1)
    Ts, us, log_r = [], [], []
    for start in range(0, n_samples, chunk):
        k = min(chunk, n_samples - start)
        k_prop = max(0, min(k, n_prop - start))  # the first n_prop draws come from the proposal
        u = lo + (hi - lo) * torch.rand(k - k_prop, system.D, generator=g, dtype=torch.float64)
        with torch.no_grad():
            if proposal is not None:
                lq = proposal.log_prob(u.to(ref)).double().cpu() if len(u) else torch.zeros(0, dtype=torch.float64)
                lq = torch.where(torch.isfinite(lq), lq, -math.inf)  # the inverse fails only deep in q's tails
            if k_prop:
                zq, lq_prop = proposal.rsample_and_log_prob(k_prop, gq)  # exact log q of its own draws
                u = torch.cat([zq.double().cpu().clamp(lo, hi), u])
                lq = torch.cat([lq_prop.double().cpu(), lq])
            Ts.append(system.suff_stats(u).double())
            if proposal is not None:
                log_r.append(torch.logaddexp(torch.full_like(lq, math.log(1 - proposal_fraction) - log_volume),
                                             math.log(proposal_fraction) + lq))
        if keep_samples:
            us.append(u)
    T = torch.cat(Ts)
    if proposal is None:
        out = maxent_dual(T, system.mu, log_volume)
        base = torch.zeros(len(T), dtype=torch.float64)
    else:
        base = -torch.cat(log_r)
        out = maxent_dual(T, system.mu, 0.0, log_inv_density=base)
    if keep_samples:
        out["z"] = torch.cat(us)
        out["weights"] = torch.softmax((T - system.mu.double()) @ out["eta"] + base, 0)
    return out
