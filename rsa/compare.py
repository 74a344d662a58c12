"""Comparing representations: RDM correlations (with bootstrap CIs) and linear CKA.

RDM-to-RDM similarity uses only the entries above the diagonal (the RDM is symmetric and
its diagonal is zero for every representation), and of those only the ones finite in both
RDMs (a constant stimulus has NaN correlation distances): how many pairs were dropped is
reported, and fewer than 3 pairs give NaN -- never a number computed from NaNs:

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
the Grams are accumulated in unit chunks, so ``p`` may be large. Its value depends on the
number of stimuli and dimensions (independent high-dimensional data give a CKA far above
0, more so with few stimuli), so it is reported with two references: its *chance level*,
the mean CKA after shuffling the stimuli of one representation (seeded permutations), and
the *debiased* CKA, built from the unbiased HSIC estimator of Song et al. (2012), which is
about 0 for independent representations.
"""
from __future__ import annotations

import numpy as np
import torch

from rsa.rdm import centred_unit_gram, upper_tri

SIMILARITIES = ("pearson", "spearman", "kendall_tau_a")
#: dissimilarities (finite pairs of stimuli) a similarity needs; fewer give NaN
MIN_PAIRS = 3
#: stimuli a bootstrap over stimuli needs for a confidence interval; fewer give NaN
MIN_BOOTSTRAP_STIMULI = 5


