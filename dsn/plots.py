"""Figures of a DSN: optimisation traces, pair plots, Hessian eigen-directions.

Pure functions of tensors/arrays returning matplotlib figures (no file I/O).
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from core.outputs import to_numpy


def entropy_limits(entropy, reference_entropy: float | None = None, pad: float = 0.08) -> tuple[float, float]:
    """y-limits of the entropy panel that hold every epoch's entropy *and* the reference.

    Args:
        entropy: (epochs,) H(q) per AL epoch (nats); non-finite values are ignored.
        reference_entropy: the ceiling H* (nats) or None.
        pad: margin on each side as a fraction of the span (so a line at an extreme is
            drawn inside the frame, not under the spine).
    Returns (low, high) with low < high.
    """
    values = np.asarray(to_numpy(entropy), dtype=float).ravel()
    if reference_entropy is not None:
        values = np.append(values, float(reference_entropy))
    values = values[np.isfinite(values)]
    if values.size == 0:
        return 0.0, 1.0
    lo, hi = float(values.min()), float(values.max())
    span = max(hi - lo, 1e-3 * max(1.0, abs(hi)), 1e-6)
    return lo - pad * span, hi + pad * span


def plot_traces(history: dict, stat_names: list[str], mu, best_epoch: int, reference_entropy=None):
    """Entropy per AL epoch, and E[T_j] against mu_j per epoch; dotted line at the kept epoch,
    dashed lines where a restart begins (``history["restart"]``: restart index per epoch).

    The entropy panel's y-range always holds the reference entropy H* (``reference_entropy``),
    and its legend lists only what is drawn: "converged" only when an epoch was accepted, the
    kept epoch only when there is one, H* with its value and the kept epoch's gap to it."""
    ep = np.arange(1, len(history["entropy"]) + 1)
    m = len(stat_names)
    fig, axes = plt.subplots(1, 1 + m, figsize=(3.0 * (1 + m), 2.8), squeeze=False)
    ax = axes[0, 0]
    H = np.asarray(to_numpy(history["entropy"]), dtype=float)
    ax.plot(ep, H, "o-", color="k", ms=3, label="H(q), fresh samples")
    acc = to_numpy(history["accepted"]).astype(bool)
    if acc.any():
        ax.plot(ep[acc], H[acc], "o", color="tab:green", ms=6, label="converged (epoch test)")
    if reference_entropy is not None:
        ref = float(reference_entropy)
        gap = f", gap {ref - H[best_epoch]:.2f}" if 0 <= best_epoch < len(H) else ""
        ax.axhline(ref, color="tab:red", ls="--", lw=1.2, label=f"max-ent ceiling H* = {ref:.2f}{gap}")
    ax.set_ylim(*entropy_limits(H, reference_entropy))
    ax.set(xlabel="AL epoch", ylabel="H(q) (nats)", title="entropy")
    R = to_numpy(history["R"]) if m else np.zeros((len(ep), 0))
    mu = to_numpy(mu)
    for j in range(m):
        ax = axes[0, 1 + j]
        ax.plot(ep, R[:, j] + mu[j], "o-", ms=3)
        ax.axhline(mu[j], color="k", lw=1)
        ax.set(xlabel="AL epoch", title=f"E[{stat_names[j]}]")
    restart = to_numpy(history.get("restart", np.zeros(len(ep)))).astype(int)
    starts = ep[1:][np.diff(restart) != 0] - 0.5  # between the last epoch of one restart and the next
    for k, ax in enumerate(axes[0]):
        if best_epoch >= 0:
            ax.axvline(best_epoch + 1, color="k", ls=":", lw=1.2, label="kept epoch" if k == 0 else None)
        for x in starts:
            ax.axvline(x, color="0.6", ls="--", lw=0.8)
    axes[0, 0].legend(fontsize=6)
    kept = "dotted: max-entropy converged epoch" if best_epoch >= 0 else "no converged epoch"
    extra = "; dashed: a restart begins" if len(starts) else ""
    fig.suptitle(f"augmented-Lagrangian optimisation ({kept}{extra})", fontsize=10)
    fig.tight_layout()
    return fig


