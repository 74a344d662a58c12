"""Exact Hessian of log q(z) with respect to z, and its eigen-directions.

log q(z) = log N(f^{-1}(z); 0, I) + log|det d f^{-1}/dz| is evaluated through the inverse
flow and differentiated twice by autograd (no Gauss-Newton approximation). Batch-norm
layers must be in eval mode so the map is fixed.
"""
from __future__ import annotations

import torch
from torch import Tensor


def log_density_hessian(log_prob, z: Tensor) -> Tensor:
    """Hessians of ``log_prob`` (a map (k, D) -> (k,)) at the points z (k, D) -> (k, D, D)."""
    out = []
    for point in z:
        H = torch.autograd.functional.hessian(lambda x: log_prob(x[None])[0], point.detach())
        out.append(0.5 * (H + H.T))
    return torch.stack(out)


def hessian_directions(H: Tensor) -> dict[str, Tensor]:
    """Eigen-decomposition of Hessians (k, D, D).

    Returns eigenvalues (k, D) sorted by |value| ascending, eigenvectors (k, D, D) as
    columns in the same order, and the most degenerate (flattest, smallest |eigenvalue|)
    and least degenerate (steepest) directions (k, D), signs fixed so the largest
    component is positive.
    """
    vals, vecs = torch.linalg.eigh(H)
    order = vals.abs().argsort(-1)
    vals = vals.gather(-1, order)
    vecs = vecs.gather(-1, order[:, None, :].expand_as(vecs))
    sign = torch.sign(vecs.gather(-2, vecs.abs().argmax(-2, keepdim=True)))
    vecs = vecs * sign
    return {"eigenvalues": vals, "eigenvectors": vecs,
            "most_degenerate": vecs[..., 0], "least_degenerate": vecs[..., -1]}
