"""The thesis's findings, each as a test on the recording with an effect size, a CI and controls.

The abstract: the model "exhibits oscillatory responses, a lag between inhibition and excitation,
and contrast-dependent transient overshoots. However, we find no synchrony." One row per claim:

============================  ===========================================================  ==========================
finding                       effect (95% bootstrap CI over trials, or channels for the lag) controls
============================  ===========================================================  ==========================
oscillatory responses         narrow-band LFP peak during the stimulus above the aperiodic  the blank before; untrained
                              (1/f) fit, log10 excess (1 = 10x), driven trials; its Hz
E-I lag                       lag of -p behind s (ms), mean over channels                     shuffled (-p of another trial
                                                                                           of the set and contrast); untrained
transient overshoot vs c      slope of the per-trial onset overshoot against contrast         shuffled contrasts; untrained
peak frequency vs c           slope of the per-trial LFP peak frequency (Hz) vs contrast      shuffled contrasts; untrained
peak power vs c               slope of the per-trial log10 LFP peak power vs contrast         shuffled contrasts; untrained
no synchrony                  collinear - orthogonal shift-corrected zero-lag correlation     untrained
no synchrony (distance)       slope of the collinear pairs' correlation against distance      untrained
============================  ===========================================================  ==========================

A finding **holds** when its CI excludes every control's interval (the untrained model's CI of
the same quantity; the shuffled control's 95% null interval; the blank's CI) -- for "no
synchrony", when the effect's CI includes 0 (no detectable synchrony); its row then gives the
smallest effect the data could have detected (``2.8 SE``: 80% power at alpha 0.05, two-sided).

The control recording is the same stimuli and protocol through the untrained model (this run's
initial weights: ``record_control: true`` records it beside the recording as ``control.zarr``).
Both recordings use the *trained* model's channel selection (its orientation preferences), so
the same units are compared. Where a quantity cannot be computed on one recording (e.g. no
matched channel), its cells are NaN and the row says why.
"""
from __future__ import annotations

from typing import Callable

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from core.suite import AnalysisResult, AnalysisSkipped  # noqa: E402
from nrflv.battery import ei_lag, synchrony  # noqa: E402
from nrflv.battery.common import bootstrap_mean_ci, lag_steps  # noqa: E402
from nrflv.battery.oscillations import equal_periods  # noqa: E402
from nrflv.battery.reading import Experiment  # noqa: E402
from nrflv.battery.spectra import contrast_trials, lfp_traces  # noqa: E402
from nrflv.battery.transients import matched_trace  # noqa: E402
from nrflv.measures.aperiodic import peak_over_aperiodic, slope_with_controls  # noqa: E402
from nrflv.measures.spectral import peak, welch  # noqa: E402
from nrflv.measures.transients import step_response  # noqa: E402

NAN3 = (float("nan"),) * 3
#: 80% power at a two-sided alpha of 0.05: z_0.975 + z_0.8
DETECTABLE_Z = 1.96 + 0.8416


def _interval(m: float, lo: float, hi: float) -> dict:
    return {"value": m, "lo": lo, "hi": hi}


_NAN = object()   # _safe's default fallback: a NaN value and interval


def _safe(fn: Callable[[], object], why: list[str], label: str, fallback=_NAN):
    """``fn()``, or ``fallback`` (default: NaN value and interval) with the reason appended to
    ``why``."""
    try:
        return fn()
    except (AnalysisSkipped, ValueError) as exc:
        why.append(f"{label}: {exc}")
        return _interval(*NAN3) if fallback is _NAN else fallback


# --- per-recording quantities -----------------------------------------------------------------

def lfp_spectra(exp: Experiment, cfg, prefs) -> tuple[pd.DataFrame, torch.Tensor, dict[str, torch.Tensor]]:
    """Contrast trials with an LFP, the frequencies, and the LFP's Welch spectra per period."""
    lfp, table, _ = lfp_traces(exp, contrast_trials(exp), prefs, cfg.match_tolerance, units=cfg.lfp_units)
    periods = equal_periods(exp, cfg.onset_skip_ms)
    n = periods["stimulus"].stop - periods["stimulus"].start
    spectra = {}
    for name, sl in periods.items():
        f, spectra[name] = welch(lfp.double()[:, sl], exp.fs, nperseg=min(cfg.spectrum_nperseg, n))
    return table, f, spectra


