"""Contrast-dependent transients: onset and offset responses of the V1-like layer.

The trace of a trial is the mean state of the matched channels at site 0's unit (trials with
no matched channel are excluded and counted; see :class:`nrflv.battery.common.Selection`); traces are averaged by contrast, and each contrast's mean trace is measured by
:func:`nrflv.measures.transients.step_response` -- baseline, peak after onset, sustained level,
overshoot above it, offset response -- with bootstrap intervals of the overshoot over trials.

A peak taken from a noisy trace is biased upwards (the maximum of noise is positive), so a
single trial "overshoots" even without a stimulus. The contrast-0 trials measure that floor:
``overshoot_above_control`` is a contrast's overshoot minus contrast 0's (of the trial-mean
traces), and the figure draws the floor.
"""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from core.suite import AnalysisResult, AnalysisSkipped  # noqa: E402
from nrflv.battery.common import Selection, bootstrap_mean_ci, correlation, matched_selection  # noqa: E402
from nrflv.battery.reading import Experiment  # noqa: E402
from nrflv.battery.spectra import contrast_trials  # noqa: E402
from nrflv.measures.transients import step_response  # noqa: E402


def matched_trace(exp: Experiment, table: pd.DataFrame, preferences, tolerance: float, units: str = "matched"
                  ) -> tuple[torch.Tensor, pd.DataFrame, Selection]:
    """``(N', T)`` mean state over the matched channels of the unit at site 0, for the trials of
    ``table`` that have any; their rows; the selection."""
    sel = matched_selection(exp, table, preferences, tolerance, units)
    kept = sel.kept(table)
    if kept.empty:
        raise AnalysisSkipped(f"no trial has a matched channel ({sel.how}): no channel is significantly "
                              "tuned to the stimuli (--lfp_units all uses every channel)")
    mask = sel.mask[torch.as_tensor(sel.keep)]
    out, k = [], 0
    for blk in exp.centre("state", kept, 0):
        m = mask[k:k + len(blk.trials)].to(blk.values.device, blk.values.dtype)
        out.append((blk.values * m[:, None, :]).sum(-1) / m.sum(-1, keepdim=True))
        k += len(blk.trials)
    return torch.cat(out).double(), kept, sel


def run(exp: Experiment, cfg, preferences: pd.DataFrame | None = None) -> AnalysisResult:
    all_contrast = contrast_trials(exp)["contrast"].to_numpy()
    trace, table, selection = matched_trace(exp, contrast_trials(exp), preferences, cfg.match_tolerance,
                                              cfg.lfp_units)
    how = selection.how
    contrast = table["contrast"].to_numpy()
    levels = np.unique(contrast)
    base_steps = exp.onset - exp.samples(cfg.onset_skip_ms, "blank").start
    per_trial = step_response(trace, exp.onset, exp.offset, exp.fs, baseline_steps=base_steps)
    means = torch.stack([trace[torch.as_tensor(contrast == c, device=trace.device)].mean(0) for c in levels])
    by_level = step_response(means, exp.onset, exp.offset, exp.fs, baseline_steps=base_steps)
    rows = []
    for i, c in enumerate(levels):
        sel = np.flatnonzero(contrast == c)
        om, olo, ohi = bootstrap_mean_ci(per_trial["overshoot"][sel].cpu().numpy(), cfg.n_bootstrap, cfg.seed + i)
        row = {"contrast": float(c), "trials": len(sel), "trials_excluded": int((all_contrast == c).sum()) - len(sel),
               "units": how}
        row.update({k: float(v[i]) for k, v in by_level.items()})
        row.update({"overshoot_trial_mean": om, "overshoot_lo": olo, "overshoot_hi": ohi})
        rows.append(row)
    summary = pd.DataFrame(rows)
    t_ms = exp.time_ms()
    trace_table = pd.DataFrame(means.cpu().numpy().T, columns=[f"contrast_{c:g}" for c in levels])
    trace_table.insert(0, "time_ms", t_ms)
    control = summary[summary["contrast"] == 0]
    floor = float(control["overshoot"].iloc[0]) if not control.empty else float("nan")
    summary["overshoot_above_control"] = summary["overshoot"] - floor
    top = summary.iloc[-1]
    scalars = {"overshoot_top_contrast": float(top["overshoot"]),
               "overshoot_above_control_top_contrast": float(top["overshoot_above_control"]),
               "overshoot_contrast_corr": correlation(summary["contrast"], summary["overshoot"]),
               "peak_latency_ms_top_contrast": float(top["peak_latency_ms"]),
               "offset_response_top_contrast": float(top["offset_response"])}
    return AnalysisResult(tables={"transients_by_contrast": summary, "mean_traces": trace_table},
                          figures={"transients": _figure(t_ms, means.cpu().numpy(), levels, summary, how, exp)},
                          scalars=scalars)



def _figure(t_ms, means, levels, summary: pd.DataFrame, how: str, exp: Experiment) -> plt.Figure:
    fig, axs = plt.subplots(1, 2, figsize=(11, 3.4), gridspec_kw={"width_ratios": [2, 1]})
    cmap = plt.get_cmap("viridis")
    start = exp.blank_start
    for i, c in enumerate(levels):
        axs[0].plot(t_ms[start:], means[i, start:], color=cmap(i / max(1, len(levels) - 1)), lw=0.8, label=f"c={c:g}")
    axs[0].axvspan(0, (exp.offset - exp.onset) * exp.dt_ms, color="0.9", zorder=0)
    axs[0].set_xlabel("time from stimulus onset (ms)")
    axs[0].set_ylabel("mean state")
    axs[0].set_title(f"{how}; grey: stimulus on", fontsize=8)
    axs[0].legend(fontsize=6, ncol=2)
    m = summary["overshoot_trial_mean"].to_numpy()
    err = np.stack([m - summary["overshoot_lo"].to_numpy(), summary["overshoot_hi"].to_numpy() - m])
    axs[1].errorbar(summary["contrast"], m, yerr=np.nan_to_num(err), marker="o", capsize=3,
                    label="single trials (mean, 95% CI)")
    axs[1].plot(summary["contrast"], summary["overshoot"], "s--", ms=4, color="C1", label="of the trial-mean trace")
    control = summary[summary["contrast"] == 0]
    if not control.empty:
        axs[1].axhline(float(control["overshoot_trial_mean"].iloc[0]), color="0.5", ls=":", lw=0.8,
                       label="noise floor (contrast 0)")
    axs[1].axhline(0, color="k", lw=0.6)
    axs[1].legend(fontsize=6)
    axs[1].set_xlabel("contrast")
    axs[1].set_ylabel("onset overshoot above sustained")
    fig.suptitle("onset / offset transients by contrast (95% bootstrap intervals over trials)", fontsize=9)
    fig.tight_layout()
    return fig
