"""Timing for the benches: every variant measured in interleaved blocks, so a busy machine
slows them alike; and what the benches share to count and print what they measure (durations,
sizes, the bytes autograd saves). Imported by the bench scripts, which run with bench/ on
sys.path."""
from __future__ import annotations

import time

import torch


def sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def interleaved(variants: dict, device, rounds: int, block: int, warmup: int = 2) -> dict[str, list[float]]:
    """Seconds per call of each ``name -> (fn, threads)``, one value per round.

    Every round runs a block of ``block`` calls of each variant in turn (A, B, C, then C, B, A
    in the next round), setting the thread count first; ``warmup`` untimed calls of each (and
    any compiling) come before.
    """
    for fn, threads in variants.values():
        torch.set_num_threads(threads)
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {k: [] for k in variants}
    names = list(variants)
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            fn, threads = variants[name]
            torch.set_num_threads(threads)
            sync(device)
            t0 = time.perf_counter()
            for _ in range(block):
                fn()
            sync(device)
            times[name].append((time.perf_counter() - t0) / block)
    return times


def human_time(s: float, second_digits: int = 1) -> str:
    """A duration for people: days (from two days), hours, minutes or seconds."""
    if s >= 2 * 86400:
        return f"{s / 86400:.1f} days"
    if s >= 3600:
        return f"{s / 3600:.1f} h"
    if s >= 60:
        return f"{s / 60:.1f} min"
    return f"{s:.{second_digits}f} s"


def human_bytes(n: float) -> str:
    """A size for people, in binary units with two decimals (bytes below 1 KiB)."""
    for unit, size in (("TiB", 2 ** 40), ("GiB", 2 ** 30), ("MiB", 2 ** 20), ("KiB", 2 ** 10)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n:.0f} B"


def saved_bytes(fn, exclude=()):
    """``(fn(), bytes)``: ``fn``'s result and the bytes of the distinct storages autograd saved for
    the backward pass while it ran, the storages of the tensors in ``exclude`` (e.g. a model's
    parameters) not counted. The saved tensors are alive (held by the graph) while they are
    counted, so no two of them share an address."""
    skip = {t.untyped_storage().data_ptr() for t in exclude}
    seen = {}

    def pack(t):
        st = t.untyped_storage()
        if st.data_ptr() not in skip:
            seen[st.data_ptr()] = st.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return out, sum(seen.values())
