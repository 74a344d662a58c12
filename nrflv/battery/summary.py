"""One page with the headline of every analysis of the battery, and all their scalars."""
from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from core.suite import AnalysisResult  # noqa: E402


def _fmt(x) -> str:
    return "n/a" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.3g}"


def headlines(results: dict[str, AnalysisResult], skipped: dict[str, str]) -> list[tuple[str, str]]:
    """(analysis, one line) for each analysis: its result in words, or why it did not run."""
    s = {k: r.scalars for k, r in results.items()}
    lines = []
    if "spectra" in s:
        x = s["spectra"]
        lines.append(("spectra", f"LFP peak at {_fmt(x['peak_hz_top_contrast'])} Hz at the top contrast "
                                 f"(resolution {_fmt(x['resolution_hz'])} Hz), power {_fmt(x['power_ratio_top_contrast'])}x "
                                 f"the blank's; corr(peak Hz, contrast) = {_fmt(x['peak_hz_contrast_corr'])}"))
    if "ei_lag" in s:
        x = s["ei_lag"]
        lines.append(("ei_lag", f"-momentum lags the state by {_fmt(x['mean_lag_ms'])} ms "
                                f"[{_fmt(x['mean_lag_ms_lo'])}, {_fmt(x['mean_lag_ms_hi'])}]; "
                                f"{_fmt(100 * x['fraction_channels_lag_positive'])}% of channels significantly positive"))
    if "transients" in s:
        x = s["transients"]
        lines.append(("transients", f"onset overshoot {_fmt(x['overshoot_top_contrast'])} at the top contrast "
                                    f"({_fmt(x['overshoot_above_control_top_contrast'])} above the contrast-0 "
                                    f"floor), corr(overshoot, contrast) = {_fmt(x['overshoot_contrast_corr'])}"))
    if "oscillations" in s:
        x = s["oscillations"]
        lines.append(("oscillations", f"{_fmt(100 * x['fraction_oscillating_stimulus'])}% of unit-trials oscillate "
                                      f"during the stimulus, {_fmt(100 * x['fraction_oscillating_before'])}% before; "
                                      f"Σ peak Hz × power at the top contrast {_fmt(x['freq_power_product_top_contrast'])}"
                                      f" (before: {_fmt(x['freq_power_product_before_top_contrast'])}), corr with "
                                      f"contrast {_fmt(x['freq_power_product_contrast_corr'])}"))
    if "activity_maps" in s:
        x = s["activity_maps"]
        lines.append(("activity_maps", "retinotopic centroid of the stimulus-driven activity "
                      + ", ".join(f"{k.split('/')[-1]} {_fmt(v)} px" for k, v in x.items()) + " from the site"))
    if "synchrony" in s:
        x = s["synchrony"]
        lines.append(("synchrony", f"{_fmt(100 * x['fraction_groups_synchronous'])}% of pair groups synchronous "
                                   "after shift correction"
                                   + (f" ({_fmt(100 * x['fraction_groups_synchronous_before'])}% before the stimulus)"
                                      if "fraction_groups_synchronous_before" in x else "")
                                   + (f"; {_fmt(100 * x['fraction_differences_significant'])}% of "
                                      "collinear/orthogonal and long/short differences significant"
                                      if "fraction_differences_significant" in x else "")))
    if "orientation_tuning" in s:
        x = s["orientation_tuning"]
        lines.append(("orientation_tuning", f"{_fmt(100 * x['fraction_tuned_centre'])}% of channels tuned at the "
                                            f"Gabor's centre, {_fmt(100 * x['fraction_tuned_units'])}% of units "
                                            f"(chance {_fmt(100 * x['chance_fraction_shuffled'])}% with shuffled "
                                            f"directions; median R² {_fmt(x['median_r2_centre'])})"))
    if "active_units" in s:
        x = s["active_units"]
        lines.append(("active_units", ", ".join(f"{k.split('/')[-1]} {_fmt(100 * v)}%" for k, v in x.items())
                      + " of unit-trials active"))
    if "findings" in results:
        t = results["findings"].tables["findings"]
        held = [f for f, h in zip(t["finding"], t["holds"]) if h == "yes"]
        lines.append(("findings", f"{len(held)} of {len(t)} hold against their controls"
                      + (f": {', '.join(held)}" if held else "")))
    lines += [(k, f"not run: {v}") for k, v in skipped.items()]
    return lines


def run(results: dict[str, AnalysisResult], skipped: dict[str, str], title: str) -> AnalysisResult:
    lines = headlines(results, skipped)
    fig = plt.figure(figsize=(11, 1.2 + 0.42 * len(lines)))
    fig.text(0.01, 0.97, title, fontsize=11, weight="bold", va="top")
    for k, (name, text) in enumerate(lines):
        y = 0.97 - (k + 1.3) * (0.9 / max(len(lines) + 1, 1))
        fig.text(0.01, y, name, fontsize=9, weight="bold", va="top")
        fig.text(0.2, y, text, fontsize=9, va="top", wrap=True)
    rows = [{"analysis": k, "quantity": q, "value": float(v)} for k, r in results.items() for q, v in r.scalars.items()]
    return AnalysisResult(tables={"headlines": pd.DataFrame(lines, columns=["analysis", "headline"]),
                                  "all_scalars": pd.DataFrame(rows, columns=["analysis", "quantity", "value"])},
                          figures={"summary": fig})
