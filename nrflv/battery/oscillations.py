"""Oscillating units, and their summed peak frequency x power against contrast.

On the contrast trials (``contrast_and_angle``), every unit of the window at site 0 is tested
during the stimulus and, as its own series, during the blank before it (each after
``onset_skip_ms``, both periods equally long): linearly detrended Welch power spectrum,
prominent peaks (segments of ``oscillation_nperseg`` steps), ``oscillating`` or not (:func:`nrflv.measures.oscillation.oscillation_classes`).
The units that enter the by-contrast summary are those the original uses: *active* in the
trial (stimulus above the blank by Welch's test on block means, as ``active_units``) and in a
*matched* channel (``lfp_units: matched``; every channel with ``lfp_units: all``). Per
contrast: the fraction of those units oscillating and their summed peak frequency x power,
each period with a bootstrap CI over trials (unit values are averaged within a trial first).

The original's figure of this quantity plotted the 'outside' (pre-stimulus) series as a copy
of the 'during' one (both grouped the same column); here the blank before is computed from
its own samples, and the figure draws both.
"""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from core.suite import AnalysisResult  # noqa: E402
from nrflv.battery.common import bootstrap_mean_ci, correlation, matched_selection  # noqa: E402
from nrflv.battery.reading import Experiment  # noqa: E402
from nrflv.battery.spectra import contrast_trials  # noqa: E402
from nrflv.measures.activity import active_units  # noqa: E402
from nrflv.measures.oscillation import detrended_spectrum, oscillation_classes  # noqa: E402

PERIODS = ("stimulus", "before")


def equal_periods(exp: Experiment, skip_ms: float) -> dict[str, slice]:
    """The stimulus and the blank before it, each after ``skip_ms``, cut to the same length."""
    during, blank = exp.samples(skip_ms, "stimulus"), exp.samples(skip_ms, "blank")
    n = min(during.stop - during.start, blank.stop - blank.start)
    return {"stimulus": slice(during.start, during.start + n), "before": slice(blank.start, blank.start + n)}


