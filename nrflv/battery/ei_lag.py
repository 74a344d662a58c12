"""Excitation-inhibition lag: does the "inhibitory" population (-momentum) lag the state?

For the unit at site 0 in every channel and every trial with a stimulus (contrast > 0), the
normalised cross-correlation of ``-p`` with ``s`` during the stimulus (after
``onset_skip_ms``); the lag of its peak is positive when ``-p`` lags ``s``. An oscillating pair
correlates at every period, so the peak is sought within half a period of zero lag (the period of
the channel's mean cross-correlogram), which makes the lag a phase lag in (-T/2, T/2]. Lags are kept per
channel and trial -- never pooled across channels before the per-channel mean -- and each
channel's mean lag gets a bootstrap interval over trials. The sign test counts channels whose
interval lies above zero.
"""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from core.suite import AnalysisResult, AnalysisSkipped  # noqa: E402
from nrflv.battery.common import bootstrap_mean_ci, lag_steps  # noqa: E402
from nrflv.battery.reading import Experiment  # noqa: E402
from nrflv.measures.correlation import cross_correlation, peak_lag  # noqa: E402


def driven_trials(exp: Experiment) -> pd.DataFrame:
    t = exp.conditions[exp.conditions["contrast"] > 0].reset_index(drop=True)
    if t.empty:
        raise AnalysisSkipped("the recording has no trial with a stimulus of contrast > 0")
    return t


