"""Representational dissimilarity matrices (RDMs), computed in chunks of units.

For responses ``R`` of shape ``(S stimuli, N units)`` (row ``r^(s)`` = population
response to stimulus ``s``):

* ``correlation``: ``M = 1 - Z Z^T / N`` with ``z^(s) = (r^(s) - mean_i r_i^(s)) / std_i r_i^(s)``
  (mean and population std over units), i.e. one minus the Pearson correlation of two
  population vectors -- the tutorial's RDM.
* ``euclidean``: ``M_ss' = ||r^(s) - r^(s')||`` (rsatoolbox's 'euclidean' is ``M^2 / N``).
* ``cosine``: ``M_ss' = 1 - <r^(s), r^(s')> / (||r^(s)|| ||r^(s')||)``.

All three are squared Euclidean distances ``D_ss' = ||u^(s) - u^(s')||^2`` of transformed
rows: ``u = r`` (euclidean, ``M = sqrt(D)``), ``u = r / ||r||`` (cosine, ``M = D / 2``) and
``u = z / sqrt(N)`` (correlation, ``M = D / 2``). A distance does not change when the same
vector is subtracted from every row, so each block of units is also centred over stimuli
before its Gram matrix ``U U^T`` is accumulated and ``D = diag + diag^T - 2 U U^T``. This
keeps float32 accurate on data with a large offset (a float32 Gram of raw rows loses the
small differences to rounding: offset 10, sd 0.01 gave 25-50% errors). The per-stimulus
statistics (mean, variance, norm) are computed per block around the block's own mean and
combined across blocks in float64.

A stimulus is *constant* when its responses span (max - min over units) at most
``CONSTANT_RTOL`` times their largest magnitude -- a test relative to the row's own scale
and exact in any dtype, so a row of 0.1 or 1/3 is constant although its mean is not exactly
representable (a variance computed through that mean is tiny but not zero). Constant
stimuli (correlation), all-zero stimuli (cosine) and stimuli with a NaN or infinite
response (every metric) get NaN rows and columns.

The Gram matrix is accumulated over blocks of ``chunk`` units (its upper triangle only,
then mirrored; on the CPU by SciPy's BLAS ``?syrk``, whose threads follow
``OPENBLAS_NUM_THREADS``/``OMP_NUM_THREADS``, elsewhere by blocked torch products): only
one ``(S, chunk)`` block (plus one work buffer of that size) is in memory at a time, so 20,000
neurons x 4,000 stimuli need ~``S^2 + S * chunk`` numbers in memory. ``R`` may be a NumPy
array (e.g. memory-mapped) or a tensor on any device; the work is done on ``device``
(default: ``R``'s own device) in ``R``'s floating dtype (float32 unless float64 is given).
"""
from __future__ import annotations

import warnings
from typing import Callable, NamedTuple

import numpy as np
import torch
from scipy.linalg import blas as scipy_blas

METRICS = ("correlation", "euclidean", "cosine")
#: a stimulus whose responses span at most this fraction of their largest magnitude is constant
CONSTANT_RTOL = 64 * float(np.finfo(np.float64).eps)


class RowStats(NamedTuple):
    """Per-stimulus statistics over units, float64 ``(S,)`` each."""

    mean: torch.Tensor
    var: torch.Tensor       # population variance
    lo: torch.Tensor        # smallest response (-inf where not needed: rows that vary)
    hi: torch.Tensor        # largest response (+inf where not needed)


def _block(resp, start: int, stop: int, device, dtype) -> torch.Tensor:
    """A fresh copy of ``resp[:, start:stop]`` (safe to modify in place)."""
    block = resp[:, start:stop]
    if isinstance(block, np.ndarray):
        np_dtype = np.float64 if dtype == torch.float64 else np.float32
        return torch.from_numpy(np.array(block, dtype=np_dtype, order="C", copy=True)).to(device)
    return block.to(device=device, dtype=dtype, copy=True)


