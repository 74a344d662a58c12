"""CordsNet suite: the published model, its initialisation pipeline (or direct training),
eigen-analysis, response dynamics, robustness, and recordings comparable with V1.

Stages: train (phases ``cnn``, ``inversion``, ``linear``, ``anneal``, ``finetune`` of
:mod:`cordsnet.pipeline`, or ``finetune`` alone with ``pipeline: direct``), --viz (stimuli,
input filters), --gen_exp_stim / --experiment (gratings with an ``orientation`` coordinate,
or the user's own images, recorded per area over the time course), --analyze (accuracy over
time, dynamics, spectra, Jacobian, robustness, trajectories; see :mod:`cordsnet.probes`).
"""
from __future__ import annotations

from contextlib import nullcontext
from functools import cached_property
from pathlib import Path

import numpy as np
import torch

from core.checkpoint import safe_load
from core.errors import UserError
from core.runtime import derive_seed
from core.suite import Labelled, ModelSuite, Phase, StimulusSet, analysis, visualization
from cordsnet import data as D
from cordsnet import pipeline as P
from cordsnet import probes, stimuli
from cordsnet.cnn import CordsCNN, fold_batchnorm, resnet18_to_cnn
from cordsnet.config import RESNET18_FILE, CordsNetConfig
from cordsnet.model import CordsNet


