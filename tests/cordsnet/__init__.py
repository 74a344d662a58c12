"""Tests of the cordsnet family; ``dense_matrix`` is a small explicit-matrix helper they share."""
from __future__ import annotations

from typing import Callable

import torch


def dense_matrix(op: Callable[[torch.Tensor], torch.Tensor], shape: tuple[int, ...]) -> torch.Tensor:
    """The matrix ``M`` ``(n_out, n_in)`` of a linear map ``op`` on tensors ``(B, *shape)``,
    ``op(x).flatten() = M x.flatten()``, by applying ``op`` to every basis vector."""
    n = 1
    for s in shape:
        n *= s
    basis = torch.eye(n, dtype=torch.float64).view(n, *shape)
    return op(basis).reshape(n, -1).T.contiguous()
