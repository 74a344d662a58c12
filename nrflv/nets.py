"""The quadratic nets f_i of the NRFLV energy and the feed-forward initialiser ``FFInit``.

Quadratic net of layer ``i`` (shape ``(C, H, W)``), reading ``x_j = rho(s_j)`` for
``j in inputs(i)`` (``architecture.Architecture``), returns ``f_i`` of shape ``(B, C, H, W)``::

    conv path  h_j = swish(nearest_{H x W}(base_j(x_j)))          every conv-kind input j
               c   = top(mix(concat_j h_j))                        mix: 1x1 conv (n_conv*base -> base)
                                                                   top: k x k conv (base -> C), pad k//2
    fc path    z   = fc_out(swish(fc_in(concat_j flatten(x_j))))   every fc input j
                                                                   fc_in: -> fc_hidden, fc_out: -> C*H*W
    f_i        = c + z.view(B, C, H, W)                            (either path may be absent)

``base_j`` is a :class:`BaseConv` (``Conv2d``, ``ConvTranspose2d`` or half of each, stride 1,
bias) and ``nearest`` the nearest-neighbour resampling to layer ``i``'s side. With
``weight_norm`` the base convs and ``fc_in`` are weight-normalised (``w = g v / ||v||`` over
``dim=0``, as the original's ``torch.nn.utils.weight_norm``; for a ``ConvTranspose2d`` dim 0 is
its *input* channel, so ``g`` has ``C_in`` entries); ``mix``, ``top`` and ``fc_out`` never are.
Every conv and linear has a bias. No activation follows ``mix`` or ``top``; there is no final
activation.

Where a plain conv is followed by an integer down-sampling (e.g. 32x32 -> 8x8) the conv runs
with stride ``r`` instead: nearest-neighbour down-sampling by ``r`` keeps the outputs at ``r*i``,
which is exactly a stride-``r`` conv (tested), at ``1/r^2`` of the cost.

``FFInit`` (the original's ``ff_init`` InitializerNetwork) predicts the latent states from the
image: a dense block of ``L + 2`` conv blocks (``L`` latent layers; growth ``g = init_channels``;
7x7 conv+convT, padding 3), then one side branch per latent layer ``(C, H, W)``::

    block(c_dense -> max(g, 2C), 7x7; plain conv, padding 0 if the layer is smaller than the
          image, else conv+convT, padding 3) -> nearest_{H x W}
    -> block(max(g, 2C) -> max(g, C), 7x7 conv+convT, padding 3) -> 1x1 conv (-> C)
    -> hardtanh(x) + 0.01 x

with ``block(a -> b) = swish(base(conv1x1_{a -> b}(x)))`` and every conv biased; the base
convs are weight-normalised when ``weight_norm``.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm as _weight_norm

from nrflv.architecture import Architecture, ArchitectureError

swish = F.silu  # x * sigmoid(x)


def _wn(module: nn.Module, on: bool) -> nn.Module:
    return _weight_norm(module, dim=0) if on else module


def nearest(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Nearest-neighbour resampling of ``(B, C, h, w)`` to ``(B, C, *size)`` (a no-op if equal)."""
    return x if tuple(x.shape[-2:]) == tuple(size) else F.interpolate(x, size=size, mode="nearest")


