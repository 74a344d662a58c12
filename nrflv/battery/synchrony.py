"""Stimulus-dependent synchrony -- the thesis's question (its answer: none).

Three comparisons, each on pairs of single units at recording sites (the unit at the site, per
channel), during the stimulus and in the blank before it (equally long windows, each after
``onset_skip_ms``):

* ``channels`` (``few_angles``): every pair of channels at site 0, by channel-index distance on
  the ring the circulant mass matrix makes (``min(|i-j|, C-|i-j|)``); and experiment 1: the
  amplitude against the difference of the pair's preferred directions, aligned vs unaligned
  (:mod:`nrflv.battery.synchrony_exp1`; needs the orientation preferences);
* ``centre_flank`` (``pairs``, experiment 2): the same channel at the two Gabors' centres,
  collinear against orthogonal, by distance; the phase test (is the flank's phase lag zero?)
  and the amplitude's slope against distance;
* ``long_bars`` (``long_bars`` against ``few_angles``): the same channel at the centre and at a
  point ``flank_distance`` along the bars' axis, under a long bar and under a short Gabor; and
  experiment 3, the amplitude profile along the bar against distance
  (:mod:`nrflv.battery.synchrony_exp3`; needs ``record_units: all``).

Per pair and trial: the normalised cross-correlogram, the coherence, the phase-locking value and
the complex coherency in a band of +- ``synchrony_band_hz`` around the set's LFP peak frequency
(during the stimulus). Every measure is shuffle-corrected by the shift predictor (the same pair
from other trials of the same condition, which share only what the stimulus locks), then
averaged per trial and group with 95% bootstrap intervals over trials, in each period, with the
paired during-minus-before difference per trial; a group's corrected measure is "synchronous"
when its interval lies above zero. The mean corrected correlogram of each group is fitted by the
damped cosine of Gray et al. (1989), whose frequency, decay and oscillation index (the envelope
one period out: ~1 for a sustained rhythm, 0 for a single bump) summarise how oscillatory the
synchrony is. (The relative modulation amplitude is listed too, but on mean-removed
correlograms it is ~1 for any fitted peak.) Parts that cannot run (a missing set, no tuning,
a window recording for experiment 3) are listed with their reason in ``synchrony_notes``.
"""
from __future__ import annotations

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from core.suite import AnalysisResult, AnalysisSkipped  # noqa: E402
from nrflv.battery.common import lag_steps  # noqa: E402
from nrflv.battery.reading import Experiment  # noqa: E402
from nrflv.battery.synchrony_exp1 import experiment1  # noqa: E402
from nrflv.battery.synchrony_exp3 import experiment3  # noqa: E402
from nrflv.battery.synchrony_figures import exp2_figure, groups_figure, xcorr_figure  # noqa: E402
from nrflv.battery.synchrony_pairs import (MEASURES, PairMeasure, Part, Periods, band_around_peak,  # noqa: E402
                                           centre_traces, difference_row, fit_rows, group_row, measure_periods,
                                           per_trial, periods, phase_rows)
from nrflv.measures.correlation import circular_channel_distance  # noqa: E402
from nrflv.measures.trend import bootstrap_slope_ci  # noqa: E402

__all__ = ["run", "MEASURES"]


def channel_pairs(exp: Experiment, cfg, per: Periods, max_lag: int, preferences, lags_ms) -> Part:
    table = exp.table("few_angles")
    x = centre_traces(exp, table, 0, per.span)                               # (N, C, T)
    n_ch = x.shape[1]
    f0, lo, hi = band_around_peak(exp, per.cut(x, "during"), cfg.spectrum_nperseg, cfg.synchrony_band_hz)
    measure = PairMeasure(exp.fs, max_lag, (lo, hi), cfg.spectrum_nperseg)
    i, j = torch.triu_indices(n_ch, n_ch, 1)
    dist = circular_channel_distance(i, j, n_ch).cpu().numpy()
    stats = measure_periods(measure, per, x[:, i], x[:, j], table["direction"].to_numpy())   # (N', P)
    part = Part(f0=f0)
    for d in np.unique(dist):
        sel = (slice(None), torch.as_tensor(dist == d, device=x.device))
        label = {"comparison": "channels", "channel_distance": int(d), "pairs": int((dist == d).sum())}
        sub = stats.select(sel)
        part.rows.append(group_row(label, sub, cfg, cfg.seed + int(d)))
        part.phases += phase_rows(label, sub, cfg, cfg.seed + int(d))
        part.fits.append((label, sub.corr["during"]["xcorr"]))
    kept = table.iloc[stats.keep].reset_index(drop=True)
    exp1 = experiment1(stats, kept, i, j, n_ch, preferences, lags_ms, (f0, lo, hi), cfg)
    _merge(part, exp1)
    return part


