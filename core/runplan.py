"""One place that resolves a run: the run folder, config, checkpoint, data root and weights a
command uses.

``main.py`` parses its arguments and asks :meth:`RunPlan.for_main`; ``analysis_main.py`` asks
:meth:`RunPlan.for_analysis`. The plan is resolved once, before anything is written; the entry
points then build the model, let the plan load its weights and open its run, and run stages.

===============================  ======================  ==============================  ====================
command                          run folder              config                          starting weights
===============================  ======================  ==============================  ====================
``main.py --config P``           new (made once the      preset P + flags                 initial (seed), or the
                                 checks have passed)                                      suite's own source
                                                                                          (e.g. --pretrained)
``main.py --load_model SRC``     new; SRC never written  preset + flags; architecture    SRC's best.pt, else
                                                         keys from SRC's checkpoint      last.pt (or the .pt)
``main.py --resume RUN``         RUN, in place           RUN/config.yaml + earlier       RUN's last.pt
                                                         resumes' overrides + flags;
                                                         architecture from last.pt
``analysis_main.py --run RUN``   RUN, only read          RUN/config.yaml + --set         RUN's best.pt, else
                                                                                          last.pt
===============================  ======================  ==============================  ====================

The stages after training (viz, experiment, analyze) use ``best.pt`` when the model selects a
best model and the run has one -- after training, and with ``--no_train_model`` on a resumed
run -- else the weights in use. The data root is ``--data_root`` when given, else the one the
run was started with (``meta.yaml``), else ``./data``.
"""
from __future__ import annotations

import contextlib
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from core import config as C
from core.checkpoint import checkpoint_dict, load_checkpoint, load_into, save_checkpoint
from core.errors import UserError
from core.phase_check import check_resume
from core.registry import get_suite
from core.resume_note import ResumeNote
from core.runconfig import run_config
from core.rundir import RunDir, resolve_checkpoint
from core.runlock import RunLock

#: how a command uses its run: a new run, one started from --load_model, --resume, analysis_main
MODES = ("new", "load_model", "resume", "analysis")


# -- the config ------------------------------------------------------------------------------

def starting_preset(resume: str | None, config: str | None) -> tuple[dict[str, Any], str | None, RunDir | None]:
    """The preset a ``main.py`` command starts from: ``(values with 'model', source, resumed run)``.

    ``--resume RUN`` takes RUN/config.yaml (checked by :func:`core.runconfig.run_config`), a
    ``--config`` file its preset, neither an empty preset."""
    if resume:
        run = RunDir.existing(resume)
        preset = run_config(run)
        if config:
            raise UserError("--resume takes its config from the run; drop --config")
        return preset, str(run.path / "config.yaml"), run
    if config:
        return C.load_preset(config), config, None
    return {}, None, None


def config_values(preset: dict[str, Any], overrides: dict[str, Any], seed: int | None,
                  resumed: RunDir | None = None) -> dict[str, Any]:
    """The config keys of a command: preset, then (resuming) the earlier resumes' overrides from
    meta.yaml, then the flags, then ``--seed``. A resumed run keeps its seed."""
    values = {k: v for k, v in preset.items() if k != "model"}
    if resumed is not None:  # config.yaml describes the run's first part; meta.yaml the resumes
        values.update(resumed.resume_overrides())
        if seed is not None and seed != values.get("seed", seed):
            raise UserError(f"--seed: a resumed run keeps its seed ({values.get('seed')}); "
                            "start a new run for another seed")
    values.update(overrides)
    if seed is not None:
        values["seed"] = seed
    return values


def arch_from_checkpoint(suite_cls, cfg, ckpt: dict, overrides: dict, source: str):
    """``cfg`` with its architecture keys taken from the checkpoint ``ckpt``; an explicit override
    (``overrides``) that conflicts with the checkpoint is a :class:`UserError`."""
    saved = ckpt.get("config") or {}
    changes = {}
    for key in C.arch_keys(suite_cls.Config):
        if key not in saved:
            continue
        if key in overrides and C.from_dict(suite_cls.Config, {key: overrides[key]}).__dict__[key] != saved[key]:
            raise UserError(f"--{key}: the checkpoint {source} was built with {key}={saved[key]!r}; "
                            "architecture keys cannot change when loading a model")
        changes[key] = saved[key]
    values = {**C.to_dict(cfg, derived=False), **changes}  # derived keys are recomputed
    return C.from_dict(suite_cls.Config, values, source=source)


def run_data_root(given: str | None, run: RunDir | None = None) -> Path:
    """``--data_root`` if given; else the one a run was started with (meta.yaml); else ./data."""
    if given is not None:
        return Path(given)
    stored = run.read_meta().get("data_root") if run is not None else None
    return Path(stored) if stored else Path("data")


def describe(path: Path, ckpt: dict) -> str:
    """How a checkpoint's weights are named in recordings and messages: ``path (step N)``."""
    return f"{path} (step {ckpt.get('step', '?')})"


