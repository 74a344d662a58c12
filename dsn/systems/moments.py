"""Systems whose maximum-entropy solution is known in closed form (ground-truth tests).

* :class:`GaussianMoments`: T(z) = [z, z^2] on R^D, mu = [m, m^2 + s^2]  =>  q* = N(m, s^2)
  independently per dimension, H = sum 1/2 log(2 pi e s^2).
* :class:`UniformBox`: no constraints on [a, b]^D  =>  uniform, H = sum log(b - a).
* :class:`TruncatedExponentialMean`: T(z) = z on [0, b]^D, mu = m  =>  q*(z) ∝ exp(eta z)
  per dimension with eta solving E[z] = m (see :func:`truncated_exponential`).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from dsn.systems.base import System


class GaussianMoments(System):
    name = "gaussian"

    def __init__(self, mean=(0.0, 0.0), std=(1.0, 1.0)):
        mean, std = torch.as_tensor(mean, dtype=torch.float32), torch.as_tensor(std, dtype=torch.float32)
        self.target_mean, self.target_std = mean, std
        D = mean.numel()
        super().__init__([f"z{i + 1}" for i in range(D)], [-math.inf] * D, [math.inf] * D,
                         [f"z{i + 1}" for i in range(D)] + [f"z{i + 1}^2" for i in range(D)],
                         torch.cat([mean, mean ** 2 + std ** 2]).tolist())

    def suff_stats(self, z: Tensor) -> Tensor:
        return torch.cat([z, z ** 2], -1)

    def entropy(self) -> float:
        return float((0.5 * torch.log(2 * math.pi * math.e * self.target_std ** 2)).sum())


class UniformBox(System):
    name = "uniform"

    def __init__(self, lower=(0.0, 0.0), upper=(1.0, 1.0)):
        D = len(lower)
        super().__init__([f"z{i + 1}" for i in range(D)], lower, upper, [], [])

    def suff_stats(self, z: Tensor) -> Tensor:
        return z.new_zeros(z.shape[0], 0)

    def entropy(self) -> float:
        return float(torch.log(self.upper - self.lower).sum())


def truncated_exponential(mean: float, b: float) -> tuple[float, float]:
    """(eta, entropy) of q(z) ∝ exp(eta z) on [0, b] with E[z] = mean (bisection on eta).

    E[z] = b / (1 - exp(-eta b)) - 1/eta (eta != 0); H = log Z - eta E[z],
    log Z = log((exp(eta b) - 1) / eta).
    """
    if not 0 < mean < b:
        raise ValueError("the mean must lie strictly inside (0, b)")

    def mean_of(eta: float) -> float:
        if abs(eta) < 1e-8:
            return b / 2
        return b / (-math.expm1(-eta * b)) - 1.0 / eta

    lo, hi = -1e3 / b, 1e3 / b
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if mean_of(mid) < mean:
            lo = mid
        else:
            hi = mid
    eta = 0.5 * (lo + hi)
    if abs(eta) < 1e-8:
        return eta, math.log(b)
    # log Z computed stably for either sign of eta
    if eta > 0:
        log_z = eta * b + math.log(-math.expm1(-eta * b)) - math.log(eta)
    else:
        log_z = math.log(-math.expm1(eta * b)) - math.log(-eta)
    return eta, log_z - eta * mean


class TruncatedExponentialMean(System):
    name = "truncexp"

    def __init__(self, mean=(1.0, 1.0), b: float = 4.0):
        D = len(mean)
        self.b = float(b)
        super().__init__([f"z{i + 1}" for i in range(D)], [0.0] * D, [b] * D,
                         [f"z{i + 1}" for i in range(D)], list(mean))

    def suff_stats(self, z: Tensor) -> Tensor:
        return z

    def entropy(self) -> float:
        return sum(truncated_exponential(float(m), self.b)[1] for m in self.mu)
