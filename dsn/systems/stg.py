"""Stomatogastric (STG) five-neuron circuit: hub-neuron frequency as the emergent property.

Neurons: two fast (f1, f2), the hub, two slow (s1, s2) (Gutierrez, O'Leary & Marder 2013),
each a Morris-Lecar-like conductance model with calcium, potassium, h and leak currents::

    C dV/dt = -(I_leak + I_Ca + I_K + I_h + I_elec + I_syn) + noise
    I_leak = g_leak (V - V_leak)            I_Ca = g_Ca M_inf(V) (V - V_Ca)
    I_K    = g_K N (V - V_K)                I_h  = g_h H (V - V_h)
    dN/dt  = phi_N cosh((V - v3) / (2 v4)) (N_inf(V) - N)
    dH/dt  = (H_inf(V) - H) / tau_h(V)
    M_inf = (1 + tanh((V - v1)/v2)) / 2,  N_inf = (1 + tanh((V - v3)/v4)) / 2,
    H_inf = 1 / (1 + exp((V + v5)/v6)),   tau_h = (272 + 1499 / (1 + exp((-V + v7)/v8))) ms
    synapses: S_inf(V_pre) = 1 / (1 + exp((v_th - V_pre)/v9)), I = g S_inf(V_pre)(V_post - V_syn)

Free parameters z = (g_el, g_synA) in nS: the electrical coupling f2-hub-s2 and the
synapses f1 -> hub, s1 -> hub. The fast and slow pairs are reciprocally inhibitory (g_synB).
Forward Euler (dt = 25 ms, 200 steps); the hub frequency is read from the rectified,
moving-average-filtered hub voltage by a soft-argmax over a DFT on a 0..1 Hz grid::

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

# constants (SI units), taken from the published model
C_M = 1.0e-9
G_SYN_B = 5e-9
V_LEAK, V_CA, V_K, V_H, V_SYN = -40e-3, 100e-3, -80e-3, -20e-3, -75e-3
V1_, V2_, V3_, V4_, V5_, V6_, V7_, V8_, V9_ = 0.0, 20e-3, 0.0, 15e-3, 78.3e-3, 10.5e-3, -42.2e-3, 87.3e-3, 5e-3
V_TH = -25e-3
G_LEAK = 1e-10
PHI_N = 2.0  # 1/s
#                 f1        f2        hub       s1        s2
G_CA = [1.9e-8, 1.9e-8, 1.7e-8, 8.5e-9, 8.5e-9]
G_K = [3.9e-8, 3.9e-8, 1.9e-8, 1.5e-8, 1.5e-8]
G_H = [2.5e-8, 2.5e-8, 8.0e-9, 1.0e-8, 1.0e-8]
X0 = [-0.04169771, -0.04319491, 0.00883992, -0.06879824, 0.03048103,
      0.00151316, 0.19784773, 0.56514935, 0.12214069, 0.35290397,
      0.08614699, 0.04938177, 0.05568701, 0.07007949, 0.05790969]


def stg_derivative(x: Tensor, g_el: Tensor, g_syn_a: Tensor, consts: dict[str, Tensor]) -> Tensor:
    """dx/dt for states x (batch, 15) = [V (5), N (5), H (5)]; g_el, g_syn_a (batch,) in S."""
    V, N, H = x[:, :5], x[:, 5:10], x[:, 10:]
    m_inf = 0.5 * (1.0 + torch.tanh((V - V1_) / V2_))
    n_inf = 0.5 * (1.0 + torch.tanh((V - V3_) / V4_))
    h_inf = torch.sigmoid(-(V + V5_) / V6_)
    s_inf = torch.sigmoid((V - V_TH) / V9_)
    i_int = (G_LEAK * (V - V_LEAK) + consts["g_ca"] * m_inf * (V - V_CA)
             + consts["g_k"] * N * (V - V_K) + consts["g_h"] * H * (V - V_H))
    zero = torch.zeros_like(g_el)
    v_f1, v_f2, v_hub, v_s1, v_s2 = V.unbind(-1)
    i_elec = torch.stack([zero, g_el * (v_f2 - v_hub), g_el * (2 * v_hub - v_f2 - v_s2),
                          zero, g_el * (v_s2 - v_hub)], -1)
    s_f1, s_f2, _, s_s1, s_s2 = s_inf.unbind(-1)
    i_syn = torch.stack([G_SYN_B * s_f2 * (v_f1 - V_SYN), G_SYN_B * s_f1 * (v_f2 - V_SYN),
                         g_syn_a * (s_f1 + s_s1) * (v_hub - V_SYN),
                         G_SYN_B * s_s2 * (v_s1 - V_SYN), G_SYN_B * s_s1 * (v_s2 - V_SYN)], -1)
    lam_n = PHI_N * torch.cosh((V - V3_) / (2 * V4_))
    tau_h = (272.0 + 1499.0 * torch.sigmoid(-(-V + V7_) / V8_)) / 1000.0
    return torch.cat([-(i_int + i_elec + i_syn) / C_M, lam_n * (n_inf - N), (h_inf - H) / tau_h], -1)


class STGHub(System):
    """Hub-neuron frequency of the STG circuit as a function of (g_el, g_synA) in nS."""

    name = "stg"

    def __init__(self, mu=None, dt: float = 0.025, steps: int = 200, fft_start: int = 20,
                 window: int = 20, n_freqs: int = 101, beta: float = 50.0, noise: float = 1e-11):
        self.dt, self.steps, self.fft_start, self.window = dt, steps, fft_start, window
        self.beta, self.noise = beta, noise
        self.freqs = torch.linspace(0.0, 1.0, n_freqs)
        mu = [0.53, 0.025 ** 2] if mu is None else mu
        super().__init__(["g_el", "g_synA"], [0.1, 0.1], [7.0, 10.0], ["f_hub", "(f_hub - mu1)^2"], mu)

    def simulate(self, z: Tensor) -> Tensor:
        """All membrane potentials (batch, steps + 1, 5) in volts, forward Euler."""
        dev, dt_ = z.device, z.dtype
        consts = {k: torch.tensor(v, device=dev, dtype=dt_) for k, v in
                  (("g_ca", G_CA), ("g_k", G_K), ("g_h", G_H))}
        g_el, g_syn_a = z[:, 0] * 1e-9, z[:, 1] * 1e-9
        x = torch.tensor(X0, device=dev, dtype=dt_).expand(z.shape[0], 15)
        vs = [x[:, :5]]
        for _ in range(self.steps):
            dx = stg_derivative(x, g_el, g_syn_a, consts)
            if self.noise > 0:
                dv = torch.randn(z.shape[0], 5, device=dev, dtype=dt_) * (self.noise / C_M)
                dx = dx + F.pad(dv, (0, 10))
            x = x + self.dt * dx
            vs.append(x[:, :5])
        return torch.stack(vs, 1)

    def hub_frequency(self, v_hub: Tensor) -> Tensor:
        """Soft-argmax frequency (batch,) of hub voltage traces (batch, time)."""
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
            for j, lab in enumerate(["f1", "f2", "hub", "s1", "s2"]):
                ax.plot(t, v[i, :, j], lw=1.6 if j == 2 else 0.8, label=lab, color="k" if j == 2 else None)
            ax.set_ylabel("V (mV)")
            ax.set_title(f"g_el={z[i, 0]:.2f} nS, g_synA={z[i, 1]:.2f} nS: f_hub={f[i]:.3f} Hz", fontsize=9)
        axes[0, 0].legend(fontsize=7, ncol=5)
        axes[-1, 0].set_xlabel("time (s)")
        fig.tight_layout()
        return fig