def centre_flank(exp: Experiment, cfg, per: Periods, max_lag: int, preferences, lags_ms) -> Part:
    table = exp.table("pairs")
    a, b = centre_traces(exp, table, 0, per.span), centre_traces(exp, table, 1, per.span)
    f0, lo, hi = band_around_peak(exp, per.cut(a, "during"), cfg.spectrum_nperseg, cfg.synchrony_band_hz)
    measure = PairMeasure(exp.fs, max_lag, (lo, hi), cfg.spectrum_nperseg)
    cond = table[["displacement", "distance", "relation"]].astype(str).agg("|".join, axis=1).to_numpy()
    stats = measure_periods(measure, per, a, b, cond)                        # (N', C)
    kept = table.iloc[stats.keep].reset_index(drop=True)
    part = Part(f0=f0)
    for d in sorted(kept["distance"].unique()):
        means = {}
        for rel in ("collinear", "orthogonal"):
            sel = torch.tensor(((kept["distance"] == d) & (kept["relation"] == rel)).to_numpy(), device=a.device)
            if not bool(sel.any()):
                continue
            label = {"comparison": "centre_flank", "distance": int(d), "relation": rel}
            sub = stats.select(sel)
            part.rows.append(group_row(label, sub, cfg, cfg.seed + 100 * int(d)))
            part.phases += phase_rows(label, sub, cfg, cfg.seed + 100 * int(d))
            part.fits.append((label, sub.corr["during"]["xcorr"]))
            means[rel] = per_trial(sub.corr["during"]["xcorr_zero_lag"])
        if len(means) == 2:
            part.diffs.append(difference_row({"comparison": "collinear - orthogonal", "distance": int(d)},
                                             means["collinear"], means["orthogonal"], cfg))
    # amplitude against distance, per relation and period: a line through every trial's mean
    for rel in ("collinear", "orthogonal"):
        sel = (kept["relation"] == rel).to_numpy().copy()
        if sel.sum() < 2:
            continue
        dist = torch.tensor(kept["distance"].to_numpy(float)[sel])[:, None]
        for period, m in stats.corr.items():
            y = torch.from_numpy(per_trial(m["xcorr_zero_lag"][torch.from_numpy(sel)]))[:, None]
            s, s_lo, s_hi = bootstrap_slope_ci(dist, y, cfg.n_bootstrap, generator=torch.Generator().manual_seed(cfg.seed))
            part.slopes.append({"experiment": 2, "period": period, "group": rel, "x": "centre-flank distance (px)",
                                "measure": "xcorr_zero_lag", "slope": float(s), "lo": float(s_lo), "hi": float(s_hi),
                                "resampled": "trials", "n_resampled": int(sel.sum()),
                                "pairs": int(a.shape[1]), "values": int(torch.isfinite(y).sum())})
    return part


def long_bars(exp: Experiment, cfg, per: Periods, max_lag: int, preferences, lags_ms) -> Part:
    part, means, measure = Part(), {}, None
    for name in ("long_bars", "few_angles"):
        table = exp.table(name)
        a, b = centre_traces(exp, table, 0, per.span), centre_traces(exp, table, 1, per.span)
        if measure is None:
            part.f0, lo, hi = band_around_peak(exp, per.cut(a, "during"), cfg.spectrum_nperseg, cfg.synchrony_band_hz)
            measure = PairMeasure(exp.fs, max_lag, (lo, hi), cfg.spectrum_nperseg)
        stats = measure_periods(measure, per, a, b, table["direction"].to_numpy())
        label = {"comparison": "along_bar", "stimulus_set": name}
        part.rows.append(group_row(label, stats, cfg, cfg.seed + 7))
        part.phases += phase_rows(label, stats, cfg, cfg.seed + 7)
        part.fits.append((label, stats.corr["during"]["xcorr"]))
        means[name] = per_trial(stats.corr["during"]["xcorr_zero_lag"])
    part.diffs.append(difference_row({"comparison": "long bar - short Gabor"}, means["long_bars"],
                                     means["few_angles"], cfg))
    return part


