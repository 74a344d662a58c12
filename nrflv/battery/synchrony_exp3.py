"""Synchrony experiment 3: the amplitude profile along a long bar against distance.

For every ``long_bars`` trial of a whole-layer recording (``record_units: all``), the unit at the
bar's centre (site 0) is paired with the unit of the same channel at distance ``d = 1..D`` along
the bar's axis, on both sides (layer units; positions rounded to the layer grid), every channel.
``D`` is the largest distance at which every trial still has a unit inside the layer on at least
one side. Per trial and distance the shift-corrected zero-lag cross-correlation is averaged over
channels and sides; its mean over trials with a bootstrap interval, and the slope against
distance with a bootstrap interval over trials, in each period. The damped cosine fitted to each
distance's mean corrected correlogram gives a second amplitude where it converges (finite, its
frequency in the band around the LFP peak; point slope only). A window
recording (``record_units: patch``) holds units at two sites only: this part is skipped there
with that reason.
"""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from core.suite import AnalysisSkipped  # noqa: E402
from nrflv.battery.common import bootstrap_mean_ci  # noqa: E402
from nrflv.battery.reading import Experiment  # noqa: E402
from nrflv.battery.synchrony_exp1 import converged  # noqa: E402
from nrflv.battery.synchrony_pairs import Part, PairMeasure, Periods, band_around_peak, measure_periods  # noqa: E402
from nrflv.measures.correlation import fit_damped_cosine  # noqa: E402
from nrflv.measures.trend import bootstrap_slope_ci, pooled_slope  # noqa: E402
from nrflv.stimuli import bar_axis  # noqa: E402


