"""A resume may not rewrite training that has already happened.

An override such as ``--cnn_steps`` or ``--cnn_lr`` given to ``--resume`` after its phase has
run would be recorded in ``meta.yaml`` but could change nothing (or, for a phase length, move
the phase boundaries under steps already taken). :func:`check_resumed_phases` refuses such an
override with one line; changes to the phase being trained (from now on) and to later phases
are allowed. Checkpoints record their phases (name, first step, end) in ``loop_state``.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from core.config import to_dict
from core.errors import UserError


def phase_table(phases: Sequence[Any], bounds: Sequence[int]) -> list[list]:
    """``[[name, first step, end], ...]`` as stored in a checkpoint's ``loop_state``."""
    return [[p.name, int(a), int(b)] for p, a, b in zip(phases, bounds[:-1], bounds[1:])]


def check_resumed_phases(now: list[list], saved: list[list] | None, step: int, phase_index: int,
                         phase_keys: dict[str, tuple[str, ...]], config_now: dict, config_saved: dict) -> None:
    """Refuse (UserError) a resume at ``step`` (inside phase ``phase_index``) whose config changes a
    phase that has already run: its place or length, or a key of ``phase_keys`` (key -> the
    phases it acts in) whose phases have all ended."""
    if saved:
        for k in range(min(phase_index + 1, len(saved))):
            name, first, end = saved[k]
            if k >= len(now) or now[k][0] != name:
                raise UserError(f"--resume: this run has trained phase {name} (from step {first}) and "
                                f"resumes at step {step}, but the config now drops or moves it (phases: "
                                f"{', '.join(n for n, _, _ in now) or 'none'}). Keep its steps key, or "
                                "start a new run (--load_model RUN)")
            n_first, n_end = now[k][1], now[k][2]
            if n_first != first or (n_end != end if k < phase_index else n_end < step):
                what = (f"has run {min(step, end) - first} of its {end - first} steps (steps {first}-{end - 1})"
                        if end > first else f"had 0 steps (at step {first})")
                raise UserError(f"--resume: phase {name} {what} and this run resumes at step {step}; "
                                f"its length cannot change to {n_end - n_first} steps here. Keep its steps "
                                "key, or start a new run (--load_model RUN)")
    ended = {name for name, _, end in now if end <= step}
    for key, owners in phase_keys.items():
        if owners and set(owners) <= ended and key in config_saved and \
                _plain(config_now.get(key)) != _plain(config_saved[key]):
            raise UserError(f"--{key}: the phase{'s' if len(owners) > 1 else ''} it acts in "
                            f"({', '.join(owners)}) ended before step {step}, where this run resumes: a new "
                            f"value ({config_now.get(key)!r}, was {config_saved[key]!r}) would change nothing. "
                            "Drop it, or start a new run (--load_model RUN)")


def _plain(value):
    return [_plain(v) for v in value] if isinstance(value, (list, tuple)) else value


def check_resume(suite, resume: dict) -> None:
    """Before anything is written: refuse a resume whose config rewrites phases that have already
    run (their length, or a key acting only in them; see :func:`check_resumed_phases`)."""
    phases = suite.phases()
    bounds = np.cumsum([0] + [p.steps for p in phases])
    step = int(resume.get("step", 0))
    loop_state = resume.get("loop_state") or {}
    if loop_state.get("stopped_early") or step >= int(bounds[-1]):
        return  # nothing left to train: "training already complete"
    check_resumed_phases(phase_table(phases, bounds), loop_state.get("phases"), step,
                         int(resume.get("phase_index", 0)), type(suite).phase_keys, to_dict(suite.cfg),
                         resume.get("config") or {})
