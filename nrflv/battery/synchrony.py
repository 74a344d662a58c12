"""Stimulus-dependent synchrony -- the thesis's question (its answer: none).

Three comparisons, each on pairs of single units at recording sites (the unit at the site, per
channel), during the stimulus after ``onset_skip_ms``:

* ``channels`` (``few_angles``): every pair of channels at site 0, by channel-index distance on
  the ring the circulant mass matrix makes (``min(|i-j|, C-|i-j|)``);
* ``centre_flank`` (``pairs``): the same channel at the two Gabors' centres, collinear against
  orthogonal, by distance;
* ``long_bars`` (``long_bars`` against ``few_angles``): the same channel at the centre and at a
  point ``flank_distance`` along the bars' axis, under a long bar and under a short Gabor.

Per pair and trial: the normalised cross-correlogram, the coherence and the phase-locking value
in a band of +- ``synchrony_band_hz`` around the set's LFP peak frequency. Every measure is
shuffle-corrected by the shift predictor (the same pair from other trials of the same
condition, which share only what the stimulus locks), then averaged per trial and group with
95% bootstrap intervals over trials; a group's corrected measure is "synchronous" when its
interval lies above zero. The mean corrected correlogram of each group is fitted by the damped
cosine of Gray et al. (1989), whose frequency, decay and oscillation index (the envelope one
period out: ~1 for a sustained rhythm, 0 for a single bump) summarise how oscillatory the
synchrony is. (The relative modulation amplitude is listed too, but on mean-removed
correlograms it is ~1 for any fitted peak.)
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
from nrflv.measures.correlation import (circular_channel_distance, cross_correlation,  # noqa: E402
                                        fit_damped_cosine, oscillation_index, phase_locking_value, relative_modulation,
                                        shuffle_corrected)
from nrflv.measures.spectral import coherence, peak, welch  # noqa: E402

MEASURES = ("xcorr_zero_lag", "xcorr_peak", "coherence", "plv")


def centre_traces(exp: Experiment, table: pd.DataFrame, site: int, during: slice) -> torch.Tensor:
    """``(N, C, T)`` state of the unit at ``site`` in every channel (small: read whole)."""
    return torch.cat([b.values.movedim(1, -1) for b in exp.centre("state", table, site, time=during)]).double()


class PairMeasure:
    """``(a, b) (..., T) -> (..., 2L+3)``: the correlogram at lags -L..L, then coherence and PLV in
    the band (one callable, so the shift predictor shuffles all of them alike)."""

    def __init__(self, fs: float, max_lag: int, band: tuple[float, float], nperseg: int):
        self.fs, self.max_lag, self.band, self.nperseg = fs, max_lag, band, nperseg

    def __call__(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        _, xc = cross_correlation(a, b, self.max_lag)
        f, coh = coherence(a, b, self.fs, nperseg=min(self.nperseg, a.shape[-1]))
        inband = (f >= self.band[0]) & (f <= self.band[1])
        coh = coh[..., inband].mean(-1, keepdim=True) if inband.any() else torch.full_like(coh[..., :1], float("nan"))
        plv = phase_locking_value(a, b, self.fs, self.band)[..., None]
        return torch.cat([xc, coh, plv], -1)

    def split(self, m: torch.Tensor) -> dict[str, torch.Tensor]:
        L = self.max_lag
        xc = m[..., :2 * L + 1]
        return {"xcorr": xc, "xcorr_zero_lag": xc[..., L], "xcorr_peak": xc.amax(-1),
                "coherence": m[..., 2 * L + 1], "plv": m[..., 2 * L + 2]}


def corrected_by_condition(measure: PairMeasure, a: torch.Tensor, b: torch.Tensor, groups: np.ndarray
                           ) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """Raw and shift-corrected measures ``(N', ..., K)`` of trials in conditions with >= 2 trials
    (``groups``: a condition label per trial); returns them and the kept trial positions."""
    raws, corrs, keep = [], [], []
    for g in pd.unique(groups):
        idx = np.flatnonzero(groups == g)
        if len(idx) < 2:
            continue
        raw, _, corr = shuffle_corrected(measure, a[idx], b[idx])
        raws.append(raw)
        corrs.append(corr)
        keep.append(idx)
    if not keep:
        raise AnalysisSkipped("every condition has a single trial: the shift predictor needs repeats")
    return torch.cat(raws), torch.cat(corrs), np.concatenate(keep)


def band_around_peak(exp: Experiment, traces: torch.Tensor, nperseg: int, half_width: float) -> tuple[float, float, float]:
    """The LFP peak frequency of ``traces (N, C, T)`` (their sum over channels) and a band around it."""
    f, p = welch(traces.sum(1), exp.fs, nperseg=min(nperseg, traces.shape[-1]))
    f0, _ = peak(f, p.mean(0))
    f0 = float(f0)
    return f0, max(f0 - half_width, float(f[1])), min(f0 + half_width, exp.fs / 2 * 0.999)


def _group_rows(label: dict, values: dict[str, torch.Tensor], raw: dict[str, torch.Tensor], cfg, seed: int) -> dict:
    """One table row: each measure's per-trial means (over the group's pairs), mean and CI."""
    row = dict(label)
    for k in MEASURES:
        per_trial = values[k].reshape(values[k].shape[0], -1).nanmean(1).cpu().numpy()
        m, lo, hi = bootstrap_mean_ci(per_trial, cfg.n_bootstrap, seed)
        row.update({k: m, f"{k}_lo": lo, f"{k}_hi": hi,
                    f"{k}_raw": float(raw[k].reshape(raw[k].shape[0], -1).nanmean(1).mean())})
        seed += 1
    row["synchronous"] = bool(row["xcorr_zero_lag_lo"] > 0)
    row["trials"] = int(values["xcorr_zero_lag"].shape[0])
    return row


def _fit_rows(groups: list[tuple[dict, torch.Tensor]], lags_ms: torch.Tensor, f0: float) -> list[dict]:
    """Damped-cosine fits of each group's mean corrected correlogram."""
    rows = []
    for label, xc in groups:
        mean = xc.reshape(-1, xc.shape[-1]).mean(0)
        fit = fit_damped_cosine(lags_ms, mean[None], f_guess=f0)
        rows.append({**label, **{k: float(v.reshape(-1)[0]) for k, v in fit.items()},
                     "relative_modulation": float(relative_modulation(fit).reshape(-1)[0]),
                     "oscillation_index": float(oscillation_index(fit).reshape(-1)[0])})
    return rows


