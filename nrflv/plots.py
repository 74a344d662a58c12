"""Figures of the nrflv family: sample grids, sampling over time, per-layer state maps.

Images are drawn in the model's image range ``value_range`` (``image_range``; values outside are
clipped, as the source's ``save_image(normalize=True, range=image_range)`` does), latent states
in their own range [-1, 1] (grey for 1 channel, RGB for 3; other channel counts show channel 0);
every function returns a matplotlib Figure or, for TensorBoard, a ``(3, H, W)`` tensor in [0, 1].
"""
from __future__ import annotations

import math
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402


Range = Sequence[float]


def _rgb(x: torch.Tensor, value_range: Range = (-1.0, 1.0)) -> np.ndarray:
    """``(N, C, H, W)`` in ``value_range`` -> ``(N, H, W, 3)`` in [0, 1]."""
    lo, hi = float(value_range[0]), float(value_range[1])
    x = x.detach().float().cpu().clamp(lo, hi).sub(lo).div(hi - lo)
    x = x[:, :1].expand(-1, 3, -1, -1) if x.shape[1] != 3 else x
    return x.permute(0, 2, 3, 1).numpy()


def image_grid(images: torch.Tensor, cols: int = 8, value_range: Range = (-1.0, 1.0)) -> torch.Tensor:
    """A ``(3, rows*H, cols*W)`` tensor in [0, 1] tiling ``images (N, C, H, W)`` (TensorBoard)."""
    pics = _rgb(images, value_range)
    n, h, w, _ = pics.shape
    rows = math.ceil(n / cols)
    grid = np.ones((rows * (h + 1), cols * (w + 1), 3), dtype=np.float32)
    for k in range(n):
        r, c = divmod(k, cols)
        grid[r * (h + 1):r * (h + 1) + h, c * (w + 1):c * (w + 1) + w] = pics[k]
    return torch.from_numpy(grid).permute(2, 0, 1)


def grid_figure(images: torch.Tensor, title: str, cols: int = 8, value_range: Range = (-1.0, 1.0)):
    grid = image_grid(images, cols, value_range).permute(1, 2, 0).numpy()
    fig, ax = plt.subplots(figsize=(min(12, 1.2 * cols), 1.2 * grid.shape[0] / grid.shape[1] * cols + 0.6))
    ax.imshow(grid, interpolation="nearest")
    ax.set_axis_off()
    ax.set_title(title)
    return fig


def frames_figure(frames: Sequence[torch.Tensor], steps: Sequence[int], chains: int = 6,
                  value_range: Range = (-1.0, 1.0)):
    """The image layer of ``chains`` chains (rows) at each recorded sampler step (columns)."""
    chains = min(chains, frames[0].shape[0])
    fig, axes = plt.subplots(chains, len(frames), figsize=(1.1 * len(frames), 1.1 * chains + 0.6), squeeze=False)
    for j, (frame, step) in enumerate(zip(frames, steps)):
        pics = _rgb(frame[:chains], value_range)
        for i in range(chains):
            axes[i, j].imshow(pics[i], interpolation="nearest")
            axes[i, j].set_axis_off()
        axes[0, j].set_title(f"step {step}", fontsize=8)
    fig.suptitle("Free SGHMC sampling from noise: the image layer over time")
    return fig


def state_maps_figure(states: Sequence[torch.Tensor], sample: int = 0, channels: int = 8,
                      value_range: Range = (-1.0, 1.0)):
    """For one chain, the image and the first ``channels`` channel maps of every latent layer."""
    n = len(states)
    fig, axes = plt.subplots(n, channels, figsize=(1.2 * channels, 1.3 * n + 0.6), squeeze=False)
    for i, s in enumerate(states):
        x = s[sample].detach().float().cpu()
        for c in range(channels):
            ax = axes[i, c]
            ax.set_axis_off()
            if i == 0 and c == 0:
                ax.imshow(_rgb(s[sample:sample + 1], value_range)[0], interpolation="nearest")
                ax.set_title("image", fontsize=8)
            elif i > 0 and c < x.shape[0]:
                ax.imshow(x[c].numpy(), cmap="RdBu_r", vmin=-1, vmax=1, interpolation="nearest")
                ax.set_title(f"layer {i} ch {c}", fontsize=7)
    fig.suptitle("States at the end of a positive phase (blue -1, red +1)")
    return fig


def channels_figure(images: torch.Tensor, n_channels: int, per_channel: int, layer: int, steps: int,
                    value_range: Range = (-1.0, 1.0)):
    """Rows: channels of ``layer``; columns: chains that descended that channel's energy."""
    pics = _rgb(images, value_range)
    fig, axes = plt.subplots(n_channels, per_channel, figsize=(1.1 * per_channel + 0.8, 1.1 * n_channels + 0.6),
                             squeeze=False)
    for k in range(n_channels * per_channel):
        r, c = divmod(k, per_channel)
        axes[r, c].imshow(pics[k], interpolation="nearest")
        axes[r, c].set_xticks([])
        axes[r, c].set_yticks([])
        if c == 0:
            axes[r, c].set_ylabel(f"ch {r}", fontsize=8)
    fig.suptitle(f"Layer {layer}: images that descend each channel's energy ({steps} steps)")
    return fig
