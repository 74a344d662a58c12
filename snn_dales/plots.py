"""Figures of the snn_dales family. Each function takes arrays and returns a matplotlib Figure."""
from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg", force=False)
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from core.outputs import to_numpy  # noqa: E402


def stimulus_examples(spikes, ipd_deg, n_per_ear: int):
    """Spike rasters ``(n, T, I)`` of example stimuli, one panel per IPD."""
    spikes, ipd_deg = to_numpy(spikes), to_numpy(ipd_deg)
    n = spikes.shape[0]
    cols = min(4, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 2.8 * rows), squeeze=False, sharex=True, sharey=True)
    for i, ax in enumerate(axes.flat):
        if i >= n:
            ax.axis("off")
            continue
        ax.imshow(spikes[i].T, aspect="auto", interpolation="nearest", cmap="gray_r", origin="lower")
        ax.axhline(n_per_ear - 0.5, color="tab:red", lw=0.8)
        ax.set_title(f"IPD = {ipd_deg[i]:.0f}°", fontsize=10)
        if i % cols == 0:
            ax.set_ylabel("fibre (left | right ear)")
        if i // cols == rows - 1:
            ax.set_xlabel("time step")
    fig.suptitle("Input spikes (red line: left/right ear boundary)")
    fig.tight_layout()
    return fig


def weight_sign_maps(w1_before, w1_after, w2_before, w2_after):
    """Sign maps (positive = yellow) of W1 ``(I, H)`` and W2 ``(H, C)`` before/after training."""
    fig, axes = plt.subplots(1, 4, figsize=(13, 5), gridspec_kw={"width_ratios": [3, 3, 2, 2]})
    for ax, w, title in zip(axes, (w1_before, w1_after, w2_before, w2_after),
                            ("W1 before", "W1 after", "W2 before", "W2 after")):
        ax.imshow(to_numpy(w) > 0, aspect="auto", interpolation="nearest", cmap="viridis", vmin=0, vmax=1)
        ax.set_title(f"{title} (yellow: w > 0)", fontsize=10)
    axes[0].set_ylabel("input fibre")
    axes[1].set_ylabel("input fibre")
    axes[2].set_ylabel("hidden unit")
    axes[3].set_ylabel("hidden unit")
    for ax in axes[:2]:
        ax.set_xlabel("hidden unit")
    for ax in axes[2:]:
        ax.set_xlabel("readout class")
    fig.tight_layout()
    return fig


def signed_weights(w1, w2):
    """Effective weights as diverging heat maps."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 5), gridspec_kw={"width_ratios": [3, 2]})
    for ax, w, title, yl, xl in zip(axes, (w1, w2), ("W1 (input -> hidden)", "W2 (hidden -> readout)"),
                                    ("input fibre", "hidden unit"), ("hidden unit", "readout class")):
        w = to_numpy(w)
        lim = float(np.abs(w).max()) or 1.0
        im = ax.imshow(w, aspect="auto", interpolation="nearest", cmap="RdBu_r", vmin=-lim, vmax=lim)
        ax.set_title(title)
        ax.set_ylabel(yl)
        ax.set_xlabel(xl)
        fig.colorbar(im, ax=ax, fraction=0.05)
    fig.tight_layout()
    return fig


def hidden_raster(spikes, ipd_deg):
    """Hidden spikes ``(n, T, H)`` for a few stimuli."""
    spikes, ipd_deg = to_numpy(spikes), to_numpy(ipd_deg)
    n = spikes.shape[0]
    fig, axes = plt.subplots(1, n, figsize=(3 * n, 3), squeeze=False, sharey=True)
    for i, ax in enumerate(axes[0]):
        ax.imshow(spikes[i].T, aspect="auto", interpolation="nearest", cmap="gray_r", origin="lower")
        ax.set_title(f"IPD = {ipd_deg[i]:.0f}°", fontsize=10)
        ax.set_xlabel("time step")
    axes[0, 0].set_ylabel("hidden unit")
    fig.suptitle("Hidden-layer spikes")
    fig.tight_layout()
    return fig


def confusion_and_histograms(ipd_true_deg, ipd_est_deg, confusion, n_classes: int, title: str):
    """True vs estimated IPD histograms and the column-normalised confusion matrix."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    bins = np.linspace(-90, 90, n_classes + 1)
    axes[0].hist(to_numpy(ipd_true_deg), bins=bins, alpha=0.6, label="true")
    axes[0].hist(to_numpy(ipd_est_deg), bins=bins, alpha=0.6, label="estimated")
    axes[0].set_xlabel("IPD (deg)")
    axes[0].set_ylabel("count")
    axes[0].legend()
    axes[0].set_title(title)
    im = axes[1].imshow(to_numpy(confusion), origin="lower", extent=(-90, 90, -90, 90), vmin=0, vmax=1,
                        interpolation="nearest")
    axes[1].set_xlabel("true IPD (deg)")
    axes[1].set_ylabel("estimated IPD (deg)")
    axes[1].set_title("P(estimate | true)")
    fig.colorbar(im, ax=axes[1], fraction=0.046)
    fig.tight_layout()
    return fig


