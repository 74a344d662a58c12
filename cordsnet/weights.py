"""The ``--pretrained`` file: a published CordsNet state dict (``cordsnetr8.pth``), checked
before anything is written.

A published file is a bare state dict (string keys, the weight-norm keys of
:class:`cordsnet.model.CordsNet`, floating-point tensors of the model's shapes, all finite).
Also accepted: a DDP-saved one (``module.`` prefixes) and this toolkit's own checkpoint (its
``modules['rnn']``). Anything else is a one-line :class:`UserError` naming the file.
"""
from __future__ import annotations

from typing import Any, Mapping

import torch

from core.checkpoint import state_dict_mismatches
from core.errors import UserError


def _listed(problems: list[str], n: int = 4) -> str:
    more = f" and {len(problems) - n} more" if len(problems) > n else ""
    return "; ".join(problems[:n]) + more


def published_state(obj: Any, expected: Mapping[str, torch.Tensor], path: str, model: str) -> dict:
    """The state dict in ``obj`` (what ``torch.load(path, weights_only=True)`` returned), checked
    key by key against ``expected`` (the state dict of the model it must load into; ``model``
    names it in messages, e.g. ``'CordsNet R2 (digits, 32 px)'``). Raises :class:`UserError`."""
    if isinstance(obj, Mapping) and isinstance(obj.get("modules"), Mapping) and "rnn" in obj["modules"]:
        obj = obj["modules"]["rnn"]  # this toolkit's own checkpoint
    if not isinstance(obj, Mapping):
        raise UserError(f"--pretrained: {path} holds a {type(obj).__name__}, not a CordsNet state dict "
                        "(a dict of parameter name -> tensor, as torch.save(model.state_dict()) writes)")
    bad_keys = [repr(k) for k in obj if not isinstance(k, str)]
    if bad_keys:
        raise UserError(f"--pretrained: {path} is not a state dict: keys must be parameter names, got "
                        f"{', '.join(bad_keys[:3])}")
    state = {k.removeprefix("module."): v for k, v in obj.items()}  # DDP-saved files
    not_tensors = [f"{k} ({type(v).__name__})" for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        raise UserError(f"--pretrained: {path} is not a state dict of tensors: {_listed(not_tensors, 3)}")
    problems = state_dict_mismatches(expected, state)
    if problems:
        raise UserError(f"--pretrained: {path} does not fit {model}: {_listed(problems)}")
    not_float = [f"{k} ({v.dtype})" for k, v in state.items() if expected[k].is_floating_point()
                 and not v.is_floating_point()]
    if not_float:
        raise UserError(f"--pretrained: {path} has non-floating-point weights: {_listed(not_float, 3)}")
    non_finite = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if non_finite:
        raise UserError(f"--pretrained: {path} has NaN or infinite values in {_listed(non_finite, 3)}")
    return state