def pair_plot(X, names: list[str], color=None, title: str = "", lines: dict | None = None,
              directions: list[tuple] | None = None, max_points: int = 2000, max_dims: int = 12):
    """Scatter matrix of X (n, d) with histograms on the diagonal.

    ``color``: (n,) values (e.g. log q) for the points; ``lines``: {dim: value} reference
    values drawn on every panel of that dimension; ``directions``: list of
    (point (d,), most (d,), least (d,)) drawn as solid (most degenerate) and dotted (least)
    segments through each point. Only the first ``max_dims`` dimensions are drawn (the
    title says so), which keeps the figure readable for large D.
    """
    X = to_numpy(X)[:max_points]
    if X.shape[1] > max_dims:
        title = f"{title} [first {max_dims} of {X.shape[1]} dimensions]"
        X = X[:, :max_dims]
    d = X.shape[1]
    c = to_numpy(color)[:max_points] if color is not None else None
    fig, axes = plt.subplots(d, d, figsize=(2.0 * d + 0.6, 2.0 * d), squeeze=False)
    span = X.max(0) - X.min(0) + 1e-9
    for i in range(d):
        for j in range(d):
            ax = axes[i, j]
            if i == j:
                ax.hist(X[:, i], bins=40, color="0.5")
            elif i > j:
                if c is not None:
                    sc = ax.scatter(X[:, j], X[:, i], c=c, s=2, cmap="viridis", rasterized=True)
                else:
                    ax.scatter(X[:, j], X[:, i], s=2, color="tab:blue", alpha=0.5, rasterized=True)
                for pt, most, least in directions or []:
                    pt, most, least = to_numpy(pt), to_numpy(most), to_numpy(least)
                    for vec, ls in ((most, "-"), (least, ":")):
                        u = vec[[j, i]]
                        if np.linalg.norm(u) < 1e-9:
                            continue
                        u = u / np.linalg.norm(u) * 0.25 * np.array([span[j], span[i]])
                        ax.plot([pt[j] - u[0], pt[j] + u[0]], [pt[i] - u[1], pt[i] + u[1]],
                                color="r", ls=ls, lw=1.5)
                    ax.plot(pt[j], pt[i], "r.", ms=5)
            else:
                ax.axis("off")
                continue
            for dim, val in (lines or {}).items():
                if dim == j:
                    ax.axvline(val, color="k", lw=0.8)
                if dim == i and i != j:
                    ax.axhline(val, color="k", lw=0.8)
            if i == d - 1:
                ax.set_xlabel(names[j])
            if j == 0 and i > 0:
                ax.set_ylabel(names[i])
            ax.tick_params(labelsize=6)
    if c is not None and d > 1:
        fig.colorbar(sc, ax=axes[:, -1].tolist(), shrink=0.6, label="log q(z)")
    fig.subplots_adjust(top=1.0 - 0.6 / (2.0 * d))
    fig.suptitle(title, fontsize=10)
    return fig


def weighted_histogram(x, weights, edges):
    """Density histogram of samples x (n,) with weights (n,) (normalised here) on ``edges``."""
    x, w = np.asarray(x, dtype=float), np.asarray(weights, dtype=float)
    mass, _ = np.histogram(x, bins=edges, weights=w / w.sum())
    return mass / np.diff(edges)


def plot_marginals(z_flow, z_ref, w_ref, names: list[str], lower, upper, bins: int = 40, max_dims: int = 8,
                   title: str = ""):
    """The flow's marginal densities beside the max-entropy dual's, one panel per parameter.

    ``z_flow`` (n, D) samples of q; ``z_ref`` (N, D) uniform draws with max-entropy weights
    ``w_ref`` (N,) (:func:`dsn.maxent.maxent_reference`). For D = 2 a second row shows both
    joint densities on one colour scale, where an edge in p* (e.g. STG's bifurcation) is seen.
    """
    zf, zr, wr = to_numpy(z_flow), to_numpy(z_ref), to_numpy(w_ref)
    lo, hi = to_numpy(lower), to_numpy(upper)
    d = min(zf.shape[1], max_dims)
    rows = 2 if zf.shape[1] == 2 else 1
    # constrained layout keeps the joint densities' shared colour bar beside them, not over the flow's panel
    fig, axes = plt.subplots(rows, d, figsize=(2.6 * d + 0.6, 2.4 * rows + 0.4), squeeze=False,
                             layout="constrained")
    for j in range(d):
        edges = np.linspace(lo[j], hi[j], bins + 1)
        ax = axes[0, j]
        ax.stairs(weighted_histogram(zr[:, j], wr, edges), edges, color="tab:red", lw=1.5, label="max-entropy dual")
        ax.stairs(weighted_histogram(zf[:, j], np.ones(len(zf)), edges), edges, color="tab:blue", lw=1.5,
                  label="flow q")
        ax.set_xlabel(names[j])
        ax.tick_params(labelsize=7)
    axes[0, 0].set_ylabel("density")
    axes[0, 0].legend(fontsize=7)
    if rows == 2:
        e0 = np.linspace(lo[0], hi[0], bins + 1)
        e1 = np.linspace(lo[1], hi[1], bins + 1)
        area = np.diff(e0)[:, None] * np.diff(e1)[None, :]
        dens = []
        for z, w in ((zr, wr / wr.sum()), (zf, np.full(len(zf), 1.0 / len(zf)))):
            mass, _, _ = np.histogram2d(z[:, 0], z[:, 1], bins=[e0, e1], weights=w)
            dens.append(mass / area)
        vmax = max(float(x.max()) for x in dens) or 1.0
        for ax, dn, label in zip(axes[1], dens, ("max-entropy dual p*", "flow q")):
            im = ax.pcolormesh(e0, e1, dn.T, vmin=0, vmax=vmax, cmap="magma", rasterized=True)
            ax.set_title(label, fontsize=8)
            ax.set_xlabel(names[0])
            ax.set_ylabel(names[1])
            ax.tick_params(labelsize=7)
        fig.colorbar(im, ax=axes[1].tolist(), shrink=0.8, label="density")
    if zf.shape[1] > max_dims:
        title = f"{title} [first {max_dims} of {zf.shape[1]} dimensions]"
    fig.suptitle(title, fontsize=10)
    return fig
