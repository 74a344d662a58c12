"""Run a model's analyses over a finished run and its recorded experiment.

    python analysis_main.py --run runs/RUN                 # every analysis the model has
    python analysis_main.py --run runs/RUN --only NAME     # one (or NAME1,NAME2)
    python analysis_main.py --run runs/RUN --recording other_run/recordings/activity.zarr
    python analysis_main.py --run runs/RUN --list          # the analyses and what they do

The model and its config come from the run (``config.yaml``, ``meta.yaml``); the weights
from ``checkpoints/best.pt`` (else ``last.pt``). Tables go to ``RUN/tables/<analysis>/``
as CSV, figures to ``RUN/figures/<analysis>/`` as PNG and to the run's TensorBoard. The
run's config, checkpoints and recordings are only read, never changed. The run's lock
(``RUN/.lock``) is held meanwhile: a run another process is writing is refused with one line.
"""
from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

from core.errors import UserError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # noqa: D401
        raise UserError(message)


def get_args_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="analysis_main.py", allow_abbrev=False, description=__doc__.split("\n\n")[0],
                epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True, metavar="RUN", help="run folder made by main.py")
    p.add_argument("--only", metavar="NAMES", help="comma-separated analyses (default: all)")
    p.add_argument("--recording", metavar="PATH", help="activity.zarr to analyse (default: RUN's)")
    p.add_argument("--list", action="store_true", help="list the model's analyses and exit")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--data_root", default=None,
                   help="root of real data sets (default: the run's, as main.py was given it; else ./data)")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="override config keys used by the analyses (e.g. --set n_test_sets=10)")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the analyses; the run folder's lock (core.runlock) is held until it returns."""
    with contextlib.ExitStack() as held:
        return _main(argv, held)


def _main(argv: list[str] | None, held: contextlib.ExitStack) -> int:
    from core.outputs import RunLogger
    from core.runplan import RunPlan
    from core.runtime import keep_freed_memory_mapped, resolve_device, seed_everything
    from core.suite import RunContext
    from managers import AnalysisManager

    keep_freed_memory_mapped()
    try:
        args = get_args_parser().parse_args(argv)
        if args.list:
            _, _, suite_cls = RunPlan.run_suite(args.run)
            for name, help_ in suite_cls.analysis_names().items():
                print(f"{name:24s} {help_}")
            return 0
        overrides = {}
        for item in args.set:
            key, sep, value = item.partition("=")
            if not sep:
                raise UserError(f"--set: expected KEY=VALUE, got {item!r}")
            overrides[key] = value
        plan = RunPlan.for_analysis(args.run, overrides, args.data_root, held=held)
        suite_cls, cfg, run = plan.suite_cls, plan.cfg, plan.run
        names = None
        if args.only:
            names = [n.strip() for n in args.only.split(",") if n.strip()]
            bad = [n for n in names if n not in suite_cls.analysis_names()]
            if bad:
                raise UserError(f"--only: unknown {', '.join(bad)}; valid: "
                                f"{', '.join(suite_cls.analysis_names())}")
        recording = Path(args.recording) if args.recording else None
        if recording is not None and not recording.exists():
            raise UserError(f"--recording: not found: {recording}")
        device = resolve_device(args.device)
        if cfg.threads:
            import torch

            torch.set_num_threads(cfg.threads)
        seed_everything(cfg.seed)
        ctx = RunContext(cfg=cfg, device=device, data_root=plan.data_root, run=run)
        suite = suite_cls(ctx)
        suite.prepare()
        modules = suite.build()
        plan.load_weights(suite, modules)
        logger = RunLogger(run)
        AnalysisManager(suite, modules, ctx, logger, recording=recording).run(names)
        logger.close()
        print(f"done: tables in {run.tables}, figures in {run.figures}", file=sys.stderr)
        return 0
    except UserError as exc:
        print(f"analysis_main.py: error: {exc}", file=sys.stderr)
        return 2
    except (OSError, RuntimeError) as exc:
        from core import diskfull

        rerun = " ".join(["python analysis_main.py", *(argv if argv is not None else sys.argv[1:])])
        msg = diskfull.message(exc, args.run if "args" in locals() else None, rerun)
        if msg is None:
            raise
        diskfull.remove_temporaries(args.run if "args" in locals() else None)
        print(f"analysis_main.py: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
