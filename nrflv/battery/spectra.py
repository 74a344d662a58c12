"""Spectra by contrast (``contrast_and_angle``; any single-Gabor set with several contrasts
otherwise): does the V1-like layer oscillate, at what frequency, and how does that depend on
contrast?

* "LFP" of a trial: the summed state of the matched channels (significantly tuned, preferring
  the trial's orientation within ``match_tolerance``) over the window at site 0, as the original
  sums its matched units. A trial with no matched channel is excluded and counted (``trials`` and
  ``trials_excluded`` in the tables); without tuning (no ``just_angle`` set) every channel counts
  in every trial. One definition per run, never mixed in one mean.
* Welch spectra of the LFP during the stimulus and during the blank before it (each leaving out
  ``onset_skip_ms`` after the switch), per trial, averaged by contrast; the peak frequency and
  peak power in Hz per trial, with bootstrap intervals by contrast.
* Per-unit Welch spectra of the unit at the site, every channel, averaged by contrast.
* Spectrograms of the LFP, and of the single units (averaged over channels), over the whole
  protocol, averaged by contrast; time in ms from the stimulus onset.
Frequencies are in Hz from the recording's time base (``ms_per_step``, ``record_every``).
"""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from core.suite import AnalysisResult, AnalysisSkipped  # noqa: E402
from nrflv.battery.common import Selection, bootstrap_mean_ci, correlation, kept_trials  # noqa: E402
from nrflv.battery.reading import Experiment  # noqa: E402
from nrflv.measures.spectral import peak, spectrogram, welch  # noqa: E402


def contrast_trials(exp: Experiment) -> pd.DataFrame:
    """The trials whose contrast varies: ``contrast_and_angle``, else every single-Gabor trial."""
    if "contrast_and_angle" in exp.sets:
        return exp.table("contrast_and_angle")
    t = exp.conditions[exp.conditions["relation"] == "single"].reset_index(drop=True)
    if t.empty:
        raise AnalysisSkipped("the recording has no single-Gabor trials")
    return t


def lfp_traces(exp: Experiment, table: pd.DataFrame, preferences: pd.DataFrame | None, tolerance: float,
               site: int = 0, units: str = "matched") -> tuple[torch.Tensor, pd.DataFrame, Selection]:
    """The LFP ``(N', T)`` of the trials of ``table`` that have a matched channel: the summed
    state of their matched channels over the window at ``site``; those trials' rows; the
    selection (how many were excluded)."""
    kept, mask, sel = kept_trials(exp, table, preferences, tolerance, units)
    out, k = [], 0
    for blk in exp.windows("state", kept, site):
        m = mask[k:k + len(blk.trials)].to(blk.values.device, blk.values.dtype)   # (b, C)
        out.append((blk.values.sum((-1, -2)) * m[:, None, :]).sum(-1))
        k += len(blk.trials)
    return torch.cat(out), kept, sel


