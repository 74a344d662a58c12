"""Gabor patches placed on an image canvas, and stimuli made by modulating a background.

A Gabor of ``direction`` theta (degrees, converted to radians) centred at the integer pixel
``(centre_y, centre_x)`` has, at column offset ``x`` (right positive) and row offset ``y``
(DOWN positive) from its centre,

    g(x, y) = exp(-0.5 (x_t^2 / sigma^2 + y_t^2 gamma^2 / sigma^2)) cos(2 pi x_t / lambda + psi),
    x_t = x cos(theta) + y sin(theta),   y_t = -x sin(theta) + y cos(theta).

``theta = 0`` gives vertical bars (the carrier varies along x), the convention of
``core.gratings`` (orientation measured from vertical); the bars run along the unit vector
``(x, y) = (-sin theta, cos theta)``. ``g`` is non-zero only inside the axis-aligned box
``|x| <= xmax, |y| <= ymax`` (see :func:`gabor_half_widths`), cropped at the image border.

A stimulus is ``background * (1 + weight * sum_k c_k g_k)`` clipped to ``[lo, hi]``
(:func:`apply_gabors`).
"""
from __future__ import annotations

import math
from typing import Union

import torch

Param = Union[float, int, torch.Tensor]

DEFAULT_SIGMA = 0.7
DEFAULT_WAVELENGTH = 3.0
DEFAULT_PSI = 1.0
DEFAULT_GAMMA = 0.5
DEFAULT_NSTDS = 3.0


def _device_of(*values: Param, device: torch.device | str | None = None) -> torch.device:
    """The explicit ``device``, else that of the first tensor among ``values``, else the CPU."""
    if device is not None:
        return torch.device(device)
    for v in values:
        if isinstance(v, torch.Tensor):
            return v.device
    return torch.device("cpu")


def _as_float64(value: Param, device: torch.device) -> torch.Tensor:
    """``value`` as a float64 tensor on ``device``."""
    return torch.as_tensor(value, dtype=torch.float64, device=device)


def _require_positive(name: str, value: torch.Tensor) -> None:
    """ValueError unless every element of ``value`` is finite and > 0."""
    if not bool(torch.isfinite(value).all()) or bool((value <= 0).any()):
        raise ValueError(f"{name} must be finite and > 0, got {value.tolist()}")


def gabor_half_widths(sigma: Param = DEFAULT_SIGMA, direction: Param = 0.0,
                      gamma: Param = DEFAULT_GAMMA,
                      nstds: Param = DEFAULT_NSTDS) -> tuple[torch.Tensor, torch.Tensor]:
    """Half-widths ``(xmax, ymax)`` in pixels of the box outside which a Gabor is zero.

    ``xmax = ceil(max(1, |n sigma cos theta|, |n (sigma/gamma) sin theta|))``,
    ``ymax = ceil(max(1, |n sigma sin theta|, |n (sigma/gamma) cos theta|))``, ``n = nstds``,
    ``theta = radians(direction)``. Arguments broadcast to a common shape ``(...)``; returns two
    int64 tensors of that shape.
    """
    device = _device_of(sigma, direction, gamma, nstds)
    sigma, direction, gamma, nstds = (_as_float64(v, device) for v in (sigma, direction, gamma, nstds))
    _require_positive("sigma", sigma)
    _require_positive("gamma", gamma)
    _require_positive("nstds", nstds)
    theta = torch.deg2rad(direction)
    along = nstds * sigma          # n std of the envelope across the bars (x_t)
    across = nstds * sigma / gamma  # n std along the bars (y_t)
    one = torch.ones((), dtype=torch.float64, device=device)
    cos, sin = torch.cos(theta), torch.sin(theta)
    xmax = torch.maximum(one, torch.maximum((along * cos).abs(), (across * sin).abs()))
    ymax = torch.maximum(one, torch.maximum((along * sin).abs(), (across * cos).abs()))
    return torch.ceil(xmax).long(), torch.ceil(ymax).long()


def _check_centres(height: int, width: int, centre_y: torch.Tensor, centre_x: torch.Tensor) -> None:
    """ValueError unless every centre is an integer pixel inside the ``height x width`` image."""
    for name, c, size in (("centre_y", centre_y, height), ("centre_x", centre_x, width)):
        if bool((c != torch.round(c)).any()):
            raise ValueError(f"{name} must hold integer pixel positions, got {c.tolist()}")
        if bool(((c < 0) | (c >= size)).any()):
            raise ValueError(f"{name} {c.tolist()} lies outside the {height}x{width} image "
                             f"(valid 0..{size - 1})")


