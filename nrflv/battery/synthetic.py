"""Synthetic recordings in the layout of an NRFLV experiment, with activity the caller defines:
ground truth for the battery's tests and benches, and a way to try an analysis without a model.

``synthetic_recording(path, table, protocol, activity)`` writes a store exactly like
``--experiment`` does (same variables, dims, coords and attributes) where
``activity(block_table, t) -> {variable: (b, T, S, C, P, P) array}`` makes the values (and
optionally ``layer_means (b, 4, C, H, W)`` / ``layer_movie (b, F, C, H, W)``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Mapping

import numpy as np
import pandas as pd

from core.store import RecordingStore
from nrflv.experiment import Protocol

DIMS = ("trial", "time", "site", "channel", "y", "x")
#: the whole-layer views' dims (see :mod:`nrflv.experiment`)
LAYER_DIMS = {"layer_means": ("trial", "phase", "channel", "y", "x"),
              "layer_movie": ("trial", "frame", "channel", "y", "x")}


def recording_attrs(protocol: Protocol, *, ms_per_step: float = 70.0 / 17.0, record_every: int = 1,
                    channels: int = 32, layer_hw=(32, 32), image_hw=(32, 32), patch: int = 3,
                    units: str = "patch", movie_every: int = 0) -> dict:
    """The attributes ``--experiment`` stores with a recording (see ``NRFLVSuite.recording_attrs``)."""
    return {"kind": "activity", "model": "nrflv", "ms_per_step": ms_per_step, "record_every": record_every,
            "protocol": protocol.as_dict(), "onset_step": protocol.onset, "offset_step": protocol.offset,
            "record_layer": 1, "record_units": units, "record_patch": patch,
            "layer_shape": [channels, *layer_hw], "image_shape": [3, *image_hw], "sites": ["site0", "site1"],
            "layer_means_phases": ["burn_in", "blank_before", "stimulus", "blank_after"], "movie_every": movie_every,
            "momentum_sign": "p as stored; the inhibitory population is -p"}


def synthetic_recording(path: str | Path, table: pd.DataFrame, protocol: Protocol,
                        activity: Callable[[pd.DataFrame, np.ndarray], Mapping[str, np.ndarray]], *,
                        block: int = 16, dtype=np.float16, **attrs) -> RecordingStore:
    """Write a recording of ``table``'s trials (a :func:`nrflv.stimuli.conditions_table`) whose
    values come from ``activity(rows, time_steps)`` (``(b, T, S, C, P, P)`` per variable).
    ``attrs``: keyword arguments of :func:`recording_attrs`."""
    every = attrs.get("record_every", 1)
    t = np.arange(0, protocol.total, every)
    coords = {k: table[k].to_numpy() for k in table.columns if k != "trial"}
    store = RecordingStore.create(path, len(table), coords=coords,
                                  attrs=recording_attrs(protocol, **attrs), chunk_trials=block)
    for start in range(0, len(table), block):
        rows = table.iloc[start:start + block]
        values = {k: np.asarray(v, dtype=np.float32 if k == "layer_means" else dtype)
                  for k, v in activity(rows, t).items()}
        store.write(start, values, {k: LAYER_DIMS.get(k, DIMS) for k in values})
    return store
