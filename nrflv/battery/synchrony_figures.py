"""Figures of the synchrony analysis: the groups in both periods, the corrected correlograms with
their damped-cosine fits, and experiment 2's phase test and amplitude against distance."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from nrflv.measures.correlation import damped_cosine  # noqa: E402

PERIOD_STYLE = {"during": {"color": "C0"}, "before": {"color": "0.55", "ls": "--"}}


def _errorbar(ax, x, g: pd.DataFrame, key: str, **kw):
    m = g[key].to_numpy(float)
    err = np.stack([m - g[f"{key}_lo"].to_numpy(float), g[f"{key}_hi"].to_numpy(float) - m])
    ax.errorbar(x, m, yerr=np.nan_to_num(err), capsize=3, marker="o", ms=3, **kw)


def groups_figure(groups: pd.DataFrame) -> plt.Figure:
    """Rows: channel pairs, centre-flank pairs, along a bar; columns: the measures; during the
    stimulus (solid) and before it (dashed grey)."""
    fig, axs = plt.subplots(3, 3, figsize=(12, 8.5), squeeze=False)
    before = "before_xcorr_zero_lag" in groups
    for col, key in enumerate(("xcorr_zero_lag", "coherence", "plv")):
        for prefix, period in (("", "during"), ("before_", "before")):
            if prefix and not before:
                continue
            k = prefix + key
            style = PERIOD_STYLE[period]
            ch = groups[groups["comparison"] == "channels"]
            if not ch.empty:
                _errorbar(axs[0, col], ch["channel_distance"], ch, k, label=period, **style)
            cf = groups[groups["comparison"] == "centre_flank"]
            for rel, marker in (("collinear", "o"), ("orthogonal", "s")):
                g = cf[cf["relation"] == rel] if not cf.empty else cf
                if not g.empty:
                    st = dict(style, color="C0" if rel == "collinear" else "C1", alpha=0.4 if prefix else 1.0)
                    _errorbar(axs[1, col], g["distance"], g, k, label=f"{rel}, {period}", **st)
            lb = groups[groups["comparison"] == "along_bar"]
            if not lb.empty:
                _errorbar(axs[2, col], np.arange(len(lb)) + (0.1 if prefix else 0), lb, k, label=period, **style)
                axs[2, col].set_xticks(np.arange(len(lb)), lb["stimulus_set"].tolist())
        axs[0, col].set_xlabel("channel distance (circular)")
        axs[1, col].set_xlabel("centre-flank distance (px)")
        for row in range(3):
            axs[row, col].axhline(0, color="k", lw=0.5)
            axs[row, col].set_ylabel(f"{key} (shift-corrected)", fontsize=8)
    for row in range(3):
        if axs[row, 0].get_legend_handles_labels()[0]:
            axs[row, 0].legend(fontsize=6)
    fig.suptitle("synchrony, shift-predictor corrected (95% bootstrap intervals over trials), during the stimulus "
                 "and in the blank before it; rows: channel pairs at one site, centre-flank pairs, along a bar",
                 fontsize=9)
    fig.tight_layout()
    return fig


def xcorr_figure(fits: list[tuple[dict, torch.Tensor]], lags_ms: np.ndarray, fit_table: pd.DataFrame):
    """Each group's mean corrected correlogram and its damped-cosine fit."""
    if not fits:
        return None
    n = len(fits)
    cols = min(4, n)
    rows = -(-n // cols)
    fig, axs = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.4 * rows), squeeze=False)
    for ax, (label, xc), (_, f) in zip(axs.flat, fits, fit_table.iterrows()):
        mean = xc.reshape(-1, xc.shape[-1]).mean(0).cpu().numpy()
        ax.plot(lags_ms, mean, color="0.3", lw=0.8)
        if np.isfinite(f["frequency_hz"]):
            ax.plot(lags_ms, damped_cosine(torch.as_tensor(lags_ms), f["amplitude"], f["frequency_hz"], f["phase"],
                                           f["decay_ms"], f["offset"]).numpy(), color="C3", lw=0.8)
        ax.set_title(", ".join(f"{v}" for k, v in label.items() if k != "comparison"), fontsize=7)
        ax.axvline(0, color="k", lw=0.4)
    for ax in list(axs.flat)[n:]:
        ax.axis("off")
    fig.suptitle("mean shift-corrected cross-correlograms during the stimulus (grey) and damped-cosine fits (red); "
                 "lag in ms", fontsize=9)
    fig.tight_layout()
    return fig


def exp2_figure(phases: pd.DataFrame, groups: pd.DataFrame, slopes: pd.DataFrame) -> plt.Figure:
    """Experiment 2: phase lag of flank behind centre (circular mean, 95% interval) and the
    corrected zero-lag amplitude against distance, collinear vs orthogonal, both periods."""
    fig, axs = plt.subplots(1, 2, figsize=(11, 4), squeeze=False)
    ph = phases[phases["comparison"] == "centre_flank"]
    cf = groups[groups["comparison"] == "centre_flank"]
    for rel, colour, dx in (("collinear", "C0", -0.08), ("orthogonal", "C1", 0.08)):
        for period in ("during", "before"):
            g = ph[(ph["relation"] == rel) & (ph["period"] == period)]
            if not g.empty:
                m = g["phase_lag_deg"].to_numpy()
                err = np.nan_to_num(np.stack([m - g["phase_lag_lo_deg"].to_numpy(), g["phase_lag_hi_deg"].to_numpy() - m]))
                axs[0, 0].errorbar(g["distance"] + dx + (0.04 if period == "before" else 0), m, yerr=err, capsize=3,
                                   marker="o", ms=3, color=colour, alpha=1.0 if period == "during" else 0.4,
                                   ls="-" if period == "during" else "--", label=f"{rel}, {period}")
                for x, y, p in zip(g["distance"], m, g["v_test_p"]):
                    if period == "during":
                        axs[0, 0].annotate(f"p={p:.2g}", (x + dx, y), fontsize=5, color=colour)
            key = "xcorr_zero_lag" if period == "during" else "before_xcorr_zero_lag"
            a = cf[cf["relation"] == rel] if not cf.empty else cf
            if not a.empty and key in a:
                s = slopes[(slopes["experiment"] == 2) & (slopes["group"] == rel) & (slopes["period"] == period)] \
                    if not slopes.empty else slopes
                lab = f"{rel}, {period}"
                if not s.empty:
                    lab += f": slope {s.iloc[0]['slope']:.2g} [{s.iloc[0]['lo']:.2g}, {s.iloc[0]['hi']:.2g}]/px"
                _errorbar(axs[0, 1], a["distance"] + dx, a, key, color=colour, alpha=1.0 if period == "during" else 0.4,
                          ls="-" if period == "during" else "--", label=lab)
    axs[0, 0].axhline(0, color="k", lw=0.5)
    axs[0, 0].set_ylabel("phase lag of flank behind centre (deg)")
    axs[0, 0].set_title("phase of the corrected band coherency (circular mean, 95% CI; V-test p)", fontsize=8)
    axs[0, 1].axhline(0, color="k", lw=0.5)
    axs[0, 1].set_ylabel("corrected xcorr at zero lag (95% CI)")
    for ax in axs[0]:
        ax.set_xlabel("centre-flank distance (px)")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=6)
    fig.suptitle("experiment 2: centre and flank Gabors (pairs), same channel at both centres", fontsize=9)
    fig.tight_layout()
    return fig
