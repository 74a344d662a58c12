"""Active units: which units respond to the stimulus, per stimulus set.

A unit (channel, window position around recording site 0) is *active* in a trial when its state
is higher during the stimulus than during the blank before it by Welch's t-test (p < alpha) on
block means of the two phases (block means, not single steps: the chain's steps are strongly
autocorrelated and would make every unit "significant"). Activity maps show the mean
stimulus-minus-blank state of every channel over the window (the whole layer with
``record_units: all``: a retinotopic map).
"""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from core.suite import AnalysisResult  # noqa: E402
from nrflv.battery.reading import Experiment  # noqa: E402
from nrflv.measures.activity import active_units as test_units  # noqa: E402


def run(exp: Experiment, cfg) -> AnalysisResult:
    during_sl, blank_sl = exp.samples(cfg.onset_skip_ms, "stimulus"), exp.samples(cfg.onset_skip_ms, "blank")
    per_channel, per_unit, maps = [], [], {}
    for name in exp.sets:
        table = exp.table(name)
        n_active = n_units = diff_sum = None
        for blk in exp.windows("state", table, 0):
            res = test_units(blk.values[:, during_sl].movedim(1, -1), blk.values[:, blank_sl].movedim(1, -1),
                             alpha=cfg.alpha)
            act = res["active"].double()                           # (b, C, P, P)
            diff = (res["mean_during"] - res["mean_outside"]).double()
            n_active = act.sum(0) if n_active is None else n_active + act.sum(0)
            diff_sum = diff.sum(0) if diff_sum is None else diff_sum + diff.sum(0)
            n_units = len(blk.trials) if n_units is None else n_units + len(blk.trials)
        frac = (n_active / n_units).cpu().numpy()                  # (C, P, P)
        mean_diff = (diff_sum / n_units).cpu().numpy()
        maps[name] = mean_diff
        c, p, _ = frac.shape
        for ch in range(c):
            per_channel.append({"stimulus_set": name, "channel": ch, "trials": n_units,
                                "fraction_active": float(frac[ch].mean()),
                                "centre_fraction_active": float(frac[ch, p // 2, p // 2]),
                                "mean_state_change": float(mean_diff[ch].mean())})
            for y in range(p):
                for x in range(p):
                    per_unit.append({"stimulus_set": name, "channel": ch, "dy": y - p // 2, "dx": x - p // 2,
                                     "fraction_active": float(frac[ch, y, x]),
                                     "mean_state_change": float(mean_diff[ch, y, x])})
    per_channel = pd.DataFrame(per_channel)
    figures = {f"activity_map_{k}": _maps_figure(v, k) for k, v in maps.items()}
    figures["fraction_active"] = _fraction_figure(per_channel)
    scalars = {f"fraction_active/{k}": float(g["fraction_active"].mean())
               for k, g in per_channel.groupby("stimulus_set", sort=False)}
    return AnalysisResult(tables={"active_channels": per_channel, "active_units": pd.DataFrame(per_unit)},
                          figures=figures, scalars=scalars)


def _maps_figure(mean_diff: np.ndarray, name: str) -> plt.Figure:
    """Every channel's map, tiled into one image (one imshow: fast even for many channels)."""
    c, h, w = mean_diff.shape
    cols = min(8, c)
    rows = -(-c // cols)
    mosaic = np.full((rows * (h + 1) - 1, cols * (w + 1) - 1), np.nan)
    for k in range(c):
        r, q = divmod(k, cols)
        mosaic[r * (h + 1):r * (h + 1) + h, q * (w + 1):q * (w + 1) + w] = mean_diff[k]
    lim = float(np.nanmax(np.abs(mean_diff))) or 1.0
    fig, ax = plt.subplots(figsize=(1.1 * cols + 1.2, 1.1 * rows + 0.6))
    im = ax.imshow(mosaic, cmap="RdBu_r", vmin=-lim, vmax=lim)
    for k in range(c):
        r, q = divmod(k, cols)
        ax.text(q * (w + 1) - 0.45, r * (h + 1) - 0.45, str(k), fontsize=6, va="top", ha="left")
    ax.set_xticks([]), ax.set_yticks([])
    fig.colorbar(im, ax=ax, shrink=0.8, label="state: stimulus − blank")
    ax.set_title(f"activity maps around site 0, one tile per channel ({name}; mean over trials)", fontsize=8)
    return fig


def _fraction_figure(per_channel: pd.DataFrame) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(7, 3))
    for name, g in per_channel.groupby("stimulus_set", sort=False):
        ax.plot(g["channel"], g["fraction_active"], marker="o", ms=3, label=name)
    ax.set_xlabel("channel")
    ax.set_ylabel("fraction of units × trials active")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7)
    ax.set_title("active units (Welch test on block means, stimulus vs blank)", fontsize=9)
    fig.tight_layout()
    return fig
