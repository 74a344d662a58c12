"""Step-response measures against the closed forms of first- and second-order systems, and
exact values on piecewise-constant traces."""
from __future__ import annotations

import math

import pytest
import torch

from nrflv.measures.transients import mean_trace_by, step_response

FS = 10_000.0                 # Hz
ONSET, DURATION, POST = 1000, 10_000, 10_000
OFFSET = ONSET + DURATION
OMEGA = 2 * math.pi * 40.0    # natural frequency of the second-order system (rad/s)


def _second_order_step(t: torch.Tensor, zeta: float) -> torch.Tensor:
    """Unit step response of an underdamped second-order system (0 for t < 0)."""
    wd = OMEGA * math.sqrt(1 - zeta ** 2)
    tc = t.clamp_min(0.0)
    y = 1 - torch.exp(-zeta * OMEGA * tc) * (torch.cos(wd * tc)
                                             + zeta / math.sqrt(1 - zeta ** 2) * torch.sin(wd * tc))
    return torch.where(t >= 0, y, torch.zeros_like(y))


def _pulse_trace(step_fn, zetas) -> torch.Tensor:
    """Responses ``(len(zetas), T)`` to a unit pulse on over [ONSET, OFFSET) (superposition of
    an up-step at onset and a down-step at offset)."""
    t = torch.arange(ONSET + DURATION + POST, dtype=torch.float64) / FS
    on, off = ONSET / FS, OFFSET / FS
    return torch.stack([step_fn(t - on, z) - step_fn(t - off, z) for z in zetas])


ZETAS = [0.1, 0.3, 0.5, 0.7]


def test_second_order_overshoot_and_peak_latency_match_closed_forms():
    m = step_response(_pulse_trace(_second_order_step, ZETAS), ONSET, OFFSET, FS)
    for i, z in enumerate(ZETAS):
        overshoot = math.exp(-math.pi * z / math.sqrt(1 - z ** 2))
        t_peak_ms = 1000 * math.pi / (OMEGA * math.sqrt(1 - z ** 2))
        assert float(m["baseline"][i]) == 0.0
        assert float(m["sustained"][i]) == pytest.approx(1.0, abs=1e-4)
        assert float(m["overshoot"][i]) == pytest.approx(overshoot, rel=0.01)
        assert float(m["overshoot_ratio"][i]) == pytest.approx(overshoot, rel=0.01)
        assert float(m["peak"][i]) == pytest.approx(1 + overshoot, rel=0.01)
        assert abs(float(m["peak_latency_ms"][i]) - t_peak_ms) <= 1000 / FS
        # the down-step mirrors the up-step: an undershoot below the post level
        assert float(m["post_level"][i]) == pytest.approx(0.0, abs=1e-4)
        assert float(m["offset_response"][i]) == pytest.approx(-overshoot, rel=0.01)
        assert abs(float(m["offset_latency_ms"][i]) - t_peak_ms) <= 1000 / FS


def test_second_order_settling_lies_between_the_last_two_extrema():
    """Extrema of y - 1 sit at t_k = k pi / w_d with |y - 1| = exp(-z w t_k): the 5% settling
    time follows the last extremum above 5% and precedes the next."""
    m = step_response(_pulse_trace(_second_order_step, ZETAS), ONSET, OFFSET, FS)
    for i, z in enumerate(ZETAS):
        half_period_ms = 1000 * math.pi / (OMEGA * math.sqrt(1 - z ** 2))
        decay_per_ms = z * OMEGA / 1000
        k_last = math.floor(math.log(20) / (decay_per_ms * half_period_ms))
        settle = float(m["settle_ms"][i])
        assert k_last * half_period_ms < settle <= (k_last + 1) * half_period_ms + 1000 / FS


def test_scaled_step_keeps_ratio_and_scales_overshoot():
    z = 0.3
    m = step_response(2.0 + 3.0 * _pulse_trace(_second_order_step, [z])[0], ONSET, OFFSET, FS)
    overshoot = math.exp(-math.pi * z / math.sqrt(1 - z ** 2))
    assert float(m["baseline"]) == pytest.approx(2.0)
    assert float(m["sustained"]) == pytest.approx(5.0, abs=1e-4)
    assert float(m["overshoot"]) == pytest.approx(3 * overshoot, rel=0.01)
    assert float(m["overshoot_ratio"]) == pytest.approx(overshoot, rel=0.01)
    assert float(m["offset_response"]) == pytest.approx(-3 * overshoot, rel=0.01)
    assert m["overshoot"].shape == ()


def test_exponential_approach_has_no_overshoot_and_settles_at_tau_ln20():
    tau = 0.02  # s

    def first_order(t, _):
        return torch.where(t >= 0, 1 - torch.exp(-t.clamp_min(0.0) / tau), torch.zeros_like(t))

    m = step_response(_pulse_trace(first_order, [None]), ONSET, OFFSET, FS)
    assert float(m["overshoot"][0]) == pytest.approx(0.0, abs=1e-9)
    assert float(m["overshoot_ratio"][0]) == pytest.approx(0.0, abs=1e-9)
    assert abs(float(m["offset_response"][0])) < 1e-9   # monotone return: no off transient
    assert abs(float(m["settle_ms"][0]) - 1000 * tau * math.log(20)) <= 1000 / FS
    assert float(m["peak_latency_ms"][0]) > 100          # still rising long after the onset


