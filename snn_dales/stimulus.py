"""Interaural-phase-difference (IPD) stimuli: Bernoulli spike trains of auditory-nerve fibres.

Each ear has ``n_per_ear`` fibres listening to the same pure tone of frequency ``f``; fibre
``j`` of an ear carries a fixed phase delay ``delta_j = linspace(0, pi/2, n_per_ear)[j]`` and
the right ear is shifted further by the IPD. With ``t_k = k * dt`` and a phase offset ``o``
(in cycles), the phase of a fibre is::

    phi_k          = 2 pi (f t_k + o)
    theta_left_jk  = phi_k + delta_j
    theta_right_jk = phi_k + delta_j + ipd

and in every time bin it spikes independently with probability::

    p = rate_max * dt * ((1 + sin theta) / 2) ** envelope_power

Averaged over phases the rate is ``rate_max * E[((1 + sin)/2)^2] = 3/8 rate_max`` (225 Hz at
600 Hz). IPDs are uniform in (-pi/2, pi/2) and discretised into ``n_classes`` equal bins
(15 degrees each for 12 classes).

Phase offsets: the source draws ONE random offset per generated data set (``per_dataset``),
so a whole test set shares a single tone phase; accuracy then depends on that draw and
swings by several points between test sets. ``per_sample`` draws an independent offset for
every sample, which averages over tone phase within each set (the default here).

Spikes are returned as ``bool`` tensors, ``(batch, time, inputs)`` or time-major
``(time, batch, inputs)``; inputs ``[0, n_per_ear)`` are the left ear, the rest the right.
Everything is generated on the device of the generator, in float32.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class IPDTask:
    """Constants of the sound-localisation task (defaults: the source's values)."""

    n_per_ear: int = 100
    duration_steps: int = 100
    dt: float = 1e-3          # seconds
    rate_max: float = 600.0   # Hz
    tone_hz: float = 20.0
    envelope_power: float = 2.0
    n_classes: int = 12

    @property
    def n_inputs(self) -> int:
        return 2 * self.n_per_ear

    @property
    def mean_rate(self) -> float:
        """Phase-averaged firing rate in Hz (closed form for integer ``envelope_power``)."""
        # E[((1 + sin x)/2)^n] over a uniform phase, by quadrature on a fine grid.
        x = torch.linspace(0, 2 * math.pi, 100_001, dtype=torch.float64)[:-1]
        return float(self.rate_max * ((1 + torch.sin(x)) / 2).pow(self.envelope_power).mean())


def random_ipds(n: int, generator: torch.Generator) -> torch.Tensor:
    """IPDs uniform in (-pi/2, pi/2), float32 ``(n,)`` on the generator's device."""
    u = torch.rand(n, generator=generator, device=generator.device)
    return u * math.pi - math.pi / 2


def random_phase_offsets(n: int, mode: str, generator: torch.Generator) -> torch.Tensor:
    """Tone phase offsets in cycles, ``(n,)``: one shared draw (``per_dataset``) or one each."""
    if mode == "per_dataset":
        return torch.rand(1, generator=generator, device=generator.device).expand(n).clone()
    if mode == "per_sample":
        return torch.rand(n, generator=generator, device=generator.device)
    raise ValueError(f"phase offset mode must be per_dataset or per_sample, got {mode!r}")


def spike_probability(ipd: torch.Tensor, offset: torch.Tensor, task: IPDTask,
                      time_major: bool = False) -> torch.Tensor:
    """Per-bin spike probability ``(batch, time, inputs)`` (or ``(time, batch, inputs)``).

    ``ipd``: ``(batch,)`` radians; ``offset``: ``(batch,)`` phase offsets in cycles.
    """
    dev = ipd.device
    t = torch.arange(task.duration_steps, device=dev, dtype=torch.float32) * task.dt
    delays = torch.linspace(0, math.pi / 2, task.n_per_ear, device=dev, dtype=torch.float32)
    phi = 2 * math.pi * (task.tone_hz * t[None, :] + offset[:, None].float())   # (batch, time)
    shift = torch.cat([delays[None, :].expand(ipd.shape[0], -1),
                       delays[None, :] + ipd[:, None].float()], dim=1)          # (batch, inputs)
    if time_major:
        theta = phi.T[:, :, None] + shift[None, :, :]
    else:
        theta = phi[:, :, None] + shift[:, None, :]
    return task.rate_max * task.dt * ((1 + torch.sin(theta)) / 2).pow(task.envelope_power)


def ipd_spikes(ipd: torch.Tensor, offset: torch.Tensor, task: IPDTask, generator: torch.Generator,
               time_major: bool = False) -> torch.Tensor:
    """Bernoulli spike trains for the given IPDs: bool ``(batch, time, inputs)`` or time-major."""
    p = spike_probability(ipd, offset, task, time_major)
    return torch.rand(p.shape, generator=generator, device=p.device) < p


def make_dataset(n: int, task: IPDTask, phase_offset: str, generator: torch.Generator,
                 time_major: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """A data set of ``n`` random IPDs and their spikes: ``(ipd (n,), spikes bool)``."""
    ipd = random_ipds(n, generator)
    offset = random_phase_offsets(n, phase_offset, generator)
    return ipd, ipd_spikes(ipd, offset, task, generator, time_major)


def discretise(ipd: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Class index of each IPD: ``floor((ipd + pi/2) n_classes / pi)``, clipped to the range."""
    idx = torch.floor((ipd + math.pi / 2) * n_classes / math.pi).long()
    return idx.clamp_(0, n_classes - 1)


def continuise(index: torch.Tensor, n_classes: int) -> torch.Tensor:
    """IPD (radians) at the centre of each class bin."""
    return (index.float() + 0.5) / n_classes * math.pi - math.pi / 2
