"""Robustness to input noise (the paper's Fig. 3 claim: CordsNet is more robust to pixel noise
than its equivalent CNN), measured per image so that every number carries a 95 % interval
over images, and two models are compared on the *same* noise draws (paired).

Pure functions: tensors in, NumPy arrays or pandas DataFrames out, no file I/O.

**Noise.** At level ``s`` a model sees ``x + s * sigma * z`` with ``sigma`` the pixel standard
deviation over all images and ``z ~ N(0, 1)`` of the images' shape, drawn once by the caller
and shared by every level and every model (common random numbers: curves differ by the level
and by the model only).

**Per image** ``i`` and level ``s``:

* ``correct[s, i]``: the argmax of the logits is the label;
* ``change[layer][s, i] = ||a_s,i - a_0,i|| / D``: the distance of the layer's activity under
  noise from its clean activity, over ``D = sqrt(mean_j ||a_0,j - mean_k a_0,k||^2)``, the RMS
  distance of the clean activities from their mean (the spread that the images themselves
  cause). 1 means the noise moved the representation as far as a typical image lies from the
  average image; the ratio does not depend on the layer's scale, so layers and models compare.

**Statistics.** Accuracy: Wilson score interval. Means of per-image quantities (accuracy drop,
activation change) and every CordsNet - CNN difference: percentile bootstrap over images
(a difference resamples the same images for both models: paired). ``D`` is computed once
from all clean images and held fixed in the bootstrap.
"""
from __future__ import annotations

import math
from typing import Callable, Mapping, NamedTuple, Sequence

import numpy as np
import pandas as pd
import torch

#: ``run_model(images (B, ...)) -> (logits (B, K), {layer: activity (B, ...)})``
RunModel = Callable[[torch.Tensor], tuple[torch.Tensor, Mapping[str, torch.Tensor]]]

#: two-sided 95 % normal quantile
Z95 = 1.959963984540054


class NoiseResponses(NamedTuple):
    """One model's per-image responses to the noise levels."""

    levels: np.ndarray                 # (L,)
    correct: np.ndarray                # (L, B) bool
    change: dict[str, np.ndarray]      # layer -> (L, B) normalised distance from the clean activity
    spread: dict[str, float]           # layer -> D, the RMS distance of clean activities from their mean


def noise_responses(run_model: RunModel, images: torch.Tensor, labels: torch.Tensor, levels: Sequence[float],
                    noise: torch.Tensor, batch_size: int | None = None) -> NoiseResponses:
    """Run ``run_model`` on ``images + s * sigma * noise`` for every level ``s`` (see the module
    docstring). ``images`` ``(B, ...)``, ``labels`` ``(B,)`` class indices or ``(B, K)`` soft
    labels (their argmax), ``noise`` of the images' shape (the caller draws it once and passes
    the same tensor for every model). ``batch_size``: images per call of ``run_model``; only
    per-image sums are kept, so no ``(B, units)`` array of a large layer is held."""
    images = torch.as_tensor(images)
    if noise.shape != images.shape:
        raise ValueError(f"noise {tuple(noise.shape)} must have the images' shape {tuple(images.shape)}")
    y = torch.as_tensor(labels)
    y = y.argmax(-1) if y.ndim == 2 else y.long()
    if y.shape[0] != images.shape[0]:
        raise ValueError(f"{y.shape[0]} labels for {images.shape[0]} images")
    levels = np.asarray([float(s) for s in levels], dtype=np.float64)
    sigma = images.double().std(unbiased=False).to(images.dtype)
    n, bs = images.shape[0], batch_size or images.shape[0]
    correct = np.zeros((len(levels), n), dtype=bool)
    dist2: dict[str, np.ndarray] = {}
    sums: dict[str, torch.Tensor] = {}
    sumsq: dict[str, float] = {}
    with torch.no_grad():
        for start in range(0, n, bs):
            sl = slice(start, min(n, start + bs))
            x, z, yb = images[sl], noise[sl].to(images.dtype), y[sl]
            _, clean = run_model(x)
            clean = {k: v.detach().reshape(v.shape[0], -1).double() for k, v in clean.items()}
            for k, a in clean.items():
                dist2.setdefault(k, np.zeros((len(levels), n)))
                sums[k] = sums.get(k, 0) + a.sum(0)
                sumsq[k] = sumsq.get(k, 0.0) + float((a ** 2).sum())
            for li, s in enumerate(levels):
                logits, acts = run_model(x + s * sigma * z)
                correct[li, sl] = (logits.argmax(-1) == yb.to(logits.device)).cpu().numpy()
                for k, a in acts.items():
                    d = a.detach().reshape(a.shape[0], -1).double() - clean[k]
                    dist2[k][li, sl] = (d ** 2).sum(1).cpu().numpy()
    spread = {k: math.sqrt(max(sumsq[k] / n - float((sums[k] / n).pow(2).sum()), 0.0)) for k in dist2}
    change = {k: (np.sqrt(v) / spread[k] if spread[k] > 0 else np.full_like(v, np.nan)) for k, v in dist2.items()}
    return NoiseResponses(levels, correct, change, spread)


# ---- intervals ---------------------------------------------------------------------------------
def wilson_interval(successes, n: int, z: float = Z95) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of a binomial proportion ``successes / n`` (vectorised):
    ``(p + z^2/2n -+ z sqrt(p(1-p)/n + z^2/4n^2)) / (1 + z^2/n)``."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    p = np.asarray(successes, dtype=np.float64) / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return np.clip(centre - half, 0, 1), np.clip(centre + half, 0, 1)


