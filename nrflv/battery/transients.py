"""Contrast-dependent transients: onset and offset responses of the V1-like layer.

The trace of a trial is the mean state of the matched channels at site 0's unit (trials with
no matched channel are excluded and counted; see :class:`nrflv.battery.common.Selection`); traces are averaged by contrast, and each contrast's mean trace is measured by
:func:`nrflv.measures.transients.step_response` -- baseline, peak after onset, sustained level,
overshoot above it, offset response -- with bootstrap intervals of the overshoot over trials.

Beside it, the transient **as the original computes it**: every unit of the window at site 0 (all
channels) is rectified at its own baseline mean (``max(x, mean)``, the mean over the blank before
and the blank after the stimulus), the units are summed, and the baseline mean of that sum is
subtracted; trials are averaged by contrast (the original summed them), and the same
``step_response`` measures are taken of it (columns ``original_*``).

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

from core.suite import AnalysisResult  # noqa: E402
from nrflv.battery.common import Selection, bootstrap_mean_ci, correlation, kept_trials  # noqa: E402
from nrflv.battery.reading import Experiment  # noqa: E402
from nrflv.battery.spectra import contrast_trials  # noqa: E402
from nrflv.measures.transients import step_response  # noqa: E402


def matched_trace(exp: Experiment, table: pd.DataFrame, preferences, tolerance: float, units: str = "matched"
                  ) -> tuple[torch.Tensor, pd.DataFrame, Selection]:
    """``(N', T)`` mean state over the matched channels of the unit at site 0, for the trials of
    ``table`` that have any; their rows; the selection."""
    kept, mask, sel = kept_trials(exp, table, preferences, tolerance, units)
    out, k = [], 0
    for blk in exp.centre("state", kept, 0):
        m = mask[k:k + len(blk.trials)].to(blk.values.device, blk.values.dtype)
        out.append((blk.values * m[:, None, :]).sum(-1) / m.sum(-1, keepdim=True))
        k += len(blk.trials)
    return torch.cat(out).double(), kept, sel


def rectified_sum(units: torch.Tensor, baseline: torch.Tensor) -> torch.Tensor:
    """The original's transient: ``units (N, T, U)`` rectified at each unit's mean over the
    time indices ``baseline``, summed over units, minus that sum's own mean over ``baseline``:
    ``(N, T)``."""
    floor = units[:, baseline].mean(1, keepdim=True)                 # (N, 1, U)
    total = torch.maximum(units, floor).sum(-1)                      # (N, T)
    return total - total[:, baseline].mean(1, keepdim=True)


def original_traces(exp: Experiment, table: pd.DataFrame) -> torch.Tensor:
    """``(N, T)`` :func:`rectified_sum` of every unit of the window at site 0, the baseline
    being the blank before the stimulus and the blank after it."""
    baseline = torch.cat([torch.arange(exp.blank_start, exp.onset), torch.arange(exp.offset, exp.n_steps)])
    out = []
    for blk in exp.windows("state", table, 0):
        x = blk.values.double().flatten(2)                            # (b, T, C*P*P)
        out.append(rectified_sum(x, baseline.to(x.device)))
    return torch.cat(out)


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
    full_table = contrast_trials(exp)
    orig = original_traces(exp, full_table)
    orig_means = torch.stack([orig[torch.as_tensor(all_contrast == c, device=orig.device)].mean(0) for c in levels])
    orig_level = step_response(orig_means, exp.onset, exp.offset, exp.fs, baseline_steps=base_steps)
    rows = []
    for i, c in enumerate(levels):
        sel = np.flatnonzero(contrast == c)
        om, olo, ohi = bootstrap_mean_ci(per_trial["overshoot"][sel].cpu().numpy(), cfg.n_bootstrap, cfg.seed + i)
        row = {"contrast": float(c), "trials": len(sel), "trials_excluded": int((all_contrast == c).sum()) - len(sel),
               "units": how}
        row.update({k: float(v[i]) for k, v in by_level.items()})
        row.update({"overshoot_trial_mean": om, "overshoot_lo": olo, "overshoot_hi": ohi})
        row.update({"original_trials": int((all_contrast == c).sum())})
        row.update({f"original_{k}": float(v[i]) for k, v in orig_level.items()})
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
               "offset_response_top_contrast": float(top["offset_response"]),
               "original_overshoot_top_contrast": float(top["original_overshoot"]),
               "original_overshoot_contrast_corr": correlation(summary["contrast"], summary["original_overshoot"])}
    orig_table = pd.DataFrame(orig_means.cpu().numpy().T, columns=[f"contrast_{c:g}" for c in levels])
    orig_table.insert(0, "time_ms", exp.time_ms())
    return AnalysisResult(tables={"transients_by_contrast": summary, "mean_traces": trace_table,
                                  "original_traces": orig_table},
                          figures={"transients": _figure(t_ms, means.cpu().numpy(), levels, summary, how, exp),
                                   "original_transients": _original_figure(t_ms, orig_means.cpu().numpy(), levels,
                                                                           exp)},
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


def _original_figure(t_ms, means, levels, exp: Experiment) -> plt.Figure:
    """The original's two panels: around the onset (-400..+600 ms) and around the offset."""
    fig, axs = plt.subplots(1, 2, figsize=(10, 3.2), sharey=True)
    cmap = plt.get_cmap("Greys")
    off_ms = (exp.offset - exp.onset) * exp.dt_ms
    for ax, centre, span in ((axs[0], 0.0, (-400.0, 600.0)), (axs[1], off_ms, (-400.0, 600.0))):
        sel = (t_ms >= centre + span[0]) & (t_ms <= centre + span[1])
        for i, c in enumerate(levels):
            ax.plot(t_ms[sel] - centre, means[i, sel], color=cmap(0.3 + 0.7 * i / max(1, len(levels) - 1)), lw=0.8,
                    label=f"c={c:g}")
        ax.axvline(0, color="k", ls="--", lw=0.8)
        ax.axhline(0, color="0.5", lw=0.5)
    axs[0].set_xlabel("time from stimulus onset (ms)")
    axs[1].set_xlabel("time from stimulus offset (ms)")
    axs[0].set_ylabel("Σ rectified state − baseline")
    axs[0].legend(fontsize=6)
    fig.suptitle("transients as the original computes them (units rectified at their baseline mean, summed over "
                 "the window at site 0, all channels)", fontsize=8)
    fig.tight_layout()
    return fig
