"""Benchmark of the snn_dales training step: fast path vs a straightforward reference loop.

    pipenv run python bench/bench_snn_dales.py [--device cpu|cuda] [--threads 1|1,2] [--rounds 9]
                                               [--block 5] [--no_compile] [--models 22]

Prints, for one training batch (64 samples x 100 steps x 200 inputs, 30 hidden, 12 classes;
forward + backward + Adam step), the time of

* ``reference``: what a competent user writes from the source: batch-major storage, one
  matmul (einsum) for the input layer, a per-time-step loop under autograd for the hidden
  layer (the spike as a surrogate-gradient autograd function) and a second per-step loop
  for the leaky readout; float32 and the same thread count as the other variants;
* ``fast``: :class:`snn_dales.model.DaleSNN` -- the input layer as one matmul, time-major
  storage, the fused hidden-layer forward/backward (custom autograd, eager) and the
  closed-form readout (the default, ``fused: true``);
* ``compiled``: the same with the hidden layer's two time sweeps fused into kernels by
  ``torch.compile`` (``compiled: true``; the first call, which compiles, is timed apart;
  ``--no_compile`` skips it). Run with ``TORCHINDUCTOR_CACHE_DIR=$(mktemp -d)`` for a
  cold compile (otherwise inductor's on-disk cache may serve it).

It first checks that they give the same loss and gradients (relative error < 1e-5). The
variants are then timed **interleaved**: ``--rounds`` rounds, each running a block of
``--block`` steps of every variant in turn (order reversed every other round), so a busy
machine slows all alike; it prints per variant the median and the range over rounds, and
each ratio as the median (and range) of the per-round ratios. With ``--threads 1,2`` every
variant also runs at each thread count inside the same rounds, and the thread ratio is
printed. A second part times a sweep of M networks the same way: M separate fast-path
networks one after another vs one batched model with M networks. Figures are printed,
never asserted.
"""
from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.runtime import keep_freed_memory_mapped  # noqa: E402
from interleave import interleaved, sync  # noqa: E402
from snn_dales.dale import dale_sign_mask  # noqa: E402
from snn_dales.model import DaleSNN, nll_loss  # noqa: E402
from snn_dales.stimulus import IPDTask, discretise, make_dataset  # noqa: E402

BETA, TAU, DT, SCALE = 5.0, 5e-3, 1e-3, 0.01