def bootstrap_indices(n: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """``(n_boot, n)`` resampling indices (with replacement); reuse them for paired quantities."""
    if n < 1 or n_boot < 1:
        raise ValueError(f"need n >= 1 and n_boot >= 1, got n={n}, n_boot={n_boot}")
    return rng.integers(0, n, size=(n_boot, n))


def bootstrap_mean_ci(x, idx: np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    """Mean of ``x`` ``(n,)`` and its percentile-bootstrap interval from the resamples ``idx``
    (:func:`bootstrap_indices`)."""
    x = np.asarray(x, dtype=np.float64)
    means = x[idx].mean(1)
    q = (1 - level) / 2
    lo, hi = np.quantile(means, [q, 1 - q])
    return float(x.mean()), float(lo), float(hi)


# ---- the comparison -------------------------------------------------------------------------
#: measure -> whether a larger value means more robust
MEASURES = {"accuracy": True, "accuracy_drop": False, "activation_change": False}


def _verdict(level: float, lo: float, hi: float, higher_is_robust: bool, a: str, b: str,
             word: str = "robust") -> str:
    """Which model the paired interval favours: ``'<a|b> more <word>'``, or not resolved."""
    if level == 0 and word == "robust":
        return "no noise"
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return "undefined"
    if lo > 0 or hi < 0:
        a_better = (lo > 0) == higher_is_robust
        return f"{a if a_better else b} more {word}{' (no noise)' if level == 0 else ''}"
    return "not resolved (CI includes 0)"


def robustness_table(responses: Mapping[str, NoiseResponses], n_boot: int = 2000, seed: int = 0,
                     level: float = 0.95) -> pd.DataFrame:
    """The robustness claim as a table: one row per noise level, measure and layer.

    ``responses``: model name -> :func:`noise_responses` on the same images, labels, levels
    and noise (one or two models; with two, the first is compared with the second). Measures:
    ``accuracy`` (layer ``readout``; Wilson interval), ``accuracy_drop`` (clean minus noisy
    correctness per image, layer ``readout``; bootstrap) and ``activation_change`` (per layer;
    bootstrap). Columns: ``level``, ``measure``, ``layer``, ``n_images``, per model ``<m>``,
    ``<m>_ci_low``, ``<m>_ci_high``; with two models also ``difference`` (first - second; paired
    bootstrap over images, the same resamples for both) with ``difference_ci_low/high`` and
    ``verdict``: ``'<first> more robust'`` or ``'<second> more robust'`` when the interval
    excludes 0 (in the direction that means more robust: smaller drop or change),
    ``'not resolved (CI includes 0)'`` otherwise, ``'no noise'`` at level 0. Raw accuracy is not
    robustness on its own (it carries the clean accuracy): its verdict reads ``'<m> more
    accurate'`` (``'... (no noise)'`` at level 0).
    """
    names = list(responses)
    if not 1 <= len(names) <= 2:
        raise ValueError(f"give one or two models, got {names}")
    first = responses[names[0]]
    for m in names[1:]:
        r = responses[m]
        if r.correct.shape != first.correct.shape or not np.array_equal(r.levels, first.levels):
            raise ValueError("the models were not run on the same images and levels")
        if set(r.change) != set(first.change):
            raise ValueError(f"layers differ: {sorted(first.change)} vs {sorted(r.change)}")
    n = first.correct.shape[1]
    idx = bootstrap_indices(n, n_boot, np.random.default_rng(seed))
    clean = {m: responses[m].correct[np.flatnonzero(responses[m].levels == 0)[0]]
             if (responses[m].levels == 0).any() else None for m in names}
    rows = []
    for li, s in enumerate(first.levels):
        per_image = {}  # (measure, layer) -> {model: (n,) values}
        per_image[("accuracy", "readout")] = {m: responses[m].correct[li].astype(float) for m in names}
        if all(clean[m] is not None for m in names):
            per_image[("accuracy_drop", "readout")] = {
                m: clean[m].astype(float) - responses[m].correct[li].astype(float) for m in names}
        for layer in first.change:
            per_image[("activation_change", layer)] = {m: responses[m].change[layer][li] for m in names}
        for (measure, layer), vals in per_image.items():
            row = {"level": float(s), "measure": measure, "layer": layer, "n_images": n}
            for m in names:
                if measure == "accuracy":
                    k = int(vals[m].sum())
                    lo, hi = wilson_interval(k, n, z=_z(level))
                    row.update({m: k / n, f"{m}_ci_low": float(lo), f"{m}_ci_high": float(hi)})
                else:
                    est, lo, hi = bootstrap_mean_ci(vals[m], idx, level)
                    row.update({m: est, f"{m}_ci_low": lo, f"{m}_ci_high": hi})
            if len(names) == 2:
                est, lo, hi = bootstrap_mean_ci(vals[names[0]] - vals[names[1]], idx, level)
                row.update({"difference": est, "difference_ci_low": lo, "difference_ci_high": hi,
                            "verdict": _verdict(float(s), lo, hi, MEASURES[measure], *names,
                                                word="accurate" if measure == "accuracy" else "robust")})
            rows.append(row)
    return pd.DataFrame(rows)


def _z(level: float) -> float:
    """Two-sided normal quantile of a ``level`` interval."""
    from statistics import NormalDist

    return NormalDist().inv_cdf(0.5 + level / 2)