def _source(resp, device, dtype):
    """``resp`` as a tensor that blocks can be viewed from without a copy, or None when each
    block must be converted (other dtype or device)."""
    if isinstance(resp, torch.Tensor):
        return resp if resp.dtype == dtype and resp.device == device else None
    arr = np.asarray(resp)
    if device.type != "cpu" or arr.dtype != (np.float64 if dtype == torch.float64 else np.float32):
        return None
    with warnings.catch_warnings():  # read-only (e.g. memory-mapped) arrays: only read here
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(arr)


def _view(resp, src, start: int, stop: int, device, dtype) -> torch.Tensor:
    """``resp[:, start:stop]`` as a tensor on ``device``; never modify it (it may be a view)."""
    return src[:, start:stop] if src is not None else _block(resp, start, stop, device, dtype)


def _workspace(S: int, width: int, device, dtype) -> Callable[[int], torch.Tensor]:
    """A reusable buffer: ``get(n)`` is a contiguous ``(S, n)`` tensor, ``n <= width``
    (allocating a fresh block per chunk costs more in page faults than the arithmetic)."""
    buf = torch.empty(S * width, device=device, dtype=dtype)
    return lambda n: buf[:S * n].view(S, n)


def _dtype_device(resp, device):
    if isinstance(resp, torch.Tensor):
        dtype = resp.dtype if resp.dtype in (torch.float32, torch.float64) else torch.float32
        return dtype, torch.device(device) if device is not None else resp.device
    dtype = torch.float64 if np.asarray(resp[:1, :1]).dtype == np.float64 else torch.float32
    return dtype, torch.device(device) if device is not None else torch.device("cpu")


def row_stats(resp, *, chunk: int = 8192, device=None) -> RowStats:
    """Mean, population variance, minimum and maximum of each stimulus over units.

    One pass over ``resp``: each block's mean and centred sum of squares (in the responses'
    dtype, centred on the block's own mean, so a large offset costs no precision) are
    combined across blocks in float64 (Chan et al.'s pairwise update). A row holding NaN or
    inf gets non-finite statistics.
    """
    S, N = resp.shape
    dtype, device = _dtype_device(resp, device)
    src = _source(resp, device, dtype)
    f64 = dict(dtype=torch.float64, device=device)
    mean, m2 = torch.zeros(S, **f64), torch.zeros(S, **f64)
    lo, hi = torch.full((S,), float("inf"), **f64), torch.full((S,), -float("inf"), **f64)
    n_a = 0
    work = _workspace(S, min(chunk, N), device, dtype)
    ones = torch.ones(min(chunk, N), device=device, dtype=dtype)
    for start in range(0, N, chunk):
        v = _view(resp, src, start, min(start + chunk, N), device, dtype)
        n_b = v.shape[1]
        mc = torch.mv(v, ones[:n_b]) / n_b
        d = torch.sub(v, mc[:, None], out=work(n_b))
        # the float32 mean of large values is off by a few ulps: its residual, small and
        # summed accurately, corrects it (else every row keeps an offset of ~1e-4 at 1000)
        corr = (torch.mv(d, ones[:n_b]) / n_b).double()
        m2_b = (torch.linalg.vector_norm(d, dim=1).double().square() - n_b * corr * corr).clamp_min(0)
        delta = mc.double() + corr - mean
        n = n_a + n_b
        mean += delta * (n_b / n)
        m2 += m2_b + delta * delta * (n_a * n_b / n)
        n_a = n
    # min and max (for the exact constant-row test) only of the rows that could be constant
    # or are not finite: a variance above 1e-6 of the mean square rules a row out
    suspect = ~(m2 / N > 1e-6 * mean * mean)
    rows = torch.nonzero(suspect).flatten()
    if rows.numel():
        for start in range(0, N, chunk):
            v = _view(resp, src, start, min(start + chunk, N), device, dtype)[rows]
            lo[rows] = torch.minimum(lo[rows], v.amin(1).double())
            hi[rows] = torch.maximum(hi[rows], v.amax(1).double())
    nan = ~(torch.isfinite(lo) & torch.isfinite(hi)) & suspect  # amin/amax propagate NaN
    mean[nan] = float("nan")
    return RowStats(mean, (m2 / N).clamp_min(0), lo, hi)