# --- the straightforward reference ----------------------------------------------------
class _Spike(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return (x > 0).to(x.dtype)

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


def median(xs):
    return statistics.median(xs)


def spread(xs, scale=1e3, fmt=".1f"):
    """``median (min-max)`` of a list, scaled (default: s -> ms)."""
    return f"{median(xs) * scale:{fmt}} ({min(xs) * scale:{fmt}}-{max(xs) * scale:{fmt}})"


def ratio(slow, fast):
    """Per-round ratios slow/fast: ``median x (min-max)``."""
    r = [a / b for a, b in zip(slow, fast)]
    return f"{median(r):.2f}x ({min(r):.2f}-{max(r):.2f})"


def workload(dev):
    """The bench's training batch on ``dev``: ``(spikes, x, y, sign1, sign2)`` -- 64 samples x 100
    steps x 200 inputs (``spikes`` as generated, ``x`` as float32), labels ``y`` in 12 classes,
    Dale sign masks ``(1, 200)`` and ``(1, 30)`` (half excitatory)."""
    task = IPDTask()
    g = torch.Generator(device=dev).manual_seed(0)
    ipd, spikes = make_dataset(64, task, "per_sample", g)
    y = discretise(ipd, 12)
    sign1 = dale_sign_mask(200, 0.5, "first")[None].to(dev)
    sign2 = dale_sign_mask(30, 0.5, "first")[None].to(dev)
    return spikes, spikes.float(), y, sign1, sign2


def training_step(model, spikes, y, lr=0.01):
    """A closure: one forward + backward + Adam step of ``model`` on the batch."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)

    def step():
        opt.zero_grad()
        nll_loss(model(spikes)[0], y).backward()
        opt.step()

    return step


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", default="1", help="CPU thread count, or a comma list (e.g. 1,2) to compare")
    p.add_argument("--rounds", type=int, default=9, help="interleaved rounds (each: one block per variant)")
    p.add_argument("--block", type=int, default=5, help="training steps per block")
    p.add_argument("--models", type=int, default=22, help="networks in the sweep part (e.g. 11 ratios x 2 seeds)")
    p.add_argument("--no_compile", action="store_true", help="skip the torch.compile variant")
    p.add_argument("--no_sweep", action="store_true", help="skip the sweep part")
    p.add_argument("--default_malloc", action="store_true",
                   help="leave glibc's malloc thresholds alone (main.py tunes them; see core.runtime)")
    args = p.parse_args(argv)
    thread_counts = [int(t) for t in str(args.threads).split(",")]
    torch.set_num_threads(thread_counts[0])
    if not args.default_malloc:
        keep_freed_memory_mapped()
    dev = torch.device(args.device)
    spikes, x, y, sign1, sign2 = workload(dev)
    gs = torch.Generator().manual_seed(0)
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
    print(f"device {dev}, threads {args.threads}, torch {torch.__version__}, "
          f"batch 64 x 100 steps x 200 inputs -> 30 hidden -> 12 (float32)")
    print(f"loss reference {loss_ref.item():.6f}  fast {loss_fast.item():.6f}  "
          f"relative gradient error W1 {rel[0]:.1e}, W2 {rel[1]:.1e} (required < 1e-5)")

    # one training batch, forward + backward + Adam
    opt_ref = torch.optim.Adam([ref_w1, ref_w2], lr=0.01)

    def step_ref():
        opt_ref.zero_grad()
        reference_loss(x, y, ref_w1, ref_w2, sign1[0], sign2[0]).backward()
        opt_ref.step()

    steps = {"reference": step_ref, "fast": training_step(fast, spikes, y)}
    if not args.no_compile:
        comp = DaleSNN(sign1, sign2, 12, compiled=True)
        comp.load_state_dict(fast.state_dict())
        t0 = time.perf_counter()
        loss_comp = nll_loss(comp(spikes)[0], y)
        loss_comp.backward()
        sync(dev)
        t_compile = time.perf_counter() - t0
        fast.zero_grad()
        nll_loss(fast(spikes)[0], y).backward()
        rel_c = max(float((a.grad - b.grad).norm() / b.grad.norm()) for a, b in
                    ((comp.w1, fast.w1), (comp.w2, fast.w2)))
        comp.zero_grad()
        print(f"compiled: first forward + backward (compiling) {t_compile:.1f} s; gradient rel. error vs "
              f"fast {rel_c:.1e}")
        steps["compiled"] = training_step(comp, spikes, y)

    variants = {(name, n): (fn, n) for n in thread_counts for name, fn in steps.items()}
    t = interleaved(variants, dev, args.rounds, args.block)
    print(f"training batch, ms: median (min-max) over {args.rounds} interleaved rounds of {args.block} steps")
    for n in thread_counts:
        for name in steps:
            line = f"  {name:10s} {n} thread(s) {spread(t[name, n])} ms"
            if name != "reference":
                line += f"   vs reference {ratio(t['reference', n], t[name, n])}"
            if name == "compiled":
                line += f"   vs fast {ratio(t['fast', n], t[name, n])}"
            print(line)
    for n in thread_counts[1:]:
        for name in steps:
            print(f"  {name:10s} {thread_counts[0]} vs {n} threads: time({n})/time({thread_counts[0]}) = "
                  f"{ratio(t[name, n], t[name, thread_counts[0]])}")
    if args.no_sweep:
        return

    # a sweep of M networks: M separate networks vs one batched model
    torch.set_num_threads(thread_counts[0])
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

    ts = interleaved({"loop": (step_loop, thread_counts[0]), "batched": (step_batched, thread_counts[0])},
                     dev, max(3, args.rounds // 2), 1)
    per_net = [b / m for b in ts["batched"]]
    print(f"sweep of {m} networks, one batch each ({thread_counts[0]} thread(s)): Python loop of fast "
          f"networks {spread(ts['loop'])} ms, batched model axis {spread(ts['batched'])} ms, speed-up "
          f"{ratio(ts['loop'], ts['batched'])}; {spread(per_net, fmt='.2f')} ms per network-batch")
    ref_n = t["reference", thread_counts[0]]
    print(f"sweep, batched per network-batch vs the reference step: "
          f"{median(ref_n) / median(per_net):.1f}x (medians)")


if __name__ == "__main__":
    main()
