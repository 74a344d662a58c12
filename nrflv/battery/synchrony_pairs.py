"""What every synchrony comparison shares: the two periods (the stimulus and the blank before it,
equally long, each after ``onset_skip_ms``), the per-pair measures, their shift-predictor
correction per condition, and one table row per group with both periods, their difference and
the group's phase test.

Shapes: traces ``(N, ..., T)`` (trials first); a measure's output ``(N, ..., K)``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from core.suite import AnalysisSkipped
from nrflv.battery.common import bootstrap_mean_ci
from nrflv.battery.reading import Experiment
from nrflv.measures.circular import circular_bootstrap_ci, interval_contains, rayleigh_test, v_test
from nrflv.measures.correlation import (cross_correlation, fit_damped_cosine, oscillation_index,
                                        phase_locking_value, relative_modulation, shuffle_corrected)
from nrflv.measures.spectral import coherency_in_band, csd, peak, welch

MEASURES = ("xcorr_zero_lag", "xcorr_peak", "coherence", "plv")
PERIODS = ("during", "before")


@dataclass
class Periods:
    """Sample ranges of the two periods (equal length) and the span that covers both."""

    during: slice
    before: slice | None
    note: str | None = None

    @property
    def span(self) -> slice:
        starts = [self.during.start] + ([self.before.start] if self.before else [])
        stops = [self.during.stop] + ([self.before.stop] if self.before else [])
        return slice(min(starts), max(stops))

    def cut(self, x: torch.Tensor, period: str) -> torch.Tensor:
        """The samples of ``period`` from ``x (..., T_span)`` read over :attr:`span`."""
        s = getattr(self, period)
        off = self.span.start
        return x[..., s.start - off:s.stop - off]

    @property
    def names(self) -> tuple[str, ...]:
        return PERIODS if self.before is not None else PERIODS[:1]


def periods(exp: Experiment, skip_ms: float) -> Periods:
    """The stimulus after ``skip_ms`` and the blank before it after ``skip_ms``, cut to the same
    length; without enough blank, the stimulus alone (with the reason)."""
    during = exp.samples(skip_ms, "stimulus")
    try:
        before = exp.samples(skip_ms, "blank")
    except AnalysisSkipped as exc:
        return Periods(during, None, f"before-stimulus comparison skipped: {exc}")
    n = min(during.stop - during.start, before.stop - before.start)
    return Periods(slice(during.start, during.start + n), slice(before.start, before.start + n))


def centre_traces(exp: Experiment, table: pd.DataFrame, site: int, span: slice) -> torch.Tensor:
    """``(N, C, T)`` state of the unit at ``site`` in every channel (small: read whole)."""
    return torch.cat([b.values.movedim(1, -1) for b in exp.centre("state", table, site, time=span)]).double()


class PairMeasure:
    """``(a, b) (..., T) -> (..., 2L+5)``: the correlogram at lags -L..L, coherence and PLV in the
    band, and the real and imaginary parts of the band's complex coherency (one callable, so
    the shift predictor shuffles all of them alike)."""

    def __init__(self, fs: float, max_lag: int, band: tuple[float, float], nperseg: int):
        self.fs, self.max_lag, self.band, self.nperseg = fs, max_lag, band, nperseg

    def __call__(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        _, xc = cross_correlation(a, b, self.max_lag)
        nper = min(self.nperseg, a.shape[-1])
        f, pab = csd(a, b, self.fs, nper)
        _, paa = welch(a, self.fs, nper)
        _, pbb = welch(b, self.fs, nper)
        inband = (f >= self.band[0]) & (f <= self.band[1])
        if inband.any():
            coh = ((pab.real ** 2 + pab.imag ** 2) / paa / pbb)[..., inband].mean(-1, keepdim=True)
            cy = coherency_in_band(f, pab, paa, pbb, *self.band)[..., None]
        else:
            coh = torch.full_like(xc[..., :1], float("nan"))
            cy = torch.full_like(xc[..., :1], float("nan")).to(torch.complex128)
        plv = phase_locking_value(a, b, self.fs, self.band)[..., None]
        return torch.cat([xc, coh.to(xc.dtype), plv.to(xc.dtype), cy.real.to(xc.dtype), cy.imag.to(xc.dtype)], -1)

    def split(self, m: torch.Tensor) -> dict[str, torch.Tensor]:
        L = self.max_lag
        xc = m[..., :2 * L + 1]
        return {"xcorr": xc, "xcorr_zero_lag": xc[..., L], "xcorr_peak": xc.amax(-1),
                "coherence": m[..., 2 * L + 1], "plv": m[..., 2 * L + 2],
                "coherency": torch.complex(m[..., 2 * L + 3], m[..., 2 * L + 4])}


def corrected_by_condition(measure: PairMeasure, a: torch.Tensor, b: torch.Tensor, groups: np.ndarray
                           ) -> tuple[dict, dict, np.ndarray]:
    """Raw and shift-corrected measures (split by :meth:`PairMeasure.split`, each ``(N', ...)``)
    of the trials in conditions with >= 2 trials (``groups``: a condition label per trial); and
    the kept trial positions."""
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
    return measure.split(torch.cat(raws)), measure.split(torch.cat(corrs)), np.concatenate(keep)


@dataclass
class Stats:
    """Raw and corrected measures per period (``{"during": {...}, "before": {...}}``) of the kept
    trials (positions ``keep`` in the set's table)."""

    raw: dict
    corr: dict
    keep: np.ndarray

    def select(self, sel) -> "Stats":
        """The same, restricted by ``sel`` (an index into dims 0.. of every measure)."""
        pick = lambda d: {p: {k: v[sel] for k, v in m.items()} for p, m in d.items()}  # noqa: E731
        return Stats(pick(self.raw), pick(self.corr), self.keep)


def measure_periods(measure: PairMeasure, per: Periods, a: torch.Tensor, b: torch.Tensor,
                    groups: np.ndarray) -> Stats:
    """:func:`corrected_by_condition` of ``a, b (N, ..., T_span)`` in each period."""
    raw, corr, keep = {}, {}, None
    for p in per.names:
        raw[p], corr[p], keep = corrected_by_condition(measure, per.cut(a, p), per.cut(b, p), groups)
    return Stats(raw, corr, keep)


def band_around_peak(exp: Experiment, traces: torch.Tensor, nperseg: int, half_width: float) -> tuple[float, float, float]:
    """The LFP peak frequency of ``traces (N, C, T)`` (their sum over channels) during the stimulus
    and a band around it."""
    f, p = welch(traces.sum(1), exp.fs, nperseg=min(nperseg, traces.shape[-1]))
    f0, _ = peak(f, p.mean(0))
    f0 = float(f0)
    return f0, max(f0 - half_width, float(f[1])), min(f0 + half_width, exp.fs / 2 * 0.999)


def per_trial(v: torch.Tensor) -> np.ndarray:
    """``(N, ...) -> (N,)``: each trial's mean over its pairs (non-finite left out)."""
    return v.reshape(v.shape[0], -1).nanmean(1).cpu().numpy()


def group_row(label: dict, stats: Stats, cfg, seed: int) -> dict:
    """One table row: each measure's mean over trials (of the per-trial means over the group's
    pairs) with its bootstrap interval during the stimulus, the same before it (``before_*``),
    the paired during-minus-before difference per trial (``change_*``), and the counts."""
    row = dict(label)
    d = stats.corr["during"]
    b = stats.corr.get("before")
    for k in MEASURES:
        x = per_trial(d[k])
        m, lo, hi = bootstrap_mean_ci(x, cfg.n_bootstrap, seed)
        row.update({k: m, f"{k}_lo": lo, f"{k}_hi": hi, f"{k}_raw": float(np.nanmean(per_trial(stats.raw["during"][k])))})
        if b is not None:
            y = per_trial(b[k])
            m, lo, hi = bootstrap_mean_ci(y, cfg.n_bootstrap, seed + 1)
            row.update({f"before_{k}": m, f"before_{k}_lo": lo, f"before_{k}_hi": hi})
            m, lo, hi = bootstrap_mean_ci(x - y, cfg.n_bootstrap, seed + 2)
            row.update({f"change_{k}": m, f"change_{k}_lo": lo, f"change_{k}_hi": hi})
        seed += 3
    row["synchronous"] = bool(row["xcorr_zero_lag_lo"] > 0)
    if b is not None:
        row["synchronous_before"] = bool(row["before_xcorr_zero_lag_lo"] > 0)
        row["changed"] = bool(row["change_xcorr_zero_lag_lo"] > 0 or row["change_xcorr_zero_lag_hi"] < 0)
    row["trials"] = int(d["xcorr_zero_lag"].shape[0])
    row["pairs_per_trial"] = int(np.prod(d["xcorr_zero_lag"].shape[1:], dtype=int))
    return row


def phase_rows(label: dict, stats: Stats, cfg, seed: int) -> list[dict]:
    """Per period, the phase test of the group: each trial's phase lag (minus the angle of its
    shift-corrected band coherency averaged over the group's pairs; positive when the second
    unit lags the first), their circular mean with a bootstrap interval over trials, whether the
    interval holds 0, the V-test towards 0 and the Rayleigh test."""
    rows = []
    for p, m in stats.corr.items():
        cy = m["coherency"]
        mean_cy = cy.reshape(cy.shape[0], -1).mean(1)                      # (N,) complex
        lag = -torch.angle(mean_cy)
        mean, lo, hi = circular_bootstrap_ci(lag, cfg.n_bootstrap, generator=torch.Generator().manual_seed(seed))
        v, u, pv = v_test(lag, 0.0)
        _, pr = rayleigh_test(lag)
        rows.append({**label, "period": p, "phase_lag_deg": float(np.degrees(mean)),
                     "phase_lag_lo_deg": float(np.degrees(lo)), "phase_lag_hi_deg": float(np.degrees(hi)),
                     "zero_in_interval": bool(interval_contains(0.0, lo, hi)),
                     "v_test_u": float(u), "v_test_p": float(pv), "rayleigh_p": float(pr),
                     "coherency_magnitude": float(mean_cy.abs().mean()),
                     "trials": int(cy.shape[0]), "pairs_per_trial": int(np.prod(cy.shape[1:], dtype=int))})
    return rows


def fit_rows(groups: list[tuple[dict, torch.Tensor]], lags_ms: torch.Tensor, f0: float) -> list[dict]:
    """Damped-cosine fits of each group's mean corrected correlogram."""
    rows = []
    for label, xc in groups:
        mean = xc.reshape(-1, xc.shape[-1]).mean(0)
        fit = fit_damped_cosine(lags_ms, mean[None], f_guess=f0)
        rows.append({**label, **{k: float(v.reshape(-1)[0]) for k, v in fit.items()},
                     "relative_modulation": float(relative_modulation(fit).reshape(-1)[0]),
                     "oscillation_index": float(oscillation_index(fit).reshape(-1)[0]),
                     "correlograms": int(np.prod(xc.shape[:-1], dtype=int))})
    return rows


def difference_row(label: dict, x: np.ndarray, y: np.ndarray, cfg) -> dict:
    """Difference of means of two independent groups of trials, with a bootstrap interval."""
    rng = np.random.default_rng(cfg.seed)
    boots = (x[rng.integers(0, len(x), (cfg.n_bootstrap, len(x)))].mean(1)
             - y[rng.integers(0, len(y), (cfg.n_bootstrap, len(y)))].mean(1))
    lo, hi = np.quantile(boots, [0.025, 0.975])
    return {**label, "difference_xcorr_zero_lag": float(x.mean() - y.mean()), "lo": float(lo), "hi": float(hi),
            "different": bool(lo > 0 or hi < 0), "trials_a": len(x), "trials_b": len(y)}


@dataclass
class Part:
    """What one comparison hands to :func:`nrflv.battery.synchrony.run`."""

    rows: list = field(default_factory=list)       # group rows (group_row)
    fits: list = field(default_factory=list)       # (label, corrected correlograms (..., 2L+1))
    diffs: list = field(default_factory=list)      # difference rows
    phases: list = field(default_factory=list)     # phase rows
    slopes: list = field(default_factory=list)     # slope rows
    tables: dict = field(default_factory=dict)
    figures: dict = field(default_factory=dict)
    scalars: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)
    f0: float = float("nan")