def channel_pairs(exp: Experiment, cfg, during: slice, max_lag: int):
    table = exp.table("few_angles")
    x = centre_traces(exp, table, 0, during)                      # (N, C, T)
    n_ch = x.shape[1]
    f0, lo, hi = band_around_peak(exp, x, cfg.spectrum_nperseg, cfg.synchrony_band_hz)
    measure = PairMeasure(exp.fs, max_lag, (lo, hi), cfg.spectrum_nperseg)
    i, j = torch.triu_indices(n_ch, n_ch, 1)
    dist = circular_channel_distance(i, j, n_ch).cpu().numpy()
    groups = table["direction"].to_numpy()
    raw, corr, _ = corrected_by_condition(measure, x[:, i], x[:, j], groups)    # (N', pairs, K)
    raw, corr = measure.split(raw), measure.split(corr)
    rows, fits = [], []
    for d in np.unique(dist):
        sel = torch.as_tensor(dist == d, device=x.device)
        label = {"comparison": "channels", "channel_distance": int(d), "pairs": int(sel.sum())}
        rows.append(_group_rows(label, {k: v[:, sel] for k, v in corr.items()},
                                {k: v[:, sel] for k, v in raw.items()}, cfg, cfg.seed + int(d)))
        fits.append((label, corr["xcorr"][:, sel]))
    return rows, fits, f0


