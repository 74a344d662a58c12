"""Stomatogastric (STG) five-neuron circuit: hub-neuron frequency as the emergent property.

Neurons: two fast (f1, f2), the hub, two slow (s1, s2) (Gutierrez, O'Leary & Marder 2013),
each a Morris-Lecar-like conductance model with calcium, potassium, h and leak currents::

    C dV/dt = -(I_leak + I_Ca + I_K + I_h + I_elec + I_syn) + sigma_I xi(t)
    I_leak = g_leak (V - V_leak)            I_Ca = g_Ca M_inf(V) (V - V_Ca)
    I_K    = g_K N (V - V_K)                I_h  = g_h H (V - V_h)
    dN/dt  = phi_N cosh((V - v3) / (2 v4)) (N_inf(V) - N)
    dH/dt  = (H_inf(V) - H) / tau_h(V)
    M_inf = (1 + tanh((V - v1)/v2)) / 2,  N_inf = (1 + tanh((V - v3)/v4)) / 2,
    H_inf = 1 / (1 + exp((V + v5)/v6)),   tau_h = (272 + 1499 / (1 + exp((-V + v7)/v8))) ms
    S_inf(V_pre) = 1 / (1 + exp((v_th - V_pre)/v9))
    I_elec = g_el (V L),   I_syn = (S_inf W) (V - V_syn)       (row vectors over the 5 neurons)

L is the graph Laplacian of the electrical coupling f2 - hub - s2, and W[pre, post] holds the
inhibitory synapses: g_synB between f1 and f2 and between s1 and s2, g_synA from f1 and s1
onto the hub. Free parameters z = (g_el, g_synA) in nS on the EPI support [4, 8] x [0.1, 4].

Forward Euler (dt = 25 ms, 300 steps, deterministic unless ``noise`` > 0); the hub frequency
is read from the rectified, moving-average-filtered hub voltage by a soft-argmax over a DFT
on a 0..1 Hz grid (101 frequencies, beta = 500 per volt of DFT amplitude)::

    f_hub = sum_k softmax(beta |V(f_k)|)_k f_k

T = [f_hub, (f_hub - mu_1)^2] with mu = [0.53 Hz, 0.025^2] as in the published EPI run.
"""
from __future__ import annotations

import math

import matplotlib.pyplot as plt
import torch
from torch import Tensor
from torch.nn import functional as F

from dsn.systems.base import System
from dsn.systems.stg_dynamics import C_M, G_CA, G_H, G_K, NEURONS, X0, EulerSTG, coupling_matrices, euler_sweep


class STGHub(System):
    """Hub-neuron frequency of the STG circuit as a function of (g_el, g_synA) in nS."""

    name = "stg"
    reference_draws, reference_chunk = 100_000, 10_000  # 2-D: 10^5 simulations resolve the dual

    def __init__(self, mu=None, dt: float = 0.025, steps: int = 300, fft_start: int = 20,
                 window: int = 20, n_freqs: int = 101, beta: float = 500.0, noise: float = 0.0,
                 lower=(4.0, 0.1), upper=(8.0, 4.0), adjoint: bool = True, compiled: bool = False):
        self.dt, self.steps, self.fft_start, self.window = dt, steps, fft_start, window
        self.beta, self.noise, self.adjoint, self.compiled = beta, noise, adjoint, compiled
        self.freqs = torch.linspace(0.0, 1.0, n_freqs)
        mu = [0.53, 0.025 ** 2] if mu is None else mu
        super().__init__(["g_el", "g_synA"], lower, upper, ["f_hub", "(f_hub - mu1)^2"], mu)

    def _constants(self, like: Tensor) -> dict[str, Tensor]:
        L, W_B, W_A = coupling_matrices()
        p = {"g_ca": G_CA, "g_k": G_K, "g_h": G_H, "L": L, "W_B": W_B, "W_A": W_A}
        return {k: torch.as_tensor(v, dtype=torch.float64).to(like.device, like.dtype) for k, v in p.items()}

    def simulate(self, z: Tensor) -> Tensor:
        """All membrane potentials (batch, steps + 1, 5) in volts, forward Euler from X0.

        Differentiable in z through the exact adjoint (:class:`EulerSTG`) unless the system
        was built with ``adjoint=False`` (plain autograd through every step: the reference)."""
        p = self._constants(z)
        g_el, g_syn_a = z[:, :1] * 1e-9, z[:, 1:2] * 1e-9
        x0 = torch.tensor(X0, device=z.device, dtype=z.dtype).expand(z.shape[0], 15)
        if self.adjoint:
            return EulerSTG.apply(g_el, g_syn_a, x0, p, self.dt, self.steps, self.noise / C_M, self.compiled)
        V, _, _ = euler_sweep(x0, g_el, g_syn_a, p, self.dt, self.steps, self.noise / C_M, gates=False)
        return V.transpose(0, 1)

    def hub_frequency(self, v_hub: Tensor) -> Tensor:
        """Soft-argmax frequency (batch,) of hub voltage traces (batch, time) in volts."""
        v = F.relu(v_hub[:, self.fft_start:])
        v = F.avg_pool1d(v[:, None], self.window, stride=1)[:, 0]
        v = v - v.mean(1, keepdim=True)
        n = torch.arange(v.shape[1], device=v.device, dtype=v.dtype)
        freqs = self.freqs.to(v.device, v.dtype)
        phase = 2 * math.pi * freqs[None, :] * n[:, None] * self.dt  # (time, freqs)
        re, im = v @ torch.cos(phase), v @ torch.sin(phase)
        amp = torch.sqrt(re ** 2 + im ** 2 + 1e-12)
        return torch.softmax(self.beta * amp, -1) @ freqs

    def suff_stats(self, z: Tensor) -> Tensor:
        f = self.hub_frequency(self.simulate(z)[:, :, 2])
        return torch.stack([f, (f - self.mu[0].item()) ** 2], -1)

    def plot(self, z: Tensor):
        z = z[:3].detach()
        v = self.simulate(z).cpu() * 1e3
        t = torch.arange(v.shape[1]) * self.dt
        f = self.hub_frequency(v[:, :, 2] * 1e-3)
        fig, axes = plt.subplots(z.shape[0], 1, figsize=(7, 1.8 * z.shape[0]), squeeze=False, sharex=True)
        for i, ax in enumerate(axes[:, 0]):
            for j, lab in enumerate(NEURONS):
                ax.plot(t, v[i, :, j], lw=1.6 if j == 2 else 0.8, label=lab, color="k" if j == 2 else None)
            ax.set_ylabel("V (mV)")
            ax.set_title(f"g_el={z[i, 0]:.2f} nS, g_synA={z[i, 1]:.2f} nS: f_hub={f[i]:.3f} Hz", fontsize=9)
        axes[0, 0].legend(fontsize=7, ncol=5)
        axes[-1, 0].set_xlabel("time (s)")
        fig.tight_layout()
        return fig
