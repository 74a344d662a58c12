"""Figures of the RSA family (matplotlib Figures; the managers save them)."""
from __future__ import annotations

from typing import Mapping

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from core.outputs import to_numpy  # noqa: E402


def gratings_figure(images, ori) -> plt.Figure:
    """Example stimuli with their orientation and tilt label."""
    images, ori = to_numpy(images), to_numpy(ori)
    n = len(images)
    fig, axs = plt.subplots(1, n, figsize=(2.2 * n, 2.2))
    for ax, img, o in zip(np.atleast_1d(axs), images, ori):
        ax.imshow(img, cmap="gray", vmin=0, vmax=1)
        ax.set_title(f"{o:+.0f}° ({'right' if o > 0 else 'left'})", fontsize=9)
        ax.set_xticks([]), ax.set_yticks([])
    fig.suptitle("grating stimuli (orientation from vertical)")
    fig.tight_layout()
    return fig


def filters_figure(weights) -> plt.Figure:
    """Convolution kernels ``(C, 1, K, K)``."""
    w = to_numpy(weights)[:, 0]
    fig, axs = plt.subplots(1, len(w), figsize=(1.8 * len(w), 2.0))
    lim = np.abs(w).max()
    for k, (ax, f) in enumerate(zip(np.atleast_1d(axs), w)):
        ax.imshow(f, cmap="RdBu_r", vmin=-lim, vmax=lim)
        ax.set_title(f"channel {k}", fontsize=9)
        ax.set_xticks([]), ax.set_yticks([])
    fig.suptitle("convolution filters")
    fig.tight_layout()
    return fig


def _show_nan(ax, x, values, **text) -> int:
    """Write "NaN" where a bar's value is NaN (a missing bar must not look like a zero):
    returns how many."""
    values = np.asarray(values, dtype=float)
    bad = np.flatnonzero(~np.isfinite(values))
    for k in bad:
        ax.text(np.atleast_1d(x)[k], 0.0, "NaN", ha="center", va="bottom", color="tab:red", fontsize=8,
                fontweight="bold", rotation=90, **text)
    return bad.size


def rdms_figure(rdms: Mapping[str, object], ori, metric: str, title: str | None = None) -> plt.Figure:
    """One panel per RDM, stimuli sorted by orientation (ticks in degrees)."""
    ori = to_numpy(ori)
    n = len(rdms)
    fig, axs = plt.subplots(1, n, figsize=(4.0 * n, 3.6))
    vmax = 2.0 if metric in ("correlation", "cosine") else None
    extent = (ori.min(), ori.max(), ori.max(), ori.min())
    for ax, (label, m) in zip(np.atleast_1d(axs), rdms.items()):
        im = ax.imshow(to_numpy(m), vmin=0.0, vmax=vmax, extent=extent, cmap="viridis")
        ax.set_title(label)
        ax.set_xlabel("orientation (°)")
        ax.set_ylabel("orientation (°)")
        fig.colorbar(im, ax=ax, label=f"dissimilarity ({metric})", shrink=0.85)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def similarity_figure(table: pd.DataFrame, ci: float, title: str | None = None) -> plt.Figure:
    """Bars of RDM similarity to V1 per layer and measure, with bootstrap CIs.

    A NaN similarity is written as "NaN" at its bar's place; a bar without a CI (too few
    stimuli or valid resamples) has no error bar.
    """
    methods = list(dict.fromkeys(table["method"]))
    layers = list(dict.fromkeys(table["layer"]))
    fig, ax = plt.subplots(figsize=(1.6 + 1.4 * len(layers) * len(methods) / 2, 3.8))
    width = 0.8 / len(methods)
    x = np.arange(len(layers))
    for k, m in enumerate(methods):
        sub = table[table["method"] == m].set_index("layer").loc[layers]
        value = sub["value"].to_numpy(float)
        err = np.stack([value - sub["ci_low"].to_numpy(float), sub["ci_high"].to_numpy(float) - value])
        err = np.nan_to_num(err, nan=0.0).clip(min=0)
        pos = x + (k - (len(methods) - 1) / 2) * width
        ax.bar(pos, np.nan_to_num(value, nan=0.0), width, yerr=err, capsize=3, label=m)
        _show_nan(ax, pos, value)
    ax.set_xticks(x, layers)
    ax.axhline(0, color="k", lw=0.5)
    ax.set_ylabel("similarity of layer RDM to V1 RDM")
    ax.set_title(title or f"RDM similarity to V1 ({ci:.0%} bootstrap CI over stimuli)", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def rdm_rows_figure(ori, rdms: Mapping[str, object], targets) -> plt.Figure:
    """Dissimilarity of every stimulus to the one nearest each target orientation."""
    ori = to_numpy(ori)
    fig, axs = plt.subplots(1, len(targets), figsize=(3.6 * len(targets), 3.4), sharey=True)
    for ax, target in zip(np.atleast_1d(axs), targets):
        i = int(np.argmin(np.abs(ori - target)))
        for label, m in rdms.items():
            ax.plot(ori, to_numpy(m)[i], label=label)
        ax.axvline(ori[i], color=".7", zorder=-1)
        ax.set_title(f"dissimilarity to the {ori[i]:+.0f}° stimulus", fontsize=10)
        ax.set_xlabel("orientation (°)")
    np.atleast_1d(axs)[0].set_ylabel("dissimilarity")
    np.atleast_1d(axs)[-1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1, 1))
    fig.tight_layout()
    return fig


