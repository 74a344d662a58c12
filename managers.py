"""Generic managers that run a model family's stages.

They own the loop concerns -- device, seeding, run directory, TensorBoard, progress bars,
checkpoints and resume, distributed training -- and call the model's
:class:`core.suite.ModelSuite` for the science. None of them imports a model package.

* :class:`TrainingManager` -- the optimisation loop (phases, DDP, checkpoints, resume,
  best-model selection, early stopping, NaN guard).
* :class:`VisualizationManager` -- runs named visualisations, writes PNG + TensorBoard.
* :class:`ExperimentsManager` -- writes the stimulus set and records model activity
  block by block into a resumable zarr store (defined in :mod:`core.experiments`).
* :class:`AnalysisManager` -- runs named analyses (optionally over a recording), writes
  CSV tables and PNG figures.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from core.checkpoint import checkpoint_dict, load_into, save_checkpoint  # noqa: F401  (load_into: re-exported)
from core.experiments import ExperimentsManager, recording_group  # noqa: F401  (re-exported: managers is the import point)
from core.errors import TrainingDiverged, UserError
from core.health import nonfinite_entries, nonfinite_parameters, summarise
from core.optim_state import load_optimizer_state
from core.outputs import RunLogger
from core.phase_check import check_resume, phase_table  # noqa: F401  (check_resume: re-exported)
from core.runtime import all_reduce_mean, derive_seed, generator, reseed
from core.progress import progress
from core.progress import say as _say
from core.signals import RunInterrupted, StopSignals  # noqa: F401  (RunInterrupted: re-exported)
from core.store import RecordingStore
from core.suite import AnalysisResult, AnalysisSkipped, Animation, ModelSuite, Phase, RunContext, StepContext


class _LossModule(nn.Module):
    """Holds every module of the model so DDP sees one forward: the suite's loss."""

    def __init__(self, suite: ModelSuite, modules: dict[str, nn.Module]):
        super().__init__()
        self.suite = suite
        self.parts = nn.ModuleDict(modules)

    def forward(self, batch: Any, step: StepContext):
        return self.suite.loss(dict(self.parts.items()), batch, step)


def _link_or_copy(src: Path, dst: Path) -> None:
    """Make ``dst`` a copy of ``src`` atomically (hard link when the filesystem allows)."""
    tmp = dst.with_name(f".{dst.name}.tmp")
    if tmp.exists():
        tmp.unlink()
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copy2(src, tmp)
    os.replace(tmp, dst)


