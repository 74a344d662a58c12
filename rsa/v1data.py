"""Mouse V1 responses to oriented gratings: the real recording and a synthetic stand-in.

**Real data** (:func:`load_stringer_v1`): the file the source tutorial used,
``W3D4_stringer_oribinned1.npz`` from Stringer et al. (2021, Cell), with arrays
``resp (stimuli, neurons)`` (~20,000 neurons; time-averaged calcium responses normalised
by spontaneous activity and z-scored over stimuli, averaged in 1-degree orientation bins)
and ``stimuli (stimuli,)`` (grating direction in degrees, 0..360). As in the tutorial,
only directions <= 180 are kept and 90 is subtracted, so orientation 0 is vertical,
negative is tilted left and positive tilted right; ``bin_width > 1`` averages responses
in coarser bins first. Looked for under ``DATA_ROOT/stringer/`` and ``DATA_ROOT/``.
The file is validated when it is read (:func:`load_stringer_v1`): anything that would give
a number computed from garbage (NaN rows, constant rows, directions in radians, ...) is
refused with a one-line message.

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

import pickle
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from core.errors import DatasetUnavailable, UserError

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


def _rows_text(rows: np.ndarray, stim: np.ndarray | None = None, limit: int = 8) -> str:
    """``"rows 3 (direction 3°), 17 (17°)"``, the first ``limit`` of them and a count."""
    parts = [f"{r}" + (f" ({stim[r]:g}°)" if stim is not None and np.isfinite(stim[r]) else "")
             for r in rows[:limit]]
    more = f" and {rows.size - limit} more" if rows.size > limit else ""
    return f"row{'s' if rows.size > 1 else ''} {', '.join(parts)}{more}"


def check_responses(resp: np.ndarray, what: str, stim: np.ndarray | None = None) -> None:
    """Refuse responses ``(S, N)`` with a NaN/inf entry or a constant stimulus row (its
    responses span at most ``rsa.rdm.CONSTANT_RTOL`` times their largest magnitude):
    :class:`UserError` naming the rows. Both would give undefined correlation distances."""
    from rsa.rdm import constant_rows, row_stats

    bad = np.flatnonzero(~np.isfinite(resp).all(1))
    if bad.size:
        raise UserError(f"{what}: stimulus {_rows_text(bad, stim)} of resp hold NaN or infinite "
                        f"values; remove or fix them (the analyses refuse to compute on them)")
    amax = np.abs(resp).max(axis=1).astype(np.float64)
    limit = float(np.sqrt(np.finfo(np.float32).max / (4.0 * resp.shape[1])))
    big = np.flatnonzero(amax > limit)
    if big.size:
        raise UserError(f"{what}: stimulus {_rows_text(big, stim)} of resp reach {amax[big].max():.3g}, too large "
                        f"to be squared and summed over {resp.shape[1]} neurons in float32 (at most {limit:.3g}); "
                        "rescale the responses")
    const = np.flatnonzero(constant_rows(row_stats(resp)).numpy())
    if const.size:
        raise UserError(f"{what}: stimulus {_rows_text(const, stim)} of resp are constant over "
                        f"neurons (no population pattern; correlation distances are undefined)")


def _read_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``resp`` and ``stimuli`` of the file, or a :class:`UserError` saying what is wrong."""
    what = f"V1 file {path}"
    how = f"expected a NumPy .npz archive with arrays 'resp' and 'stimuli' (the original: {STRINGER_URL})"
    try:
        data = np.load(path, allow_pickle=False)
        if not isinstance(data, np.lib.npyio.NpzFile):
            raise UserError(f"{what} holds a single array, not an .npz archive; {how}")
        with data:
            missing = [k for k in ("resp", "stimuli") if k not in data.files]
            if missing:
                raise UserError(f"{what} has no array {' or '.join(repr(k) for k in missing)}; it has "
                                f"{', '.join(repr(k) for k in sorted(data.files)) or 'none'}; {how}")
            resp, stim = data["resp"], data["stimuli"]
    except UserError:
        raise
    except MemoryError as exc:  # a header declaring an array larger than memory (damaged or hostile)
        reason = (str(exc).strip().splitlines() or [""])[0]
        raise UserError(f"{what} declares an array larger than this machine's memory ({reason}); the file is "
                        f"damaged or not the tutorial's; {how}") from None
    except (OSError, ValueError, EOFError, KeyError, TypeError, zipfile.BadZipFile,
            pickle.UnpicklingError, zlib.error) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        if "Object arrays" in reason:
            raise UserError(f"{what} holds object arrays (pickled Python objects), which are never loaded: "
                            f"they could run code; {how}") from exc
        if "pickle" in reason:
            raise UserError(f"cannot read {what}: it is neither an .npz archive nor an .npy array (random or "
                            f"corrupt bytes, or a pickle, which is never loaded); {how}") from exc
        raise UserError(f"cannot read {what} ({reason}); it may be truncated or corrupt; {how}") from exc
    for name, arr in (("resp", resp), ("stimuli", stim)):
        if arr.dtype.kind not in "iuf":
            raise UserError(f"{what}: array {name!r} has dtype {arr.dtype}, expected numbers; {how}")
    if resp.ndim != 2 or resp.shape[0] == 0 or resp.shape[1] < 2:
        raise UserError(f"{what}: 'resp' has shape {resp.shape}, expected (stimuli, neurons) with at least "
                        "2 neurons")
    if stim.ndim != 1:
        if stim.size != max(stim.shape, default=0):
            raise UserError(f"{what}: 'stimuli' has shape {stim.shape}, expected (stimuli,)")
        stim = stim.reshape(-1)
    if stim.size != resp.shape[0]:
        raise UserError(f"{what}: 'stimuli' has {stim.size} directions but 'resp' has {resp.shape[0]} "
                        "stimulus rows; they must match")
    return resp, stim.astype(np.float64)


