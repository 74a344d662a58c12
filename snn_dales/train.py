"""Train many independent networks at once (seeds x E/I ratios x sign layouts as a model axis).

:func:`train_networks` is the batched trainer behind the E/I-ratio sweep and the
"where is inhibition needed" study. It is a pure torch loop (no I/O): Adam on the stacked
parameters of a :class:`~snn_dales.model.DaleSNN` with ``M`` models, every model seeing the
same stimulus batches (common random numbers: the seeds differ in initialisation and sign
assignment). After every epoch each model is scored on the validation set; with
``keep='best'`` each model keeps its own best-validation weights and the loop stops once
every model has gone ``patience`` epochs without improving; with ``keep='final'`` (the
source's scheme) every epoch runs and the final weights are kept.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from snn_dales.model import DaleSNN, evaluate_logits, nll_loss
from snn_dales.stimulus import IPDTask, discretise, make_dataset, random_phase_offsets, ipd_spikes, random_ipds


@dataclass
class DataSpec:
    """How training batches are made."""

    batch_size: int = 64
    batches_per_epoch: int = 64
    phase_offset: str = "per_sample"
    train_set: str = "fresh"   # fresh samples every step, or one fixed set reused each epoch


@dataclass
class TrainHistory:
    train_loss: list = field(default_factory=list)   # per epoch, (M,) lists
    val_acc: list = field(default_factory=list)      # per epoch, (M,) lists
    best_val_acc: list = field(default_factory=list)
    best_epoch: list = field(default_factory=list)
    epochs_run: int = 0


class BatchSource:
    """Training batches as a pure function of (step, generator): ``(spikes (B,T,I), labels (B,))``.

    With ``train_set='fixed'`` a set of ``batch_size * batches_per_epoch`` samples is made once
    from ``data_generator`` and visited in a fresh random order every epoch (the source's
    scheme); with ``'fresh'`` every step draws new samples. Under ``per_dataset`` phase
    offsets the training stream has one tone phase, drawn once.
    """

    def __init__(self, task: IPDTask, spec: DataSpec, data_generator: torch.Generator):
        self.task, self.spec = task, spec
        self.fixed = None
        self.offset = random_phase_offsets(1, "per_dataset", data_generator)
        if spec.train_set == "fixed":
            n = spec.batch_size * spec.batches_per_epoch
            ipd = random_ipds(n, data_generator)
            off = (self.offset.expand(n) if spec.phase_offset == "per_dataset"
                   else random_phase_offsets(n, "per_sample", data_generator))
            self.fixed = (ipd_spikes(ipd, off, task, data_generator), discretise(ipd, task.n_classes))
        elif spec.train_set != "fresh":
            raise ValueError(f"train_set must be fresh or fixed, got {spec.train_set!r}")

    def batch(self, step: int, generator: torch.Generator, epoch_generator: torch.Generator | None = None):
        spec, task = self.spec, self.task
        if self.fixed is not None:
            per = spec.batches_per_epoch
            epoch, k = divmod(step, per)
            g = epoch_generator or generator
            perm = torch.randperm(self.fixed[0].shape[0], generator=g, device=g.device)
            idx = perm[k * spec.batch_size:(k + 1) * spec.batch_size].to(self.fixed[0].device)
            return self.fixed[0][idx], self.fixed[1][idx]
        ipd = random_ipds(spec.batch_size, generator)
        off = (self.offset.expand(spec.batch_size) if spec.phase_offset == "per_dataset"
               else random_phase_offsets(spec.batch_size, "per_sample", generator))
        return ipd_spikes(ipd, off, task, generator), discretise(ipd, task.n_classes)


def accuracy_per_model(model: DaleSNN, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Fraction correct per model, ``(M,)``."""
    est = evaluate_logits(model, x).argmax(-1)
    return (est == labels[None]).float().mean(1)


def train_networks(model: DaleSNN, task: IPDTask, spec: DataSpec, val: tuple[torch.Tensor, torch.Tensor],
                   *, epochs: int, lr: float = 0.01, patience: int = 0, keep: str = "best", seed: int = 0,
                   progress=None) -> TrainHistory:
    """Train all M networks of ``model`` together; on return each holds its best-val weights
    (``keep='best'``) or its weights after the last epoch (``keep='final'``).

    ``val``: ``(spikes (N, T, I), labels (N,))``. ``patience`` 0 never stops early; it must
    be 0 with ``keep='final'``.
    ``progress``: optional callable ``(epoch, history)`` called after each epoch.
    """
    if keep not in ("best", "final"):
        raise ValueError(f"keep must be best or final, got {keep!r}")
    if keep == "final" and patience:
        raise ValueError("early stopping (patience > 0) needs keep='best'")
    dev = model.w1.device
    data_gen = torch.Generator(device=dev).manual_seed(seed)
    source = BatchSource(task, spec, data_gen)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    hist = TrainHistory()
    n_m = model.n_models
    best_acc = torch.full((n_m,), -1.0, device=dev)
    since = torch.zeros(n_m, dtype=torch.long, device=dev)
    best_w1, best_w2 = model.w1.detach().clone(), model.w2.detach().clone()
    best_epoch = torch.zeros(n_m, dtype=torch.long, device=dev)
    step_gen = torch.Generator(device=dev)
    for epoch in range(epochs):
        model.train()
        losses = torch.zeros(n_m, device=dev)
        for k in range(spec.batches_per_epoch):
            step = epoch * spec.batches_per_epoch + k
            step_gen.manual_seed(seed * 1_000_003 + step + 1)
            epoch_gen = torch.Generator(device=dev).manual_seed(seed * 7_919 + epoch + 1)
            x, y = source.batch(step, step_gen, epoch_gen)
            logits, _ = model(x)
            loss = nll_loss(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            with torch.no_grad():
                losses += torch.nn.functional.cross_entropy(
                    logits.reshape(-1, logits.shape[-1]), y.repeat(n_m), reduction="none"
                ).view(n_m, -1).mean(1)
        model.eval()
        acc = accuracy_per_model(model, *val)
        better = acc > best_acc
        with torch.no_grad():
            best_w1[better] = model.w1[better]
            best_w2[better] = model.w2[better]
        best_epoch[better] = epoch + 1
        best_acc = torch.where(better, acc, best_acc)
        since = torch.where(better, torch.zeros_like(since), since + 1)
        hist.train_loss.append((losses / spec.batches_per_epoch).tolist())
        hist.val_acc.append(acc.tolist())
        hist.epochs_run = epoch + 1
        if progress is not None:
            progress(epoch, hist)
        if patience and bool((since >= patience).all()):
            break
    if keep == "best":
        with torch.no_grad():
            model.w1.copy_(best_w1)
            model.w2.copy_(best_w2)
    hist.best_val_acc = best_acc.tolist()
    hist.best_epoch = best_epoch.tolist()
    return hist


def validation_set(task: IPDTask, n: int, phase_offset: str, seed: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """A held-out set ``(spikes (n, T, I) bool, labels (n,))`` from its own seed."""
    g = torch.Generator(device=device).manual_seed(seed)
    ipd, x = make_dataset(n, task, phase_offset, g)
    return x, discretise(ipd, task.n_classes)
