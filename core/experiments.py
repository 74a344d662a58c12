"""The experiments stage: the stimulus set and the recordings of model activity.

:class:`ExperimentsManager` writes a run's stimulus set (``RUN/recordings/stimuli.zarr``)
and records the model's activity for every stimulus into a chunked zarr store, block by
block, so a crash loses at most the block in flight and a rerun resumes. ``managers.py``
re-exports it beside the other managers (``from managers import ExperimentsManager``).
"""
from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import numpy as np
import torch
from torch import nn

from core.errors import UserError
from core.health import weights_fingerprint
from core.outputs import RunLogger, to_numpy
from core.progress import progress
from core.progress import say as _say
from core.runtime import derive_seed, reseed
from core.store import RecordingStore
from core.suite import ModelSuite, RunContext


class ExperimentsManager:
    """Stimulus sets and recordings of model activity, resumable block by block.

    A stimulus set carries a random ``stimulus_id``; a recording stores the id of the set it
    was made from and the fingerprint of the weights that made it (``weights_sha256``), so a
    resumed recording continues only with the same stimuli and the same weights, wherever the
    run folder has been moved. :meth:`preflight` makes every such check before the run
    writes anything.
    """

    def __init__(self, suite: ModelSuite, modules: dict[str, nn.Module] | None, ctx: RunContext,
                 weights_source: str | None = None, logger: RunLogger | None = None, recording: str = "activity"):
        self.suite, self.modules, self.ctx = suite, modules, ctx
        self.weights_source = weights_source
        self.log = logger
        self.recording = recording     # activity (the model's) or control (the suite's control modules)

    @property
    def stimuli_path(self) -> Path:
        return self.ctx.run.recordings / "stimuli.zarr"

    @property
    def activity_path(self) -> Path:
        return self.ctx.run.recordings / f"{self.recording}.zarr"

    # -- checks before anything is written --------------------------------------------
    def open_stimuli(self, path: Path) -> RecordingStore:
        """Open a stimulus set for recording; refuse one that is not usable by this model."""
        stim = RecordingStore.open(path)
        attrs = stim.attrs
        if attrs.get("kind") != "stimuli":
            raise UserError(f"--stimuli: {path} is not a stimulus set (kind={attrs.get('kind')!r}); "
                            "give a stimuli.zarr written by --gen_exp_stim")
        if attrs.get("model") != self.suite.name:
            raise UserError(f"--stimuli: {path} is a stimulus set of model {attrs.get('model')!r}, "
                            f"not {self.suite.name!r}")
        try:
            complete = stim.complete
            for name in stim.variables:
                stim.read(name, slice(0, 1))
            stim.coords  # noqa: B018  (reads them)
        except UserError:
            raise
        except Exception as exc:
            raise UserError(f"--stimuli: cannot read {path}: {type(exc).__name__}: {exc}") from None
        if not complete:
            raise UserError(f"stimulus set {path} is incomplete; regenerate it with --gen_exp_stim")
        self._check_geometry(stim, path)
        return stim

    def _check_geometry(self, stim: RecordingStore, path: Path) -> None:
        """The set's per-trial shapes are those this model takes (:meth:`ModelSuite.stimulus_shapes`)."""
        want = self.suite.stimulus_shapes() or {}
        for name, shape in want.items():
            have = stim.shape(name)[1:] if name in stim.variables else None
            if have != tuple(shape):
                got = f"{name} of shape {have}" if have is not None else f"no {name!r}"
                raise UserError(f"--stimuli: {path} holds {got} per trial, but this {self.suite.name} model "
                                f"takes {tuple(shape)}: the set was made for another geometry; generate one "
                                "for this model with --gen_exp_stim")

    def preflight(self, *, gen_exp_stim: bool, experiment: bool, stimuli: Path | None,
                  check_weights: bool = True, analyze: bool = False) -> None:
        """Check the experiment stages of this invocation against what the run already holds."""
        run_has_recording = self.ctx.run is not None and self.activity_path.exists()
        if gen_exp_stim and run_has_recording:
            raise UserError(
                f"--gen_exp_stim: {self.ctx.run.path} already holds a recording made from its stimulus set; "
                "regenerating the stimuli would orphan it. Record new stimuli in a new run "
                f"(--no_train_model --load_model {self.ctx.run.path} --gen_exp_stim --experiment) "
                "or move recordings/ away first")
        if stimuli is not None:
            self.open_stimuli(stimuli)
        source = stimuli or (self.stimuli_path if self.ctx.run is not None else None)
        if experiment and not gen_exp_stim and source is not None and source.exists():
            self.open_stimuli(source)  # verified now: a damaged set stops the run before training
        if analyze and run_has_recording and not experiment:
            RecordingStore.open(self.activity_path)  # verified now, not after training
        if experiment and run_has_recording:
            act = self._open_activity()
            if not gen_exp_stim and source.exists():
                self._check_same_stimuli(act, self.open_stimuli(source), source)
            if check_weights:
                self._check_same_weights(act)

    def _open_activity(self) -> RecordingStore:
        try:
            return RecordingStore.open(self.activity_path, mode="r+")
        except UserError as exc:
            raise UserError(f"{exc}; move {self.activity_path} away to record afresh") from None

    def _check_same_stimuli(self, act: RecordingStore, stim: RecordingStore, path: Path) -> None:
        want = act.attrs.get("stimuli_id")
        same = (stim.attrs.get("stimulus_id") == want) if want else \
            (act.attrs.get("stimuli") == str(path.resolve()))  # recordings made before stimulus ids
        if act.n_trials != stim.n_trials or not same:
            raise UserError(f"{self.activity_path} belongs to another stimulus set than {path}; "
                            "move it away or record in a new run")

    def _check_same_weights(self, act: RecordingStore, have: str | None = None) -> None:
        want = act.attrs.get("weights_sha256")
        have = have or weights_fingerprint(self.modules or {})
        if want and want != have:
            made = act.attrs.get("weights_source") or "other weights"
            raise UserError(
                f"{self.activity_path} was recorded with {made} (weights {want[:12]}), but the weights "
                f"loaded now ({self.weights_source or 'this invocation'}) are {have[:12]}: continuing "
                "would mix two models in one recording. Load the same checkpoint, or record in a new run")

    # -- the stages --------------------------------------------------------------------
    def generate_stimuli(self, stage: bool = True) -> Path:
        """Write the suite's stimulus set to ``RUN/recordings/stimuli.zarr`` (replacing an
        unused one only once the new set is completely written). ``stage``: the
        ``--gen_exp_stim`` stage itself, which starts a resume (the set a recording makes for
        itself does not: the recording's first block does)."""
        stim = self.suite.stimulus_set(self.ctx)
        for name, v in stim.inputs.items():  # refused where made: never written, never recorded
            values = to_numpy(v.values)
            if values.dtype.kind in "fc" and not np.isfinite(values).all():
                n = int((~np.isfinite(values)).sum())
                raise UserError(f"--gen_exp_stim: the stimulus set's {name!r} has {n} NaN or infinite value(s) "
                                f"of {values.size}; check the stimulus keys of the config (--model "
                                f"{self.suite.name} --help)")
        block = self.suite.cfg.record_batch
        final = self.stimuli_path
        tmp = final.with_name(f".{final.name}.partial")
        if tmp.exists():
            shutil.rmtree(tmp)
        store = RecordingStore.create(tmp, stim.n_trials, coords=stim.coords,
                                      attrs={**stim.attrs, "kind": "stimuli", "model": self.suite.name,
                                             "stimulus_id": uuid.uuid4().hex},
                                      chunk_trials=block)
        dims = {k: v.dims for k, v in stim.inputs.items()}
        for start in progress(range(0, stim.n_trials, block), self.ctx, desc="write stimuli"):
            sl = slice(start, min(start + block, stim.n_trials))
            store.write(start, {k: to_numpy(v.values[sl]) for k, v in stim.inputs.items()}, dims)
        if stage:
            self.ctx.resume_started()
        if final.exists():
            old = final.with_name(f".{final.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
        if self.log is not None:
            for name, fig in stim.figures.items():
                self.log.figure(name, fig, subdir="stimuli")
            for name, frame in stim.tables.items():
                self.log.table(name, frame, subdir="stimuli")
        _say(self.ctx, f"stimuli: {stim.n_trials} trials -> {final}")
        return final

    def record(self, stimuli: Path | None = None, group=None) -> Path:
        """Record activity for every trial of the stimulus set; resumes an unfinished recording.

        Under torchrun with ``group`` (a process group of every rank; see :func:`recording_group`),
        every rank calls this: rank 0 opens or creates the store and commits every block, and the
        pending blocks are recorded by the ranks in turn, round by round (block ``i`` of a round by
        rank ``i``), each with the seed of its block: the same recording as one process makes, bit
        for bit, and resumable after any round."""
        env = self.ctx.env
        if group is not None and env.distributed:
            import torch.distributed as dist

            box = [None]
            if env.is_main:
                try:
                    box = [self._open_recording(stimuli)]
                except UserError as exc:
                    box = [("error", str(exc))]
            dist.broadcast_object_list(box, src=0, group=group)
            if box[0][0] == "error":
                if env.is_main:
                    raise UserError(box[0][1])
                return self.activity_path
            stim_path, pending = box[0]
            if not pending:
                return self.activity_path
            stim = self.open_stimuli(Path(stim_path)) if not env.is_main else self._stim
            return self._record_blocks(stim, pending, group)
        stim, pending = self._open_recording(stimuli, keep=True)
        return self._record_blocks(stim, pending, None) if pending else self.activity_path

    def _open_recording(self, stimuli: Path | None, keep: bool = False):
        """Rank 0's part before the blocks: the stimulus set (made if missing) and the recording
        (opened and checked, or created); returns the set's path and the pending blocks, or the
        set itself with ``keep``."""
        stimuli = Path(stimuli) if stimuli else self.stimuli_path
        if not stimuli.exists():
            _say(self.ctx, "no stimulus set in this run yet: generating it first")
            stimuli = self.generate_stimuli(stage=False)
        stim = self.open_stimuli(stimuli)
        block = self.suite.cfg.record_batch
        fingerprint = weights_fingerprint(self.modules or {})
        if self.activity_path.exists():
            act = self._open_activity()
            self._check_same_stimuli(act, stim, stimuli)
            self._check_same_weights(act, fingerprint)
            if act.complete:
                _say(self.ctx, f"recording already complete: {self.activity_path}")
                self._act, self._stim = act, stim
                return (stim if keep else str(stimuli)), []
        else:
            inherited = {k: v for k, v in stim.attrs.items()
                         if k not in ("n_trials", "chunk_trials", "stimulus_id", "kind")}
            try:  # relative to the recording when both are in the run, so a moved run still resumes
                where = os.path.relpath(stimuli.resolve(), self.activity_path.parent.resolve())
            except ValueError:
                where = str(stimuli.resolve())
            act = RecordingStore.create(self.activity_path, stim.n_trials, coords=stim.coords,
                                        attrs={**inherited, "kind": "activity", "model": self.suite.name,
                                               "stimuli": where, "stimuli_id": stim.attrs.get("stimulus_id"),
                                               "weights_sha256": fingerprint,
                                               "weights_source": self.weights_source,
                                               **self.suite.recording_attrs()},
                                        chunk_trials=block)
        pending = act.pending(block)
        if len(pending) < -(-stim.n_trials // block):
            _say(self.ctx, f"resuming recording: {len(pending)} block(s) of {block} trials left")
        self._act, self._stim = act, stim
        return (stim if keep else str(stimuli)), pending

    def _record_block(self, stim: RecordingStore, start: int, stop: int) -> tuple[dict, dict]:
        """One block's activity (numpy arrays by variable, and their dims), or a UserError."""
        inputs = {k: torch.as_tensor(stim.read(k, slice(start, stop))).to(self.ctx.device)
                  for k in stim.variables}
        reseed(derive_seed(self.suite.cfg.seed, "record", start), self.ctx.device)
        with torch.no_grad():
            out = self.suite.record(self.modules, inputs, self.ctx)
        values = {k: to_numpy(v.values) for k, v in out.items()}
        bad = [k for k, v in values.items() if v.dtype.kind in "fc" and not np.isfinite(v).all()]
        if bad:
            raise UserError(f"the model produced non-finite {', '.join(bad)} for trials {start}-{stop - 1}; "
                            "nothing of this block was written (check the weights: "
                            f"{self.weights_source or 'as loaded'})")
        return values, {k: v.dims for k, v in out.items()}

    def _record_blocks(self, stim: RecordingStore, pending: list, group) -> Path:
        """Record the ``pending`` blocks (all of them in one process; round by round under torchrun,
        rank 0 committing each round in order)."""
        env = self.ctx.env
        world = env.world_size if group is not None else 1
        for m in self.modules.values():
            m.eval()
        rounds = [pending[i:i + world] for i in range(0, len(pending), world)]
        for blocks in progress(rounds, self.ctx, desc="record" if world == 1 else f"record ({world} ranks)"):
            mine = blocks[env.rank] if world > 1 and env.rank < len(blocks) else None
            if world == 1:
                results = [self._record_block(stim, *blocks[0])]
            else:
                import torch.distributed as dist

                try:
                    result = self._record_block(stim, *mine) if mine is not None else None
                except UserError as exc:
                    result = ("error", str(exc))
                every = [None] * world if env.is_main else None
                dist.gather_object(result, every, dst=0, group=group)
                results = every[:len(blocks)] if env.is_main else []
                errors = [r[1] for r in results if isinstance(r, tuple) and r[0] == "error"]
                box = [errors[0] if errors else None]
                dist.broadcast_object_list(box, src=0, group=group)
                if box[0] is not None:
                    if env.is_main:
                        raise UserError(box[0])
                    return self.activity_path
            for (start, _), (values, dims) in zip(blocks, results):
                self._act.write(start, values, dims)
            if env.is_main:
                self.ctx.resume_started()
        if env.is_main:
            _say(self.ctx, f"recording: {self._act.n_trials} trials, {_size(self.activity_path)} -> "
                           f"{self.activity_path}")
        return self.activity_path


def recording_group(env):
    """A gloo process group of every rank for a recording split between them (made by every
    rank), with a long timeout: the other ranks wait while rank 0 alone visualises and writes the
    stimuli. None in one process."""
    if not env.distributed:
        return None
    from datetime import timedelta

    import torch.distributed as dist

    return dist.new_group(backend="gloo", timeout=timedelta(days=7))


def _size(path: Path) -> str:
    """Bytes on disk under ``path``, for people (e.g. ``1.3 GiB``)."""
    n = sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024