def centre_flank(exp: Experiment, cfg, during: slice, max_lag: int):
    table = exp.table("pairs")
    a, b = centre_traces(exp, table, 0, during), centre_traces(exp, table, 1, during)
    f0, lo, hi = band_around_peak(exp, a, cfg.spectrum_nperseg, cfg.synchrony_band_hz)
    measure = PairMeasure(exp.fs, max_lag, (lo, hi), cfg.spectrum_nperseg)
    cond = table[["displacement", "distance", "relation"]].astype(str).agg("|".join, axis=1).to_numpy()
    raw, corr, keep = corrected_by_condition(measure, a, b, cond)            # (N', C, K)
    raw, corr = measure.split(raw), measure.split(corr)
    kept = table.iloc[keep].reset_index(drop=True)
    rows, fits, diffs = [], [], []
    for d in sorted(kept["distance"].unique()):
        per = {}
        for rel in ("collinear", "orthogonal"):
            sel = torch.tensor(((kept["distance"] == d) & (kept["relation"] == rel)).to_numpy(), device=a.device)
            if not bool(sel.any()):
                continue
            label = {"comparison": "centre_flank", "distance": int(d), "relation": rel}
            rows.append(_group_rows(label, {k: v[sel] for k, v in corr.items()},
                                    {k: v[sel] for k, v in raw.items()}, cfg, cfg.seed + 100 * int(d)))
            fits.append((label, corr["xcorr"][sel]))
            per[rel] = corr["xcorr_zero_lag"][sel].mean(1).cpu().numpy()
        if len(per) == 2:
            diffs.append(_difference_row({"comparison": "collinear - orthogonal", "distance": int(d)},
                                         per["collinear"], per["orthogonal"], cfg))
    return rows, fits, diffs, f0


def long_bars(exp: Experiment, cfg, during: slice, max_lag: int):
    rows, fits, per = [], [], {}
    f0 = None
    for name in ("long_bars", "few_angles"):
        table = exp.table(name)
        a, b = centre_traces(exp, table, 0, during), centre_traces(exp, table, 1, during)
        if f0 is None:
            f0, lo, hi = band_around_peak(exp, a, cfg.spectrum_nperseg, cfg.synchrony_band_hz)
            measure = PairMeasure(exp.fs, max_lag, (lo, hi), cfg.spectrum_nperseg)
        raw, corr, _ = corrected_by_condition(measure, a, b, table["direction"].to_numpy())
        raw, corr = measure.split(raw), measure.split(corr)
        label = {"comparison": "along_bar", "stimulus_set": name}
        rows.append(_group_rows(label, corr, raw, cfg, cfg.seed + 7))
        fits.append((label, corr["xcorr"]))
        per[name] = corr["xcorr_zero_lag"].mean(1).cpu().numpy()
    diff = _difference_row({"comparison": "long bar - short Gabor"}, per["long_bars"], per["few_angles"], cfg)
    return rows, fits, [diff], f0


def _difference_row(label: dict, x: np.ndarray, y: np.ndarray, cfg) -> dict:
    """Difference of means of two independent groups of trials, with a bootstrap interval."""
    rng = np.random.default_rng(cfg.seed)
    boots = (x[rng.integers(0, len(x), (cfg.n_bootstrap, len(x)))].mean(1)
             - y[rng.integers(0, len(y), (cfg.n_bootstrap, len(y)))].mean(1))
    lo, hi = np.quantile(boots, [0.025, 0.975])
    return {**label, "difference_xcorr_zero_lag": float(x.mean() - y.mean()), "lo": float(lo), "hi": float(hi),
            "different": bool(lo > 0 or hi < 0), "trials_a": len(x), "trials_b": len(y)}


