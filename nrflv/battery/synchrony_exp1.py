"""Synchrony experiment 1 (the thesis's "overlapping receptive fields"): for pairs of channels at
site 0 under ``few_angles``, the synchrony amplitude against the circular difference of the two
channels' preferred directions, for aligned pairs (both channels matched to the trial's
orientation within ``match_tolerance``) and the others, in each period.

Amplitudes: the shift-corrected cross-correlation at zero lag per pair and trial (unbiased: ~0
without synchrony), and the amplitude of the damped cosine fitted to each pair's mean corrected
correlogram over the group's trials where the fit converges (finite, its frequency inside the
band around the LFP peak). Only channels the orientation-tuning
analysis calls tuned enter. Slopes against the difference (per degree) come with bootstrap
intervals over trials (zero-lag amplitude) or over pairs (fit amplitude).
"""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from nrflv.battery.common import bootstrap_mean_ci, matched_channels  # noqa: E402
from nrflv.battery.synchrony_pairs import Part, Stats  # noqa: E402
from nrflv.measures.correlation import fit_damped_cosine  # noqa: E402
from nrflv.measures.trend import bootstrap_slope_ci  # noqa: E402

GROUPS = ("aligned", "unaligned")


def converged(amplitude: torch.Tensor, r2: torch.Tensor, frequency: torch.Tensor, band) -> torch.Tensor:
    """A damped-cosine fit that describes the rhythm: finite, with its frequency inside the band
    ``(f0, lo, hi)`` around the LFP peak (a fit at ~0 Hz trades its amplitude against the offset
    and is no oscillation)."""
    return torch.isfinite(amplitude) & torch.isfinite(r2) & (frequency >= band[1]) & (frequency <= band[2])
BIN_DEG = 22.5


