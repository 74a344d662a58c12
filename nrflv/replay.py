"""The replay buffer of negative-phase chains, with an exact resume that stays small.

A FIFO of the last ``capacity`` (10,000) final negative states, one row per chain holding
every layer (image and latents), in a preallocated float32 ring on the CPU (or the
device). Row ``r`` of the stream of pushed chains (r = 0, 1, ...) lives in slot
``r mod capacity``; with ``T`` chains pushed so far the buffer holds rows
``max(0, T - capacity) .. T-1``.

**Sampling** (as the source's ``SampleBuffer``): of ``n`` chains, the first
``k = int(sample_buffer_prob * n)`` (the float product truncated: 0.95 * 128 = 121.6 -> 121
replayed + 7 fresh) are drawn uniformly *with replacement* from the stored chains, the last
``n - k`` are fresh ``U[lo_i, hi_i]`` per layer (``U[-1, 1]`` by default); an empty buffer
gives ``n`` fresh chains. All draws come from the generator passed in (indices first, then
the fresh layers in order), on the generator's device.

**Exact resume without 1.5 GB checkpoints.** The content is not in the checkpoint. It is
kept in a directory (the caller's, e.g. ``RUN/checkpoints/replay``) as append-only *chunk
files*: :meth:`ReplayBuffer.save` writes one file holding the rows pushed since the previous
save (at most ``capacity`` of them, only those still in the ring), atomically (temporary
file, fsync, rename), named by its row range ``replay-<start>-<stop>.f32`` (raw
little-endian float32, ``rows x units``, each row the layers' units in order; no pickle),
and returns a small *manifest* for the checkpoint: ``T``, the capacity, the layer shapes
and, for every chunk still holding live rows, its name, row range, byte size and SHA-256.
:meth:`ReplayBuffer.load` rebuilds the ring from the manifest's chunks, checking sizes and
hashes, so ``save -> load`` gives the same slots, the same ``T`` and therefore identical
samples. A checkpoint grows by a few hundred bytes; the disk holds about one buffer's worth
of chunks (1.5 GB at the thesis size) plus the rows of the latest save interval, and each
save writes only the rows pushed since the last one (``128 x 148 kB = 19 MB`` per training
update of the thesis preset).

Crash safety: chunk files are written before the checkpoint that names them, and a save
deletes only chunk files named by neither this manifest nor the ``keep - 1`` previous ones
(default ``keep = 2``: the manifest being written and the one already committed). A crash
at any point leaves the committed checkpoint's chunks on disk; stray files of an
interrupted save are removed by the next one. So resume from the latest checkpoint (the
buffer belongs in ``last.pt``, not in ``best.pt``, whose chunks later saves may delete).
"""
from __future__ import annotations

import hashlib
import math
import re
from pathlib import Path
from typing import Sequence, Union

import numpy as np
import torch
from torch import Tensor

from core.checkpoint import atomic_target
from core.errors import UserError

MANIFEST_FORMAT = "nrflv-replay-1"
CHUNK_RE = re.compile(r"^replay-(\d{12})-(\d{12})\.f32$")


def replay_count(n: int, sample_buffer_prob: float) -> int:
    """Chains of ``n`` drawn from the buffer: ``int(sample_buffer_prob * n)`` (the source's
    rule; 0.95 * 128 = 121.6 -> 121, the other 7 fresh)."""
    return int(sample_buffer_prob * n)


def chunk_name(start: int, stop: int) -> str:
    """File name of the chunk holding pushed rows ``start .. stop-1``."""
    return f"replay-{start:012d}-{stop:012d}.f32"


