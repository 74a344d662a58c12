"""A resume's entry in ``meta.yaml``, written only once the resume has started successfully.

``--resume RUN --KEY VALUE`` overrides are re-applied by every later resume, so an override of
a resume that was refused or failed (out of memory at the first step, a refused recording, an
analysis that cannot run) must not be recorded, or it would come back forever. The managers
call :meth:`ResumeNote.started` when something of the resumed run has been done: a finite
training step, a recorded block, a stimulus set, a visualisation or an analysis about to be
written; ``main.py`` also calls it when the invocation ends well. The first call appends the
entry (with its overrides); later calls do nothing.
"""
from __future__ import annotations

from typing import Any

import torch


class ResumeNote:
    def __init__(self, run, *, device: torch.device, world_size: int, overrides: dict[str, Any],
                 enabled: bool = True):
        self.run, self.device, self.world_size = run, device, world_size
        self.overrides = dict(overrides)
        self.enabled = enabled
        self.written = False

    def started(self) -> None:
        """Record this resume in meta.yaml (once; a no-op on ranks other than 0)."""
        if self.enabled and not self.written:
            self.run.note_resume(device=self.device, world_size=self.world_size, overrides=self.overrides)
        self.written = True


def nothing_to_note() -> None:
    """``RunContext.resume_started`` of a new run: nothing to record."""
