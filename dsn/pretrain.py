"""Pre-training the density network to an isotropic Gaussian (the start of every DSN run).

Before the augmented-Lagrangian epochs the flow is fitted to N(centre, sigma_init^2 I) by
minimising the reverse KL divergence on reparameterised batches::

    KL(q || p0) ~= 1/n sum_i [log q(z_i) - log p0(z_i)],   z_i ~ q,
    log p0(z) = sum_d [-(z_d - centre_d)^2 / (2 sigma^2) - log sigma - log(2 pi) / 2].

The result depends only on the architecture, sigma_init, the support, the pre-training
settings and the seed; :mod:`dsn.init_cache` keeps it on disk under a hash of those.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def isotropic_log_prob(z: Tensor, centre: Tensor, sigma: float) -> Tensor:
    """log N(z; centre, sigma^2 I) for z (n, D) -> (n,)."""
    return (-0.5 * ((z - centre) / sigma) ** 2 - math.log(sigma) - 0.5 * math.log(2 * math.pi)).sum(-1)


def adam(params, lr: float) -> torch.optim.Optimizer:
    """Adam over the trainable ``params``, fused (one kernel for all tensors) when possible."""
    params = [p for p in params if p.requires_grad]
    try:
        return torch.optim.Adam(params, lr=lr, fused=True)
    except (RuntimeError, ValueError):  # a device/dtype without the fused kernel
        return torch.optim.Adam(params, lr=lr)


def half_cosine(lr: float, floor: float, x: float) -> float:
    """Learning rate a fraction ``x`` in [0, 1] of the way along a half-cosine fall from ``lr``
    (x = 0) to ``lr * floor`` (x = 1)."""
    return lr * (floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * x)))


def pretrain_isotropic(flow: nn.Module, centre: Tensor, sigma: float, steps: int, n: int, lr: float,
                       generator: torch.Generator) -> float:
    """Fit ``flow`` (in place) to N(centre, sigma^2 I) by Adam on the reverse KL; returns the
    last batch's KL estimate (nats; nan when ``steps`` is 0)."""
    opt = adam(flow.parameters(), lr)
    centre = centre.to(generator.device)
    kl = float("nan")
    flow.train()
    for _ in range(steps):
        z, log_q = flow.rsample_and_log_prob(n, generator)
        loss = (log_q - isotropic_log_prob(z, centre, sigma)).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        kl = float(loss.detach())
    return kl
