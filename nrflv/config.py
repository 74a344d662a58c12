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
STIMULUS_SETS = ("just_angle", "contrast_and_angle", "few_angles", "long_bars", "pairs")


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
                              choices=["nrflv_thesis", "nrflv_quick", "nrflv_medium",
                                       "NRFLV_CIFAR_4SL_small_densebackw_wideSL1base"],
                              arch=True)
    model_weight_norm: bool = param(True, "weight-normalise the energy model's base convs and first fc layers",
                                    arch=True)
    initializer: str = param("ff_init", "initial positive-phase states: ff_init (a feed-forward net from the "
                                        "image) or random (U[-1, 1])", choices=["ff_init", "random"], arch=True)
    initter_network_weight_norm: bool = param(True, "weight-normalise the initialiser's convs", arch=True)
    dataset: str = param("natural_patches", "training images: natural_patches (embedded photographs, offline), "
                                            "cifar10 or mnist (under --data_root)", choices=list(DATASETS))
    n_images: int = param(8192, "embedded natural patches cut for training", min=16)
    image_range: list[float] = param([0.0, 1.0], "[lo, hi]: the range images enter the model in, mapped "
                                                 "from [0, 1] (the original: torchvision's ToTensor, [0, 1]; "
                                                 "[-1, 1] is the other common choice)", min=-1.0, max=1.0)

    # training
    steps: int = param(47500, "parameter updates (the thesis model: 47,500)", min=0)
    batch_size: int = param(128, "chains per update (images in the positive phase, replay chains in the "
                                 "negative)", min=1)
    lr: float = param(5e-4, "Adam learning rate of the energy model", min=0.0)
    lr_decay_gamma: float = param(0.95, "learning rate x gamma after every epoch of the training images",
                                  min=0.0, max=1.0)
    l2_reg_energy_param: float = param(1.0, "weight of the penalty E+^2 + E-^2 on the energies' size", min=0.0)
    adam_grad_clip: bool = param(True, "the original's element-wise clipping of the energy model's gradient to "
                                       "+-(3 sqrt(v_hat) + 0.1), v_hat Adam's bias-corrected second moment (always "
                                       "on in the original; a key here to compare)")
    clip_grad: bool = param(False, "the original's --clip_grad: clip the state gradients of every sampler step "
                                   "to a total 2-norm of clip_state_grad_norm over all chains and layers (off in "
                                   "the thesis command)")
    clip_state_grad_norm: float = param(0.01, "the original's --clip_state_grad_norm: that norm", min=1e-12)
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
    precision: str = param("fp32", "the sampler's energy gradient: fp32, or bf16 (forward and backward under "
                                   "bfloat16 autocast; states, gradients and the sampler's update stay float32)",
                           choices=["fp32", "bf16"])
    compile: str = param("off", "the sampler's energy gradient through torch.compile: off, on, or cuda_graphs "
                                "(mode reduce-overhead: replayed as CUDA graphs; CUDA only)",
                         choices=["off", "on", "cuda_graphs"])

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
    log_every: int = param(200, "set by scalar_logging_interval", min=1, derived=True, instead="--scalar_logging_interval")
    image_every: int = param(10, "set by img_logging_interval", min=0, derived=True, instead="--img_logging_interval")
    hist_every: int = param(3000, "set by histogram_logging_interval", min=0, derived=True, instead="--histogram_logging_interval")
    ckpt_every: int = param(50, "set by model_save_interval", min=1, derived=True, instead="--model_save_interval")

    # visualisation
    num_viz_samples: int = param(16, "chains sampled by --viz", min=1)
    num_it_viz: int = param(1000, "free sampler steps of --viz standard", min=1)
    viz_img_logging_step_interval: int = param(100, "a frame of --viz standard every N steps", min=1)
    viz_start_layer: int = param(1, "first layer whose channels --viz channels_energy draws", min=0)
    viz_channels: int = param(8, "channels per layer drawn by --viz channels_energy", min=1)

    # experimental stimuli (--gen_exp_stim): Gabor masks on the mean training image
    stimulus_sets: list[str] = param(list(STIMULUS_SETS), "named Gabor sets recorded together, one after the "
                                     "other: " + ", ".join(STIMULUS_SETS), choices=list(STIMULUS_SETS))
    gabor_sigma: float = param(0.7, "Gabor envelope sd sigma across the bars (px)", min=1e-3)
    gabor_wavelength: float = param(3.0, "Gabor carrier wavelength lambda (px)", min=1e-3)
    gabor_gamma: float = param(0.5, "Gabor aspect ratio gamma (along-bar sd = sigma / gamma)", min=1e-4)
    gabor_psi: float = param(1.0, "Gabor carrier phase psi (rad)", min=-10.0, max=10.0)
    gabor_nstds: float = param(3.0, "the mask is cut at +-nstds envelope sds (an axis-aligned box)", min=0.5)
    stim_contrast: float = param(2.4, "contrast c of every set but contrast_and_angle", min=0.0)
    just_angle_directions: int = param(128, "just_angle: directions k 360/n", min=1)
    contrast_directions: int = param(16, "contrast_and_angle: directions", min=1)
    contrast_levels: list[float] = param([0.0, 0.4, 0.8, 1.2, 1.6, 2.0, 2.4, 2.8],
                                         "contrast_and_angle: contrasts", min=0.0)
    few_angles_directions: int = param(8, "few_angles: directions", min=1)
    few_angles_repeats: int = param(16, "few_angles: trials per direction", min=1)
    long_bars_gamma: float = param(0.01, "long_bars: aspect ratio (a bar across the image)", min=1e-4)
    long_bars_directions: int = param(8, "long_bars: directions", min=1)
    long_bars_repeats: int = param(16, "long_bars: trials per direction", min=1)
    pair_directions: int = param(4, "pairs: directions of the second Gabor from the centre", min=1)
    pair_distances: list[int] = param([3, 5, 7, 10], "pairs: centre-to-centre distances (px)", min=1)
    pair_repeats: int = param(4, "pairs: trials per (direction, distance, relation)", min=1)
    pair_weight: float = param(2.0, "pairs: image x (1 + w c g1 + w c g2)", min=0.0)
    flank_distance: int = param(5, "single Gabors: recording site 1 lies this far along the bars' axis (px)",
                                min=1)

    # recording (--experiment): burn-in on held-out images -> blank -> stimulus -> blank
    exp_burn_in: int = param(100, "steps on held-out data images (the sampler adapts its mass here)", min=1)
    exp_blank_before: int = param(1000, "steps of the blank (mean image) before the stimulus", min=1)
    exp_stimulus: int = param(1000, "steps of the stimulus", min=1)
    exp_blank_after: int = param(600, "steps of the blank after the stimulus", min=1)
    ms_per_step: float = param(70.0 / 17.0, "one sampler step in ms (the thesis: 70/17 ms, fs = 242.86 Hz)",
                               min=1e-6)
    record_layer: int = param(1, "state layer recorded (1: SL1, the V1-like layer)", min=1)
    record_units: str = param("patch", "patch: a record_patch x record_patch window (all channels) around each "
                                       "recording site; all: every unit of the layer", choices=["patch", "all"])
    record_patch: int = param(3, "side of the window around each site (odd)", min=1)
    record_variables: list[str] = param(["state", "momentum"], "recorded per unit and step: state, momentum "
                                        "(p; -p is the inhibitory population), grad (dE/ds), energy",
                                        choices=["state", "momentum", "grad", "energy"])
    record_dtype: str = param("float16", "stored precision", choices=["float16", "float32"])
    record_every: int = param(1, "keep every N-th step", min=1)
    record_layer_means: bool = param(True, "also store each unit's mean state per protocol phase over the whole "
                                           "recorded layer (layer_means: activity maps and the retinotopy figure "
                                           "on any recording; 4 x C x H x W float32 per trial)")
    record_control: bool = param(False, "also record the untrained model (this run's initial weights, from its seed) "
                                        "on the same stimuli and protocol into recordings/control.zarr: the "
                                        "control of the findings analysis")
    record_movie_every: int = param(0, "also store the whole layer's state every N steps (layer_movie, for "
                                       "activity movies; 0: off; C x H x W values per frame and trial)", min=0)

    # analyses (--analyze)
    onset_skip_ms: float = param(200.0, "left out after each stimulus on/offset by the sustained-response "
                                        "analyses (spectra, synchrony, active units)", min=0.0)
    spectrum_nperseg: int = param(128, "Welch segment length (steps) of the spectra", min=8)
    spectrogram_nperseg: int = param(64, "segment length (steps) of the spectrograms", min=8)
    max_lag_ms: float = param(100.0, "cross-correlations up to +- this lag", min=1.0)
    alpha: float = param(0.05, "significance level of the tests", min=1e-6, max=0.5)
    tuned_r2: float = param(0.0, "an effect-size floor on top of the tuning test: a unit is tuned when the F-test "
                                 "of its cosine fit rejects 'untuned' at alpha and the fit explains at least "
                                 "this fraction of the variance (0: the test alone)", min=0.0, max=1.0)
    n_tuning_shuffles: int = param(20, "direction shuffles that measure the tuning criterion's chance level",
                                   min=1)
    lfp_units: str = param("matched", "units of the LFP and of the transients' trace: matched (the original: the "
                                      "channels tuned to the trial's orientation; trials with none are excluded "
                                      "and counted) or all (every channel, every trial)",
                           choices=["matched", "all"])
    match_tolerance: float = param(10.0, "a unit is matched to a stimulus within this many degrees of its "
                                         "preferred orientation", min=0.0, max=90.0)
    n_bootstrap: int = param(1000, "bootstrap resamples of the confidence intervals", min=10)
    oscillation_peak_ratio: float = param(5.0, "a unit oscillates when a prominent peak of its detrended spectrum "
                                               "(above the lowest 2 bins) has this many times the spectrum's "
                                               "median power", min=1.0)
    oscillation_nperseg: int = param(64, "Welch segment length (steps) of the per-unit oscillation test (short "
                                         "enough for several segments: a spectrum of 1-2 segments has spurious "
                                         "peaks)", min=8)
    trace_window_ms: list[float] = param([400.0, 600.0], "traces around the onset: ms before and after it", min=0.0)
    map_trials: int = param(2, "activity maps: the first N trials of every set drawn as channel mosaics", min=0)
    movie_trials: int = param(1, "activity movies: the first N trials of every set", min=1)
    synchrony_band_hz: float = param(10.0, "phase locking in +- this band around the LFP's peak frequency",
                                     min=0.5)

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
        if len(self.trace_window_ms) != 2:
            raise UserError(f"--trace_window_ms: give [before, after] in ms, got {self.trace_window_ms}")
        if len(self.image_range) != 2 or not self.image_range[0] < self.image_range[1]:
            raise UserError(f"--image_range: give [lo, hi] with -1 <= lo < hi <= 1, got {self.image_range}")
        if self.record_patch % 2 == 0:
            raise UserError(f"--record_patch: expected an odd number, got {self.record_patch}")
        if self.record_layer >= arch.n_layers:
            raise UserError(f"--record_layer: latent layers are 1..{arch.n_layers - 1}")
        if not self.stimulus_sets:
            raise UserError("--stimulus_sets: name at least one of " + ", ".join(STIMULUS_SETS))
        if len(set(self.stimulus_sets)) != len(self.stimulus_sets):
            raise UserError("--stimulus_sets: a set is named twice")
        if not self.record_variables or len(set(self.record_variables)) != len(self.record_variables):
            raise UserError("--record_variables: name each of state, momentum, grad, energy at most once")
        if any(self.min_sq_sigma > m for m in self.max_sq_sigma):
            raise UserError(f"--min_sq_sigma ({self.min_sq_sigma}) must not exceed --max_sq_sigma "
                            f"({self.max_sq_sigma})")
        self.log_every = self.scalar_logging_interval
        self.image_every = self.img_logging_interval
        self.hist_every = self.histogram_logging_interval if self.log_histograms else 0
        self.ckpt_every = self.model_save_interval
