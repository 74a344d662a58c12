"""Settings of the cordsnet family (defaults: the published ImageNet R8 model and pipeline).

The architecture keys (``arch=True``) fix the shapes of the weights: depth, dataset (input
channels and classes) and input size (the per-unit bias maps are ``(C, H, W)``). The time
course is in Euler steps of ``alpha = dt / tau`` (published: dt = 2 ms, tau = 10 ms).

Training is either the published initialisation pipeline (``pipeline: init``), five
phases that each start from the previous one's weights --

1. ``cnn``: the equivalent feed-forward CNN (SGD, three learning-rate stages, a new SGD
   each; R8 starts from torchvision's ImageNet ResNet-18 with ``resnet18_weights: torchvision``),
2. ``inversion``: after batch-norm folding, R and c of every area fitted so that the linear
   RNN's fixed point equals the CNN's pre-activation (truncated Neumann series),
3. ``linear``: the linear RNN trained on the task,
4. ``anneal``: the within-area slope lowered from 0.95 to 0 in steps of 0.05, a new AdamW
   at each level,
5. ``finetune``: the full model with blank / image / blank time course --

or direct training of the full model from random weights (``pipeline: direct``: phase 5
alone, the paper's control). Batches are global: each of N torchrun processes draws 1/N of
every step's batch, so a config trains the same on any number of processes that divides it.
Each phase ends with an evaluation on the whole test set.
"""
from __future__ import annotations

from dataclasses import dataclass

from core.config import BaseConfig, param
from core.errors import UserError

#: dataset name -> (input channels, classes), as in the published model; ``digits`` is the
#: embedded offline set (scikit-learn's handwritten digits, upsampled).
DATASETS: dict[str, tuple[int, int]] = {
    "imagenet": (3, 1000),
    "cifar100": (3, 100),
    "cifar10": (3, 10),
    "mnist": (1, 10),
    "fashion_mnist": (1, 10),
    "digits": (1, 10),
}

PHASES = ("cnn", "inversion", "linear", "anneal", "finetune")

#: torchvision's ImageNet ResNet-18 weights file (``ResNet18_Weights.IMAGENET1K_V1``), which
#: ``resnet18_weights: torchvision`` reads from torch's hub cache
RESNET18_FILE = "resnet18-f37072fd.pth"
#: values of ``resnet18_weights`` that name no file: no ResNet start, or torchvision's weights
RESNET18_NAMED = ("", "none", "torchvision")


