"""Which variable / time step of ANY recorded model is most V1-like?

Works on a :class:`core.store.RecordingStore` written by the ExperimentsManager of any
model family: variables with dims ``(trial, time, ...)`` or ``(trial, ...)`` and a
per-trial coordinate saying which grating orientation each trial saw. Trials are
averaged per orientation (streamed block by block, never loading a variable whole), all
dims other than ``trial`` and ``time`` are flattened into units, and for every variable
and time step the condition-mean representation ``(C orientations, units)`` is compared
with V1's responses to the same orientations by RDM correlation (Pearson, Spearman,
Kendall tau-a) and linear CKA (with its debiased version and its shuffled-stimulus chance
level). A time step whose representation does not vary with orientation (relative to its
scale) gets NaN for every measure rather than a number computed from rounding noise.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch

from core.errors import UserError
from rsa.compare import (cka_chance_from_grams, cka_from_grams, centred_gram, debiased_cka_from_grams,
                         vector_similarity)
from core.gratings import wrap_orientation
from rsa.rdm import CONSTANT_RTOL, ResponsesTooLarge, rdm, upper_tri


def trial_filter(store, where: Sequence[str] = ()) -> np.ndarray:
    """``(trials,)`` bool: the trials whose per-trial coordinates satisfy every ``KEY=VALUE`` of
    ``where`` (e.g. ``stimulus_set=just_angle``; numbers compare as numbers)."""
    coords = store.coords
    keep = np.ones(store.n_trials, dtype=bool)
    for cond in where:
        key, sep, value = cond.partition("=")
        if not sep or key not in coords:
            raise UserError(f"compare_where: {cond!r} must be KEY=VALUE with KEY one of the recording's "
                            f"coordinates: {', '.join(coords) or 'none'}")
        have = np.asarray(coords[key])
        if have.dtype.kind in "iuf":
            try:
                keep &= np.isclose(have.astype(np.float64), float(value))
            except ValueError:
                raise UserError(f"compare_where: {key} is numeric, {value!r} is not") from None
        else:
            keep &= np.array([str(v) for v in have.tolist()]) == value
    if not keep.any():
        raise UserError(f"compare_where: no trial of {store.path} has {' and '.join(where)}")
    return keep


def orientation_conditions(store, coord: str, units: str = "degrees", where: Sequence[str] = ()
                           ) -> tuple[np.ndarray, np.ndarray]:
    """Per-trial condition index ``(trials,)`` (-1 for trials left out by ``where``, see
    :func:`trial_filter`) and the distinct orientations ``(C,)`` in degrees, wrapped into
    [-90, 90) (orientation has period 180 degrees)."""
    coords = store.coords
    if coord not in coords:
        raise UserError(f"recording {store.path} has no per-trial coordinate {coord!r}; it has: "
                        f"{', '.join(coords) or 'none'} (set compare_coord to one of them)")
    values = np.asarray(coords[coord])
    if values.dtype.kind not in "iuf":
        raise UserError(f"coordinate {coord!r} of {store.path} is not numeric; compare_coord must name "
                        "the orientation each trial saw")
    keep = trial_filter(store, where)
    deg = values.astype(np.float64) * (180.0 / np.pi if units == "radians" else 1.0)
    deg = wrap_orientation(torch.from_numpy(deg)).numpy().round(6)
    if not np.isfinite(deg[keep]).all():
        raise UserError(f"coordinate {coord!r} is not finite for some trials compared; restrict them with "
                        "compare_where")
    conditions, sub = np.unique(deg[keep], return_inverse=True)
    index = np.full(store.n_trials, -1, dtype=np.int64)
    index[keep] = sub
    if conditions.size < 3:
        raise UserError(f"coordinate {coord!r} has {conditions.size} distinct orientation(s); "
                        "an RDM comparison needs at least 3")
    return index, conditions


def condition_means(store, variable: str, condition: np.ndarray, n_conditions: int, *,
                    device: torch.device | str = "cpu") -> torch.Tensor:
    """Mean of ``variable`` over the trials of each condition: ``(C, time, units)``.

    A variable without a ``time`` dim gets a time axis of length 1. Trials not marked
    done in the store are ignored.
    """
    dims = store.dims(variable)
    if not dims or dims[0] != "trial":
        raise UserError(f"variable {variable!r} has dims {dims}; the first must be 'trial'")
    t_axis = dims.index("time") if "time" in dims else None
    done = store.done
    sums = counts = None
    for sl, values in store.iter_blocks(variable):
        x = torch.as_tensor(np.asarray(values, dtype=np.float64), device=device)
        if t_axis is not None:
            x = x.movedim(t_axis, 1)
        else:
            x = x.unsqueeze(1)
        x = x.reshape(x.shape[0], x.shape[1], -1)
        ok = torch.as_tensor(done[sl] & (condition[sl] >= 0), device=device)
        idx = torch.as_tensor(condition[sl], device=device)[ok]
        if sums is None:
            sums = torch.zeros(n_conditions, *x.shape[1:], dtype=torch.float64, device=device)
            counts = torch.zeros(n_conditions, dtype=torch.float64, device=device)
        sums.index_add_(0, idx, x[ok])
        counts.index_add_(0, idx, torch.ones_like(idx, dtype=torch.float64))
    if counts is None or (counts == 0).any():
        raise UserError(f"variable {variable!r}: some orientations have no completed trial in the recording")
    return sums / counts[:, None, None]


def recorded_variables(store, wanted: Sequence[str] = ()) -> list[str]:
    """Numeric variables with a leading ``trial`` dim (or the ``wanted`` ones, checked)."""
    have = [v for v in store.variables
            if store.dims(v)[:1] == ("trial",) and np.dtype(store.group[v].dtype).kind in "iuf"]
    if wanted:
        missing = [v for v in wanted if v not in have]
        if missing:
            raise UserError(f"compare_variables: {', '.join(missing)} not in the recording; it has: "
                            f"{', '.join(have) or 'none'}")
        return list(wanted)
    if not have:
        raise UserError(f"recording {store.path} has no numeric (trial, ...) variables to compare")
    return have


def v1_likeness(store, v1_at: Callable[[np.ndarray], torch.Tensor], *, coord: str = "orientation",
                units: str = "degrees", variables: Sequence[str] = (), metric: str = "correlation",
                methods: Sequence[str] = ("pearson", "spearman", "kendall_tau_a"), cka: bool = True,
                time_stride: int = 1, device: torch.device | str = "cpu", cka_permutations: int = 100,
                generator: torch.Generator | None = None, where: Sequence[str] = (),
                time_window: Sequence[int] = ()) -> tuple[pd.DataFrame, np.ndarray]:
    """Compare every variable and time step of a recording with V1.

    Args:
        store: the recording.
        v1_at: ``orientations (C,) degrees -> V1 responses (C, neurons)``.
        coord: per-trial coordinate holding the orientation each trial saw.
        units: ``degrees`` or ``radians`` (of ``coord``).
        variables: which variables (default: every numeric one).
        metric: RDM dissimilarity (see :mod:`rsa.rdm`).
        methods: RDM similarity measures (see :mod:`rsa.compare`).
        cka: also compute linear CKA with the V1 responses, its debiased version and its
            chance level over ``cka_permutations`` shuffles of the orientations
            (``generator``: their seed).
        time_stride: compare every ``time_stride``-th time step.
        time_window: ``(start, stop)`` time indices compared (default: all).
        where: ``KEY=VALUE`` conditions on per-trial coordinates selecting the trials compared
            (e.g. ``stimulus_set=just_angle`` for an NRFLV recording of several sets).
    Returns:
        (table with one row per variable and time step: ``variable, time, n_units``, one
        column per measure, ``n_pairs_dropped`` (NaN dissimilarities left out) and, with
        ``cka``, ``cka, cka_debiased, cka_chance``; the orientations compared ``(C,)``).
    """
    condition, orientations = orientation_conditions(store, coord, units, where)
    v1 = torch.as_tensor(v1_at(orientations)).to(device).double()
    v1_vec = upper_tri(_rdm(v1, metric, "V1"))
    v1_gram = centred_gram(v1) if cka else None
    rows = []
    for var in recorded_variables(store, variables):
        means = condition_means(store, var, condition, orientations.size, device=device)
        start, stop = (list(time_window) + [0, means.shape[1]][len(time_window):])[:2]
        if "time" not in store.dims(var):      # a per-trial variable: its one "step"
            start, stop = 0, 1
        if not 0 <= start < min(stop, means.shape[1]):
            raise UserError(f"compare_time_window {list(time_window)}: {var!r} has {means.shape[1]} time steps")
        steps = list(range(start, min(stop, means.shape[1]), time_stride))
        reps = means[:, steps].movedim(1, 0)                                  # (T, C, U)
        varies = [_varies(r) for r in reps]
        model_vecs = torch.stack([upper_tri(_rdm(r, metric, var)) for r in reps])   # (T, m)
        scores = {m: vector_similarity(v1_vec[None].cpu(), model_vecs.cpu(), m).numpy() for m in methods}
        dropped = (~(torch.isfinite(v1_vec[None]) & torch.isfinite(model_vecs))).sum(-1).cpu().numpy()
        if cka:
            grams = [centred_gram(r) for r in reps]
            scores["cka"] = np.array([cka_from_grams(v1_gram, g) for g in grams])
            scores["cka_debiased"] = np.array([debiased_cka_from_grams(v1_gram, g) for g in grams])
            scores["cka_chance"] = np.array([cka_chance_from_grams(v1_gram, g, cka_permutations, generator)[0]
                                             for g in grams])
        for k, t in enumerate(steps):
            ok = varies[k]
            rows.append({"variable": var, "time": t, "n_units": int(reps.shape[-1]),
                         **{m: float(v[k]) if ok else float("nan") for m, v in scores.items()},
                         "n_pairs_dropped": int(dropped[k])})
    return pd.DataFrame(rows), orientations


def _varies(rep: torch.Tensor) -> bool:
    """Whether a ``(C, units)`` representation changes with the condition: some unit's range
    over conditions exceeds ``CONSTANT_RTOL`` times the representation's largest magnitude."""
    if not bool(torch.isfinite(rep).all()):
        return True  # NaNs are handled (dropped and counted) by the measures
    span = (rep.amax(0) - rep.amin(0)).max()
    return bool(span > CONSTANT_RTOL * rep.abs().max())


def most_v1_like(table: pd.DataFrame, measure: str) -> pd.Series:
    """The row (variable, time step) with the highest ``measure`` (NaNs ignored)."""
    if table[measure].notna().sum() == 0:
        raise UserError(f"no variable/time step gives a finite {measure}; is the activity constant?")
    return table.loc[table[measure].idxmax()]


def _rdm(resp: torch.Tensor, metric: str, what: str) -> torch.Tensor:
    try:
        return rdm(resp, metric)
    except ResponsesTooLarge as exc:
        raise UserError(f"rdm_metric {metric}: {what}: {exc}") from None
