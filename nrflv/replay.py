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

**Sharded by rank** (``shard=(rank, world_size)``, under torchrun): the ring keeps its
meaning over the whole run (``capacity`` rows, row ``r`` in slot ``r mod capacity``, pushed in
global chain order), but rank ``q`` stores only the slots ``q C // W .. (q+1) C // W - 1``.
A push gathers every rank's chains (``all_gather``) and each rank keeps the rows of its
slots; a sample draws the same indices and fresh chains on every rank (the generator is the
same everywhere) and gathers the replayed rows from their owners, and each rank returns its
own chains (``chains=(first, stop)``). So the chains a rank receives are those a single process
would give to the same chain indices, bit for bit, and the memory per rank is ``1/W`` of the
ring. Saving, each rank writes the rows of its slots (contiguous row ranges, the same chunk
files) and the manifest lists every rank's chunks; loading, each rank reads every chunk
(checking every hash) and keeps its slots. The manifest does not depend on the number of
ranks: a run saved on ``W`` processes resumes exactly on any other number.

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

import torch.distributed as dist

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
    ``shard``: ``(rank, world_size)``; this rank stores only its slots (module doc), and
    :meth:`push`, :meth:`sample` and :meth:`save` are collective (every rank calls them).
    """

    def __init__(self, shapes: Sequence[Sequence[int]], capacity: int = 10_000,
                 sample_buffer_prob: float = 0.95,
                 ranges: Union[tuple, Sequence[tuple]] = (-1.0, 1.0),
                 device: Union[str, torch.device] = "cpu", shard: tuple[int, int] = (0, 1)) -> None:
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
        self.rank, self.world_size = int(shard[0]), int(shard[1])
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"shard must be (rank, world_size) with 0 <= rank < world_size, got {shard}")
        #: slot bounds of every rank; this rank stores slots lo .. hi-1
        self.bounds = [q * self.capacity // self.world_size for q in range(self.world_size + 1)]
        self.lo, self.hi = self.bounds[self.rank], self.bounds[self.rank + 1]
        self.data = [torch.empty((self.hi - self.lo, *s), dtype=torch.float32, device=self.device)
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
        """Bytes of this rank's part of the ring: ``capacity x bytes_per_chain`` in one process."""
        return sum(t.numel() * t.element_size() for t in self.data)

    # ------------------------------------------------------------------ push / sample
    def _gather(self, t: Tensor) -> Tensor:
        """Every rank's ``t`` (same shape on each) concatenated along dim 0 in rank order."""
        if self.world_size == 1:
            return t
        parts = [torch.empty_like(t) for _ in range(self.world_size)]
        dist.all_gather(parts, t.contiguous())
        return torch.cat(parts)

    def _owned(self, slots: Tensor) -> Tensor:
        """Mask of the ``slots`` this rank stores."""
        return (slots >= self.lo) & (slots < self.hi)

    def push(self, states: Sequence[Tensor]) -> None:
        """Append ``n`` chains (``states[i]`` of shape ``(n, *shapes[i]``), any device and
        floating dtype; copied, detached), overwriting the oldest when full. Sharded: each
        rank passes its own chains (the same number on every rank), appended in rank order."""
        states = list(states)
        if self.world_size > 1:
            states = [self._gather(s.detach().to(self.device, torch.float32)) for s in states]
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
        keep = self._owned(slots)
        rows, slots = (torch.arange(skip, n)[keep]).to(self.device), (slots[keep] - self.lo).to(self.device)
        with torch.no_grad():
            for buf, s in zip(self.data, states):
                buf.index_copy_(0, slots, s.detach().to(self.device, torch.float32).index_select(0, rows))
        self.total_pushed += n

    def replay_count(self, n: int) -> int:
        """Chains of ``n`` that :meth:`sample` replays (0 while the buffer is empty)."""
        return replay_count(n, self.sample_buffer_prob) if len(self) else 0

    def _rows_at(self, buf: Tensor, slots: Tensor) -> Tensor:
        """The rows in ``slots`` of one layer, gathered from the ranks that store them."""
        if self.world_size == 1:
            return buf.index_select(0, slots)
        mine = self._owned(slots)
        part = torch.zeros((len(slots), *buf.shape[1:]), dtype=buf.dtype, device=buf.device)
        part[mine] = buf.index_select(0, slots[mine] - self.lo)
        every = self._gather(part).view(self.world_size, *part.shape)
        owner = torch.bucketize(slots, torch.tensor(self.bounds[1:], device=slots.device), right=True)
        return every[owner, torch.arange(len(slots), device=slots.device)]

    def sample(self, n: int, generator: torch.Generator,
               device: Union[None, str, torch.device] = None,
               chains: Union[None, tuple[int, int]] = None) -> list[Tensor]:
        """``n`` chains per layer (float32 on ``device``, default the buffer's): the first
        :meth:`replay_count` drawn uniformly with replacement from the buffer, the rest fresh
        ``U[lo, hi]``. ``chains=(first, stop)``: only chains ``first .. stop-1`` of the ``n``
        are returned (every draw is still made for all ``n``: the same numbers for the same chain
        whatever the share)."""
        device = self.device if device is None else torch.device(device)
        first, stop = (0, n) if chains is None else (int(chains[0]), int(chains[1]))
        if not 0 <= first <= stop <= n:
            raise ValueError(f"chains=(first, stop) must lie in 0..{n}, got {chains}")
        k = self.replay_count(n)
        gdev = generator.device
        idx = torch.randint(len(self), (k,), generator=generator, device=gdev).to(self.device) \
            if k else None
        if k and self.world_size == 1:
            idx = idx[first:min(stop, k)]
        out = []
        for buf, shape, (lo, hi) in zip(self.data, self.shapes, self.ranges):
            fresh = torch.rand((n - k, *shape), generator=generator, device=gdev)
            fresh = fresh[max(first, k) - k:max(stop, k) - k].mul_(hi - lo).add_(lo).to(device)
            if k:
                replayed = self._rows_at(buf, idx)
                if self.world_size > 1:
                    replayed = replayed[first:min(stop, k)]
                fresh = torch.cat([replayed.to(device), fresh])
            out.append(fresh)
        return out

    def contents(self) -> list[Tensor]:
        """The stored chains oldest first (copies), per layer ``(len, *shape)`` (one process)."""
        if self.world_size > 1:
            raise ValueError("contents() of a sharded buffer: load its manifest in one process")
        rows = torch.arange(self.total_pushed - len(self), self.total_pushed) % self.capacity
        return [buf.index_select(0, rows.to(self.device)) for buf in self.data]

    # ------------------------------------------------------------------ save / load
    def _row_blocks(self, start: int, stop: int, block: int):
        """Pushed rows ``start .. stop-1`` (all in the ring) as little-endian float32 bytes,
        ``block`` rows at a time, each row the layers' units in order."""
        for a in range(start, stop, block):
            b = min(stop, a + block)
            slots = (torch.arange(a, b) % self.capacity - self.lo).to(self.device)
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
        new = [self._write_chunk(directory, a, b, block) for a, b in self._owned_runs(start, T)]
        if self.world_size > 1:
            every = [None] * self.world_size
            dist.all_gather_object(every, new)
            new = [c for part in every for c in part]
        chunks = sorted(chunks + new, key=lambda c: c["start"])
        self._chunks, self._saved_upto = chunks, T
        self._recent = (self._recent + [{c["file"] for c in chunks}])[-keep:]
        needed = set().union(*self._recent)
        if self.rank == 0:  # after every rank's chunks are written (the gather above waits for them)
            for f in directory.iterdir():
                if CHUNK_RE.match(f.name) and f.name not in needed:
                    f.unlink(missing_ok=True)
        return {"format": MANIFEST_FORMAT, "capacity": self.capacity,
                "shapes": [list(s) for s in self.shapes], "total_pushed": T,
                "chunks": [dict(c) for c in chunks]}

    def _owned_runs(self, start: int, stop: int) -> list[tuple[int, int]]:
        """The pushed rows ``start .. stop-1`` in this rank's slots, as contiguous row ranges
        (one range in one process; at most three per rank otherwise, ``stop - start <= C``)."""
        runs, a = [], None
        for r in range(start, stop + 1):
            owned = r < stop and self.lo <= r % self.capacity < self.hi
            if owned and a is None:
                a = r
            elif not owned and a is not None:
                runs.append((a, r))
                a = None
        return runs

    def _write_chunk(self, directory: Path, start: int, stop: int, block: int) -> dict:
        """Write rows ``start .. stop-1`` (all this rank's) atomically; their manifest entry."""
        name, digest, size = chunk_name(start, stop), hashlib.sha256(), 0
        with atomic_target(directory / name) as tmp:
            with open(tmp, "wb") as fh:
                for data in self._row_blocks(start, stop, block):
                    digest.update(data)
                    fh.write(data)
                    size += len(data)
        return {"file": name, "start": start, "stop": stop, "bytes": size, "sha256": digest.hexdigest()}

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
                    slots = torch.arange(lo, b) % self.capacity
                    mine = self._owned(slots)
                    rows, slots = rows[mine], (slots[mine] - self.lo).to(self.device)
                    for buf, u0, u1 in zip(self.data, bounds[:-1], bounds[1:]):
                        buf.index_copy_(0, slots, rows[:, u0:u1].reshape(len(rows), *buf.shape[1:])
                                        .to(self.device))
            if digest.hexdigest() != c["sha256"]:
                raise UserError(f"replay buffer chunk {path} is damaged (SHA-256 differs)")
            covered = stop
        if covered < T:
            raise UserError(f"replay buffer chunks do not cover rows {covered}..{T - 1}")
        self.total_pushed = self._saved_upto = T
        self._chunks = [dict(c) for c in manifest["chunks"] if c["stop"] > live_from]
        self._recent = [{c["file"] for c in manifest["chunks"]}]