def half_period(xc: torch.Tensor) -> torch.Tensor:
    """Half the dominant period (in lags, >= 1) of correlograms ``(..., 2L+1)``: from the peak
    of their amplitude spectrum (no oscillation: the whole window)."""
    n = xc.shape[-1]
    amp = torch.fft.rfft(xc - xc.mean(-1, keepdim=True), n=4 * n).abs()
    k = amp[..., 1:].argmax(-1) + 1                          # frequency bin, in cycles per 4n lags
    return (4 * n / k.double() / 2).clamp(min=1.0, max=float(n // 2))


def site_traces(exp: Experiment, table: pd.DataFrame, during: slice) -> tuple[torch.Tensor, torch.Tensor]:
    """``(N, C, T)`` state and inhibitory population ``-p`` of the unit at site 0 per channel."""
    s_out, i_out = [], []
    for s_blk, p_blk in zip(exp.centre("state", table, 0, time=during), exp.centre("momentum", table, 0, time=during)):
        s_out.append(s_blk.values.movedim(1, -1).double())
        i_out.append(-p_blk.values.movedim(1, -1).double())
    return torch.cat(s_out), torch.cat(i_out)


def channel_lags(s: torch.Tensor, inhib: torch.Tensor, max_lag: int):
    """Per trial and channel, the lag (steps) of ``inhib`` behind ``s`` (both ``(N, C, T)``): the
    peak of their normalised cross-correlation within half the channel's dominant period of 0.
    Returns ``lag (N, C)``, the lags ``(2L+1,)``, the mean correlograms ``(C, 2L+1)``, the
    half periods ``(C,)`` and the search windows ``(C, 2L+1)``."""
    lags, xc = cross_correlation(inhib, s, max_lag)        # peak at k > 0: -p lags s
    mean = xc.mean(0)                                       # (C, 2L+1)
    half = half_period(mean)                                # (C,) steps
    inside = lags.abs()[None, :] <= half[:, None]           # (C, 2L+1)
    lag, _ = peak_lag(lags, xc.masked_fill(~inside, float("-inf")), interpolate=True)
    return lag, lags, mean, half, inside


def run(exp: Experiment, cfg) -> AnalysisResult:
    exp.variable("momentum")
    table = driven_trials(exp)
    during = exp.samples(cfg.onset_skip_ms, "stimulus")
    max_lag = lag_steps(exp, cfg, during)
    s, inhib = site_traces(exp, table, during)
    lag, lags, mean, half, inside = channel_lags(s, inhib, max_lag)
    lag_ms = lag.cpu().numpy() * exp.dt_ms                  # (N, C)
    mean_xc = mean.cpu().numpy()
    lags_ms = lags.cpu().numpy() * exp.dt_ms
    rows = []
    for ch in range(lag_ms.shape[1]):
        m, lo, hi = bootstrap_mean_ci(lag_ms[:, ch], cfg.n_bootstrap, cfg.seed + ch)
        rows.append({"channel": ch, "trials": int(np.isfinite(lag_ms[:, ch]).sum()), "mean_lag_ms": m,
                     "lag_ms_lo": lo, "lag_ms_hi": hi, "median_lag_ms": float(np.nanmedian(lag_ms[:, ch])),
                     "fraction_trials_positive": float((lag_ms[:, ch] > 0).mean()),
                     "peak_xcorr_of_mean": float(mean_xc[ch].max()),
                     "search_half_window_ms": float(half[ch]) * exp.dt_ms,
                     "lag_of_mean_xcorr_ms": float(lags_ms[int(np.argmax(np.where(
                         inside[ch].cpu().numpy(), mean_xc[ch], -np.inf)))])})
    per_channel = pd.DataFrame(rows)
    overall, olo, ohi = bootstrap_mean_ci(per_channel["mean_lag_ms"].to_numpy(), cfg.n_bootstrap, cfg.seed)
    scalars = {"mean_lag_ms": overall, "mean_lag_ms_lo": olo, "mean_lag_ms_hi": ohi,
               "fraction_channels_lag_positive": float((per_channel["lag_ms_lo"] > 0).mean()),
               "fraction_channels_lag_negative": float((per_channel["lag_ms_hi"] < 0).mean())}
    trial_rows = pd.DataFrame(lag_ms, columns=[f"ch{c}" for c in range(lag_ms.shape[1])])
    trial_rows.insert(0, "trial", table["trial"].to_numpy())
    xc_table = pd.DataFrame(mean_xc.T, columns=[f"ch{c}" for c in range(mean_xc.shape[0])])
    xc_table.insert(0, "lag_ms", lags_ms)
    return AnalysisResult(tables={"ei_lag_per_channel": per_channel, "ei_lag_per_trial": trial_rows,
                                  "ei_xcorr_mean": xc_table},
                          figures={"ei_lag": _figure(per_channel, mean_xc, lags_ms, overall, exp)},
                          scalars=scalars)


def _figure(per_channel: pd.DataFrame, mean_xc: np.ndarray, lags_ms: np.ndarray, overall: float,
            exp: Experiment) -> plt.Figure:
    fig, axs = plt.subplots(1, 2, figsize=(10, 3.4))
    for ch in range(mean_xc.shape[0]):
        axs[0].plot(lags_ms, mean_xc[ch], lw=0.7, alpha=0.7)
    axs[0].axvline(0, color="k", lw=0.6)
    axs[0].set_xlabel("lag of −momentum behind state (ms)")
    axs[0].set_ylabel("normalised cross-correlation")
    axs[0].set_title("mean over trials, one line per channel", fontsize=8)
    m = per_channel["mean_lag_ms"].to_numpy()
    err = np.stack([m - per_channel["lag_ms_lo"].to_numpy(), per_channel["lag_ms_hi"].to_numpy() - m])
    axs[1].errorbar(per_channel["channel"], m, yerr=np.nan_to_num(err), fmt="o", ms=3, capsize=2)
    axs[1].axhline(0, color="k", lw=0.6)
    axs[1].axhline(overall, color="C3", ls="--", lw=0.8, label=f"mean {overall:.1f} ms")
    axs[1].set_xlabel("channel")
    axs[1].set_ylabel("lag (ms), 95% CI over trials")
    axs[1].legend(fontsize=7)
    fig.suptitle(f"E-I lag (1 step = {exp.dt_ms:.3g} ms): positive = −momentum lags the state", fontsize=9)
    fig.tight_layout()
    return fig
