"""The tutorial's tilt-discrimination networks: ``fc``, ``conv_fc`` and ``cnn``.

All three map a batch of grey images ``(batch, H, W)`` to the probability that each is
tilted right, ``(batch, 1)``:

* ``fc``      : flatten -> fc (H*W -> 10) -> ReLU -> out (10 -> 1) -> sigmoid
* ``conv_fc`` : conv (1 -> 6, 7x7, same padding) -> ReLU -> flatten -> fc -> ReLU -> out -> sigmoid
* ``cnn``     : conv -> ReLU -> pool (8x8 max) -> flatten -> fc -> ReLU -> out -> sigmoid

Every stage is a named sub-module (``conv``, ``conv_relu``, ``pool``, ``fc``, ``fc_relu``,
``out``) so :func:`rsa.activations.layer_activations` can read any of them; as in the
tutorial, ``fc`` is the fully connected layer's output before its ReLU and ``pool`` the
pooled, rectified convolution. In ``cnn`` and ``conv_fc`` the convolution starts from the
tutorial's hand-made filters (:func:`tutorial_filters`) with zero bias.
"""
from __future__ import annotations

import math

import torch
from torch import nn

ARCHITECTURES = ("cnn", "conv_fc", "fc")


def tutorial_filters(out_channels: int = 6, size: int = 7) -> torch.Tensor:
    """Centre-surround and Gabor filters, ``(out_channels, 1, size, size)``.

    Channel 0 is an on-centre difference of exponentials ``g(sigma) - 0.5 g(2 sigma)``
    (``g(s) = exp(-r / (2 s^2))``, ``sigma = 1.1``), channel 1 its negative, and the rest
    odd-phase Gabors ``exp(-r / (2 (0.4 sigma)^2)) cos(2 pi u / 10 + pi/2)`` at orientations
    evenly spaced in [0, 180) degrees. Each filter is scaled to a maximum |value| of 1.
    """
    if out_channels < 3:
        raise ValueError("tutorial_filters needs at least 3 channels (2 centre-surround + Gabors)")
    grid = torch.linspace(-size / 2, size / 2, size)
    xx, yy = torch.meshgrid(grid, grid, indexing="ij")
    r = torch.sqrt(xx ** 2 + yy ** 2)
    sigma = 1.1
    centre_surround = torch.exp(-r / (2 * sigma ** 2)) - 0.5 * torch.exp(-r / (2 * (2 * sigma) ** 2))
    thetas = torch.arange(out_channels - 2) * (math.pi / (out_channels - 2))
    u = xx[None] * torch.cos(thetas)[:, None, None] + yy[None] * torch.sin(thetas)[:, None, None]
    envelope = torch.exp(-r / (2 * (0.4 * sigma) ** 2))
    gabors = envelope[None] * torch.cos(2 * math.pi * u / 10 + math.pi / 2)
    bank = torch.cat([centre_surround[None], -centre_surround[None], gabors])
    bank = bank / bank.abs().amax(dim=(1, 2), keepdim=True)
    return bank[:, None]


class TiltNet(nn.Module):
    """One of the three tutorial networks, chosen by ``arch``.

    Args:
        arch: ``cnn`` (conv + pool + fc), ``conv_fc`` (conv + fc) or ``fc`` (fc only).
        height, width: input image size.
        channels: convolution channels (tutorial: 6).
        kernel: convolution kernel size, odd (tutorial: 7).
        pool: max-pool patch size (tutorial: 8).
        hidden: units of the fully connected layer (tutorial: 10).
    """

    def __init__(self, arch: str = "cnn", height: int = 48, width: int = 64, channels: int = 6,
                 kernel: int = 7, pool: int = 8, hidden: int = 10):
        super().__init__()
        if arch not in ARCHITECTURES:
            raise ValueError(f"arch must be one of {', '.join(ARCHITECTURES)}, got {arch!r}")
        self.arch = arch
        if arch == "fc":
            flat = height * width
        else:
            self.conv = nn.Conv2d(1, channels, kernel_size=kernel, padding=kernel // 2)
            self.conv_relu = nn.ReLU()
            with torch.no_grad():
                self.conv.weight.copy_(tutorial_filters(channels, kernel))
                self.conv.bias.zero_()
            if arch == "cnn":
                self.pool = nn.MaxPool2d(pool)
                flat = channels * (height // pool) * (width // pool)
            else:
                flat = channels * height * width
        self.fc = nn.Linear(flat, hidden)
        self.fc_relu = nn.ReLU()
        self.out = nn.Linear(hidden, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``images (batch, H, W)`` -> probability of "tilted right" ``(batch, 1)``."""
        return torch.sigmoid(self.logits(images))

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """Pre-sigmoid output ``(batch, 1)`` (use with ``binary_cross_entropy_with_logits``)."""
        x = images
        if self.arch != "fc":
            x = self.conv_relu(self.conv(x.unsqueeze(1)))
            if self.arch == "cnn":
                x = self.pool(x)
        x = self.fc_relu(self.fc(x.flatten(1)))
        return self.out(x)

    @property
    def layer_names(self) -> list[str]:
        """Names of the hookable stages in forward order."""
        return [n for n, _ in self.named_children()]
