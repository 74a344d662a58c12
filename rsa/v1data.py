"""Mouse V1 responses to oriented gratings: the real recording and a synthetic stand-in.

**Real data** (:func:`load_stringer_v1`): the file the source tutorial used,
``W3D4_stringer_oribinned1.npz`` from Stringer et al. (2021, Cell), with arrays
``resp (stimuli, neurons)`` (~20,000 neurons; time-averaged calcium responses normalised
by spontaneous activity and z-scored over stimuli, averaged in 1-degree orientation bins)
and ``stimuli (stimuli,)`` (grating direction in degrees, 0..360). As in the tutorial,
only directions <= 180 are kept and 90 is subtracted, so orientation 0 is vertical,
negative is tilted left and positive tilted right; ``bin_width > 1`` averages responses
in coarser bins first. Looked for under ``DATA_ROOT/stringer/`` and ``DATA_ROOT/``.

**Synthetic data** (:func:`synthetic_v1`) -- SYNTHETIC, not a recording. A population of
``n`` orientation-tuned neurons with von Mises tuning on the doubled angle,

    mu_i(theta) = b_i + g_i exp(kappa_i (cos 2(theta - theta_i) - 1)),

preferred orientations ``theta_i`` uniform, widths ``kappa_i`` log-normal (median 2,
tuning half-widths ~20-60 deg), heterogeneous log-normal gains ``g_i``, a fraction of
weakly tuned neurons, and single-trial noise of two kinds seen in V1 population recordings:
a shared multiplicative gain per stimulus presentation ``gamma_s ~ LogNormal(0, sigma_gain)``
and private Poisson-like noise with variance ``fano * gamma_s mu_i`` plus an additive
floor, both averaged over ``trials_averaged`` presentations. Responses are then z-scored
over stimuli per neuron, like the real file. The
neuron parameters depend only on ``seed``, so the same population can be shown any
orientations.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from core.errors import DatasetUnavailable

STRINGER_FILE = "W3D4_stringer_oribinned1.npz"
STRINGER_URL = "https://osf.io/683xc/download"


@dataclass
class V1Data:
    """Population responses ``resp (stimuli, neurons)`` to gratings of orientation ``ori (stimuli,)``
    in degrees (0 vertical, positive tilted right); ``source`` says where they come from."""

    resp: torch.Tensor
    ori: torch.Tensor
    source: str


def stringer_path(data_root: str | Path, filename: str = STRINGER_FILE) -> Path:
    """Where the Stringer file is looked for; raises :class:`DatasetUnavailable` if absent."""
    root = Path(data_root)
    for candidate in (root / "stringer" / filename, root / filename):
        if candidate.is_file():
            return candidate
    raise DatasetUnavailable(
        "stringer2021 mouse V1 gratings", str(root / "stringer" / filename),
        f"Download it from {STRINGER_URL} (the Neuromatch file of Stringer et al. 2021) into "
        f"{root / 'stringer'}/, or set v1_source: synthetic to use the embedded synthetic population.")


def load_stringer_v1(data_root: str | Path, filename: str = STRINGER_FILE, bin_width: float = 1.0) -> V1Data:
    """Read the tutorial's V1 file (see the module docstring): ``resp (S, N)`` float32, ``ori (S,)``."""
    path = stringer_path(data_root, filename)
    with np.load(path) as data:
        if "resp" not in data or "stimuli" not in data:
            raise DatasetUnavailable("stringer2021 mouse V1 gratings", str(path),
                                     f"The file has arrays {sorted(data.files)}, expected 'resp' and "
                                     f"'stimuli'; download the original from {STRINGER_URL}.")
        resp = np.asarray(data["resp"], dtype=np.float32)
        stim = np.asarray(data["stimuli"], dtype=np.float64).reshape(-1)
    if bin_width > 1:
        bins = np.digitize(stim, np.arange(0, 360 + bin_width, bin_width))
        labels, inverse = np.unique(bins, return_inverse=True)
        counts = np.bincount(inverse).astype(np.float64)
        stim = np.bincount(inverse, weights=stim) / counts
        summed = np.zeros((labels.size, resp.shape[1]), np.float64)
        np.add.at(summed, inverse, resp)
        resp = (summed / counts[:, None]).astype(np.float32)
    keep = stim <= 180
    return V1Data(torch.from_numpy(np.ascontiguousarray(resp[keep])),
                  torch.from_numpy(stim[keep] - 90.0).float(), f"stringer2021:{path.name}")


def synthetic_v1(orientations: torch.Tensor, n_neurons: int = 2000, *, seed: int = 0,
                 fano: float = 1.0, gain_noise: float = 0.2, additive_noise: float = 0.1,
                 untuned_fraction: float = 0.3, trials_averaged: int = 10, zscore: bool = True) -> V1Data:
    """A synthetic V1 population's responses to ``orientations (S,)`` degrees (see module doc).

    Each response is the average of ``trials_averaged`` presentations (the real file
    averages the ~4,000 single trials within 1-degree bins, ~10 per bin), so the shared
    gain is averaged over that many draws and the private noise variance is divided by it.
    Returns responses ``(S, n_neurons)`` float32 on ``orientations``' device.
    """
    ori = torch.as_tensor(orientations, dtype=torch.float32).reshape(-1)
    device = ori.device
    g = torch.Generator().manual_seed(int(seed))
    pref = (torch.rand(n_neurons, generator=g) - 0.5) * 180.0
    kappa = torch.exp(np.log(2.0) + 0.5 * torch.randn(n_neurons, generator=g))
    gain = torch.exp(0.8 * torch.randn(n_neurons, generator=g))
    gain = torch.where(torch.rand(n_neurons, generator=g) < untuned_fraction, 0.1 * gain, gain)
    base = 0.2 * torch.rand(n_neurons, generator=g)
    gn = torch.Generator().manual_seed(int(seed) + 1_000_003)
    n_avg = max(int(trials_averaged), 1)
    trial_gain = torch.exp(gain_noise * torch.randn(ori.shape[0], n_avg, generator=gn)).mean(1, keepdim=True)
    eps_private = torch.randn(ori.shape[0], n_neurons, generator=gn)
    eps_additive = torch.randn(ori.shape[0], n_neurons, generator=gn)
    pref, kappa, gain, base = (t.to(device) for t in (pref, kappa, gain, base))
    trial_gain, eps_private, eps_additive = (t.to(device) for t in (trial_gain, eps_private, eps_additive))
    dtheta = torch.deg2rad(ori[:, None] - pref[None, :])
    mean = base + gain * torch.exp(kappa * (torch.cos(2 * dtheta) - 1))
    rate = trial_gain * mean
    resp = rate + (torch.sqrt(fano * rate) * eps_private + additive_noise * eps_additive) / n_avg ** 0.5
    if zscore:
        resp = (resp - resp.mean(0)) / resp.std(0).clamp_min(1e-8)
    return V1Data(resp.float(), ori, "synthetic")


def nearest_stimuli(v1_ori: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Index of the V1 stimulus closest in orientation (period 180 deg) to each target: ``(T,)``."""
    d = torch.as_tensor(targets, dtype=torch.float64)[:, None] - torch.as_tensor(v1_ori, dtype=torch.float64)[None]
    d = torch.remainder(d + 90.0, 180.0) - 90.0
    return d.abs().argmin(1)
