"""Measurements on trained networks: accuracy, error in degrees, confusion, ablations, tuning.

Everything works on the stacked model axis ``M`` of :class:`~snn_dales.model.DaleSNN`, so an
ablation of each of ``H`` hidden units is a single forward of ``H`` weight copies.
Confidence intervals are two-sided Student-t intervals: ``mean +- t_{0.975, n-1} sd / sqrt(n)``.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from scipy import stats

from snn_dales.model import DaleSNN, predict
from snn_dales.stimulus import IPDTask, continuise, discretise, make_dataset


def mean_ci(values, level: float = 0.95) -> tuple[float, float, int]:
    """Mean, half-width of the ``level`` t-interval, and n of a 1-D sequence."""
    x = torch.tensor(np.array(values, dtype=np.float64)).flatten()
    n = x.numel()
    mean = float(x.mean())
    if n < 2:
        return mean, float("nan"), n
    half = float(stats.t.ppf(0.5 + level / 2, n - 1) * x.std(unbiased=True) / math.sqrt(n))
    return mean, half, n


def abs_error_degrees(ipd_true: torch.Tensor, est_class: torch.Tensor, n_classes: int) -> torch.Tensor:
    """``|ipd - centre(estimated class)|`` in degrees, element-wise."""
    return (ipd_true - continuise(est_class, n_classes)).abs() * 180.0 / math.pi


def confusion_matrix(true_class: torch.Tensor, est_class: torch.Tensor, n_classes: int,
                     normalise: bool = True) -> torch.Tensor:
    """``(n_classes, n_classes)``: row = estimated class, column = true class.

    With ``normalise`` each column sums to one (``P(estimate | true)``; empty columns stay 0).
    """
    idx = est_class.long() * n_classes + true_class.long()
    cm = torch.bincount(idx.flatten(), minlength=n_classes * n_classes).view(n_classes, n_classes).double()
    if normalise:
        cm = cm / cm.sum(0, keepdim=True).clamp_min(1)
    return cm


def test_sets(task: IPDTask, n_sets: int, n: int, phase_offset: str, seed: int, device):
    """``n_sets`` fresh test sets, each ``(ipd (n,), spikes (n, T, I))`` from seed ``(seed, k)``."""
    out = []
    for k in range(n_sets):
        g = torch.Generator(device=device).manual_seed(seed * 1009 + k)
        out.append(make_dataset(n, task, phase_offset, g))
    return out


def score(model: DaleSNN, ipd: torch.Tensor, x: torch.Tensor, n_classes: int,
          weights=None) -> dict[str, torch.Tensor]:
    """Per model: accuracy ``(M,)``, mean absolute error in degrees ``(M,)``, estimates ``(M, N)``,
    mean hidden rates per sample ``(M, N, H)`` in spikes per step."""
    est, rates = predict(model, x, weights=weights)
    true = discretise(ipd, n_classes)
    return {"acc": (est == true[None]).float().mean(1),
            "mae_deg": abs_error_degrees(ipd[None], est, n_classes).mean(1),
            "est": est, "rates": rates}


def inhibitory_input_ablation(w1: torch.Tensor, sign1: torch.Tensor) -> torch.Tensor:
    """Effective ``W1`` ``(M, I, H)`` with every row of an inhibitory input fibre set to zero."""
    return w1 * (sign1 > 0).to(w1.dtype).unsqueeze(-1)


def single_unit_ablations(w1: torch.Tensor, w2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``H`` copies of one network with hidden unit ``k`` silenced in copy ``k``.

    ``w1``: ``(I, H)``, ``w2``: ``(H, C)`` -> ``(H, I, H)``, ``(H, H, C)``: unit ``k``'s
    outgoing row of W2 is zero in copy ``k`` (its spikes no longer reach the readout).
    """
    n_h = w2.shape[0]
    keep = 1.0 - torch.eye(n_h, device=w2.device, dtype=w2.dtype)       # (copy, unit)
    return w1.expand(n_h, *w1.shape).clone(), w2[None] * keep[:, :, None]


def tuning_curves(rates: torch.Tensor, ipd: torch.Tensor, n_bins: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean rate of every unit in each IPD bin.

    ``rates``: ``(N, H)``; ``ipd``: ``(N,)`` radians. Returns bin centres in degrees ``(n_bins,)``
    and curves ``(n_bins, H)`` (NaN where a bin is empty).
    """
    b = discretise(ipd, n_bins)
    count = torch.bincount(b, minlength=n_bins).to(rates.dtype)
    total = torch.zeros(n_bins, rates.shape[1], dtype=rates.dtype, device=rates.device)
    total.index_add_(0, b, rates)
    curves = total / count[:, None]
    curves[count == 0] = float("nan")
    centres = continuise(torch.arange(n_bins), n_bins) * 180.0 / math.pi
    return centres, curves


def preferred_ipd(centres: torch.Tensor, curves: torch.Tensor) -> torch.Tensor:
    """IPD (degrees) of each unit's peak rate ``(H,)``."""
    return centres[torch.nan_to_num(curves, nan=-1.0).argmax(0).cpu()]


def sign_flip_fraction(w_before: torch.Tensor, w_after: torch.Tensor) -> float:
    """Fraction of effective weights whose strict sign differs before vs after training."""
    return float((torch.sign(w_before) != torch.sign(w_after)).double().mean())
