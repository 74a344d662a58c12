"""Is a unit more active during a stimulus than outside it?

Single time steps of a sampler's trace are strongly autocorrelated, so a t-test that treats
them as independent samples has a false-positive rate far above its nominal level. The traces
are therefore first cut into ``n_blocks`` contiguous equal blocks whose means are nearly
independent once a block is much longer than the autocorrelation time, and Welch's
unequal-variance t-test compares the block means during and outside the stimulus.

Welch's test (samples along the LAST axis, leading axes broadcast):

    t  = (mean_a - mean_b) / sqrt(va / na + vb / nb)       (va, vb unbiased variances)
    df = (va/na + vb/nb)^2 / ((va/na)^2 / (na - 1) + (vb/nb)^2 / (nb - 1))
    p  = 2 * P(T_df > |t|)                                  (two-sided)

which equals ``scipy.stats.ttest_ind(a, b, axis=-1, equal_var=False)``. Where both samples
have zero variance (scipy gives NaN there) this module returns ``t = 0, p = 1`` if the two
constant values are equal and ``t = +-inf, p = 0`` otherwise, with ``df = na + nb - 2``.
A sample is treated as having zero variance when all its values are identical (exactly).
NaN in the input gives NaN in the outputs of that test.
"""
from __future__ import annotations

import scipy.stats
import torch


def _float(x: torch.Tensor) -> torch.Tensor:
    """``x`` as a tensor in float64 (computation dtype), on its own device."""
    return torch.as_tensor(x).to(torch.float64)


def _result_dtype(*xs: torch.Tensor) -> torch.dtype:
    """Floating dtype of the results: the promoted dtype of the inputs, or the default float
    dtype if they are integers."""
    dtype = torch.as_tensor(xs[0]).dtype
    for x in xs[1:]:
        dtype = torch.promote_types(dtype, torch.as_tensor(x).dtype)
    return dtype if dtype.is_floating_point else torch.get_default_dtype()


def sample_mean_var(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and unbiased variance of ``x (..., n)`` along the last axis, both ``(...)``;
    a constant sample gets exactly its value and exactly 0 (no rounding residue)."""
    constant = x.amax(dim=-1) == x.amin(dim=-1)
    mean = torch.where(constant, x[..., 0], x.mean(dim=-1))
    var = torch.where(constant, torch.zeros_like(mean), x.var(dim=-1, correction=1))
    return mean, var


def student_t_two_sided_p(t: torch.Tensor, df: torch.Tensor) -> torch.Tensor:
    """Two-sided p-value ``2 P(T_df > |t|)`` for ``t, df (...)`` (via scipy on CPU), returned
    on ``t``'s device as float64. ``|t| = inf`` gives 0."""
    t_np = t.detach().abs().cpu().numpy()
    df_np = df.detach().cpu().numpy()
    p = 2.0 * scipy.stats.t.sf(t_np, df_np)
    return torch.as_tensor(p, dtype=torch.float64, device=t.device).clamp(max=1.0)


def welch_t_test(a: torch.Tensor, b: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Welch's two-sample t-test of ``a (..., na)`` against ``b (..., nb)`` along the last
    axis (leading axes broadcast; ``na, nb >= 2``).

    Returns:
        ``(t, df, p)``, each of the broadcast leading shape ``(...)``: the t statistic
        (positive when ``a``'s mean is larger), the Welch-Satterthwaite degrees of freedom and
        the two-sided p-value. See the module docstring for zero-variance samples.
    """
    a, b = torch.as_tensor(a), torch.as_tensor(b)
    if a.ndim < 1 or b.ndim < 1:
        raise ValueError("a and b must have a last (sample) axis")
    na, nb = a.shape[-1], b.shape[-1]
    if na < 2 or nb < 2:
        raise ValueError(f"each sample needs at least 2 values, got na={na}, nb={nb}")
    dtype = _result_dtype(a, b)
    b = b.to(a.device)
    mean_a, var_a = sample_mean_var(_float(a))
    mean_b, var_b = sample_mean_var(_float(b))
    sem2_a, sem2_b = var_a / na, var_b / nb
    se2 = sem2_a + sem2_b
    diff = mean_a - mean_b
    both_constant = se2 == 0
    safe_se2 = torch.where(both_constant, torch.ones_like(se2), se2)
    t = torch.where(both_constant, torch.sign(diff) * torch.inf, diff / safe_se2.sqrt())
    t = torch.where(both_constant & (diff == 0), torch.zeros_like(t), t)
    denom = sem2_a ** 2 / (na - 1) + sem2_b ** 2 / (nb - 1)
    df = torch.where(both_constant, torch.full_like(se2, na + nb - 2.0),
                     se2 ** 2 / torch.where(both_constant, torch.ones_like(denom), denom))
    p = student_t_two_sided_p(t, df)
    return t.to(dtype), df.to(dtype), p.to(dtype)


def block_means(x: torch.Tensor, n_blocks: int) -> torch.Tensor:
    """Means of ``n_blocks`` contiguous equal blocks of the last axis of ``x (..., T)``,
    each ``T // n_blocks`` steps long (the remainder at the end is dropped).
    Returns ``(..., n_blocks)``."""
    x = torch.as_tensor(x)
    if not isinstance(n_blocks, int) or n_blocks < 1:
        raise ValueError(f"n_blocks must be a positive int, got {n_blocks!r}")
    steps = x.shape[-1] if x.ndim else 0
    if steps < n_blocks:
        raise ValueError(f"cannot cut {steps} time steps into {n_blocks} blocks")
    length = steps // n_blocks
    if not x.is_floating_point():
        x = x.to(torch.get_default_dtype())
    blocks = x[..., : n_blocks * length].reshape(*x.shape[:-1], n_blocks, length)
    return blocks.mean(dim=-1)


def active_units(during: torch.Tensor, outside: torch.Tensor, alpha: float = 0.05,
                 n_blocks: int = 10) -> dict[str, torch.Tensor]:
    """Units significantly more active during a stimulus than outside it.

    Args:
        during: ``(..., T1)`` traces while the stimulus is on.
        outside: ``(..., T2)`` traces of the same units without it (leading axes broadcast).
        alpha: significance level of the two-sided Welch test.
        n_blocks: number of blocks each trace is averaged into before the test (>= 2).
    Returns:
        dict of ``(...)`` tensors: ``active`` (bool: ``p < alpha`` and ``mean_during >
        mean_outside``), ``t``, ``df``, ``p``, ``mean_during``, ``mean_outside`` (the means of
        the block means, i.e. of the steps that entered the test).
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    if not isinstance(n_blocks, int) or n_blocks < 2:
        raise ValueError(f"n_blocks must be an int >= 2 for a t-test, got {n_blocks!r}")
    blocks_during = block_means(during, n_blocks)
    blocks_outside = block_means(outside, n_blocks).to(blocks_during.device)
    t, df, p = welch_t_test(blocks_during, blocks_outside)
    mean_during = blocks_during.mean(dim=-1)
    mean_outside = blocks_outside.mean(dim=-1)
    mean_during, mean_outside = torch.broadcast_tensors(mean_during, mean_outside)
    return {
        "active": (p < alpha) & (mean_during > mean_outside),
        "t": t,
        "df": df,
        "p": p,
        "mean_during": mean_during,
        "mean_outside": mean_outside,
    }
