"""The thesis's Gabor stimulus sets: trial tables, rendered images, and a contact sheet.

Every set places its (first) Gabor at the image centre ``(H // 2, W // 2)`` and modulates a
background image (the mean training image, supplied by the caller) as
``background * (1 + weight * sum_k c_k g_k)`` clipped to ``[0, 1]`` (see :mod:`nrflv.gabor`).

Sets (defaults: 128 trials each on a 32 x 32 image; directions are ``k * 360 / n`` degrees):

* ``just_angle``: one Gabor per direction (128 directions).
* ``contrast_and_angle``: 8 contrasts x 16 directions, contrast-major.
* ``few_angles``: 8 directions x 16 repeats, direction-major.
* ``long_bars``: as ``few_angles`` with ``gamma = 0.01`` (bars far longer than wide).
* ``pairs``: a static Gabor at the centre whose bars lie along the displacement ``delta`` (so
  its direction is ``delta + 90``) and a second Gabor at distance ``d`` along ``delta`` with the
  same direction (``collinear``) or rotated by 90 degrees (``orthogonal``); 4 displacements x
  4 distances x 2 relations x 4 repeats; each Gabor enters with weight 2.

Geometry: rows grow downwards; a displacement ``delta`` moves by ``(row, col) =
(round(d sin delta), round(d cos delta))``; the bars of a Gabor of direction ``theta`` run
along ``(row, col) = (cos theta, -sin theta)``. Every table has two recording sites: site 0 at
the first Gabor's centre, site 1 at the second Gabor's centre (pairs) or ``flank_distance``
pixels along the bars' axis from the centre (single Gabors). Rounding is half-to-even
(``numpy.rint``).
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure

from nrflv.gabor import apply_gabors, gabor_fields

STIMULUS_SETS = ("just_angle", "contrast_and_angle", "few_angles", "long_bars", "pairs")
RELATIONS = ("collinear", "orthogonal")
SINGLE = "single"

#: the columns of a :func:`conditions` table, in order.
COLUMNS = ("stimulus_set", "direction", "orientation", "contrast", "gamma", "weight", "pos_y", "pos_x",
           "direction2", "pos2_y", "pos2_x", "distance", "displacement", "collinear", "relation",
           "repeat", "site0_y", "site0_x", "site1_y", "site1_x")
INT_COLUMNS = ("pos_y", "pos_x", "pos2_y", "pos2_x", "collinear", "repeat",
               "site0_y", "site0_x", "site1_y", "site1_x")


@dataclass(frozen=True)
class GaborDesign:
    """Every size and count of the stimulus sets; the defaults are the thesis's (128 trials each)."""

    sigma: float = 0.7
    wavelength: float = 3.0
    gamma: float = 0.5
    psi: float = 1.0
    nstds: float = 3.0
    contrast: float = 2.4
    just_angle_directions: int = 128
    contrast_directions: int = 16
    contrasts: tuple[float, ...] = (0.0, 0.4, 0.8, 1.2, 1.6, 2.0, 2.4, 2.8)
    few_angles_directions: int = 8
    few_angles_repeats: int = 16
    long_bars_gamma: float = 0.01
    long_bars_directions: int = 8
    long_bars_repeats: int = 16
    pair_directions: int = 4
    pair_distances: tuple[float, ...] = (3, 5, 7, 10)
    pair_repeats: int = 4
    pair_weight: float = 2.0
    flank_distance: float = 5

    def __post_init__(self) -> None:
        for name in ("sigma", "wavelength", "gamma", "nstds", "long_bars_gamma"):
            if not getattr(self, name) > 0:
                raise ValueError(f"GaborDesign.{name} must be > 0, got {getattr(self, name)}")
        for name in ("just_angle_directions", "contrast_directions", "few_angles_directions",
                     "few_angles_repeats", "long_bars_directions", "long_bars_repeats",
                     "pair_directions", "pair_repeats"):
            value = getattr(self, name)
            if int(value) != value or value < 1:
                raise ValueError(f"GaborDesign.{name} must be a positive integer, got {value}")
        if len(self.contrasts) == 0 or len(self.pair_distances) == 0:
            raise ValueError("GaborDesign.contrasts and GaborDesign.pair_distances must not be empty")
        if any(d < 0 for d in self.pair_distances) or self.flank_distance < 0:
            raise ValueError(f"distances must be >= 0, got pair_distances={self.pair_distances}, "
                             f"flank_distance={self.flank_distance}")