@dataclass
class CordsNetConfig(BaseConfig):
    """Config of CordsNet (R2/R4/R6/R8), its training pipeline, experiments and analyses."""

    # architecture
    depth: int = param(8, "number of recurrent areas (R2, R4, R6, R8)", choices=[2, 4, 6, 8], arch=True)
    dataset: str = param("imagenet", "data set; sets input channels and classes (digits: embedded, offline)",
                         choices=list(DATASETS), arch=True)
    input_size: int = param(224, "input image side in pixels (published: 224; area sides follow)",
                            min=8, arch=True)

    # dynamics and time course
    alpha: float = param(0.2, "Euler step dt / tau (published 0.2: dt 2 ms, tau 10 ms)", min=1e-6, max=1.0)
    blank_steps: int = param(100, "steps without an image before the stimulus (no gradient; "
                                  "the spontaneous state)", min=0)
    stimulus_steps: int = param(100, "steps with the image shown", min=1)
    post_blank_steps: int = param(100, "blank steps after the stimulus (published fine-tuning: 100)", min=0)

    # training pipeline
    ddp_find_unused: bool = param(True, "tell DistributedDataParallel that some parameters get no gradient "
                                        "(each phase trains a different part of the model)")
    pipeline: str = param("init", "init: the published 5-phase initialisation pipeline; direct: train the "
                                  "full model from random weights (the paper's control)", choices=["init", "direct"])
    cnn_steps: int = param(0, "phase 1 steps: the equivalent CNN (split in three lr stages)", min=0)
    inversion_steps: int = param(0, "phase 2 steps: fit R, c to the folded CNN (inversion)", min=0)
    linear_steps: int = param(0, "phase 3 steps: the linear RNN", min=0)
    anneal_steps: int = param(0, "phase 4 steps: anneal the slope 0.95 -> 0 (split in anneal_levels parts)", min=0)
    finetune_steps: int = param(1000, "phase 5 steps: the full model (the only phase of pipeline: direct)", min=0)
    steps: int = param(1000, "total steps (derived: the sum of the phases' steps)", min=0, derived=True,
                       instead="the phases' --cnn_steps, --inversion_steps, --linear_steps, --anneal_steps, "
                               "--finetune_steps")
    batch_size: int = param(256, "training images per step of all processes together (the global batch; each "
                                 "of N torchrun processes draws batch_size / N) in every phase unless "
                                 "phase_batch_sizes says otherwise, and the batch of evaluations, recordings "
                                 "and analyses", min=1)
    phase_batch_sizes: list[int] = param([], "global training batch (all processes together) of each phase, in "
                                             "the order cnn, inversion, linear, anneal, finetune ([]: batch_size); "
                                             "each is split evenly between the processes, so a preset optimises "
                                             "the same on 1, 2 or 4. Published: 256 (one process), 128 (64 on "
                                             "each of 2 GPUs), 32, 8, 8 (8, 2, 2 on each of 4 GPUs)", min=1)
    workers: int = param(2, "data-loading worker processes for real data sets (0: in the main process)", min=0)
    augment: bool = param(True, "the published training augmentation (RandAugment / affine / elastic)")
    mix: str = param("auto", "CutMix or MixUp per batch in every phase, the inversion included (its images): "
                           "auto (as published: F-MNIST, CIFAR), on, off",
                     choices=["auto", "on", "off"])
    precision: str = param("fp32", "the model's forward in training and evaluation: fp32, or bf16 (convolutions "
                                   "and matrix products under bfloat16 autocast; rates, losses, weights and the "
                                   "optimiser stay float32)", choices=["fp32", "bf16"])
    cnn_lr: float = param(0.1, "phase 1 SGD learning rate of the first stage (then /10, /100)", min=0.0)
    cnn_momentum: float = param(0.9, "phase 1 SGD momentum", min=0.0, max=1.0)
    cnn_weight_decay: float = param(1e-4, "phase 1 SGD weight decay", min=0.0)
    cnn_warmup: int = param(100, "linear warm-up steps (from 1/3 of the lr) at the start of each phase-1 stage",
                            min=0)
    inversion_lr: float = param(1e-4, "phase 2 AdamW learning rate", min=0.0)
    inversion_clip: float = param(1e-3, "phase 2 gradient-norm clip", min=0.0)
    inversion_penalty: float = param(10.0, "phase 2 weight of the dropped Neumann term |R^3 (Wa + c)|^2", min=0.0)
    rnn_lr: float = param(1e-5, "phases 3-5 AdamW learning rate", min=0.0)
    rnn_clip: float = param(1e-4, "phases 3-5 gradient-norm clip", min=0.0)
    anneal_start: float = param(0.95, "phase 4 first slope of the within-area nonlinearity", min=0.0, max=1.0)
    anneal_levels: int = param(20, "phase 4 number of slope levels (0.95, 0.90, ..., 0)", min=1)
    loss_steps: int = param(30, "the last N stimulus steps enter the loss, weighted by logspace(-3, 0, N)", min=1)
    spont_steps: int = param(10, "the last N post-stimulus steps are pulled to the spontaneous state", min=0)
    spont_weight: float = param(1e-3, "weight of that spontaneous-state MSE (phases 4-5)", min=0.0)
    linear_blank: bool = param(False, "phase 3 also runs the blank before the image (published: no; the "
                                      "linear RNN starts from rest)")
    pretrained: str = param("", "a published CordsNet state dict (e.g. cordsnetr8.pth) loaded into the model "
                                "before anything else ('' none)")
    resnet18_weights: str = param("", "the phase-1 CNN's start: a torchvision ResNet-18 state dict mapped block by "
                                      "block (depth 8); 'torchvision': as published, torchvision's ImageNet "
                                      f"weights ({RESNET18_FILE} in torch's hub cache, TORCH_HOME/hub/"
                                      "checkpoints) at depth 8 and random weights at depths 2-6; "
                                      "'' or 'none': random weights")
    n_eval: int = param(512, "test images of the evaluations during a phase (accuracy_subset) and of the "
                                 "analyses; each phase ends with the whole test set (test_accuracy_full)", min=1)

    # experiments
    n_orientations: int = param(36, "grating orientations in [-90, 90) for --gen_exp_stim", min=3)
    n_phases: int = param(4, "spatial phases per orientation", min=1)
    grating_cycles: float = param(4.0, "grating cycles across the image", min=0.1)
    grating_contrast: float = param(1.0, "grating contrast (0..1)", min=0.0, max=1.0)
    stimulus_folder: str = param("", "record the model's responses to your own images (a folder of image "
                                     "files) instead of gratings ('' gratings)")
    own_image_fit: str = param("crop", "how --stimulus_folder images become input_size squares: crop (published "
                                       "process_image: the shorter side resized, the centre cropped, so a "
                                       "non-square image loses the ends of its longer side), pad (the longer side "
                                       "resized, the rest filled with the data set's mean colour, the blank "
                                       "screen: nothing lost), none (resized only; a non-square image is "
                                       "refused)", choices=["crop", "pad", "none"])
    record_areas: list[int] = param([], "areas recorded by --experiment (0-based; [] all)", min=0)
    record_stride: int = param(5, "record every N-th time step", min=1)
    record_pool: int = param(1, "average-pool recorded rates by N x N pixels (1: every unit)", min=1)

    # analyses
    noise_levels: list[float] = param([0.0, 0.25, 0.5, 1.0, 2.0], "input-noise levels (x pixel std) for the "
                                                                   "robustness analysis", min=0.0)
    robustness_images: int = param(256, "test images of the robustness analysis (at most n_eval); its 95 % "
                                        "intervals are over these images", min=2)
    bootstrap_resamples: int = param(2000, "bootstrap resamples of the robustness analysis' intervals", min=100)
    n_eigs: int = param(20, "leading eigenvalues per area", min=1)
    arnoldi_iters: int = param(300, "Arnoldi iterations for areas too large for a dense matrix", min=2)
    arnoldi_restarts: int = param(10, "Krylov-Schur restarts after them until the leading n_eigs Ritz values "
                                      "converge (0: the published plain Arnoldi; its residuals are reported)",
                                  min=0)
    dense_limit: int = param(4096, "areas with at most this many units use the explicit matrix", min=1)
    power_trials: int = param(32, "parallel power-iteration trials for the top eigenvector", min=1)
    power_iters: int = param(500, "power-iteration steps", min=1)
    n_trajectories: int = param(8, "images whose autonomous trajectories are projected by PCA", min=2)

    def check(self) -> None:
        if self.dataset not in DATASETS:  # guarded by choices; kept for direct construction
            raise UserError(f"--dataset: expected one of {', '.join(DATASETS)}, got {self.dataset!r}")
        if self.pipeline == "direct" and any(getattr(self, f"{p}_steps") for p in PHASES[:4]):
            raise UserError("pipeline: direct trains only the full model; set cnn_steps, inversion_steps, "
                            "linear_steps and anneal_steps to 0 (or use pipeline: init)")
        if self.loss_steps > self.stimulus_steps:
            raise UserError(f"--loss_steps ({self.loss_steps}) cannot exceed --stimulus_steps "
                            f"({self.stimulus_steps})")
        if self.spont_steps > self.post_blank_steps and self.spont_weight > 0 and self.finetune_steps:
            raise UserError(f"--spont_steps ({self.spont_steps}) cannot exceed --post_blank_steps "
                            f"({self.post_blank_steps}); set spont_weight 0 to train without it")
        if self.resnet18_weights not in RESNET18_NAMED and self.depth != 8:
            raise UserError("--resnet18_weights maps ResNet-18's eight blocks: it needs depth 8 "
                            "('torchvision' starts depths 2-6 from random weights, as published)")
        if self.phase_batch_sizes and len(self.phase_batch_sizes) != len(PHASES):
            raise UserError(f"--phase_batch_sizes: give {len(PHASES)} sizes ({', '.join(PHASES)}), "
                            f"got {self.phase_batch_sizes}")
        if not self.noise_levels:
            raise UserError("--noise_levels: give at least one level (e.g. 0,0.5,1); an empty list makes an "
                            "empty robustness table")
        if self.grating_cycles > self.input_size / 2:
            raise UserError(f"--grating_cycles: at most {self.input_size / 2:g} (half the {self.input_size}-px "
                            f"image: two pixels per cycle), got {self.grating_cycles:g}")
        bad = [a for a in self.record_areas if a >= self.depth]
        if bad:
            raise UserError(f"--record_areas: areas are 0..{self.depth - 1}, got {bad}")
        self.steps = self.phase_steps_total

    @property
    def phase_steps(self) -> dict[str, int]:
        """Steps of each phase that runs, in order."""
        names = PHASES if self.pipeline == "init" else ("finetune",)
        return {p: getattr(self, f"{p}_steps") for p in names if getattr(self, f"{p}_steps") > 0}

    def phase_batch(self, phase: str) -> int:
        """Global training batch of ``phase`` (all processes together)."""
        return self.phase_batch_sizes[PHASES.index(phase)] if self.phase_batch_sizes else self.batch_size

    def rank_batch(self, phase: str, world_size: int) -> int:
        """Training batch of ``phase`` drawn by each of ``world_size`` processes (the global
        batch split evenly; :meth:`check_world_size` refuses a world size that does not divide it)."""
        return self.phase_batch(phase) // world_size

    def check_world_size(self, world_size: int) -> None:
        """Refuse a number of processes that does not divide every running phase's global batch."""
        for phase in self.phase_steps:
            batch = self.phase_batch(phase)
            if batch % world_size:
                key = "--phase_batch_sizes" if self.phase_batch_sizes else "--batch_size"
                raise UserError(f"{key}: the {phase} phase's global batch of {batch} images does not split "
                                f"evenly between {world_size} processes; run a number of processes that "
                                f"divides it (the batch is global: each process draws batch / processes)")

    @property
    def phase_steps_total(self) -> int:
        return sum(self.phase_steps.values())

    @property
    def in_channels(self) -> int:
        return DATASETS[self.dataset][0]

    @property
    def n_classes(self) -> int:
        return DATASETS[self.dataset][1]

    @property
    def total_steps(self) -> int:
        return self.blank_steps + self.stimulus_steps + self.post_blank_steps