def run(exp: Experiment, cfg, preferences: pd.DataFrame | None = None) -> AnalysisResult:
    lfp, table, selection = lfp_traces(exp, contrast_trials(exp), preferences, cfg.match_tolerance,
                                           units=cfg.lfp_units)
    lfp, how = lfp.double(), selection.how
    all_contrast = contrast_trials(exp)["contrast"].to_numpy()
    during, blank = exp.samples(cfg.onset_skip_ms, "stimulus"), exp.samples(cfg.onset_skip_ms, "blank")
    nper = min(cfg.spectrum_nperseg, during.stop - during.start, blank.stop - blank.start)
    f, p_during = welch(lfp[:, during], exp.fs, nperseg=nper)
    _, p_blank = welch(lfp[:, blank], exp.fs, nperseg=nper)
    fpk, ppk = peak(f, p_during)
    fpk_b, ppk_b = peak(f, p_blank)
    # the units themselves (every channel at the site)
    seg = min(cfg.spectrogram_nperseg, lfp.shape[1])
    unit_psd, unit_sxx = [], []
    for blk in exp.centre("state", table, 0):
        units = blk.values.movedim(1, -1).double()                      # (b, C, T)
        unit_psd.append(welch(units[..., during], exp.fs, nperseg=nper)[1])
        unit_sxx.append(spectrogram(units, exp.fs, nperseg=seg, noverlap=seg // 2)[2].mean(1))
    unit_psd = torch.cat(unit_psd)                                       # (N, C, F)
    unit_sxx = torch.cat(unit_sxx)                                       # (N, F, S): mean over channels
    sf, st, sxx = spectrogram(lfp, exp.fs, nperseg=seg, noverlap=seg // 2)   # (N, F, S)

    contrast = table["contrast"].to_numpy()
    levels = np.unique(contrast)
    f_np = f.cpu().numpy()
    rows, spectra_rows = [], []
    for i, c in enumerate(levels):
        sel = np.flatnonzero(contrast == c)
        fm, flo, fhi = bootstrap_mean_ci(fpk[sel].cpu().numpy(), cfg.n_bootstrap, cfg.seed + i)
        pm, plo, phi = bootstrap_mean_ci(ppk[sel].cpu().numpy(), cfg.n_bootstrap, cfg.seed + 1000 + i)
        fb = float(fpk_b[sel].mean())
        rows.append({"contrast": float(c), "trials": len(sel),
                     "trials_excluded": int((all_contrast == c).sum()) - len(sel), "peak_hz": fm, "peak_hz_lo": flo, "peak_hz_hi": fhi,
                     "peak_power": pm, "peak_power_lo": plo, "peak_power_hi": phi,
                     "blank_peak_hz": fb, "blank_peak_power": float(ppk_b[sel].mean()),
                     "power_ratio_at_peak": float(p_during[sel].mean(0).max() / p_blank[sel].mean(0).max()),
                     "units": how})
        md, mb = p_during[sel].mean(0).cpu().numpy(), p_blank[sel].mean(0).cpu().numpy()
        mu = unit_psd[sel].mean((0, 1)).cpu().numpy()
        for j, fr in enumerate(f_np):
            spectra_rows.append({"contrast": float(c), "frequency_hz": float(fr), "lfp_psd_stimulus": float(md[j]),
                                 "lfp_psd_blank": float(mb[j]), "unit_psd_stimulus": float(mu[j])})
    summary = pd.DataFrame(rows)
    spectra = pd.DataFrame(spectra_rows)
    per_trial = table[["trial", "stimulus_set", "direction", "contrast"]].copy()
    per_trial["peak_hz"], per_trial["peak_power"] = fpk.cpu().numpy(), ppk.cpu().numpy()
    per_trial["blank_peak_hz"], per_trial["blank_peak_power"] = fpk_b.cpu().numpy(), ppk_b.cpu().numpy()
    top = summary.iloc[-1]
    scalars = {"peak_hz_top_contrast": float(top["peak_hz"]), "peak_power_top_contrast": float(top["peak_power"]),
               "power_ratio_top_contrast": float(top["power_ratio_at_peak"]),
               "peak_hz_contrast_corr": correlation(summary["contrast"], summary["peak_hz"]),
               "resolution_hz": float(f_np[1] - f_np[0]), "trials_used": len(table),
               "trials_excluded_no_matched_channel": selection.n_excluded}
    figures = {"lfp_spectra": _spectra_figure(spectra, levels, how),
               "peak_vs_contrast": _peak_figure(summary),
               "spectrograms": _spectrogram_figure(sf.cpu().numpy(), st.cpu().numpy(), sxx, contrast, levels, exp,
                                                   "LFP spectrograms"),
               "unit_spectrograms": _spectrogram_figure(sf.cpu().numpy(), st.cpu().numpy(), unit_sxx, contrast, levels,
                                                        exp, "single-unit spectrograms (mean over channels)")}
    return AnalysisResult(tables={"spectra_by_contrast": spectra, "peak_by_contrast": summary,
                                  "peak_per_trial": per_trial}, figures=figures, scalars=scalars)



def _spectra_figure(spectra: pd.DataFrame, levels, how: str) -> plt.Figure:
    fig, axs = plt.subplots(1, 2, figsize=(10, 3.6))
    cmap = plt.get_cmap("viridis")
    for i, c in enumerate(levels):
        g = spectra[spectra["contrast"] == c]
        col = cmap(i / max(1, len(levels) - 1))
        axs[0].semilogy(g["frequency_hz"], g["lfp_psd_stimulus"], color=col, label=f"c={c:g}")
        axs[0].semilogy(g["frequency_hz"], g["lfp_psd_blank"], color=col, ls=":", lw=0.8)
        axs[1].semilogy(g["frequency_hz"], g["unit_psd_stimulus"], color=col, label=f"c={c:g}")
    axs[0].set_title(f"LFP ({how}); solid: stimulus, dotted: blank", fontsize=8)
    axs[1].set_title("single units at the site (mean over channels), stimulus", fontsize=8)
    for ax in axs:
        ax.set_xlabel("frequency (Hz)")
        ax.set_ylabel("PSD (state² / Hz)")
    axs[1].legend(fontsize=6, ncol=2)
    fig.tight_layout()
    return fig


def _peak_figure(summary: pd.DataFrame) -> plt.Figure:
    fig, axs = plt.subplots(1, 2, figsize=(8, 3.2))
    for ax, key, label in ((axs[0], "peak_hz", "peak frequency (Hz)"), (axs[1], "peak_power", "peak power")):
        m = summary[key].to_numpy()
        err = np.stack([m - summary[f"{key}_lo"].to_numpy(), summary[f"{key}_hi"].to_numpy() - m])
        ax.errorbar(summary["contrast"], m, yerr=np.nan_to_num(err), marker="o", capsize=3, label="stimulus")
        ax.plot(summary["contrast"], summary[f"blank_{key}"], "k:", marker=".", label="blank before")
        ax.set_xlabel("contrast")
        ax.set_ylabel(label)
    axs[0].legend(fontsize=7)
    fig.suptitle("LFP spectral peak against contrast (95% bootstrap intervals over trials)", fontsize=9)
    fig.tight_layout()
    return fig


def _spectrogram_figure(f, t, sxx: torch.Tensor, contrast, levels, exp: Experiment, what: str) -> plt.Figure:
    n = len(levels)
    cols = min(4, n)
    rows = -(-n // cols)
    fig, axs = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), squeeze=False)
    t_ms = t * 1000.0 - exp.onset * exp.dt_ms
    means = [sxx[torch.as_tensor(contrast == c)].mean(0).cpu().numpy() for c in levels]
    vmax = max(float(np.log10(m + 1e-30).max()) for m in means)
    for ax, c, m in zip(axs.flat, levels, means):
        ax.pcolormesh(t_ms, f, np.log10(m + 1e-30), shading="nearest", vmin=vmax - 4, vmax=vmax)
        ax.axvline(0, color="w", lw=0.8)
        ax.axvline((exp.offset - exp.onset) * exp.dt_ms, color="w", lw=0.8, ls="--")
        ax.set_title(f"contrast {c:g}", fontsize=8)
        ax.set_xlabel("time from onset (ms)")
        ax.set_ylabel("Hz")
    for ax in list(axs.flat)[n:]:
        ax.axis("off")
    fig.suptitle(f"{what} (log10 PSD), mean over trials; lines: stimulus on / off", fontsize=9)
    fig.tight_layout()
    return fig
