"""Cross-validated ridge-regression predictivity of neurons from model units.

For model responses ``X (S, p)`` and neural responses ``Y (S, n)`` to the same stimuli,
each neuron ``y`` is predicted as ``y_hat = (x - mean_x) w + mean_y`` with

    w(alpha) = argmin ||Yc - Xc w||^2 + alpha ||w||^2 = V diag(s / (s^2 + alpha)) U^T Yc

(``Xc = U diag(s) V^T`` the thin SVD of the centred training responses). The stimuli are
split into ``folds``; on each training split the penalty is chosen per neuron from
``alphas`` by exact leave-one-out error on that split (the closed form
``e_i = (y_i - y_hat_i) / (1 - h_ii)`` of the hat matrix ``H = U diag(s^2/(s^2+alpha)) U^T
+ 11^T/m``), then the held-out split is predicted. Scores per neuron, pooled over all
held-out predictions:

* ``r2``: ``1 - sum (y - y_hat)^2 / sum (y - mean y)^2``;
* ``r``: Pearson correlation of ``y`` and ``y_hat``.
"""
from __future__ import annotations

import torch


def ridge_fit(x: torch.Tensor, y: torch.Tensor, alpha: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Ridge weights ``(p, n)`` and intercepts ``(n,)`` of ``y (S, n)`` on ``x (S, p)``."""
    xm, ym = x.mean(0), y.mean(0)
    u, s, vh = torch.linalg.svd(x - xm, full_matrices=False)
    w = vh.T @ ((s / (s ** 2 + alpha))[:, None] * (u.T @ (y - ym)))
    return w, ym - xm @ w


def _loo_alpha(u: torch.Tensor, s: torch.Tensor, yc: torch.Tensor, alphas: torch.Tensor) -> torch.Tensor:
    """Index of the alpha with the least leave-one-out error, per neuron: ``(n,)``."""
    m = u.shape[0]
    shrink = s[None, :] ** 2 / (s[None, :] ** 2 + alphas[:, None])           # (A, k)
    uy = u.T @ yc                                                             # (k, n)
    fitted = torch.einsum("ik,ak,kn->ain", u, shrink, uy)                     # (A, m, n)
    lev = (u[None] ** 2 * shrink[:, None, :]).sum(-1) + 1.0 / m               # (A, m)
    resid = (yc[None] - fitted) / (1 - lev).clamp_min(1e-12)[..., None]
    return (resid ** 2).sum(1).argmin(0)


def ridge_predictivity(x: torch.Tensor, y: torch.Tensor, *, alphas=(1e-3, 1e-2, 1e-1, 1, 10, 100, 1e3, 1e4),
                       folds: int = 5, generator: torch.Generator | None = None,
                       neuron_chunk: int = 2048) -> dict[str, torch.Tensor]:
    """Out-of-fold predictions of ``y (S, n)`` from ``x (S, p)`` and per-neuron scores.

    Alphas are relative to the mean squared singular value of the training responses, so
    the same grid suits representations of any scale.

    Returns:
        ``{"r2": (n,), "r": (n,), "alpha": (folds, n) chosen alphas, "prediction": (S, n)}``.
    """
    x = torch.as_tensor(x).double()
    y = torch.as_tensor(y).double().to(x.device)
    S = x.shape[0]
    if y.shape[0] != S:
        raise ValueError(f"x has {S} stimuli but y has {y.shape[0]}")
    if folds < 2 or folds > S:
        raise ValueError(f"folds must be in [2, {S}], got {folds}")
    perm = torch.randperm(S, generator=generator).to(x.device)
    fold_of = torch.empty(S, dtype=torch.long, device=x.device)
    fold_of[perm] = torch.arange(S, device=x.device) % folds
    rel = torch.as_tensor(alphas, dtype=torch.float64, device=x.device)
    pred = torch.empty_like(y)
    chosen = torch.empty(folds, y.shape[1], dtype=torch.float64)
    for f in range(folds):
        train, test = fold_of != f, fold_of == f
        xtr, ytr = x[train], y[train]
        xm, ym = xtr.mean(0), ytr.mean(0)
        u, s, vh = torch.linalg.svd(xtr - xm, full_matrices=False)
        keep = s > s.max() * 1e-10
        u, s, vh = u[:, keep], s[keep], vh[keep]
        scale = (s ** 2).mean()
        a = rel * scale
        xte = (x[test] - xm) @ vh.T                                           # (t, k)
        for start in range(0, y.shape[1], neuron_chunk):
            sl = slice(start, start + neuron_chunk)
            yc = ytr[:, sl] - ym[sl]
            best = a[_loo_alpha(u, s, yc, a)]                                 # (n,)
            coef = (s[:, None] / (s[:, None] ** 2 + best[None, :])) * (u.T @ yc)  # (k, n)
            pred[test, sl] = xte @ coef + ym[sl]
            chosen[f, sl] = best.cpu()
    resid = ((y - pred) ** 2).sum(0)
    total = ((y - y.mean(0)) ** 2).sum(0)
    yc, pc = y - y.mean(0), pred - pred.mean(0)
    r = (yc * pc).sum(0) / torch.sqrt((yc ** 2).sum(0) * (pc ** 2).sum(0))
    return {"r2": (1 - resid / total).cpu(), "r": r.cpu(), "alpha": chosen, "prediction": pred.cpu()}