def resume_command(run: Path, args) -> str:
    """The ``main.py --resume`` line that continues ``run`` with the same stages as ``args``."""
    flags = [("--no_train_model", args.no_train_model), ("--viz", args.viz),
             ("--gen_exp_stim", args.gen_exp_stim), ("--experiment", args.experiment),
             ("--analyze", args.analyze)]
    return " ".join(["python main.py --resume", str(run), *(f for f, on in flags if on),
                     *([f"--viz_type {args.viz_type}"] if args.viz_type != "all" else []),
                     *([f"--only {args.only}"] if args.only else []),
                     *([f"--stimuli {args.stimuli}"] if args.stimuli else [])])


# -- the plan --------------------------------------------------------------------------------

@dataclass
class RunPlan:
    """Which run, config, checkpoint, data root and weights one command uses.

    Made by :meth:`for_main` or :meth:`for_analysis` (which check everything and write nothing);
    then :meth:`load_weights` after the suite has built its modules, :meth:`open_run` to make or
    enter the run folder, :meth:`after_training` once training has ended.
    """

    mode: str                        # one of MODES
    suite_cls: Any                   # the family's ModelSuite class
    model: str                       # as named on the command line or in the config ("snn_dales", "pkg.mod:Class")
    cfg: Any                         # the resolved config (architecture from the starting checkpoint)
    data_root: Path = Path("data")
    overrides: dict[str, Any] = field(default_factory=dict)  # the flags' config keys, as validated
    train: bool = True
    is_main: bool = True             # rank 0 (the one process that writes the run)
    run: RunDir | None = None        # the run resumed / analysed; a new run's once open_run has made it
    start_path: Path | None = None   # the checkpoint the weights start from
    start: dict | None = None        # its contents (read at once for main.py, by load_weights for analyses)
    start_label: str = ""            # how errors name it (--resume: the run as given)
    out_dir: str = "runs"
    run_name: str | None = None
    weights_source: str | None = None  # the suite's own weights (e.g. --pretrained), known once built
    weights: str = ""                  # the weights in use, as recordings name them
    notes: list[str] = field(default_factory=list)  # printed once the run is open
    created: RunDir | None = None    # the run folder this command made
    opened: bool = False

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")

    # ---- resolution
    @classmethod
    def for_main(cls, args, suite_cls, cfg, *, held: contextlib.ExitStack | None = None,
                 is_main: bool = True) -> "RunPlan":
        """The plan of a ``main.py`` command (``args`` from ``main.parse_args``): a resumed run is
        locked in ``held`` (on rank 0) and its last checkpoint read; a --load_model checkpoint is
        found and read; either gives the architecture keys."""
        mode = "resume" if args.resume else "load_model" if args.load_model else "new"
        plan = cls(mode=mode, suite_cls=suite_cls, model=args.model, cfg=cfg, overrides=dict(args.overrides),
                   train=not args.no_train_model, is_main=is_main, out_dir=args.out_dir, run_name=args.run_name)
        if mode == "resume":
            plan.run = RunDir.existing(args.resume)
            if is_main and held is not None:  # one process writes a run at a time
                held.enter_context(RunLock(plan.run.path, "--resume"))
            if plan.run.last_checkpoint.exists():
                plan._start_from(plan.run.last_checkpoint, label=args.resume)
        elif mode == "load_model":
            plan._start_from(resolve_checkpoint(args.load_model))
        plan.data_root = run_data_root(args.data_root, plan.run)
        return plan

    @classmethod
    def for_analysis(cls, run: str | Path, overrides: dict[str, str] | None = None,
                     data_root: str | None = None, *, held: contextlib.ExitStack | None = None) -> "RunPlan":
        """The plan of ``analysis_main.py --run RUN``: model and config from RUN (with ``--set``
        ``overrides``), RUN locked in ``held``, weights from best.pt else last.pt."""
        rundir, saved, suite_cls = cls.run_suite(run)
        if "analyze" not in suite_cls.stages():
            raise UserError(f"model {saved['model']} has no analyses")
        if held is not None:  # one process writes a run at a time
            held.enter_context(RunLock(rundir.path, "--run"))
        values = {k: v for k, v in saved.items() if k != "model"}
        cfg = C.from_dict(suite_cls.Config, {**values, **(overrides or {})}, source=str(rundir.path / "config.yaml"))
        start = next((p for p in (rundir.best_checkpoint, rundir.last_checkpoint) if p.exists()), None)
        return cls(mode="analysis", suite_cls=suite_cls, model=saved["model"], cfg=cfg, run=rundir,
                   data_root=run_data_root(data_root, rundir), overrides=dict(overrides or {}),
                   train=False, start_path=start, opened=True)

    @staticmethod
    def run_suite(run: str | Path) -> tuple[RunDir, dict[str, Any], Any]:
        """``(run folder, its config.yaml, its model's suite class)`` of a finished run."""
        rundir = RunDir.existing(run)
        saved = run_config(rundir)
        return rundir, saved, get_suite(saved["model"])

    def _start_from(self, path: Path, label: str | None = None) -> None:
        self.start_path, self.start = Path(path), load_checkpoint(path)
        self.start_label = label or str(path)
        self.cfg = arch_from_checkpoint(self.suite_cls, self.cfg, self.start, self.overrides, str(path))

    @property
    def resume(self) -> bool:
        return self.mode == "resume"

    @property
    def training_resumes_from(self) -> dict | None:
        """The checkpoint training continues from (a resumed run's last.pt), or None."""
        return self.start if self.resume else None

    @property
    def uses_initial_weights(self) -> bool:
        """No training and no weights from anywhere: the later stages see the initial weights."""
        return not self.train and self.start is None and not self.weights_source

    # ---- weights
    def load_weights(self, suite, modules: dict[str, torch.nn.Module]) -> str:
        """Put the starting weights into the suite's freshly built ``modules``; refuse a resume
        that would rewrite phases already trained. Returns (and keeps) their description."""
        if self.mode == "analysis":
            if self.start_path is None:
                print("note: the run has no checkpoint; analysing the initial weights", file=sys.stderr)
                return self.weights
            self.start, self.start_label = load_checkpoint(self.start_path), str(self.start_path)
            load_into(suite, modules, self.start, self.start_label)
            self.weights = describe(self.start_path, self.start)
            return self.weights
        self.weights_source = suite.weights_source()  # e.g. --pretrained: a published weights file
        self.weights = self.weights_source or f"initial weights (seed {self.cfg.seed})"
        if self.start is not None:
            load_into(suite, modules, self.start, self.start_label)
            self.weights = describe(self.start_path, self.start)
            if self.resume and self.train:
                check_resume(suite, self.start)
        if self.run is not None and not self.train and self.is_main:
            self.weights = self._later_stage_weights(suite, modules, self.notes)
        return self.weights

    def _later_stage_weights(self, suite, modules, notes: list[str] | None = None) -> str:
        """best.pt when the model selects one and the run has it (as the run's first invocation
        used), else the weights in use; the note saying so goes to ``notes`` (printed once the
        checks have passed), else to stderr."""
        best_path = self.run.best_checkpoint
        if suite.selection_metric and best_path.exists():
            best = load_checkpoint(best_path)
            load_into(suite, modules, best, str(best_path))
            note = f"using best checkpoint ({suite.selection_metric[0]}) for later stages"
            if notes is None:
                print(note, file=sys.stderr)
            else:
                notes.append(note)
            return describe(best_path, best)
        return self.weights

    def after_training(self, suite, modules: dict[str, torch.nn.Module]) -> str:
        """Once training has ended (rank 0): the weights the later stages use."""
        if self.is_main:
            self.weights = f"{self.run.last_checkpoint} (end of training)"
            self.weights = self._later_stage_weights(suite, modules)
        return self.weights

    # ---- the run folder
    def open_run(self, suite, modules: dict[str, torch.nn.Module], ctx, held: contextlib.ExitStack,
                 broadcast: Callable[[Any, Any], Any] | None = None) -> RunDir:
        """Make the new run (rank 0; locked in ``held``; its path sent to every rank by
        ``broadcast(obj, env)``) or enter the resumed one; set ``ctx.run`` (and, resuming,
        ``ctx.resume_started``); on rank 0 write a new run's config.yaml and meta.yaml, and the
        copy of --load_model's weights its training starts from."""
        env = ctx.env
        if self.run is None:
            path = None
            if env.is_main:
                self.created = RunDir.create(self.out_dir, self.suite_cls.name, self.run_name)
                held.enter_context(RunLock(self.created.path, "--run_name"))
                path = str(self.created.path)
            self.run = RunDir(broadcast(path, env) if broadcast is not None else path)
        ctx.run = self.run
        self.opened = True
        if self.resume:  # config.yaml stays as the run's first part wrote it; meta.yaml notes the
            # resume and its overrides once it has started well (not if refused or failed)
            ctx.resume_started = ResumeNote(self.run, device=ctx.device, world_size=env.world_size,
                                            overrides=self.overrides, enabled=env.is_main).started
        if env.is_main:
            if not self.resume:
                self.run.write_config({"model": self.model, **C.to_dict(self.cfg, derived=False)})
                parent = str(self.start_path) if self.mode == "load_model" else self.weights_source
                self.run.write_meta(model=self.model, seed=self.cfg.seed, device=ctx.device,
                                    world_size=env.world_size, parent=parent,
                                    extra={"threads": torch.get_num_threads(),
                                           "data_root": str(self.data_root.resolve())})
            if self.mode == "load_model":  # the new run starts from a copy of the loaded weights
                save_checkpoint(checkpoint_dict(suite, modules, step=0), self.run.last_checkpoint)
        return self.run

    @property
    def current(self) -> RunDir | None:
        """The run this command writes, once open (None before)."""
        return self.run if self.opened else None

    def drop_if_empty(self) -> None:
        """Remove the run folder this command made if it holds nothing worth keeping."""
        made = self.created
        if made is not None and not any(made.checkpoints.glob("*.pt")) and not any(made.recordings.iterdir()):
            shutil.rmtree(made.path, ignore_errors=True)
