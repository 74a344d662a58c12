"""Leaky integrate-and-fire dynamics with a surrogate gradient, and the leaky readout.

All functions are time-major: ``(time, ...)`` where ``...`` is any batch layout (e.g.
``(batch, model, units)``). With ``alpha = exp(-dt / tau)`` and input current ``h_t``:

Hidden LIF layer (the source's update order; threshold 1, reset by multiplication, the
spike of step ``t+1`` is computed from the membrane *before* the update)::

    v_0 = 0, s_0 = 0
    v_{t+1} = (alpha v_t + h_t) (1 - s_t)
    s_{t+1} = H(v_t - 1)                      t = 0 .. T-2

The Heaviside ``H`` has the surrogate derivative ``beta sig(beta x)(1 - sig(beta x))`` (the
derivative of a sigmoid of slope ``beta``); gradients also flow through the reset.

Readout (non-spiking leaky units, ``u_t = s_t W2``)::

    v_0 = 0,  v_{t+1} = alpha v_t + u_t,   m = sum_{t=0}^{T-1} v_t

which has the exact closed form ``m = (sum_k c_k s_k) W2`` with
``c_k = (1 - alpha^(T-1-k)) / (1 - alpha)`` (so ``c_{T-1} = 0``): a weighted time-sum and one
matmul instead of a second loop.

Two implementations of the hidden layer are given: :func:`lif_hidden_loop`, the
straightforward per-step autograd loop (the reference), and :func:`lif_hidden`, a fused
forward/backward (:class:`LIFHidden`) that runs both sweeps without building an autograd
graph. They agree to float rounding, forward and backward.
"""
from __future__ import annotations

import math

import torch


def decay(dt: float, tau: float) -> float:
    """Membrane decay per step, ``alpha = exp(-dt / tau)``."""
    return math.exp(-dt / tau)


def surrogate_derivative(x: torch.Tensor, beta: float) -> torch.Tensor:
    """``d/dx sigmoid(beta x) = beta sig (1 - sig)``."""
    sig = torch.sigmoid(beta * x)
    if sig.requires_grad:                     # differentiable use: no in-place ops
        return beta * sig * (1 - sig)
    return sig.mul_(1 - sig).mul_(beta)


