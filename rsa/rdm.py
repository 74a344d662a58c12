"""Representational dissimilarity matrices (RDMs), computed in chunks of units.

For responses ``R`` of shape ``(S stimuli, N units)`` (row ``r^(s)`` = population
response to stimulus ``s``):

* ``correlation``: ``M = 1 - Z Z^T / N`` with ``z^(s) = (r^(s) - mean_i r_i^(s)) / std_i r_i^(s)``
  (mean and population std over units), i.e. one minus the Pearson correlation of two
  population vectors -- the tutorial's RDM.
* ``euclidean``: ``M_ss' = ||r^(s) - r^(s')||`` (rsatoolbox's 'euclidean' is ``M^2 / N``).
* ``cosine``: ``M_ss' = 1 - <r^(s), r^(s')> / (||r^(s)|| ||r^(s')||)``.

Everything reduces to an ``S x S`` Gram matrix of per-stimulus-centred (or raw) responses,
accumulated over blocks of ``chunk`` units (its upper triangle only, then mirrored): only one ``(S, chunk)`` block is on the device
at a time, so 20,000 neurons x 4,000 stimuli need ~``S^2 + S * chunk`` numbers in memory.
``R`` may be a NumPy array (e.g. memory-mapped) or a tensor on any device; the work is done
on ``device`` (default: ``R``'s own device) in ``R``'s floating dtype (float32 unless
float64 is given).
"""
from __future__ import annotations

import numpy as np
import torch

METRICS = ("correlation", "euclidean", "cosine")


def _block(resp, start: int, stop: int, device, dtype) -> torch.Tensor:
    block = resp[:, start:stop]
    if isinstance(block, np.ndarray):
        block = torch.from_numpy(np.ascontiguousarray(block))
    return block.to(device=device, dtype=dtype, non_blocking=True)


def _dtype_device(resp, device):
    if isinstance(resp, torch.Tensor):
        dtype = resp.dtype if resp.dtype in (torch.float32, torch.float64) else torch.float32
        return dtype, torch.device(device) if device is not None else resp.device
    dtype = torch.float64 if np.asarray(resp[:1, :1]).dtype == np.float64 else torch.float32
    return dtype, torch.device(device) if device is not None else torch.device("cpu")


def stimulus_gram(resp, *, centre: bool, chunk: int = 8192, device=None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Gram matrix of population vectors, accumulated over unit blocks.

    Args:
        resp: ``(S, N)`` responses (tensor or NumPy array).
        centre: subtract each stimulus's mean over units first (two passes over ``resp``).
        chunk: units per block.
        device: where to compute (default: ``resp``'s device).
    Returns:
        ``(G (S, S), mean (S,))`` with ``G = X X^T`` for ``X`` the (centred) responses and
        ``mean`` the per-stimulus mean over units (zeros when ``centre`` is False).
    """
    S, N = resp.shape
    dtype, device = _dtype_device(resp, device)
    mean = torch.zeros(S, device=device, dtype=dtype)
    if centre:
        for start in range(0, N, chunk):
            mean += _block(resp, start, min(start + chunk, N), device, dtype).sum(1)
        mean /= N
    gram = torch.zeros(S, S, device=device, dtype=dtype)
    for start in range(0, N, chunk):
        x = _block(resp, start, min(start + chunk, N), device, dtype)
        if centre:
            x = x - mean[:, None]
        _add_upper_gram(gram, x)
    upper = torch.triu(gram)
    return upper + torch.triu(upper, 1).T, mean


def _add_upper_gram(gram: torch.Tensor, x: torch.Tensor, rows: int = 512) -> None:
    """``gram += x x^T`` on and above the diagonal only, in blocks of ``rows`` stimuli.

    Block row ``i`` gets ``x_i x_{i:}^T``: about half the multiply-adds of a full product
    (BLAS's symmetric rank-k update does the same, but torch does not expose it).
    """
    S = x.shape[0]
    for i in range(0, S, rows):
        gram[i:i + rows, i:].addmm_(x[i:i + rows], x[i:].T)


def rdm(resp, metric: str = "correlation", *, chunk: int = 8192, device=None) -> torch.Tensor:
    """The ``(S, S)`` RDM of responses ``(S, N)`` (see the module docstring for the metrics).

    Stimuli whose response has zero variance (correlation) or zero norm (cosine) get NaN
    dissimilarities, as Pearson correlation is undefined for them.
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {', '.join(METRICS)}, got {metric!r}")
    if resp.ndim != 2:
        raise ValueError(f"responses must be (stimuli, units), got shape {tuple(resp.shape)}")
    gram, _ = stimulus_gram(resp, centre=(metric == "correlation"), chunk=chunk, device=device)
    diag = gram.diagonal().clone()
    if metric == "euclidean":
        sq = (diag[:, None] + diag[None, :] - 2 * gram).clamp_min_(0)
        sq.fill_diagonal_(0)
        return sq.sqrt_()
    norm = diag.sqrt()
    norm = torch.where(norm > 0, norm, torch.full_like(norm, float("nan")))
    m = 1 - gram / (norm[:, None] * norm[None, :])
    m = 0.5 * (m + m.T)
    finite = torch.isfinite(norm)
    m.diagonal().copy_(torch.where(finite, torch.zeros_like(norm), norm))
    return m


def zscore_rows(resp: torch.Tensor) -> torch.Tensor:
    """z-score each row over its columns (population std, ``ddof=0``): ``(S, N)``."""
    mu = resp.mean(1, keepdim=True)
    sd = resp.std(1, unbiased=False, keepdim=True)
    return (resp - mu) / sd


def upper_tri(m: torch.Tensor, offset: int = 1) -> torch.Tensor:
    """Entries above the diagonal of ``(..., S, S)`` matrices, row by row: ``(..., S(S-1)/2)``."""
    S = m.shape[-1]
    i, j = torch.triu_indices(S, S, offset=offset, device=m.device)
    return m[..., i, j]
