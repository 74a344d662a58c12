"""Comparing representations: RDM correlations (with bootstrap CIs) and linear CKA.

RDM-to-RDM similarity uses only the entries above the diagonal (the RDM is symmetric and
its diagonal is zero for every representation):

* ``pearson``  -- correlation of the dissimilarities (the tutorial's measure);
* ``spearman`` -- Pearson correlation of their ranks (ties get their average rank);
* ``kendall_tau_a`` -- ``tau_a = (n_concordant - n_discordant) / (m (m - 1) / 2)`` over
  all ``m (m-1)/2`` pairs of the ``m`` dissimilarities; tied pairs count as neither, so
  a model that predicts ties is penalised (Nili et al., 2014). Computed in
  ``O(m log m)`` through scipy's tau-b and its tie counts.

Linear CKA of responses ``X (S, p)`` and ``Y (S, q)`` to the same stimuli (Kornblith et
al., 2019), with ``K = Xc Xc^T`` and ``L = Yc Yc^T`` the Gram matrices of the responses
centred over stimuli::

    CKA(X, Y) = <K, L>_F / (||K||_F ||L||_F)

It is invariant to orthogonal transforms and isotropic scaling of either representation;
the Grams are accumulated in unit chunks, so ``p`` may be large.
"""
from __future__ import annotations

import numpy as np
import torch

from rsa.rdm import stimulus_gram, upper_tri

SIMILARITIES = ("pearson", "spearman", "kendall_tau_a")


def _pearson(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pearson r along the last axis (broadcasting)."""
    a = a - a.mean(-1, keepdim=True)
    b = b - b.mean(-1, keepdim=True)
    return (a * b).sum(-1) / torch.sqrt((a * a).sum(-1) * (b * b).sum(-1))


def average_ranks(x: torch.Tensor) -> torch.Tensor:
    """Ranks (1..m) along the last axis, ties receiving their average rank."""
    flat = x.reshape(-1, x.shape[-1])
    out = torch.empty_like(flat, dtype=torch.float64)
    for row in range(flat.shape[0]):  # rows are a few candidate RDMs
        values, inverse, counts = torch.unique(flat[row], return_inverse=True, return_counts=True)
        ends = torch.cumsum(counts, 0).to(torch.float64)
        avg = ends - (counts.to(torch.float64) - 1) / 2
        out[row] = avg[inverse]
    return out.reshape(x.shape)


def kendall_tau_a(a: torch.Tensor, b: torch.Tensor) -> float:
    """Kendall's tau-a of two vectors ``(m,)``."""
    from scipy.stats import kendalltau

    x = a.detach().double().cpu().numpy()
    y = b.detach().double().cpu().numpy()
    m = x.size
    n0 = m * (m - 1) / 2
    if n0 == 0:
        return float("nan")

    def tied(v):
        _, c = np.unique(v, return_counts=True)
        return float((c * (c - 1) / 2).sum())

    denom = np.sqrt((n0 - tied(x)) * (n0 - tied(y)))
    if denom == 0:
        return 0.0
    tau_b = kendalltau(x, y, variant="b").statistic
    return float(tau_b * denom / n0)


def vector_similarity(a: torch.Tensor, b: torch.Tensor, method: str = "pearson") -> torch.Tensor:
    """Similarity of dissimilarity vectors along the last axis: ``a (..., m)``, ``b (..., m)``."""
    if method == "pearson":
        return _pearson(a.double(), b.double())
    if method == "spearman":
        a, b = torch.broadcast_tensors(a, b)
        return _pearson(average_ranks(a), average_ranks(b))
    if method == "kendall_tau_a":
        a, b = torch.broadcast_tensors(a, b)
        fa, fb = a.reshape(-1, a.shape[-1]), b.reshape(-1, b.shape[-1])
        vals = [kendall_tau_a(x, y) for x, y in zip(fa, fb)]
        return torch.tensor(vals, dtype=torch.float64).reshape(a.shape[:-1])
    raise ValueError(f"method must be one of {', '.join(SIMILARITIES)}, got {method!r}")


def rdm_similarity(rdm_a: torch.Tensor, rdm_b: torch.Tensor, method: str = "pearson") -> torch.Tensor:
    """Similarity of RDMs ``(..., S, S)`` on their upper off-diagonal entries (the tutorial's
    ``correlate_rdms`` for ``method='pearson'``)."""
    return vector_similarity(upper_tri(rdm_a), upper_tri(rdm_b), method)


def bootstrap_rdm_similarity(rdm_ref: torch.Tensor, rdms: torch.Tensor, method: str = "pearson", *,
                             n_boot: int = 1000, ci: float = 0.95,
                             generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """Similarity of each of ``rdms (K, S, S)`` to ``rdm_ref (S, S)`` with a bootstrap CI.

    Each bootstrap sample draws ``S`` stimuli with replacement and compares the RDMs
    restricted to them, leaving out the pairs that repeat one stimulus (their
    dissimilarity is a diagonal zero, not data). The CI is the percentile interval.

    Returns:
        ``{"value": (K,), "low": (K,), "high": (K,), "std": (K,), "samples": (n_boot, K)}``.
    """
    S = rdm_ref.shape[-1]
    value = rdm_similarity(rdm_ref[None], rdms, method)
    i, j = torch.triu_indices(S, S, 1)
    samples = torch.empty(n_boot, rdms.shape[0], dtype=torch.float64)
    for b in range(n_boot):
        idx = torch.randint(S, (S,), generator=generator).to(rdm_ref.device)
        keep = idx[i] != idx[j]
        ri, rj = idx[i][keep], idx[j][keep]
        samples[b] = vector_similarity(rdm_ref[ri, rj][None], rdms[:, ri, rj], method).cpu()
    alpha = (1 - ci) / 2
    q = torch.nanquantile(samples, torch.tensor([alpha, 1 - alpha], dtype=torch.float64), dim=0)
    return {"value": value.cpu(), "low": q[0], "high": q[1],
            "std": torch.from_numpy(np.nanstd(samples.numpy(), axis=0)), "samples": samples}


def linear_cka(x, y, *, chunk: int = 8192, device=None) -> float:
    """Linear CKA of responses ``x (S, p)`` and ``y (S, q)`` (rows = the same stimuli)."""
    kx = _centred_gram(x, chunk, device)
    ky = _centred_gram(y, chunk, kx.device)
    return float((kx * ky).sum() / (kx.norm() * ky.norm()))


def _centred_gram(resp, chunk: int, device) -> torch.Tensor:
    """``H (X X^T) H`` with ``H`` the centring matrix: the Gram of stimulus-centred responses."""
    gram, _ = stimulus_gram(resp, centre=False, chunk=chunk, device=device)
    gram = gram.double()
    gram = gram - gram.mean(0, keepdim=True)
    return gram - gram.mean(1, keepdim=True)