def axis_points(y0: np.ndarray, x0: np.ndarray, direction: np.ndarray, layer_hw: tuple[int, int]
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Units along each trial's bar axis: ``rows, cols (N, 1 + 2D)`` (the centre, then ``+d`` and
    ``-d`` for d = 1..D, clipped into the layer), ``valid (N, 2D)`` (inside the layer) and ``D``."""
    ay, ax = bar_axis(direction)
    h, w = layer_hw
    d_max = max(h, w)
    d = np.arange(1, d_max + 1)
    side = np.array([1, -1])
    ys = y0[:, None, None] + np.rint(side[None, None, :] * d[None, :, None] * ay[:, None, None])
    xs = x0[:, None, None] + np.rint(side[None, None, :] * d[None, :, None] * ax[:, None, None])
    inside = (ys >= 0) & (ys < h) & (xs >= 0) & (xs < w)                   # (N, d, 2)
    reach = inside.any(-1).all(0)                                          # every trial, some side
    D = int(np.argmin(reach)) if not reach.all() else d_max
    if D == 0:
        raise AnalysisSkipped("no unit along the bar's axis lies inside the layer at distance 1")
    ys, xs, inside = ys[:, :D].reshape(len(y0), -1), xs[:, :D].reshape(len(y0), -1), inside[:, :D].reshape(len(y0), -1)
    rows = np.concatenate([y0[:, None], np.clip(ys, 0, h - 1)], 1).astype(np.int64)
    cols = np.concatenate([x0[:, None], np.clip(xs, 0, w - 1)], 1).astype(np.int64)
    return rows, cols, inside, D


def experiment3(exp: Experiment, cfg, per: Periods, max_lag: int, lags_ms: torch.Tensor) -> Part:
    """The profile along the long bar (see module doc)."""
    if exp.units_mode != "all":
        raise AnalysisSkipped(f"needs record_units: all (this recording has record_units: {exp.units_mode}: "
                              "units at two sites only)")
    table = exp.table("long_bars")
    y0, x0 = (v.cpu().numpy() for v in exp.layer_site(table, 0))
    rows, cols, valid, D = axis_points(y0, x0, table["direction"].to_numpy(float), exp.layer_hw)
    x = torch.cat([b.values for b in exp.points("state", table, rows, cols, time=per.span)]).double()
    x = x.permute(0, 2, 3, 1)                                               # (N, C, K, T)
    centre, along = x[:, :, :1], x[:, :, 1:]                                # (N, C, 1, T), (N, C, 2D, T)
    f0, lo, hi = band_around_peak(exp, per.cut(centre[:, :, 0], "during"), cfg.spectrum_nperseg,
                                  cfg.synchrony_band_hz)
    measure = PairMeasure(exp.fs, max_lag, (lo, hi), cfg.spectrum_nperseg)
    stats = measure_periods(measure, per, centre, along, table["direction"].to_numpy())
    ok = torch.from_numpy(valid[stats.keep])[:, None, :].expand(-1, x.shape[1], -1)   # (N', C, 2D)
    dist = torch.arange(1, D + 1, dtype=torch.float64)
    part = Part(f0=f0)
    prof = []
    for period, m in stats.corr.items():
        amp = torch.where(ok, m["xcorr_zero_lag"].cpu(), float("nan"))
        amp = amp.reshape(amp.shape[0], amp.shape[1], D, 2)                 # (N', C, D, side)
        per_trial = amp.permute(0, 2, 1, 3).reshape(amp.shape[0], D, -1).nanmean(-1)   # (N', D)
        xc = m["xcorr"].cpu().reshape(amp.shape[0], amp.shape[1], D, 2, -1)
        w = ok.reshape(amp.shape[0], amp.shape[1], D, 2)[..., None].to(xc.dtype)
        mean_xc = (xc * w).sum((0, 1, 3)) / w.sum((0, 1, 3)).clamp_min(1)  # (D, 2L+1)
        fit = fit_damped_cosine(lags_ms, mean_xc, f_guess=f0)
        conv = converged(fit["amplitude"], fit["r2"], fit["frequency_hz"], (f0, lo, hi)).cpu()
        for k in range(D):
            mean, ci_lo, ci_hi = bootstrap_mean_ci(per_trial[:, k].numpy(), cfg.n_bootstrap, cfg.seed + k)
            prof.append({"period": period, "distance": k + 1, "xcorr_zero_lag": mean, "lo": ci_lo, "hi": ci_hi,
                         "trials": int(torch.isfinite(per_trial[:, k]).sum()),
                         "pair_values": int(w[:, :, k].sum()), "fit_amplitude": float(fit["amplitude"][k]),
                         "fit_frequency_hz": float(fit["frequency_hz"][k]), "fit_r2": float(fit["r2"][k]),
                         "fit_converged": bool(conv[k])})
        s, s_lo, s_hi = bootstrap_slope_ci(dist, per_trial, cfg.n_bootstrap,
                                           generator=torch.Generator().manual_seed(cfg.seed))
        base = {"experiment": 3, "period": period, "group": "long_bars", "x": "distance along the bar (layer units)"}
        part.slopes.append({**base, "measure": "xcorr_zero_lag", "slope": float(s), "lo": float(s_lo),
                            "hi": float(s_hi), "resampled": "trials", "n_resampled": int(per_trial.shape[0]),
                            "pairs": 2 * D * int(x.shape[1]), "values": int(torch.isfinite(per_trial).sum())})
        fs, _ = pooled_slope(dist[conv][None], fit["amplitude"].cpu()[conv][None])
        part.slopes.append({**base, "measure": "fit_amplitude", "slope": float(fs), "lo": float("nan"),
                            "hi": float("nan"), "resampled": "none (one fit per distance)",
                            "n_resampled": 0, "pairs": 2 * D * int(x.shape[1]), "values": int(conv.sum())})
    profile = pd.DataFrame(prof)
    part.tables["exp3_distance_profile"] = profile
    part.scalars["exp3_slope_per_unit/during"] = part.slopes[0]["slope"]
    part.figures["exp3_along_bar"] = figure(profile, pd.DataFrame(part.slopes))
    return part


def figure(profile: pd.DataFrame, slopes: pd.DataFrame) -> plt.Figure:
    fig, axs = plt.subplots(1, 2, figsize=(10, 3.8), squeeze=False)
    for period, colour in (("during", "C0"), ("before", "0.5")):
        p = profile[profile["period"] == period]
        if p.empty:
            continue
        m = p["xcorr_zero_lag"].to_numpy()
        err = np.nan_to_num(np.stack([m - p["lo"].to_numpy(), p["hi"].to_numpy() - m]))
        s = slopes[(slopes["period"] == period) & (slopes["measure"] == "xcorr_zero_lag")].iloc[0]
        axs[0, 0].errorbar(p["distance"], m, yerr=err, color=colour, marker="o", capsize=3,
                           label=f"{period}: slope {s['slope']:.2g} [{s['lo']:.2g}, {s['hi']:.2g}]/unit")
        axs[0, 1].plot(p["distance"], p["fit_amplitude"].where(p["fit_converged"]), color=colour, marker="o",
                       label=period)
    axs[0, 0].set_ylabel("corrected xcorr, zero lag (95% CI)")
    axs[0, 1].set_ylabel("damped-cosine amplitude (converged fits)")
    for ax in axs[0]:
        ax.axhline(0, color="k", lw=0.5)
        ax.set_xlabel("distance from the bar's centre along its axis (layer units)")
        ax.legend(fontsize=7)
    fig.suptitle("experiment 3: synchrony of the centre unit with units along the long bar (same channel, all "
                 "channels, both sides)", fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    return fig