def resnet18_cache_path() -> Path:
    """Where torchvision keeps its ImageNet ResNet-18 weights: torch's hub cache
    (``TORCH_HOME/hub/checkpoints``, by default ``~/.cache/torch/hub/checkpoints``)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / RESNET18_FILE


class CordsNetSuite(ModelSuite):
    name = "cordsnet"
    Config = CordsNetConfig
    description = "CordsNet: continuous-time convolutional RNN of the ventral stream (R2-R8)"
    selection_metric = None  # phases differ in what 'accuracy' measures; later stages use the final weights
    phase_keys = {**dict.fromkeys(("cnn_lr", "cnn_momentum", "cnn_weight_decay", "cnn_warmup"), ("cnn",)),
                  **dict.fromkeys(("inversion_lr", "inversion_clip", "inversion_penalty"), ("inversion",)),
                  **dict.fromkeys(("anneal_start", "anneal_levels"), ("anneal",)),
                  **dict.fromkeys(("rnn_lr", "rnn_clip"), ("linear", "anneal", "finetune"))}

    # --- set-up ---------------------------------------------------------------
    def prepare(self) -> None:
        cfg = self.cfg
        if cfg.dataset != "digits":  # a missing real set is a one-line message before anything is written,
            # asked for only by the stages that read it (own images or gratings need no data set)
            train = "train" in self.ctx.stages and cfg.phase_steps_total
            if train or self._test_set_needed():
                self._test_set  # noqa: B018
            if train:
                self._train_source  # noqa: B018
        if "train" in self.ctx.stages:
            cfg.check_world_size(self.ctx.env.world_size)
        if cfg.pretrained and not Path(cfg.pretrained).is_file():
            raise UserError(f"--pretrained: not found: {cfg.pretrained}")
        if cfg.pretrained:
            self._published_state()
        start = self._resnet18_start()
        if start and not Path(start).is_file():
            if cfg.resnet18_weights == "torchvision":
                raise UserError(
                    f"--resnet18_weights torchvision: torchvision's ImageNet ResNet-18 weights are not at {start} "
                    "(torch's hub cache, TORCH_HOME/hub/checkpoints); fetch them once on a machine with internet: "
                    "python -c \"import torchvision; torchvision.models.resnet18(weights='IMAGENET1K_V1')\" "
                    "(or copy the file there), or start the CNN from random weights with --resnet18_weights none")
            raise UserError(f"--resnet18_weights: not found: {start}")
        if start:
            self._resnet18_mapped()
        if cfg.stimulus_folder:
            stimuli.folder_images(cfg.stimulus_folder, cfg.input_size, cfg.in_channels, check_only=True,
                                  fit=cfg.own_image_fit)

    #: analyses and visualisations that read the test set (the others need no data set)
    TEST_SET_ANALYSES = ("accuracy_time", "dynamics", "jacobian", "robustness", "trajectories")
    TEST_SET_VIZ = ("stimuli",)

    def _test_set_needed(self) -> bool:
        """Whether a selected visualisation or analysis reads the test set."""
        ctx = self.ctx
        viz = "viz" in ctx.stages and any(n in self.TEST_SET_VIZ for n in (ctx.viz_names or self.TEST_SET_VIZ))
        ana = "analyze" in ctx.stages and any(n in self.TEST_SET_ANALYSES
                                              for n in (ctx.analysis_names or self.TEST_SET_ANALYSES))
        return viz or ana

    def _published_state(self) -> dict:
        """The user's published-format state dict (``cordsnetr8.pth``), loaded safely."""
        from cordsnet.weights import published_state

        cfg = self.cfg
        return published_state(safe_load(cfg.pretrained, "--pretrained file"),
                               CordsNet.from_config(cfg).state_dict(), cfg.pretrained,
                               f"CordsNet R{cfg.depth} ({cfg.dataset}, {cfg.input_size} px)")

    def _resnet18_start(self) -> str | None:
        """The ResNet-18 file the phase-1 CNN starts from, or None (random weights).

        A file named by ``resnet18_weights`` is used whenever the pipeline has the CNN;
        ``torchvision`` (published) means torchvision's ImageNet file in torch's hub cache, at
        depth 8 only, and only when this invocation trains phase 1 from its start (a resumed
        run's checkpoint already holds the CNN, and later stages do not need it)."""
        cfg = self.cfg
        if cfg.resnet18_weights in ("", "none") or cfg.pipeline != "init":
            return None
        if cfg.resnet18_weights != "torchvision":
            return cfg.resnet18_weights
        run = self.ctx.run
        resumed = run is not None and Path(run.last_checkpoint).exists()
        if cfg.depth != 8 or "train" not in self.ctx.stages or "cnn" not in cfg.phase_steps or resumed:
            return None
        return str(resnet18_cache_path())

    def _resnet18_mapped(self) -> dict:
        """The ResNet-18 start (:meth:`_resnet18_start`) loaded safely and mapped onto the CNN
        (checked in prepare)."""
        if "_resnet18" not in self.__dict__:
            cfg = self.cfg
            path = self._resnet18_start()
            res = safe_load(path, "--resnet18_weights file")
            if not isinstance(res, dict) or not all(isinstance(v, torch.Tensor) for v in res.values()):
                raise UserError(f"--resnet18_weights: {path} is not a state dict of tensors "
                                "(torchvision's resnet18 weights file)")
            try:
                mapped = resnet18_to_cnn(res, in_channels=cfg.in_channels, n_classes=cfg.n_classes)
            except (KeyError, ValueError, RuntimeError, IndexError) as exc:
                raise UserError(f"--resnet18_weights: {path} does not look like ResNet-18 weights "
                                f"({type(exc).__name__}: {str(exc)[:200]})") from None
            probe = CordsCNN(cfg.depth, cfg.in_channels, cfg.n_classes, cfg.input_size).state_dict()
            bad = [f"{k} {tuple(v.shape)} vs {tuple(probe[k].shape)}" for k, v in mapped.items()
                   if k not in probe or probe[k].shape != v.shape]
            if bad:
                raise UserError(f"--resnet18_weights: {path} does not fit the depth-8 CNN: "
                                f"{'; '.join(bad[:3])}{f' and {len(bad) - 3} more' if len(bad) > 3 else ''}")
            self.__dict__["_resnet18"] = mapped
        return self.__dict__["_resnet18"]

    def weights_source(self) -> str | None:
        """``--pretrained``: the file's resolved path and SHA-256."""
        if not self.cfg.pretrained:
            return None
        from core.integrity import file_digest

        path = Path(self.cfg.pretrained).resolve()
        return f"{path} (--pretrained, sha256 {file_digest(path)[1]})"

    def build(self):
        cfg = self.cfg
        torch.manual_seed(cfg.seed)
        rnn = CordsNet.from_config(cfg)
        if cfg.pretrained:
            rnn.load_state_dict(self._published_state())
        modules = {"rnn": rnn.to(self.device)}
        if cfg.pipeline == "init":  # the equivalent CNN (phases 1-2; kept for the robustness comparison)
            cnn = CordsCNN(cfg.depth, cfg.in_channels, cfg.n_classes, cfg.input_size)
            if self._resnet18_start():
                cnn.load_state_dict({**cnn.state_dict(), **self._resnet18_mapped()})
            modules["cnn"] = cnn.to(self.device)
        return modules

    # --- data -------------------------------------------------------------------
    @cached_property
    def _train_source(self):
        cfg = self.cfg
        if cfg.dataset == "digits":
            x, y = D.embedded_digits(cfg.input_size, train=True)
            return x.to(self.device), y.to(self.device)
        return D.real_dataset(cfg.dataset, self.ctx.data_root, cfg.input_size, True, cfg.augment,
                              self.ctx.download)

    @cached_property
    def _test_source(self):
        """The real test set with the published test transform, indexable by ``(seed, index)``."""
        cfg = self.cfg
        return D.real_dataset(cfg.dataset, self.ctx.data_root, cfg.input_size, False, False, self.ctx.download)

    @cached_property
    def _test_set(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``n_eval`` test images ``(n, C, S, S)`` (test transform) and labels ``(n,)``: the
        embedded set's first, a fixed random subset of a real set (the evaluations' subset)."""
        cfg = self.cfg
        if cfg.dataset == "digits":
            x, y = D.embedded_digits(cfg.input_size, train=False)
            return x[: cfg.n_eval].to(self.device), y[: cfg.n_eval].to(self.device)
        ds = self._test_source
        n = min(cfg.n_eval, len(ds))
        order = torch.randperm(len(ds), generator=torch.Generator().manual_seed(0))[:n]
        xs, ys = zip(*(ds[(0, int(i))] for i in order))
        return torch.stack(xs).to(self.device), torch.as_tensor(ys).to(self.device)

    def _full_test_batches(self):
        """Every test image once, in order, ``batch_size`` at a time: ``(B, C, S, S)``, ``(B,)``
        on the device (a real set streamed through ``workers`` loader processes)."""
        cfg = self.cfg
        if cfg.dataset == "digits":
            x, y = D.embedded_digits(cfg.input_size, train=False)
            for xb, yb in zip(x.split(cfg.batch_size), y.split(cfg.batch_size)):
                yield xb.to(self.device), yb.to(self.device)
            return
        ds = self._test_source
        keys = [[(0, i) for i in range(a, min(a + cfg.batch_size, len(ds)))]
                for a in range(0, len(ds), cfg.batch_size)]  # seed 0: the test transform draws nothing
        loader = torch.utils.data.DataLoader(ds, batch_sampler=keys, num_workers=cfg.workers,
                                             pin_memory=self.device.type == "cuda")
        for xb, yb in loader:
            yield xb.to(self.device, non_blocking=True), torch.as_tensor(yb).to(self.device)

    def _loader(self, step):
        """Worker-backed batches of ``step``'s phase from ``step.phase_step`` on (pure functions of
        the phase and its step: each phase runs its own seeded epochs)."""
        cfg = self.cfg
        src = self._train_source
        sampler = D.StepBatches(len(src), cfg.rank_batch(step.phase, step.world_size),
                                derive_seed(cfg.seed, step.phase),
                                step.phase_step, cfg.phase_steps[step.phase], step.rank, step.world_size)
        loader = torch.utils.data.DataLoader(src, batch_sampler=sampler, num_workers=cfg.workers,
                                             pin_memory=self.device.type == "cuda")
        return iter(loader)

    def training_batch(self, step):
        cfg = self.cfg
        src = self._train_source
        if isinstance(src, tuple):  # embedded tensors
            idx = D.epoch_batch_indices(len(src[1]), cfg.rank_batch(step.phase, step.world_size), step.phase_step,
                                        derive_seed(cfg.seed, step.phase), step.rank, step.world_size)
            images, labels = src[0][idx.to(src[0].device)], src[1][idx.to(src[0].device)]
        else:
            key = (step.phase, step.phase_step)
            if getattr(self, "_next", None) != key:
                self._iter = self._loader(step)
            images, labels = next(self._iter)
            self._next = (step.phase, step.phase_step + 1)
            images, labels = images.to(self.device, non_blocking=True), labels.to(self.device)
        if D.uses_mixing(cfg.dataset, cfg.mix):  # every phase, the inversion included (as published:
            # its loss reads no labels, but it fits the fixed points of mixed images)
            images, labels, _ = D.mix_batch(images, labels, cfg.n_classes, step.generator)
        return images, labels

    # --- training -----------------------------------------------------------------
    def phases(self):
        """The pipeline's phases. As published, phase 1 makes a new SGD at each learning-rate
        stage and phase 4 a new AdamW at each slope level (moments reset); every phase ends
        with an evaluation on the whole test set."""
        cfg = self.cfg
        clip = {"cnn": None, "inversion": cfg.inversion_clip}
        restarts = {"cnn": P.cnn_stage_starts(cfg.cnn_steps),
                    "anneal": P.anneal_level_starts(cfg.anneal_steps, cfg.anneal_levels)}
        return [Phase(name, steps, grad_clip=clip.get(name, cfg.rnn_clip), restarts=restarts.get(name, ()),
                      evaluate_at_end=True)
                for name, steps in cfg.phase_steps.items()]

    @cached_property
    def _folded(self):
        cnn = self._modules["cnn"]
        cnn.eval()
        return fold_batchnorm(cnn)

    def begin_phase(self, modules, phase):
        self._modules = modules
        if phase.name == "inversion":  # 1b: fold the CNN's batch norms, carry its layers over
            self.__dict__.pop("_folded", None)
            P.carry_folded_weights(modules["rnn"], self._folded)

    def _trainable(self, modules, phase):
        rnn = modules["rnn"]
        if phase.name == "cnn":
            return list(modules["cnn"].parameters())
        if phase.name == "inversion":
            return [p for n, p in rnn.named_parameters() if n.startswith(("area_conv.", "conv_bias."))]
        return list(rnn.parameters())

    def make_optimizer(self, modules, phase):
        self._modules = modules
        cfg = self.cfg
        train = self._trainable(modules, phase)
        ids = {id(p) for p in train}
        for m in modules.values():
            for p in m.parameters():
                p.requires_grad_(id(p) in ids)
        if phase.name == "cnn":
            return torch.optim.SGD(train, lr=cfg.cnn_lr, momentum=cfg.cnn_momentum,
                                   weight_decay=cfg.cnn_weight_decay)
        lr = cfg.inversion_lr if phase.name == "inversion" else cfg.rnn_lr
        return torch.optim.AdamW(train, lr=lr)

    def learning_rate(self, phase, phase_step):
        if phase.name == "cnn":
            return P.cnn_learning_rate(phase_step, phase.steps, self.cfg.cnn_lr, self.cfg.cnn_warmup)
        return None

    def slope(self, phase: str, phase_step: int) -> float:
        """Within-area slope of ``phase`` at ``phase_step`` (1 linear ... 0 relu)."""
        if phase in ("linear", "inversion"):  # the inversion fits the linear RNN
            return 1.0
        if phase == "anneal":
            return P.anneal_slope(phase_step, self.cfg.anneal_steps, self.cfg.anneal_start, self.cfg.anneal_levels)
        return 0.0

    def autocast(self):
        """The forward's precision (``precision``): bfloat16 autocast, or nothing for fp32."""
        if self.cfg.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return nullcontext()

    def loss(self, modules, batch, step):
        with self.autocast():
            loss, metrics = self._loss(modules, batch, step)
        return loss.float(), metrics

    def _loss(self, modules, batch, step):
        cfg = self.cfg
        images, labels = batch
        self._modules = modules
        if step.phase == "cnn":
            loss, acc = P.cnn_loss(modules["cnn"], images, labels)
            return loss, {"accuracy": acc.detach()}
        rnn = modules["rnn"]
        if step.phase == "inversion":
            out = P.inversion_loss(rnn, self._folded, images, penalty=cfg.inversion_penalty)
            return out.loss, {"fixed_point_error": out.error.mean(), "neumann_tail": out.penalty.mean()}
        rnn.slope = self.slope(step.phase, step.phase_step)
        linear = step.phase == "linear"
        out = P.course_loss(rnn, images, labels,
                            blank_steps=cfg.blank_steps if (not linear or cfg.linear_blank) else 0,
                            stimulus_steps=cfg.stimulus_steps,
                            post_blank_steps=0 if linear else cfg.post_blank_steps,
                            loss_steps=cfg.loss_steps, spont_steps=cfg.spont_steps,
                            spont_weight=0.0 if linear else cfg.spont_weight)
        return out.loss, {"accuracy": out.accuracy.detach(), "task_loss": out.task,
                          "spontaneous_mse": out.spontaneous, "slope": torch.tensor(rnn.slope)}

    def evaluate(self, modules, step):
        """Test accuracy (in this run's ``precision``); see :meth:`_evaluate`."""
        with self.autocast():
            return self._evaluate(modules, step)

    def _evaluate(self, modules, step):
        """Test accuracy. At the end of each phase on the WHOLE test set (``test_accuracy_full``:
        the RNN at the end of the image, from the inversion on -- the inversion's end is the
        accuracy "right after the inversion"; ``cnn_test_accuracy_full``: the CNN, phases 1-2;
        ``n_test`` images); in between on the ``n_eval`` images of the subset
        (``accuracy_subset``, ``cnn_accuracy_subset``, ``n_eval``). ``..._step/TTTT``: the RNN's
        accuracy after course step ``TTTT``; ``evaluated_on`` says which set each row used."""
        cfg = self.cfg
        full = step.phase_step + 1 >= cfg.phase_steps.get(step.phase, 0)
        if full:
            batches, name, cnn_name, count = self._full_test_batches(), "test_accuracy_full", \
                "cnn_test_accuracy_full", "n_test"
        else:
            images, labels = self._test_set
            batches, name, cnn_name, count = zip(images.split(cfg.batch_size), labels.split(cfg.batch_size)), \
                "accuracy_subset", "cnn_accuracy_subset", "n_eval"
        use_cnn = step.phase in ("cnn", "inversion") and "cnn" in modules
        use_rnn = step.phase != "cnn" or "cnn" not in modules
        rnn = modules["rnn"]
        rnn.slope = self.slope(step.phase, step.phase_step)
        course = (cfg.blank_steps, cfg.stimulus_steps, cfg.post_blank_steps)
        n, cnn_hits, rnn_hits = 0, 0, 0
        for x, y in batches:
            n += len(y)
            if use_cnn:
                cnn_hits += int((modules["cnn"](x).argmax(-1) == y).sum())
            if use_rnn:
                rnn_hits = rnn_hits + probes.hits_over_time(rnn, x, y, course)
        rnn.slope = 0.0
        out = {"phase": step.phase, "evaluated_on": "whole test set" if full else "subset (n_eval)", count: n}
        if use_cnn:
            out[cnn_name] = cnn_hits / n
        if use_rnn:
            acc = (rnn_hits.float() / n).cpu().numpy()
            out[name] = float(acc[cfg.blank_steps + cfg.stimulus_steps - 1])
            every = max(1, len(acc) // 20)
            out.update({f"{name}_step/{t:04d}": float(acc[t]) for t in range(0, len(acc), every)})
        return out

    def train_images(self, modules):
        return {}

    # --- visualisations --------------------------------------------------------------
    @visualization("stimuli", "training images and the experiment's gratings at the model's input size")
    def viz_stimuli(self, modules, ctx):
        from cordsnet import plots

        images, labels = self._test_set
        ori = torch.tensor([-67.5, -22.5, 22.5, 67.5])
        grat = stimuli.gratings(ori, torch.zeros(4), self.cfg.input_size, self.cfg.in_channels,
                                self.cfg.grating_cycles, self.cfg.grating_contrast)
        pics = torch.cat([images[:8].cpu(), grat])
        titles = [f"label {int(v)}" for v in labels[:8].cpu()] + [f"{float(o):+.1f} deg" for o in ori]
        return {"stimuli": plots.grid_figure(pics.numpy(), titles, "Test images (first 8, normalised) and "
                                             "gratings at the model's input size")}

    @visualization("filters", "the 64 input-convolution kernels (7 x 7)")
    def viz_filters(self, modules, ctx):
        from cordsnet import plots

        w = modules["rnn"].inp_conv.weight.detach().cpu()
        kind = "RGB" if w.shape[1] == 3 else "channel 0" if w.shape[1] != 1 else "grey"
        return {"filters": plots.grid_figure(
            w.numpy(), [str(i) for i in range(len(w))],
            f"Input-convolution kernels ({len(w)} filters, {w.shape[2]} × {w.shape[3]} px, {kind}; "
            "each scaled to its own range)", cols=8)}

    # --- experiments ---------------------------------------------------------------
    def stimulus_set(self, ctx) -> StimulusSet:
        cfg = self.cfg
        if cfg.stimulus_folder:
            images, names = stimuli.folder_images(cfg.stimulus_folder, cfg.input_size, cfg.in_channels,
                                                  resize=D.eval_resize(cfg.dataset, cfg.input_size),
                                                  fit=cfg.own_image_fit,
                                                  fill=D.channel_stats(cfg.dataset, cfg.input_size)[0])
            return StimulusSet({"image": Labelled(images, ("trial", "channel", "y", "x"))},
                               coords={"file": np.asarray(names, dtype=object),
                                       "index": np.arange(len(names))},
                               attrs={"source": "folder", "folder": str(Path(cfg.stimulus_folder).resolve()),
                                      "own_image_fit": cfg.own_image_fit})
        ori, phase = stimuli.grating_conditions(cfg.n_orientations, cfg.n_phases)
        images = stimuli.gratings(ori, phase, cfg.input_size, cfg.in_channels, cfg.grating_cycles,
                                  cfg.grating_contrast)
        return StimulusSet({"image": Labelled(images, ("trial", "channel", "y", "x"))},
                           coords={"orientation": ori.numpy(), "phase": phase.numpy()},
                           attrs={"source": "gratings", "orientation_units": "degrees",
                                  "cycles_per_image": cfg.grating_cycles, "contrast": cfg.grating_contrast,
                                  "blank_steps": cfg.blank_steps, "stimulus_steps": cfg.stimulus_steps,
                                  "post_blank_steps": cfg.post_blank_steps, "record_stride": cfg.record_stride})

    def stimulus_shapes(self):
        cfg = self.cfg
        return {"image": (cfg.in_channels, cfg.input_size, cfg.input_size)}

    @cached_property
    def _input_stats(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and std ``(C, 1, 1)`` on the device that normalise stimuli like training images."""
        return tuple(t.to(self.device) for t in D.channel_stats(self.cfg.dataset, self.cfg.input_size))

    def record(self, modules, inputs, ctx):
        cfg = self.cfg
        rnn = modules["rnn"]
        rnn.slope = 0.0
        areas = cfg.record_areas or list(range(cfg.depth))
        mean, std = self._input_stats
        out = probes.record_course(rnn, (inputs["image"].float() - mean) / std, areas,
                                   blank_steps=cfg.blank_steps, stimulus_steps=cfg.stimulus_steps,
                                   post_blank_steps=cfg.post_blank_steps, stride=cfg.record_stride,
                                   pool=cfg.record_pool)
        return {**{f"area{a}": Labelled(r, ("trial", "time", "channel", "y", "x")) for a, r in out.rates.items()},
                "logits": Labelled(out.logits, ("trial", "time", "class"))}

    # --- analyses ---------------------------------------------------------------------
    @analysis("accuracy_time", "test accuracy after every step of the time course")
    def accuracy_time(self, modules, ctx):
        return probes.accuracy_time_result(self, modules)

    @analysis("dynamics", "mean rate per area over the course: spontaneous, onset transient, steady state, "
                          "return after the image")
    def dynamics(self, modules, ctx):
        return probes.dynamics_result(self, modules)

    @analysis("spectra", "eigenvalues of every area's recurrent convolution (dense or Arnoldi) against the "
                         "stability boundaries, a per-area verdict (stability.csv: rightmost eigenvalue, "
                         "inside Re λ < 1, margin), and its top eigenvector (power iteration)")
    def spectra(self, modules, ctx):
        return probes.spectra_result(self, modules)

    @analysis("jacobian", "leading eigenvalues of the full nonlinear model's one-step Jacobian at the "
                          "steady state of a test image (matrix-free Arnoldi)")
    def jacobian(self, modules, ctx):
        return probes.jacobian_result(self, modules)

    @analysis("robustness", "accuracy and every area's activation change against input-noise level, with 95 % "
                            "intervals over images, beside the run's trained equivalent CNN (folded) on the same "
                            "noise draws: the paired difference and a verdict per level")
    def robustness(self, modules, ctx):
        return probes.robustness_result(self, modules)

    @analysis("trajectories", "PCA of the last area's states over the course for a few test images")
    def trajectories(self, modules, ctx):
        return probes.trajectories_result(self, modules)

    # checkpoints: nothing outside the modules ------------------------------------------
    def load_state_dict(self, state):
        self.__dict__.pop("_folded", None)

