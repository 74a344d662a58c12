"""What several analyses share: per-trial phase means, and which channels are matched to a trial's
stimulus by their orientation preference."""
from __future__ import annotations

from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from core.suite import AnalysisSkipped  # noqa: E402
from nrflv.battery.reading import Experiment  # noqa: E402
from nrflv.measures.correlation import bootstrap_ci  # noqa: E402
from nrflv.measures.tuning import matched  # noqa: E402


def phase_means(exp: Experiment, variable: str, table: pd.DataFrame, skip_ms: float, site: int = 0,
                centre: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Per trial, the mean of ``variable`` during the stimulus and during the blank before it
    (each leaving out ``skip_ms`` after the phase starts): two ``(N, C[, P, P])`` tensors."""
    during, blank = exp.samples(skip_ms, "stimulus"), exp.samples(skip_ms, "blank")
    outs_d, outs_b = [], []
    read = exp.centre if centre else exp.windows
    for blk in read(variable, table, site):
        outs_d.append(blk.values[:, during].mean(1))
        outs_b.append(blk.values[:, blank].mean(1))
    return torch.cat(outs_d), torch.cat(outs_b)


def matched_channels(preferences: pd.DataFrame | None, table: pd.DataFrame, tolerance: float) -> torch.Tensor:
    """``(N, C)`` bool: channel c is tuned and prefers an orientation within ``tolerance`` degrees of
    trial n's stimulus. ``preferences``: one row per channel (``channel``, ``pref_orientation``,
    ``tuned``) from the orientation-tuning analysis; None gives all False."""
    n = len(table)
    if preferences is None or preferences.empty:
        return torch.zeros(n, 0, dtype=torch.bool)
    pref = torch.tensor(preferences["pref_orientation"].to_numpy(), dtype=torch.float64)
    tuned = torch.tensor(preferences["tuned"].to_numpy().astype(bool))
    stim = torch.tensor(table["orientation"].to_numpy(), dtype=torch.float64)
    return matched(pref[None, :], stim[:, None], tolerance=tolerance, period=180.0) & tuned[None, :]


@dataclass
class Selection:
    """Which trials and channels one analysis uses, defined once for all of them.

    ``mask (N, C)``: channels whose units count in trial n; ``keep (N,)``: trials that enter
    (those with at least one such channel); ``how``: the definition in words, for tables and
    figures. With orientation tuning known (the recording has ``just_angle``), the channels are
    the *matched* ones (significantly tuned and preferring the trial's orientation within
    ``match_tolerance``) and a trial with none is excluded and counted, never filled in with
    other channels. Without tuning every channel counts in every trial (one definition for all
    trials, stated as such)."""

    mask: torch.Tensor
    keep: np.ndarray
    how: str

    @property
    def n_excluded(self) -> int:
        return int((~self.keep).sum())

    def kept(self, table: pd.DataFrame) -> pd.DataFrame:
        """The rows of ``table`` (the trials the selection was made for) that enter."""
        return table[self.keep].reset_index(drop=True)


def select_channels(mask: torch.Tensor, n_channels: int, n_trials: int) -> Selection:
    """:class:`Selection` from a matched-channel mask ``(N, C)`` (``(N, 0)``: no tuning known)."""
    if mask.numel() == 0 and mask.shape[-1] == 0:
        return Selection(torch.ones(n_trials, n_channels, dtype=torch.bool), np.ones(n_trials, dtype=bool),
                         "all channels (no tuning known: the recording has no just_angle set)")
    keep = mask.any(1).cpu().numpy()
    how = "matched channels"
    if not keep.all():
        how += f" ({int((~keep).sum())} of {len(keep)} trials had none and are excluded)"
    return Selection(mask, keep, how)


def bootstrap_mean_ci(x: np.ndarray, n_boot: int, seed: int, level: float = 0.95) -> tuple[float, float, float]:
    """Mean of the finite values of ``x`` and its percentile bootstrap interval
    (:func:`nrflv.measures.correlation.bootstrap_ci`); NaN bounds below two values."""
    x = np.asarray(x, dtype=np.float64)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return float("nan"), float("nan"), float("nan")
    if x.size == 1:
        return float(x[0]), float("nan"), float("nan")
    m, lo, hi = bootstrap_ci(torch.from_numpy(x), n_boot, level, "mean",
                             generator=torch.Generator().manual_seed(seed))
    return float(m), float(lo), float(hi)


def matched_selection(exp: Experiment, table: pd.DataFrame, preferences: pd.DataFrame | None,
                      tolerance: float, units: str = "matched") -> Selection:
    """The matched channels of each trial of ``table`` and the trials that have any
    (see :class:`Selection`); ``units="all"``: every channel in every trial."""
    n_channels = exp.store.shape("state")[3]
    if units == "all":
        return Selection(torch.ones(len(table), n_channels, dtype=torch.bool), np.ones(len(table), dtype=bool),
                         "all channels (lfp_units: all)")
    if units != "matched":
        raise ValueError(f"units must be 'matched' or 'all', got {units!r}")
    return select_channels(matched_channels(preferences, table, tolerance), n_channels, len(table))


def kept_trials(exp: Experiment, table: pd.DataFrame, preferences: pd.DataFrame | None, tolerance: float,
                units: str = "matched") -> tuple[pd.DataFrame, torch.Tensor, Selection]:
    """The rows of ``table`` whose trials have a matched channel, their channel masks ``(N', C)``
    and the selection; :class:`AnalysisSkipped` (saying what to do) when no trial has one."""
    sel = matched_selection(exp, table, preferences, tolerance, units)
    kept = sel.kept(table)
    if kept.empty:
        raise AnalysisSkipped(f"no trial has a matched channel ({sel.how}): no channel is significantly "
                              "tuned to the stimuli (--lfp_units all uses every channel)")
    return kept, sel.mask[torch.as_tensor(sel.keep)], sel


def correlation(a, b) -> float:
    """Pearson correlation of two short sequences (e.g. a measure against contrast); NaN when
    fewer than 3 finite pairs or either is constant."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3 or a[ok].std() == 0 or b[ok].std() == 0:
        return float("nan")
    return float(np.corrcoef(a[ok], b[ok])[0, 1])


def lag_steps(exp: Experiment, cfg, during: slice) -> int:
    """``max_lag_ms`` in recorded samples; an analysis whose lag window does not fit in the
    stimulus samples it correlates (``during``) is skipped with a note saying what to change."""
    n = during.stop - during.start
    max_lag = max(1, int(round(cfg.max_lag_ms / exp.dt_ms)))
    if max_lag > n - 1:
        raise AnalysisSkipped(f"max_lag_ms {cfg.max_lag_ms:g} is {max_lag} samples, but the stimulus phase after "
                              f"onset_skip_ms has {n} ({n * exp.dt_ms:.4g} ms): lower max_lag_ms (at most "
                              f"{(n - 1) * exp.dt_ms:.4g}) or record with a longer --exp_stimulus")
    return max_lag