def gabor_fields(height: int, width: int, centre_y: Param, centre_x: Param, direction: Param = 0.0, *,
                 sigma: Param = DEFAULT_SIGMA, wavelength: Param = DEFAULT_WAVELENGTH,
                 psi: Param = DEFAULT_PSI, gamma: Param = DEFAULT_GAMMA, nstds: Param = DEFAULT_NSTDS,
                 device: torch.device | str | None = None) -> torch.Tensor:
    """A batch of Gabors, each placed on its own ``height x width`` canvas, in one broadcast.

    Every parameter is a number or a tensor; they broadcast to a common batch shape ``(...)``
    (e.g. ``(N,)`` trials). Centres are integer pixels (row, column) inside the image;
    ``direction`` is in degrees; ``psi`` in radians. Computed in float64 on ``device`` (default:
    the device of the first tensor argument, else the CPU). Returns ``(..., height, width)``.
    """
    if int(height) != height or int(width) != width or height < 1 or width < 1:
        raise ValueError(f"height and width must be positive integers, got {height}x{width}")
    dev = _device_of(centre_y, centre_x, direction, sigma, wavelength, psi, gamma, nstds, device=device)
    cy, cx, direction, sigma, wavelength, psi, gamma, nstds = torch.broadcast_tensors(
        *(_as_float64(v, dev) for v in (centre_y, centre_x, direction, sigma, wavelength, psi, gamma, nstds)))
    _check_centres(height, width, cy, cx)
    _require_positive("wavelength", wavelength)
    xmax, ymax = gabor_half_widths(sigma, direction, gamma, nstds)
    theta = torch.deg2rad(direction)[..., None, None]
    dy = torch.arange(height, dtype=torch.float64, device=dev)[:, None] - cy[..., None, None]
    dx = torch.arange(width, dtype=torch.float64, device=dev)[None, :] - cx[..., None, None]
    x_t = dx * torch.cos(theta) + dy * torch.sin(theta)
    y_t = -dx * torch.sin(theta) + dy * torch.cos(theta)
    s, g = sigma[..., None, None], gamma[..., None, None]
    envelope = torch.exp(-0.5 * (x_t ** 2 / s ** 2 + y_t ** 2 * g ** 2 / s ** 2))
    carrier = torch.cos(2.0 * math.pi * x_t / wavelength[..., None, None] + psi[..., None, None])
    box = (dx.abs() <= xmax[..., None, None]) & (dy.abs() <= ymax[..., None, None])
    return torch.where(box, envelope * carrier, torch.zeros((), dtype=torch.float64, device=dev))


def gabor_field(height: int, width: int, centre_y: int, centre_x: int, *, sigma: float = DEFAULT_SIGMA,
                direction: float = 0.0, wavelength: float = DEFAULT_WAVELENGTH, psi: float = DEFAULT_PSI,
                gamma: float = DEFAULT_GAMMA, nstds: float = DEFAULT_NSTDS,
                device: torch.device | str | None = None) -> torch.Tensor:
    """One Gabor ``g`` on a ``height x width`` canvas, 0 outside its box. Returns ``(H, W)`` float64."""
    return gabor_fields(height, width, centre_y, centre_x, direction, sigma=sigma, wavelength=wavelength,
                        psi=psi, gamma=gamma, nstds=nstds, device=device)


def apply_gabors(background: torch.Tensor, fields: torch.Tensor, contrasts: Param,
                 weight: Param = 1.0, lo: float = 0.0, hi: float = 1.0) -> torch.Tensor:
    """Modulate a background by Gabors: ``clip(background * (1 + weight * sum_k c_k g_k), lo, hi)``.

    Args:
        background: ``(C, H, W)`` (or ``(..., C, H, W)``, broadcast against the batch).
        fields: ``(..., K, H, W)`` Gabors ``g_k`` (e.g. from :func:`gabor_fields`).
        contrasts: ``(..., K)`` contrasts ``c_k`` (a number applies to every Gabor).
        weight: a number or ``(...)`` per-stimulus weight (1 for single Gabors, 2 for pairs).
        lo, hi: the image range the result is clipped to.
    Returns:
        ``(..., C, H, W)`` images in the promoted dtype of ``background`` and ``fields``, on
        ``background``'s device.
    """
    if lo >= hi:
        raise ValueError(f"need lo < hi, got lo={lo}, hi={hi}")
    if background.dim() < 3:
        raise ValueError(f"background must be (C, H, W), got shape {tuple(background.shape)}")
    if fields.dim() < 3:
        raise ValueError(f"fields must be (..., K, H, W), got shape {tuple(fields.shape)}")
    if background.shape[-2:] != fields.shape[-2:]:
        raise ValueError(f"background is {tuple(background.shape[-2:])} pixels but fields are "
                         f"{tuple(fields.shape[-2:])}")
    dtype = torch.promote_types(background.dtype, fields.dtype)
    dev = background.device
    fields = fields.to(device=dev, dtype=dtype)
    contrasts = torch.as_tensor(contrasts, dtype=dtype, device=dev)
    try:
        contrasts = contrasts.expand(fields.shape[:-2])
    except RuntimeError:
        raise ValueError(f"contrasts of shape {tuple(contrasts.shape)} do not match fields "
                         f"(..., K) = {tuple(fields.shape[:-2])}") from None
    weight = torch.as_tensor(weight, dtype=dtype, device=dev)
    modulation = (contrasts[..., None, None] * fields).sum(dim=-3)           # (..., H, W)
    gain = 1.0 + weight[..., None, None] * modulation                          # (..., H, W)
    return (background.to(dtype) * gain[..., None, :, :]).clamp(lo, hi)        # (..., C, H, W)
