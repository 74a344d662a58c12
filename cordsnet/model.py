"""CordsNet: a continuous-time convolutional RNN of the ventral stream (R2, R4, R6, R8).

Area ``j`` (0-based, ``D`` areas) holds rates ``r_j`` ``(B, C_j, H_j, W_j)`` and follows the
Euler discretisation (``alpha = dt / tau``, published 0.2) of
``tau dr/dt = -r + f(Conv_rec r + b + Conv_inp a)``::

    r_j <- (1 - alpha) r_j + alpha f(R_j r_j + b_j + W_j a_j)

``R_j`` the 3x3 recurrent conv ``area_conv[j]``, ``b_j`` the per-unit bias map ``conv_bias[j]``
``(C_j, H_j, W_j)``, ``W_j`` the 3x3 feed-forward conv ``area_area[j]`` (stride 2 where the side
halves). ``f`` is relu (``slope = 0``, the published model), the identity (``slope = 1``: the
linear RNN of pipeline stage 3) or a leaky relu with one shared slope (stage 4 anneals it
from 0.95 to 0). Area inputs, with ``p = avgpool(inp_conv(x))`` the input layer::

    a_0 = p
    a_1 = relu(r_0) + inp_skip(p)
    a_j = relu(r_{j-1}) + relu(r_{j-2})                       j = 2, 4, 6
    a_j = relu(r_{j-1}) + skip_area[j//2 - 1](relu(r_{j-2}))   j = 3, 5, 7

Readout: ``logits = out_fc(mean_hw(relu(r_{D-1}) + relu(r_{D-2})))``.

**Update order** (as published): areas are updated in place deepest first, so each reads
the lower areas' *previous-step* rates. No area reads a deeper one, so this equals a
synchronous update of every area from the previous state, which is what :meth:`CordsNet.step`
computes. The image is static within a phase, so the input layer and every term that
depends only on it (``p``, ``W_0 p``, ``inp_skip(p)``) are computed once per phase (the
original recomputes the input conv once per area per step).

Every conv and the linear readout is weight-normalised
(``torch.nn.utils.parametrizations.weight_norm``, keys ``<name>.parametrizations.weight.original0``
(g) and ``original1`` (v)), so the published checkpoint ``cordsnetr8.pth`` loads as-is.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

#: channels of the 8 areas; a depth-D model uses the first D.
CHANNELS = (64, 64, 128, 128, 256, 256, 512, 512)
#: stride of each area's feed-forward conv (2 where the side halves).
STRIDES = (1, 1, 2, 1, 2, 1, 2, 1)
STEM_CHANNELS = 64
DEPTHS = (2, 4, 6, 8)
#: what ``CordsNet.forward`` reads out: after the image (published), after the whole course, every step
READOUTS = ("image_end", "course_end", "all")


def area_sizes(input_size: int, depth: int = 8) -> list[int]:
    """Side in pixels of each area for a square ``input_size`` image (224 -> 56,56,28,...,7).

    The 7x7 stride-2 input conv and the 3x3 stride-2 average pool each give ``ceil(s / 2)``,
    as does every stride-2 area.
    """
    s = math.ceil(math.ceil(input_size / 2) / 2)
    sizes = []
    for j in range(depth):
        if STRIDES[j] == 2:
            s = math.ceil(s / 2)
        sizes.append(s)
    return sizes


def check_depth(depth: int) -> None:
    if depth not in DEPTHS:
        raise ValueError(f"depth must be one of {', '.join(map(str, DEPTHS))} (R2..R8), got {depth}")


def leaky(x: torch.Tensor, slope: float) -> torch.Tensor:
    """``max(x, 0) + slope * min(x, 0)``: relu at 0, identity at 1."""
    if slope == 0.0:
        return F.relu(x)
    if slope == 1.0:
        return x
    return F.leaky_relu(x, slope)


def euler_update(r: torch.Tensor, pre: torch.Tensor, alpha: float, slope: float = 0.0) -> torch.Tensor:
    """One Euler step ``(1 - alpha) r + alpha f(pre)``; ``pre = R r + b + W a`` (any shape)."""
    return (1 - alpha) * r + alpha * leaky(pre, slope)


def area_input(j: int, acts: Sequence[torch.Tensor], p: torch.Tensor, p_skip: torch.Tensor,
               skip: Callable[[int, torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """Input ``a_j`` of area ``j`` (the residual-style wiring shared by the RNN and the CNNs).

    ``acts``: lower areas' outputs (relu of the rates, or the CNN's activations);
    ``p``: input layer ``(B, 64, H_0, W_0)``; ``p_skip``: ``inp_skip(p)``;
    ``skip(i, x)``: the i-th 1x1 stride-2 skip applied to ``x``.
    """
    if j == 0:
        return p
    if j == 1:
        return acts[0] + p_skip
    if j % 2 == 0:
        return acts[j - 1] + acts[j - 2]
    return acts[j - 1] + skip(j // 2 - 1, acts[j - 2])


def conv(x: torch.Tensor, weight: torch.Tensor, module: nn.Conv2d) -> torch.Tensor:
    """``module``'s convolution with an explicit (e.g. cached effective) weight."""
    return F.conv2d(x, weight, None, module.stride, module.padding)