def _pearson(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pearson r along the last axis (broadcasting); NaN for a constant vector."""
    a = a - a.mean(-1, keepdim=True)
    b = b - b.mean(-1, keepdim=True)
    return (a * b).sum(-1) / torch.sqrt((a * a).sum(-1) * (b * b).sum(-1))


def average_ranks(x: torch.Tensor) -> torch.Tensor:
    """Ranks (1..m) along the last axis, ties receiving their average rank (float64).

    NaN entries get a NaN rank and are not counted in the ranks of the others.
    """
    from scipy.stats import rankdata

    arr = x.detach().double().cpu().numpy()
    if arr.shape[-1] == 0:
        return torch.from_numpy(arr.copy()).to(x.device)
    nan = bool(np.isnan(arr).any())
    ranks = rankdata(arr, axis=-1, nan_policy="omit") if nan else rankdata(arr, axis=-1)
    return torch.from_numpy(np.asarray(ranks, dtype=np.float64)).to(x.device)


def kendall_tau_a(a: torch.Tensor, b: torch.Tensor) -> float:
    """Kendall's tau-a of two vectors ``(m,)`` over their pairs where both are finite
    (NaN with fewer than ``MIN_PAIRS`` such pairs)."""
    from scipy.stats import kendalltau

    x = a.detach().double().cpu().numpy()
    y = b.detach().double().cpu().numpy()
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    m = x.size
    if m < MIN_PAIRS:
        return float("nan")
    n0 = m * (m - 1) / 2

    def tied(v):
        _, c = np.unique(v, return_counts=True)
        return float((c * (c - 1) / 2).sum())

    denom = np.sqrt((n0 - tied(x)) * (n0 - tied(y)))
    if denom == 0:
        return 0.0  # every pair tied in one vector: neither concordant nor discordant
    tau_b = kendalltau(x, y, variant="b").statistic
    return float(tau_b * denom / n0)


def finite_pairs(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Number of entries along the last axis where both ``a`` and ``b`` are finite: ``(...)``."""
    a, b = torch.broadcast_tensors(a, b)
    return (torch.isfinite(a) & torch.isfinite(b)).sum(-1)


def _similarity_finite(a: torch.Tensor, b: torch.Tensor, method: str) -> torch.Tensor:
    """``vector_similarity`` of finite, broadcast ``(K, m)`` vectors."""
    if a.shape[-1] < MIN_PAIRS:
        return torch.full(a.shape[:-1], float("nan"), dtype=torch.float64)
    if method == "pearson":
        return _pearson(a.double(), b.double())
    if method == "spearman":
        return _pearson(average_ranks(a), average_ranks(b))
    return torch.tensor([kendall_tau_a(x, y) for x, y in zip(a, b)], dtype=torch.float64)


def vector_similarity(a: torch.Tensor, b: torch.Tensor, method: str = "pearson") -> torch.Tensor:
    """Similarity of dissimilarity vectors along the last axis: ``a (..., m)``, ``b (..., m)``.

    NaN-aware: only the entries where both vectors are finite are compared (see
    :func:`finite_pairs` for how many); with fewer than ``MIN_PAIRS`` of them, or a constant
    vector (Pearson, Spearman), the similarity is NaN.
    """
    if method not in SIMILARITIES:
        raise ValueError(f"method must be one of {', '.join(SIMILARITIES)}, got {method!r}")
    a, b = torch.broadcast_tensors(a, b)
    shape = a.shape[:-1]
    fa, fb = a.reshape(-1, a.shape[-1]), b.reshape(-1, b.shape[-1])
    ok = torch.isfinite(fa) & torch.isfinite(fb)
    if bool(ok.all()):
        out = _similarity_finite(fa, fb, method)
    else:
        out = torch.stack([_similarity_finite(x[k][None], y[k][None], method)[0]
                           for x, y, k in zip(fa, fb, ok)]) if fa.shape[0] else torch.empty(0)
    return out.to(torch.float64).cpu().reshape(shape)


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
    dissimilarity is a diagonal zero, not data). A sample with fewer than 3 distinct
    stimuli, or whose similarity is NaN, is not valid; the CI is the percentile interval of
    the valid samples. It is NaN when the value is NaN, when fewer than 2 samples are valid,
    or with fewer than ``MIN_BOOTSTRAP_STIMULI`` stimuli (too few to resample). NaN
    dissimilarities (e.g. a constant stimulus under the correlation metric) are dropped
    pairwise and counted.

    Returns:
        ``{"value", "low", "high", "std": (K,), "samples": (n_boot, K), "n_boot_valid": (K,),
        "n_pairs": (K,) finite pairs compared, "n_pairs_dropped": (K,)}``.
    """
    S = rdm_ref.shape[-1]
    va, vb = upper_tri(rdm_ref)[None], upper_tri(rdms)
    value = vector_similarity(va, vb, method)
    n_pairs = finite_pairs(va, vb).cpu()
    i, j = torch.triu_indices(S, S, 1)
    K = rdms.shape[0]
    all_finite = bool((n_pairs == va.shape[-1]).all())
    samples = torch.full((n_boot, K), float("nan"), dtype=torch.float64)
    for b in range(n_boot):
        idx = torch.randint(S, (S,), generator=generator).to(rdm_ref.device)
        if torch.bincount(idx, minlength=S).count_nonzero() < 3:
            continue
        keep = idx[i] != idx[j]
        ri, rj = idx[i][keep], idx[j][keep]
        ref_b, cand_b = rdm_ref[ri, rj][None], rdms[:, ri, rj]
        if all_finite:
            samples[b] = _similarity_finite(ref_b.expand_as(cand_b), cand_b, method).cpu()
        else:
            samples[b] = vector_similarity(ref_b, cand_b, method)
    ok = torch.isfinite(samples)
    n_valid = ok.sum(0)
    alpha = (1 - ci) / 2
    low = torch.full((K,), float("nan"), dtype=torch.float64)
    high, std = low.clone(), low.clone()
    for k in range(K):
        s = samples[ok[:, k], k]
        if S < MIN_BOOTSTRAP_STIMULI or s.numel() < 2 or not torch.isfinite(value[k]):
            continue
        q = torch.quantile(s, torch.tensor([alpha, 1 - alpha], dtype=torch.float64))
        low[k], high[k], std[k] = q[0], q[1], s.std(unbiased=False)
    return {"value": value, "low": low, "high": high, "std": std, "samples": samples,
            "n_boot_valid": n_valid, "n_pairs": n_pairs, "n_pairs_dropped": S * (S - 1) // 2 - n_pairs}


# --- linear CKA -------------------------------------------------------------------------
def centred_gram(resp, *, chunk: int = 8192, device=None) -> torch.Tensor:
    """``H (X X^T) H`` in float64, ``H`` the centring matrix: the Gram of the responses
    ``resp (S, p)`` centred over stimuli. Each block of units is centred before its Gram is
    accumulated (in the responses' dtype), so a large offset does not cost float32 precision."""
    gram = centred_unit_gram(resp, chunk=chunk, device=device).double()
    gram = gram - gram.mean(0, keepdim=True)
    return gram - gram.mean(1, keepdim=True)


def cka_from_grams(kx: torch.Tensor, ky: torch.Tensor) -> float:
    """Linear CKA from centred Grams; NaN if either is zero (a constant representation) or
    not finite."""
    nx, ny = kx.norm(), ky.norm()
    if not (torch.isfinite(nx) and torch.isfinite(ny)) or nx == 0 or ny == 0:
        return float("nan")
    return float((kx * ky).sum() / (nx * ny))


def hsic_unbiased(k: torch.Tensor, l: torch.Tensor) -> float:
    """Song et al.'s (2012) unbiased HSIC estimator of Grams ``k, l (n, n)``, ``n >= 4``::

        HSIC_u = [tr(K L) + (1'K1)(1'L1) / ((n-1)(n-2)) - 2/(n-2) 1'K L 1] / (n (n-3))

    with ``K, L`` the Grams with their diagonals set to zero.
    """
    n = k.shape[0]
    if n < 4:
        return float("nan")
    k = k.double().clone().fill_diagonal_(0)
    l = l.double().clone().fill_diagonal_(0)
    ksum, lsum = k.sum(0), l.sum(0)
    total = (k * l).sum() + ksum.sum() * lsum.sum() / ((n - 1) * (n - 2)) - 2 / (n - 2) * (ksum @ lsum)
    return float(total / (n * (n - 3)))


def debiased_cka_from_grams(kx: torch.Tensor, ky: torch.Tensor) -> float:
    """Debiased linear CKA: ``HSIC_u(K, L) / sqrt(HSIC_u(K, K) HSIC_u(L, L))`` (NaN if a
    denominator is not positive). About 0 in expectation for independent representations,
    whatever the number of stimuli and dimensions."""
    kl, kk, ll = hsic_unbiased(kx, ky), hsic_unbiased(kx, kx), hsic_unbiased(ky, ky)
    if not (kk > 0 and ll > 0) or not np.isfinite(kl):
        return float("nan")
    return float(kl / np.sqrt(kk * ll))


def cka_chance_from_grams(kx: torch.Tensor, ky: torch.Tensor, n_perm: int = 100,
                          generator: torch.Generator | None = None) -> tuple[float, float]:
    """Mean and std of linear CKA over ``n_perm`` random shuffles of ``y``'s stimuli (the
    level an unrelated representation of the same stimuli reaches): ``(mean, std)``."""
    nx, ny = kx.norm(), ky.norm()
    if n_perm < 1 or not (torch.isfinite(nx) and torch.isfinite(ny)) or nx == 0 or ny == 0:
        return float("nan"), float("nan")
    S = kx.shape[0]
    vals = torch.empty(n_perm, dtype=torch.float64)
    for t in range(n_perm):
        p = torch.randperm(S, generator=generator).to(ky.device)
        vals[t] = (kx * ky[p][:, p]).sum() / (nx * ny)
    return float(vals.mean()), float(vals.std(unbiased=False))


def linear_cka(x, y, *, chunk: int = 8192, device=None) -> float:
    """Linear CKA of responses ``x (S, p)`` and ``y (S, q)`` (rows = the same stimuli)."""
    kx = centred_gram(x, chunk=chunk, device=device)
    ky = centred_gram(y, chunk=chunk, device=kx.device)
    return cka_from_grams(kx, ky)


def cka_report(x, y, *, n_perm: int = 100, generator: torch.Generator | None = None,
               chunk: int = 8192, device=None) -> dict[str, float]:
    """Linear CKA with what to read it against: ``{"cka", "cka_debiased", "cka_chance",
    "cka_chance_std"}`` (chance: mean and std over ``n_perm`` shuffles of the stimuli)."""
    kx = centred_gram(x, chunk=chunk, device=device)
    ky = centred_gram(y, chunk=chunk, device=kx.device)
    chance, chance_std = cka_chance_from_grams(kx, ky, n_perm, generator)
    return {"cka": cka_from_grams(kx, ky), "cka_debiased": debiased_cka_from_grams(kx, ky),
            "cka_chance": chance, "cka_chance_std": chance_std}