def along_bar_profile(exp: Experiment, cfg, per: Periods, max_lag: int, preferences, lags_ms) -> Part:
    """Experiment 3 (:mod:`nrflv.battery.synchrony_exp3`)."""
    return experiment3(exp, cfg, per, max_lag, lags_ms)


PARTS = (("channels", channel_pairs), ("centre_flank", centre_flank), ("long_bars", long_bars),
         ("along_bar_profile", along_bar_profile))


def _merge(into: Part, other: Part) -> None:
    for k in ("rows", "fits", "diffs", "phases", "slopes", "notes"):
        getattr(into, k).extend(getattr(other, k))
    for k in ("tables", "figures", "scalars"):
        getattr(into, k).update(getattr(other, k))


def run(exp: Experiment, cfg, preferences: pd.DataFrame | None) -> AnalysisResult:
    """The synchrony battery on ``exp``. ``preferences``: the channels' orientation preferences
    (the orientation-tuning analysis's table: ``channel``, ``pref_direction``,
    ``pref_orientation``, ``tuned``), or None (experiment 1 is then skipped with the reason)."""
    per = periods(exp, cfg.onset_skip_ms)
    max_lag = lag_steps(exp, cfg, per.during)
    lags_ms = torch.arange(-max_lag, max_lag + 1, dtype=torch.float64) * exp.dt_ms
    total, freqs = Part(), {}
    if per.note:
        total.notes.append(per.note)
    for name, fn in PARTS:
        try:
            out = fn(exp, cfg, per, max_lag, preferences, lags_ms)
        except AnalysisSkipped as exc:
            total.notes.append(f"{name}: {exc}")
            continue
        _merge(total, out)
        freqs[name] = out.f0
    if not total.rows and not total.slopes:
        raise AnalysisSkipped("; ".join(total.notes))
    groups = pd.DataFrame(total.rows)
    phases = pd.DataFrame(total.phases)
    slopes = pd.DataFrame(total.slopes)
    tables, scalars = {}, {"fraction_groups_synchronous": float("nan")}
    if total.rows:
        fit_table = pd.DataFrame(fit_rows(total.fits, lags_ms, float(np.mean(list(freqs.values())))))
        tables.update({"synchrony_groups": groups, "xcorr_gabor_fits": fit_table, "synchrony_phase": phases})
        scalars["fraction_groups_synchronous"] = float(groups["synchronous"].mean())
        if "changed" in groups:
            scalars["fraction_groups_changed_from_before"] = float(groups["changed"].mean())
            scalars["fraction_groups_synchronous_before"] = float(groups["synchronous_before"].mean())
    if total.diffs:
        tables["synchrony_differences"] = pd.DataFrame(total.diffs)
        scalars["fraction_differences_significant"] = float(np.mean([d["different"] for d in total.diffs]))
    if total.slopes:
        tables["synchrony_slopes"] = slopes
    tables.update(total.tables)
    if total.notes:
        tables["synchrony_notes"] = pd.DataFrame({"part": [n.split(":")[0] for n in total.notes],
                                                  "reason": total.notes})
        groups.attrs["notes"] = total.notes
    for name, f in freqs.items():
        scalars[f"band_centre_hz/{name}"] = f
    ch = groups[groups["comparison"] == "channels"] if total.rows else groups
    if not ch.empty:
        scalars["channels_xcorr_zero_lag_nearest"] = float(ch.iloc[0]["xcorr_zero_lag"])
    cf = phases[(phases["comparison"] == "centre_flank") & (phases["period"] == "during")] if total.phases else phases
    if not cf.empty:
        scalars["exp2_fraction_groups_phase_v_test_p_below_0.05"] = float((cf["v_test_p"] < 0.05).mean())
        scalars["exp2_fraction_groups_zero_lag_in_interval"] = float(cf["zero_in_interval"].mean())
    scalars.update(total.scalars)
    figures = {}
    if total.rows:
        figures["synchrony"] = groups_figure(groups)
        xc_fig = xcorr_figure(total.fits, lags_ms.numpy(), fit_table)
        if xc_fig is not None:
            figures["corrected_xcorrs"] = xc_fig
    if not cf.empty:
        figures["exp2_phase_and_distance"] = exp2_figure(phases, groups, slopes)
    figures.update(total.figures)
    return AnalysisResult(tables=tables, figures=figures, scalars=scalars)
