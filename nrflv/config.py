"""Settings of the nrflv family. Every flag of the original's README command is a key of the
same name with the same value (``nrflv_thesis`` preset); defaults are the thesis run's.

One training step is one parameter update: a positive phase of ``num_it_pos`` sampler steps
on the latent layers with the image clamped, a negative phase of ``num_it_neg`` free steps
from the replay buffer, then one Adam step on ``E+ - E- + l2_reg_energy_param (E+^2 + E-^2)``.
"""
from __future__ import annotations

from dataclasses import dataclass

from core.config import BaseConfig, param
from core.errors import UserError

DATASETS = ("natural_patches", "cifar10", "mnist")


@dataclass
class NRFLVConfig(BaseConfig):
    """Config of the Neural Random Field with Latent Variables and its SGHMC sampler."""

    # architecture and data
    network_type: str = param("NRFLV", "the original's model class (only NRFLV here)", choices=["NRFLV"], arch=True)
    states_activation: str = param("hardtanh", "rho, the states' activation inside the energy (the thesis: "
                                               "hardtanh; the only one here)", choices=["hardtanh"], arch=True)
    activation: str = param("swish", "the quadratic nets' activation (the thesis: swish; the only one here)",
                            choices=["swish"], arch=True)
    architecture: str = param("nrflv_thesis", "layer sizes and connection table (nrflv_thesis = the original's "
                                              "NRFLV_CIFAR_4SL_small_densebackw_wideSL1base, nrflv_quick)",
                              choices=["nrflv_thesis", "nrflv_quick", "NRFLV_CIFAR_4SL_small_densebackw_wideSL1base"],
                              arch=True)
    model_weight_norm: bool = param(True, "weight-normalise the energy model's base convs and first fc layers",
                                    arch=True)
    initializer: str = param("ff_init", "initial positive-phase states: ff_init (a feed-forward net from the "
                                        "image) or random (U[-1, 1])", choices=["ff_init", "random"], arch=True)
    initter_network_weight_norm: bool = param(True, "weight-normalise the initialiser's convs", arch=True)
    dataset: str = param("natural_patches", "training images: natural_patches (embedded photographs, offline), "
                                            "cifar10 or mnist (under --data_root)", choices=list(DATASETS))
    n_images: int = param(8192, "embedded natural patches cut for training", min=16)

    # training
    steps: int = param(47500, "parameter updates (the thesis model: 47,500)", min=0)
    batch_size: int = param(128, "chains per update (images in the positive phase, replay chains in the "
                                 "negative)", min=1)
    lr: float = param(5e-4, "Adam learning rate of the energy model", min=0.0)
    lr_decay_gamma: float = param(0.95, "learning rate x gamma after every epoch of the training images",
                                  min=0.0, max=1.0)
    l2_reg_energy_param: float = param(1.0, "weight of the penalty E+^2 + E-^2 on the energies' size", min=0.0)
    clip_grad: bool = param(True, "the original's element-wise clipping of the gradient to +-(3 sqrt(v_hat) + "
                                  "0.1), v_hat Adam's bias-corrected second moment")
    weights_optimizer: str = param("adam", "optimiser of the energy model (the thesis: adam; the only one here)",
                                   choices=["adam"])
    initter_network_lr: float = param(5e-4, "SGD (Nesterov, momentum 0.85) learning rate of the initialiser",
                                      min=0.0)
    num_it_pos: int = param(500, "sampler steps of the positive phase", min=1)
    num_it_neg: int = param(500, "sampler steps of the negative phase", min=1)
    sample_buffer_prob: float = param(0.95, "fraction of negative chains drawn from the replay buffer (the rest "
                                            "start fresh from U[-1, 1])", min=0.0, max=1.0)
    buffer_size: int = param(10000, "replay buffer capacity (final negative states, FIFO)", min=1)

    neg_it_schedule: bool = param(False, "the source's rule: lengthen the negative phase x1.25 when mean E- "
                                         "exceeds mean E+ (+ margin) over the last neg_it_history updates, "
                                         "after epoch 5, then wait neg_it_cooldown epochs")
    neg_it_history: int = param(200, "updates in the energy histories of that rule", min=1)
    neg_it_margin: float = param(0.0, "margin of that rule", min=-1e12)
    neg_it_cooldown: int = param(5, "epochs that rule waits after lengthening", min=0)

    channels_last: bool = param(True, "keep the energy model's weights and the states in channels-last memory "
                                      "(the same numbers; 1.24x faster sampler steps on this CPU)")

    # sampler (the state optimiser)
    state_optimizer: str = param("sghmc", "sghmc or langevin", choices=["sghmc", "langevin"])
    sampling_step_size: float = param(0.1, "SGHMC step size eta", min=0.0)
    momentum_param: float = param(0.1, "SGHMC friction alpha", min=0.0)
    num_burn_in_steps: int = param(100, "steps adapting the inverse mass at the start of each phase", min=0)
    min_sq_sigma: float = param(9e-5, "lower clamp of the momentum noise variance", min=0.0)
    max_sq_sigma: list[float] = param([1e-4], "upper clamp(s) of the noise variance (one, or one per layer)",
                                      min=0.0)
    sigma: float = param(0.0, "gradient-noise estimate nu of SGHMC (the thesis run: 0)", min=0.0)
    scale_grad: float = param(1.0, "SGHMC gradient scale", min=1e-12)
    non_diag_inv_mass: bool = param(True, "channel-mixing circulant inverse mass on layers with >= 6 channels")

    # logging (the original's names; they set the shared keys)
    img_logging_interval: int = param(10, "sample grids to TensorBoard every N updates (0: never)", min=0)
    log_histograms: bool = param(True, "log parameter histograms (every histogram_logging_interval updates)")
    histogram_logging_interval: int = param(3000, "parameter histograms every N updates (0: never)", min=0)
    scalar_logging_interval: int = param(200, "scalars to TensorBoard every N updates", min=1)
    model_save_interval: int = param(50, "a checkpoint (with the replay buffer) every N updates", min=1)

    # the shared keys these set (derived: change the original's names above instead)
    log_every: int = param(200, "set by scalar_logging_interval", min=1, derived=True)
    image_every: int = param(10, "set by img_logging_interval", min=0, derived=True)
    hist_every: int = param(3000, "set by histogram_logging_interval", min=0, derived=True)
    ckpt_every: int = param(50, "set by model_save_interval", min=1, derived=True)

    # visualisation
    num_viz_samples: int = param(16, "chains sampled by --viz", min=1)
    num_it_viz: int = param(1000, "free sampler steps of --viz standard", min=1)
    viz_img_logging_step_interval: int = param(100, "a frame of --viz standard every N steps", min=1)
    viz_start_layer: int = param(1, "first layer whose channels --viz channels_energy draws", min=0)
    viz_channels: int = param(8, "channels per layer drawn by --viz channels_energy", min=1)

    def check(self) -> None:
        from nrflv.architecture import get_architecture

        arch = get_architecture(self.architecture)
        if len(self.max_sq_sigma) not in (1, arch.n_layers):
            raise UserError(f"--max_sq_sigma: give 1 value or one per layer ({arch.n_layers}), "
                            f"got {len(self.max_sq_sigma)}")
        if self.viz_start_layer >= arch.n_layers:
            raise UserError(f"--viz_start_layer: layers are 0..{arch.n_layers - 1}")
        if self.dataset == "mnist" and arch.layers[0][0] != 1 or self.dataset == "cifar10" and arch.layers[0][0] != 3:
            raise UserError(f"--dataset {self.dataset} does not fit the {arch.layers[0][0]}-channel image layer of "
                            f"{self.architecture}")
        self.log_every = self.scalar_logging_interval
        self.image_every = self.img_logging_interval
        self.hist_every = self.histogram_logging_interval if self.log_histograms else 0
        self.ckpt_every = self.model_save_interval
