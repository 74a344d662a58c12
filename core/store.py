"""Chunked, compressed, appendable recordings with labelled dimensions (zarr v3).

A :class:`RecordingStore` is a zarr group on disk::

    activity.zarr/
      <variable>     (trial, time, unit) or any dims; chunked along trial, zstd-compressed
      coords/<name>  (trial,) per-trial labels: condition, orientation, ipd, ...
      _done          (trial,) bool: which trials are completely written

Dimension names are stored as zarr v3 ``dimension_names`` (xarray reads them). Trials are
written in blocks; the data goes first and the ``_done`` flags after, and zarr replaces
each chunk file atomically, so a crash loses at most the block in flight and
:meth:`RecordingStore.pending` tells a rerun where to resume. Readers stream a variable
block by block with :meth:`iter_blocks` without loading it whole.

Every committed chunk file is listed with its size and SHA-256 in ``_manifest.jsonl``
(:mod:`core.integrity`); :meth:`RecordingStore.open` verifies the store against it, so a
truncated or deleted chunk is refused with one line instead of being read as zeros.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import zarr

from core import integrity
from core.errors import UserError

DONE = "_done"
# zarr notes the manifest file beside its arrays when it lists a group; it is ours
warnings.filterwarnings("ignore", message=rf"Object at {integrity.MANIFEST} is not recognized")
#: every chunk is written, even one equal to the fill value, so a missing file is damage
_ARRAY_CONFIG = {"write_empty_chunks": True}


class RecordingStore:
    """Read/write access to one recording folder (``*.zarr``)."""

    def __init__(self, group: zarr.Group, path: Path):
        self.group = group
        self.path = path

    # creation / opening ----------------------------------------------------
    @classmethod
    def create(cls, path: str | Path, n_trials: int, *, coords: Mapping[str, np.ndarray] | None = None,
               attrs: Mapping[str, Any] | None = None, chunk_trials: int = 16) -> "RecordingStore":
        """A new store for ``n_trials`` trials (``n_trials=0`` for a store that grows by appending)."""
        path = Path(path)
        group = zarr.open_group(str(path), mode="w", zarr_format=3)
        (path / integrity.MANIFEST).write_text("")
        group.attrs.update({"n_trials": int(n_trials), "chunk_trials": int(chunk_trials),
                            "integrity": integrity.SCHEME, **(attrs or {})})
        group.create_array(DONE, shape=(n_trials,), chunks=(max(1, chunk_trials * 64),), dtype=bool,
                           fill_value=False, dimension_names=("trial",), config=_ARRAY_CONFIG)
        store = cls(group, path)
        for name, values in (coords or {}).items():
            store.set_coord(name, values)
        return store

    @classmethod
    def open(cls, path: str | Path, mode: str = "r", *, verify: bool = True) -> "RecordingStore":
        """Open a store; with ``verify`` (the default) a damaged one is refused with one line
        naming what is damaged (:func:`core.integrity.verify`)."""
        path = Path(path)
        if not path.exists():
            raise UserError(f"recording not found: {path}")
        try:
            group = zarr.open_group(str(path), mode=mode, zarr_format=3)
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise UserError(f"cannot open recording {path} as a zarr v3 group: {first}") from None
        try:
            if DONE not in group:
                raise UserError(f"{path} is not a recording of this toolkit (no {DONE} array)")
            store = cls(group, path)
            if verify:
                integrity.verify(store)
        except UserError:
            raise
        except Exception as exc:  # noqa: BLE001 - unreadable metadata of an array
            raise UserError(f"{path} is damaged: {type(exc).__name__}: "
                            f"{(str(exc).strip().splitlines() or [''])[0]}") from None
        return store

    # metadata ----------------------------------------------------------------
    @property
    def attrs(self) -> dict[str, Any]:
        return dict(self.group.attrs)

    @property
    def n_trials(self) -> int:
        return int(self.group[DONE].shape[0])

    @property
    def chunk_trials(self) -> int:
        return int(self.group.attrs.get("chunk_trials", 16))

    @property
    def variables(self) -> list[str]:
        return sorted(k for k in self.group.array_keys() if k != DONE)

    def dims(self, name: str) -> tuple[str, ...]:
        return tuple(self.group[name].metadata.dimension_names or ())

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self.group[name].shape)

    def set_coord(self, name: str, values: Sequence | np.ndarray) -> None:
        values = np.asarray(values)
        if values.dtype.kind in "OU":
            values = values.astype(str).astype(object)
            arr = self.group.require_group("coords").create_array(
                name, shape=values.shape, dtype=str, dimension_names=("trial",), overwrite=True,
                config=_ARRAY_CONFIG)
        else:
            arr = self.group.require_group("coords").create_array(
                name, shape=values.shape, dtype=values.dtype, dimension_names=("trial",), overwrite=True,
                config=_ARRAY_CONFIG)
        arr[...] = values
        self._commit(arr, range(arr.cdata_shape[0]))

    @property
    def coords(self) -> dict[str, np.ndarray]:
        if "coords" not in self.group:
            return {}
        g = self.group["coords"]
        return {k: np.asarray(g[k][...]) for k in sorted(g.array_keys())}

    # writing -----------------------------------------------------------------
    def ensure_variable(self, name: str, trailing_shape: Sequence[int], dtype: Any,
                        dims: Sequence[str]) -> None:
        """Create ``name`` with shape ``(n_trials, *trailing_shape)`` unless it exists (then check it)."""
        shape = (self.n_trials, *map(int, trailing_shape))
        if len(dims) != len(shape):
            raise ValueError(f"{name}: {len(dims)} dimension names for shape {shape}")
        if name in self.group:
            have = self.group[name]
            if tuple(have.shape[1:]) != tuple(shape[1:]) or np.dtype(have.dtype) != np.dtype(dtype):
                raise UserError(f"recording {self.path}: variable {name} has shape {have.shape} "
                                f"{have.dtype}, new data is {shape} {np.dtype(dtype)}; "
                                "start a new recording instead of resuming this one")
            return
        self.group.create_array(name, shape=shape, chunks=(self.chunk_trials, *shape[1:]),
                                dtype=dtype, fill_value=0, dimension_names=tuple(dims), config=_ARRAY_CONFIG)

    def _commit(self, arr, first_chunks) -> None:
        """List the chunk files just written in the manifest (stores made before manifests: no-op)."""
        if self.group.attrs.get("integrity") == integrity.SCHEME:
            integrity.record(self.path, integrity.chunk_keys(arr, first_chunks))
            integrity.forget(self.path)

    def write(self, start: int, data: Mapping[str, np.ndarray], dims: Mapping[str, Sequence[str]]) -> None:
        """Write a block of trials ``start:start+n`` for every variable, then mark it done."""
        n = None
        for name, values in data.items():
            values = np.asarray(values)
            n = values.shape[0] if n is None else n
            if values.shape[0] != n:
                raise ValueError("all variables of a block must have the same number of trials")
            self.ensure_variable(name, values.shape[1:], values.dtype, dims[name])
            arr = self.group[name].with_config(_ARRAY_CONFIG)
            arr[start:start + n] = values
            if n:
                ct = int(arr.chunks[0])
                self._commit(arr, range(start // ct, (start + n - 1) // ct + 1))
        if n:
            self.group[DONE][start:start + n] = True

    def append(self, data: Mapping[str, np.ndarray], dims: Mapping[str, Sequence[str]],
               coords: Mapping[str, np.ndarray] | None = None) -> int:
        """Grow the trial dimension by a block of trials; returns the index of its first trial."""
        n = int(np.asarray(next(iter(data.values()))).shape[0])
        start = self.n_trials
        self.group[DONE].resize((start + n,))
        for name in self.variables:
            arr = self.group[name]
            arr.resize((start + n, *arr.shape[1:]))
        for name, values in (coords or {}).items():
            old = self.coords.get(name, np.zeros((0,), np.asarray(values).dtype))
            self.set_coord(name, np.concatenate([old, np.asarray(values)]))
        self.group.attrs["n_trials"] = start + n
        self.write(start, data, dims)
        return start

    # reading -----------------------------------------------------------------
    @property
    def done(self) -> np.ndarray:
        return np.asarray(self.group[DONE][...])

    def pending(self, block: int) -> list[tuple[int, int]]:
        """(start, stop) blocks of at most ``block`` trials that are not yet completely written."""
        done = self.done
        out = []
        for start in range(0, self.n_trials, block):
            stop = min(start + block, self.n_trials)
            if not done[start:stop].all():
                out.append((start, stop))
        return out

    @property
    def complete(self) -> bool:
        return bool(self.done.all())

    def read(self, name: str, trials: slice | np.ndarray | None = None) -> np.ndarray:
        if name not in self.group:
            raise UserError(f"recording {self.path} has no variable {name!r}; it has: "
                            f"{', '.join(self.variables) or 'none'}")
        arr = self.group[name]
        return np.asarray(arr[...] if trials is None else arr[trials])

    def iter_blocks(self, name: str, block: int | None = None) -> Iterator[tuple[slice, np.ndarray]]:
        """Stream ``name`` along its trial axis: yields ``(trial_slice, values)`` blocks."""
        if name not in self.group:
            self.read(name)  # raises the helpful error
        arr = self.group[name]
        block = block or self.chunk_trials
        for start in range(0, arr.shape[0], block):
            sl = slice(start, min(start + block, arr.shape[0]))
            yield sl, np.asarray(arr[sl])
