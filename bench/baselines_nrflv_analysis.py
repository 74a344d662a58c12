"""The baseline of ``bench/bench_nrflv_analysis.py``: what a straightforward user of the ORIGINAL
layout writes -- the recorded values saved as one float32 ``.npy`` per stimulus set per step per
variable, each holding the whole layer ``(trials, channels, H, W)``, and numpy/scipy code that
``np.load``s every step's file it needs and stacks the units it wants (the quantities are
described in the bench's docstring).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from synthetic_nrflv_analysis import IMAGE_HW, VARIABLES


# ---------------------------------------------------------------------------------------------
# the baseline's files: one float32 .npy per set, step and variable, the whole layer
# ---------------------------------------------------------------------------------------------
def step_file(root: Path, stimulus_set: str, variable: str, step: int) -> Path:
    return root / stimulus_set / variable / f"step_{step:05d}.npy"


def baseline_file_bytes(trials: int, channels: int, hw: int) -> int:
    """Bytes of one ``(trials, channels, hw, hw)`` float32 .npy (128-byte header)."""
    return 128 + 4 * trials * channels * hw * hw


def choose_layer_hw(wanted: int, bytes_at: Callable[[int], int], free: int) -> int:
    """The largest of ``wanted, wanted/2, ...`` (>= 8) whose files take at most half of ``free``."""
    hw = wanted
    while hw > 8 and bytes_at(hw) > free / 2:
        hw = max(8, hw // 2)
    return hw


def layer_windows(table, site: int, layer_hw: int):
    """Row and column indices ``(b, 3, 1)``, ``(b, 1, 3)`` of each trial's 3x3 window at ``site`` in a
    ``layer_hw`` layer."""
    import torch
    from nrflv.experiment import layer_sites, window_index

    ys = torch.tensor(table[f"site{site}_y"].to_numpy())[:, None]
    xs = torch.tensor(table[f"site{site}_x"].to_numpy())[:, None]
    ly, lx = layer_sites(ys, xs, IMAGE_HW, (layer_hw, layer_hw))
    rows, cols = window_index(ly, lx, 3, (layer_hw, layer_hw))
    return rows[:, 0].numpy(), cols[:, 0].numpy()


def write_baseline(store, table, root: Path, layer_hw: int) -> int:
    """Write every set's recorded values as the original's files; returns the number of files.
    Site 1's window is placed first, so site 0's wins where they overlap (the baseline reads site 0)."""
    import numpy as np

    n_files = 0
    for name in dict.fromkeys(table["stimulus_set"]):
        sub = table[table["stimulus_set"] == name]
        idx = sub["trial"].to_numpy()
        b = np.arange(len(idx))[:, None, None]
        windows = [layer_windows(sub, s, layer_hw) for s in (1, 0)]
        for var in VARIABLES:
            values = np.asarray(store.group[var].get_orthogonal_selection((idx,)), dtype=np.float32)
            folder = root / name / var
            folder.mkdir(parents=True, exist_ok=True)
            layer = np.zeros((len(idx), values.shape[3], layer_hw, layer_hw), np.float32)
            for t in range(values.shape[1]):
                for site, (rows, cols) in zip((1, 0), windows):
                    layer[b, :, rows, cols] = values[:, t, site].transpose(0, 2, 3, 1)
                np.save(step_file(root, name, var, t), layer)
                n_files += 1
    return n_files


# ---------------------------------------------------------------------------------------------
# the baseline's analysis: straightforward numpy / scipy on the per-step files
# ---------------------------------------------------------------------------------------------
def load_centre_traces(root: Path, stimulus_set: str, variable: str, steps, ys, xs):
    """``(N, C, T)`` float32: the unit at ``(ys, xs)`` (layer grid, per trial) of every channel,
    one ``np.load`` per step."""
    import numpy as np

    n = np.arange(len(ys))
    out = []
    for t in steps:
        layer = np.load(step_file(root, stimulus_set, variable, t))    # (N, C, H, W)
        out.append(layer[n, :, ys, xs])                                # (N, C)
    return np.stack(out, -1)


def load_window_sums(root: Path, stimulus_set: str, steps, rows, cols):
    """``(N, C, T)`` float32: the state summed over each trial's 3x3 window, every channel."""
    import numpy as np

    b = np.arange(len(rows))[:, None, None]
    out = []
    for t in steps:
        layer = np.load(step_file(root, stimulus_set, "state", t))
        out.append(layer[b, :, rows, cols].sum((1, 2)))                 # (N, 3, 3, C) -> (N, C)
    return np.stack(out, -1)