def oscillation_excess(lfp: tuple, cfg, period: str) -> dict:
    """Mean over driven trials of the LFP's peak over its aperiodic fit in ``period``; ``lfp``:
    what :func:`lfp_spectra` returns."""
    table, f, spectra = lfp
    driven = torch.from_numpy((table["contrast"] > 0).to_numpy().copy())
    if not driven.any():
        raise AnalysisSkipped("no driven trial (contrast > 0) has an LFP")
    out = peak_over_aperiodic(f, spectra[period][driven])
    m, lo, hi = bootstrap_mean_ci(out["excess"].cpu().numpy(), cfg.n_bootstrap, cfg.seed + 11)
    mean_peak = peak_over_aperiodic(f, spectra[period][driven].mean(0))
    return {**_interval(m, lo, hi), "n": int(driven.sum()), "peak_hz": float(mean_peak["peak_hz"])}


def lag_of(exp: Experiment, cfg, shuffled: bool = False) -> dict:
    """Mean over channels of the per-channel mean lag (ms) of -p behind s, with the bootstrap CI
    over channels (as ``ei_lag``); ``shuffled``: -p taken from another trial of the same set and
    contrast (the shift predictor: only what the stimulus locks is left)."""
    exp.variable("momentum")
    table = ei_lag.driven_trials(exp)
    s, inhib = ei_lag.site_traces(exp, table, exp.samples(cfg.onset_skip_ms, "stimulus"))
    if shuffled:
        perm = np.arange(len(table))
        for _, idx in table.groupby(["stimulus_set", "contrast"]).indices.items():
            perm[idx] = np.roll(idx, 1)
        if (perm == np.arange(len(table))).any():
            raise AnalysisSkipped("a set and contrast with a single driven trial: no shift predictor")
        inhib = inhib[torch.as_tensor(perm, device=inhib.device)]
    max_lag = lag_steps(exp, cfg, exp.samples(cfg.onset_skip_ms, "stimulus"))
    lag = ei_lag.channel_lags(s, inhib, max_lag)[0].cpu().numpy() * exp.dt_ms     # (N, C)
    per_channel = np.nanmean(lag, 0)
    m, lo, hi = bootstrap_mean_ci(per_channel, cfg.n_bootstrap, cfg.seed + 12)
    return {**_interval(m, lo, hi), "n": int(np.isfinite(per_channel).sum())}


def per_trial_measures(exp: Experiment, lfp: tuple, cfg, prefs) -> pd.DataFrame:
    """Per contrast trial (with an LFP): contrast, onset overshoot, LFP peak Hz and log10 power;
    ``lfp``: what :func:`lfp_spectra` returns for ``exp``."""
    table, f, spectra = lfp
    fpk, ppk = peak(f, spectra["stimulus"])
    out = table[["trial", "contrast"]].copy()
    out["peak_hz"] = fpk.cpu().numpy()
    out["log10_peak_power"] = np.log10(np.clip(ppk.cpu().numpy(), 1e-300, None))
    trace, ttable, _ = matched_trace(exp, contrast_trials(exp), prefs, cfg.match_tolerance, cfg.lfp_units)
    base_steps = exp.onset - exp.samples(cfg.onset_skip_ms, "blank").start
    over = step_response(trace, exp.onset, exp.offset, exp.fs, baseline_steps=base_steps)["overshoot"]
    over = pd.DataFrame({"trial": ttable["trial"].to_numpy(), "overshoot": over.cpu().numpy()})
    return out.merge(over, on="trial", how="outer")


def contrast_slope(trials: pd.DataFrame, column: str, cfg, seed: int) -> dict:
    s = slope_with_controls(trials["contrast"].to_numpy(), trials[column].to_numpy(), cfg.n_bootstrap, seed)
    return {**_interval(s["slope"], s["lo"], s["hi"]), "n": int(s["n"]), "null_lo": s["null_lo"],
            "null_hi": s["null_hi"]}


def synchrony_evidence(exp: Experiment, cfg, prefs, result: AnalysisResult | None = None) -> dict[str, dict]:
    """From the synchrony analysis, during the stimulus: ``difference``, the collinear -
    orthogonal shift-corrected zero-lag correlation pooled over distances, and ``distance``,
    the slope of the collinear pairs' correlation against their distance; each with its CI and
    the smallest effect the data could have detected (``2.8 SE``, SE from the CI). ``result``:
    the synchrony analysis of ``exp`` when already computed."""
    res = result if result is not None else synchrony.run(exp, cfg, prefs)
    out = {}
    diffs = res.tables.get("synchrony_differences")
    rows = None if diffs is None else diffs[diffs["comparison"] == "collinear - orthogonal"]
    if rows is None or rows.empty:
        raise AnalysisSkipped("the recording has no collinear/orthogonal pairs (the pairs set)")
    w = rows[["trials_a", "trials_b"]].sum(1).to_numpy(float)
    value = float(np.average(rows["difference_xcorr_zero_lag"].to_numpy(float), weights=w))
    se = float(np.sqrt(np.sum((w / w.sum()) ** 2 * ((rows["hi"] - rows["lo"]).to_numpy(float) / 3.92) ** 2)))
    out["difference"] = {**_interval(value, value - 1.96 * se, value + 1.96 * se), "n": int(w.sum()),
                         "detectable": DETECTABLE_Z * se}
    slopes = res.tables.get("synchrony_slopes")
    sel = None if slopes is None else slopes[(slopes["experiment"] == 2) & (slopes["period"] == "during")
                                             & (slopes["group"] == "collinear")
                                             & (slopes["measure"] == "xcorr_zero_lag")]
    if sel is not None and not sel.empty:
        r = sel.iloc[0]
        se = (float(r["hi"]) - float(r["lo"])) / 3.92
        out["distance"] = {**_interval(float(r["slope"]), float(r["lo"]), float(r["hi"])),
                           "n": int(r["n_resampled"]), "detectable": DETECTABLE_Z * se}
    else:
        out["distance"] = {**_interval(*NAN3), "detectable": float("nan")}
    return out


