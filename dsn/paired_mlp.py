"""Two MLPs of the same shape evaluated together: the scale and shift networks of a coupling.

The networks keep separate weights; stacking them as (2, in, out) tensors lets one batched
matrix product per layer evaluate both, halving the number of small kernels a coupling
launches (on the CPU a DSN step is dominated by per-operation overhead; measured in
``bench/bench_dsn.py``). Per layer and network k in {0, 1}::

    h_k <- act(h_k W_k + b_k)        (no activation after the last layer)
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class PairedMLP(nn.Module):
    """Two independent MLPs ``in_features -> hidden... -> out_features`` run in one pass.

    ``forward(x)`` with x (..., in) returns (2, ..., out): network 0 then network 1.
    Weights start like :class:`torch.nn.Linear` (uniform in +-1/sqrt(fan_in)); with
    ``zero_last`` the last layer starts at zero, so both outputs are 0 at initialisation.
    """

    def __init__(self, in_features: int, out_features: int, hidden: tuple[int, ...], activation=nn.Tanh,
                 zero_last: bool = True):
        super().__init__()
        sizes = [in_features, *hidden, out_features]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            bound = 1.0 / math.sqrt(a)
            last = i == len(sizes) - 2
            w = torch.zeros(2, a, b) if (last and zero_last) else torch.empty(2, a, b).uniform_(-bound, bound)
            bias = torch.zeros(2, 1, b) if (last and zero_last) else torch.empty(2, 1, b).uniform_(-bound, bound)
            self.weights.append(nn.Parameter(w))
            self.biases.append(nn.Parameter(bias))
        self.act = activation()

    def forward(self, x: Tensor) -> Tensor:
        lead = x.shape[:-1]
        h = x.reshape(1, -1, x.shape[-1]).expand(2, -1, -1)
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            h = torch.baddbmm(b, h, w)
            if i < len(self.weights) - 1:
                h = self.act(h)
        return h.reshape(2, *lead, h.shape[-1])
