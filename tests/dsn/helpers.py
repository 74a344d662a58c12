"""Run a DSN suite without the CLI: the manager's step loop in a few lines (tests, bench)."""
from __future__ import annotations

import torch

from core.config import from_dict
from core.runtime import derive_seed, generator
from core.suite import RunContext, StepContext
from dsn.suite import DSNSuite


def make_suite(**overrides) -> DSNSuite:
    """A CPU suite from config overrides (the init cache is off unless ``init_cache`` is given)."""
    cfg = from_dict(DSNSuite.Config, {"init_cache": "off", **overrides})
    return DSNSuite(RunContext(cfg=cfg, device=torch.device("cpu")))


def run_steps(suite: DSNSuite, modules, start: int, stop: int, optimizer=None):
    """Steps [start, stop) exactly as TrainingManager runs them (same seeding; a fresh
    optimiser at each phase, i.e. each restart). Returns the optimiser (pass it back in to
    continue within the same phase)."""
    phases = suite.phases()
    per = phases[0].steps
    for step in range(start, stop):
        phase = phases[step // per]
        if optimizer is None or step % per == 0:
            optimizer = suite.make_optimizer(modules, phase)
        lr = suite.learning_rate(phase, step % per)
        if lr is not None:
            for group in optimizer.param_groups:
                group["lr"] = lr
        seed = derive_seed(suite.cfg.seed, "step", step, 0)
        torch.manual_seed(seed)
        ctx = StepContext(step=step, phase=phase.name, phase_step=step % per, rank=0, world_size=1,
                          device=torch.device("cpu"), generator=generator(seed))
        loss, metrics = suite.loss(modules, None, ctx)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        suite.after_step(modules, ctx, metrics)
    return optimizer


def train(suite: DSNSuite, modules=None, start: int = 0, stop: int | None = None):
    """Build (pre-train) if needed and run steps [start, stop); returns the modules."""
    modules = modules or suite.build()
    run_steps(suite, modules, start, suite.cfg.steps if stop is None else stop)
    return modules
