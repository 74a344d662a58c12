"""Chunk manifests of recordings: a damaged store is refused, never read as data.

Zarr reads a missing chunk file as its fill value (zeros) and a truncated one fails deep
inside the decompressor. So every chunk file a :class:`core.store.RecordingStore` commits
is listed in ``_manifest.jsonl`` in the store's folder, one JSON line per write
(``{"key": "rate/c/3/0/0", "size": 1234, "sha256": "..."}``, a later line for the same key
replacing an earlier one). Lines are appended after a block's data and before its
``_done`` flags, so a committed block is always listed; a crash can leave at most a torn
last line, which belongs to a block that is not marked done: it is ignored when read and
cut before the next lines are appended.

:func:`verify` checks, before a store is used:

* every array is zarr v3 with a plain dtype and known codecs (a zarr v2 store, an object
  array or a pickle codec is refused without decoding anything);
* the ``_done`` flags decode;
* every chunk of a variable whose trials are all done, and every chunk of a coordinate,
  is present with the size and SHA-256 the manifest lists; a chunk holding both done and
  pending trials (a block size changed on resume) may be newer than listed after a crash,
  and must then still decode. Chunks of pending trials only are rewritten on resume.

Stores written before manifests existed (no ``integrity`` attribute) are checked for
decodability of every chunk instead. Hashing reads every chunk file once (SHA-256 ran at
~1.6 GB/s here; see the README) and is done once per store and process.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import os
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from core.errors import UserError

MANIFEST = "_manifest.jsonl"
SCHEME = "sha256-manifest-v1"
#: codecs a recording of this toolkit may use (anything else, e.g. a pickle filter, is refused)
SAFE_CODECS = {"bytes", "zstd", "vlen-utf8", "vlen-bytes", "transpose", "crc32c", "gzip", "blosc"}

_verified: set[tuple] = set()


class DamagedStore(UserError):
    """A recording or stimulus store whose files do not hold what was committed."""


def file_digest(path: Path, block: int = 1 << 20) -> tuple[int, str]:
    """``(size, sha256 hex)`` of a file, read ``block`` bytes at a time (a large weights file
    never whole in memory)."""
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as fh:
        for data in iter(lambda: fh.read(block), b""):
            digest.update(data)
            size += len(data)
    return size, digest.hexdigest()


def chunk_keys(arr, first_chunks: Iterable[int]) -> Iterator[str]:
    """Store-relative keys of every chunk of ``arr`` whose index along axis 0 is in ``first_chunks``."""
    grid = arr.cdata_shape
    for i in first_chunks:
        for rest in itertools.product(*(range(n) for n in grid[1:])):
            yield f"{arr.path}/{arr.metadata.encode_chunk_key((i, *rest))}"


def record(root: Path, keys: Iterable[str]) -> None:
    """Append the current size and hash of each chunk file ``keys`` to the manifest."""
    lines = []
    for key in keys:
        path = root / key
        if path.is_file():
            size, digest = file_digest(path)
            lines.append(json.dumps({"key": key, "size": size, "sha256": digest}))
        else:  # zarr did not write it: it reads as the fill value, which is what was written
            lines.append(json.dumps({"key": key, "size": None, "sha256": None}))
    if not lines:
        return
    with open(root / MANIFEST, "ab") as fh:
        _drop_torn_tail(fh)
        fh.write(("\n".join(lines) + "\n").encode())
        fh.flush()
        os.fsync(fh.fileno())


def _drop_torn_tail(fh) -> None:
    """Cut a last line left unfinished by a crash or a full disk (it belongs to a block that
    was never marked done), so the lines appended now stay readable."""
    size = fh.seek(0, os.SEEK_END)
    if size == 0:
        return
    with open(fh.name, "rb") as rd:
        rd.seek(size - 1)
        if rd.read(1) == b"\n":
            return
        rd.seek(0)
        keep = rd.read().rfind(b"\n") + 1
    fh.truncate(keep)
    fh.seek(0, os.SEEK_END)


def read_manifest(root: Path) -> dict[str, tuple[int | None, str | None]]:
    """The manifest as ``{key: (size, sha256)}`` (the latest line per key wins)."""
    path = root / MANIFEST
    try:
        text = path.read_text()
    except OSError as exc:
        raise DamagedStore(f"{root} is damaged: its chunk manifest {MANIFEST} cannot be read "
                           f"({exc.strerror or exc})") from None
    out: dict[str, tuple[int | None, str | None]] = {}
    lines = text.split("\n")
    for n, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            out[str(entry["key"])] = (entry["size"], entry["sha256"])
        except (ValueError, KeyError, TypeError):
            if n >= len(lines) - 2 and not text.endswith("\n"):
                break  # a torn last line: the write of a block that was never marked done
            raise DamagedStore(f"{root} is damaged: line {n + 1} of {MANIFEST} is not a manifest entry") from None
    return out


def _damaged(root: Path, what: str) -> DamagedStore:
    return DamagedStore(f"{root} is damaged: {what}; it cannot be used as data (regenerate it, or move it "
                        "away and record afresh)")


def check_arrays(root: Path, group) -> None:
    """Every array is zarr v3 with a plain dtype and known codecs (nothing is decoded)."""
    for path, arr in _arrays(group):
        meta = arr.metadata
        if getattr(meta, "zarr_format", None) != 3:
            raise UserError(f"{root}: array {path} is not zarr v3; this toolkit writes zarr v3 recordings only")
        if np.dtype(arr.dtype).kind == "O" and "vlen-utf8" not in _codec_names(meta):
            raise UserError(f"{root}: array {path} holds Python objects; refused (it could run code)")
        unknown = [c for c in _codec_names(meta) if c not in SAFE_CODECS]
        if unknown:
            raise UserError(f"{root}: array {path} uses codec(s) {', '.join(unknown)}, which this toolkit "
                            "does not write; refused")


def _codec_names(meta) -> list[str]:
    names = []
    for codec in getattr(meta, "codecs", ()) or ():
        d = codec.to_dict() if hasattr(codec, "to_dict") else {"name": type(codec).__name__}
        names.append(str(d.get("name")))
    return names


def _arrays(group, prefix: str = "") -> Iterator[tuple[str, object]]:
    for name, arr in sorted(group.arrays()):
        yield f"{prefix}{name}", arr
    for name, sub in sorted(group.groups()):
        yield from _arrays(sub, f"{prefix}{name}/")


def verify(store) -> None:
    """Refuse a damaged ``store`` (a :class:`core.store.RecordingStore`) with one line naming
    what is damaged; a no-op for a store already verified unchanged in this process."""
    root = Path(store.path)
    manifest = root / MANIFEST
    stamp = manifest.stat() if manifest.exists() else None
    key = (str(root.resolve()), stamp and (stamp.st_mtime_ns, stamp.st_size))
    if key in _verified:
        return
    group = store.group
    check_arrays(root, group)
    try:
        done = np.asarray(group["_done"][...], dtype=bool)
    except Exception as exc:  # noqa: BLE001 - whatever the decompressor raises
        raise _damaged(root, f"the _done flags do not decode ({type(exc).__name__})") from None
    if group.attrs.get("integrity") == SCHEME:
        _verify_manifest(store, root, done)
    else:
        _verify_decodes(store, root)
    _verified.add(key)


def forget(root: Path) -> None:
    """Drop ``root`` from the verified cache (after this process writes to it)."""
    r = str(Path(root).resolve())
    for k in [k for k in _verified if k[0] == r]:
        _verified.discard(k)


def _verify_manifest(store, root: Path, done: np.ndarray) -> None:
    listed = read_manifest(root)
    group = store.group
    checks: list[tuple[str, str, object]] = []  # (key, trials it holds, (array, slice) when partly pending)
    for name in store.variables:
        arr = group[name]
        act = int(arr.chunks[0])
        for i in range(arr.cdata_shape[0]):
            lo, hi = i * act, min((i + 1) * act, arr.shape[0])
            d = done[lo:hi]
            if len(d) and d.all():
                checks += [(k, f"trials {lo}-{hi - 1}", None) for k in chunk_keys(arr, [i])]
            elif d.any():
                # partly pending (a block size changed on resume): a crash while its pending trials
                # were written may have left a newer chunk than listed; then it must still decode
                checks += [(k, f"trials {lo}-{hi - 1}", (arr, slice(lo, hi))) for k in chunk_keys(arr, [i])]
    if "coords" in group:
        for name, arr in sorted(group["coords"].arrays()):
            checks += [(k, "coordinate", None) for k in chunk_keys(arr, range(arr.cdata_shape[0]))]
    for k, what, partial in checks:
        problem = _chunk_problem(root, k, listed)
        if problem and partial is not None and (root / k).is_file() and k in listed:
            arr, sl = partial
            try:
                arr[sl]
                problem = None
            except Exception as exc:  # noqa: BLE001 - whatever the decompressor raises
                problem = f"does not decode ({type(exc).__name__})"
        if problem:
            raise _damaged(root, f"chunk {k} ({what}) {problem}")


def _chunk_problem(root: Path, key: str, listed: dict) -> str | None:
    """What is wrong with one chunk file against its manifest entry (None: nothing)."""
    if key not in listed:
        return "is not in its manifest"
    size, digest = listed[key]
    path = root / key
    if size is None:
        return "appeared after it was committed" if path.exists() else None
    if not path.is_file():
        return "is missing"
    have_size, have = file_digest(path)
    if have_size != size:
        return f"has {have_size} bytes, {size} were committed"
    if have != digest:
        return "differs from what was committed (SHA-256)"
    return None


def _verify_decodes(store, root: Path) -> None:
    """Stores without a manifest (written before them): every chunk must decode."""
    group = store.group
    arrays = [(n, group[n]) for n in store.variables]
    if "coords" in group:
        arrays += [(f"coords/{n}", a) for n, a in sorted(group["coords"].arrays())]
    for name, arr in arrays:
        step = int(arr.chunks[0]) if arr.chunks else 1
        for start in range(0, arr.shape[0], step):
            try:
                arr[start:start + step]
            except Exception as exc:  # noqa: BLE001
                raise _damaged(root, f"{name} (trials {start}-{min(start + step, arr.shape[0]) - 1}) does not "
                                     f"decode ({type(exc).__name__})") from None
