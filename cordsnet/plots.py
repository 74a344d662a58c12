"""Figures of the cordsnet family. Each function takes arrays/tensors and returns a matplotlib
Figure (no file I/O; the caller saves and closes it). Time axes follow the convention of
:mod:`cordsnet.analysis`: point ``t`` is the state after step ``t + 1``.
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg", force=False)
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from core.outputs import to_numpy  # noqa: E402

STIM_COLOR = "gold"


def _grid(n: int, cols: int = 4, size: tuple[float, float] = (3.2, 3.0), min_width: float = 0.0, **kw):
    """A ``rows x cols`` grid holding ``n`` panels; surplus axes are removed."""
    cols = max(1, min(cols, n))
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(max(size[0] * cols, min_width), size[1] * rows),
                             squeeze=False, **kw)
    flat = list(axes.flat)
    for ax in flat[n:]:
        ax.remove()
    return fig, flat[:n]


def _shade_stimulus(ax, blank_steps: int, stimulus_steps: int, label: bool = True) -> None:
    """Shade the steps during which the image is shown (points ``blank .. blank + stimulus - 1``)."""
    ax.axvspan(blank_steps + 0.5, blank_steps + stimulus_steps + 0.5, color=STIM_COLOR, alpha=0.25,
               lw=0, label="stimulus on" if label else None)


def accuracy_over_time_figure(acc, blank_steps: int, stimulus_steps: int, post_steps: int = 0,
                              chance: float | None = None):
    """Accuracy after each step ``(T,)``, stimulus period shaded, chance level dashed."""
    acc = np.asarray(to_numpy(acc), dtype=float)
    steps = np.arange(1, acc.size + 1)
    fig, ax = plt.subplots(figsize=(6.5, 3.5))
    _shade_stimulus(ax, blank_steps, stimulus_steps)
    ax.plot(steps, 100 * acc, color="k", lw=1.5, label="accuracy")
    if chance is not None:
        ax.axhline(100 * chance, color="tab:red", ls="--", lw=1, label=f"chance ({100 * chance:.1f} %)")
    ax.set(xlabel="time step", ylabel="accuracy (%)", ylim=(-2, 102), xlim=(0.5, acc.size + 0.5),
           title=f"Readout accuracy over time (blank {blank_steps}, stimulus {stimulus_steps}, "
                 f"post-blank {post_steps} steps)")
    ax.title.set_fontsize(10)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return fig


def dynamics_figure(traces, blank_steps: int, stimulus_steps: int, post_steps: int = 0,
                    area_names: Sequence[str] | None = None):
    """Mean rate per area ``(A, T)``: raw (left) and as deviation from spontaneous, divided by
    its largest magnitude during and after the stimulus (right), so shapes compare across areas."""
    x = np.asarray(to_numpy(traces), dtype=float)
    if x.ndim == 1:
        x = x[None]
    names = [f"area {i}" for i in range(x.shape[0])] if area_names is None else list(area_names)
    steps = np.arange(1, x.shape[1] + 1)
    tail = max(1, int(round(0.1 * blank_steps)))
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.8))
    colors = plt.cm.viridis(np.linspace(0, 0.9, x.shape[0]))
    for ax in axes:
        _shade_stimulus(ax, blank_steps, stimulus_steps, label=ax is axes[0])
    for tr, name, c in zip(x, names, colors):
        axes[0].plot(steps, tr, color=c, lw=1.3, label=name)
        spont = tr[max(0, blank_steps - tail):blank_steps].mean() if blank_steps else 0.0
        dev = tr - spont
        scale = np.abs(dev[blank_steps:]).max() if x.shape[1] > blank_steps else 0.0
        axes[1].plot(steps, dev / scale if scale > 0 else dev, color=c, lw=1.3, label=name)
    axes[0].set(xlabel="time step", ylabel="mean rate (a.u.)", title="Mean rate per area")
    axes[1].axhline(0, color="0.5", lw=0.8)
    axes[1].set(xlabel="time step", ylabel="(r − spont.) / max |r − spont.|",
                title="Normalised deviation from spontaneous")
    axes[0].legend(fontsize=7, ncol=2)
    fig.suptitle(f"Response dynamics (stimulus shaded: steps {blank_steps + 1}–{blank_steps + stimulus_steps}"
                 f"{f', then {post_steps} blank steps' if post_steps else ''})", fontsize=10)
    fig.tight_layout()
    return fig


def spectra_figure(eigs: Mapping[str, object], alpha: float, verdicts: Mapping[str, str] | None = None,
                   title: str = "Recurrent spectra of the areas"):
    """Eigenvalues ``lambda`` of each area's recurrent operator in the complex plane, one panel
    per area, with the stability boundaries of the continuous-time system (``Re lambda = 1``) and
    of its Euler map (``|1 - alpha + alpha lambda| = 1``: centre ``1 - 1/alpha``, radius ``1/alpha``).
    Markers: dot stable under both, triangle stable in continuous time but not under the Euler
    step, cross ``Re lambda >= 1``. ``verdicts``: panel name -> a line under its name (the
    area's stability verdict); ``title``: what the eigenvalues are of."""
    from matplotlib.lines import Line2D

    names = list(eigs)
    fig, axes = _grid(len(names), cols=4, size=(3.4, 3.9), min_width=9.0, layout="constrained")
    theta = np.linspace(0, 2 * np.pi, 721)
    c, rad = 1 - 1 / alpha, 1 / alpha
    kinds = (("k", "o", 12, "eigenvalue, stable"),
             ("tab:orange", "^", 18, "Re λ < 1 but Euler-unstable"),
             ("tab:red", "x", 18, "Re λ ≥ 1 (unstable)"))
    for ax, name in zip(axes, names):
        lam = np.asarray(to_numpy(eigs[name]), dtype=np.complex128).reshape(-1)
        re, im = lam.real, lam.imag
        lo_x = min(float(re.min(initial=0.0)), -1.2)
        hi_x = max(float(re.max(initial=0.0)), 1.2)
        half_y = max(float(np.abs(im).max(initial=0.0)), 1.2)
        pad = 0.12 * max(hi_x - lo_x, 2 * half_y)
        ax.plot(np.cos(theta), np.sin(theta), color="0.6", ls=":", lw=1)
        ax.plot(c + rad * np.cos(theta), rad * np.sin(theta), color="tab:blue", lw=1.2)
        ax.axvline(1.0, color="tab:red", ls="--", lw=1.2)
        linear_ok = re < 1
        euler_ok = np.abs(1 - alpha + alpha * lam) < 1
        for mask, (col, mk, size, _) in zip((linear_ok & euler_ok, linear_ok & ~euler_ok, ~linear_ok), kinds):
            if mask.any():
                ax.scatter(re[mask], im[mask], s=size, color=col, marker=mk, zorder=3)
        ax.set_xlim(lo_x - pad, hi_x + pad)
        ax.set_ylim(-half_y - pad, half_y + pad)
        ax.set_aspect("equal", adjustable="box")
        ax.axhline(0, color="0.8", lw=0.6, zorder=0)
        top = f"max Re λ = {re.max():.3f}, " if re.size else ""
        line = (verdicts or {}).get(name)
        ax.set_title(f"{name}\n{line}\n{re.size} leading eigenvalues shown" if line else
                     f"{name}\n{top}{re.size} eigenvalues", fontsize=8 if line else 9)
        ax.set_xlabel("Re λ")
        ax.set_ylabel("Im λ")
    handles = [Line2D([], [], color="tab:red", ls="--", label="linear boundary Re λ = 1"),
               Line2D([], [], color="tab:blue", label=f"Euler boundary |1 − α + αλ| = 1 (α = {alpha:g})"),
               Line2D([], [], color="0.6", ls=":", label="|λ| = 1 (reference only)")]
    handles += [Line2D([], [], color=col, marker=mk, ls="none", label=lab) for col, mk, _, lab in kinds]
    fig.suptitle(f"{title} (stable: left of the red line; Euler-stable: inside the blue circle)", fontsize=10)
    fig.legend(handles=handles, loc="outside lower center", ncol=3, fontsize=7, frameon=False)
    return fig


def eigenvector_figure(vectors: Mapping[str, object]):
    """The top eigenvector ``(C, H, W)`` (real or complex) of each area as a map of its
    channel-summed magnitude ``sum_c |v[c, y, x]|``, one panel (and colour bar) per area."""
    names = list(vectors)
    fig, axes = _grid(len(names), cols=4, size=(3.2, 3.0))
    for ax, name in zip(axes, names):
        v = np.asarray(to_numpy(vectors[name]))
        if v.ndim != 3:
            raise ValueError(f"eigenvector of {name} must be (C, H, W), got shape {v.shape}")
        mag = np.abs(v).sum(0)
        im = ax.imshow(mag, cmap="magma", interpolation="nearest")
        ax.set_title(f"{name}: Σ_c |v| ({v.shape[0]} ch, {v.shape[1]}×{v.shape[2]})", fontsize=9)
        ax.set_xlabel("x (unit)")
        ax.set_ylabel("y (unit)")
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.suptitle("Top eigenvector of each area (channel-summed magnitude)", fontsize=10)
    fig.tight_layout()
    return fig


def _band(ax, x, est, lo, hi, color, ls="-", label=None, marker="o"):
    ax.fill_between(x, lo, hi, color=color, alpha=0.18, lw=0)
    ax.plot(x, est, ls=ls, marker=marker, ms=4, color=color, label=label)


def robustness_figure(table: pd.DataFrame, models: Sequence[str]):
    """The robustness table of :func:`cordsnet.robustness.robustness_table` against the noise
    level, bands = 95 % intervals over images: accuracy per model (top left), normalised
    activation change per layer (top right; solid the first model, dashed the second) and, with
    two models, the paired difference first - second of the accuracy drop (bottom left) and of
    each layer's activation change (bottom right; below 0: the first model is more robust)."""
    models = list(models)
    two = len(models) == 2
    fig, axes = plt.subplots(2 if two else 1, 2, figsize=(11, 8.0 if two else 4.0), squeeze=False)
    axes = list(axes.flat)
    model_colors = {m: c for m, c in zip(models, ("tab:blue", "tab:orange"))}
    acc = table[table["measure"] == "accuracy"].sort_values("level")
    for m in models:
        _band(axes[0], acc["level"], 100 * acc[m], 100 * acc[f"{m}_ci_low"], 100 * acc[f"{m}_ci_high"],
              model_colors[m], label=m)
    axes[0].set(xlabel="noise std (× pixel std)", ylabel="accuracy (%)", title="Accuracy under pixel noise")
    act = table[table["measure"] == "activation_change"]
    layers = list(dict.fromkeys(act["layer"]))
    colors = plt.cm.viridis(np.linspace(0, 0.9, max(1, len(layers))))
    for layer, c in zip(layers, colors):
        g = act[act["layer"] == layer].sort_values("level")
        for m, ls in zip(models, ("-", "--")):
            _band(axes[1], g["level"], g[m], g[f"{m}_ci_low"], g[f"{m}_ci_high"], c, ls=ls, label=f"{m} {layer}")
    axes[1].set(xlabel="noise std (× pixel std)", ylabel="‖a_noisy − a_clean‖ / RMS spread of clean a",
                title="Activation change under pixel noise")
    if two:
        drop = table[table["measure"] == "accuracy_drop"].sort_values("level")
        if len(drop):
            _band(axes[2], drop["level"], 100 * drop["difference"], 100 * drop["difference_ci_low"],
                  100 * drop["difference_ci_high"], "k", label="accuracy drop (clean − noisy)", marker="s")
        axes[2].set(ylabel=f"{models[0]} − {models[1]} (percentage points)",
                    title=f"Accuracy drop, paired: {models[0]} − {models[1]} (< 0: {models[0]} more robust)")
        for layer, c in zip(layers, colors):
            g = act[act["layer"] == layer].sort_values("level")
            _band(axes[3], g["level"], g["difference"], g["difference_ci_low"], g["difference_ci_high"], c,
                  label=layer)
        axes[3].set(ylabel=f"{models[0]} − {models[1]}",
                    title=f"Activation change, paired: {models[0]} − {models[1]} (< 0: {models[0]} more robust)")
        for ax in axes[2:]:
            ax.axhline(0, color="0.4", lw=0.8)
            ax.set_xlabel("noise std (× pixel std)")
    for ax in axes:
        ax.title.set_fontsize(10)
        ax.legend(fontsize=7)
    fig.suptitle(f"Robustness to Gaussian pixel noise (same noise draws for every model; "
                 f"{int(table['n_images'].iloc[0])} test images, 95 % intervals over images)", fontsize=10)
    fig.tight_layout()
    return fig


def trajectories_figure(proj, blank_steps: int, stimulus_steps: int, labels=None,
                        explained: Sequence[float] | None = None, max_legend: int = 10):
    """State trajectories projected on PC1 and PC2 (``proj`` ``(B, T, >= 2)``), coloured by
    ``labels`` ``(B,)``; circle: stimulus onset (spontaneous state, point ``blank - 1``),
    square: stimulus offset (point ``blank + stimulus - 1``). ``explained``: variance ratios
    shown on the axis labels."""
    p = np.asarray(to_numpy(proj), dtype=float)
    if p.ndim != 3 or p.shape[2] < 2:
        raise ValueError(f"proj must be (B, T, >=2), got shape {p.shape}")
    lab = np.zeros(p.shape[0], dtype=int) if labels is None else np.asarray(to_numpy(labels)).reshape(-1)
    classes = list(dict.fromkeys(lab.tolist()))
    cmap = plt.get_cmap("tab10" if len(classes) <= 10 else "viridis")
    color = {k: cmap(i if len(classes) <= 10 else i / max(1, len(classes) - 1)) for i, k in enumerate(classes)}
    on, off = blank_steps - 1, min(blank_steps + stimulus_steps - 1, p.shape[1] - 1)
    fig, ax = plt.subplots(figsize=(5.5, 5))
    seen = set()
    for traj, k in zip(p, lab.tolist()):
        show = labels is not None and k not in seen and len(seen) < max_legend
        seen.add(k)
        ax.plot(traj[:, 0], traj[:, 1], color=color[k], lw=0.9, alpha=0.8, label=f"class {k}" if show else None)
        if on >= 0:
            ax.plot(*traj[on, :2], "o", color=color[k], mec="k", ms=6)
        ax.plot(*traj[off, :2], "s", color=color[k], mec="k", ms=6)
    ax.plot([], [], "o", color="w", mec="k", label="stimulus onset")
    ax.plot([], [], "s", color="w", mec="k", label="stimulus offset")
    ev = list(explained) if explained is not None else None
    ax.set_xlabel(f"PC1 ({100 * ev[0]:.1f} % var.)" if ev else "PC1")
    ax.set_ylabel(f"PC2 ({100 * ev[1]:.1f} % var.)" if ev and len(ev) > 1 else "PC2")
    ax.set_title("State trajectories on the first two principal components", fontsize=10)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    return fig


def grid_figure(images, titles: Sequence[str] | None, suptitle: str, cols: int = 6):
    """Images ``(N, C, H, W)`` (C = 1 grey, C = 3 RGB; others show channel 0) in a grid, each
    min-max scaled to its own range for display, under the figure title ``suptitle`` (laid out
    above the panels, not over them)."""
    x = np.asarray(to_numpy(images), dtype=float)
    if x.ndim != 4:
        raise ValueError(f"images must be (N, C, H, W), got shape {x.shape}")
    fig, axes = _grid(x.shape[0], cols=cols, size=(2.0, 2.1), layout="constrained")
    for i, (ax, img) in enumerate(zip(axes, x)):
        lo, hi = img.min(), img.max()
        img = (img - lo) / (hi - lo) if hi > lo else np.zeros_like(img)
        if img.shape[0] == 3:
            ax.imshow(img.transpose(1, 2, 0), interpolation="nearest")
        else:
            ax.imshow(img[0], cmap="gray", interpolation="nearest", vmin=0, vmax=1)
        ax.set_xticks([])
        ax.set_yticks([])
        if titles is not None and i < len(titles):
            ax.set_title(str(titles[i]), fontsize=8)
    fig.suptitle(suptitle, fontsize=10)
    return fig