def constant_rows(stats: RowStats) -> torch.Tensor:
    """Finite rows whose responses span at most ``CONSTANT_RTOL`` times their largest
    magnitude (relative to the row's own scale; an all-zero row is constant): ``(S,)`` bool."""
    scale = torch.maximum(stats.lo.abs(), stats.hi.abs())
    return torch.isfinite(scale) & (stats.hi - stats.lo <= CONSTANT_RTOL * scale)


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
    mean = row_stats(resp, chunk=chunk, device=device).mean.to(dtype) if centre else \
        torch.zeros(S, device=device, dtype=dtype)
    gram = torch.zeros(S, S, device=device, dtype=dtype)
    for start in range(0, N, chunk):
        x = _block(resp, start, min(start + chunk, N), device, dtype)
        if centre:
            x -= mean[:, None]
        _add_upper_gram(gram, x)
    return _mirror_upper_(gram), mean


def centred_unit_gram(resp, *, shift: torch.Tensor | None = None, scale: torch.Tensor | None = None,
                      valid: torch.Tensor | None = None, chunk: int = 8192, device=None) -> torch.Tensor:
    """Gram ``U U^T`` of ``u = (r - shift) * scale`` (per stimulus), centred over stimuli.

    Each block of units is centred over the ``valid`` stimuli (default: all) in the compute
    dtype; rows not ``valid`` are set to zero, so a NaN stimulus cannot spread into the
    others. Centring over stimuli is exact for anything invariant to a common shift of all
    rows (distances, and CKA, which centres the Gram again). Returns ``(S, S)`` in the
    compute dtype (see the module docstring).
    """
    S, N = resp.shape
    dtype, device = _dtype_device(resp, device)
    src = _source(resp, device, dtype)
    if scale is not None:
        # (v - shift) first: subtracting a nearby shift is exact, so a large offset costs no
        # precision (v * scale - shift * scale cancels two large rounded products)
        neg_shift = (-shift.to(device=device, dtype=dtype)[:, None] if shift is not None
                     else torch.zeros(S, 1, device=device, dtype=dtype))
        scale = scale.to(device=device, dtype=torch.float64).to(dtype)[:, None]
    elif shift is not None:
        neg_shift, scale = -shift.to(device=device, dtype=dtype)[:, None], torch.ones(S, 1, device=device, dtype=dtype)
    invalid = None
    if valid is not None and not bool(valid.all()):
        invalid = ~valid.to(device)[:, None]
    n_valid = S if valid is None else int(valid.sum())
    gram = torch.zeros(S, S, device=device, dtype=dtype)
    if n_valid == 0:
        return gram
    work = _workspace(S, min(chunk, N), device, dtype)
    for start in range(0, N, chunk):
        v = _view(resp, src, start, min(start + chunk, N), device, dtype)
        x = work(v.shape[1])
        if scale is not None:
            torch.add(v, neg_shift, out=x).mul_(scale)         # (v - shift) * scale
        elif invalid is None:
            torch.sub(v, torch.ones(1, S, device=device, dtype=dtype) @ v / S, out=x)
        else:
            x.copy_(v)
        if invalid is not None:
            x.masked_fill_(invalid, 0.0)
        if scale is not None or invalid is not None:
            x -= (torch.ones(1, S, device=device, dtype=dtype) @ x) / n_valid
        if invalid is not None:
            x.masked_fill_(invalid, 0.0)
        _add_upper_gram(gram, x)
    return _mirror_upper_(gram)


def _syrk(dtype):
    """SciPy's BLAS symmetric rank-k update for ``dtype`` (None for other dtypes)."""
    return {torch.float32: scipy_blas.ssyrk, torch.float64: scipy_blas.dsyrk}.get(dtype)


