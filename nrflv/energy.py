"""The NRFLV energy E(s), its per-unit terms and its gradient with respect to the states.

States ``s = [s_0, ..., s_{L-1}]``, ``s_i`` of shape ``(B, C_i, H_i, W_i)`` (``s_0`` the image)::

    E(s)   = sum_b sum_i e_i(s)_b                                   (a scalar: batch and units summed)
    e_i(s) = 1/2 s_i^2 - b_i s_i - 1/2 s_i f_i(rho(s_j), j in inputs(i))   (elementwise, (B, C_i, H_i, W_i))

with ``rho = hardtanh`` (``[-1, 1]``), ``b_i`` one bias per unit ``(C_i, H_i, W_i)`` (zeros at
start) and ``f_i`` the quadratic net of layer ``i`` (``nets.QuadraticNet``). These are the
original's signs (``-`` bias term, ``-1/2`` quadratic term), and its per-unit energies as well:
``sum(unit_energies) == E`` here and in the original (checked against the original's code: they
sum to its total energy to 7e-16).

``grad`` gives ``dE/ds`` by ``torch.autograd.grad`` with the states as the only inputs: the
graph is cut from anything the states carried, no parameter ``.grad`` is written and no
parameter gradient is computed (autograd prunes the paths to the weights). This object is the
energy only; the sampler (``sghmc``) and the training objective are elsewhere. Samplers that
take many steps with fixed weights may wrap them in ``torch.nn.utils.parametrize.cached()`` so
the weight-norm weights are formed once.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from nrflv.architecture import Architecture
from nrflv.nets import QuadraticNet

rho = F.hardtanh  # the states' activation, [-1, 1]


class NRFEnergy(nn.Module):
    """E(s) of an :class:`~nrflv.architecture.Architecture`; parameters ``biases.i`` ``(C_i, H_i, W_i)``
    and ``nets.i`` (:class:`~nrflv.nets.QuadraticNet`)."""

    def __init__(self, arch: Architecture, weight_norm: bool = True):
        super().__init__()
        self.arch = arch
        self.biases = nn.ParameterList(nn.Parameter(torch.zeros(shp)) for shp in arch.layers)
        self.nets = nn.ModuleList(QuadraticNet(arch, i, weight_norm) for i in range(arch.n_layers))

    def check_states(self, states: Sequence[torch.Tensor]) -> None:
        """Raise ``ValueError`` unless ``states`` is one ``(B, C_i, H_i, W_i)`` tensor per layer."""
        if len(states) != self.arch.n_layers:
            raise ValueError(f"expected {self.arch.n_layers} state tensors (one per layer), got {len(states)}")
        batch = states[0].shape[0] if states[0].dim() else None
        for i, (s, shp) in enumerate(zip(states, self.arch.layers)):
            if s.dim() != 4 or tuple(s.shape[1:]) != shp or s.shape[0] != batch:
                raise ValueError(f"state {i} must have shape (batch={batch}, {', '.join(map(str, shp))}), "
                                 f"got {tuple(s.shape)}")

    def drives(self, states: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """``[f_i(rho(s_j), j in inputs(i))]``, each ``(B, C_i, H_i, W_i)``."""
        self.check_states(states)
        acts = [rho(s) for s in states]
        return [net([acts[j] for j in self.arch.inputs[i]]) for i, net in enumerate(self.nets)]

    def unit_energies(self, states: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """``[e_i(s)]``, each ``(B, C_i, H_i, W_i)``; their sum over everything is ``E(s)``."""
        return [0.5 * s * s - b * s - 0.5 * s * f
                for s, b, f in zip(states, self.biases, self.drives(states))]

    def sample_energies(self, states: Sequence[torch.Tensor]) -> torch.Tensor:
        """``E`` of each sample, ``(B,)``."""
        return sum(e.flatten(1).sum(1) for e in self.unit_energies(states))

    def forward(self, states: Sequence[torch.Tensor]) -> torch.Tensor:
        """``E(s)``: a scalar, summed over units, layers and the batch."""
        return sum(e.sum() for e in self.unit_energies(states))

    def energy_and_grad(self, states: Sequence[torch.Tensor], wrt: Optional[Sequence[int]] = None
                        ) -> tuple[torch.Tensor, list[Optional[torch.Tensor]]]:
        """``(E (detached scalar), [dE/ds_i])``; ``wrt``: the layers to differentiate (default all),
        the others get ``None`` (e.g. the clamped image in a positive phase)."""
        wrt = list(range(self.arch.n_layers)) if wrt is None else sorted(set(wrt))
        if any(not 0 <= i < self.arch.n_layers for i in wrt):
            raise ValueError(f"wrt must list layers 0..{self.arch.n_layers - 1}, got {wrt}")
        with torch.enable_grad():
            leaves = [s.detach().requires_grad_(i in wrt) for i, s in enumerate(states)]
            energy = self.forward(leaves)
            grads = torch.autograd.grad(energy, [leaves[i] for i in wrt]) if wrt else ()
        out: list[Optional[torch.Tensor]] = [None] * self.arch.n_layers
        for i, g in zip(wrt, grads):
            out[i] = g
        return energy.detach(), out

    def grad(self, states: Sequence[torch.Tensor], wrt: Optional[Sequence[int]] = None
             ) -> list[Optional[torch.Tensor]]:
        """``[dE/ds_i]`` (``None`` for layers not in ``wrt``); see :meth:`energy_and_grad`."""
        return self.energy_and_grad(states, wrt)[1]

    def parameter_counts(self) -> dict:
        """``{"biases": n, "nets": [n_0, ...], "total": n}`` (weight-norm ``g`` included)."""
        count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
        nets = [count(net) for net in self.nets]
        biases = sum(b.numel() for b in self.biases)
        return {"biases": biases, "nets": nets, "total": biases + sum(nets)}


def uniform_states(arch: Architecture, batch: int, generator: Optional[torch.Generator] = None,
                   device: Optional[torch.device | str] = None, dtype: torch.dtype = torch.float32
                   ) -> list[torch.Tensor]:
    """Fresh states ``U[-1, 1]`` for every layer, ``[(batch, C_i, H_i, W_i)]`` (``generator`` on ``device``)."""
    return [torch.rand(shp, generator=generator, dtype=dtype, device=device).mul_(2).sub_(1)
            for shp in arch.state_shapes(batch)]
