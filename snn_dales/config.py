"""Every setting of the snn_dales family.

Defaults: the source document's values for the model and the task; the training scheme
defaults to fresh samples, per-sample phase offsets, random signs and best-validation
weights with early stopping. ``configs/snn_dales_paper.yaml`` is the source's scheme (one
fixed training set, per-dataset offsets, the first units inhibitory, all 50 epochs and the
final weights: ``keep_weights: final``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from core.config import BaseConfig, param
from core.errors import UserError


@dataclass
class SNNDalesConfig(BaseConfig):
    """Config of the sound-localisation SNN under Dale's law.

    One optimisation step is one batch; an epoch is ``batches_per_epoch`` steps, so the
    source's 50 epochs of 64 batches are ``steps: 3200`` with ``eval_every: 64``.
    """

    # training loop (BaseConfig keys with this family's defaults)
    steps: int = param(3200, "optimisation steps (one batch each); epochs = steps / batches_per_epoch", min=0)
    eval_every: int = param(64, "validate every N steps (set to batches_per_epoch: once per epoch)", min=0)
    early_stop_patience: int = param(10, "stop after this many validations without a better val_acc (0: never; "
                                         "needs keep_weights: best)", min=0)
    keep_weights: str = param("best", "weights kept after training and used by later stages (and sweeps): the "
                                      "best validation accuracy's (best.pt), or the final step's (source; no "
                                      "best.pt, no early stopping)", choices=["best", "final"])
    ckpt_every: int = param(640, "write a checkpoint every N steps (and always at the end)", min=1)
    log_every: int = param(16, "log training scalars every N steps", min=1)
    threads: int = param(1, "torch CPU threads of this run (0: torch's default, one per core). "
                            "One thread trained the quick preset 4.4x faster than two on a loaded 2-core CPU; "
                            "results are bitwise reproducible only for the same thread count", min=0)

    # stimulus
    n_per_ear: int = param(100, "auditory-nerve fibres per ear", min=1, arch=True)
    duration_steps: int = param(100, "time steps per stimulus", min=2)
    dt_ms: float = param(1.0, "time step in ms", min=1e-6)
    rate_max_hz: float = param(600.0, "peak Bernoulli firing rate of a fibre (Hz)", min=0.0)
    tone_hz: float = param(20.0, "tone frequency (Hz)", min=0.0)
    envelope_power: float = param(2.0, "exponent of the (1+sin)/2 rate envelope", min=0.0)
    n_classes: int = param(12, "IPD classes over (-90, 90) degrees", min=2, arch=True)
    phase_offset: str = param("per_sample", "tone phase offset: one per data set (source) or per sample",
                              choices=["per_sample", "per_dataset"])

    # network
    n_hidden: int = param(30, "hidden LIF units", min=1, arch=True)
    tau_ms: float = param(5.0, "membrane time constant of hidden and readout units (ms)", min=1e-6)
    beta: float = param(5.0, "slope of the sigmoid whose derivative is the surrogate gradient", min=0.0)
    readout_scale: float = param(0.01, "logits = readout_scale * sum_t v_t", min=0.0)
    fused: bool = param(True, "fused hidden-layer forward/backward and closed-form readout (False: loops)")
    compiled: bool = param(False, "compile the fused hidden layer's time sweeps with torch.compile "
                                  "(needs a C++ compiler on CPU; ~25 s per input shape once, then cached; "
                                  "several times faster)")

    # Dale's law
    dale_layers: str = param("both", "where Dale's law holds: W1 (inputs), W2 (hidden units), both, none",
                             choices=["both", "w1", "w2", "none"], arch=True)
    ie_ratio: float = param(0.5, "fraction of inhibitory presynaptic units (0 all E, 1 all I)", min=0.0, max=1.0,
                            arch=True)
    ie_ratio_input: Optional[float] = param(None, "inhibitory fraction of input fibres (null: ie_ratio)",
                                            min=0.0, max=1.0, arch=True)
    ie_ratio_hidden: Optional[float] = param(None, "inhibitory fraction of hidden units (null: ie_ratio)",
                                             min=0.0, max=1.0, arch=True)
    sign_assignment: str = param("random", "which units are inhibitory: random, or the first ones (source)",
                                 choices=["random", "first"], arch=True)

    # training
    lr: float = param(0.01, "Adam learning rate", min=0.0)
    batch_size: int = param(64, "samples per batch", min=1)
    batches_per_epoch: int = param(64, "batches per epoch (and size of a fixed training set in batches)", min=1)
    train_set: str = param("fresh", "fresh samples every step, or one fixed set reused every epoch (source)",
                           choices=["fresh", "fixed"])
    val_batches: int = param(64, "validation set size in batches", min=1)

    # analyses
    test_batches: int = param(32, "size of each test set in batches", min=1)
    test_sets: int = param(5, "fresh test sets (each with its own phase offset under per_dataset)", min=2)
    exp_trials: int = param(1200, "trials in the --gen_exp_stim stimulus set", min=1)
    tuning_bins: int = param(24, "IPD bins of the tuning curves", min=2)
    sweep_ratios: list[float] = param([0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0],
                                      "ie_ratio values of the sweep", min=0.0, max=1.0)
    sweep_seeds: int = param(5, "networks per ratio in the sweep and the inhibition-site study", min=2)
    sweep_epochs: int = param(50, "epochs of each network in the sweep and site study", min=1)
    sweep_batches_per_epoch: Optional[int] = param(None, "batches per epoch in sweeps (null: batches_per_epoch)",
                                                   min=1)
    sweep_patience: int = param(10, "early-stopping patience (epochs) in sweeps; 0 never (needs keep_weights: "
                                    "best)", min=0)
    sweep_sign_assignment: Optional[str] = param(None, "sign assignment in sweeps (null: sign_assignment)",
                                                 choices=[None, "random", "first"])

    def check(self) -> None:
        if self.early_stop_patience and not self.eval_every:
            raise UserError("--early_stop_patience needs --eval_every > 0 (validation drives early stopping)")
        if self.keep_weights == "final":
            for key in ("early_stop_patience", "sweep_patience"):
                if getattr(self, key):
                    raise UserError(f"--{key}: must be 0 with --keep_weights final (early stopping selects the "
                                    f"best validation weights; use --keep_weights best for it)")

    @property
    def dale_w1(self) -> bool:
        return self.dale_layers in ("both", "w1")

    @property
    def dale_w2(self) -> bool:
        return self.dale_layers in ("both", "w2")

    @property
    def ratio_input(self) -> float:
        return self.ie_ratio if self.ie_ratio_input is None else self.ie_ratio_input

    @property
    def ratio_hidden(self) -> float:
        return self.ie_ratio if self.ie_ratio_hidden is None else self.ie_ratio_hidden