def _add_upper_gram(gram: torch.Tensor, x: torch.Tensor, rows: int = 512) -> None:
    """``gram += x x^T`` on and above the diagonal only.

    On the CPU: one BLAS symmetric rank-k update (``?syrk``, half the multiply-adds of a
    full product) written in place into ``gram``. Elsewhere (torch does not expose syrk):
    block row ``i`` of ``rows`` stimuli gets ``x_i x_{i:}^T``, about half the work too.
    """
    syrk = _syrk(gram.dtype) if gram.device.type == "cpu" and x.dtype == gram.dtype else None
    if syrk is not None and x.is_contiguous() and gram.is_contiguous():
        g = gram.numpy()
        # x is C-ordered (S, k): its transpose is a Fortran-ordered (k, S) matrix a, and
        # trans=1 gives a^T a = x x^T; the Fortran view of the C-ordered gram is its
        # transpose, so lower=1 there is the upper triangle here
        out = syrk(1.0, x.numpy().T, beta=1.0, c=g.T, trans=1, lower=1, overwrite_c=1)
        if not np.shares_memory(out, g):  # pragma: no cover - f2py copied after all
            g[...] = out.T
        return
    S = x.shape[0]
    for i in range(0, S, rows):
        gram[i:i + rows, i:].addmm_(x[i:i + rows], x[i:].T)


def _mirror_upper_(gram: torch.Tensor) -> torch.Tensor:
    """Copy the upper triangle of ``gram`` onto its lower triangle, in place."""
    S = gram.shape[0]
    lower = torch.ones(S, S, dtype=torch.bool, device=gram.device).tril_(-1)
    return torch.where(lower, gram.T.contiguous(), gram, out=gram)


