"""Four-population V1 circuit (E, P, S, V): responses to input changes.

Rates r = (r_E, r_P, r_S, r_V) follow the supralinear stabilised network

    tau dr/dt = -r + [W r + h]_+^n ,    n = 2,

with the connectivity signs and relative strengths of Pfeffer et al. (2013) as used in the
DSN systems library (rows: post-synaptic E, P, S, V; columns: pre-synaptic)::

    W = [[w_EE, -1.00, -0.54,  0   ],
         [w_PE, -1.01, -0.33,  0   ],
         [w_SE,  0   ,  0   , -0.15],
         [w_VE, -0.22, -0.77,  0   ]]

Free parameters z = dh = (dh_E, dh_P, dh_S, dh_V), a change of the input h = h_b + dh.
The emergent property concerns the steady-state change of one population alpha,
``d_alpha = r_alpha(h_b + dh) - r_alpha(h_b)`` (both steady states by RK4 from r = 0):
T = [d_alpha, (d_alpha - mu_1)^2], default mu = [0.5, 0.125^2] for alpha = E.
The numbers w_XE, h_b, tau, dt and the horizon are this library's documented defaults,
chosen so every draw in the support settles within the horizon (checked in the tests).
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import torch
from torch import Tensor

from dsn.systems.base import System

POPULATIONS = ("E", "P", "S", "V")


def v1_rate_derivative(r: Tensor, h: Tensor, W: Tensor, n: float, tau: float) -> Tensor:
    """dr/dt = (-r + relu(W r + h)^n) / tau for r, h (batch, 4), W (4, 4)."""
    return (-r + torch.relu(r @ W.T + h) ** n) / tau


def rk4_rates(h: Tensor, W: Tensor, n: float = 2.0, tau: float = 1.0, dt: float = 0.1,
              steps: int = 200, r0: Tensor | None = None, keep: bool = False) -> Tensor:
    """Integrate the rates by classical RK4; returns r(T) (batch, 4) or r(t) (batch, steps+1, 4)."""
    r = torch.zeros_like(h) if r0 is None else r0
    traj = [r]
    for _ in range(steps):
        k1 = v1_rate_derivative(r, h, W, n, tau)
        k2 = v1_rate_derivative(r + 0.5 * dt * k1, h, W, n, tau)
        k3 = v1_rate_derivative(r + 0.5 * dt * k2, h, W, n, tau)
        k4 = v1_rate_derivative(r + dt * k3, h, W, n, tau)
        r = r + dt / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)
        if keep:
            traj.append(r)
    return torch.stack(traj, 1) if keep else r


class V1Circuit(System):
    """Steady-state response change of population ``alpha`` to an input change dh."""

    name = "v1"

    def __init__(self, alpha: str = "E", mu=None, w_xe=(0.4, 1.0, 0.5, 0.5), h_b=(0.3, 0.3, 0.3, 0.3),
                 n: float = 2.0, tau: float = 1.0, dt: float = 0.1, steps: int = 300, bound: float = 1.0):
        if alpha not in POPULATIONS:
            raise ValueError(f"V1Circuit alpha must be one of {', '.join(POPULATIONS)}, got {alpha!r}")
        self.alpha, self.n, self.tau, self.dt, self.steps = POPULATIONS.index(alpha), n, tau, dt, steps
        self.W = torch.tensor([[w_xe[0], -1.00, -0.54, 0.0],
                               [w_xe[1], -1.01, -0.33, 0.0],
                               [w_xe[2], 0.0, 0.0, -0.15],
                               [w_xe[3], -0.22, -0.77, 0.0]])
        self.h_b = torch.tensor(h_b, dtype=torch.float32)
        mu = [0.5, 0.125 ** 2] if mu is None else mu
        super().__init__([f"dh_{p}" for p in POPULATIONS], [-bound] * 4, [bound] * 4,
                         [f"d_{alpha}", f"(d_{alpha} - mu1)^2"], mu)

    def responses(self, z: Tensor) -> Tensor:
        """Steady-state changes d (batch, 4) for input changes z (batch, 4)."""
        W, hb = self.W.to(z.device, z.dtype), self.h_b.to(z.device, z.dtype)
        both = torch.cat([hb.expand(1, 4), hb + z], 0)
        r = rk4_rates(both, W, self.n, self.tau, self.dt, self.steps)
        return r[1:] - r[:1]

    def suff_stats(self, z: Tensor) -> Tensor:
        d = self.responses(z)[:, self.alpha]
        return torch.stack([d, (d - self.mu[0].item()) ** 2], -1)

    def plot(self, z: Tensor):
        z = z[:4].detach()
        W, hb = self.W.to(z.device, z.dtype), self.h_b.to(z.device, z.dtype)
        r = rk4_rates(hb + z, W, self.n, self.tau, self.dt, self.steps, keep=True).cpu()
        t = torch.arange(r.shape[1]) * self.dt
        fig, axes = plt.subplots(1, z.shape[0], figsize=(3 * z.shape[0], 2.6), squeeze=False, sharey=True)
        for i, ax in enumerate(axes[0]):
            for j, p in enumerate(POPULATIONS):
                ax.plot(t, r[i, :, j], label=p)
            ax.set(xlabel="time (tau)", title="dh=" + ",".join(f"{v:.2f}" for v in z[i].tolist()))
        axes[0, 0].set_ylabel("rate")
        axes[0, 0].legend(fontsize=7)
        fig.tight_layout()
        return fig