class TrainingManager:
    """Runs the optimisation loop of a suite.

    Each step ``k`` reseeds torch from ``(seed, k, rank)`` and passes a matching generator,
    so the data and noise of a step do not depend on history: resuming from the checkpoint
    of step ``k`` gives exactly the parameters of an uninterrupted run.
    """

    def __init__(self, suite: ModelSuite, modules: dict[str, nn.Module], ctx: RunContext,
                 logger: RunLogger):
        self.suite, self.modules, self.ctx, self.log = suite, modules, ctx, logger
        self.cfg = suite.cfg
        self.run = ctx.run

    # -- checkpoints -------------------------------------------------------------
    # A periodic checkpoint is "pending" until a step with finite loss and parameters has
    # followed it; it is then the "good" one. On divergence last.pt is pointed back at the
    # good checkpoint (weights of 1e35 are finite but are not a place to resume from), and
    # neither is ever pruned.
    _good: Path | None = None
    _pending: Path | None = None
    _eval_group = None  # the process group rank 0's evaluation flag is broadcast in (see _loop)

    def _save(self, name: str, ckpt: dict) -> Path | None:
        if not self.ctx.env.is_main:
            return None
        bad = nonfinite_entries(ckpt)
        if bad:
            raise TrainingDiverged(
                f"{summarise(bad)} became non-finite by step {ckpt['step']}; the checkpoint was not "
                f"written. {self._good_note()}")
        path = self.run.checkpoints / name
        save_checkpoint(ckpt, path)
        return path

    def _save_periodic(self, ckpt: dict) -> None:
        if not self.ctx.env.is_main:
            return
        path = self._save(f"step_{ckpt['step']:08d}.pt", ckpt)
        _link_or_copy(path, self.run.last_checkpoint)
        self._pending = path
        protected = {p for p in (self._good, self._pending) if p is not None}
        others = [p for p in sorted(self.run.checkpoints.glob("step_*.pt")) if p not in protected]
        n_keep = max(0, self.cfg.keep_checkpoints - len(protected))  # the newest others
        for old in others[: max(0, len(others) - n_keep)]:   # (a negative stop would cut from the end)
            old.unlink()

    def _step_was_finite(self) -> None:
        """The checkpoint written before this step is followed by a finite step: it is good."""
        if self._pending is not None:
            self._good, self._pending = self._pending, None

    def _good_note(self) -> str:
        """Say which checkpoint to trust, and point last.pt at it (or remove last.pt if none)."""
        if not self.ctx.env.is_main or self.run is None:
            return ""
        last = self.run.last_checkpoint
        if self._good is not None and self._good.exists():
            _link_or_copy(self._good, last)
            return (f"Last good checkpoint (followed by a finite step): {self._good.name}; last.pt now "
                    f"points to it. Resume with a smaller learning rate: python main.py --resume "
                    f"{self.run.path} --lr ...")
        removed = ""
        if last.exists():
            last.unlink()  # the step_*.pt file it linked to stays, for inspection
            removed = " (last.pt removed; step_*.pt files kept for inspection)"
        return (f"No checkpoint of this run was followed by a finite step, so none is good{removed}. "
                "Start again with a smaller learning rate or --grad_clip.")

    def _diverged(self, what: str, step: int, phase: str) -> TrainingDiverged:
        return TrainingDiverged(f"{what} at step {step} (phase {phase}); training stopped. "
                                f"{self._good_note()}")

    # -- the loop ---------------------------------------------------------------
    def fit(self, resume: dict | None = None) -> dict[str, Any]:
        """Train from scratch or from a ``resume`` checkpoint; returns the last metrics."""
        cfg, ctx, env = self.cfg, self.ctx, self.ctx.env
        phases: list[Phase] = self.suite.phases()
        bounds = np.cumsum([0] + [p.steps for p in phases])
        total = int(bounds[-1])
        step, loop_state, opt_state = 0, {"best": None, "evals_since_best": 0, "stopped_early": False}, None
        resume_phase = 0
        if resume is not None:
            step = int(resume.get("step", 0))
            loop_state.update(resume.get("loop_state") or {})
            opt_state = resume.get("optimizer")
            resume_phase = int(resume.get("phase_index", 0))
        sel = self.suite.selection_metric
        if loop_state.get("stopped_early") or step >= total:
            _say(ctx, f"training already complete at step {step}/{total}; nothing to do")
            return {}
        loop_state["phases"] = phase_table(phases, bounds)  # see check_resume

        with StopSignals() as self._stop_requested:
            return self._loop(step, total, bounds, phases, loop_state, opt_state, resume_phase, sel)

    def _loop(self, step: int, total: int, bounds: np.ndarray, phases: list[Phase], loop_state: dict,
              opt_state: dict | None, resume_phase: int, sel) -> dict[str, Any]:
        cfg, ctx, env = self.cfg, self.ctx, self.ctx.env
        model = _LossModule(self.suite, self.modules)
        self._named_parameters = [(f"{n}.{pn}", p) for n, m in self.modules.items()
                                  for pn, p in m.named_parameters()]
        if self.run is not None and step > 0:  # the checkpoint resumed from is not yet proven good
            resumed = self.run.checkpoints / f"step_{step:08d}.pt"
            self._pending = resumed if resumed.exists() else None
        loss_module = model
        self._eval_group = None
        if env.distributed:
            # rank 0 evaluates alone (a whole test set may take long) while the other ranks wait for
            # its stop flag: they wait in a gloo group with a long timeout, not in the default group
            # (whose NCCL watchdog ends the run after 10 minutes)
            import datetime

            import torch.distributed as dist

            self._eval_group = dist.new_group(backend="gloo", timeout=datetime.timedelta(hours=12))

        optimizer, phase_index, metrics = None, None, {}
        bar = progress(range(step, total), ctx, initial=step, total=total, desc=f"train {self.suite.name}")
        for step in bar:
            k = int(np.searchsorted(bounds, step, side="right") - 1)
            if k != phase_index:
                phase_index = k
                if step == int(bounds[k]):  # a phase starting afresh (not resumed inside it)
                    self.suite.begin_phase(self.modules, phases[k])
                optimizer = self.suite.make_optimizer(self.modules, phases[k])
                if opt_state is not None and k == resume_phase:  # settings (lr, ...) stay the config's
                    load_optimizer_state(optimizer, opt_state, "checkpoints/last.pt")
                opt_state = None
                if env.distributed:  # wrapped per phase: which parameters train may change
                    from torch.nn.parallel import DistributedDataParallel as DDP

                    ids = [ctx.device.index] if ctx.device.type == "cuda" else None
                    model = DDP(loss_module, device_ids=ids, find_unused_parameters=cfg.ddp_find_unused)
                model.train()
            phase = phases[phase_index]
            if step - int(bounds[phase_index]) in phase.restarts:  # a fresh optimiser from this step on
                # (also when resumed here: the checkpoint's state belongs to the stretch that ended)
                optimizer = self.suite.make_optimizer(self.modules, phase)
            lr = self.suite.learning_rate(phase, step - int(bounds[phase_index]))
            if lr is not None:  # one rate for every parameter group, or one per group
                rates = list(lr) if isinstance(lr, (list, tuple)) else [lr] * len(optimizer.param_groups)
                for group, rate in zip(optimizer.param_groups, rates):
                    group["lr"] = rate
            seed = derive_seed(cfg.seed, "step", step, env.rank)
            reseed(seed, ctx.device)
            sctx = StepContext(step=step, phase=phase.name, phase_step=step - int(bounds[phase_index]),
                               rank=env.rank, world_size=env.world_size, device=ctx.device,
                               generator=generator(seed, ctx.device))
            batch = self.suite.training_batch(sctx)
            loss, metrics = model(batch, sctx)
            mean_loss = all_reduce_mean(loss, env)
            if not torch.isfinite(mean_loss):
                raise self._diverged(f"loss became {mean_loss.item()}", step, phase.name)
            # every gradient dropped, not only the optimiser's: a module outside this phase would
            # otherwise keep the stale gradient of its last phase (counted by the clip's norm in an
            # uninterrupted process, absent after a resume)
            for _, p in self._named_parameters:
                p.grad = None
            loss.backward()
            clip = cfg.grad_clip if phase.grad_clip is None else phase.grad_clip
            if clip > 0:
                metrics["grad_norm"] = torch.nn.utils.clip_grad_norm_(
                    [p for g in optimizer.param_groups for p in g["params"] if p.grad is not None], clip)
            optimizer.step()
            self.suite.after_step(self.modules, sctx, metrics)
            bad = nonfinite_parameters(self._named_parameters)
            if bad:
                raise self._diverged(f"parameters {summarise(bad)} became non-finite (loss "
                                     f"{mean_loss.item():.4g})", step, phase.name)
            self._step_was_finite()
            ctx.resume_started()
            done = step + 1

            if done % cfg.log_every == 0 or done == total:
                scal = {"loss": mean_loss.item(), **{k2: v for k2, v in metrics.items()}}
                scal["lr"] = optimizer.param_groups[0]["lr"]
                self.log.scalars(scal, done, prefix="train/")
                bar.set_postfix(loss=f"{mean_loss.item():.4g}", refresh=False)
            if cfg.hist_every and done % cfg.hist_every == 0:
                self.log.histograms(((f"{n}/{pn}", p) for n, m in self.modules.items()
                                     for pn, p in m.named_parameters()), done)
            if cfg.image_every and done % cfg.image_every == 0 and env.is_main:
                for name, img in self.suite.train_images(self.modules).items():
                    self.log.image(f"train/{name}", img, done)

            evaluated = (cfg.eval_every and done % cfg.eval_every == 0) or done == total \
                or (phase.evaluate_at_end and done == int(bounds[phase_index + 1]))
            stop = False
            if evaluated and type(self.suite).evaluate is not ModelSuite.evaluate:
                stop = self._evaluate(sctx, done, phase_index, optimizer, loop_state, sel)
            if done % cfg.ckpt_every == 0 or done == total or stop:
                self._save_periodic(checkpoint_dict(self.suite, self.modules, step=done,
                                                    optimizer=optimizer, phase_index=phase_index,
                                                    loop_state=loop_state))
            if stop:
                _say(ctx, f"early stop at step {done}: no improvement of {sel[0]} in "
                          f"{cfg.early_stop_patience} evaluations")
                break
            if self._stop_requested.any(env, ctx.device):
                if not (done % cfg.ckpt_every == 0 or done == total):
                    self._save_periodic(checkpoint_dict(self.suite, self.modules, step=done,
                                                        optimizer=optimizer, phase_index=phase_index,
                                                        loop_state=loop_state))
                bar.close()
                raise RunInterrupted(f"stopped by {self._stop_requested.name} after step {done}/{total}; "
                                     f"checkpoint saved. Continue with: python main.py --resume {self.run.path}")
        bar.close()
        self.log.flush()
        return {k: (v.item() if isinstance(v, torch.Tensor) and v.numel() == 1 else v)
                for k, v in metrics.items()}

    def _evaluate(self, sctx: StepContext, done: int, phase_index: int, optimizer,
                  loop_state: dict, sel) -> bool:
        """Evaluate on rank 0, keep best.pt, and decide (on every rank) whether to stop."""
        cfg, env = self.cfg, self.ctx.env
        stop = False
        if env.is_main:
            for m in self.modules.values():
                m.eval()
            with torch.no_grad():
                results = self.suite.evaluate(self.modules, sctx)
            for m in self.modules.values():
                m.train()
            self.log.scalars(results, done, prefix="eval/")
            self.log.append_row("evaluations", {"step": done, **results}, subdir="training")
            if sel is not None:
                if sel[0] not in results:
                    raise KeyError(f"evaluate() returned no {sel[0]!r} (selection metric)")
                value, best = float(results[sel[0]]), loop_state.get("best")
                better = np.isfinite(value) and (best is None or (value > best if sel[1] == "max" else value < best))
                if better:
                    loop_state.update(best=value, best_step=done, evals_since_best=0)
                    self._save("best.pt", checkpoint_dict(self.suite, self.modules, step=done,
                                                          optimizer=optimizer, phase_index=phase_index,
                                                          loop_state=loop_state))
                else:
                    loop_state["evals_since_best"] = loop_state.get("evals_since_best", 0) + 1
                stop = bool(cfg.early_stop_patience) and loop_state["evals_since_best"] >= cfg.early_stop_patience
                loop_state["stopped_early"] = stop
        if env.distributed:
            import torch.distributed as dist

            flag = torch.tensor([1.0 if stop else 0.0])
            dist.broadcast(flag, src=0, group=self._eval_group)
            stop = bool(flag.item())
        return stop