def unit_table(exp: Experiment, cfg, preferences: pd.DataFrame | None) -> tuple[pd.DataFrame, np.ndarray]:
    """One row per trial x unit of the window at site 0 (channel, dy, dx), with ``active``,
    ``matched`` and each period's class, peak and frequency x power; and the spectra's
    frequencies."""
    table = contrast_trials(exp)
    periods = equal_periods(exp, cfg.onset_skip_ms)
    sel = matched_selection(exp, table, preferences, cfg.match_tolerance, cfg.lfp_units)
    frames, k, freqs = [], 0, None
    for blk in exp.windows("state", table, 0):
        x = blk.values.double()                                         # (b, T, C, P, P)
        b, _, c, p, _ = x.shape
        act = active_units(x[:, periods["stimulus"]].movedim(1, -1), x[:, periods["before"]].movedim(1, -1),
                           alpha=cfg.alpha)["active"]                   # (b, C, P, P)
        cols = {"trial": np.repeat(blk.trials, c * p * p),
                "channel": np.tile(np.repeat(np.arange(c), p * p), b),
                "dy": np.tile(np.repeat(np.arange(p) - p // 2, p), b * c),
                "dx": np.tile(np.arange(p) - p // 2, b * c * p),
                "active": act.cpu().numpy().reshape(-1),
                "matched": sel.mask[k:k + b].cpu().numpy()[:, :, None, None].repeat(p, 2).repeat(p, 3).reshape(-1)}
        for name, sl in periods.items():
            freqs, power = detrended_spectrum(x[:, sl].movedim(1, -1), exp.fs, cfg.oscillation_nperseg)
            cls = oscillation_classes(freqs, power, peak_to_median=cfg.oscillation_peak_ratio)
            for key, v in cls.items():
                cols[f"{key}_{name}"] = v.reshape(-1)
        frames.append(pd.DataFrame(cols))
        k += b
    units = pd.concat(frames, ignore_index=True)
    units = units.merge(table[["trial", "direction", "orientation", "contrast"]], on="trial", how="left")
    return units, freqs.cpu().numpy()


def by_contrast(units: pd.DataFrame, cfg) -> pd.DataFrame:
    """Per contrast and period, over the active, matched units: fraction oscillating and mean
    frequency x power, each averaged within trials, with bootstrap CIs over trials."""
    use = units[units["active"] & units["matched"]]
    rows = []
    for i, c in enumerate(np.unique(units["contrast"])):
        at_c = use[use["contrast"] == c]
        per_trial = at_c.groupby("trial")
        row = {"contrast": float(c), "trials": int(per_trial.ngroups),
               "trials_without_units": int(units.loc[units["contrast"] == c, "trial"].nunique() - per_trial.ngroups),
               "units": int(len(at_c))}
        for j, period in enumerate(PERIODS):
            for key, col in (("fraction_oscillating", f"oscillating_{period}"),
                             ("freq_power_product", f"freq_power_product_{period}")):
                vals = per_trial[col].mean().to_numpy(dtype=float)
                m, lo, hi = bootstrap_mean_ci(vals, cfg.n_bootstrap, cfg.seed + 100 * i + 10 * j + len(key))
                row.update({f"{key}_{period}": m, f"{key}_{period}_lo": lo, f"{key}_{period}_hi": hi})
        rows.append(row)
    return pd.DataFrame(rows)


def run(exp: Experiment, cfg, preferences: pd.DataFrame | None = None) -> AnalysisResult:
    units, freqs = unit_table(exp, cfg, preferences)
    summary = by_contrast(units, cfg)
    classes = (units.groupby(["contrast"])[[f"oscillating_{p}" for p in PERIODS]].mean()
               .rename(columns=lambda k: k.replace("oscillating", "fraction_oscillating_all_units")).reset_index())
    summary = summary.merge(classes, on="contrast", how="left")
    top = summary.iloc[-1]
    scalars = {"fraction_oscillating_stimulus": float(units["oscillating_stimulus"].mean()),
               "fraction_oscillating_before": float(units["oscillating_before"].mean()),
               "freq_power_product_top_contrast": float(top["freq_power_product_stimulus"]),
               "freq_power_product_before_top_contrast": float(top["freq_power_product_before"]),
               "freq_power_product_contrast_corr": correlation(summary["contrast"],
                                                               summary["freq_power_product_stimulus"]),
               "units_in_summary": float(summary["units"].sum()),
               "resolution_hz": float(freqs[1] - freqs[0]) if len(freqs) > 1 else float("nan")}
    return AnalysisResult(tables={"unit_oscillations": units, "oscillations_by_contrast": summary},
                          figures={"oscillations_by_contrast": _figure(summary, cfg)}, scalars=scalars)


def _figure(summary: pd.DataFrame, cfg) -> plt.Figure:
    fig, axs = plt.subplots(1, 2, figsize=(9, 3.4))
    for ax, key, label in ((axs[0], "freq_power_product", "Σ peak frequency × power (Hz · state²)"),
                           (axs[1], "fraction_oscillating", "fraction of units oscillating")):
        for period, style in (("stimulus", "o-"), ("before", "s:")):
            m = summary[f"{key}_{period}"].to_numpy()
            err = np.stack([m - summary[f"{key}_{period}_lo"].to_numpy(), summary[f"{key}_{period}_hi"].to_numpy() - m])
            ax.errorbar(summary["contrast"], m, yerr=np.nan_to_num(np.abs(err)), fmt=style, capsize=3,
                        label="during the stimulus" if period == "stimulus" else "blank before")
        ax.set_xlabel("contrast")
        ax.set_ylabel(label)
    axs[0].legend(fontsize=7)
    units = "active, matched units" if cfg.lfp_units == "matched" else "active units"
    fig.suptitle(f"oscillating units by contrast ({units} at site 0; 95% bootstrap CIs over trials)", fontsize=9)
    fig.tight_layout()
    return fig
