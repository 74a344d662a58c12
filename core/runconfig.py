"""The config a finished run was made with, validated the same way for every reader.

``main.py --resume`` and ``analysis_main.py`` both take a run's model and config from its
``config.yaml``; :func:`run_config` is their one check that the file is the resolved config
``main.py`` wrote (a mapping naming its model and seed, agreeing with ``meta.yaml``), so
neither silently runs an empty or hand-cut file on the defaults.
"""
from __future__ import annotations

from typing import Any

from core.errors import UserError

#: keys every config.yaml written by main.py holds
REQUIRED = ("model", "seed")


def run_config(run) -> dict[str, Any]:
    """``RUN/config.yaml`` as a dict (with ``model``), or a one-line :class:`UserError`."""
    path = run.path / "config.yaml"
    values = run.read_config()
    missing = [k for k in REQUIRED if k not in values]
    if missing:
        what = "is empty" if not values else f"has no {' or '.join(f'{k}:' for k in missing)} key"
        raise UserError(f"{path} {what}: it is not the config main.py wrote for this run; restore it "
                        "(it is written once, when the run starts)")
    if not isinstance(values["model"], str) or not values["model"]:
        raise UserError(f"{path}: model: must name a model family, got {values['model']!r}")
    meta_model = run.read_meta().get("model")
    if meta_model and meta_model != values["model"]:
        raise UserError(f"{path} names model {values['model']!r} but {run.path / 'meta.yaml'} says "
                        f"{meta_model!r}; restore the run's config.yaml")
    return values
