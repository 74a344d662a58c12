"""Population responses of any network's layers, read with forward hooks.

``layer_activations(net, stimuli, ["pool", "fc"])`` runs ``stimuli`` through ``net`` in
batches (under ``torch.inference_mode``, so no autograd graph is kept) and returns, for
each named sub-module, its output flattened to a ``(stimuli, units)`` matrix on the
device the network runs on.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn

from core.errors import UserError


def _first_tensor(output):
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]  # e.g. (output, hidden) of recurrent modules
    raise TypeError(f"layer output of type {type(output).__name__} is not a tensor")


def layer_activations(net: nn.Module, stimuli: torch.Tensor, layers: Sequence[str], *,
                      batch_size: int = 512, forward: Callable | None = None) -> dict[str, torch.Tensor]:
    """Responses of the named sub-modules of ``net`` to every stimulus.

    Args:
        net: any module; ``layers`` are names from ``net.named_modules()`` (e.g. ``"fc"``,
            ``"features.3"``).
        stimuli: ``(n, ...)`` inputs; moved batch by batch to the device of ``net``'s
            first parameter (or left where they are for a parameter-free network).
        layers: which sub-modules to read.
        batch_size: stimuli per forward pass.
        forward: optional ``forward(net, batch)`` to call instead of ``net(batch)``.
    Returns:
        ``{layer: (n, units)}`` in the order of ``layers``, on the network's device.
    """
    modules = dict(net.named_modules())
    unknown = [name for name in layers if name not in modules or name == ""]
    if unknown:
        valid = [n for n in modules if n]
        raise UserError(f"unknown layer(s) {', '.join(unknown)}; this network has: {', '.join(valid)}")
    if len(layers) == 0:
        raise UserError("layer_activations: give at least one layer name")
    param = next(net.parameters(), None)
    device = param.device if param is not None else stimuli.device
    chunks: dict[str, list[torch.Tensor]] = {name: [] for name in layers}

    def hook_for(name):
        def hook(_module, _inputs, output):
            out = _first_tensor(output)
            chunks[name].append(out.reshape(out.shape[0], -1).detach())
        return hook

    handles = [modules[name].register_forward_hook(hook_for(name)) for name in layers]
    was_training = net.training
    net.eval()
    try:
        with torch.inference_mode():
            for start in range(0, stimuli.shape[0], batch_size):
                batch = stimuli[start:start + batch_size].to(device)
                (forward or (lambda m, b: m(b)))(net, batch)
    finally:
        for h in handles:
            h.remove()
        net.train(was_training)
    out = {}
    for name in layers:
        if not chunks[name]:
            raise UserError(f"layer {name!r} was not used in the forward pass of this network")
        out[name] = torch.cat(chunks[name]).clone()  # leave inference mode: a normal tensor
    return out
