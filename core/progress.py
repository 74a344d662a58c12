"""Progress bars and status lines for the managers, on rank 0 only (other ranks stay quiet)."""
from __future__ import annotations

import sys
from typing import Iterable

from tqdm.auto import tqdm

from core.suite import RunContext


def progress(iterable: Iterable, ctx: RunContext, **kw):
    """tqdm on rank 0 only (plain iteration elsewhere)."""
    return tqdm(iterable, disable=not ctx.env.is_main, dynamic_ncols=True, mininterval=1.0, **kw)


def say(ctx: RunContext, msg: str) -> None:
    """One line to stderr on rank 0, printed above any progress bar."""
    if ctx.env.is_main:
        tqdm.write(msg, file=sys.stderr)
