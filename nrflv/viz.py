"""What the trained energy "expects": gradients for the visualisations.

``channels_energy`` (as in the source): each chain descends the energy of one channel of one
layer, ``0.5 * sum over that channel's units of e_i(s)`` (per-unit energies, see
:meth:`nrflv.energy.NRFEnergy.unit_energies`), instead of the total energy. Layers below the
visualised one that this gradient does not reach follow the total energy's gradient, so the
image layer settles into what drives that channel.
"""
from __future__ import annotations

from typing import Sequence

import torch

from nrflv.energy import NRFEnergy

FEATURE_SCALE = 0.5  # the source's energy_scaler


def channel_energy_grad(energy: NRFEnergy, states: Sequence[torch.Tensor], layer: int,
                        channel: torch.Tensor, scale: float = FEATURE_SCALE) -> list[torch.Tensor]:
    """Gradients for ``channels_energy``: chain ``b`` descends ``scale * sum(e_layer[b, channel[b]])``.

    ``states``: one ``(B, C_i, H_i, W_i)`` tensor per layer; ``channel``: ``(B,)`` channel index of
    each chain. Returns one gradient per layer; a layer below ``layer`` that gets exactly zero
    from the feature takes the total energy's gradient instead.
    """
    with torch.enable_grad():
        leaves = [s.detach().requires_grad_(True) for s in states]
        units = energy.unit_energies(leaves)
        picked = units[layer][torch.arange(len(channel), device=channel.device), channel]
        feature = scale * picked.sum()
        total = sum(u.sum() for u in units)
        g_feature = torch.autograd.grad(feature, leaves, retain_graph=True, allow_unused=True)
        g_feature = [torch.zeros_like(s) if g is None else g for s, g in zip(leaves, g_feature)]
        g_total = torch.autograd.grad(total, leaves)
    return [gt if (i < layer and not bool(gf.any())) else gf
            for i, (gf, gt) in enumerate(zip(g_feature, g_total))]
