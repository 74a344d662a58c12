"""The feed-forward CNN equivalent to CordsNet (pipeline stage 1), batch-norm folding (1b)
and the mapping of torchvision ResNet-18 weights into the depth-8 CNN.

:class:`CordsCNN` (stage 1, keys as the original's ``step1cordsnet``), areas wired as in
:func:`cordsnet.model.area_input` with the skip ``BN_s(S x)``::

    p   = avgpool(BN_inp(inp_conv(x)))                      (no relu on the input layer)
    x_j = relu(BN2_j(R_j BN1_j(W_j a_j)))                   (no relu between W_j and R_j)
    logits = out_fc(mean_hw(x_{D-1} + x_{D-2}))

:class:`FoldedCNN` (stage 1b, keys as ``step1cordsnetfolded``): the same with the batch
norms folded into the weight-normed convs, biases as per-unit maps ``(C, H, W)``::

    p   = avgpool(inp_conv(x))                              (bias-free)
    x_j = relu(R_j (W_j a_j + b1_j) + b2_j)                 b1 = area_bias[j], b2 = conv_bias[j]

Each bias that the BN version adds before a zero-padded conv or the average pool (whose
padding counts as zeros) is carried through that layer, so the maps differ at the borders.
Its pre-activation ``R_j (W_j a_j + b1_j) + b2_j`` is what the linear RNN's fixed point
``(I - R)^-1 (W a + c)`` is fitted to in stage 2.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from cordsnet.model import area_input, build_trunk

WN = ".parametrizations.weight.original"


class CordsCNN(nn.Module):
    """Stage-1 CNN with batch norm; logits ``(B, K)`` and optionally area outputs ``(B, C_j, H_j, W_j)``."""

    def __init__(self, depth: int = 8, in_channels: int = 3, n_classes: int = 1000, input_size: int = 224):
        super().__init__()
        build_trunk(self, depth, in_channels, n_classes, input_size, norm=True)

    def forward(self, images: torch.Tensor, return_areas: bool = False):
        p = self.inp_avgpool(self.inp_norm(self.inp_conv(images)))
        p_skip = self.inp_skip(p)
        acts: list[torch.Tensor] = []
        for j in range(self.depth):
            a = area_input(j, acts, p, p_skip, lambda i, x: self.skip_norm[i](self.skip_area[i](x)))
            acts.append(F.relu(self.area_nrm2[j](self.area_conv[j](self.area_norm[j](self.area_area[j](a))))))
        logits = self.out_fc((acts[-1] + acts[-2]).mean(dim=(2, 3)))
        return (logits, acts) if return_areas else logits


class FoldedCNN(nn.Module):
    """Stage-1b CNN without batch norm: bias maps ``area_bias`` (b1) and ``conv_bias`` (b2)."""

    def __init__(self, depth: int = 8, in_channels: int = 3, n_classes: int = 1000, input_size: int = 224):
        super().__init__()
        build_trunk(self, depth, in_channels, n_classes, input_size, maps=("area_bias", "conv_bias"))

    def input_layer(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``p = avgpool(inp_conv(x))`` and ``inp_skip(p)``, each ``(B, 64, H_0, W_0)``."""
        p = self.inp_avgpool(self.inp_conv(images))
        return p, self.inp_skip(p)

    def feedforward(self, j: int, acts: Sequence[torch.Tensor], p: torch.Tensor, p_skip: torch.Tensor
                    ) -> torch.Tensor:
        """``W_j a_j`` (no bias) from the lower areas' outputs."""
        return self.area_area[j](area_input(j, acts, p, p_skip, lambda i, x: self.skip_area[i](x)))

    def pre_activation(self, j: int, ff: torch.Tensor) -> torch.Tensor:
        """``R_j (W_j a_j + b1_j) + b2_j`` given ``ff = W_j a_j``."""
        return self.area_conv[j](ff + self.area_bias[j]) + self.conv_bias[j]

    def forward(self, images: torch.Tensor, return_areas: bool = False):
        p, p_skip = self.input_layer(images)
        acts: list[torch.Tensor] = []
        for j in range(self.depth):
            acts.append(F.relu(self.pre_activation(j, self.feedforward(j, acts, p, p_skip))))
        logits = self.out_fc((acts[-1] + acts[-2]).mean(dim=(2, 3)))
        return (logits, acts) if return_areas else logits


def _unit(v: torch.Tensor) -> torch.Tensor:
    """``v`` scaled to unit norm per output channel (weight norm's ``dim=0``)."""
    return v / v.flatten(1).norm(dim=1).view(-1, *([1] * (v.dim() - 1)))


