"""State traces: what the units do over time, per channel and by stimulus.

* **Per channel** (contrast trials, window at site 0): the summed state of the channel's
  active, matched units (as the original: ``lfp_units: all`` drops the matching), summed over
  trials, over the whole protocol; its spectrogram; and its autocorrelation during the
  stimulus and during the blank before it (equal lengths after ``onset_skip_ms``, linearly
  detrended). One figure per channel with any such unit; the autocorrelations in a table with
  the lag of the first side peak (the rhythm's period) per period.
* **By orientation and contrast** around the onset (``trace_window_ms`` before and after): the
  mean state of the matched channels' unit at the site, by stimulus orientation (rows) and
  contrast (lines), with the number of trials in each mean.
"""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from core.suite import AnalysisResult, AnalysisSkipped  # noqa: E402
from nrflv.battery.common import kept_trials, matched_selection  # noqa: E402
from nrflv.battery.oscillations import equal_periods  # noqa: E402
from nrflv.battery.reading import Experiment  # noqa: E402
from nrflv.battery.spectra import contrast_trials  # noqa: E402
from nrflv.measures.activity import active_units  # noqa: E402
from nrflv.measures.oscillation import autocorrelation  # noqa: E402
from nrflv.measures.spectral import spectrogram  # noqa: E402


def first_side_peak(acf: np.ndarray) -> int:
    """Lag (samples) of the first local maximum of an autocorrelation ``(L + 1,)`` after lag 0
    that follows a negative lobe -- one period of a rhythm; -1 when there is none."""
    below = np.flatnonzero(acf < 0)
    if below.size == 0:
        return -1
    for k in range(int(below[0]) + 1, len(acf) - 1):
        if acf[k] >= acf[k - 1] and acf[k] > acf[k + 1] and acf[k] > 0:
            return k
    return -1


def channel_sums(exp: Experiment, cfg, preferences) -> tuple[torch.Tensor, np.ndarray]:
    """``(C, T)`` per channel: the state summed over its active, matched units and over the
    contrast trials; and ``(C,)`` how many unit-trials went into each."""
    table = contrast_trials(exp)
    periods = equal_periods(exp, cfg.onset_skip_ms)
    sel = matched_selection(exp, table, preferences, cfg.match_tolerance, cfg.lfp_units)
    total, count, k = None, None, 0
    for blk in exp.windows("state", table, 0):
        x = blk.values.double()                                          # (b, T, C, P, P)
        act = active_units(x[:, periods["stimulus"]].movedim(1, -1), x[:, periods["before"]].movedim(1, -1),
                           alpha=cfg.alpha)["active"]                    # (b, C, P, P)
        m = sel.mask[k:k + len(blk.trials)].to(x.device)[:, :, None, None] & act
        s = (x * m[:, None].double()).sum((0, 3, 4))                     # (T, C)
        n = m.sum((0, 2, 3)).cpu().numpy()
        total = s if total is None else total + s
        count = n if count is None else count + n
        k += len(blk.trials)
    return total.T.contiguous(), count


def around_onset(exp: Experiment, cfg, preferences) -> pd.DataFrame:
    """Mean state of the matched channels' site unit by orientation and contrast, from
    ``trace_window_ms[0]`` before to ``trace_window_ms[1]`` after the onset (long format)."""
    table = contrast_trials(exp)
    kept, mask, _ = kept_trials(exp, table, preferences, cfg.match_tolerance, cfg.lfp_units)
    before, after = (int(round(v / exp.dt_ms)) for v in cfg.trace_window_ms)
    lo, hi = max(0, exp.onset - before), min(exp.n_steps, exp.onset + after)
    out, k = [], 0
    for blk in exp.centre("state", kept, 0, time=slice(lo, hi)):
        m = mask[k:k + len(blk.trials)].to(blk.values.device, blk.values.dtype)
        out.append(((blk.values * m[:, None]).sum(-1) / m.sum(-1, keepdim=True)).double())
        k += len(blk.trials)
    traces = torch.cat(out).cpu().numpy()                               # (N', T')
    t_ms = (np.arange(lo, hi) - exp.onset) * exp.dt_ms
    orient = np.round(kept["orientation"].to_numpy(), 6)
    contrast = kept["contrast"].to_numpy()
    rows = []
    for o in np.unique(orient):
        for c in np.unique(contrast):
            sel_t = (orient == o) & (contrast == c)
            if not sel_t.any():
                continue
            mean = traces[sel_t].mean(0)
            rows += [{"orientation": float(o), "contrast": float(c), "trials": int(sel_t.sum()), "time_ms": float(t),
                      "mean_state": float(v)} for t, v in zip(t_ms, mean)]
    return pd.DataFrame(rows)