class VisualizationManager:
    """Runs a suite's named visualisations; figures go to ``RUN/figures/viz`` and TensorBoard."""

    def __init__(self, suite: ModelSuite, modules: dict[str, nn.Module], ctx: RunContext, logger: RunLogger):
        self.suite, self.modules, self.ctx, self.log = suite, modules, ctx, logger

    def run(self, names: list[str] | None = None) -> list[Path]:
        names = names or list(self.suite.visualization_names())
        written = []
        for m in self.modules.values():
            m.eval()
        for name in progress(names, self.ctx, desc="visualise"):
            with torch.no_grad():
                figures = self.suite.visualization(name)(self.modules, self.ctx)
            self.ctx.resume_started()
            for fig_name, fig in figures.items():
                label = f"{name}_{fig_name}" if fig_name != name else name
                if isinstance(fig, Animation):
                    path = self.log.animation(label, fig, subdir="viz", ms_per_frame=fig.ms_per_frame)
                else:
                    path = self.log.figure(label, fig, subdir="viz")
                if path:
                    written.append(path)
        self.log.flush()
        return written


class AnalysisManager:
    """Runs a suite's named analyses; CSV to ``RUN/tables/<name>/``, PNG to ``RUN/figures/<name>/``."""

    def __init__(self, suite: ModelSuite, modules: dict[str, nn.Module] | None, ctx: RunContext,
                 logger: RunLogger, recording: Path | None = None):
        self.suite, self.modules, self.ctx, self.log = suite, modules, ctx, logger
        self.recording_path = recording

    def _recording(self) -> RecordingStore | None:
        path = self.recording_path
        if path is None and self.ctx.run is not None:
            path = self.ctx.run.recordings / "activity.zarr"
            if not path.exists():
                return None
        return RecordingStore.open(path) if path is not None else None

    def run(self, names: list[str] | None = None) -> dict[str, AnalysisResult]:
        available = self.suite.analysis_names()
        explicit = names is not None
        names = names or list(available)
        recording = self._recording()
        results, summary = {}, []
        for m in (self.modules or {}).values():
            m.eval()
        for name in progress(names, self.ctx, desc="analyse"):
            fn = self.suite.analysis(name)
            if getattr(fn, "_needs_recording", False) and recording is None:
                msg = (f"analysis {name!r} needs a recording: run --experiment first "
                       "(or give --recording PATH)")
                if explicit:
                    raise UserError(msg)
                _say(self.ctx, f"skipped: {msg}")
                continue
            self.ctx.recording = recording
            reseed(derive_seed(self.suite.cfg.seed, "analysis", name), self.ctx.device)
            try:
                result: AnalysisResult = fn(self.modules, self.ctx)
            except AnalysisSkipped as exc:
                if explicit:
                    raise UserError(f"analysis {name!r}: {exc}") from None
                _say(self.ctx, f"skipped: analysis {name!r}: {exc}")
                continue
            self.ctx.resume_started()
            for tname, frame in result.tables.items():
                self.log.table(tname, frame, subdir=name)
            for fname, fig in result.figures.items():
                if isinstance(fig, Animation):
                    self.log.animation(fname, fig, subdir=name, ms_per_frame=fig.ms_per_frame)
                else:
                    self.log.figure(fname, fig, subdir=name)
            self.log.scalars(result.scalars, 0, prefix=f"analysis/{name}/")
            summary += [{"analysis": name, "quantity": k, "value": float(v)} for k, v in result.scalars.items()]
            results[name] = result
        if summary:
            self.log.table("summary", pd.DataFrame(summary), subdir="analysis")
        self.log.flush()
        return results
