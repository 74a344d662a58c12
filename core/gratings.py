"""Oriented grating stimuli and the tilt-discrimination labels, shared by the families that
show gratings (``rsa`` trains on them; ``cordsnet`` records with them, so recordings compare).

A grating of orientation ``theta`` (degrees, measured from vertical) has luminance

    I(x, y) = 0.5 + (contrast / 2) * w( 2 pi f (x cos(theta) + y sin(theta)) + phase )

at pixel column ``x`` and row ``y`` (rows grow downwards), where ``f`` is the spatial
frequency in cycles per pixel and ``w`` is ``cos`` (``waveform='sine'``) or its sign
(``waveform='square'``, the binarised grating of the source tutorial, whose pixels are then
0 or 1 at full contrast). ``theta = 0`` gives vertical bars; ``theta > 0`` tilts the
bars clockwise ("tilted right"), ``theta < 0`` anticlockwise ("tilted left"). The
tutorial's images are 48 x 64 pixels with ``f = 10 / (28 * 2 pi) ~ 0.0568`` cycles/pixel
(a period of ~17.6 pixels).
"""
from __future__ import annotations

import math

import torch

#: the tutorial's spatial frequency: cos argument advances 1/28 rad per full-resolution
#: pixel at 1/10 resolution, i.e. 10/28 rad per pixel of the 48 x 64 image.
TUTORIAL_SPATIAL_FREQ = 10.0 / 28.0 / (2.0 * math.pi)


def grating_images(orientation: torch.Tensor, height: int = 48, width: int = 64, *,
                   spatial_freq: float = TUTORIAL_SPATIAL_FREQ, phase: float = 0.0,
                   contrast: float = 1.0, waveform: str = "square") -> torch.Tensor:
    """Gratings for a batch of orientations, built in one broadcast.

    Args:
        orientation: ``(n,)`` orientations in degrees from vertical (any float tensor; its
            device and dtype are used).
        height, width: image size in pixels.
        spatial_freq: cycles per pixel.
        phase: spatial phase in degrees.
        contrast: peak-to-peak luminance (images lie in ``[0.5 - c/2, 0.5 + c/2]``).
        waveform: ``square`` (binarised, as in the tutorial) or ``sine``.
    Returns:
        ``(n, height, width)`` images.
    """
    if waveform not in ("square", "sine"):
        raise ValueError(f"waveform must be 'square' or 'sine', got {waveform!r}")
    ori = torch.as_tensor(orientation)
    if not ori.is_floating_point():
        ori = ori.float()
    theta = torch.deg2rad(ori.reshape(-1))[:, None, None]
    y = torch.arange(height, device=ori.device, dtype=ori.dtype)[None, :, None]
    x = torch.arange(width, device=ori.device, dtype=ori.dtype)[None, None, :]
    arg = 2 * math.pi * spatial_freq * (x * torch.cos(theta) + y * torch.sin(theta)) + math.radians(phase)
    wave = torch.cos(arg)
    if waveform == "square":
        wave = torch.where(wave > 0, 1.0, -1.0).to(wave.dtype)
    return 0.5 + 0.5 * contrast * wave


def tilt_labels(orientation: torch.Tensor) -> torch.Tensor:
    """Target of the tilt task: 1.0 for tilted right (``theta > 0``), 0.0 for left. ``(n,)``."""
    return (torch.as_tensor(orientation) > 0).to(torch.float32)


def random_orientations(n: int, generator: torch.Generator | None = None,
                        device: torch.device | str = "cpu") -> torch.Tensor:
    """``(n,)`` orientations drawn uniformly from [-90, 90) degrees."""
    u = torch.rand(n, generator=generator, device=device)
    return (u - 0.5) * 180.0


def wrap_orientation(deg: torch.Tensor) -> torch.Tensor:
    """Map orientations (period 180 degrees) into [-90, 90)."""
    return torch.remainder(torch.as_tensor(deg) + 90.0, 180.0) - 90.0
