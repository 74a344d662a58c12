"""How the sampler's state gradient ``dE/ds`` is evaluated: precision and compilation.

The sampler (:mod:`nrflv.sghmc`) takes the gradient from a callable; this module builds that
callable around :class:`nrflv.energy.NRFEnergy` with two options, both off by default:

* ``precision``: ``fp32`` (the energy as it is) or ``bf16`` (the energy's forward and its
  backward run under ``torch.autocast(..., dtype=torch.bfloat16)``). The states stay float32
  leaves, so the gradients come back float32, and the sampler's state (``tau, g, v, p``) and
  update stay float32: only the products inside the energy are rounded to bfloat16 (8 bits of
  mantissa, a relative error of order 4e-3 per product).
* ``compile``: ``off``; ``on`` (``torch.compile`` of the energy's forward, the gradient by
  autograd through the compiled graph); ``cuda_graphs`` (``torch.compile(mode="reduce-overhead")``:
  forward and backward replayed as CUDA graphs; CUDA only). The sampler's update itself stays
  eager (a few ``torch._foreach`` kernels per step).

During the evaluation the energy's parameters are switched to ``requires_grad=False`` (and back
afterwards), so that no parameter gradient is formed (eager autograd prunes those paths anyway;
a compiled backward would otherwise compute them) and a compiled graph sees one constant flag.
"""
from __future__ import annotations

from contextlib import contextmanager, nullcontext
from typing import Optional, Sequence

import torch
from torch import nn

PRECISIONS = ("fp32", "bf16")
COMPILE_MODES = ("off", "on", "cuda_graphs")


@contextmanager
def frozen(module: nn.Module):
    """``module``'s parameters with ``requires_grad=False`` inside the block, restored after."""
    params = list(module.parameters())
    flags = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    try:
        yield module
    finally:
        for p, f in zip(params, flags):
            p.requires_grad_(f)


class StateGradient:
    """``dE/ds`` of ``energy`` with the chosen precision and compilation (see module doc).

    Call :meth:`energy_and_grad` / :meth:`grad` as the energy's own methods: ``states`` one
    ``(B, C_i, H_i, W_i)`` float32 tensor per layer, ``wrt`` the layers to differentiate;
    the energy (a float32 scalar) and the gradients (float32, shaped like the states; ``None``
    for layers not in ``wrt``) are new tensors the caller may keep.
    """

    def __init__(self, energy: nn.Module, precision: str = "fp32", compile: str = "off") -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        if compile not in COMPILE_MODES:
            raise ValueError(f"compile must be one of {COMPILE_MODES}, got {compile!r}")
        self.energy, self.precision, self.compile = energy, precision, compile
        if compile == "off":
            self._forward = energy
        else:
            mode = "reduce-overhead" if compile == "cuda_graphs" else None
            self._forward = torch.compile(energy, mode=mode)

    def _autocast(self, device: torch.device):
        if self.precision == "bf16":
            return torch.autocast(device.type, dtype=torch.bfloat16)
        return nullcontext()

    def energy_and_grad(self, states: Sequence[torch.Tensor], wrt: Optional[Sequence[int]] = None
                        ) -> tuple[torch.Tensor, list[Optional[torch.Tensor]]]:
        n = len(states)
        wrt = list(range(n)) if wrt is None else sorted(set(wrt))
        if any(not 0 <= i < n for i in wrt):
            raise ValueError(f"wrt must list layers 0..{n - 1}, got {wrt}")
        if self.compile == "cuda_graphs":  # a new replay: the previous outputs may be overwritten
            torch.compiler.cudagraph_mark_step_begin()
        with torch.enable_grad(), frozen(self.energy), self._autocast(states[0].device):
            leaves = [s.detach().requires_grad_(i in wrt) for i, s in enumerate(states)]
            energy = self._forward(leaves)
            grads = torch.autograd.grad(energy, [leaves[i] for i in wrt]) if wrt else ()
        out: list[Optional[torch.Tensor]] = [None] * n
        for i, g in zip(wrt, grads):  # float32 like the leaves; copies when graphs own the memory
            out[i] = g.clone() if self.compile == "cuda_graphs" else g.to(states[i].dtype)
        return energy.detach().float().clone(), out

    def grad(self, states: Sequence[torch.Tensor], wrt: Optional[Sequence[int]] = None
             ) -> list[Optional[torch.Tensor]]:
        return self.energy_and_grad(states, wrt)[1]
