"""Read an NRFLV experiment's recording set by set, block by block, on the device.

A recording (written by ``--experiment``) holds variables ``(trial, time, site, channel, y, x)``:
a window of units around each recording site (``record_units: patch``), or the whole layer as
one site (``record_units: all``), plus per-trial coordinates (``stimulus_set``, ``direction``,
``orientation``, ``contrast``, ``site0_y`` ...) and its time base (``ms_per_step`` times
``record_every``). :class:`Experiment` hides that difference: :meth:`Experiment.windows`
yields, for the trials of one stimulus set, the ``P x P`` window of every channel around a site,
and :meth:`Experiment.centre` the unit at the site itself.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
import pandas as pd
import torch

from core.suite import AnalysisSkipped


@dataclass
class Block:
    """Some trials of one set: their indices into the recording and their values."""

    trials: np.ndarray        # (b,) recording trial indices
    values: torch.Tensor      # (b, T, C, P, P) or (b, T, C) float32 on the device


class Experiment:
    """One recording of the NRFLV protocol (see module doc)."""

    def __init__(self, store, device: torch.device | str = "cpu", patch: int | None = None):
        self.store, self.device = store, torch.device(device)
        a = store.attrs
        if "ms_per_step" not in a or "onset_step" not in a:
            raise AnalysisSkipped(f"{store.path} is not an NRFLV experiment recording (no time base)")
        self.every = int(a.get("record_every", 1))
        self.dt_ms = float(a["ms_per_step"]) * self.every
        self.fs = 1000.0 / self.dt_ms
        self.onset = -(-int(a["onset_step"]) // self.every)     # first recorded sample with the stimulus
        self.offset = -(-int(a["offset_step"]) // self.every)   # first recorded sample after it
        p = a["protocol"]
        self.blank_start = -(-int(p["burn_in"]) // self.every)  # first sample of the blank before
        self.units_mode = a.get("record_units", "patch")
        self.patch = int(patch or a.get("record_patch", 3))
        self.layer_hw = tuple(a["layer_shape"][1:])
        self.image_hw = tuple(a["image_shape"][1:])
        self.conditions = pd.DataFrame({k: v for k, v in store.coords.items()})
        self.conditions["trial"] = np.arange(len(self.conditions))
        done = store.done
        if not done.all():
            self.conditions = self.conditions[done].reset_index(drop=True)
        self.n_steps = store.shape("state" if "state" in store.variables else store.variables[0])[1]
        self.movie_every = int(a.get("movie_every", 0) or 0)

    # -- which trials ------------------------------------------------------------
    @property
    def sets(self) -> list[str]:
        return list(dict.fromkeys(self.conditions["stimulus_set"]))

    def table(self, stimulus_set: str | None = None, required: bool = True) -> pd.DataFrame:
        """Conditions of the completed trials of one set (all sets: None)."""
        if stimulus_set is None:
            return self.conditions
        t = self.conditions[self.conditions["stimulus_set"] == stimulus_set].reset_index(drop=True)
        if required and t.empty:
            raise AnalysisSkipped(f"the recording has no {stimulus_set!r} trials (it has: {', '.join(self.sets)}); "
                                  f"add {stimulus_set} to stimulus_sets and record again")
        return t

    def samples(self, start_ms: float = 0.0, window: str = "stimulus") -> slice:
        """Time samples of a protocol phase, leaving out ``start_ms`` after its start:
        ``stimulus``, ``blank`` (before the stimulus) or ``after`` (the blank after it)."""
        skip = int(round(start_ms / self.dt_ms))
        lo, hi = {"stimulus": (self.onset, self.offset), "blank": (self.blank_start, self.onset),
                  "after": (self.offset, self.n_steps)}[window]
        if lo + skip >= hi - 8:
            raise AnalysisSkipped(f"the {window} phase has {hi - lo} samples; after leaving out {start_ms:g} ms "
                                  "too few remain (lower onset_skip_ms or record a longer protocol)")
        return slice(lo + skip, hi)

    def time_ms(self) -> np.ndarray:
        """``(T,)`` time of each sample in ms relative to the stimulus onset."""
        return (np.arange(self.n_steps) - self.onset) * self.dt_ms

    # -- reading -------------------------------------------------------------------
    def variable(self, name: str) -> str:
        if name not in self.store.variables:
            raise AnalysisSkipped(f"the recording has no {name!r} (recorded: {', '.join(self.store.variables)}); "
                                  f"add it to record_variables and record again")
        return name

    def _layer_site(self, table: pd.DataFrame, site: int) -> tuple[torch.Tensor, torch.Tensor]:
        ys = torch.tensor(table[f"site{site}_y"].to_numpy(), dtype=torch.int64)
        xs = torch.tensor(table[f"site{site}_x"].to_numpy(), dtype=torch.int64)
        (ih, iw), (lh, lw) = self.image_hw, self.layer_hw
        return (ys * lh) // ih, (xs * lw) // iw

    def windows(self, name: str, table: pd.DataFrame, site: int = 0, block: int | None = None,
                time: slice | None = None) -> Iterator[Block]:
        """``P x P`` windows of every channel around ``site``: blocks ``(b, T, C, P, P)``."""
        yield from self._read(name, table, site, block, time, centre=False)

    def centre(self, name: str, table: pd.DataFrame, site: int = 0, block: int | None = None,
               time: slice | None = None) -> Iterator[Block]:
        """The unit of every channel at ``site`` itself: blocks ``(b, T, C)``."""
        yield from self._read(name, table, site, block, time, centre=True)

    def points(self, name: str, table: pd.DataFrame, rows: np.ndarray, cols: np.ndarray,
               block: int | None = None, time: slice | None = None) -> Iterator[Block]:
        """Any units of a whole-layer recording (``record_units: all``): ``rows, cols (N, K)``
        layer indices per trial of ``table`` (in its order); blocks ``(b, T, C, K)``. The units are
        picked from each block in the stored dtype, before conversion to float32."""
        if self.units_mode != "all":
            raise AnalysisSkipped(f"needs record_units: all (this recording has record_units: {self.units_mode}, "
                                  "windows round two sites)")
        arr = self.store.group[self.variable(name)]
        block = block or self.store.chunk_trials
        trials = table["trial"].to_numpy()
        time = time or slice(None)
        rows, cols = np.asarray(rows), np.asarray(cols)
        for start in range(0, len(trials), block):
            idx = trials[start:start + block]
            raw = np.asarray(arr.get_orthogonal_selection((idx, time)))[:, :, 0]     # (b, T, C, H, W), stored dtype
            b_idx = np.arange(len(idx))[:, None]
            picked = raw[b_idx, :, :, rows[start:start + block], cols[start:start + block]]   # (b, K, T, C)
            values = torch.as_tensor(np.ascontiguousarray(picked), device=self.device).float()
            yield Block(idx, values.permute(0, 2, 3, 1))

    def layer_site(self, table: pd.DataFrame, site: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(N,)`` row and column of ``site`` in the recorded layer, per trial of ``table``."""
        return self._layer_site(table, site)

    def _read(self, name, table, site, block, time, centre) -> Iterator[Block]:
        arr = self.store.group[self.variable(name)]
        block = block or self.store.chunk_trials
        trials = table["trial"].to_numpy()
        time = time or slice(None)
        for start in range(0, len(trials), block):
            idx = trials[start:start + block]
            sub = table.iloc[start:start + block]
            lo, hi = int(idx.min()), int(idx.max()) + 1
            if hi - lo == len(idx) and (np.diff(idx) == 1).all():
                raw = np.asarray(arr[lo:hi, time])
            else:
                raw = np.asarray(arr.get_orthogonal_selection((idx, time)))
            x = torch.as_tensor(raw, device=self.device).float()     # (b, T, S, C, Y, X)
            if self.units_mode == "patch":
                if site >= x.shape[2]:
                    raise AnalysisSkipped(f"the recording has {x.shape[2]} site(s); site {site} is not there")
                w = x[:, :, site]
                h = w.shape[-1] // 2
                values = w[..., h, h] if centre else w
            else:
                ly, lx = self._layer_site(sub, site)
                full = x[:, :, 0]                                       # (b, T, C, H, W)
                b_idx = torch.arange(len(idx), device=self.device)
                if centre:
                    values = full[b_idx, :, :, ly.to(self.device), lx.to(self.device)]  # (b, T, C)
                else:
                    half = self.patch // 2
                    off = torch.arange(-half, half + 1, device=self.device)
                    rows = (ly.to(self.device)[:, None] + off).clamp(0, self.layer_hw[0] - 1)
                    cols = (lx.to(self.device)[:, None] + off).clamp(0, self.layer_hw[1] - 1)
                    values = full[b_idx[:, None, None], :, :, rows[:, :, None], cols[:, None, :]]
                    values = values.permute(0, 3, 4, 1, 2)              # (b, T, C, P, P)
            yield Block(idx, values)
