"""Command-line entry point: pick a model family, a config preset and the stages to run.

    python main.py --config configs/snn_dales_quick.yaml                 # train
    python main.py --config configs/snn_dales_quick.yaml --steps 50 --viz --analyze
    python main.py --model snn_dales --no_train_model --load_model runs/RUN --experiment
    python main.py --resume runs/RUN                                      # continue a crashed run
    python main.py --model snn_dales --help                               # the model's config keys
    torchrun --nproc_per_node=2 main.py --config ... --device cpu         # distributed (DDP)

Stages run in this order: training, --viz, --gen_exp_stim, --experiment, --analyze.
Which run folder, config, checkpoint, data root and weights they use is resolved once by
:class:`core.runplan.RunPlan`; this module parses the command line and runs the stages.
Every value is validated before anything is written; a bad one gives a one-line error
and exit status 2.
"""
from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

import torch

from core import config as C
from core.errors import TrainingDiverged, UserError
from core.registry import FAMILIES, get_suite
from core.rundir import check_out_dir, check_run_name
from core.runplan import RunPlan, config_values, resume_command, starting_preset
from core.suite import ModelSuite, RunContext

GENERAL_KEYS = {"seed"}  # config keys that have their own general flag


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage dump) and exit status 2."""

    def error(self, message: str):  # noqa: D401
        raise UserError(message)


def get_args_parser(suite: type[ModelSuite] | None = None, add_help: bool = True) -> argparse.ArgumentParser:
    """The full parser; with ``suite`` it also carries that model's config keys as flags."""
    p = _Parser(prog="main.py", add_help=add_help, allow_abbrev=False, formatter_class=argparse.RawDescriptionHelpFormatter,
                description="Train, visualise, run experiments on and analyse dynamical models of "
                            "neural circuits. `--model NAME --help` lists that model's config keys.",
                epilog=__doc__.split("\n\n", 1)[1] if __doc__ else None)
    g = p.add_argument_group("what to run")
    g.add_argument("--model", help=f"model family: {', '.join(FAMILIES)} (or package.module:SuiteClass); "
                                   "taken from the preset's 'model:' key when omitted")
    g.add_argument("--config", metavar="FILE", help="YAML preset from configs/ (keys as listed by --help)")
    g.add_argument("--resume", metavar="RUN", help="continue RUN in place from its last checkpoint "
                                                   "(config from RUN/config.yaml; unfinished stages resume)")
    s = p.add_argument_group("stages (training is on unless --no_train_model)")
    s.add_argument("--no_train_model", action="store_true", help="skip training")
    s.add_argument("--load_model", metavar="RUN_OR_CHECKPOINT",
                   help="start from a trained model: a run folder (best.pt, else last.pt) or a .pt file; "
                        "a new run is made and the source is never written to")
    s.add_argument("--viz", action="store_true", help="run visualisations")
    s.add_argument("--viz_type", default="all", metavar="NAMES",
                   help="comma-separated visualisations for --viz (default: all the model has)")
    s.add_argument("--gen_exp_stim", action="store_true", help="generate and save the experiment stimulus set")
    s.add_argument("--experiment", action="store_true",
                   help="record model activity for every stimulus (resumable)")
    s.add_argument("--stimuli", metavar="PATH", help="stimuli.zarr to record with (default: this run's)")
    s.add_argument("--analyze", action="store_true", help="run analyses (tables + figures)")
    s.add_argument("--only", metavar="NAMES", help="comma-separated analyses for --analyze (default: all)")
    r = p.add_argument_group("run")
    r.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda or cuda:N")
    r.add_argument("--seed", type=int, default=None, help="random seed (overrides the preset's seed)")
    r.add_argument("--run_name", help="name of the run folder (default MODEL-DATE-TIME; never reused)")
    r.add_argument("--out_dir", default="runs", help="where run folders are made (default ./runs)")
    r.add_argument("--data_root", default=None,
                   help="root of real data sets (default ./data; a resumed run uses the one it was started with)")
    r.add_argument("--download", action="store_true", help="allow torchvision to download missing data sets")
    if suite is not None:
        m = p.add_argument_group(f"config of model {suite.name} (override any preset key)",
                                 C.help_table(suite.Config) + _stage_help(suite))
        for f in C.config_fields(suite.Config):
            if f.name not in GENERAL_KEYS:
                m.add_argument(f"--{f.name}", dest=f"cfg__{f.name}", default=argparse.SUPPRESS,
                               metavar="VALUE", help=argparse.SUPPRESS)
    return p


def _stage_help(suite: type[ModelSuite]) -> str:
    lines = ["", f"  stages: {', '.join(suite.stages()) or 'none'}"]
    if suite.visualization_names():
        lines.append("  --viz_type: " + "; ".join(f"{k} ({v})" if v else k
                                                  for k, v in suite.visualization_names().items()))
    if suite.analysis_names():
        lines.append("  --only: " + "; ".join(f"{k} ({v})" if v else k for k, v in suite.analysis_names().items()))
    return "\n".join(lines)


