"""Onset and offset transients of a unit's response to a step stimulus.

A trace ``x (..., T)`` (time on the LAST axis, sampled at ``fs`` Hz) is recorded while a
stimulus is on over the steps ``[onset, offset)``, ``1 <= onset < offset <= T``. The sample
``k`` steps after an event lies ``k * 1000 / fs`` ms after it (the onset sample itself is at
0 ms). With ``D = offset - onset`` the stimulus duration in steps, ``step_response`` reports,
per leading index:

- ``baseline``: mean over the ``baseline_steps`` steps before onset (default: all of them).
- ``sustained``: mean over the last ``ceil(sustained_fraction * D)`` steps of the stimulus.
- ``peak``: maximum over ``[onset, onset + W)``, ``W = round(peak_window_ms * fs / 1000)``
  steps (default: the whole stimulus; clipped to ``D``). It is the MAXIMUM: for a unit the
  stimulus suppresses, pass ``-trace``.
- ``peak_latency_ms``: time from onset to the first sample reaching the peak.
- ``overshoot``: ``peak - sustained`` (the onset transient above the steady response).
- ``overshoot_ratio``: ``overshoot / (sustained - baseline)``, the overshoot relative to the
  step size (``exp(-pi z / sqrt(1 - z^2))`` for a second-order system of damping ratio
  ``z``); 0 where ``sustained == baseline`` (no NaN, no inf).
- ``settle_ms``: time from onset to the first step from which the trace stays within
  ``settle_tolerance * |sustained - baseline|`` (default 5%) of ``sustained`` until the
  offset; 0 when it is in that band from onset on; NaN when the last stimulus step is still
  outside it (never settles). Meant for trial-averaged traces: noise wider than the band
  gives NaN.
- ``post_level``: mean over the last ``ceil(sustained_fraction * (T - offset))`` steps after
  the offset (the level the trace returns to).
- ``offset_response``: within the offset window ``[offset, offset + W_off)``
  (``W_off = round(offset_window_ms * fs / 1000)`` steps, default all steps after the
  offset), the signed largest excursion of the trace OUTSIDE the band between ``sustained``
  and ``post_level``: ``x - max(sustained, post_level)`` where the trace is above the band
  (positive), ``x - min(sustained, post_level)`` where below (negative), the one of largest
  magnitude. A monotone return from the sustained to the post level gives 0; an underdamped
  return undershoots the post level (``-overshoot_ratio * step`` for the second-order
  system); an OFF burst above the sustained level is positive.
- ``offset_latency_ms``: time from offset to that extreme sample; NaN where
  ``offset_response == 0``.

``post_level``, ``offset_response`` and ``offset_latency_ms`` are NaN when ``offset == T``
(no post-stimulus steps). All values are tensors of the leading shape ``(...)``, in the
trace's floating dtype, on its device.

``mean_trace_by`` averages trials that share a condition label (e.g. contrast) before these
measures are taken.
"""
from __future__ import annotations

import math

import torch


def _floating(trace: torch.Tensor) -> torch.Tensor:
    """``trace`` as a floating tensor (the default float dtype if it held integers)."""
    trace = torch.as_tensor(trace)
    return trace if trace.is_floating_point() else trace.to(torch.get_default_dtype())


def steps_from_ms(ms: float, fs: float, name: str) -> int:
    """Number of samples in ``ms`` milliseconds at ``fs`` Hz (rounded; must be >= 1)."""
    steps = int(round(ms * fs / 1000.0))
    if steps < 1:
        raise ValueError(f"{name}={ms} ms is shorter than one sample at fs={fs} Hz")
    return steps


def ms_from_steps(steps: torch.Tensor, fs: float) -> torch.Tensor:
    """Sample counts ``(...)`` converted to milliseconds at ``fs`` Hz."""
    return steps * (1000.0 / fs)


def tail_mean(x: torch.Tensor, fraction: float) -> torch.Tensor:
    """Mean of ``x (..., n)`` over its last ``ceil(fraction * n)`` steps. ``(...)``."""
    n = x.shape[-1]
    return x[..., n - max(1, math.ceil(fraction * n)):].mean(dim=-1)


def settling_steps(stimulus: torch.Tensor, sustained: torch.Tensor,
                   band: torch.Tensor) -> torch.Tensor:
    """Steps from the start of ``stimulus (..., D)`` until it stays within ``band (...)`` of
    ``sustained (...)`` to the end; float ``(...)``, NaN where the last step is outside."""
    steps = stimulus.shape[-1]
    outside = (stimulus - sustained[..., None]).abs() > band[..., None]
    index = torch.arange(steps, device=stimulus.device)
    last_outside = torch.where(outside, index, torch.full_like(index, -1)).amax(dim=-1)
    settle = (last_outside + 1).to(stimulus.dtype)
    return torch.where(last_outside == steps - 1, torch.full_like(settle, math.nan), settle)


