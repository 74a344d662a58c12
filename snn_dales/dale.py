"""Dale's law: every presynaptic unit is either excitatory or inhibitory for all its targets.

A layer's trainable weights ``w`` (shape ``(..., n_pre, n_post)``) are made sign-constrained
by a fixed sign per presynaptic unit ``sign_i`` in {+1, -1}::

    W_ij = |w_ij| * sign_i

so whatever the optimiser does, every outgoing weight of unit ``i`` keeps the sign
``sign_i`` (a weight that reaches exactly zero gets zero gradient from ``|.|`` and stays
there, as in the source). ``ie_ratio`` is the fraction of presynaptic units that are
inhibitory: ``round(ie_ratio * n_pre)`` of them.

Sign assignment:

* ``first`` -- the first units are inhibitory (the source's choice). For the input layer
  at ``ie_ratio = 0.5`` this makes the whole left ear inhibitory and the right ear
  excitatory.
* ``random`` -- a random subset of units is inhibitory.
"""
from __future__ import annotations

import math

import torch

SIGN_ASSIGNMENTS = ("random", "first")


def n_inhibitory(n_pre: int, ie_ratio: float) -> int:
    """Number of inhibitory units among ``n_pre`` (``round(ie_ratio * n_pre)``)."""
    if not 0.0 <= ie_ratio <= 1.0:
        raise ValueError(f"ie_ratio must be in [0, 1], got {ie_ratio}")
    return int(math.floor(ie_ratio * n_pre + 0.5))


def dale_sign_mask(n_pre: int, ie_ratio: float, assignment: str = "random",
                   generator: torch.Generator | None = None, device=None) -> torch.Tensor:
    """Fixed sign of each presynaptic unit, float32 ``(n_pre,)`` of +1 (E) / -1 (I)."""
    k = n_inhibitory(n_pre, ie_ratio)
    sign = torch.ones(n_pre, device=device)
    if assignment == "first":
        sign[:k] = -1.0
    elif assignment == "random":
        perm = torch.randperm(n_pre, generator=generator, device="cpu" if generator is None
                              else generator.device).to(sign.device)
        sign[perm[:k]] = -1.0
    else:
        raise ValueError(f"sign assignment must be one of {', '.join(SIGN_ASSIGNMENTS)}, got {assignment!r}")
    return sign


def signed_weights(w: torch.Tensor, sign: torch.Tensor) -> torch.Tensor:
    """``|w| * sign`` with ``w``: ``(..., n_pre, n_post)`` and ``sign``: ``(..., n_pre)``."""
    return w.abs() * sign.unsqueeze(-1)


def uniform_init(shape: tuple[int, ...], generator: torch.Generator | None = None,
                 device=None) -> torch.Tensor:
    """The source's initialisation, uniform in ``+-1/sqrt(shape[-1])``.

    The source stores weights as ``(n_pre, n_post)`` and uses PyTorch's fan-in rule, which
    for a 2-D tensor is its second dimension: the bound is ``1/sqrt(n_post)``.
    """
    bound = 1.0 / math.sqrt(shape[-1])
    u = torch.rand(shape, generator=generator, device=device if generator is None else generator.device)
    return ((2 * u - 1) * bound).to(device) if device is not None else (2 * u - 1) * bound


def sign_violations(weight: torch.Tensor, sign: torch.Tensor) -> int:
    """How many effective weights ``(..., n_pre, n_post)`` have the wrong strict sign."""
    s = sign.unsqueeze(-1)
    return int(((weight * s) < 0).sum())
