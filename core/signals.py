"""Stop requests from batch schedulers: SIGTERM/SIGUSR1 become a polite stop after a step."""
from __future__ import annotations

import torch


class RunInterrupted(Exception):
    """Training was asked to stop (SIGTERM/SIGUSR1 from a batch scheduler); a checkpoint was saved."""


class StopSignals:
    """Turn SIGTERM and SIGUSR1 into a polite request to stop after the current step.

    Batch schedulers (SLURM, PBS) send these before killing a job; the loop then writes a
    checkpoint so that ``--resume`` loses nothing. Under DDP the request is shared by an
    all-reduce, so every rank stops after the same step.
    """

    SIGNALS = ("SIGTERM", "SIGUSR1")

    def __init__(self):
        self.name: str | None = None
        self._old = {}

    def __enter__(self) -> "StopSignals":
        import signal
        import threading

        if threading.current_thread() is threading.main_thread():
            for sig_name in self.SIGNALS:
                sig = getattr(signal, sig_name, None)
                if sig is not None:
                    self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        import signal

        self.name = signal.Signals(signum).name

    def __exit__(self, *exc) -> None:
        import signal

        for sig, old in self._old.items():
            signal.signal(sig, old)

    def any(self, env, device) -> bool:
        """Whether any rank was asked to stop."""
        flag = self.name is not None
        if env.distributed:
            import torch.distributed as dist

            t = torch.tensor([1.0 if flag else 0.0], device=device)
            dist.all_reduce(t, op=dist.ReduceOp.MAX)
            flag = bool(t.item())
            if flag and self.name is None:
                self.name = "a signal on another rank"
        return flag