# --- trial tables ---------------------------------------------------------------------------

def equally_spaced_directions(n: int) -> np.ndarray:
    """``(n,)`` directions ``k * 360 / n`` degrees, ``k = 0..n-1``."""
    return np.arange(int(n), dtype=np.float64) * 360.0 / int(n)


def wrap_orientation(direction: np.ndarray) -> np.ndarray:
    """Orientation (period 180 degrees) of ``direction (...)`` degrees, in [-90, 90)."""
    return np.remainder(np.asarray(direction, dtype=np.float64) + 90.0, 180.0) - 90.0


def bar_axis(direction: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit vector ``(row, col) = (cos theta, -sin theta)`` along the bars of ``direction (...)`` degrees."""
    theta = np.deg2rad(np.asarray(direction, dtype=np.float64))
    return np.cos(theta), -np.sin(theta)


def _factorial(levels: dict[str, Iterable]) -> pd.DataFrame:
    """All combinations of ``levels``, the first key outermost (slowest varying)."""
    names = list(levels)
    return pd.DataFrame(list(itertools.product(*(list(v) for v in levels.values()))), columns=names)


def _single_gabor_trials(levels: dict[str, Iterable], contrast: float, gamma: float) -> pd.DataFrame:
    """Trials of one Gabor each: ``levels`` crossed, with constant ``contrast`` / ``gamma`` unless listed."""
    frame = _factorial(levels)
    if "contrast" not in frame:
        frame["contrast"] = float(contrast)
    if "repeat" not in frame:
        frame["repeat"] = 0
    frame["gamma"] = float(gamma)
    frame["weight"] = 1.0
    frame["relation"] = SINGLE
    return frame


def _pair_trials(design: GaborDesign) -> pd.DataFrame:
    """Pair trials: displacement x distance x relation x repeat, with both Gabors' directions."""
    frame = _factorial({"displacement": equally_spaced_directions(design.pair_directions),
                        "distance": [float(d) for d in design.pair_distances],
                        "relation": RELATIONS,
                        "repeat": range(design.pair_repeats)})
    frame["direction"] = np.remainder(frame["displacement"] + 90.0, 360.0)
    turn = np.where(frame["relation"] == "collinear", 0.0, 90.0)
    frame["direction2"] = np.remainder(frame["direction"] + turn, 360.0)
    frame["contrast"] = float(design.contrast)
    frame["gamma"] = float(design.gamma)
    frame["weight"] = float(design.pair_weight)
    return frame


def _design_trials(name: str, design: GaborDesign) -> pd.DataFrame:
    """The set's trials in their fixed order, before any geometry is placed."""
    if name == "just_angle":
        return _single_gabor_trials({"direction": equally_spaced_directions(design.just_angle_directions)},
                                    design.contrast, design.gamma)
    if name == "contrast_and_angle":
        return _single_gabor_trials({"contrast": [float(c) for c in design.contrasts],
                                     "direction": equally_spaced_directions(design.contrast_directions)},
                                    design.contrast, design.gamma)
    if name == "few_angles":
        return _single_gabor_trials({"direction": equally_spaced_directions(design.few_angles_directions),
                                     "repeat": range(design.few_angles_repeats)},
                                    design.contrast, design.gamma)
    if name == "long_bars":
        return _single_gabor_trials({"direction": equally_spaced_directions(design.long_bars_directions),
                                     "repeat": range(design.long_bars_repeats)},
                                    design.contrast, design.long_bars_gamma)
    if name == "pairs":
        return _pair_trials(design)
    raise ValueError(f"unknown stimulus set {name!r}; valid sets: {', '.join(STIMULUS_SETS)}")


def _place(frame: pd.DataFrame, design: GaborDesign, height: int, width: int) -> pd.DataFrame:
    """Add centres, the second Gabor's fields, orientation and recording sites to ``frame``."""
    out = frame.copy()
    pair = (out["relation"] != SINGLE).to_numpy()
    cy, cx = height // 2, width // 2
    out["pos_y"], out["pos_x"] = cy, cx
    out["orientation"] = wrap_orientation(out["direction"].to_numpy())
    for column, fill in (("direction2", np.nan), ("displacement", np.nan), ("distance", 0.0)):
        if column not in out:
            out[column] = fill
    delta = np.deg2rad(out["displacement"].fillna(0.0).to_numpy())
    dist = out["distance"].to_numpy(dtype=np.float64)
    out["pos2_y"] = np.where(pair, cy + np.rint(dist * np.sin(delta)), -1)
    out["pos2_x"] = np.where(pair, cx + np.rint(dist * np.cos(delta)), -1)
    out["collinear"] = np.where(pair, (out["relation"] == "collinear").astype(int), -1)
    axis_y, axis_x = bar_axis(out["direction"].to_numpy())
    out["site0_y"], out["site0_x"] = cy, cx
    out["site1_y"] = np.where(pair, out["pos2_y"], cy + np.rint(design.flank_distance * axis_y))
    out["site1_x"] = np.where(pair, out["pos2_x"], cx + np.rint(design.flank_distance * axis_x))
    for column in INT_COLUMNS:
        out[column] = out[column].astype(np.int64)
    return out


def _check_inside(table: pd.DataFrame, height: int, width: int) -> None:
    """ValueError naming the set, the point and the image size if a centre or site leaves the image."""
    pair = (table["relation"] != SINGLE).to_numpy()
    points = (("first Gabor centre", "pos_y", "pos_x", np.ones_like(pair)),
              ("second Gabor centre", "pos2_y", "pos2_x", pair),
              ("recording site 0", "site0_y", "site0_x", np.ones_like(pair)),
              ("recording site 1", "site1_y", "site1_x", np.ones_like(pair)))
    for label, ycol, xcol, applies in points:
        y, x = table[ycol].to_numpy(), table[xcol].to_numpy()
        outside = applies & ((y < 0) | (y >= height) | (x < 0) | (x >= width))
        if outside.any():
            i = int(np.flatnonzero(outside)[0])
            row = table.iloc[i]
            where = f" at distance {row['distance']:g} px" if pair[i] else ""
            raise ValueError(
                f"stimulus set {row['stimulus_set']!r}: {label} (row {y[i]}, col {x[i]}){where} for "
                f"direction {row['direction']:g} deg lies outside the {height}x{width} image")


def conditions(name: str, design: GaborDesign, height: int, width: int) -> pd.DataFrame:
    """One row per trial of stimulus set ``name`` on a ``height x width`` image (columns: ``COLUMNS``)."""
    if int(height) != height or int(width) != width or height < 1 or width < 1:
        raise ValueError(f"height and width must be positive integers, got {height}x{width}")
    frame = _design_trials(name, design)
    frame["stimulus_set"] = name
    table = _place(frame, design, int(height), int(width))[list(COLUMNS)].reset_index(drop=True)
    _check_inside(table, int(height), int(width))
    return table


def conditions_table(names: Sequence[str], design: GaborDesign, height: int, width: int) -> pd.DataFrame:
    """The sets ``names`` concatenated in the given order, with a ``trial`` column ``0..N-1`` first."""
    names = (names,) if isinstance(names, str) else tuple(names)
    if not names:
        raise ValueError(f"names must list at least one stimulus set of {', '.join(STIMULUS_SETS)}")
    table = pd.concat([conditions(n, design, height, width) for n in names], ignore_index=True)
    table.insert(0, "trial", np.arange(len(table), dtype=np.int64))
    return table


# --- images ----------------------------------------------------------------------------------

def _check_background(background: torch.Tensor) -> None:
    """ValueError unless ``background`` is a ``(C, H, W)`` float tensor with values in [0, 1]."""
    if not isinstance(background, torch.Tensor):
        raise ValueError(f"background must be a (C, H, W) tensor, got {type(background).__name__}")
    if background.dim() != 3:
        raise ValueError(f"background must be a (C, H, W) tensor, got shape {tuple(background.shape)}")
    if not background.is_floating_point():
        raise ValueError(f"background must be a float tensor, got {background.dtype}")
    if not bool(((background >= 0) & (background <= 1)).all()):  # NaN fails too
        raise ValueError("background values must lie in [0, 1]")


def _column(table: pd.DataFrame, name: str, device: torch.device) -> torch.Tensor:
    """Column ``name`` of ``table`` as a ``(N,)`` float64 tensor on ``device``."""
    return torch.tensor(table[name].to_numpy(dtype=np.float64), device=device)


def render(table: pd.DataFrame, background: torch.Tensor, design: GaborDesign) -> torch.Tensor:
    """Images of the trials in ``table`` on ``background (C, H, W)``: ``(N, C, H, W)`` float32 in [0, 1].

    Trial ``i`` is ``clip(background * (1 + w_i (c_i g1_i + c_i g2_i)), 0, 1)`` where ``g2`` is
    present only for pairs; all Gabors are built in one batch on ``background``'s device.
    """
    _check_background(background)
    missing = [c for c in ("direction", "contrast", "gamma", "weight", "pos_y", "pos_x", "direction2",
                           "pos2_y", "pos2_x", "relation") if c not in table]
    if missing:
        raise ValueError(f"table lacks columns {missing}; build it with conditions()")
    height, width = background.shape[-2:]
    dev = background.device
    shape = dict(sigma=design.sigma, wavelength=design.wavelength, psi=design.psi, nstds=design.nstds)
    gamma = _column(table, "gamma", dev)
    first = gabor_fields(height, width, _column(table, "pos_y", dev), _column(table, "pos_x", dev),
                         _column(table, "direction", dev), gamma=gamma, **shape)
    pair = torch.tensor((table["relation"] != SINGLE).to_numpy(dtype=bool), device=dev)
    second = torch.zeros_like(first)
    if bool(pair.any()):
        second[pair] = gabor_fields(height, width, _column(table, "pos2_y", dev)[pair],
                                    _column(table, "pos2_x", dev)[pair],
                                    _column(table, "direction2", dev)[pair], gamma=gamma[pair], **shape)
    contrast = _column(table, "contrast", dev)
    contrasts = torch.stack([contrast, torch.where(pair, contrast, torch.zeros_like(contrast))], dim=-1)
    images = apply_gabors(background.double(), torch.stack([first, second], dim=-3), contrasts,
                          weight=_column(table, "weight", dev), lo=0.0, hi=1.0)
    return images.float()


# --- contact sheet ---------------------------------------------------------------------------

def stimulus_title(row: pd.Series) -> str:
    """Compact two-line title of one trial: set, then direction / contrast (pairs: distance, relation)."""
    text = f"{row['direction']:.4g}\N{DEGREE SIGN} c={row['contrast']:.3g}"
    if row["relation"] != SINGLE:
        text += f"\nd={row['distance']:g} {row['relation'][:4]}"
    return f"{row['stimulus_set']}\n{text}"


def contact_sheet(images: torch.Tensor, table: pd.DataFrame, max_images: int = 64) -> Figure:
    """A grid of the first ``max_images`` stimuli, each titled from its row of ``table``.

    ``images``: ``(N, C, H, W)`` in [0, 1], C = 1 (grey) or 3 (colour); ``table``: N rows of
    :func:`conditions_table` / :func:`conditions`. Returns a new :class:`matplotlib.figure.Figure`.
    """
    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"images must be (N, C, H, W) with C = 1 or 3, got {tuple(images.shape)}")
    if len(table) != images.shape[0]:
        raise ValueError(f"table has {len(table)} rows but there are {images.shape[0]} images")
    if max_images < 1:
        raise ValueError(f"max_images must be >= 1, got {max_images}")
    n = min(images.shape[0], int(max_images))
    cols = max(1, math.ceil(math.sqrt(n)))
    rows = max(1, math.ceil(n / cols))
    fig = Figure(figsize=(1.25 * cols, 1.45 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    pixels = images[:n].detach().to("cpu", torch.float32).permute(0, 2, 3, 1).numpy()
    for i, ax in enumerate(axes):
        ax.set_axis_off()
        if i >= n:
            continue
        picture = pixels[i, :, :, 0] if pixels.shape[-1] == 1 else pixels[i]
        ax.imshow(picture, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
        ax.set_title(stimulus_title(table.iloc[i]), fontsize=5)
    return fig