class SurrogateSpike(torch.autograd.Function):
    """Heaviside step ``H(x) = [x > 0]`` with the sigmoid-derivative surrogate gradient."""

    @staticmethod
    def forward(ctx, x, beta: float):
        ctx.save_for_backward(x)
        ctx.beta = beta
        return (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * surrogate_derivative(x, ctx.beta), None


def lif_hidden_loop(h: torch.Tensor, alpha: float, beta: float) -> torch.Tensor:
    """Reference hidden layer: per-step loop under autograd. ``h``: ``(T, ..., H)`` -> spikes."""
    v = torch.zeros_like(h[0])
    s = torch.zeros_like(h[0])
    out = [s]
    for t in range(h.shape[0] - 1):
        new_v = (alpha * v + h[t]) * (1 - s)
        s = SurrogateSpike.apply(v - 1, beta)
        v = new_v
        out.append(s)
    return torch.stack(out)


def membrane_sweep(h: torch.Tensor, alpha: float) -> torch.Tensor:
    """Membranes ``v_t`` ``(T, ...)`` of the hidden layer (before update t) from currents ``h``.

    ``v_0 = 0``, ``v_1 = h_0`` and ``v_{t+1} = (alpha v_t + h_t) [v_{t-1} <= 1]``: three tensor
    operations per step (written functionally so that ``torch.compile`` can fuse the sweep).
    """
    n_t = h.shape[0]
    hs = h.unbind(0)
    vs = [torch.zeros_like(hs[0]), hs[0]]
    for t in range(1, n_t - 1):
        vs.append(torch.add(hs[t], vs[t], alpha=alpha).masked_fill_(vs[t - 1] > 1.0, 0.0))
    return torch.stack(vs[:n_t])


def spikes_from_membrane(v: torch.Tensor) -> torch.Tensor:
    """``s_0 = 0``, ``s_t = [v_{t-1} > 1]`` (float), ``(T, ...)`` from membranes ``(T, ...)``."""
    return torch.cat([torch.zeros_like(v[:1]), (v[:-1] > 1.0).to(v.dtype)])


def adjoint_sweep(grad_s: torch.Tensor, h: torch.Tensor, v: torch.Tensor, s: torch.Tensor, alpha: float,
                  beta: float) -> torch.Tensor:
    """``dL/dh`` ``(T, ...)`` from the direct spike gradients ``grad_s`` (backward of the layer),
    given the forward's currents ``h``, membranes ``v`` and spikes ``s`` (all ``(T, ...)``).

    Adjoints ``gv_t = dL/dv_t``, ``gs_t = dL/ds_t`` (in total), ``gS_t`` the direct gradient
    on the output spikes, ``pre_t = alpha v_t + h_t``, ``keep_t = 1 - s_t``,
    ``sd_t = surrogate'(v_t - 1)``; ``gv_{T-1} = 0`` and ``gs_{T-1} = gS_{T-1}``::

        gv_t    = alpha keep_t gv_{t+1} + gs_{t+1} sd_t        t = T-2 .. 0
        gs_t    = gS_t - gv_{t+1} pre_t
        dL/dh_t = gv_{t+1} keep_t   (all t at once after the sweep; dL/dh_{T-1} = 0)
    """
    n_t = h.shape[0]
    keep = 1.0 - s                            # s: the layer's output spikes (T, ...)
    decay_keep = alpha * keep
    sd = surrogate_derivative(v - 1.0, beta)
    pre = torch.add(h, v, alpha=alpha)
    dks, sds, gss, pres = decay_keep.unbind(0), sd.unbind(0), grad_s.unbind(0), pre.unbind(0)
    gv = [torch.zeros_like(h[0])]            # gv_{T-1}, gv_{T-2}, ... (reversed)
    gs_next = gss[n_t - 1]
    for t in range(n_t - 2, -1, -1):
        gv_next = gv[-1]
        gv.append(torch.addcmul(dks[t] * gv_next, gs_next, sds[t]))
        gs_next = torch.addcmul(gss[t], gv_next, pres[t], value=-1.0)
    gv_later = torch.stack(gv[-2::-1]) if n_t > 1 else h[:0]   # gv_1 .. gv_{T-1}
    return torch.cat([gv_later * keep[:-1], torch.zeros_like(h[:1])])


_COMPILED: dict[str, object] = {}


def _sweeps(compiled: bool):
    """The forward and backward sweeps, eager or fused into kernels by ``torch.compile``."""
    if not compiled:
        return membrane_sweep, adjoint_sweep
    if not _COMPILED:
        _COMPILED["forward"] = torch.compile(membrane_sweep, fullgraph=True)
        _COMPILED["backward"] = torch.compile(adjoint_sweep, fullgraph=True)
    return _COMPILED["forward"], _COMPILED["backward"]


class LIFHidden(torch.autograd.Function):
    """Fused hidden layer: the forward and backward sweeps written out, no per-step graph.

    Forward keeps the membranes (:func:`membrane_sweep`) and the spikes; backward runs the adjoint
    recursion (:func:`adjoint_sweep`). With ``compiled=True`` both sweeps are compiled by
    ``torch.compile`` into fused kernels (the first call per input shape compiles, ~25 s on
    a CPU, then the kernels are cached on disk by inductor).
    """

    @staticmethod
    def forward(ctx, h: torch.Tensor, alpha: float, beta: float, compiled: bool = False):
        h = h.contiguous()
        v = _sweeps(compiled)[0](h, alpha)
        s = spikes_from_membrane(v)
        ctx.save_for_backward(h, v, s)
        ctx.alpha, ctx.beta, ctx.compiled = alpha, beta, compiled
        return s

    @staticmethod
    def backward(ctx, grad_s: torch.Tensor):
        h, v, s = ctx.saved_tensors
        grad_h = _sweeps(ctx.compiled)[1](grad_s.contiguous(), h, v, s, ctx.alpha, ctx.beta)
        return grad_h, None, None, None


def lif_hidden(h: torch.Tensor, alpha: float, beta: float, compiled: bool = False) -> torch.Tensor:
    """Fused hidden layer: spikes ``(T, ..., H)`` (float 0/1) from input currents ``h``."""
    return LIFHidden.apply(h, alpha, beta, compiled)


def leaky_readout_loop(u: torch.Tensor, alpha: float) -> torch.Tensor:
    """Reference readout: membranes ``v`` ``(T, ..., C)`` of ``v_{t+1} = alpha v_t + u_t``."""
    v = torch.zeros_like(u[0])
    out = [v]
    for t in range(u.shape[0] - 1):
        v = alpha * v + u[t]
        out.append(v)
    return torch.stack(out)


def readout_time_weights(n_t: int, alpha: float, device=None, dtype=torch.float32) -> torch.Tensor:
    """``c_k = (1 - alpha^(T-1-k)) / (1 - alpha)``, ``(T,)``: weight of ``u_k`` in ``sum_t v_t``."""
    k = torch.arange(n_t, device=device, dtype=torch.float64)
    if alpha == 1.0:
        c = (n_t - 1 - k)
    else:
        c = (1 - alpha ** (n_t - 1 - k)) / (1 - alpha)
    return c.to(dtype)


def input_currents(x: torch.Tensor, w1: torch.Tensor) -> torch.Tensor:
    """``h = x W1`` for every model as ONE matmul.

    ``x``: spikes ``(T, B, I)`` (bool/uint8/float, any strides), shared by all models;
    ``w1``: ``(M, I, H)``. Returns time-major ``(T, B, M, H)`` (contiguous).

    The product is taken as ``(W1^T)(x^T)``, ``(M H, I) @ (I, T B)``: BLAS is markedly faster
    with the long ``T B`` side as the output's columns than as its rows when ``M H`` is small
    and not a multiple of the vector width (30 hidden units: 1.6x on one CPU core), and the
    backward ``dW1^T = dh^T x`` then has the same favourable shape.
    """
    n_t, n_b, n_i = x.shape
    n_m, _, n_h = w1.shape
    w_t = w1.permute(0, 2, 1).reshape(n_m * n_h, n_i).contiguous()
    if x.dtype == torch.bool:
        x = x.view(torch.uint8)     # uint8 -> float converts ~6x faster than bool -> float
    x_flat = x.reshape(n_t * n_b, n_i).to(w1.dtype)
    h_t = w_t @ x_flat.t()                              # (M H, T B)
    return h_t.t().reshape(n_t, n_b, n_m, n_h)


def readout_sum(spikes: torch.Tensor, w2: torch.Tensor, alpha: float) -> torch.Tensor:
    """Closed-form ``sum_t v_t`` of the leaky readout.

    ``spikes``: ``(T, B, M, H)``, ``w2``: ``(M, H, C)``; returns ``(B, M, C)``.
    """
    c = readout_time_weights(spikes.shape[0], alpha, spikes.device, spikes.dtype)
    z = torch.tensordot(c, spikes, dims=1)            # (B, M, H)
    return torch.einsum("bmh,mhc->bmc", z, w2)


def snn_forward(x: torch.Tensor, w1: torch.Tensor, w2: torch.Tensor, alpha: float, beta: float,
                fused: bool = True, compiled: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Run M networks on a shared batch.

    ``x``: ``(T, B, I)``; ``w1``: ``(M, I, H)``; ``w2``: ``(M, H, C)`` (effective, signed weights).
    Returns ``(m, spikes)``: readout time-sums ``(B, M, C)`` and hidden spikes ``(T, B, M, H)``.
    ``fused=False`` uses the per-step reference loops for both layers.
    """
    h = input_currents(x, w1)
    if fused:
        s = lif_hidden(h, alpha, beta, compiled)
        return readout_sum(s, w2, alpha), s
    s = lif_hidden_loop(h, alpha, beta)
    u = torch.einsum("tbmh,mhc->tbmc", s, w2)
    return leaky_readout_loop(u, alpha).sum(0), s
