"""The plug between the generic managers and a model family.

A model package exposes one :class:`ModelSuite` subclass (in ``<package>/suite.py``). The
managers own the loop concerns -- device, seeding, run directory, TensorBoard, progress,
checkpoints, distributed set-up -- and call the suite for the science:

========================  =====================================================
stage (flag)              what the suite provides
========================  =====================================================
training (default)        :meth:`build`, :meth:`loss` (+ optional :meth:`phases`,
                          :meth:`begin_phase`, :meth:`learning_rate`,
                          :meth:`make_optimizer`, :meth:`training_batch`,
                          :meth:`after_step`, :meth:`evaluate`, :meth:`train_images`;
                          a :class:`Phase` may restart its optimiser and ask for an
                          evaluation at its end)
``--viz``                 methods decorated with :func:`visualization`
``--gen_exp_stim``        :meth:`stimulus_set`
``--experiment``          :meth:`record`
``--analyze``             methods decorated with :func:`analysis`
========================  =====================================================

A stage whose hook the suite does not override is reported as unavailable. Suites never
open files or SummaryWriters themselves: they return figures, tables and tensors.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, NamedTuple

import torch
from torch import nn

from core.config import BaseConfig
from core.errors import UserError
from core.resume_note import nothing_to_note
from core.runtime import DistEnv

STAGES = ("train", "viz", "gen_exp_stim", "experiment", "analyze")


class StageUnavailable(UserError):
    """The model family has no such stage."""


class AnalysisSkipped(UserError):
    """An analysis cannot run on what this run holds (e.g. no recording to compare).

    Raised by an analysis; the manager reports it as skipped when every analysis was asked
    for, and as an error (exit status 2) when the user named this analysis with ``--only``."""


@dataclass
class Phase:
    """A stretch of training with its own optimiser (e.g. CordsNet's initialisation steps)."""

    name: str
    steps: int
    grad_clip: float | None = None  # overrides cfg.grad_clip during this phase (0: off)
    #: phase steps (0 < s < steps) at which :meth:`ModelSuite.make_optimizer` makes the optimiser
    #: afresh (its moments reset), as a script that creates a new optimiser per stage or epoch
    restarts: tuple[int, ...] = ()
    #: evaluate when the phase ends (beside every cfg.eval_every steps and the end of training)
    evaluate_at_end: bool = False


@dataclass
class RunContext:
    """What every stage may use: the resolved config, device, where data and outputs live."""

    cfg: Any
    device: torch.device
    env: DistEnv = field(default_factory=DistEnv)
    data_root: Path = Path("data")
    download: bool = False
    run: Any = None  # core.rundir.RunDir or None
    recording: Any = None  # core.store.RecordingStore during analyses that use one
    stages: tuple[str, ...] = ()  # the stages of this invocation (see STAGES), for prepare()
    #: the analyses (--only) and visualisations (--viz_type) selected; None: all of them
    analysis_names: tuple[str, ...] | None = None
    viz_names: tuple[str, ...] | None = None
    #: the managers call this once something of a resumed run has been done (see
    #: core.resume_note): the resume and its overrides are then recorded in meta.yaml
    resume_started: Callable[[], None] = nothing_to_note


@dataclass
class StepContext:
    """One training step. All randomness of the step should come from ``generator`` (or the
    global torch RNG, which the manager reseeds from (seed, step, rank) before each step),
    so that a resumed run repeats an uninterrupted one exactly."""

    step: int
    phase: str
    phase_step: int
    rank: int
    world_size: int
    device: torch.device
    generator: torch.Generator


class Labelled(NamedTuple):
    """An array with named dimensions, the first always ``trial``."""

    values: Any  # torch.Tensor or numpy array
    dims: tuple[str, ...]


@dataclass
class StimulusSet:
    """An experiment's stimuli: arrays with a leading ``trial`` axis plus per-trial labels."""

    inputs: dict[str, Labelled]
    coords: dict[str, Any] = field(default_factory=dict)  # name -> (trial,) array
    attrs: dict[str, Any] = field(default_factory=dict)
    #: written beside the set by ``--gen_exp_stim`` (contact sheets, condition tables)
    figures: dict[str, Any] = field(default_factory=dict)  # name -> matplotlib Figure
    tables: dict[str, Any] = field(default_factory=dict)   # name -> pandas.DataFrame

    @property
    def n_trials(self) -> int:
        return int(next(iter(self.inputs.values())).values.shape[0])


@dataclass
class AnalysisResult:
    """What an analysis hands back for the manager to write (CSV, PNG, TensorBoard)."""

    tables: dict[str, Any] = field(default_factory=dict)   # name -> pandas.DataFrame
    figures: dict[str, Any] = field(default_factory=dict)  # name -> matplotlib Figure
    scalars: dict[str, float] = field(default_factory=dict)


class Animation(list):
    """Frames ``(H, W, 3)`` in [0, 1] that a visualisation or an analysis returns in place of a
    Figure: written as an animated GIF, ``ms_per_frame`` apart."""

    ms_per_frame: int = 300


def visualization(name: str, help: str = ""):
    """Mark a suite method ``fn(self, modules, ctx) -> {name: Figure | Animation}`` as a visualisation."""
    def mark(fn):
        fn._stage = ("viz", name, help or (fn.__doc__ or "").strip().split("\n")[0])
        return fn
    return mark


def analysis(name: str, help: str = "", needs_recording: bool = False):
    """Mark ``fn(self, modules, ctx) -> AnalysisResult`` as an analysis.

    With ``needs_recording=True`` the manager passes the experiment's recording as
    ``ctx.recording`` (a :class:`core.store.RecordingStore`) and refuses to run without one.
    """
    def mark(fn):
        fn._stage = ("analyze", name, help or (fn.__doc__ or "").strip().split("\n")[0])
        fn._needs_recording = needs_recording
        return fn
    return mark


class ModelSuite:
    """Base class of a model family's entry point. Subclass it, set ``name`` and ``Config``."""

    name: ClassVar[str] = "model"
    Config: ClassVar[type] = BaseConfig
    description: ClassVar[str] = ""
    #: ("metric name", "max"|"min"): the evaluation metric that picks best.pt and drives
    #: early stopping; None keeps no best checkpoint.
    selection_metric: ClassVar[tuple[str, str] | None] = None
    #: config keys that act in some phases only (key -> phase names): a resume after those
    #: phases have ended refuses a new value of the key (it would change nothing)
    phase_keys: ClassVar[dict[str, tuple[str, ...]]] = {}

    _visualizations: ClassVar[dict[str, tuple[str, str]]] = {}
    _analyses: ClassVar[dict[str, tuple[str, str]]] = {}

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        viz, ana = {}, {}
        for klass in reversed(cls.__mro__):
            for attr, value in vars(klass).items():
                stage = getattr(value, "_stage", None)
                if stage:
                    (viz if stage[0] == "viz" else ana)[stage[1]] = (attr, stage[2])
        cls._visualizations, cls._analyses = viz, ana

    def __init__(self, ctx: RunContext):
        self.ctx = ctx
        self.cfg = ctx.cfg
        self.device = ctx.device

    # --- which stages exist ---------------------------------------------------
    @classmethod
    def stages(cls) -> tuple[str, ...]:
        have = []
        if cls.loss is not ModelSuite.loss:
            have.append("train")
        if cls._visualizations:
            have.append("viz")
        if cls.stimulus_set is not ModelSuite.stimulus_set:
            have.append("gen_exp_stim")
        if cls.record is not ModelSuite.record:
            have.append("experiment")
        if cls._analyses:
            have.append("analyze")
        return tuple(have)

    @classmethod
    def visualization_names(cls) -> dict[str, str]:
        return {k: h for k, (_, h) in cls._visualizations.items()}

    @classmethod
    def analysis_names(cls) -> dict[str, str]:
        return {k: h for k, (_, h) in cls._analyses.items()}

    def visualization(self, name: str) -> Callable:
        return getattr(self, self._visualizations[name][0])

    def analysis(self, name: str) -> Callable:
        return getattr(self, self._analyses[name][0])

    # --- model and training ----------------------------------------------------
    def prepare(self) -> None:
        """Check inputs (data sets present, files readable) before anything is written.

        Raise :class:`core.errors.UserError` (e.g. ``DatasetUnavailable``) to stop cleanly."""

    def weights_source(self) -> str | None:
        """Where :meth:`build` took its weights from when not from the seed (e.g. a published
        weights file: its path and SHA-256), or None. Recorded as the weights of later stages
        and as ``loaded_from`` in meta.yaml."""
        return None

    def build(self) -> dict[str, nn.Module]:
        """The model's modules by name (all go into checkpoints), on ``self.device``."""
        raise TypeError(f"{type(self).__name__} must define build()")

    def phases(self) -> list[Phase]:
        return [Phase("train", self.cfg.steps)]

    def begin_phase(self, modules: dict[str, nn.Module], phase: Phase) -> None:
        """Called on every rank when ``phase`` starts afresh, before its optimiser is made (not
        when a run resumes inside the phase): e.g. carry weights from one stage to the next.
        Must be a deterministic function of the modules' state."""

    def learning_rate(self, phase: Phase, phase_step: int) -> float | list[float] | None:
        """The learning rate for step ``phase_step`` of ``phase`` (a schedule as a pure function
        of the step, so resume is exact): one for every parameter group, a list with one per
        group, or None to leave the optimiser's own."""
        return None

    def make_optimizer(self, modules: dict[str, nn.Module], phase: Phase) -> torch.optim.Optimizer:
        """Default: Adam over every trainable parameter with ``cfg.lr`` (1e-3 if absent)."""
        params = [p for m in modules.values() for p in m.parameters() if p.requires_grad]
        return torch.optim.Adam(params, lr=getattr(self.cfg, "lr", 1e-3))

    def training_batch(self, step: StepContext) -> Any:
        """The data of one step on this rank (a pure function of ``step``)."""
        return None

    def loss(self, modules: dict[str, nn.Module], batch: Any, step: StepContext
             ) -> tuple[torch.Tensor, dict[str, Any]]:
        """Scalar loss to minimise and metrics to log. Overriding this enables training."""
        raise StageUnavailable(f"model {self.name!r} has no training stage")

    def after_step(self, modules: dict[str, nn.Module], step: StepContext, metrics: dict) -> None:
        """Called after each optimiser step (e.g. to update Lagrange multipliers)."""

    def evaluate(self, modules: dict[str, nn.Module], step: StepContext) -> dict[str, float]:
        """Validation metrics, every ``cfg.eval_every`` steps and at the end."""
        return {}

    def train_images(self, modules: dict[str, nn.Module]) -> dict[str, Any]:
        """Images for TensorBoard: name -> tensor (C, H, W) in [0, 1] or a matplotlib Figure."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        """Suite-owned training state that is not in a module (saved in checkpoints)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

    # --- experiments -----------------------------------------------------------
    def stimulus_set(self, ctx: RunContext) -> StimulusSet:
        """The experiment's stimuli. Overriding this enables ``--gen_exp_stim``."""
        raise StageUnavailable(f"model {self.name!r} has no --gen_exp_stim stage")

    def record(self, modules: dict[str, nn.Module], inputs: dict[str, torch.Tensor],
               ctx: RunContext) -> dict[str, Labelled]:
        """Model activity for a block of trials (inputs already on the device).

        Returns variable name -> :class:`Labelled` with shape ``(block, ...)``.
        Overriding this enables ``--experiment``."""
        raise StageUnavailable(f"model {self.name!r} has no --experiment stage")

    def recording_attrs(self) -> dict[str, Any]:
        """Attributes stored with a new recording (e.g. its time base), beside the stimulus
        set's: what the analyses must read from the recording rather than from the config."""
        return {}

    def control_modules(self) -> tuple[dict[str, nn.Module], str] | None:
        """Modules to record a *control* with, and how to name their weights, or None (default):
        ``--experiment`` then also records the same stimuli with them into
        ``recordings/control.zarr`` (e.g. the untrained model, for analyses that compare)."""
        return None

    def stimulus_shapes(self) -> dict[str, tuple[int, ...]] | None:
        """Per-trial shape each stimulus variable must have for this model (``{name: shape
        without the trial axis}``), checked against a stimulus set before anything is written
        (a set of the same family made for another geometry); None: not checked."""
        return None


def config_class(suite: type[ModelSuite]) -> type:
    cls = suite.Config
    assert dataclasses.is_dataclass(cls), f"{suite.__name__}.Config must be a dataclass"
    return cls
