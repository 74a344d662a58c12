"""STG circuit dynamics: the vector field, its forward-Euler integration and the exact adjoint.

Equations and constants are documented in :mod:`dsn.systems.stg`. States are three
(batch, 5) tensors V (volts), N, H over the neurons (f1, f2, hub, s1, s2); the free
conductances g_el, g_syn_a are (batch, 1) in siemens.

Training a DSN differentiates T(x(z)) through hundreds of Euler steps of a 15-dimensional
system, where autograd's per-operation bookkeeping dominates the cost. :class:`EulerSTG`
runs the forward sweep without a graph, keeps the states, and back-propagates with the
hand-derived vector-Jacobian product of one step (:func:`euler_vjp`), equal to autograd's
gradient to rounding (tested in float64)::

    x_{t+1} = x_t + dt f(x_t)   =>   a_t = a_{t+1} + dt J_f(x_t)^T a_{t+1} + dL/dx_t
    dL/dg   = sum_t dt (df/dg)(x_t)^T a_{t+1}
"""
from __future__ import annotations

import torch
from torch import Tensor

# constants (SI units), taken from the published model
C_M = 1.0e-9
G_SYN_B = 5e-9
V_LEAK, V_CA, V_K, V_H, V_SYN = -40e-3, 100e-3, -80e-3, -20e-3, -75e-3
V1_, V2_, V3_, V4_, V5_, V6_, V7_, V8_, V9_ = 0.0, 20e-3, 0.0, 15e-3, 78.3e-3, 10.5e-3, -42.2e-3, 87.3e-3, 5e-3
V_TH = -25e-3
G_LEAK = 1e-10
PHI_N = 2.0  # 1/s
NEURONS = ("f1", "f2", "hub", "s1", "s2")
#          f1      f2      hub     s1      s2
G_CA = [1.9e-8, 1.9e-8, 1.7e-8, 8.5e-9, 8.5e-9]
G_K = [3.9e-8, 3.9e-8, 1.9e-8, 1.5e-8, 1.5e-8]
G_H = [2.5e-8, 2.5e-8, 8.0e-9, 1.0e-8, 1.0e-8]
X0 = [-0.04169771, -0.04319491, 0.00883992, -0.06879824, 0.03048103,
      0.00151316, 0.19784773, 0.56514935, 0.12214069, 0.35290397,
      0.08614699, 0.04938177, 0.05568701, 0.07007949, 0.05790969]
ELECTRICAL_EDGES = ((1, 2), (2, 4))          # f2 - hub, hub - s2
SYNAPSES_B = ((0, 1), (1, 0), (3, 4), (4, 3))  # (pre, post): the reciprocal pairs, g_synB
SYNAPSES_A = ((0, 2), (3, 2))                  # f1 -> hub, s1 -> hub, g_synA


def coupling_matrices() -> tuple[Tensor, Tensor, Tensor]:
    """Laplacian L (5, 5) of the electrical edges; W_B (5, 5) in S and W_A (5, 5) unit pattern
    of the chemical synapses, indexed [pre, post]."""
    L, W_B, W_A = (torch.zeros(5, 5, dtype=torch.float64) for _ in range(3))
    for i, j in ELECTRICAL_EDGES:
        L[i, i] += 1
        L[j, j] += 1
        L[i, j] -= 1
        L[j, i] -= 1
    for pre, post in SYNAPSES_B:
        W_B[pre, post] = G_SYN_B
    for pre, post in SYNAPSES_A:
        W_A[pre, post] = 1.0
    return L, W_B, W_A