class ReplayBuffer:
    """FIFO ring of ``capacity`` chains of layers ``shapes`` (per-chain shapes, e.g.
    ``[(3, 32, 32), (32, 32, 32), ...]``), stored float32 on ``device``.

    ``ranges``: ``(lo, hi)`` of the fresh chains, one for all layers or one per layer.
    """

    def __init__(self, shapes: Sequence[Sequence[int]], capacity: int = 10_000,
                 sample_buffer_prob: float = 0.95,
                 ranges: Union[tuple, Sequence[tuple]] = (-1.0, 1.0),
                 device: Union[str, torch.device] = "cpu") -> None:
        self.shapes = [tuple(int(d) for d in s) for s in shapes]
        if not self.shapes or any(d < 1 for s in self.shapes for d in s):
            raise ValueError(f"shapes must be a non-empty list of positive per-chain shapes, got {shapes}")
        if int(capacity) != capacity or capacity < 1:
            raise ValueError(f"capacity must be a positive integer, got {capacity}")
        if not 0.0 <= sample_buffer_prob <= 1.0:
            raise ValueError(f"sample_buffer_prob must be in [0, 1], got {sample_buffer_prob}")
        n = len(self.shapes)
        if len(ranges) == 2 and all(isinstance(v, (int, float)) for v in ranges):
            ranges = [tuple(ranges)] * n
        self.ranges = [(float(lo), float(hi)) for lo, hi in ranges]
        if len(self.ranges) != n or any(not lo <= hi for lo, hi in self.ranges):
            raise ValueError(f"ranges needs one (lo, hi) with lo <= hi for all or for each of {n} "
                             f"layers, got {ranges}")
        self.capacity = int(capacity)
        self.sample_buffer_prob = float(sample_buffer_prob)
        self.device = torch.device(device)
        self.units = [math.prod(s) for s in self.shapes]
        self.data = [torch.empty((self.capacity, *s), dtype=torch.float32, device=self.device)
                     for s in self.shapes]
        self.total_pushed = 0        # T: rows ever pushed; row r sits in slot r % capacity
        self._saved_upto = 0         # rows below this are in chunk files already
        self._chunks: list[dict] = []          # live chunks of the latest save/load
        self._recent: list[set[str]] = []      # chunk names of the latest manifests

    # ------------------------------------------------------------------ sizes
    def __len__(self) -> int:
        return min(self.total_pushed, self.capacity)

    @property
    def bytes_per_chain(self) -> int:
        """Bytes of one stored chain: 4 x units (148,052 for the thesis preset's 37,013)."""
        return 4 * sum(self.units)

    @property
    def nbytes(self) -> int:
        """Bytes of the preallocated ring: ``capacity x bytes_per_chain``."""
        return sum(t.numel() * t.element_size() for t in self.data)

    # ------------------------------------------------------------------ push / sample
    def push(self, states: Sequence[Tensor]) -> None:
        """Append ``n`` chains (``states[i]`` of shape ``(n, *shapes[i]``), any device and
        floating dtype; copied, detached), overwriting the oldest when full."""
        states = list(states)
        if len(states) != len(self.shapes):
            raise ValueError(f"push needs {len(self.shapes)} layers, got {len(states)}")
        n = states[0].shape[0]
        for i, (s, shape) in enumerate(zip(states, self.shapes)):
            if tuple(s.shape) != (n, *shape):
                raise ValueError(f"layer {i}: expected ({n}, {shape}), got {tuple(s.shape)}")
        if n == 0:
            return
        skip = max(0, n - self.capacity)      # rows that would be overwritten within this push
        slots = (torch.arange(self.total_pushed + skip, self.total_pushed + n) % self.capacity)
        slots = slots.to(self.device)
        with torch.no_grad():
            for buf, s in zip(self.data, states):
                buf.index_copy_(0, slots, s[skip:].detach().to(self.device, torch.float32))
        self.total_pushed += n

    def replay_count(self, n: int) -> int:
        """Chains of ``n`` that :meth:`sample` replays (0 while the buffer is empty)."""
        return replay_count(n, self.sample_buffer_prob) if len(self) else 0

    def sample(self, n: int, generator: torch.Generator,
               device: Union[None, str, torch.device] = None) -> list[Tensor]:
        """``n`` chains per layer (float32 on ``device``, default the buffer's): the first
        :meth:`replay_count` drawn uniformly with replacement from the buffer, the rest fresh
        ``U[lo, hi]``."""
        device = self.device if device is None else torch.device(device)
        k = self.replay_count(n)
        gdev = generator.device
        idx = torch.randint(len(self), (k,), generator=generator, device=gdev).to(self.device) \
            if k else None
        out = []
        for buf, shape, (lo, hi) in zip(self.data, self.shapes, self.ranges):
            fresh = torch.rand((n - k, *shape), generator=generator, device=gdev)
            fresh = fresh.mul_(hi - lo).add_(lo).to(device)
            if k:
                fresh = torch.cat([buf.index_select(0, idx).to(device), fresh])
            out.append(fresh)
        return out

    def contents(self) -> list[Tensor]:
        """The stored chains oldest first (copies), per layer ``(len, *shape)``."""
        rows = torch.arange(self.total_pushed - len(self), self.total_pushed) % self.capacity
        return [buf.index_select(0, rows.to(self.device)) for buf in self.data]

    # ------------------------------------------------------------------ save / load
    def _row_blocks(self, start: int, stop: int, block: int):
        """Pushed rows ``start .. stop-1`` (all in the ring) as little-endian float32 bytes,
        ``block`` rows at a time, each row the layers' units in order."""
        for a in range(start, stop, block):
            b = min(stop, a + block)
            slots = (torch.arange(a, b) % self.capacity).to(self.device)
            flat = torch.cat([buf.index_select(0, slots).reshape(b - a, -1) for buf in self.data], 1)
            yield flat.cpu().numpy().astype("<f4", copy=False).tobytes()

    def save(self, directory: Union[str, Path], keep: int = 2, block: int = 512) -> dict:
        """Write the rows pushed since the last save as one chunk file in ``directory``
        (streamed ``block`` rows at a time), delete chunk files no longer named by the
        latest ``keep`` manifests, and return this manifest (ints, strings, lists) for the
        checkpoint. See the module doc."""
        if keep < 1:
            raise ValueError(f"keep must be >= 1, got {keep}")
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        T = self.total_pushed
        live_from = max(0, T - self.capacity)
        start = max(self._saved_upto, live_from)
        chunks = [c for c in self._chunks if c["stop"] > live_from]
        if T > start:
            name, digest, size = chunk_name(start, T), hashlib.sha256(), 0
            with atomic_target(directory / name) as tmp:
                with open(tmp, "wb") as fh:
                    for data in self._row_blocks(start, T, block):
                        digest.update(data)
                        fh.write(data)
                        size += len(data)
            chunks.append({"file": name, "start": start, "stop": T, "bytes": size,
                           "sha256": digest.hexdigest()})
        self._chunks, self._saved_upto = chunks, T
        self._recent = (self._recent + [{c["file"] for c in chunks}])[-keep:]
        needed = set().union(*self._recent)
        for f in directory.iterdir():
            if CHUNK_RE.match(f.name) and f.name not in needed:
                f.unlink(missing_ok=True)
        return {"format": MANIFEST_FORMAT, "capacity": self.capacity,
                "shapes": [list(s) for s in self.shapes], "total_pushed": T,
                "chunks": [dict(c) for c in chunks]}

    def load(self, manifest: dict, directory: Union[str, Path], block: int = 512) -> None:
        """Rebuild the ring from a manifest of :meth:`save` and its chunk files (sizes and
        SHA-256 checked); afterwards the buffer is exactly as it was when saved. On an
        error (a :class:`UserError`) the buffer's content is undefined."""
        directory = Path(directory)
        if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
            raise UserError("the checkpoint's replay-buffer manifest is missing or of another format")
        if manifest["capacity"] != self.capacity or \
                [tuple(s) for s in manifest["shapes"]] != self.shapes:
            raise UserError(f"replay buffer mismatch: saved capacity {manifest['capacity']} and "
                            f"shapes {manifest['shapes']}, this run {self.capacity} and "
                            f"{[list(s) for s in self.shapes]}")
        T = int(manifest["total_pushed"])
        live_from = max(0, T - self.capacity)
        row_bytes = self.bytes_per_chain
        bounds = np.cumsum([0] + self.units).tolist()
        covered = live_from
        for c in sorted(manifest["chunks"], key=lambda c: c["start"]):
            start, stop = int(c["start"]), int(c["stop"])
            if stop <= covered:
                continue
            if start > covered:
                break
            path = directory / c["file"]
            if not path.is_file():
                raise UserError(f"replay buffer chunk missing: {path} (resume from the run's "
                                f"latest checkpoint)")
            if path.stat().st_size != c["bytes"] or c["bytes"] != (stop - start) * row_bytes:
                raise UserError(f"replay buffer chunk {path} has the wrong size")
            digest = hashlib.sha256()
            with open(path, "rb") as fh:
                for a in range(start, stop, block):
                    b = min(stop, a + block)
                    data = fh.read((b - a) * row_bytes)
                    digest.update(data)
                    if b <= covered:
                        continue
                    lo = max(a, covered)
                    rows = np.frombuffer(data, dtype="<f4").reshape(b - a, -1)[lo - a:]
                    rows = torch.from_numpy(rows.astype(np.float32))
                    slots = (torch.arange(lo, b) % self.capacity).to(self.device)
                    for buf, u0, u1 in zip(self.data, bounds[:-1], bounds[1:]):
                        buf.index_copy_(0, slots, rows[:, u0:u1].reshape(b - lo, *buf.shape[1:])
                                        .to(self.device))
            if digest.hexdigest() != c["sha256"]:
                raise UserError(f"replay buffer chunk {path} is damaged (SHA-256 differs)")
            covered = stop
        if covered < T:
            raise UserError(f"replay buffer chunks do not cover rows {covered}..{T - 1}")
        self.total_pushed = self._saved_upto = T
        self._chunks = [dict(c) for c in manifest["chunks"] if c["stop"] > live_from]
        self._recent = [{c["file"] for c in manifest["chunks"]}]
