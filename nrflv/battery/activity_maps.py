"""Activity maps and movies of the whole recorded layer, and the long-bar retinotopy figure.

Maps come from ``layer_means`` (each unit's mean state per protocol phase, recorded for every
trial; ``record_layer_means``), so they exist on any recording: per trial and channel, the mean
state during the stimulus minus during the blank before it. Per trial, the maps' positive
part gives a retinotopic centroid -- where in the layer the stimulus drove the units -- which
is compared with the stimulus's own site on the layer's grid (``centroid_error_px``; small on a
retinotopic layer). For the first ``map_trials`` trials of every set the maps of all channels
are drawn as one mosaic; for ``long_bars`` trials (a bar across the image) the same mosaic is
the retinotopy figure of the original.

Movies (animated GIFs, all channels tiled, a bar below showing the protocol phase) need the
whole layer over time: ``layer_movie`` (``record_movie_every`` > 0) or a ``record_units: all``
recording; on a window recording without a movie they are left out with the reason.
"""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from core.suite import AnalysisResult, AnalysisSkipped, Animation  # noqa: E402
from nrflv.battery.reading import Experiment  # noqa: E402

PHASES = ("burn_in", "blank_before", "stimulus", "blank_after")


def stimulus_maps(exp: Experiment, table: pd.DataFrame) -> np.ndarray:
    """``(N, C, H, W)`` stimulus minus blank-before mean state of every unit, per trial."""
    if "layer_means" not in exp.store.variables:
        raise AnalysisSkipped("the recording has no layer_means (recorded with record_layer_means: false, or "
                              "before it existed); record again, or record with record_units: all")
    arr = exp.store.group["layer_means"]
    idx = table["trial"].to_numpy()
    raw = np.asarray(arr.get_orthogonal_selection((idx,)), dtype=np.float64)      # (N, 4, C, H, W)
    return raw[:, PHASES.index("stimulus")] - raw[:, PHASES.index("blank_before")]