def preference_difference(pref: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """``(P,)`` circular difference in [0, 180] degrees of the preferred directions ``pref (C,)``
    of channels ``i`` and ``j``."""
    d = np.remainder(pref[i] - pref[j], 360.0)
    return np.minimum(d, 360.0 - d)


def experiment1(stats: Stats, table: pd.DataFrame, i: torch.Tensor, j: torch.Tensor, n_ch: int,
                preferences: pd.DataFrame | None, lags_ms: torch.Tensor, band: tuple[float, float, float],
                cfg) -> Part:
    """Experiment 1 from the channel pairs' measures (``stats``: ``(N', P)`` per measure over the
    pairs ``i < j``) of the kept trials ``table``; ``band``: the LFP peak and the band around it
    (Hz). Without preferences, a note only."""
    part = Part()
    if preferences is None or preferences.empty:
        part.notes.append("experiment 1 (amplitude vs preferred-direction difference): skipped: no orientation "
                          "preferences (the recording has no just_angle trials)")
        return part
    prefs = preferences.set_index("channel").reindex(range(n_ch))
    tuned = prefs["tuned"].fillna(False).to_numpy().astype(bool)
    i, j = i.cpu().numpy(), j.cpu().numpy()
    use = tuned[i] & tuned[j]
    if not use.any():
        part.notes.append(f"experiment 1: skipped: {int(tuned.sum())} tuned channel(s), no pair of tuned channels")
        return part
    diff = preference_difference(prefs["pref_direction"].to_numpy(float), i, j)
    ordered = prefs.reset_index().rename(columns={"index": "channel"})
    match = matched_channels(ordered.fillna({"pref_orientation": 0.0}), table, cfg.match_tolerance).cpu().numpy()
    aligned = match[:, i] & match[:, j]                                        # (N', P)
    masks = {"aligned": aligned & use, "unaligned": ~aligned & use}
    x = torch.tensor(diff, dtype=torch.float64)
    pair_rows, bin_rows = [], []
    edges = np.arange(0.0, 180.0 + BIN_DEG, BIN_DEG)
    for period, m in stats.corr.items():
        amp = m["xcorr_zero_lag"].cpu()                                      # (N', P)
        for g, mask in masks.items():
            mk = torch.from_numpy(mask)
            y = torch.where(mk, amp, torch.full_like(amp, float("nan")))
            n_trials, n_pairs = int(mk.any(1).sum()), int(mk.any(0).sum())
            base = {"experiment": 1, "period": period, "group": g, "x": "preference difference (deg)"}
            if n_pairs == 0:
                if period == "during":
                    part.notes.append(f"experiment 1: no {g} pairs of tuned channels")
                continue
            s, lo, hi = bootstrap_slope_ci(x, y, cfg.n_bootstrap, generator=torch.Generator().manual_seed(cfg.seed))
            part.slopes.append({**base, "measure": "xcorr_zero_lag", "slope": float(s), "lo": float(lo),
                                "hi": float(hi), "resampled": "trials", "n_resampled": n_trials,
                                "pairs": n_pairs, "values": int(mk.sum())})
            # each pair's mean corrected correlogram over the trials where it is in the group
            xc = m["xcorr"].cpu()                                            # (N', P, 2L+1)
            w = mk.to(xc.dtype)[..., None]
            cnt = mk.sum(0)
            has = cnt > 0
            mean_xc = (xc * w).sum(0)[has] / cnt[has, None]
            fit = fit_damped_cosine(lags_ms, mean_xc, f_guess=band[0])
            amp_fit = torch.full((len(diff),), float("nan"), dtype=torch.float64)
            r2, freq = amp_fit.clone(), amp_fit.clone()
            amp_fit[has], r2[has], freq[has] = fit["amplitude"].cpu(), fit["r2"].cpu(), fit["frequency_hz"].cpu()
            ok = converged(amp_fit, r2, freq, band)
            s, lo, hi = bootstrap_slope_ci(x[:, None], torch.where(ok, amp_fit, float("nan"))[:, None],
                                           cfg.n_bootstrap, generator=torch.Generator().manual_seed(cfg.seed + 1))
            part.slopes.append({**base, "measure": "fit_amplitude", "slope": float(s), "lo": float(lo),
                                "hi": float(hi), "resampled": "pairs", "n_resampled": int(ok.sum()),
                                "pairs": int(has.sum()), "values": int(ok.sum())})
            per_pair = y.nanmean(0).numpy()
            for p in np.flatnonzero(has.numpy()):
                pair_rows.append({"period": period, "group": g, "channel_a": int(i[p]), "channel_b": int(j[p]),
                                  "pref_difference_deg": float(diff[p]), "xcorr_zero_lag": float(per_pair[p]),
                                  "trials": int(cnt[p]), "fit_amplitude": float(amp_fit[p]),
                                  "fit_r2": float(r2[p]), "fit_converged": bool(ok[p])})
            for lo_e, hi_e in zip(edges[:-1], edges[1:]):
                inbin = (diff >= lo_e) & ((diff < hi_e) | (hi_e == edges[-1]))
                if not inbin.any():
                    continue
                yb = y[:, torch.from_numpy(inbin)]
                has_t = torch.isfinite(yb).any(1)
                per_t = yb[has_t].nanmean(1).numpy()
                mean, ci_lo, ci_hi = bootstrap_mean_ci(per_t, cfg.n_bootstrap, cfg.seed + int(lo_e))
                bin_rows.append({"period": period, "group": g, "diff_from_deg": lo_e, "diff_to_deg": hi_e,
                                 "diff_mean_deg": float(diff[inbin & mask.any(0)].mean()) if (inbin & mask.any(0)).any()
                                 else float("nan"),
                                 "xcorr_zero_lag": mean, "lo": ci_lo, "hi": ci_hi, "trials": int(has_t.sum()),
                                 "pairs": int((inbin & mask.any(0)).sum()), "values": int(torch.isfinite(yb).sum())})
    part.tables["exp1_pairs"] = pd.DataFrame(pair_rows)
    part.tables["exp1_preference_difference"] = pd.DataFrame(bin_rows)
    for r in part.slopes:
        if r["period"] == "during" and r["measure"] == "xcorr_zero_lag":
            part.scalars[f"exp1_slope_per_deg/{r['group']}"] = r["slope"]
    part.figures["exp1_preference_difference"] = figure(pd.DataFrame(pair_rows), pd.DataFrame(bin_rows),
                                                        pd.DataFrame(part.slopes))
    return part


def figure(pairs: pd.DataFrame, bins: pd.DataFrame, slopes: pd.DataFrame) -> plt.Figure:
    fig, axs = plt.subplots(2, 2, figsize=(10, 7), squeeze=False, sharex=True)
    for col, g in enumerate(GROUPS):
        for row, (key, lab) in enumerate((("xcorr_zero_lag", "corrected xcorr at zero lag"),
                                          ("fit_amplitude", "damped-cosine amplitude"))):
            ax = axs[row, col]
            for period, colour in (("during", "C0"), ("before", "0.5")):
                pp = pairs[(pairs["group"] == g) & (pairs["period"] == period)] if not pairs.empty else pairs
                if pp.empty:
                    continue
                v = pp[key] if key == "xcorr_zero_lag" else pp[key].where(pp["fit_converged"])
                ax.scatter(pp["pref_difference_deg"], v, s=8, color=colour, alpha=0.5, label=f"pairs, {period}")
                if key == "xcorr_zero_lag" and not bins.empty:
                    b = bins[(bins["group"] == g) & (bins["period"] == period)]
                    if not b.empty:
                        m = b["xcorr_zero_lag"].to_numpy()
                        err = np.nan_to_num(np.stack([m - b["lo"].to_numpy(), b["hi"].to_numpy() - m]))
                        ax.errorbar(b["diff_mean_deg"], m, yerr=err, color=colour, marker="o", capsize=3,
                                    label=f"bins, {period} (95% CI over trials)")
                sl = slopes[(slopes["group"] == g) & (slopes["period"] == period) & (slopes["measure"] == key)] \
                    if not slopes.empty else slopes
                if not sl.empty and np.isfinite(sl.iloc[0]["slope"]):
                    s = sl.iloc[0]
                    xs = np.array([0.0, 180.0])
                    ok = np.isfinite(v.to_numpy())
                    if ok.any():
                        x0, y0 = pp["pref_difference_deg"].to_numpy()[ok].mean(), v.to_numpy()[ok].mean()
                        ax.plot(xs, y0 + s["slope"] * (xs - x0), color=colour, lw=0.8,
                                label=f"slope {s['slope']:.2g}/deg [{s['lo']:.2g}, {s['hi']:.2g}]")
            if not ax.has_data():
                ax.text(0.5, 0.5, f"no {g} pairs of tuned channels", ha="center", transform=ax.transAxes)
            ax.axhline(0, color="k", lw=0.5)
            ax.set_title(f"{g}: {lab}", fontsize=9)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=6)
            if row == 1:
                ax.set_xlabel("difference of preferred directions (deg)")
    fig.suptitle("experiment 1: channel pairs at one site (few_angles), tuned channels only; aligned: both matched "
                 "to the stimulus orientation", fontsize=9)
    fig.tight_layout()
    return fig
