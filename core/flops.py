"""Floating-point operations of convolutions and dense layers, counted from their shapes.

One multiply-add is 2 FLOPs. For a convolution of weight ``(C_out, C_in / g, k_h, k_w)``:

* ``conv2d``, output ``(N, C_out, H_out, W_out)``: ``2 N C_out H_out W_out (C_in / g) k_h k_w``;
* ``conv_transpose2d``, input ``(N, C_in, H_in, W_in)``, weight ``(C_in, C_out / g, k_h, k_w)``:
  every input element is spread over ``(C_out / g) k_h k_w`` outputs:
  ``2 N C_in H_in W_in (C_out / g) k_h k_w``;
* ``linear``, input ``(..., F_in)``, weight ``(F_out, F_in)``: ``2 (prod ...) F_in F_out``.

The gradient with respect to the *input* of any of them costs as much again (the transposed
operation), and so does the gradient with respect to the weight. Elementwise work (biases,
activations, the sampler's update) is not counted: these are the operations that run on
matrix units and set a device's peak.

:class:`ConvFlopCounter` records every such call made inside it (``torch.nn.functional`` or
``nn`` modules) with its forward FLOPs and whether its input requires a gradient, so that a
state-gradient evaluation (forward plus the input-gradient pass) counts as
``forward + sum of forward FLOPs of the calls whose input requires grad``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode


def conv2d_flops(out_shape: Sequence[int], weight_shape: Sequence[int]) -> int:
    """``2 N C_out H_out W_out (C_in / g) k_h k_w`` (``weight_shape = (C_out, C_in / g, k_h, k_w)``)."""
    n, c_out, h, w = out_shape
    return 2 * n * c_out * h * w * math.prod(weight_shape[1:])


def conv_transpose2d_flops(in_shape: Sequence[int], weight_shape: Sequence[int]) -> int:
    """``2 N C_in H_in W_in (C_out / g) k_h k_w`` (``weight_shape = (C_in, C_out / g, k_h, k_w)``)."""
    return 2 * math.prod(in_shape) * math.prod(weight_shape[1:])


def linear_flops(in_shape: Sequence[int], weight_shape: Sequence[int]) -> int:
    """``2 (prod leading dims) F_in F_out`` (``weight_shape = (F_out, F_in)``)."""
    return 2 * math.prod(in_shape[:-1]) * weight_shape[0] * weight_shape[1]


@dataclass
class ConvFlopCounter(TorchFunctionMode):
    """Count the FLOPs of conv2d / conv_transpose2d / linear calls made inside ``with``.

    ``calls``: ``(name, forward FLOPs, input requires grad)`` per call, in order.
    """

    calls: list = field(default_factory=list)

    def __post_init__(self):
        super().__init__()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if func in (F.conv2d, torch.conv2d):
            self.calls.append(("conv2d", conv2d_flops(out.shape, args[1].shape), bool(args[0].requires_grad)))
        elif func in (F.conv_transpose2d, torch.conv_transpose2d):
            self.calls.append(("conv_transpose2d", conv_transpose2d_flops(args[0].shape, args[1].shape),
                               bool(args[0].requires_grad)))
        elif func is F.linear:
            self.calls.append(("linear", linear_flops(args[0].shape, args[1].shape), bool(args[0].requires_grad)))
        return out

    @property
    def forward(self) -> int:
        """FLOPs of the recorded forward calls."""
        return sum(c[1] for c in self.calls)

    @property
    def input_gradient(self) -> int:
        """FLOPs of the gradients with respect to the inputs that require one."""
        return sum(c[1] for c in self.calls if c[2])