def tuning_figure(ori, responses: Mapping[str, object], picks: Mapping[str, np.ndarray]) -> plt.Figure:
    """Tuning curves of a few random units of each population."""
    ori = to_numpy(ori)
    order = np.argsort(ori)
    fig, axs = plt.subplots(1, len(responses), figsize=(3.8 * len(responses), 3.4))
    for ax, (label, resp) in zip(np.atleast_1d(axs), responses.items()):
        r = to_numpy(resp)
        for u in picks[label]:
            ax.plot(ori[order], r[order, u], label=f"unit {u}")
        ax.set_title(label)
        ax.set_xticks(np.linspace(-90, 90, 5))
        ax.set_xlabel("orientation (°)")
        ax.legend(fontsize=7)
    np.atleast_1d(axs)[0].set_ylabel("response")
    fig.tight_layout()
    return fig


def embedding_figure(ori, embeddings: Mapping[str, np.ndarray]) -> plt.Figure:
    """2-D embeddings coloured by orientation (cyclic colour map)."""
    ori = to_numpy(ori)
    fig, axs = plt.subplots(1, len(embeddings), figsize=(4.2 * len(embeddings), 3.8))
    for ax, (label, xy) in zip(np.atleast_1d(axs), embeddings.items()):
        pts = ax.scatter(xy[:, 0], xy[:, 1], c=ori, cmap="twilight", vmin=-90, vmax=90, s=12)
        ax.set_title(label)
        ax.set_xticks([]), ax.set_yticks([])
        ax.set_xlabel("t-SNE 1")
        ax.set_ylabel("t-SNE 2")
    fig.colorbar(pts, ax=np.atleast_1d(axs).tolist(), ticks=np.linspace(-90, 90, 5), label="orientation (°)")
    return fig


def bars_figure(values: Mapping[str, float], ylabel: str, title: str, errors=None) -> plt.Figure:
    """One bar per entry; a NaN value is written as "NaN" in place of its bar."""
    fig, ax = plt.subplots(figsize=(1.5 + 1.1 * len(values), 3.4))
    vals = np.asarray(list(values.values()), dtype=float)
    ax.bar(list(values), np.nan_to_num(vals, nan=0.0), yerr=errors, capsize=3, color="tab:blue")
    _show_nan(ax, np.arange(len(vals)), vals)
    ax.axhline(0, color="k", lw=0.5)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def cka_figure(table: pd.DataFrame, title: str) -> plt.Figure:
    """Linear CKA and debiased CKA per layer; a black tick on each CKA bar marks its chance
    level (mean CKA with the stimuli shuffled). NaN values are written as "NaN"."""
    layers = table["layer"].astype(str).tolist()
    x = np.arange(len(layers))
    width = 0.38
    fig, ax = plt.subplots(figsize=(2.0 + 1.3 * len(layers), 3.6))
    cka = table["cka"].to_numpy(float)
    deb = table["cka_debiased"].to_numpy(float)
    chance = table["cka_chance"].to_numpy(float)
    ax.bar(x - width / 2, np.nan_to_num(cka, nan=0.0), width, color="tab:blue", label="linear CKA")
    ax.bar(x + width / 2, np.nan_to_num(deb, nan=0.0), width, color="tab:orange", label="debiased CKA")
    ax.hlines(chance, x - width, x, colors="k", lw=2, label="chance (stimuli shuffled)")
    _show_nan(ax, x - width / 2, cka)
    _show_nan(ax, x + width / 2, deb)
    ax.set_xticks(x, layers)
    ax.axhline(0, color="k", lw=0.5)
    ax.set_ylabel("CKA with V1")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1, 1))
    fig.tight_layout()
    return fig


def v1_likeness_figure(table: pd.DataFrame, measures, title: str | None = None) -> plt.Figure:
    """Similarity to V1 against time step, one line per recorded variable.

    A recording with a single time step (a feed-forward network) is drawn as grouped bars,
    one group per measure, one bar per variable. NaN values are written as "NaN" on bars;
    on lines, the number of NaN steps per measure is given in its panel title.
    """
    if table["time"].nunique() == 1:
        variables = list(dict.fromkeys(table["variable"]))
        fig, ax = plt.subplots(figsize=(1.6 + 1.3 * len(measures) * max(1, len(variables)) / 2, 3.4))
        width = 0.8 / len(variables)
        for k, var in enumerate(variables):
            row = table[table["variable"] == var].iloc[0]
            pos = np.arange(len(measures)) + (k - (len(variables) - 1) / 2) * width
            vals = np.array([row[m] for m in measures], dtype=float)
            ax.bar(pos, np.nan_to_num(vals, nan=0.0), width, label=var)
            _show_nan(ax, pos, vals)
        ax.set_xticks(np.arange(len(measures)), list(measures))
        ax.set_ylabel("similarity to V1")
        if title:
            ax.set_title(title, fontsize=10)
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1, 1))
        fig.tight_layout()
        return fig
    fig, axs = plt.subplots(1, len(measures), figsize=(4.2 * len(measures), 3.4), squeeze=False)
    for ax, m in zip(axs[0], measures):
        for var, sub in table.groupby("variable", sort=False):
            ax.plot(sub["time"], sub[m], label=var, marker="o" if len(sub) < 20 else None)
        n_nan = int(table[m].isna().sum())
        ax.set_xlabel("time step")
        ax.set_title(m + (f" ({n_nan} NaN steps not drawn)" if n_nan else ""),
                     color="tab:red" if n_nan else "k")
    axs[0][0].set_ylabel("similarity to V1")
    axs[0][-1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1, 1))
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
