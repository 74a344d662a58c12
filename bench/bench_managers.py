"""Overhead of the generic TrainingManager per step, against a bare PyTorch loop.

Both train the same small MLP regression (float32, same thread count, same process) for the
same number of steps on the same device; the bare loop is what a user writes by hand (Adam,
zero_grad(set_to_none=True), one generator), the manager adds per-step reseeding, the NaN
guard, metric logging to TensorBoard, progress bars and periodic checkpoints. The two are
run interleaved (bare, managed, then managed, bare, ... for ``--rounds`` rounds, after a
short warm-up of both); prints steps/s of both as median (min-max) over rounds and the
time ratio as the median (min-max) of the per-round ratios.

    pipenv run python bench/bench_managers.py [--steps 2000] [--rounds 5] [--device cpu|cuda]
                                              [--width 256] [--threads N]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.config import BaseConfig, param  # noqa: E402
from core.outputs import RunLogger  # noqa: E402
from core.rundir import RunDir  # noqa: E402
from core.runtime import resolve_device  # noqa: E402
from core.suite import ModelSuite, RunContext  # noqa: E402
from managers import TrainingManager  # noqa: E402


@dataclass
class Cfg(BaseConfig):
    width: int = param(256, "hidden units", min=1)
    batch: int = param(128, "batch size", min=1)
    lr: float = param(1e-3, "learning rate", min=0.0)


def make_net(width, device):
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(32, width), nn.Tanh(), nn.Linear(width, width), nn.Tanh(),
                         nn.Linear(width, 1)).to(device)


class MLPSuite(ModelSuite):
    name, Config = "bench_mlp", Cfg

    def build(self):
        return {"net": make_net(self.cfg.width, self.device)}

    def training_batch(self, step):
        x = torch.randn(self.cfg.batch, 32, device=step.device, generator=step.generator)
        return x, x.sin().sum(-1, keepdim=True)

    def loss(self, modules, batch, step):
        x, y = batch
        loss = ((modules["net"](x) - y) ** 2).mean()
        return loss, {}


def bare(cfg, device):
    net = make_net(cfg.width, device)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    g = torch.Generator(device=device).manual_seed(0)
    for _ in range(cfg.steps):
        x = torch.randn(cfg.batch, 32, device=device, generator=g)
        loss = ((net(x) - x.sin().sum(-1, keepdim=True)) ** 2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    float(loss.detach())


def managed(cfg, device):
    with tempfile.TemporaryDirectory() as tmp:
        run = RunDir.create(tmp, "bench")
        ctx = RunContext(cfg=cfg, device=device, run=run)
        suite = MLPSuite(ctx)
        TrainingManager(suite, suite.build(), ctx, RunLogger(run)).fit()


def _timed(fn, cfg, device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    fn(cfg, device)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds (each: one run of both)")
    p.add_argument("--device", default="auto")
    p.add_argument("--width", type=int, default=256)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    device = resolve_device(a.device)
    cfg = Cfg(steps=a.steps, width=a.width, log_every=10, ckpt_every=max(a.steps // 4, 1))
    warm = Cfg(steps=20, width=a.width, log_every=10, ckpt_every=10)
    runs = {"bare loop": bare, "TrainingManager": managed}
    for fn in runs.values():  # warm-up (imports, TensorBoard writer, allocator)
        fn(warm, device)
    times = {name: [] for name in runs}
    names = list(runs)
    for r in range(a.rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            times[name].append(_timed(runs[name], cfg, device))
    print(f"device {device}, {torch.get_num_threads()} thread(s), {a.steps} steps, MLP width {a.width}, "
          f"batch {cfg.batch}; {a.rounds} interleaved rounds, median (min-max)")
    for name, t in times.items():
        sps = [a.steps / x for x in t]
        print(f"  {name:16s} {statistics.median(sps):9.1f} steps/s ({min(sps):.1f}-{max(sps):.1f})  "
              f"{statistics.median(t):.2f} s ({min(t):.2f}-{max(t):.2f})")
    r = [m / b for m, b in zip(times["TrainingManager"], times["bare loop"])]
    print(f"  manager / bare time ratio: {statistics.median(r):.2f}x ({min(r):.2f}-{max(r):.2f}) "
          f"(logging every {cfg.log_every} steps, 4 checkpoints)")


if __name__ == "__main__":
    main()