def _piecewise(levels: list[tuple[int, float]]) -> torch.Tensor:
    """A trace made of (steps, value) segments."""
    return torch.cat([torch.full((n,), v, dtype=torch.float64) for n, v in levels])


def test_piecewise_constant_trace_gives_exact_values():
    fs = 1000.0  # 1 ms steps; T = 100, stimulus on over [20, 70)
    rebound = _piecewise([(20, 2.0), (5, 5.0), (45, 4.0), (5, 1.0), (25, 2.0)])
    late_peak = _piecewise([(20, 2.0), (5, 5.0), (15, 4.0), (2, 9.0), (28, 4.0), (5, 6.0),
                            (25, 2.0)])
    no_step = _piecewise([(100, 3.0)])
    m = step_response(torch.stack([rebound, late_peak, no_step]), 20, 70, fs)
    assert m["baseline"].tolist() == [2.0, 2.0, 3.0]
    assert m["sustained"].tolist() == [4.0, 4.0, 3.0]
    assert m["peak"].tolist() == [5.0, 9.0, 3.0]
    assert m["peak_latency_ms"].tolist() == [0.0, 20.0, 0.0]
    assert m["overshoot"].tolist() == [1.0, 5.0, 0.0]
    assert m["overshoot_ratio"].tolist() == [0.5, 2.5, 0.0]     # 0, not NaN, with no step
    assert m["settle_ms"].tolist() == [5.0, 22.0, 0.0]
    assert m["post_level"].tolist() == [2.0, 2.0, 3.0]
    # an undershoot below the post level, an OFF burst above the sustained level, nothing
    assert m["offset_response"].tolist() == [-1.0, 2.0, 0.0]
    assert m["offset_latency_ms"][:2].tolist() == [0.0, 0.0]
    assert torch.isnan(m["offset_latency_ms"][2])

    windowed = step_response(late_peak, 20, 70, fs, peak_window_ms=3.0, baseline_steps=5,
                             sustained_fraction=0.1)
    assert float(windowed["peak"]) == 5.0 and float(windowed["sustained"]) == 4.0
    late_offset = _piecewise([(20, 2.0), (50, 4.0), (10, 2.0), (3, 0.5), (17, 2.0)])
    m = step_response(late_offset, 20, 70, fs, offset_window_ms=5.0)
    assert float(m["offset_response"]) == 0.0                  # the dip is outside the window
    m = step_response(late_offset, 20, 70, fs)
    assert float(m["offset_response"]) == -1.5 and float(m["offset_latency_ms"]) == 10.0


def test_never_settling_trace_and_no_post_period_give_nan():
    fs = 1000.0
    ramp = _piecewise([(10, 0.0), (10, 1.0), (5, 2.0), (5, 3.0)])
    m = step_response(ramp, 10, 30, fs)                   # stimulus runs to the end
    assert torch.isnan(m["post_level"]) and torch.isnan(m["offset_response"])
    assert torch.isnan(m["offset_latency_ms"])
    assert float(m["sustained"]) == 2.5                   # last step 3 is outside 2.5 +- 0.125
    assert torch.isnan(m["settle_ms"])
    settled = step_response(_piecewise([(10, 0.0), (10, 1.0), (10, 2.0)]), 10, 30, fs)
    assert float(settled["settle_ms"]) == 10.0


def test_step_response_validates_arguments():
    x = torch.zeros(3, 50)
    for kwargs, match in [(dict(onset=0, offset=10), "onset"),
                          (dict(onset=10, offset=60), "offset"),
                          (dict(onset=10, offset=5), "onset"),
                          (dict(onset=10, offset=20, baseline_steps=11), "baseline_steps"),
                          (dict(onset=10, offset=20, sustained_fraction=0.0), "sustained_fraction"),
                          (dict(onset=10, offset=20, peak_window_ms=0.1), "peak_window_ms")]:
        with pytest.raises(ValueError, match=match):
            step_response(x, fs=1000.0, **kwargs)
    with pytest.raises(ValueError, match="fs"):
        step_response(x, 10, 20, 0.0)


def test_mean_trace_by_averages_trials_per_condition():
    g = torch.Generator().manual_seed(0)
    trace = torch.randn(7, 3, 11, generator=g, dtype=torch.float64)
    contrast = torch.tensor([0.5, 0.1, 0.5, 1.0, 0.1, 0.5, 1.0])
    levels, means = mean_trace_by(trace, contrast)
    assert levels.tolist() == pytest.approx([0.1, 0.5, 1.0])
    assert means.shape == (3, 3, 11)
    for k, c in enumerate(levels):
        torch.testing.assert_close(means[k], trace[contrast == c].mean(0))
    with pytest.raises(ValueError, match="labels"):
        mean_trace_by(trace, contrast[:5])
