"""IPD stimuli: firing statistics, phase structure, offsets, class bins."""
import math

import pytest
import torch

from snn_dales.stimulus import (IPDTask, continuise, discretise, ipd_spikes, make_dataset,
                                random_phase_offsets, spike_probability)


def test_mean_rate_matches_closed_form():
    """Averaged over phases, 600 Hz ((1+sin)/2)^2 = 3/8 * 600 = 225 Hz."""
    task = IPDTask()
    assert task.mean_rate == pytest.approx(225.0, rel=1e-6)
    g = torch.Generator().manual_seed(0)
    ipd, x = make_dataset(512, task, "per_sample", g)
    assert x.dtype == torch.bool and x.shape == (512, 100, 200)
    rate = x.float().mean().item() / task.dt
    # 10.24 M Bernoulli draws: the sampling sd is ~0.03 Hz; the rest is phase sampling
    assert rate == pytest.approx(225.0, rel=0.01)


def test_rate_follows_phase_envelope():
    """Empirical spike probability per bin equals the envelope (binomial tolerance)."""
    task = IPDTask(n_per_ear=4, duration_steps=50)
    n = 4000
    ipd = torch.full((n,), 0.3)
    off = torch.full((n,), 0.25)
    g = torch.Generator().manual_seed(1)
    x = ipd_spikes(ipd, off, task, g).float().mean(0)            # (T, I)
    p = spike_probability(ipd[:1], off[:1], task)[0]
    assert (x - p).abs().max() < 5 * math.sqrt(0.25 / n)
    # the right ear leads/lags by exactly the IPD: fibre 0 right has phase delay ipd
    t = torch.arange(50) * 1e-3
    theta = 2 * math.pi * (20 * t + 0.25) + 0.3
    expected = 0.6 * ((1 + torch.sin(theta)) / 2) ** 2
    assert torch.allclose(p[:, 4], expected, atol=1e-5)


def test_time_major_layout_is_a_transpose():
    task = IPDTask(n_per_ear=5, duration_steps=7)
    ipd = torch.tensor([0.1, -0.4])
    off = torch.tensor([0.3, 0.7])
    a = spike_probability(ipd, off, task)
    b = spike_probability(ipd, off, task, time_major=True)
    assert torch.allclose(a.transpose(0, 1), b)


def test_phase_offset_modes():
    g = torch.Generator().manual_seed(0)
    shared = random_phase_offsets(100, "per_dataset", g)
    assert (shared == shared[0]).all()
    each = random_phase_offsets(100, "per_sample", g)
    assert each.unique().numel() == 100 and 0 <= each.min() and each.max() < 1
    with pytest.raises(ValueError):
        random_phase_offsets(3, "per_batch", g)


def test_discretise_continuise_bins_of_15_degrees():
    deg = torch.tensor([-89.9, -75.1, -74.9, -0.1, 0.1, 89.9])
    cls = discretise(deg * math.pi / 180, 12)
    assert cls.tolist() == [0, 0, 1, 5, 6, 11]
    centres = continuise(torch.arange(12), 12) * 180 / math.pi
    assert torch.allclose(centres, torch.arange(-82.5, 90, 15.0), atol=1e-4)