# --- the table ----------------------------------------------------------------------------------

def _excludes(effect: dict, lo: float, hi: float) -> bool:
    """The effect's CI lies entirely outside [lo, hi] (False if anything is NaN)."""
    vals = (effect["lo"], effect["hi"], lo, hi)
    if not all(np.isfinite(v) for v in vals):
        return False
    return effect["lo"] > hi or effect["hi"] < lo


def _row(finding: str, measure: str, unit: str, eff: dict, controls: dict[str, tuple[float, float, float]],
         why: list[str], extra: dict | None = None, holds: bool | None = None) -> dict:
    row = {"finding": finding, "measure": measure, "unit": unit, "effect": eff["value"], "effect_lo": eff["lo"],
           "effect_hi": eff["hi"], "n": eff.get("n", np.nan)}
    for name, (v, lo, hi) in controls.items():
        row.update({f"{name}": v, f"{name}_lo": lo, f"{name}_hi": hi})
    if holds is None:
        holds = bool(controls) and all(_excludes(eff, lo, hi) for _, lo, hi in controls.values())
    row["holds"] = "yes" if holds else "no"
    row.update(extra or {})
    row["notes"] = "; ".join(why)
    return row


def run(exp: Experiment, control: Experiment, cfg, prefs: pd.DataFrame | None,
        synchrony_result: AnalysisResult | None = None) -> AnalysisResult:
    """The findings table of ``exp`` against ``control``; ``synchrony_result``: the synchrony
    analysis of ``exp`` when the battery has already run it."""
    rows = []
    # the LFP spectra of each recording, read once (None where there is no LFP: its reason in lfp_err)
    recordings = {"trained": exp, "untrained": control}
    lfp, lfp_err = {}, {}
    for label, r in recordings.items():
        try:
            lfp[label] = lfp_spectra(r, cfg, prefs)
        except (AnalysisSkipped, ValueError) as exc:
            lfp[label], lfp_err[label] = None, str(exc)

    def on_lfp(label: str, fn: Callable[[tuple], object], why: list[str], name: str | None = None,
               fallback=_NAN):
        """``fn`` of recording ``label``'s LFP spectra, or ``fallback`` with the reason in ``why``
        (noted as ``name``, default the label)."""
        if lfp[label] is None:
            why.append(f"{name or label}: {lfp_err[label]}")
            return _interval(*NAN3) if fallback is _NAN else fallback
        return _safe(lambda: fn(lfp[label]), why, name or label, fallback)

    # 1. oscillatory responses
    why: list[str] = []
    eff = on_lfp("trained", lambda x: oscillation_excess(x, cfg, "stimulus"), why)
    blank = on_lfp("trained", lambda x: oscillation_excess(x, cfg, "before"), why, name="blank before")
    untrained = on_lfp("untrained", lambda x: oscillation_excess(x, cfg, "stimulus"), why)
    rows.append(_row("oscillatory responses", "LFP peak over the aperiodic fit, during the stimulus", "log10 power",
                     eff, {"untrained": (untrained["value"], untrained["lo"], untrained["hi"]),
                           "blank_before": (blank["value"], blank["lo"], blank["hi"])}, why,
                     {"frequency_hz": eff.get("peak_hz", np.nan),
                      "untrained_frequency_hz": untrained.get("peak_hz", np.nan)}))
    # 2. E-I lag
    why = []
    eff = _safe(lambda: lag_of(exp, cfg), why, "trained")
    shuf = _safe(lambda: lag_of(exp, cfg, shuffled=True), why, "shuffled")
    untrained = _safe(lambda: lag_of(control, cfg), why, "untrained")
    rows.append(_row("E-I lag", "lag of -momentum behind the state (mean over channels)", "ms", eff,
                     {"untrained": (untrained["value"], untrained["lo"], untrained["hi"]),
                      "shuffled": (shuf["value"], shuf["lo"], shuf["hi"])}, why,
                     {"sign": "-p lags s" if eff["value"] > 0 else "-p leads s" if eff["value"] < 0 else ""}))
    # 3-5. slopes against contrast
    why = []
    trained_trials, control_trials = (
        on_lfp(label, lambda x, r=r: per_trial_measures(r, x, cfg, prefs), why, fallback=None)
        for label, r in recordings.items())
    for k, (finding, column, unit) in enumerate((
            ("contrast-dependent transient overshoot", "overshoot", "state per unit contrast"),
            ("peak frequency rises with contrast", "peak_hz", "Hz per unit contrast"),
            ("peak power rises with contrast", "log10_peak_power", "log10 power per unit contrast"))):
        eff = contrast_slope(trained_trials, column, cfg, cfg.seed + 20 + k) if trained_trials is not None \
            else {**_interval(*NAN3), "null_lo": np.nan, "null_hi": np.nan}
        ctl = contrast_slope(control_trials, column, cfg, cfg.seed + 30 + k) if control_trials is not None \
            else _interval(*NAN3)
        rows.append(_row(finding, f"slope of the per-trial {column} against contrast", unit, eff,
                         {"untrained": (ctl["value"], ctl["lo"], ctl["hi"]),
                          "shuffled": (np.nan, eff["null_lo"], eff["null_hi"])}, list(why)))
    # 6. no synchrony: collinear - orthogonal, and the collinear pairs' slope against distance
    why = []
    nan = {"difference": {**_interval(*NAN3)}, "distance": {**_interval(*NAN3)}}
    trained = _safe(lambda: synchrony_evidence(exp, cfg, prefs, synchrony_result), why, "trained", nan)
    untrained = _safe(lambda: synchrony_evidence(control, cfg, prefs), why, "untrained", nan)
    for key, measure, unit in (("difference", "collinear - orthogonal shift-corrected zero-lag correlation",
                                "correlation"),
                               ("distance", "slope of the collinear pairs' corrected correlation against distance",
                                "correlation per px")):
        eff, ctl = trained[key], untrained[key]
        none = all(np.isfinite([eff["lo"], eff["hi"]])) and eff["lo"] <= 0 <= eff["hi"]
        rows.append(_row("no synchrony" if key == "difference" else "no synchrony (distance)", measure, unit, eff,
                         {"untrained": (ctl["value"], ctl["lo"], ctl["hi"])}, list(why),
                         {"detectable_effect": eff.get("detectable", np.nan)}, holds=bool(none)))
    table = pd.DataFrame(rows)
    scalars = {f"holds/{r['finding']}": float(r["holds"] == "yes") for r in rows}
    scalars["findings_holding"] = float((table["holds"] == "yes").sum())
    return AnalysisResult(tables={"findings": table}, figures={"findings": _figure(table)}, scalars=scalars)


