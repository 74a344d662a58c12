"""Overhead of the generic TrainingManager per step, against a bare PyTorch loop.

Both train the same small MLP regression for the same number of steps on the same device;
the manager adds per-step reseeding, the NaN guard, metric logging to TensorBoard,
progress bars and periodic checkpoints. Prints steps/s of both and their ratio.

    pipenv run python bench/bench_managers.py [--steps 2000] [--device cpu|cuda] [--width 256]
"""
from __future__ import annotations

import argparse
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


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--device", default="auto")
    p.add_argument("--width", type=int, default=256)
    a = p.parse_args()
    device = resolve_device(a.device)
    cfg = Cfg(steps=a.steps, width=a.width, log_every=10, ckpt_every=max(a.steps // 4, 1))
    bare(Cfg(steps=20, width=a.width), device)  # warm-up
    times = {}
    for name, fn in (("bare loop", bare), ("TrainingManager", managed)):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn(cfg, device)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times[name] = time.perf_counter() - t0
    print(f"device {device}, {a.steps} steps, MLP width {a.width}, batch {cfg.batch}")
    for name, t in times.items():
        print(f"  {name:16s} {a.steps / t:9.1f} steps/s  ({t:.2f} s)")
    print(f"  manager / bare time ratio: {times['TrainingManager'] / times['bare loop']:.2f}x "
          f"(logging every {cfg.log_every} steps, 4 checkpoints)")


if __name__ == "__main__":
    main()