def centroid(maps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centre of mass ``(y, x)`` of the positive part of ``maps (..., H, W)`` summed over the
    dims before the last two but the first: ``(N,)`` each; NaN where nothing is positive."""
    pos = np.clip(maps, 0, None)
    while pos.ndim > 3:
        pos = pos.sum(1)
    h, w = pos.shape[-2:]
    mass = pos.sum((-1, -2))
    with np.errstate(invalid="ignore", divide="ignore"):
        cy = (pos * np.arange(h)[:, None]).sum((-1, -2)) / mass
        cx = (pos * np.arange(w)[None, :]).sum((-1, -2)) / mass
    cy[mass <= 0], cx[mass <= 0] = np.nan, np.nan
    return cy, cx


def layer_site(exp: Experiment, table: pd.DataFrame, site: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The recording site on the layer's grid (as the recorder maps image pixels)."""
    (ih, iw), (lh, lw) = exp.image_hw, exp.layer_hw
    return (table[f"site{site}_y"].to_numpy() * lh) // ih, (table[f"site{site}_x"].to_numpy() * lw) // iw


def mosaic(maps: np.ndarray, cols: int = 8) -> np.ndarray:
    """``(C, H, W)`` -> one 2-D image with the channels tiled (NaN between tiles)."""
    c, h, w = maps.shape
    cols = min(cols, c)
    rows = -(-c // cols)
    out = np.full((rows * (h + 1) - 1, cols * (w + 1) - 1), np.nan)
    for k in range(c):
        r, q = divmod(k, cols)
        out[r * (h + 1):r * (h + 1) + h, q * (w + 1):q * (w + 1) + w] = maps[k]
    return out


def movie_frames(exp: Experiment, trial: int) -> tuple[np.ndarray, np.ndarray]:
    """``(F, C, H, W)`` whole-layer states of one trial and ``(F,)`` their step indices."""
    if "layer_movie" in exp.store.variables:
        frames = np.asarray(exp.store.group["layer_movie"][trial], dtype=np.float32)
        return frames, np.arange(len(frames)) * exp.movie_every
    if exp.units_mode == "all":
        every = max(1, exp.n_steps // 200)            # at most ~200 frames per movie
        frames = np.asarray(exp.store.group["state"][trial, ::every, 0], dtype=np.float32)
        return frames, np.arange(0, exp.n_steps, every)[:len(frames)] * exp.every
    raise AnalysisSkipped("movies need the whole layer over time: record with record_movie_every > 0 "
                          "(layer_movie) or record_units: all")


def movie(exp: Experiment, trial: int, title_rows: int = 3, zoom: int = 4) -> Animation:
    """All channels of one trial tiled, frame by frame, with a phase bar below (grey burn-in,
    white blank, black stimulus) and a cursor at the frame's time; each unit ``zoom`` x ``zoom``
    pixels."""
    frames, steps = movie_frames(exp, trial)
    lim = float(np.nanmax(np.abs(frames))) or 1.0
    cmap = plt.get_cmap("RdBu_r")
    proto = exp.store.attrs["protocol"]
    edges = np.cumsum([0, proto["burn_in"], proto["blank_before"], proto["stimulus"], proto["blank_after"]])
    shades = (0.6, 1.0, 0.0, 1.0)
    pics = Animation()
    for fr, step in zip(frames, steps):
        tile = mosaic(fr)
        rgb = cmap((np.nan_to_num(tile, nan=0.0) / lim + 1) / 2)[..., :3]
        rgb[np.isnan(tile)] = 1.0
        width = rgb.shape[1]
        bar = np.ones((title_rows, width, 3))
        pos = (np.arange(width) + 0.5) / width * edges[-1]
        for k in range(4):
            bar[:, (pos >= edges[k]) & (pos < edges[k + 1])] = shades[k]
        bar[:, min(width - 1, int(step / edges[-1] * width))] = (1.0, 0.0, 0.0)
        frame = np.concatenate([rgb, np.ones((1, width, 3)), bar])
        pics.append(frame.repeat(zoom, 0).repeat(zoom, 1))
    pics.ms_per_frame = 80
    pics.model_ms_per_frame = float((steps[1] - steps[0]) * exp.dt_ms / exp.every) if len(steps) > 1 else 0.0
    return pics


def run(exp: Experiment, cfg) -> AnalysisResult:
    """Maps per trial and channel, their retinotopic centroids, the mosaics (see module doc)."""
    rows, figures = [], {}
    for name in exp.sets:
        table = exp.table(name)
        maps = stimulus_maps(exp, table)                                  # (N, C, H, W)
        cy, cx = centroid(maps)
        sy, sx = layer_site(exp, table)
        for i, trial in enumerate(table["trial"]):
            rows.append({"stimulus_set": name, "trial": int(trial), "direction": float(table["direction"].iloc[i]),
                         "contrast": float(table["contrast"].iloc[i]), "site_y": int(sy[i]), "site_x": int(sx[i]),
                         "centroid_y": float(cy[i]), "centroid_x": float(cx[i]),
                         "centroid_error_px": float(np.hypot(cy[i] - sy[i], cx[i] - sx[i])),
                         "mean_change": float(maps[i].mean()), "max_change": float(maps[i].max())})
        for i in range(min(cfg.map_trials, len(table))):
            label = "retinotopy" if name == "long_bars" else "activity_map"
            figures[f"{label}_{name}_trial{int(table['trial'].iloc[i])}"] = _map_figure(
                maps[i], f"{name}, trial {int(table['trial'].iloc[i])} (direction {table['direction'].iloc[i]:g}°, "
                         f"contrast {table['contrast'].iloc[i]:g}): stimulus − blank per channel; + site",
                sy[i], sx[i])
    per_trial = pd.DataFrame(rows)
    by_set = per_trial.groupby("stimulus_set", sort=False).agg(
        trials=("trial", "size"), median_centroid_error_px=("centroid_error_px", "median"),
        mean_change=("mean_change", "mean")).reset_index()
    scalars = {f"median_centroid_error_px/{r.stimulus_set}": float(r.median_centroid_error_px)
               for r in by_set.itertuples()}
    return AnalysisResult(tables={"map_per_trial": per_trial, "maps_by_set": by_set}, figures=figures,
                          scalars=scalars)


def run_movies(exp: Experiment, cfg) -> AnalysisResult:
    """Movies of the first ``movie_trials`` trials of every set (see module doc); raises
    :class:`AnalysisSkipped` on a recording without the whole layer over time."""
    figures, rows = {}, []
    for name in exp.sets:
        for trial in exp.table(name)["trial"].iloc[:cfg.movie_trials]:
            anim = movie(exp, int(trial))
            figures[f"movie_{name}_trial{int(trial)}"] = anim
            rows.append({"stimulus_set": name, "trial": int(trial), "frames": len(anim),
                         "model_ms_per_frame": anim.model_ms_per_frame})
    return AnalysisResult(tables={"movies": pd.DataFrame(rows)}, figures=figures,
                          scalars={"movies": float(len(rows))})


def _map_figure(maps: np.ndarray, title: str, sy: int, sx: int) -> plt.Figure:
    c, h, w = maps.shape
    cols = min(8, c)
    rows = -(-c // cols)
    tile = mosaic(maps, cols)
    lim = float(np.nanmax(np.abs(maps))) or 1.0
    fig, ax = plt.subplots(figsize=(1.3 * cols + 1.2, 1.3 * rows + 0.8))
    im = ax.imshow(tile, cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest")
    for k in range(c):
        r, q = divmod(k, cols)
        ax.text(q * (w + 1), r * (h + 1), str(k), fontsize=6, va="top", ha="left")
        ax.plot(q * (w + 1) + sx, r * (h + 1) + sy, "+", color="k", ms=3, mew=0.6)
    ax.set_xticks([]), ax.set_yticks([])
    fig.colorbar(im, ax=ax, shrink=0.8, label="state: stimulus − blank")
    ax.set_title(title, fontsize=8)
    return fig