def stg_derivatives(V: Tensor, N: Tensor, H: Tensor, g_el: Tensor, g_syn_a: Tensor,
                    p: dict[str, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
    """(dV/dt, dN/dt, dH/dt) for states V, N, H (batch, 5) and g_el, g_syn_a (batch, 1) in S.

    ``p`` holds the per-neuron conductances ``g_ca``, ``g_k``, ``g_h`` (5,) and the coupling
    matrices ``L``, ``W_B``, ``W_A`` of :func:`coupling_matrices`."""
    m_inf = 0.5 * (1.0 + torch.tanh((V - V1_) / V2_))
    n_inf = 0.5 * (1.0 + torch.tanh((V - V3_) / V4_))
    h_inf = torch.sigmoid(-(V + V5_) / V6_)
    s_inf = torch.sigmoid((V - V_TH) / V9_)
    g_syn = s_inf @ p["W_B"] + g_syn_a * (s_inf @ p["W_A"])
    current = (G_LEAK * (V - V_LEAK) + p["g_ca"] * m_inf * (V - V_CA) + p["g_k"] * N * (V - V_K)
               + p["g_h"] * H * (V - V_H) + g_el * (V @ p["L"]) + g_syn * (V - V_SYN))
    lam_n = PHI_N * torch.cosh((V - V3_) / (2 * V4_))
    tau_h = (272.0 + 1499.0 * torch.sigmoid((V - V7_) / V8_)) / 1000.0
    return -current / C_M, lam_n * (n_inf - N), (h_inf - H) / tau_h


def euler_vjp(V: Tensor, N: Tensor, H: Tensor, g_el: Tensor, g_syn_a: Tensor, p: dict[str, Tensor],
              aV: Tensor, aN: Tensor, aH: Tensor, dt: float):
    """Adjoint of one Euler step x' = x + dt f(x) at x = (V, N, H).

    Given the adjoints (aV, aN, aH) of x' (batch, 5), returns the adjoints of x and this
    step's contributions to dL/dg_el and dL/dg_syn_a (batch, 1)."""
    th_m = torch.tanh((V - V1_) / V2_)
    th_n = torch.tanh((V - V3_) / V4_)
    m_inf, dm = 0.5 * (1.0 + th_m), 0.5 * (1.0 - th_m ** 2) / V2_
    n_inf, dn = 0.5 * (1.0 + th_n), 0.5 * (1.0 - th_n ** 2) / V4_
    h_inf = torch.sigmoid(-(V + V5_) / V6_)
    dh = -h_inf * (1.0 - h_inf) / V6_
    s_inf = torch.sigmoid((V - V_TH) / V9_)
    ds = s_inf * (1.0 - s_inf) / V9_
    s_a = s_inf @ p["W_A"]
    g_syn = s_inf @ p["W_B"] + g_syn_a * s_a
    arg = (V - V3_) / (2 * V4_)
    lam_n, dlam = PHI_N * torch.cosh(arg), PHI_N * torch.sinh(arg) / (2 * V4_)
    sig_h = torch.sigmoid((V - V7_) / V8_)
    tau_h = (272.0 + 1499.0 * sig_h) / 1000.0
    dtau = 1.499 * sig_h * (1.0 - sig_h) / V8_
    # dV/dt = -I / C: every current enters with the weight -u
    u = aV * (dt / C_M)
    w = u * (V - V_SYN)
    diag = G_LEAK + p["g_ca"] * (dm * (V - V_CA) + m_inf) + p["g_k"] * N + p["g_h"] * H + g_syn
    grad_v = -(u * diag + g_el * (u @ p["L"].T) + ds * (w @ p["W_B"].T + g_syn_a * (w @ p["W_A"].T)))
    grad_v = grad_v + (aN * dt) * (dlam * (n_inf - N) + lam_n * dn)
    grad_v = grad_v + (aH * dt) * (dh - (h_inf - H) * dtau / tau_h) / tau_h
    aN_prev = aN * (1.0 - dt * lam_n) - u * p["g_k"] * (V - V_K)
    aH_prev = aH * (1.0 - dt / tau_h) - u * p["g_h"] * (V - V_H)
    d_gel = -(u * (V @ p["L"])).sum(-1, keepdim=True)
    d_gsyn = -(w * s_a).sum(-1, keepdim=True)
    return aV + grad_v, aN_prev, aH_prev, d_gel, d_gsyn


def euler_step(V: Tensor, N: Tensor, H: Tensor, g_el: Tensor, g_syn_a: Tensor, p: dict[str, Tensor],
               dt: float):
    """One forward-Euler step of the deterministic vector field."""
    dV, dN, dH = stg_derivatives(V, N, H, g_el, g_syn_a, p)
    return V + dt * dV, N + dt * dN, H + dt * dH


def euler_sweep(x0: Tensor, g_el: Tensor, g_syn_a: Tensor, p: dict[str, Tensor], dt: float, steps: int,
                noise: float = 0.0, step=euler_step, gates: bool = True):
    """Forward Euler from x0 (batch, 15): V (steps + 1, batch, 5), and N, H likewise (None
    unless ``gates``). ``noise`` = sigma_I / C (V/s) adds Gaussian current noise to dV/dt."""
    V, N, H = x0[:, :5], x0[:, 5:10], x0[:, 10:]
    Vs, Ns, Hs = [V], [N], [H]
    for _ in range(steps):
        V, N, H = step(V, N, H, g_el, g_syn_a, p, dt)
        if noise > 0:
            V = V + dt * noise * torch.randn_like(V)
        Vs.append(V)
        if gates:
            Ns.append(N)
            Hs.append(H)
    return torch.stack(Vs), (torch.stack(Ns) if gates else None), (torch.stack(Hs) if gates else None)


_COMPILED: dict[str, object] = {}


def _kernels(compiled: bool):
    """(step, vjp), compiled once per process with torch.compile when asked."""
    if not compiled:
        return euler_step, euler_vjp
    if not _COMPILED:
        _COMPILED["step"] = torch.compile(euler_step)
        _COMPILED["vjp"] = torch.compile(euler_vjp)
    return _COMPILED["step"], _COMPILED["vjp"]


class EulerSTG(torch.autograd.Function):
    """Membrane potentials (batch, steps + 1, 5) from x0 (batch, 15), differentiable in
    g_el and g_syn_a (batch, 1) through the exact adjoint. ``noise`` = sigma_I / C (V/s) adds
    independent Gaussian current noise to dV/dt at every step (a constant offset for the
    adjoint, so the gradient formula is unchanged)."""

    @staticmethod
    def forward(ctx, g_el, g_syn_a, x0, p, dt: float, steps: int, noise: float, compiled: bool):
        Vs, Ns, Hs = euler_sweep(x0, g_el, g_syn_a, p, dt, steps, noise, step=_kernels(compiled)[0])
        ctx.save_for_backward(g_el, g_syn_a, Vs, Ns, Hs)
        ctx.p, ctx.dt, ctx.compiled = p, dt, compiled
        return Vs.transpose(0, 1)

    @staticmethod
    def backward(ctx, grad_v):
        g_el, g_syn_a, Vs, Ns, Hs = ctx.saved_tensors
        _, vjp = _kernels(ctx.compiled)
        steps = Vs.shape[0] - 1
        aV = grad_v[:, steps]
        aN = aH = torch.zeros_like(aV)
        d_gel, d_gsyn = torch.zeros_like(g_el), torch.zeros_like(g_syn_a)
        for t in range(steps - 1, -1, -1):
            aV, aN, aH, de, ds = vjp(Vs[t], Ns[t], Hs[t], g_el, g_syn_a, ctx.p, aV, aN, aH, ctx.dt)
            aV = aV + grad_v[:, t]
            d_gel, d_gsyn = d_gel + de, d_gsyn + ds
        return d_gel, d_gsyn, None, None, None, None, None, None