def excursion_outside_band(x: torch.Tensor, low: torch.Tensor,
                           high: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Signed largest excursion of ``x (..., n)`` outside ``[low, high]`` (each ``(...)``)
    and its step index (``(...)``, first on ties); excursion 0 if ``x`` stays inside."""
    above = (x - high[..., None]).clamp_min(0.0)
    below = (x - low[..., None]).clamp_max(0.0)
    signed = torch.where(above > 0, above, below)
    index = signed.abs().argmax(dim=-1, keepdim=True)
    return signed.gather(-1, index).squeeze(-1), index.squeeze(-1)


def _check_step_arguments(steps: int, onset: int, offset: int, fs: float,
                          baseline_steps: int | None, sustained_fraction: float,
                          settle_tolerance: float) -> None:
    """ValueError for an inconsistent stimulus window or option."""
    if not fs > 0:
        raise ValueError(f"fs must be positive, got {fs}")
    if not (isinstance(onset, int) and isinstance(offset, int)):
        raise ValueError(f"onset and offset must be ints (steps), got {onset!r}, {offset!r}")
    if not 1 <= onset < offset <= steps:
        raise ValueError(f"need 1 <= onset < offset <= T={steps}, got onset={onset}, "
                         f"offset={offset}")
    if baseline_steps is not None and not 1 <= baseline_steps <= onset:
        raise ValueError(f"baseline_steps must lie in [1, onset={onset}], got {baseline_steps}")
    if not 0.0 < sustained_fraction <= 1.0:
        raise ValueError(f"sustained_fraction must lie in (0, 1], got {sustained_fraction}")
    if not settle_tolerance >= 0.0:
        raise ValueError(f"settle_tolerance must be >= 0, got {settle_tolerance}")


def step_response(trace: torch.Tensor, onset: int, offset: int, fs: float, *,
                  baseline_steps: int | None = None, sustained_fraction: float = 0.5,
                  peak_window_ms: float | None = None, offset_window_ms: float | None = None,
                  settle_tolerance: float = 0.05) -> dict[str, torch.Tensor]:
    """Onset/offset transient measures of ``trace (..., T)`` for a stimulus on over steps
    ``[onset, offset)`` at ``fs`` Hz; definitions in the module docstring.

    Returns:
        dict of ``(...)`` tensors: ``baseline, peak, peak_latency_ms, sustained, overshoot,
        overshoot_ratio, settle_ms, post_level, offset_response, offset_latency_ms``.
    """
    x = _floating(trace)
    if x.ndim < 1:
        raise ValueError("trace must have a time axis (..., T)")
    steps = x.shape[-1]
    _check_step_arguments(steps, onset, offset, fs, baseline_steps, sustained_fraction,
                          settle_tolerance)
    duration = offset - onset
    baseline = x[..., onset - (baseline_steps or onset): onset].mean(dim=-1)
    stimulus = x[..., onset:offset]
    sustained = tail_mean(stimulus, sustained_fraction)

    window = duration if peak_window_ms is None else steps_from_ms(peak_window_ms, fs,
                                                                    "peak_window_ms")
    peak, peak_index = stimulus[..., :min(window, duration)].max(dim=-1)
    overshoot = peak - sustained
    step_size = sustained - baseline
    has_step = step_size != 0
    overshoot_ratio = torch.where(has_step, overshoot / torch.where(has_step, step_size, 1.0),
                                  torch.zeros_like(overshoot))
    settle = settling_steps(stimulus, sustained, settle_tolerance * step_size.abs())

    nan = torch.full_like(baseline, math.nan)
    post_level, offset_response, offset_latency = nan, nan, nan
    if offset < steps:
        post = x[..., offset:]
        post_level = tail_mean(post, sustained_fraction)
        off_window = post.shape[-1] if offset_window_ms is None else steps_from_ms(
            offset_window_ms, fs, "offset_window_ms")
        offset_response, off_index = excursion_outside_band(
            post[..., :off_window], torch.minimum(sustained, post_level),
            torch.maximum(sustained, post_level))
        offset_latency = torch.where(offset_response != 0,
                                     ms_from_steps(off_index.to(x.dtype), fs), nan)

    return {
        "baseline": baseline,
        "peak": peak,
        "peak_latency_ms": ms_from_steps(peak_index.to(x.dtype), fs),
        "sustained": sustained,
        "overshoot": overshoot,
        "overshoot_ratio": overshoot_ratio,
        "settle_ms": ms_from_steps(settle, fs),
        "post_level": post_level,
        "offset_response": offset_response,
        "offset_latency_ms": offset_latency,
    }


def mean_trace_by(trace: torch.Tensor, labels: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Average trials that share a condition label.

    Args:
        trace: ``(trials, ..., T)`` traces.
        labels: ``(trials,)`` condition of each trial (e.g. contrast; any sortable dtype).
    Returns:
        ``(levels, means)``: the distinct labels ``(K,)`` in ascending order (on the trace's
        device) and the mean trace of each ``(K, ..., T)``.
    """
    x = _floating(trace)
    labels = torch.as_tensor(labels, device=x.device)
    if labels.ndim != 1 or x.ndim < 1 or labels.shape[0] != x.shape[0]:
        raise ValueError(f"labels must be (trials,) matching trace (trials, ..., T); got "
                         f"labels {tuple(labels.shape)}, trace {tuple(x.shape)}")
    if labels.numel() == 0:
        raise ValueError("no trials")
    levels, which = torch.unique(labels, sorted=True, return_inverse=True)
    sums = torch.zeros((levels.shape[0],) + x.shape[1:], dtype=x.dtype, device=x.device)
    sums.index_add_(0, which, x)
    counts = torch.bincount(which, minlength=levels.shape[0]).to(x.dtype)
    return levels, sums / counts.reshape((-1,) + (1,) * (x.ndim - 1))
