"""Orientation tuning from the ``just_angle`` set (one Gabor per direction, 0-360 degrees).

The response of a unit in a trial is its mean state during the stimulus minus during the blank
before it. Over the directions, the responses are fitted by cosines at 1 theta (direction) and
2 theta (orientation) (see :func:`nrflv.measures.tuning.fit_direction_tuning`). A unit is tuned
when the F-test of that fit against a flat response rejects at ``alpha``
(:func:`nrflv.measures.tuning.tuning_p_value`) and, optionally, the fit explains at least
``tuned_r2`` of the variance. An R² threshold alone does not test anything: with 16 directions,
R² >= 0.3 passes about 37 % of untuned units. The chance level of the criterion is reported
beside the tuned fraction, both as its nominal level and as the fraction passing when the
directions are shuffled across trials (``n_tuning_shuffles`` permutations). The directions and orientations come from
the recording's own per-trial coordinates, so generator and analysis cannot disagree.
The channel preferences (the unit at the site) are what ``spectra``, ``transients`` and
``synchrony`` use to pick units "matched" to a stimulus (within ``match_tolerance``).
"""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from core.suite import AnalysisResult  # noqa: E402
from nrflv.battery.common import matched_channels, phase_means  # noqa: E402
from nrflv.battery.reading import Experiment  # noqa: E402
from nrflv.measures.tuning import (fit_direction_tuning, shuffled_tuned_fraction,  # noqa: E402
                                  significantly_tuned, tuning_p_value)

SET = "just_angle"


def channel_preferences(exp: Experiment, cfg) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Tuning of every unit of the window at site 0: (per-channel table of the centre unit,
    per-unit table, what the figures need)."""
    table = exp.table(SET)
    during, blank = phase_means(exp, "state", table, cfg.onset_skip_ms, site=0)   # (N, C, P, P)
    resp = (during - blank).double()
    direction = torch.tensor(table["direction"].to_numpy(), dtype=torch.float64, device=resp.device)
    fit = fit_direction_tuning(direction, resp)
    p_value = tuning_p_value(fit)
    is_tuned = significantly_tuned(fit, cfg.alpha, cfg.tuned_r2)
    chance = shuffled_tuned_fraction(direction, resp, cfg.alpha, cfg.tuned_r2, cfg.n_tuning_shuffles,
                                     torch.Generator().manual_seed(cfg.seed))
    c, p = resp.shape[1], resp.shape[-1]
    rows = []
    for ch in range(c):
        for y in range(p):
            for x in range(p):
                i = (ch, y, x)
                rows.append({"channel": ch, "dy": y - p // 2, "dx": x - p // 2,
                             "baseline": float(fit.baseline[i]), "amp1": float(fit.amp1[i]),
                             "pref_direction": float(fit.pref_direction[i]), "amp2": float(fit.amp2[i]),
                             "pref_orientation": float(fit.pref_orientation[i]), "r2_1": float(fit.r2_1[i]),
                             "r2_2": float(fit.r2_2[i]), "r2": float(fit.r2[i]), "p_value": float(p_value[i]),
                             "tuned": bool(is_tuned[i]), "n_directions": int(fit.n)})
    units = pd.DataFrame(rows)
    centre = units[(units["dy"] == 0) & (units["dx"] == 0)].drop(columns=["dy", "dx"]).reset_index(drop=True)
    return centre, units, {"direction": direction.cpu().numpy(), "resp": resp[..., p // 2, p // 2].cpu().numpy(),
                           "chance_fraction_shuffled": chance}


def run(exp: Experiment, cfg) -> tuple[AnalysisResult, pd.DataFrame]:
    centre, units, raw = channel_preferences(exp, cfg)
    fig = _polar_figure(centre, raw)
    hist = _r2_figure(units, cfg.alpha, raw["chance_fraction_shuffled"])
    scalars = {"fraction_tuned_centre": float(centre["tuned"].mean()),
               "fraction_tuned_units": float(units["tuned"].mean()),
               "chance_fraction_nominal": float(cfg.alpha),
               "chance_fraction_shuffled": float(raw["chance_fraction_shuffled"]),
               "median_r2_centre": float(centre["r2"].median())}
    # which channels each trial of every set drives at their preferred orientation
    mask = matched_channels(centre, exp.conditions, cfg.match_tolerance).numpy()
    matched = exp.conditions[["trial", "stimulus_set", "direction", "orientation", "contrast"]].copy()
    matched["n_matched"] = mask.sum(1)
    matched["matched_channels"] = [" ".join(map(str, np.flatnonzero(m))) for m in mask]
    scalars["mean_matched_channels_per_trial"] = float(mask.sum(1).mean())
    return AnalysisResult(tables={"channel_tuning": centre, "unit_tuning": units, "matched_channels": matched},
                          figures={"polar_tuning": fig, "tuning_r2": hist}, scalars=scalars), centre


def _polar_figure(centre: pd.DataFrame, raw: dict) -> plt.Figure:
    c = len(centre)
    cols = min(8, c)
    rows = -(-c // cols)
    fig = plt.figure(figsize=(1.9 * cols, 2.0 * rows + 0.5))
    theta = np.deg2rad(raw["direction"])
    order = np.argsort(theta)
    grid = np.linspace(0, 2 * np.pi, 181)
    for ch in range(c):
        ax = fig.add_subplot(rows, cols, ch + 1, projection="polar")
        r = raw["resp"][:, ch]
        row = centre.iloc[ch]
        fit = (row["baseline"] + row["amp1"] * np.cos(grid - np.deg2rad(row["pref_direction"]))
               + row["amp2"] * np.cos(2 * (grid - np.deg2rad(row["pref_orientation"]))))
        shift = -min(r.min(), fit.min(), 0.0)   # polar radii must be >= 0: responses shifted together
        ax.plot(theta[order], r[order] + shift, ".", ms=2, color="0.3")
        ax.plot(grid, fit + shift, color="C3" if row["tuned"] else "C0", lw=1)
        ax.set_xticks([]), ax.set_yticks([])
        ax.set_title(f"ch {ch}  R²={row['r2']:.2f}", fontsize=7)
    fig.suptitle("direction tuning of the unit at the Gabor's centre (red: tuned); radius: response + offset",
                 fontsize=9)
    fig.tight_layout()
    return fig


def _r2_figure(units: pd.DataFrame, alpha: float, chance: float) -> plt.Figure:
    fig, axs = plt.subplots(1, 2, figsize=(9, 3))
    bins = np.linspace(0, 1, 21)
    axs[0].hist([units.loc[units["tuned"], "r2"], units.loc[~units["tuned"], "r2"]], bins=bins, stacked=True,
                color=["C3", "0.6"], label=["tuned", "not tuned"])
    axs[0].set_xlabel("R² of the cosine fit (1θ + 2θ)")
    axs[0].set_ylabel("units")
    axs[0].legend(fontsize=7)
    axs[1].hist(units["p_value"], bins=bins, color="0.5")
    axs[1].axvline(alpha, color="C3", ls="--", label=f"alpha = {alpha:g}")
    axs[1].set_xlabel("p-value of the tuning F-test")
    axs[1].legend(fontsize=7)
    fig.suptitle(f"{units['tuned'].mean():.0%} of units tuned; chance: {alpha:.0%} nominal, "
                 f"{chance:.1%} with shuffled directions", fontsize=9)
    fig.tight_layout()
    return fig