def _names(value: str | None, known: dict[str, str], flag: str) -> list[str] | None:
    if value is None or value == "all":
        return None
    names = [v.strip() for v in value.split(",") if v.strip()]
    bad = [n for n in names if n not in known]
    if bad:
        raise UserError(f"{flag}: unknown {', '.join(bad)}; valid: {', '.join(known) or 'none'}")
    return names


def parse_args(argv: list[str] | None = None):
    """Parse and validate everything; returns ``(args, suite_class, config)``. Writes nothing."""
    argv = list(sys.argv[1:] if argv is None else argv)
    pre, _ = get_args_parser(add_help=False).parse_known_args(argv)
    preset, source, resumed = starting_preset(pre.resume, pre.config)
    model = pre.model or preset.get("model")
    if preset.get("model") and pre.model and preset["model"] != pre.model:
        raise UserError(f"--model {pre.model} but {source} is a preset for {preset['model']}")
    if not model:
        if "-h" in argv or "--help" in argv:
            get_args_parser().print_help()
            raise SystemExit(0)
        raise UserError("--model: required (or a --config preset with a 'model:' key); "
                        f"choose one of {', '.join(FAMILIES)}")
    suite = get_suite(model)
    parser = get_args_parser(suite)
    args, extra = parser.parse_known_args(argv)
    if extra:
        known = ", ".join(f"--{f.name}" for f in C.config_fields(suite.Config))
        raise UserError(f"unknown argument(s) {' '.join(extra)} for model {suite.name}; config keys: {known}")
    args.model = model
    overrides = {k[len("cfg__"):]: v for k, v in vars(args).items() if k.startswith("cfg__")}
    values = config_values(preset, overrides, args.seed, resumed)
    cfg = C.from_dict(suite.Config, values, source=source or "")
    args.overrides = {k: C.to_dict(cfg)[k] for k in overrides}  # as validated
    _check_stages(args, suite)
    if not pre.resume:
        if args.run_name:
            check_run_name(args.run_name)
        check_out_dir(Path(args.out_dir))
    return args, suite, cfg


def _check_stages(args, suite: type[ModelSuite]) -> None:
    have = suite.stages()
    wanted = {"train": not args.no_train_model, "viz": args.viz, "gen_exp_stim": args.gen_exp_stim,
              "experiment": args.experiment, "analyze": args.analyze}
    for stage, on in wanted.items():
        if on and stage not in have:
            hint = " (pass --no_train_model)" if stage == "train" else ""
            raise UserError(f"model {suite.name} has no {stage} stage{hint}; it offers: {', '.join(have)}")
    if args.viz_type != "all" and not args.viz:
        raise UserError("--viz_type needs --viz")
    if args.only and not args.analyze:
        raise UserError("--only needs --analyze")
    args.viz_names = _names(args.viz_type, suite.visualization_names(), "--viz_type")
    args.analysis_names = _names(args.only, suite.analysis_names(), "--only")
    if args.load_model and args.resume:
        raise UserError("--load_model and --resume exclude each other: --resume continues RUN in place")
    if args.stimuli and not Path(args.stimuli).exists():
        raise UserError(f"--stimuli: not found: {args.stimuli}")


def _out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, (MemoryError, torch.OutOfMemoryError)):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and ("can't allocate memory" in text or "out of memory" in text)


def main(argv: list[str] | None = None) -> int:
    """Run the command; the run folder's lock (core.runlock) is held until it returns."""
    with contextlib.ExitStack() as held:
        return _main(argv, held)