def check_directions(stim: np.ndarray, what: str) -> None:
    """Grating directions must be finite degrees in [0, 360]; all of them within [0, 2 pi]
    (with more than 2 distinct values) looks like radians and is refused."""
    bad = np.flatnonzero(~np.isfinite(stim))
    if bad.size:
        raise UserError(f"{what}: 'stimuli' {_rows_text(bad)} are NaN or infinite; expected grating "
                        "directions in degrees, 0..360")
    lo, hi = float(stim.min()), float(stim.max())
    if lo < 0 or hi > 360:
        raise UserError(f"{what}: 'stimuli' range from {lo:g} to {hi:g}; expected grating directions in "
                        "degrees, 0..360")
    if hi <= 2 * np.pi + 1e-9 and np.unique(stim).size > 2:
        raise UserError(f"{what}: 'stimuli' lie within 0..{hi:.4g}, which looks like radians; expected "
                        "grating directions in degrees, 0..360 (convert with numpy.rad2deg)")


def load_stringer_v1(data_root: str | Path, filename: str = STRINGER_FILE, bin_width: float = 1.0) -> V1Data:
    """Read and validate the tutorial's V1 file (see the module docstring): ``resp (S, N)``
    float32, ``ori (S,)``.

    Every problem is a one-line :class:`UserError`: a file that is not a readable ``.npz``
    (random bytes, truncated, empty, pickled object arrays), missing arrays, ``resp`` not
    2-D, a length mismatch, directions not in degrees 0..360 (or in radians), NaN/inf or
    constant stimulus rows (named), and fewer than 3 stimuli with direction <= 180 degrees.
    """
    path = stringer_path(data_root, filename)
    what = f"V1 file {path}"
    resp, stim = _read_npz(path)
    check_directions(stim, what)
    resp = np.asarray(resp, dtype=np.float32)
    check_responses(resp, what, stim)
    if bin_width > 1:
        bins = np.digitize(stim, np.arange(0, 360 + bin_width, bin_width))
        labels, inverse = np.unique(bins, return_inverse=True)
        counts = np.bincount(inverse).astype(np.float64)
        stim = np.bincount(inverse, weights=stim) / counts
        summed = np.zeros((labels.size, resp.shape[1]), np.float64)
        np.add.at(summed, inverse, resp)
        resp = (summed / counts[:, None]).astype(np.float32)
    keep = stim <= 180
    if keep.sum() < 3:
        binned = f" after averaging in {bin_width:g}° bins" if bin_width > 1 else ""
        raise UserError(f"{what}: {int(keep.sum())} stimulus direction(s) <= 180°{binned} (directions range "
                        f"{stim.min():g}..{stim.max():g}); the comparison uses directions 0..180 "
                        "(orientation = direction - 90) and needs at least 3")
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
