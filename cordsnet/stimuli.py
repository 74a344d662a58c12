"""Experiment stimuli for CordsNet: oriented gratings at the model's input size (the same
gratings as the ``rsa`` family, so recordings compare with V1), or the user's own images.

Images are returned in [0, 1]; the suite normalises them like the training images.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from core.errors import UserError
from core.gratings import grating_images

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def grating_conditions(n_orientations: int, n_phases: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Every (orientation, phase) pair: orientations evenly in [-90, 90) degrees, phases evenly
    in [0, 360). Returns ``(orientation (n,), phase (n,))`` with ``n = n_orientations * n_phases``."""
    ori = -90.0 + 180.0 * torch.arange(n_orientations, dtype=torch.float64) / n_orientations
    phase = 360.0 * torch.arange(n_phases, dtype=torch.float64) / n_phases
    o, p = torch.meshgrid(ori, phase, indexing="ij")
    return o.reshape(-1).float(), p.reshape(-1).float()


def gratings(orientation: torch.Tensor, phase: torch.Tensor, size: int, channels: int,
             cycles: float = 4.0, contrast: float = 1.0) -> torch.Tensor:
    """Sine gratings ``(n, channels, size, size)`` in [0, 1] with ``cycles`` periods across the
    image, one per (orientation, phase) pair (degrees; 0 = vertical bars)."""
    out = torch.empty(len(orientation), channels, size, size)
    for ph in torch.unique(phase):
        sel = phase == ph
        img = grating_images(orientation[sel].float(), size, size, spatial_freq=cycles / size,
                             phase=float(ph), contrast=contrast, waveform="sine")
        out[sel] = img[:, None].expand(-1, channels, -1, -1)
    return out


#: how an own image becomes a ``size`` x ``size`` input (config key ``own_image_fit``)
FITS = ("crop", "pad", "none")


def fit_image(image, size: int, fit: str = "crop", resize: int | None = None,
              fill: torch.Tensor | None = None) -> torch.Tensor:
    """One PIL image as ``(C, size, size)`` in [0, 1]:

    * ``crop`` -- the published ``process_image`` less its normalisation: torchvision's
      ``Resize(resize)`` (the shorter side to ``resize``, default ``size``, aspect kept,
      bilinear with antialiasing) then ``CenterCrop(size)``; a non-square image loses the ends
      of its longer side;
    * ``pad`` -- letterbox: the longer side resized to ``size`` (aspect kept, the shorter side
      at least 1 px), centred, the rest filled with ``fill`` ``(C, 1, 1)`` (default 0; the suite
      gives the data set's mean colour, which normalises to 0: the blank screen); nothing lost;
    * ``none`` -- resized to ``size`` x ``size``; only square images (a non-square one is a
      ``ValueError``: the caller says which file).
    """
    from torchvision.transforms import v2

    to_float = [v2.ToImage(), v2.ToDtype(torch.float32, scale=True)]
    w, h = image.size
    if fit == "crop":
        return v2.Compose([v2.Resize(resize or size), v2.CenterCrop(size), *to_float])(image)
    if fit == "none":
        if w != h:
            raise ValueError(f"{w} x {h} px is not square")
        return v2.Compose([v2.Resize((size, size)), *to_float])(image)
    if fit != "pad":
        raise ValueError(f"fit must be one of {FITS}, got {fit!r}")
    nh, nw = (size, max(1, round(w * size / h))) if h >= w else (max(1, round(h * size / w)), size)
    x = v2.Compose([v2.Resize((nh, nw)), *to_float])(image)
    out = torch.zeros(x.shape[0], size, size) if fill is None else fill.float().expand(x.shape[0], size, size).clone()
    top, left = (size - nh) // 2, (size - nw) // 2
    out[:, top:top + nh, left:left + nw] = x
    return out


def folder_images(folder: str | Path, size: int, channels: int, check_only: bool = False,
                  resize: int | None = None, fit: str = "crop",
                  fill: torch.Tensor | None = None) -> tuple[torch.Tensor, list[str]]:
    """Every image file in ``folder`` (sorted by name) through :func:`fit_image` (``fit``:
    ``crop`` is the published ``process_image`` less its normalisation, ``pad`` letterboxes,
    ``none`` takes square images only). Returns ``(n, channels, size, size)`` in [0, 1] (RGB to
    grey by luminance for one-channel models). ``check_only``: only decode every file and check
    its shape (a broken one, or a non-square one with ``fit='none'``, is a UserError) and return
    no images."""
    from PIL import Image, UnidentifiedImageError

    root = Path(folder)
    if not root.is_dir():
        raise UserError(f"--stimulus_folder: not a folder: {root}")
    files = sorted(p for p in root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise UserError(f"--stimulus_folder: no image files ({', '.join(IMAGE_SUFFIXES)}) in {root}")
    images = []
    for path in files:
        try:
            with warnings.catch_warnings():
                # PIL warns above ~89 Mpixels and raises above twice that: both are refused here
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(path) as im:
                    _check_finite(im, path)
                    im = im.convert("L" if channels == 1 else "RGB")  # decodes the whole file
                    if fit == "none" and im.size[0] != im.size[1]:
                        raise UserError(f"--stimulus_folder: {path} is {im.size[0]} x {im.size[1]} px, not square, "
                                        "and own_image_fit is none; set own_image_fit crop (the published centre "
                                        "crop) or pad (letterbox), or give square images")
                    if check_only:
                        continue
                    x = fit_image(im, size, fit, resize, fill)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise UserError(f"--stimulus_folder: {path} is too large to decode safely ({exc}); "
                            "resize it first") from None
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
            raise UserError(f"--stimulus_folder: cannot read {path}: {exc}") from None
        images.append(torch.as_tensor(x).float().clamp(0, 1))
    names = [p.name for p in files]
    return (torch.empty(0), names) if check_only else (torch.stack(images), names)


def _check_finite(im, path: Path) -> None:
    """A floating-point image (PIL mode ``F``, e.g. a float TIFF) holding NaN or inf is refused:
    converting it to 8 bits would silently turn those pixels black."""
    if im.mode.startswith("F"):
        arr = np.asarray(im)
        if not np.isfinite(arr).all():
            n = int((~np.isfinite(arr)).sum())
            raise UserError(f"--stimulus_folder: {path} has {n} NaN or infinite pixel(s) of {arr.size}; "
                            "give finite images")