def _main(argv: list[str] | None, held: contextlib.ExitStack) -> int:
    from core.outputs import RunLogger
    from core.runtime import (broadcast_object, init_distributed, keep_freed_memory_mapped, seed_everything,
                              shutdown_distributed)
    from managers import (AnalysisManager, ExperimentsManager, RunInterrupted, TrainingManager,
                          VisualizationManager, recording_group)

    try:
        args, suite_cls, cfg = parse_args(argv)
        env, device = init_distributed(args.device)
        plan = RunPlan.for_main(args, suite_cls, cfg, held=held, is_main=env.is_main)
    except UserError as exc:
        print(f"main.py: error: {exc}", file=sys.stderr)
        return 2

    cfg = plan.cfg
    keep_freed_memory_mapped()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    try:
        seed_everything(cfg.seed)
        stages = tuple(name for name, on in (("train", not args.no_train_model), ("viz", args.viz),
                                             ("gen_exp_stim", args.gen_exp_stim),
                                             ("experiment", args.experiment), ("analyze", args.analyze)) if on)
        ctx = RunContext(cfg=cfg, device=device, env=env, data_root=plan.data_root,
                         download=args.download, run=plan.run, stages=stages,
                         analysis_names=None if args.analysis_names is None else tuple(args.analysis_names),
                         viz_names=None if args.viz_names is None else tuple(args.viz_names))
        suite = suite_cls(ctx)
        suite.prepare()  # checks inputs (e.g. data sets) before anything is written
        if cfg.early_stop_patience and not suite.selection_metric and not args.no_train_model:
            raise UserError(f"--early_stop_patience: model {suite.name} selects no best model (no selection "
                            "metric), so early stopping would be ignored; set it to 0")
        modules = suite.build()
        plan.load_weights(suite, modules)
        stimuli = Path(args.stimuli) if args.stimuli else None
        if env.is_main and (args.gen_exp_stim or args.experiment or args.stimuli or args.analyze):
            ExperimentsManager(suite, modules, ctx, plan.weights).preflight(
                gen_exp_stim=args.gen_exp_stim, experiment=args.experiment, stimuli=stimuli,
                analyze=args.analyze, check_weights=args.no_train_model)  # after training they are only known then
        run = plan.open_run(suite, modules, ctx, held, broadcast_object)
        logger = RunLogger(run, enabled=env.is_main)
        if env.is_main:
            print(f"run: {run.path}  model: {suite.name}  device: {device}"
                  f"{f'  world: {env.world_size}' if env.distributed else ''}", file=sys.stderr)
            for note in plan.notes:  # printed once every check has passed (never above an error line)
                print(note, file=sys.stderr)

        if plan.train:
            TrainingManager(suite, modules, ctx, logger).fit(resume=plan.training_resumes_from)
            plan.after_training(suite, modules)
        elif plan.uses_initial_weights and env.is_main:
            print("note: no model loaded and no training: later stages use the initial weights",
                  file=sys.stderr)
        # later stages run on rank 0 alone, but a recording: split between the ranks by blocks
        group = recording_group(env) if args.experiment else None
        if env.distributed and group is None:
            shutdown_distributed(barrier=True)
        if not env.is_main and group is None:
            return 0
        exp = ExperimentsManager(suite, modules, ctx, plan.weights, logger)
        failed = None
        if env.is_main:  # rank 0 alone; under a split recording the other ranks wait for its verdict
            try:
                if args.viz:
                    VisualizationManager(suite, modules, ctx, logger).run(args.viz_names)
                if args.gen_exp_stim:
                    exp.generate_stimuli()
            except BaseException as exc:  # noqa: B036 -- re-raised below, after telling the other ranks
                failed = exc
        if group is not None and broadcast_object(failed is not None, env, group=group):
            if not env.is_main:
                return 0  # rank 0 prints why and exits with its status (a failing rank would make
                #           torchrun stop rank 0 before it has said why)
        if failed is not None:
            raise failed
        if args.experiment:
            exp.record(stimuli, group=group)
            control = suite.control_modules()
            if control is not None:
                ExperimentsManager(suite, control[0], ctx, control[1], logger, recording="control").record(
                    stimuli, group=group)
            if env.distributed:
                shutdown_distributed(barrier=True)
            if not env.is_main:
                return 0
        if args.analyze:
            AnalysisManager(suite, modules, ctx, logger).run(args.analysis_names)
        ctx.resume_started()
        logger.close()
        print(f"done: {run.path}", file=sys.stderr)
        return 0
    except UserError as exc:
        print(f"main.py: error: {exc}", file=sys.stderr)
        plan.drop_if_empty()
        return 2
    except RunInterrupted as exc:
        print(f"main.py: {exc}", file=sys.stderr)
        return 143
    except TrainingDiverged as exc:
        print(f"main.py: training diverged: {exc}", file=sys.stderr)
        return 3
    except OSError as exc:
        if not _disk_failure_exit(exc, plan, args):
            raise
        return 2
    except (MemoryError, RuntimeError) as exc:
        if _disk_failure_exit(exc, plan, args):
            return 2
        if not _out_of_memory(exc):
            raise
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        print(f"main.py: error: out of memory on {device}: {first}. Reduce the batch size (or the model) "
              "and run again", file=sys.stderr)
        plan.drop_if_empty()
        return 2
    finally:
        shutdown_distributed()


def _disk_failure_exit(exc: BaseException, plan: RunPlan, args) -> bool:
    """A full or read-only disk: remove temporary files, print one line saying how to go on."""
    from core import diskfull

    if diskfull.disk_failure(exc) is None:
        return False
    run = plan.current
    diskfull.remove_temporaries(run.path if run is not None else None)
    plan.drop_if_empty()
    rerun = resume_command(run.path, args) if run is not None and run.path.exists() else "the same command"
    print(f"main.py: error: {diskfull.message(exc, run.path if run is not None else None, rerun)}",
          file=sys.stderr)
    return True


if __name__ == "__main__":
    sys.exit(main())