def _figure(table: pd.DataFrame) -> plt.Figure:
    n = len(table)
    fig, axs = plt.subplots(n, 1, figsize=(8, 1.15 * n + 0.6))
    for ax, (_, r) in zip(np.atleast_1d(axs), table.iterrows()):
        labels, vals, los, his, colours = ["model"], [r["effect"]], [r["effect_lo"]], [r["effect_hi"]], ["C3"]
        for name in ("untrained", "shuffled", "blank_before"):
            if f"{name}_lo" in r and np.isfinite(r.get(f"{name}_lo", np.nan)):
                labels.append(name.replace("_", " "))
                v = r[name] if np.isfinite(r[name]) else (r[f"{name}_lo"] + r[f"{name}_hi"]) / 2
                vals.append(v), los.append(r[f"{name}_lo"]), his.append(r[f"{name}_hi"]), colours.append("0.5")
        for y, (v, lo, hi, c) in enumerate(zip(vals, los, his, colours)):
            if np.isfinite(lo) and np.isfinite(hi):
                ax.plot([lo, hi], [y, y], color=c, lw=2)
            if np.isfinite(v):
                ax.plot([v], [y], "o", color=c, ms=4)
        ax.axvline(0, color="k", lw=0.5)
        ax.set_yticks(range(len(labels)), labels, fontsize=7)
        ax.set_ylim(-0.7, len(labels) - 0.3)
        ax.tick_params(axis="x", labelsize=7)
        mark = "holds" if r["holds"] == "yes" else "does not hold"
        ax.set_title(f"{r['finding']} — {mark}   ({r['measure']}, {r['unit']})", fontsize=8, loc="left")
    fig.suptitle("the thesis's findings: effect (red) and controls (grey), 95% intervals", fontsize=9)
    fig.tight_layout()
    return fig
