"""A tiny model family used only by the tests to exercise the managers.

Linear regression y = X w* + noise with a fixed true weight vector: training should find
w*, so the tests can check the loop does real optimisation. Knobs make it crash or diverge
at a chosen step so resume and the NaN guard can be tested.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from torch import nn

from core.errors import UserError
from core.config import BaseConfig, param
from core.suite import (AnalysisResult, AnalysisSkipped, Labelled, ModelSuite, StimulusSet, analysis,
                        visualization)


@dataclass
class ToyConfig(BaseConfig):
    n_in: int = param(4, "input dimension", min=1, arch=True)
    lr: float = param(0.05, "learning rate", min=0.0)
    batch_size: int = param(8, "batch size", min=1)
    noise: float = param(0.01, "label noise std", min=0.0)
    crash_at_step: int = param(-1, "raise at this step (tests)", min=-1)
    nan_at_step: int = param(-1, "return a NaN loss at this step (tests)", min=-1)
    signal_at_step: int = param(-1, "send this process SIGTERM at this step (tests)", min=-1)
    n_trials: int = param(10, "trials in the experiment", min=1)
    mode: str = param("a", "a named option", choices=["a", "b"])
    poison_at_step: int = param(-1, "set the weights to NaN after this step, loss stays finite (tests)", min=-1)
    explode_at_step: int = param(-1, "scale the weights by 1e35 after this step (finite; tests)", min=-1)


TRUE_W = torch.tensor([1.0, -2.0, 0.5, 3.0])


class ToySuite(ModelSuite):
    name = "toy"
    Config = ToyConfig
    selection_metric = ("val_mse", "min")

    def build(self):
        torch.manual_seed(self.cfg.seed)
        return {"net": nn.Linear(self.cfg.n_in, 1).to(self.device)}

    def _w(self):
        return TRUE_W[: self.cfg.n_in] if self.cfg.n_in <= 4 else torch.ones(self.cfg.n_in)

    def training_batch(self, step):
        x = torch.randn(self.cfg.batch_size, self.cfg.n_in, generator=step.generator, device=step.device)
        y = x @ self._w().to(step.device) + self.cfg.noise * torch.randn(
            self.cfg.batch_size, device=step.device, generator=step.generator)
        return x, y

    def loss(self, modules, batch, step):
        if step.step == self.cfg.crash_at_step and os.environ.get("TOY_CRASH", "1") == "1":
            raise RuntimeError("simulated crash")
        x, y = batch
        loss = ((modules["net"](x).squeeze(-1) - y) ** 2).mean()
        if modules["net"].weight.isnan().any():  # the output is read through a clamp: stays finite
            loss = (y ** 2).mean() + 0 * modules["net"].weight.nan_to_num().sum()
        if step.step == self.cfg.nan_at_step:
            loss = loss * float("nan")
        return loss, {"mse": loss.detach()}

    def after_step(self, modules, step, metrics):
        with torch.no_grad():
            if step.step == self.cfg.poison_at_step:  # like a silent layer: NaN weights, finite loss
                modules["net"].weight.fill_(float("nan"))
            if step.step == self.cfg.explode_at_step:
                modules["net"].weight.mul_(1e35)
        if step.step == self.cfg.signal_at_step and os.environ.get("TOY_CRASH", "1") == "1":
            import signal
            os.kill(os.getpid(), signal.SIGTERM)
        dump = os.environ.get("TOY_DUMP_DIR")
        if dump and step.step == self.cfg.steps - 1:  # each replica saves what it ended with
            torch.save({k: v.detach().cpu() for k, v in modules["net"].state_dict().items()},
                       f"{dump}/rank{step.rank}.pt")

    def evaluate(self, modules, step):
        g = torch.Generator().manual_seed(123)
        x = torch.randn(256, self.cfg.n_in, generator=g)
        y = x @ self._w()
        return {"val_mse": ((modules["net"](x.to(self.device)).squeeze(-1).cpu() - y) ** 2).mean().item()}

    def train_images(self, modules):
        w = modules["net"].weight.detach().cpu()
        return {"weights": (w - w.min()) / (w.max() - w.min() + 1e-9)[None].expand(1, 1, -1)}

    @visualization("weights", "bar plot of the learned weights")
    def viz_weights(self, modules, ctx):
        fig, ax = plt.subplots()
        ax.bar(range(self.cfg.n_in), modules["net"].weight.detach().cpu()[0].numpy())
        return {"weights": fig}

    def stimulus_set(self, ctx):
        if os.environ.get("TOY_STIMULI_FAIL") == "1":  # a failure on rank 0 before a split recording
            raise UserError("toy: the stimulus set cannot be made (TOY_STIMULI_FAIL)")
        x = torch.linspace(-1, 1, self.cfg.n_trials)[:, None, None].expand(-1, 5, self.cfg.n_in).clone()
        return StimulusSet({"x": Labelled(x, ("trial", "time", "input"))},
                           coords={"level": np.linspace(-1, 1, self.cfg.n_trials)}, attrs={"toy": True})

    def record(self, modules, inputs, ctx):
        y = modules["net"](inputs["x"])  # (block, time, 1)
        return {"y": Labelled(y, ("trial", "time", "unit"))}

    @analysis("mean_response", "mean output per trial, streamed", needs_recording=True)
    def mean_response(self, modules, ctx):
        rows = []
        for sl, y in ctx.recording.iter_blocks("y", block=3):
            rows += [{"trial": t, "mean_y": float(v)} for t, v in zip(range(sl.start, sl.stop), y.mean(axis=(1, 2)))]
        frame = pd.DataFrame(rows)
        fig, ax = plt.subplots()
        ax.plot(frame["trial"], frame["mean_y"])
        return AnalysisResult(tables={"mean_response": frame}, figures={"mean_response": fig},
                              scalars={"overall_mean": float(frame["mean_y"].mean())})

    @analysis("weight_error", "distance of learned to true weights")
    def weight_error(self, modules, ctx):
        err = (modules["net"].weight.detach().cpu()[0] - self._w()).norm().item()
        return AnalysisResult(tables={"weight_error": pd.DataFrame([{"error": err}])}, scalars={"error": err})

    @analysis("needs_level", "an analysis that can only run when the stimuli have 'level' > 1")
    def needs_level(self, modules, ctx):
        raise AnalysisSkipped("no stimulus level above 1 in this run")