def phase_steps(protocol, dt_ms: float, skip_ms: float):
    """``(blank, stimulus)`` step ranges, each leaving out ``skip_ms`` after its start."""
    skip = int(round(skip_ms / dt_ms))
    return (range(protocol.burn_in + skip, protocol.onset), range(protocol.onset + skip, protocol.offset))


def centre_sites(table, layer_hw: int):
    """``(ys, xs)`` of site 0 on the layer grid, per trial."""
    return (table["site0_y"].to_numpy() * layer_hw // IMAGE_HW[0],
            table["site0_x"].to_numpy() * layer_hw // IMAGE_HW[1])


def baseline_tuning(root: Path, table, protocol, dt_ms: float, cfg, layer_hw: int) -> dict:
    """Tuning of the unit at site 0 per channel over ``just_angle``: ``pref_orientation``, ``r2``,
    ``tuned`` (each ``(C,)``)."""
    import numpy as np

    blank, during = phase_steps(protocol, dt_ms, cfg.onset_skip_ms)
    ys, xs = centre_sites(table, layer_hw)
    resp = (load_centre_traces(root, "just_angle", "state", during, ys, xs).mean(-1)
            - load_centre_traces(root, "just_angle", "state", blank, ys, xs).mean(-1)).astype(np.float64)
    theta = np.deg2rad(table["direction"].to_numpy(float))
    design = np.stack([np.ones_like(theta), np.cos(theta), np.sin(theta), np.cos(2 * theta), np.sin(2 * theta)], 1)
    coef, *_ = np.linalg.lstsq(design, resp, rcond=None)
    ss_res = ((resp - design @ coef) ** 2).sum(0)
    ss_tot = ((resp - resp.mean(0)) ** 2).sum(0)
    r2 = 1 - ss_res / ss_tot
    pref = np.remainder(np.rad2deg(np.arctan2(coef[4], coef[3])) / 2 + 90, 180) - 90
    from scipy.stats import f as f_dist

    n = len(theta)
    p_value = f_dist.sf((r2 / 4) / ((1 - r2) / (n - 5)), 4, n - 5)
    return {"pref_orientation": pref, "r2": r2, "tuned": (p_value < cfg.alpha) & (r2 >= cfg.tuned_r2)}


def baseline_matched(tuning: dict, table, tolerance: float):
    """``(N, C)`` bool: tuned channels within ``tolerance`` degrees of the trial's orientation (a
    trial with none has an all-False row and is left out by the caller)."""
    import numpy as np

    d = np.remainder(tuning["pref_orientation"][None, :] - table["orientation"].to_numpy(float)[:, None], 180)
    return (np.minimum(d, 180 - d) <= tolerance) & tuning["tuned"][None, :]


def baseline_spectra(root: Path, table, protocol, dt_ms: float, cfg, layer_hw: int, tuning: dict) -> dict:
    """Per ``contrast_and_angle`` trial, the LFP's Welch peak: ``peak_hz``, ``peak_power``,
    ``blank_peak_hz``, ``blank_peak_power`` (each ``(N,)``)."""
    import numpy as np
    import scipy.signal

    fs = 1000.0 / dt_ms
    blank, during = phase_steps(protocol, dt_ms, cfg.onset_skip_ms)
    mask = baseline_matched(tuning, table, cfg.match_tolerance)
    keep = mask.any(1)
    table, mask = table[keep].reset_index(drop=True), mask[keep].astype(np.float32)
    rows, cols = layer_windows(table, 0, layer_hw)
    nper = min(cfg.spectrum_nperseg, len(during), len(blank))
    out = {}
    for key, steps in (("", during), ("blank_", blank)):
        lfp = (load_window_sums(root, "contrast_and_angle", steps, rows, cols) * mask[:, :, None]).sum(1)
        f, psd = scipy.signal.welch(lfp.astype(np.float64), fs, nperseg=nper)
        k = psd[:, 1:].argmax(1) + 1
        out[key + "peak_hz"], out[key + "peak_power"] = f[k], psd[np.arange(len(k)), k]
    return out


def half_period_lags(mean_xc):
    """Half the dominant period (lags, in [1, n//2]) of correlograms ``(C, n)``."""
    import numpy as np

    n = mean_xc.shape[-1]
    amp = np.abs(np.fft.rfft(mean_xc - mean_xc.mean(-1, keepdims=True), n=4 * n))
    k = amp[:, 1:].argmax(-1) + 1
    return np.clip(4 * n / k / 2, 1, n // 2)


def parabolic_peak(xc, lags):
    """Sub-sample lag of the maximum of each row of ``xc (..., n)`` (``-inf`` outside the search)."""
    import numpy as np

    i = xc.argmax(-1)
    n = xc.shape[-1]
    y1 = np.take_along_axis(xc, i[..., None], -1)[..., 0]
    y0 = np.take_along_axis(xc, np.clip(i - 1, 0, n - 1)[..., None], -1)[..., 0]
    y2 = np.take_along_axis(xc, np.clip(i + 1, 0, n - 1)[..., None], -1)[..., 0]
    with np.errstate(invalid="ignore"):
        curv = y0 - 2 * y1 + y2
        ok = (i > 0) & (i < n - 1) & np.isfinite(curv) & (curv != 0)
        delta = np.clip(np.where(ok, 0.5 * (y0 - y2) / np.where(ok, curv, 1.0), 0.0), -0.5, 0.5)
    return lags[i] + delta


def baseline_ei_lag(root: Path, table, protocol, dt_ms: float, cfg, layer_hw: int):
    """``(N, C)`` lag (ms) of ``-p`` behind ``s`` per driven trial (contrast > 0) and channel."""
    import numpy as np

    _, during = phase_steps(protocol, dt_ms, cfg.onset_skip_ms)
    max_lag = max(1, int(round(cfg.max_lag_ms / dt_ms)))
    s_all, p_all = [], []
    for name in dict.fromkeys(table["stimulus_set"]):
        sub = table[table["stimulus_set"] == name]
        driven = (sub["contrast"] > 0).to_numpy()
        if not driven.any():
            continue
        ys, xs = centre_sites(sub, layer_hw)        # the files hold every trial of the set: keep the driven
        s_all.append(load_centre_traces(root, name, "state", during, ys, xs)[driven])
        p_all.append(load_centre_traces(root, name, "momentum", during, ys, xs)[driven])
    s = np.concatenate(s_all).astype(np.float64)
    inhib = -np.concatenate(p_all).astype(np.float64)
    n_time = s.shape[-1]
    xc = np.empty(s.shape[:2] + (2 * max_lag + 1,))
    for n in range(s.shape[0]):
        for c in range(s.shape[1]):
            a, b = inhib[n, c] - inhib[n, c].mean(), s[n, c] - s[n, c].mean()
            full = np.correlate(a, b, "full")[n_time - 1 - max_lag:n_time + max_lag]
            sd = np.sqrt((a * a).mean() * (b * b).mean())
            xc[n, c] = full / (n_time * sd) if sd > 0 else 0.0
    lags = np.arange(-max_lag, max_lag + 1)
    half = half_period_lags(xc.mean(0))
    inside = np.abs(lags)[None, :] <= half[:, None]
    return parabolic_peak(np.where(inside[None], xc, -np.inf), lags.astype(float)) * dt_ms


def baseline_read_bytes(table, protocol, dt_ms: float, cfg, channels: int, layer_hw: int) -> int:
    """Bytes of the files the baseline's three quantities load."""
    blank, during = phase_steps(protocol, dt_ms, cfg.onset_skip_ms)
    per_set = table.groupby("stimulus_set", sort=False).size()
    size = {k: baseline_file_bytes(int(v), channels, layer_hw) for k, v in per_set.items()}
    driven_sets = table[table["contrast"] > 0]["stimulus_set"].unique()
    tuning_and_spectra = (len(blank) + len(during)) * (size["just_angle"] + size["contrast_and_angle"])
    return tuning_and_spectra + sum(len(VARIABLES) * len(during) * size[k] for k in driven_sets)