class BaseConv(nn.Module):
    """One connection's base layer ``(B, c_in, h, w) -> (B, c_out, h', w')`` (the original's CCTLayer).

    ``kind``: ``conv``, ``convT`` or ``conv+convT`` (``ceil(c_out/2)`` channels from the conv,
    then ``floor(c_out/2)`` from the transposed conv, concatenated). ``stride`` applies to
    ``conv`` only.
    """

    def __init__(self, kind: str, c_in: int, c_out: int, kernel: int, padding: int,
                 weight_norm: bool = True, stride: int | tuple[int, int] = 1):
        super().__init__()
        if kind not in ("conv", "convT", "conv+convT"):
            raise ValueError(f"BaseConv kind must be conv, convT or conv+convT, got {kind!r}")
        stride = (stride, stride) if isinstance(stride, int) else tuple(stride)
        if stride != (1, 1) and kind != "conv":
            raise ValueError("BaseConv: only a plain conv can be strided")
        n_t = {"conv": 0, "convT": c_out, "conv+convT": c_out // 2}[kind]
        self.conv = _wn(nn.Conv2d(c_in, c_out - n_t, kernel, stride=stride, padding=padding), weight_norm) \
            if n_t < c_out else None
        self.convT = _wn(nn.ConvTranspose2d(c_in, n_t, kernel, padding=padding), weight_norm) \
            if n_t else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.convT is None:
            return self.conv(x)
        if self.conv is None:
            return self.convT(x)
        return torch.cat([self.conv(x), self.convT(x)], dim=1)


def _stride_for(kind: str, src: tuple[int, int], k: int, p: int, dst: tuple[int, int]) -> tuple[int, int]:
    """Stride that makes a conv + nearest down-sampling to ``dst`` one strided conv (else 1, 1)."""
    if kind != "conv":
        return 1, 1
    out = [s + 2 * p - k + 1 for s in src]
    if all(o % d == 0 for o, d in zip(out, dst)):
        return tuple(o // d for o, d in zip(out, dst))
    return 1, 1


class QuadraticNet(nn.Module):
    """``f_i``: ``forward(inputs)`` with ``inputs[n] = rho(s_j)`` of shape ``(B, C_j, H_j, W_j)``
    for the ``n``-th ``j`` in ``arch.inputs[i]``; returns ``(B, C_i, H_i, W_i)``."""

    def __init__(self, arch: Architecture, i: int, weight_norm: bool = True):
        super().__init__()
        self.layer = i
        self.shape = arch.layers[i]
        c, h, w = self.shape
        base = arch.base_channels
        self.conv_pos = [n for n, kd in enumerate(arch.kinds[i]) if kd != "fc"]
        self.fc_pos = [n for n, kd in enumerate(arch.kinds[i]) if kd == "fc"]
        self.bases = nn.ModuleList()
        for j, kd, k, p in arch.connections(i, ("conv", "convT", "conv+convT")):
            stride = _stride_for(kd, arch.layers[j][1:], k, p, (h, w))
            self.bases.append(BaseConv(kd, arch.layers[j][0], base, k, p, weight_norm, stride))
        if self.bases:
            kt = arch.top_kernels[i]
            self.mix = nn.Conv2d(len(self.bases) * base, base, 1)
            self.top = nn.Conv2d(base, c, kt, padding=kt // 2)
        if self.fc_pos:
            n_in = sum(arch.units(arch.inputs[i][n]) for n in self.fc_pos)
            self.fc_in = _wn(nn.Linear(n_in, arch.fc_hidden), weight_norm)
            self.fc_out = nn.Linear(arch.fc_hidden, c * h * w)

    def forward(self, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        size = self.shape[1:]
        out = None
        if self.bases:
            hs = [swish(nearest(base(inputs[n]), size)) for base, n in zip(self.bases, self.conv_pos)]
            out = self.top(self.mix(torch.cat(hs, dim=1)))
        if self.fc_pos:
            x = torch.cat([inputs[n].flatten(1) for n in self.fc_pos], dim=1)
            z = self.fc_out(swish(self.fc_in(x))).view(x.shape[0], *self.shape)
            out = z if out is None else out + z
        return out


class ConvBlock(nn.Module):
    """``swish(base(conv1x1(x)))``, ``(B, c_in, h, w) -> (B, c_out, h', w')`` (the original's CCTBlock)."""

    def __init__(self, c_in: int, c_out: int, kind: str, kernel: int, padding: int, weight_norm: bool = True):
        super().__init__()
        self.mix = nn.Conv2d(c_in, c_out, 1)
        self.base = BaseConv(kind, c_out, c_out, kernel, padding, weight_norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return swish(self.base(self.mix(x)))


class DenseBlock(nn.Module):
    """``n`` conv blocks, block ``k`` reading ``concat(x, y_0..y_{k-1})`` and adding ``growth``
    channels; returns the concatenation ``(B, c_in + n * growth, h, w)``."""

    def __init__(self, c_in: int, growth: int, n: int, kernel: int = 7, weight_norm: bool = True):
        super().__init__()
        self.blocks = nn.ModuleList(
            ConvBlock(c_in + k * growth, growth, "conv+convT", kernel, kernel // 2, weight_norm)
            for k in range(n))
        self.c_out = c_in + n * growth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [x]
        for block in self.blocks:
            outs.append(block(torch.cat(outs, dim=1)))
        return torch.cat(outs, dim=1)


class FFInit(nn.Module):
    """Feed-forward initialiser: ``forward(image (B, C_0, H_0, W_0))`` -> latent states
    ``[(B, C_i, H_i, W_i) for i = 1..L]``, each ``hardtanh(x) + 0.01 x`` (see the module docstring)."""

    KERNEL = 7

    def __init__(self, arch: Architecture, weight_norm: bool = True):
        super().__init__()
        k = self.KERNEL
        c0, h0, w0 = arch.layers[0]
        g = arch.init_channels
        self.dense = DenseBlock(c0, g, (arch.n_layers - 1) + 2, k, weight_norm)
        self.sides = nn.ModuleList()
        for c, h, w in arch.layers[1:]:
            smaller = h < h0 or w < w0
            if smaller and min(h0, w0) < k:
                raise ArchitectureError(f"FFInit: a {h0}x{w0} image is too small for the {k}x{k} unpadded "
                                        f"conv that steps down to a {h}x{w} layer (needs >= {k}x{k})")
            wide, narrow = max(g, 2 * c), max(g, c)
            self.sides.append(nn.ModuleDict({
                "down": ConvBlock(self.dense.c_out, wide, "conv" if smaller else "conv+convT", k,
                                  0 if smaller else k // 2, weight_norm),
                "up": ConvBlock(wide, narrow, "conv+convT", k, k // 2, weight_norm),
                "out": nn.Conv2d(narrow, c, 1)}))
        self.sizes = [shp[1:] for shp in arch.layers[1:]]

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        x = self.dense(image)
        outs = []
        for side, size in zip(self.sides, self.sizes):
            y = side["out"](side["up"](nearest(side["down"](x), size)))
            outs.append(F.hardtanh(y) + 0.01 * y)
        return outs