def run(exp: Experiment, cfg) -> AnalysisResult:
    during = exp.samples(cfg.onset_skip_ms, "stimulus")
    max_lag = lag_steps(exp, cfg, during)
    lags_ms = torch.arange(-max_lag, max_lag + 1, dtype=torch.float64) * exp.dt_ms
    rows, fits, diffs, notes, freqs = [], [], [], [], {}
    for name, fn in (("channels", channel_pairs), ("centre_flank", centre_flank), ("long_bars", long_bars)):
        try:
            out = fn(exp, cfg, during, max_lag)
        except AnalysisSkipped as exc:
            notes.append(f"{name}: {exc}")
            continue
        rows += out[0]
        fits += out[1]
        if len(out) == 4:
            diffs += out[2]
        freqs[name] = out[-1]
    if not rows:
        raise AnalysisSkipped("; ".join(notes))
    groups = pd.DataFrame(rows)
    fit_table = pd.DataFrame(_fit_rows(fits, lags_ms, float(np.mean(list(freqs.values())))))
    tables = {"synchrony_groups": groups, "xcorr_gabor_fits": fit_table}
    if diffs:
        tables["synchrony_differences"] = pd.DataFrame(diffs)
    scalars = {"fraction_groups_synchronous": float(groups["synchronous"].mean())}
    for name, f in freqs.items():
        scalars[f"band_centre_hz/{name}"] = f
    if diffs:
        scalars["fraction_differences_significant"] = float(np.mean([d["different"] for d in diffs]))
    ch = groups[groups["comparison"] == "channels"]
    if not ch.empty:
        scalars["channels_xcorr_zero_lag_nearest"] = float(ch.iloc[0]["xcorr_zero_lag"])
    figures = {"synchrony": _figure(groups, diffs)}
    xc_fig = _xcorr_figure(fits, lags_ms.numpy(), fit_table)
    if xc_fig is not None:
        figures["corrected_xcorrs"] = xc_fig
    if notes:
        groups.attrs["notes"] = notes
    return AnalysisResult(tables=tables, figures=figures, scalars=scalars)


def _errorbar(ax, x, g: pd.DataFrame, key: str, **kw):
    m = g[key].to_numpy()
    err = np.stack([m - g[f"{key}_lo"].to_numpy(), g[f"{key}_hi"].to_numpy() - m])
    ax.errorbar(x, m, yerr=np.nan_to_num(err), capsize=3, marker="o", ms=3, **kw)


def _figure(groups: pd.DataFrame, diffs: list[dict]) -> plt.Figure:
    fig, axs = plt.subplots(3, 3, figsize=(12, 8.5), squeeze=False)
    for col, key in enumerate(("xcorr_zero_lag", "coherence", "plv")):
        ch = groups[groups["comparison"] == "channels"]
        if not ch.empty:
            _errorbar(axs[0, col], ch["channel_distance"], ch, key)
            axs[0, col].set_xlabel("channel distance (circular)")
        cf = groups[groups["comparison"] == "centre_flank"]
        for rel in ("collinear", "orthogonal") if not cf.empty else ():
            g = cf[cf["relation"] == rel]
            if not g.empty:
                _errorbar(axs[1, col], g["distance"], g, key, label=rel)
        axs[1, col].set_xlabel("centre-flank distance (px)")
        lb = groups[groups["comparison"] == "along_bar"]
        if not lb.empty:
            _errorbar(axs[2, col], np.arange(len(lb)), lb, key)
            axs[2, col].set_xticks(np.arange(len(lb)), lb["stimulus_set"].tolist())
        for row in range(3):
            axs[row, col].axhline(0, color="k", lw=0.5)
            axs[row, col].set_ylabel(f"{key} (shift-corrected)", fontsize=8)
    if not groups[groups["comparison"] == "centre_flank"].empty:
        axs[1, 0].legend(fontsize=7)
    fig.suptitle("synchrony, shift-predictor corrected (95% bootstrap intervals over trials); rows: channel "
                 "pairs at one site, centre-flank pairs, along a bar", fontsize=9)
    fig.tight_layout()
    return fig


def _xcorr_figure(fits: list[tuple[dict, torch.Tensor]], lags_ms: np.ndarray, fit_table: pd.DataFrame):
    if not fits:
        return None
    n = len(fits)
    cols = min(4, n)
    rows = -(-n // cols)
    fig, axs = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.4 * rows), squeeze=False)
    from nrflv.measures.correlation import damped_cosine

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
    fig.suptitle("mean shift-corrected cross-correlograms (grey) and damped-cosine fits (red); lag in ms",
                 fontsize=9)
    fig.tight_layout()
    return fig