def bars(labels, means, errors, ylabel: str, title: str, chance: float | None = None):
    """Bar chart with error bars (e.g. accuracy of ablations or inhibition sites)."""
    fig, ax = plt.subplots(figsize=(max(4, 1.3 * len(labels)), 4))
    x = np.arange(len(labels))
    ax.bar(x, to_numpy(means), yerr=np.nan_to_num(to_numpy(errors)), capsize=4, color="tab:blue", alpha=0.8)
    if chance is not None:
        ax.axhline(chance, color="k", ls="--", lw=1, label="chance")
        ax.legend()
    ax.set_xticks(x)
    ax.set_xticklabels(labels, rotation=20, ha="right")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    fig.tight_layout()
    return fig


def unit_ablation(acc_drop, sign):
    """Accuracy drop when each hidden unit is silenced, coloured by the unit's sign."""
    acc_drop, sign = to_numpy(acc_drop), to_numpy(sign)
    fig, ax = plt.subplots(figsize=(8, 3.5))
    colours = np.where(sign > 0, "tab:red", "tab:blue")
    ax.bar(np.arange(len(acc_drop)), acc_drop, color=colours)
    ax.set_xlabel("hidden unit (red: excitatory, blue: inhibitory)")
    ax.set_ylabel("accuracy drop (points)")
    ax.set_title("Silencing one hidden unit")
    fig.tight_layout()
    return fig


def tuning(centres, curves, rates_hz, sign):
    """Tuning curves ``(bins, H)`` (Hz) vs IPD and the distribution of mean rates."""
    centres, curves, rates_hz, sign = to_numpy(centres), to_numpy(curves), to_numpy(rates_hz), to_numpy(sign)
    fig, axes = plt.subplots(1, 3, figsize=(14, 4), gridspec_kw={"width_ratios": [2, 2, 1.3]})
    filled = np.nan_to_num(curves, nan=-1.0)
    silent = filled.max(0) <= 0
    order = np.lexsort((filled.argmax(0), silent))     # by preferred IPD, silent units last
    for j in range(curves.shape[1]):
        axes[0].plot(centres, curves[:, j], color="tab:red" if sign[j] > 0 else "tab:blue", lw=1, alpha=0.7)
    axes[0].set_xlabel("IPD (deg)")
    axes[0].set_ylabel("rate (Hz)")
    axes[0].set_title("Tuning curves (red E, blue I)")
    im = axes[1].imshow(curves[:, order].T, aspect="auto", origin="lower", interpolation="nearest",
                        extent=(centres[0], centres[-1], -0.5, curves.shape[1] - 0.5))
    axes[1].set_xlabel("IPD (deg)")
    axes[1].set_ylabel("hidden unit (by preferred IPD; silent on top)")
    fig.colorbar(im, ax=axes[1], fraction=0.046, label="Hz")
    axes[2].hist(rates_hz, bins=15, color="gray")
    axes[2].set_xlabel("mean rate (Hz)")
    axes[2].set_ylabel("units")
    axes[2].set_title(f"mean {np.mean(rates_hz):.0f} Hz")
    fig.tight_layout()
    return fig


def sweep_curve(ratios, means, halfwidths, chance: float, per_model=None):
    """Test accuracy vs ie_ratio, mean +- 95% CI over seeds (dots: single networks)."""
    fig, ax = plt.subplots(figsize=(6, 4))
    ratios, means, halfwidths = to_numpy(ratios), to_numpy(means), to_numpy(halfwidths)
    if per_model is not None:
        r, a = per_model
        ax.scatter(to_numpy(r), to_numpy(a), s=10, color="gray", alpha=0.6, label="networks")
    ax.errorbar(ratios, means, yerr=np.nan_to_num(halfwidths), marker="o", capsize=4, label="mean ± 95% CI")
    ax.axhline(chance, color="k", ls="--", lw=1, label="chance")
    ax.set_xlabel("ie_ratio (fraction inhibitory)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(0, 100)
    ax.legend()
    fig.tight_layout()
    return fig


def learning_curves(val_acc, labels, title: str):
    """Validation accuracy per epoch ``(epochs, M)`` grouped by label."""
    val_acc = np.asarray(val_acc) * 100
    fig, ax = plt.subplots(figsize=(6, 4))
    uniq = list(dict.fromkeys(labels))
    cmap = plt.get_cmap("viridis", max(len(uniq), 2))
    for i, lab in enumerate(uniq):
        cols = [j for j, l in enumerate(labels) if l == lab]
        ax.plot(np.arange(1, val_acc.shape[0] + 1), val_acc[:, cols].mean(1), color=cmap(i), label=str(lab))
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation accuracy (%)")
    ax.set_title(title)
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    return fig