def rdm(resp, metric: str = "correlation", *, chunk: int = 8192, device=None) -> torch.Tensor:
    """The ``(S, S)`` RDM of responses ``(S, N)`` (see the module docstring for the metrics).

    Stimuli whose response is constant (correlation; relative to the row's scale), zero
    (cosine) or not finite (any metric) get NaN dissimilarities: Pearson correlation and the
    cosine are undefined for them, and a NaN response is no data.
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {', '.join(METRICS)}, got {metric!r}")
    if resp.ndim != 2:
        raise ValueError(f"responses must be (stimuli, units), got shape {tuple(resp.shape)}")
    S, N = resp.shape
    if N == 0:
        raise ValueError("responses have no units")
    dtype, device = _dtype_device(resp, device)
    if metric == "euclidean":
        return euclidean_rdm(resp, chunk=chunk, device=device)
    stats = row_stats(resp, chunk=chunk, device=device)
    mean, var = stats.mean, stats.var
    valid = torch.isfinite(mean) & torch.isfinite(var)
    shift = scale = None
    if metric == "correlation":
        valid &= ~constant_rows(stats)
        shift = mean
        scale = 1.0 / torch.sqrt(torch.where(valid, var * N, torch.ones_like(var)))
    elif metric == "cosine":
        norm2 = (mean * mean + var) * N
        valid &= norm2 > 0
        scale = 1.0 / torch.sqrt(torch.where(valid, norm2, torch.ones_like(norm2)))
    gram = centred_unit_gram(resp, shift=shift, scale=scale, valid=valid, chunk=chunk, device=device)
    diag = gram.diagonal().clone()
    m = gram.mul_(-2).add_(diag[:, None]).add_(diag[None, :]).clamp_min_(0)
    m.fill_diagonal_(0)
    m.mul_(0.5)
    bad = ~valid.to(m.device)
    if bad.any():
        m[bad] = float("nan")
        m[:, bad] = float("nan")
    return m


class ResponsesTooLarge(ValueError):
    """Finite responses whose squares overflow the working precision."""


#: a pair whose squared distance is below 1/RECHECK_RATIO of its rows' squared norms (after
#: centring) has lost digits to the Gram formula's cancellation and is recomputed directly
RECHECK_RATIO = 16.0
#: rows whose per-unit median centres the euclidean RDM's blocks
MEDIAN_ROWS = 65


def euclidean_rdm(resp, *, chunk: int = 8192, device=None) -> torch.Tensor:
    """Euclidean RDM whose entries keep their precision whatever the scale of other rows.

    ``D = |c_i|^2 + |c_j|^2 - 2 c_i.c_j`` on rows centred per unit by the **median** over
    stimuli (of up to ``MEDIAN_ROWS`` evenly spaced ones; a distance does not change under a
    common shift, and unlike the mean the median does not move with one outlying stimulus,
    so a row 1e5 times larger leaves the others centred and accurate). Pairs where the formula still cancels (``D`` below
    ``1/RECHECK_RATIO`` of ``|c_i|^2 + |c_j|^2``: near-duplicate stimuli) are recomputed as
    sums of squared differences, accumulated in float64. Rows with NaN or inf get NaN.

    Raises:
        ResponsesTooLarge: (a ValueError) finite responses too large for their squares to be summed in the
            working precision (e.g. |r| above ~6e16 over 20,000 units in float32).
    """
    S, N = resp.shape
    dtype, device = _dtype_device(resp, device)
    src = _source(resp, device, dtype)
    amax = torch.zeros(S, dtype=torch.float64, device=device)
    for start in range(0, N, chunk):
        v = _view(resp, src, start, min(start + chunk, N), device, dtype)
        amax = torch.maximum(amax, v.abs().amax(1).double())  # NaN propagates
    valid = torch.isfinite(amax)
    limit = float(torch.finfo(dtype).max) / (4.0 * N)
    big = float(amax[valid].max()) if bool(valid.any()) else 0.0
    if big * big > limit:
        raise ResponsesTooLarge(f"responses up to {big:.3g} cannot be squared and summed over {N} units in "
                         f"{str(dtype).removeprefix('torch.')} (at most {limit ** 0.5:.3g}); rescale them "
                         "or give float64 responses")
    m = torch.full((S, S), float("nan"), dtype=dtype, device=device)
    idx = torch.nonzero(valid).flatten()
    n = idx.numel()
    if n == 0:
        return m
    gram = torch.zeros(n, n, device=device, dtype=dtype)
    blocks = []
    # the centre only has to lie within the bulk of the rows: the median of up to 65 of them
    # (evenly spaced) is as robust to a few outliers as the full median, at a fraction of its cost
    probe = torch.linspace(0, n - 1, min(n, MEDIAN_ROWS), device=device).round().long()
    for start in range(0, N, chunk):
        x = _view(resp, src, start, min(start + chunk, N), device, dtype)[idx]
        x = x - x[probe].median(dim=0).values
        _add_upper_gram(gram, x.contiguous())
        blocks.append((start, min(start + chunk, N)))
    gram = _mirror_upper_(gram)
    diag = gram.diagonal().clone()
    norms = diag[:, None] + diag[None, :]
    d = gram.mul_(-2).add_(norms).clamp_min_(0)
    d.fill_diagonal_(0)
    iu, ju = torch.triu_indices(n, n, offset=1, device=device)
    shaky = d[iu, ju] * RECHECK_RATIO < norms[iu, ju]
    if bool(shaky.any()):
        pi, pj = iu[shaky], ju[shaky]
        acc = torch.zeros(pi.numel(), dtype=torch.float64, device=device)
        per = max(1, (1 << 22) // max(1, min(chunk, N)))
        for start, stop in blocks:
            x = _view(resp, src, start, stop, device, dtype)[idx]
            for b in range(0, pi.numel(), per):
                diff = (x[pi[b:b + per]] - x[pj[b:b + per]]).double()
                acc[b:b + per] += diff.square().sum(1)
        d[pi, pj] = acc.to(dtype)
        d[pj, pi] = acc.to(dtype)
    m[idx[:, None], idx[None, :]] = d.sqrt_()
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
