"""Resuming an optimiser: its state (moments, steps) from the checkpoint, its settings from the config.

``torch.optim.Optimizer.load_state_dict`` also brings back every group's hyperparameters (``lr``,
momentum, betas, weight decay) as they were saved, which would silently undo a ``--resume RUN
--lr X``. :func:`load_optimizer_state` keeps the settings of the optimiser just built from the
run's current config (with the resume's overrides) and takes only the state from the
checkpoint; without overrides the two are the same, so resume stays exact. A schedule
(``ModelSuite.learning_rate``) still sets the rate of every step after this.
"""
from __future__ import annotations

from typing import Any

import torch

from core.errors import UserError


def group_settings(optimizer: torch.optim.Optimizer) -> list[dict[str, Any]]:
    """Every parameter group's hyperparameters (all keys but ``params``)."""
    return [{k: v for k, v in g.items() if k != "params"} for g in optimizer.param_groups]


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: dict, source: str) -> None:
    """Load ``state`` into ``optimizer`` and put its freshly built group settings back."""
    settings = group_settings(optimizer)
    try:
        optimizer.load_state_dict(state)
    except (ValueError, KeyError, TypeError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise UserError(f"checkpoint {source}: its optimiser state does not fit this run's optimiser "
                        f"({first}); resume with the config the run was trained with") from None
    groups = optimizer.param_groups
    if len(groups) != len(settings):
        raise UserError(f"checkpoint {source}: {len(groups)} optimiser parameter groups, this run builds "
                        f"{len(settings)}; resume with the config the run was trained with")
    for group, fresh in zip(groups, settings):
        group.update(fresh)