def _bn_affine(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Eval-mode batch norm as ``scale * x + shift`` per channel."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return scale, bn.bias - bn.running_mean * scale


def _wn(sd: dict, name: str, g: torch.Tensor, v: torch.Tensor) -> None:
    sd[name + WN + "0"], sd[name + WN + "1"] = g, _unit(v)


def _fold(sd: dict, name: str, conv: nn.Module, bn: nn.BatchNorm2d | None) -> torch.Tensor | None:
    """Write ``name``'s folded (g, v) into ``sd``; return the BN shift (per channel) or None."""
    g, v = conv.parametrizations.weight.original0, conv.parametrizations.weight.original1
    if bn is None:
        _wn(sd, name, g, v)
        return None
    scale, shift = _bn_affine(bn)
    _wn(sd, name, g * scale.view(-1, *([1] * (g.dim() - 1))), v)
    return shift


@torch.no_grad()
def fold_batchnorm(cnn: CordsCNN) -> FoldedCNN:
    """Fold ``cnn``'s batch norms (their running statistics: eval mode) into a :class:`FoldedCNN`
    with the same logits. Weight norm is kept: g absorbs the BN scale, v is set to unit norm.
    """
    ref = next(cnn.parameters())
    out = FoldedCNN(cnn.depth, cnn.in_channels, cnn.n_classes, cnn.input_size).to(ref.device, ref.dtype)
    sd: dict[str, torch.Tensor] = {}

    # input layer: the BN shift, broadcast at the conv's output size, through the average pool
    shift = _fold(sd, "inp_conv", cnn.inp_conv, cnn.inp_norm)
    side = (cnn.input_size + 1) // 2
    p_bias = cnn.inp_avgpool(shift.view(1, -1, 1, 1).expand(1, -1, side, side))   # (1, 64, H_0, W_0)
    _fold(sd, "inp_skip", cnn.inp_skip, None)
    skip_w = sd["inp_skip" + WN + "0"] * sd["inp_skip" + WN + "1"]
    for i in range(cnn.depth // 2 - 1):
        _fold(sd, f"skip_area.{i}", cnn.skip_area[i], cnn.skip_norm[i])

    for j in range(cnn.depth):
        t1 = _fold(sd, f"area_area.{j}", cnn.area_area[j], cnn.area_norm[j])
        t2 = _fold(sd, f"area_conv.{j}", cnn.area_conv[j], cnn.area_nrm2[j])
        size = cnn.sizes[j]
        # the constant part of a_j in the BN model, which the bias-free FoldedCNN lacks
        if j == 0:
            a_bias = p_bias
        elif j == 1:
            a_bias = F.conv2d(p_bias, skip_w, padding=1)
        elif j % 2 == 1:
            i = j // 2 - 1
            s_shift = _bn_affine(cnn.skip_norm[i])[1]
            a_bias = s_shift.view(1, -1, 1, 1).expand(1, -1, size, size)
        else:
            a_bias = None
        b1 = t1.view(-1, 1, 1).expand(-1, size, size).clone()
        if a_bias is not None:
            w = sd[f"area_area.{j}" + WN + "0"] * sd[f"area_area.{j}" + WN + "1"]
            m = cnn.area_area[j]
            b1 += F.conv2d(a_bias, w, None, m.stride, m.padding)[0]
        sd[f"area_bias.{j}"] = b1
        sd[f"conv_bias.{j}"] = t2.view(-1, 1, 1).expand(-1, size, size).clone()

    _fold(sd, "out_fc", cnn.out_fc, None)
    sd["out_fc.bias"] = cnn.out_fc.bias.detach().clone()
    out.load_state_dict(sd)
    return out.eval()


# ---- ResNet-18 -> depth-8 CordsCNN -----------------------------------------------------
def _resnet_table() -> list[tuple[str, str, str]]:
    """(ResNet-18 prefix, CordsCNN prefix, kind) with kind in conv, bn, fc."""
    rows = [("conv1", "inp_conv", "conv"), ("bn1", "inp_norm", "bn")]
    for b in range(8):
        blk = f"layer{b // 2 + 1}.{b % 2}"
        rows += [(f"{blk}.conv1", f"area_area.{b}", "conv"), (f"{blk}.bn1", f"area_norm.{b}", "bn"),
                 (f"{blk}.conv2", f"area_conv.{b}", "conv"), (f"{blk}.bn2", f"area_nrm2.{b}", "bn")]
    for i in range(3):
        rows += [(f"layer{i + 2}.0.downsample.0", f"skip_area.{i}", "conv"),
                 (f"layer{i + 2}.0.downsample.1", f"skip_norm.{i}", "bn")]
    rows.append(("fc", "out_fc", "fc"))
    return rows


def resnet18_to_cnn(resnet: Mapping[str, torch.Tensor], *, in_channels: int = 3,
                    n_classes: int = 1000) -> dict[str, torch.Tensor]:
    """Map a torchvision ResNet-18 state dict block by block into a depth-8 :class:`CordsCNN`'s.

    BasicBlock ``b`` (``layer{b//2+1}.{b%2}``) gives area ``b``: conv1/bn1 -> ``area_area``/
    ``area_norm``, conv2/bn2 -> ``area_conv``/``area_nrm2``; the downsample of ``layer2..4``
    gives ``skip_area``/``skip_norm``; conv1/bn1 the input layer; fc the readout. A weight w
    becomes weight norm's ``g = |w|`` (per output channel) and ``v = w``. Not mapped (load
    with ``strict=False``): ``inp_skip`` (no ResNet counterpart), ``inp_conv`` when
    ``in_channels != 3`` and ``out_fc`` when ``n_classes != 1000``.
    """
    out: dict[str, torch.Tensor] = {}
    for src, dst, kind in _resnet_table():
        if (dst == "inp_conv" and in_channels != 3) or (dst == "out_fc" and n_classes != 1000):
            continue
        if kind == "bn":
            for k in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
                if f"{src}.{k}" in resnet:
                    out[f"{dst}.{k}"] = resnet[f"{src}.{k}"].clone()
            continue
        w = resnet[f"{src}.weight"]
        out[dst + WN + "0"] = w.flatten(1).norm(dim=1).view(-1, *([1] * (w.dim() - 1))).clone()
        out[dst + WN + "1"] = w.clone()
        if kind == "fc":
            out[f"{dst}.bias"] = resnet[f"{src}.bias"].clone()
    return out
