"""Image statistics for comparing the model's free samples with its training images."""
from __future__ import annotations

import torch


def spectral_slope(images: torch.Tensor) -> float:
    """Slope of log power against log spatial frequency of ``images (N, C, H, W)``.

    Each image and channel has its mean removed; the 2-D power spectrum is averaged over
    images and channels and a line is fitted to log power against log radial frequency
    (cycles per pixel) at every non-zero frequency. White noise gives 0; natural images about
    -2 (their amplitude falls as 1/f).
    """
    x = images.detach().double()
    x = x - x.mean(dim=(2, 3), keepdim=True)
    power = (torch.fft.fft2(x).abs() ** 2).mean(dim=(0, 1))
    fy = torch.fft.fftfreq(x.shape[-2], dtype=torch.float64)
    fx = torch.fft.fftfreq(x.shape[-1], dtype=torch.float64)
    radius = torch.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2)
    keep = radius > 0
    design = torch.stack([radius[keep].log(), torch.ones(int(keep.sum()), dtype=torch.float64)], 1)
    fit = torch.linalg.lstsq(design, power[keep].clamp_min(1e-300).log()[:, None]).solution
    return float(fit[0, 0])