def build_trunk(net: nn.Module, depth: int, in_channels: int, n_classes: int, input_size: int,
                maps: Sequence[str] = (), norm: bool = False) -> None:
    """Register the layers every CordsNet variant shares, in the published key order.

    ``maps``: names of per-area ``(C_j, H_j, W_j)`` bias-map ParameterLists (zeros) placed
    between ``area_conv`` and ``area_area``. ``norm``: add the equivalent CNN's batch norms
    (``inp_norm``, ``area_norm``, ``area_nrm2``, ``skip_norm``).
    """
    check_depth(depth)
    net.depth, net.in_channels, net.n_classes, net.input_size = depth, in_channels, n_classes, input_size
    net.sizes = area_sizes(input_size, depth)
    chans = (STEM_CHANNELS,) + CHANNELS
    net.inp_conv = weight_norm(nn.Conv2d(in_channels, STEM_CHANNELS, 7, stride=2, padding=3, bias=False))
    net.inp_avgpool = nn.AvgPool2d(kernel_size=3, stride=2, padding=1)
    if norm:
        net.inp_norm = nn.BatchNorm2d(STEM_CHANNELS)
    net.inp_skip = weight_norm(nn.Conv2d(STEM_CHANNELS, STEM_CHANNELS, 3, stride=1, padding=1, bias=False))
    net.area_conv = nn.ModuleList(
        weight_norm(nn.Conv2d(chans[j + 1], chans[j + 1], 3, stride=1, padding=1, bias=False))
        for j in range(depth))
    for name in maps:
        setattr(net, name, nn.ParameterList(
            nn.Parameter(torch.zeros(chans[j + 1], s, s)) for j, s in enumerate(net.sizes)))
    net.area_area = nn.ModuleList(
        weight_norm(nn.Conv2d(chans[j], chans[j + 1], 3, stride=STRIDES[j], padding=1, bias=False))
        for j in range(depth))
    net.skip_area = nn.ModuleList(
        weight_norm(nn.Conv2d(CHANNELS[2 * i + 1], CHANNELS[2 * i + 2], 1, stride=2, padding=0, bias=False))
        for i in range(depth // 2 - 1))
    if norm:
        net.area_norm = nn.ModuleList(nn.BatchNorm2d(c) for c in CHANNELS[:depth])
        net.area_nrm2 = nn.ModuleList(nn.BatchNorm2d(c) for c in CHANNELS[:depth])
        net.skip_norm = nn.ModuleList(nn.BatchNorm2d(CHANNELS[2 * i + 2]) for i in range(depth // 2 - 1))
    net.out_fc = weight_norm(nn.Linear(CHANNELS[depth - 1], n_classes, bias=True))


class Weights(NamedTuple):
    """Effective (weight-normed) weights, computed once per phase rather than per use."""

    inp: torch.Tensor            # (64, C_in, 7, 7)
    inp_skip: torch.Tensor       # (64, 64, 3, 3)
    rec: list[torch.Tensor]      # R_j (C_j, C_j, 3, 3)
    ff: list[torch.Tensor]       # W_j (C_j, C_{j-1}, 3, 3)
    skip: list[torch.Tensor]     # (C_out, C_in, 1, 1)
    fc: torch.Tensor             # (K, C_{D-1})


class Drive(NamedTuple):
    """Terms that depend only on the (static) image of a phase."""

    p: torch.Tensor       # input layer avgpool(inp_conv(x))  (B, 64, H_0, W_0)
    feed0: torch.Tensor   # W_0 p                             (B, 64, H_0, W_0)
    p_skip: torch.Tensor  # inp_skip(p)                       (B, 64, H_0, W_0)


@dataclass
class Trajectory:
    """What :meth:`CordsNet.forward` returns (T = blank + stimulus + post-blank steps).

    ``logits``: ``(B, K)`` after the last step, or ``(B, T, K)`` after every step;
    ``rates``: area -> ``(B, T, C, H, W)`` rates after every step (requested areas only);
    ``spontaneous``: per area the state at the end of the blank ``(B, C_j, H_j, W_j)``;
    ``final``: per area the state after the last step.
    """

    logits: torch.Tensor
    rates: dict[int, torch.Tensor] = field(default_factory=dict)
    spontaneous: list[torch.Tensor] = field(default_factory=list)
    final: list[torch.Tensor] = field(default_factory=list)


class CordsNet(nn.Module):
    """The published CordsNet (state-dict keys and shapes of ``cordsnetr8.pth`` for
    ``depth=8, in_channels=3, n_classes=1000, input_size=224``).

    ``slope``: shared slope of the within-area nonlinearity (0 relu, 1 linear); the area
    inputs and the readout always use relu, as published. It is not a parameter.
    """

    def __init__(self, depth: int = 8, in_channels: int = 3, n_classes: int = 1000, input_size: int = 224,
                 alpha: float = 0.2, blank_steps: int = 100, stimulus_steps: int = 100,
                 post_blank_steps: int = 0, slope: float = 0.0):
        super().__init__()
        build_trunk(self, depth, in_channels, n_classes, input_size, maps=("conv_bias",))
        self.alpha, self.slope = alpha, slope
        self.blank_steps, self.stimulus_steps = blank_steps, stimulus_steps
        self.post_blank_steps = post_blank_steps

    @classmethod
    def from_config(cls, cfg) -> "CordsNet":
        """Build from a :class:`cordsnet.config.CordsNetConfig` (or anything with its keys)."""
        return cls(cfg.depth, cfg.in_channels, cfg.n_classes, cfg.input_size, cfg.alpha,
                   cfg.blank_steps, cfg.stimulus_steps, cfg.post_blank_steps)

    # ---- weights ---------------------------------------------------------------------
    def weights(self) -> Weights:
        """Effective weights ``g v / |v|`` of every conv and the readout (differentiable)."""
        return Weights(self.inp_conv.weight, self.inp_skip.weight, [m.weight for m in self.area_conv],
                       [m.weight for m in self.area_area], [m.weight for m in self.skip_area],
                       self.out_fc.weight)

    def recurrent_weight(self, area: int) -> torch.Tensor:
        """Effective recurrent kernel ``R_area`` ``(C, C, 3, 3)`` (stride 1, zero padding 1)."""
        return self.area_conv[area].weight

    def feedforward_weight(self, area: int) -> torch.Tensor:
        """Effective feed-forward kernel ``W_area`` ``(C_out, C_in, 3, 3)``."""
        return self.area_area[area].weight

    # ---- dynamics --------------------------------------------------------------------
    def rest_state(self, batch: int) -> list[torch.Tensor]:
        """All-zero rates ``(batch, C_j, H_j, W_j)`` per area (where the published model starts)."""
        return [torch.zeros(batch, *b.shape, device=b.device, dtype=b.dtype) for b in self.conv_bias]

    def input_drive(self, images: torch.Tensor, w: Weights | None = None) -> Drive:
        """``images (B, C_in, S, S)`` -> the phase's :class:`Drive` (input conv run once)."""
        w = w or self.weights()
        p = self.inp_avgpool(conv(images, w.inp, self.inp_conv))
        return Drive(p, conv(p, w.ff[0], self.area_area[0]), conv(p, w.inp_skip, self.inp_skip))

    def feedforward(self, j: int, acts: Sequence[torch.Tensor], drive: Drive, w: Weights) -> torch.Tensor:
        """``W_j a_j`` given the lower areas' outputs ``acts`` (relu of the rates)."""
        if j == 0:
            return drive.feed0
        a = area_input(j, acts, drive.p, drive.p_skip, lambda i, x: conv(x, w.skip[i], self.skip_area[i]))
        return conv(a, w.ff[j], self.area_area[j])

    def step(self, rates: Sequence[torch.Tensor], drive: Drive, w: Weights | None = None) -> list[torch.Tensor]:
        """One Euler step of every area from the previous state ``rates`` (deepest-first order)."""
        w = w or self.weights()
        acts = [F.relu(r) for r in rates[:-1]]
        new = []
        for j, r in enumerate(rates):
            pre = conv(r, w.rec[j], self.area_conv[j]) + self.conv_bias[j] + self.feedforward(j, acts, drive, w)
            new.append(euler_update(r, pre, self.alpha, self.slope))
        return new

    def readout(self, rates: Sequence[torch.Tensor], w: Weights | None = None) -> torch.Tensor:
        """Logits ``(B, K)`` from the average-pooled ``relu(r_{D-1}) + relu(r_{D-2})``."""
        fc = self.out_fc.weight if w is None else w.fc
        pooled = (F.relu(rates[-1]) + F.relu(rates[-2])).mean(dim=(2, 3))
        return F.linear(pooled, fc, self.out_fc.bias)

    def simulate(self, rates: Sequence[torch.Tensor], images: torch.Tensor, n_steps: int, *,
                 readout: bool = False, record: Sequence[int] = ()
                 ) -> tuple[list[torch.Tensor], list[torch.Tensor], dict[int, list[torch.Tensor]]]:
        """Run ``n_steps`` with ``images`` shown (zeros for a blank).

        Returns the final rates, the logits after each step (if ``readout``) and, per area in
        ``record``, the rates after each step.
        """
        w = self.weights()
        drive = self.input_drive(images, w)
        rates = list(rates)
        logits: list[torch.Tensor] = []
        recs: dict[int, list[torch.Tensor]] = {a: [] for a in record}
        for _ in range(n_steps):
            rates = self.step(rates, drive, w)
            if readout:
                logits.append(self.readout(rates, w))
            for a in record:
                recs[a].append(rates[a])
        return rates, logits, recs

    def forward(self, images: torch.Tensor, *, blank_steps: int | None = None, stimulus_steps: int | None = None,
                post_blank_steps: int | None = None, readout: str = "image_end", record: Sequence[int] = (),
                rates: Sequence[torch.Tensor] | None = None) -> Trajectory:
        """Simulate the time course for ``images (B, C_in, S, S)`` and read out.

        The course is blank (no gradient; ends in the spontaneous state), stimulus, then
        optional post-stimulus blank; the step counts default to the model's. ``readout``:
        ``"image_end"`` (default, the published readout: logits ``(B, K)`` after the last
        stimulus step), ``"course_end"`` (``(B, K)`` after the last step of the course, i.e.
        after the post-stimulus blank) or ``"all"`` (``(B, T, K)``, one per step of the whole
        course). ``record``: areas whose rates are returned for every step.
        ``rates``: initial state (default: rest).
        """
        if readout not in READOUTS:
            raise ValueError(f"readout must be one of {', '.join(READOUTS)}, got {readout!r}")
        bad = [a for a in record if not 0 <= a < self.depth]
        if bad:
            raise ValueError(f"record: areas must be in 0..{self.depth - 1}, got {bad}")
        nb = self.blank_steps if blank_steps is None else blank_steps
        ns = self.stimulus_steps if stimulus_steps is None else stimulus_steps
        npost = self.post_blank_steps if post_blank_steps is None else post_blank_steps
        state = list(rates) if rates is not None else self.rest_state(images.shape[0])
        blank = torch.zeros_like(images)
        every = readout == "all"
        logits: list[torch.Tensor] = []
        recs: dict[int, list[torch.Tensor]] = {a: [] for a in record}

        def run(imgs, n):
            nonlocal state
            state, lg, rc = self.simulate(state, imgs, n, readout=every, record=record)
            logits.extend(lg)
            for a in record:
                recs[a].extend(rc[a])

        with torch.no_grad():
            run(blank, nb)
        spontaneous = state
        run(images, ns)
        image_end = None if every else self.readout(state)
        run(blank, npost)
        out = torch.stack(logits, dim=1) if every else image_end if readout == "image_end" else self.readout(state)
        return Trajectory(out, {a: torch.stack(v, dim=1) for a, v in recs.items()}, spontaneous, state)
