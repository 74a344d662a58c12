"""Device choice, seeding and the distributed set-up shared by every stage.

Distributed runs are started by ``torchrun``; we read its environment variables
(``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``) and use PyTorch's own process groups:
NCCL on CUDA, gloo on the CPU. Only rank 0 writes files.
"""
from __future__ import annotations

import hashlib
import os
import random
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from core.errors import UserError


def resolve_device(spec: str, local_rank: int = 0) -> torch.device:
    """Turn ``auto|cpu|cuda|cuda:N`` into a :class:`torch.device`.

    ``auto`` picks CUDA when it is available (the local rank's GPU under torchrun), else
    the CPU. Asking for CUDA on a machine without it is a :class:`UserError`.
    """
    spec = spec.strip().lower()
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank % torch.cuda.device_count())
        return torch.device("cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "cuda" or spec.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise UserError(f"--device: {spec} requested but CUDA is not available on this machine; "
                            "use --device cpu or auto")
        index = local_rank if spec == "cuda" else spec.split(":", 1)[1]
        try:
            index = int(index)
        except ValueError:
            raise UserError(f"--device: expected auto, cpu, cuda or cuda:N, got {spec!r}") from None
        if not 0 <= index < torch.cuda.device_count():
            raise UserError(f"--device: {spec} but only {torch.cuda.device_count()} GPU(s) are visible")
        return torch.device("cuda", index)
    raise UserError(f"--device: expected auto, cpu, cuda or cuda:N, got {spec!r}")


def derive_seed(*parts: int | str) -> int:
    """A 63-bit seed derived deterministically from ``parts`` (e.g. seed, step, rank)."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def reseed(seed: int, device: torch.device) -> None:
    """Seed torch's global generators for the CPU and, if used, ``device``'s GPU.

    Cheaper than ``torch.manual_seed`` on CPU-only runs, which queues a lazy CUDA seeding
    call (with a stack trace) every time it is called before CUDA is initialised.
    """
    torch.default_generator.manual_seed(seed)
    if device.type == "cuda":
        torch.cuda.manual_seed(seed)


def generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    g = torch.Generator(device=device)
    g.manual_seed(seed)
    return g


@dataclass
class DistEnv:
    """Where this process stands in a (possibly single-process) run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_distributed(device_spec: str) -> tuple[DistEnv, torch.device]:
    """Join the process group torchrun prepared, if any, and pick this rank's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    env = DistEnv(rank, world, local)
    device = resolve_device(device_spec, local)
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend=backend)
    return env, device


def shutdown_distributed(barrier: bool = False) -> None:
    """Destroy the process group (if any); with ``barrier`` all ranks first meet, so that no
    rank tears its connections down while a peer still uses them (gloo can abort then)."""
    if dist.is_available() and dist.is_initialized():
        if barrier:
            try:
                dist.barrier()
            except RuntimeError:
                pass  # a peer is gone already: destroy anyway
        dist.destroy_process_group()


def broadcast_object(obj, env: DistEnv, group=None):
    """Send a picklable object from rank 0 to every rank of ``group`` (default: all; identity when
    not distributed)."""
    if not env.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0, group=group)
    return box[0]


def all_reduce_sum(t: torch.Tensor, env: DistEnv) -> torch.Tensor:
    """Sum of a tensor over ranks (a detached copy; identity when not distributed)."""
    t = t.detach().clone()
    if env.distributed:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def all_reduce_mean(t: torch.Tensor, env: DistEnv) -> torch.Tensor:
    """Mean of a tensor over ranks (a detached copy; identity when not distributed)."""
    t = t.detach().clone()
    if env.distributed:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        t /= env.world_size
    return t


def keep_freed_memory_mapped() -> bool:
    """Stop glibc from returning large freed blocks to the OS after every free.

    By default glibc serves allocations above ~128 KiB-32 MiB with fresh ``mmap`` pages and
    unmaps them on free, so every training step page-faults its activations in again
    (measured: ~20% of a CPU training step of the spiking network, and much of the
    "sys" time of CPU runs). Raising the mmap and trim thresholds keeps freed memory in the
    heap for reuse. Linux/glibc only; a no-op elsewhere. Returns whether it took effect.
    """
    import ctypes
    import ctypes.util
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        m_trim_threshold, m_top_pad, m_mmap_threshold = -1, -2, -3
        ok = libc.mallopt(m_mmap_threshold, 32 << 20)   # glibc's maximum on 64-bit
        ok = libc.mallopt(m_trim_threshold, 1 << 30) and ok
        ok = libc.mallopt(m_top_pad, 64 << 20) and ok
        return bool(ok)
    except (OSError, AttributeError):
        return False
