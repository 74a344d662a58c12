"""Benchmark of the snn_dales training step: fast path vs a straightforward reference loop.

    pipenv run python bench/bench_snn_dales.py [--device cpu|cuda] [--threads 1] [--repeats 20]

Prints, for one training batch (64 samples x 100 steps x 200 inputs, 30 hidden, 12 classes;
forward + backward + Adam step), the time of

* ``reference``: the source's formulation written out here -- batch-major storage, an einsum
  for the input layer, a per-time-step loop under autograd for the hidden layer (surrogate
  spike as its own autograd function) and a second per-step loop for the leaky readout;
* ``fast``: :class:`snn_dales.model.DaleSNN` -- the input layer as one matmul, time-major
  storage, the fused hidden-layer forward/backward (custom autograd, eager) and the
  closed-form readout;
* ``compiled``: the same with the hidden layer's two time sweeps fused into kernels by
  ``torch.compile`` (``compiled: true`` in the config; compile time printed separately,
  ``--no_compile`` skips it).

It first checks that both give the same loss and gradients (relative error < 1e-5), then
prints the speed-up measured in the same run. A second part times a sweep of M networks:
M separate fast-path networks one after another vs one batched model with M networks.
Figures are printed, never asserted.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.runtime import keep_freed_memory_mapped  # noqa: E402
from snn_dales.dale import dale_sign_mask, signed_weights  # noqa: E402
from snn_dales.model import DaleSNN, nll_loss  # noqa: E402
from snn_dales.stimulus import IPDTask, discretise, make_dataset  # noqa: E402

BETA, TAU, DT, SCALE = 5.0, 5e-3, 1e-3, 0.01


# --- the straightforward reference ----------------------------------------------------
class _Spike(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        out = torch.zeros_like(x)
        out[x > 0] = 1.0
        return out

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        sig = 1 / (1 + torch.exp(-BETA * x))
        return grad * BETA * sig * (1 - sig)


def reference_forward(x, w1, w2, sign1, sign2):
    """x: (batch, time, inputs) float -> readout membranes (batch, time, classes)."""
    alpha = math.exp(-DT / TAU)
    W1, W2 = torch.abs(w1) * sign1[:, None], torch.abs(w2) * sign2[:, None]
    n_b, n_t, _ = x.shape
    h = torch.einsum("abc,cd->abd", x, W1)
    v = torch.zeros(n_b, W1.shape[1], device=x.device)
    s = torch.zeros(n_b, W1.shape[1], device=x.device)
    rec = [s]
    for t in range(n_t - 1):
        new_v = (alpha * v + h[:, t, :]) * (1 - s)
        s = _Spike.apply(v - 1)
        v = new_v
        rec.append(s)
    s_rec = torch.stack(rec, dim=1)
    u = torch.einsum("abc,cd->abd", s_rec, W2)
    v = torch.zeros(n_b, W2.shape[1], device=x.device)
    out = [v]
    for t in range(n_t - 1):
        v = alpha * v + u[:, t, :]
        out.append(v)
    return torch.stack(out, dim=1)


def reference_loss(x, y, w1, w2, sign1, sign2):
    m = reference_forward(x, w1, w2, sign1, sign2).sum(1) * SCALE
    return torch.nn.functional.nll_loss(torch.log_softmax(m, 1), y)


# --- timing helpers ----------------------------------------------------------------------
def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def timeit(fn, device, repeats):
    fn()
    fn()
    _sync(device)
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(repeats):
            fn()
        _sync(device)
        best = min(best, (time.perf_counter() - t0) / repeats)
    return best


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--models", type=int, default=22, help="networks in the sweep part (e.g. 11 ratios x 2 seeds)")
    p.add_argument("--no_compile", action="store_true", help="skip the torch.compile variant")
    p.add_argument("--default_malloc", action="store_true",
                   help="leave glibc's malloc thresholds alone (main.py tunes them; see core.runtime)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if not args.default_malloc:
        keep_freed_memory_mapped()
    dev = torch.device(args.device)
    task = IPDTask()
    g = torch.Generator(device=dev).manual_seed(0)
    ipd, spikes = make_dataset(64, task, "per_sample", g)
    y = discretise(ipd, 12)
    x = spikes.float()

    gs = torch.Generator().manual_seed(0)
    sign1 = dale_sign_mask(200, 0.5, "first")[None].to(dev)
    sign2 = dale_sign_mask(30, 0.5, "first")[None].to(dev)
    fast = DaleSNN(sign1, sign2, 12, generator=torch.Generator(device=dev).manual_seed(1))
    ref_w1 = fast.w1.detach()[0].clone().requires_grad_()
    ref_w2 = fast.w2.detach()[0].clone().requires_grad_()

    # equality of loss and gradients
    loss_ref = reference_loss(x, y, ref_w1, ref_w2, sign1[0], sign2[0])
    loss_ref.backward()
    loss_fast = nll_loss(fast(spikes)[0], y)
    loss_fast.backward()
    rel = [float((a - b).norm() / b.norm()) for a, b in ((fast.w1.grad[0], ref_w1.grad),
                                                           (fast.w2.grad[0], ref_w2.grad))]
    print(f"device {dev}, threads {args.threads}, batch 64 x 100 steps x 200 inputs -> 30 hidden -> 12")
    print(f"loss reference {loss_ref.item():.6f}  fast {loss_fast.item():.6f}  "
          f"relative gradient error W1 {rel[0]:.1e}, W2 {rel[1]:.1e} (required < 1e-5)")

    # one training batch, forward + backward + Adam
    opt_ref = torch.optim.Adam([ref_w1, ref_w2], lr=0.01)

    def step_ref():
        opt_ref.zero_grad()
        reference_loss(x, y, ref_w1, ref_w2, sign1[0], sign2[0]).backward()
        opt_ref.step()

    opt_fast = torch.optim.Adam(fast.parameters(), lr=0.01)

    def step_fast():
        opt_fast.zero_grad()
        nll_loss(fast(spikes)[0], y).backward()
        opt_fast.step()

    t_fast = timeit(step_fast, dev, args.repeats)
    t_ref = timeit(step_ref, dev, args.repeats)
    print(f"training batch: reference {1e3 * t_ref:.1f} ms, fast {1e3 * t_fast:.1f} ms, "
          f"speed-up {t_ref / t_fast:.2f}x")

    if not args.no_compile:
        comp = DaleSNN(sign1, sign2, 12, compiled=True)
        comp.load_state_dict(fast.state_dict())
        opt_comp = torch.optim.Adam(comp.parameters(), lr=0.01)
        t0 = time.perf_counter()
        loss_comp = nll_loss(comp(spikes)[0], y)
        loss_comp.backward()
        _sync(dev)
        t_compile = time.perf_counter() - t0
        fast.zero_grad()
        nll_loss(fast(spikes)[0], y).backward()
        rel_c = max(float((a.grad - b.grad).norm() / b.grad.norm()) for a, b in
                    ((comp.w1, fast.w1), (comp.w2, fast.w2)))
        comp.zero_grad()

        def step_comp():
            opt_comp.zero_grad()
            nll_loss(comp(spikes)[0], y).backward()
            opt_comp.step()

        t_comp = timeit(step_comp, dev, args.repeats)
        print(f"compiled hidden layer: {1e3 * t_comp:.1f} ms per batch, speed-up {t_ref / t_comp:.2f}x "
              f"vs reference (first call incl. compiling {t_compile:.1f} s; gradient rel. error vs fast "
              f"{rel_c:.1e})")

    # a sweep of M networks: M separate networks vs one batched model
    m = args.models
    s1 = torch.stack([dale_sign_mask(200, (k % 11) / 10, "random", gs) for k in range(m)]).to(dev)
    s2 = torch.stack([dale_sign_mask(30, (k % 11) / 10, "random", gs) for k in range(m)]).to(dev)
    batched = DaleSNN(s1, s2, 12, generator=torch.Generator(device=dev).manual_seed(2))
    singles = [DaleSNN(s1[k:k + 1], s2[k:k + 1], 12) for k in range(m)]
    opt_b = torch.optim.Adam(batched.parameters(), lr=0.01)
    opt_s = [torch.optim.Adam(n.parameters(), lr=0.01) for n in singles]

    def step_batched():
        opt_b.zero_grad()
        nll_loss(batched(spikes)[0], y).backward()
        opt_b.step()

    def step_loop():
        for net, opt in zip(singles, opt_s):
            opt.zero_grad()
            nll_loss(net(spikes)[0], y).backward()
            opt.step()

    reps = max(1, args.repeats // 4)
    t_b = timeit(step_batched, dev, reps)
    t_l = timeit(step_loop, dev, reps)
    print(f"sweep of {m} networks, one batch each: Python loop of fast networks {1e3 * t_l:.1f} ms, "
          f"batched model axis {1e3 * t_b:.1f} ms, speed-up {t_l / t_b:.2f}x "
          f"({1e3 * t_b / m:.2f} ms per network-batch)")
    print(f"sweep, batched vs reference loop per network-batch: {t_ref * m / t_b:.1f}x")


if __name__ == "__main__":
    main()