def run(exp: Experiment, cfg, preferences: pd.DataFrame | None = None) -> AnalysisResult:
    sums, counts = channel_sums(exp, cfg, preferences)
    periods = equal_periods(exp, cfg.onset_skip_ms)
    n = periods["stimulus"].stop - periods["stimulus"].start
    max_lag = min(n - 1, max(1, int(round(cfg.max_lag_ms * 2 / exp.dt_ms))))
    acf = {p: autocorrelation(sums[:, sl], max_lag) for p, sl in periods.items()}     # (C, L+1)
    lags_ms = np.arange(max_lag + 1) * exp.dt_ms
    acf_rows, chan_rows, figures = [], [], {}
    seg = min(cfg.spectrogram_nperseg, sums.shape[1])
    f, st, sxx = spectrogram(sums, exp.fs, nperseg=seg, noverlap=seg // 2)
    opened = plt.rc_context({"figure.max_open_warning": 0})     # one figure per channel, closed by the writer
    opened.__enter__()
    for ch in range(sums.shape[0]):
        row = {"channel": ch, "unit_trials": int(counts[ch])}
        for p in periods:
            a = acf[p][ch].cpu().numpy()
            k = first_side_peak(a) if counts[ch] else -1
            row[f"period_ms_{p}"] = float(k * exp.dt_ms) if k > 0 else float("nan")
            row[f"side_peak_{p}"] = float(a[k]) if k > 0 else float("nan")
            acf_rows += [{"channel": ch, "period": p, "lag_ms": float(lag), "autocorrelation": float(v)}
                         for lag, v in zip(lags_ms, a)]
        chan_rows.append(row)
        if counts[ch]:
            figures[f"channel_{ch:02d}"] = _channel_figure(exp, ch, sums[ch].cpu().numpy(), f.cpu().numpy(),
                                                           st.cpu().numpy(), sxx[ch].cpu().numpy(),
                                                           {p: acf[p][ch].cpu().numpy() for p in periods}, lags_ms,
                                                           int(counts[ch]))
    opened.__exit__(None, None, None)
    channels = pd.DataFrame(chan_rows)
    tables = {"channel_autocorrelation": pd.DataFrame(acf_rows), "channel_rhythm": channels}
    try:
        onset = around_onset(exp, cfg, preferences)
        tables["traces_around_onset"] = onset
        figures["traces_around_onset"] = _onset_figure(onset)
    except AnalysisSkipped as exc:
        tables["traces_around_onset"] = pd.DataFrame({"skipped": [str(exc)]})
    have = channels[channels["unit_trials"] > 0]
    scalars = {"channels_with_active_matched_units": float(len(have)),
               "median_period_ms_stimulus": float(have["period_ms_stimulus"].median()) if len(have) else float("nan"),
               "median_period_ms_before": float(have["period_ms_before"].median()) if len(have) else float("nan")}
    return AnalysisResult(tables=tables, figures=figures, scalars=scalars)


def _channel_figure(exp: Experiment, ch: int, trace, f, st, sxx, acf: dict, lags_ms, n: int) -> plt.Figure:
    fig, axs = plt.subplots(4, 1, figsize=(10, 8))
    t_ms = exp.time_ms()
    axs[0].plot(t_ms, trace, lw=0.6)
    axs[0].axvspan(0, (exp.offset - exp.onset) * exp.dt_ms, color="0.9", zorder=0)
    axs[0].set_ylabel("summed state")
    axs[0].set_title(f"channel {ch}: summed state of its active, matched units at site 0 ({n} unit-trials); "
                     "grey: stimulus", fontsize=8)
    axs[1].pcolormesh(st * 1000.0 - exp.onset * exp.dt_ms, f, np.log10(sxx + 1e-30), shading="nearest")
    axs[1].set_ylabel("Hz")
    axs[1].set_xlabel("time from onset (ms)")
    for ax, p, label in ((axs[2], "stimulus", "during the stimulus"), (axs[3], "before", "blank before")):
        ax.vlines(lags_ms, 0, acf[p], lw=1)
        ax.vlines(-lags_ms[1:], 0, acf[p][1:], lw=1)
        ax.axhline(0, color="k", lw=0.5)
        ax.set_ylabel("autocorrelation")
        ax.set_title(label, fontsize=8)
    axs[3].set_xlabel("lag (ms)")
    fig.tight_layout()
    return fig


def _onset_figure(onset: pd.DataFrame) -> plt.Figure:
    orients = np.unique(onset["orientation"])
    contrasts = np.unique(onset["contrast"])
    cols = min(4, len(orients))
    rows = -(-len(orients) // cols)
    fig, axs = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.4 * rows), squeeze=False, sharey=True)
    cmap = plt.get_cmap("YlGn")
    for ax, o in zip(axs.flat, orients):
        g = onset[onset["orientation"] == o]
        for i, c in enumerate(contrasts):
            h = g[g["contrast"] == c]
            if len(h):
                ax.plot(h["time_ms"], h["mean_state"], color=cmap(0.3 + 0.7 * i / max(1, len(contrasts) - 1)),
                        lw=0.8, label=f"c={c:g} (n={int(h['trials'].iloc[0])})")
        ax.axvline(0, color="k", lw=0.6)
        ax.set_title(f"orientation {o:g}°", fontsize=8)
        ax.set_xlabel("time from onset (ms)")
    for ax in list(axs.flat)[len(orients):]:
        ax.axis("off")
    axs[0, 0].set_ylabel("mean state (matched)")
    axs[0, 0].legend(fontsize=5)
    fig.suptitle("state of the matched channels' unit at the site around the onset, by orientation and contrast",
                 fontsize=9)
    fig.tight_layout()
    return fig
