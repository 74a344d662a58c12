"""Typed configuration of the RSA family (defaults = the source tutorial's settings)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from core.config import BaseConfig, param
from core.errors import UserError
from rsa.cnn import ARCHITECTURES
from rsa.compare import SIMILARITIES
from core.gratings import TUTORIAL_SPATIAL_FREQ
from rsa.rdm import METRICS
from rsa.v1data import STRINGER_FILE

LAYERS = {"cnn": ("conv", "conv_relu", "pool", "fc", "fc_relu", "out"),
          "conv_fc": ("conv", "conv_relu", "fc", "fc_relu", "out"),
          "fc": ("fc", "fc_relu", "out")}


@dataclass
class RSAConfig(BaseConfig):
    # --- network (architecture keys come from the checkpoint when a model is loaded) ---
    arch: str = param("cnn", "network: cnn (conv+pool+fc, the tutorial's), conv_fc, or fc",
                      choices=list(ARCHITECTURES), arch=True)
    image_height: int = param(48, "grating height in pixels", min=8, arch=True)
    image_width: int = param(64, "grating width in pixels", min=8, arch=True)
    conv_channels: int = param(6, "convolution channels (2 centre-surround + Gabors at init)", min=3, arch=True)
    kernel_size: int = param(7, "convolution kernel size (odd)", min=1, arch=True)
    pool_size: int = param(8, "max-pool patch size (cnn)", min=1, arch=True)
    hidden_units: int = param(10, "units of the fully connected layer", min=1, arch=True)
    # --- stimuli ---
    spatial_freq: float = param(TUTORIAL_SPATIAL_FREQ, "grating spatial frequency, cycles per pixel",
                                min=0.0, max=0.5)
    phase: float = param(0.0, "grating spatial phase in degrees")
    contrast: float = param(1.0, "grating contrast (peak-to-peak luminance around 0.5)", min=0.0, max=1.0)
    waveform: str = param("square", "grating profile: square (binarised, as the tutorial) or sine",
                          choices=["square", "sine"])
    # --- training: tilt discrimination with SGD + momentum on binary cross-entropy ---
    steps: int = param(250, "optimisation steps (tutorial: 25 epochs x 10 batches = 250)", min=0)
    n_train: int = param(1000, "training gratings (random orientations); 0 draws fresh ones every step",
                         min=0)
    batch_size: int = param(100, "gratings per step", min=1)
    lr: float = param(5e-4, "SGD learning rate", min=0.0)
    momentum: float = param(0.99, "SGD momentum", min=0.0, max=1.0)
    n_test: int = param(1000, "held-out gratings for the accuracy", min=1)
    eval_every: int = param(50, "evaluate held-out accuracy every N steps (0: only at the end)", min=0)
    # --- V1 data ---
    v1_source: str = param("auto", "V1 responses: stringer (the Stringer et al. 2021 file under "
                           "--data_root), synthetic (embedded), or auto (the file when present)",
                           choices=["auto", "stringer", "synthetic"])
    v1_file: str = param(STRINGER_FILE, "file name of the Stringer V1 data under DATA_ROOT[/stringer]")
    v1_bin_width: float = param(1.0, "average V1 responses in orientation bins of this width (deg)",
                                min=1.0, max=90.0)
    synthetic_neurons: int = param(2000, "neurons of the synthetic V1 population", min=2)
    synthetic_stimuli: int = param(181, "orientations (evenly spaced over [-90, 90]) of the synthetic "
                                   "V1 data", min=5)
    synthetic_fano: float = param(1.0, "synthetic V1: private noise variance / mean", min=0.0)
    synthetic_gain_noise: float = param(0.2, "synthetic V1: std of the shared log-gain per stimulus",
                                        min=0.0)
    synthetic_trials: int = param(10, "synthetic V1: presentations averaged per orientation (the real "
                                  "file averages ~10 per 1-degree bin)", min=1)
    # --- analyses ---
    layers: list[str] = param(["pool", "fc"], "network layers compared with V1 (cnn: conv, conv_relu, "
                              "pool, fc, fc_relu, out)")
    rdm_metric: str = param("correlation", "RDM dissimilarity", choices=list(METRICS))
    similarity_methods: list[str] = param(list(SIMILARITIES), "RDM-to-RDM similarity measures "
                                          f"({', '.join(SIMILARITIES)})")
    n_bootstrap: int = param(1000, "bootstrap resamples of stimuli for the confidence intervals", min=1)
    ci: float = param(0.95, "confidence level of the bootstrap intervals", min=0.5, max=0.999)
    rdm_row_orientations: list[float] = param([-75.0, -25.0, 25.0, 75.0],
                                              "orientations whose RDM rows are plotted", min=-90, max=90)
    n_tuning_units: int = param(3, "random units per population in the tuning-curve plot", min=1)
    pca_components: int = param(20, "PCA dimensions before t-SNE", min=2)
    tsne_perplexity: float = param(30.0, "t-SNE perplexity (capped at (stimuli-1)/3)", min=1.0)
    ridge_alphas: list[float] = param([1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0],
                                      "ridge penalties, relative to the mean squared singular value",
                                      min=0.0)
    ridge_folds: int = param(5, "cross-validation folds over stimuli for ridge predictivity", min=2)
    ridge_neurons: int = param(1000, "V1 neurons (random subset) predicted in ridge predictivity", min=1)
    cka_permutations: int = param(100, "stimulus shuffles for the chance level of linear CKA (0: none)",
                                  min=0)
    chunk_units: int = param(8192, "units per block when accumulating RDM/CKA Gram matrices", min=1)
    # --- experiment (own recording) and comparison of any recording with V1 ---
    n_exp_orientations: int = param(36, "orientations in the --gen_exp_stim stimulus set", min=3)
    exp_repeats: int = param(2, "trials per orientation in the --gen_exp_stim stimulus set", min=1)
    compare_recording: Optional[str] = param(None, "activity.zarr of any model's run to compare with "
                                             "V1 in the v1_likeness analysis (default: this run's)")
    compare_coord: str = param("orientation", "per-trial coordinate of that recording holding the "
                               "grating orientation")
    compare_coord_units: str = param("degrees", "units of compare_coord", choices=["degrees", "radians"])
    compare_variables: list[str] = param([], "recorded variables to compare (empty: all numeric ones)")
    compare_where: list[str] = param([], "KEY=VALUE conditions on the recording's per-trial coordinates "
                                     "selecting the trials compared (e.g. stimulus_set=just_angle)")
    compare_time_window: list[int] = param([], "first and last+1 time index compared (e.g. an NRFLV "
                                            "recording's stimulus phase); empty: every time step", min=0)
    compare_time_stride: int = param(1, "compare every N-th time step of (trial, time, unit) variables",
                                     min=1)

    def check(self) -> None:
        if len(self.compare_time_window) not in (0, 2) or (
                len(self.compare_time_window) == 2 and self.compare_time_window[0] >= self.compare_time_window[1]):
            raise UserError(f"--compare_time_window: give START,STOP with START < STOP, got {self.compare_time_window}")
        if self.kernel_size % 2 == 0:
            raise UserError(f"--kernel_size: expected an odd number, got {self.kernel_size}")
        valid = LAYERS[self.arch]
        bad = [name for name in self.layers if name not in valid]
        if bad or not self.layers:
            raise UserError(f"--layers: {', '.join(bad) or 'empty'} not in the {self.arch} network; "
                            f"choose from {', '.join(valid)}")
        bad = [m for m in self.similarity_methods if m not in SIMILARITIES]
        if bad or not self.similarity_methods:
            raise UserError(f"--similarity_methods: {', '.join(bad) or 'empty'}; choose from "
                            f"{', '.join(SIMILARITIES)}")
        if self.arch == "cnn" and (self.image_height < self.pool_size or self.image_width < self.pool_size):
            raise UserError("--pool_size: larger than the image; the cnn needs image_height and "
                            "image_width >= pool_size")
