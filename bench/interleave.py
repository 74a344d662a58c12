"""Timing for the benches: every variant measured in interleaved blocks, so a busy machine
slows them alike (imported by the bench scripts, which run with bench/ on sys.path)."""
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
