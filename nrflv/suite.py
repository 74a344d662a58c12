"""NRFLV suite: train the energy model by positive and negative SGHMC phases, and look at what
it has learnt.

One training step (one parameter update, as in the source):

1. positive phase: latent states start where the initialiser ``ff_init`` puts them for the
   batch's images (or U[-1, 1]); the image is clamped and ``num_it_pos`` SGHMC steps descend
   ``E``; the initialiser then takes one SGD step towards where the phase ended (MSE);
2. negative phase: ``sample_buffer_prob`` of the chains come from the replay buffer of final
   negative states, the rest fresh from U[-1, 1]; ``num_it_neg`` free SGHMC steps on every
   layer; the final states go back into the buffer;
3. the loss ``E+ - E- + l2_reg_energy_param (E+^2 + E-^2)`` (energies summed over units and
   chains, as in the source) is minimised by Adam (beta = (0, 0.999)), with the source's
   element-wise clipping ``|grad| <= 3 sqrt(v_hat) + 0.1`` (``adam_grad_clip``, always on in the
   source). ``clip_grad`` is the source's other clip: the state gradients of every sampler step
   scaled to a total 2-norm of at most ``clip_state_grad_norm`` (off in the thesis command).

Images enter the model in ``image_range`` (default [0, 1], torchvision's ``ToTensor`` range, as
in the source); the sampler keeps every layer, the image included, in [-1, 1].

Sampling computes gradients with respect to the states only; the sampler is
:class:`nrflv.sghmc.SGHMC`, the energy :class:`nrflv.energy.NRFEnergy`. The replay buffer is
saved beside the checkpoints as hashed chunk files (``RUN/replay/``), and each checkpoint
holds only its small manifest, so a resumed run continues exactly.
"""
from __future__ import annotations

from functools import cached_property

import torch
import torch.nn.functional as F

from core.data import epoch_batch_indices, load_real, natural_patches, tensors_of
from core.errors import UserError
from core.suite import Animation, ModelSuite, visualization
from nrflv import plots
from nrflv.architecture import get_architecture
from nrflv.config import NRFLVConfig
from nrflv.energy import NRFEnergy, uniform_states
from nrflv.gradient import StateGradient
from nrflv.nets import FFInit
from nrflv.suite_experiments import ExperimentsMixin
from nrflv.replay import ReplayBuffer
from nrflv.schedule import NegItSchedule
from nrflv.sghmc import SGHMC
from nrflv.viz import channel_energy_grad


class ClippedAdamAndSGD(torch.optim.Optimizer):
    """The two optimisers of an update behind one interface: Adam (beta1 = 0) for the energy
    model, with the source's element-wise gradient clipping, and Nesterov SGD for the
    initialiser. ``param_groups``: ``[energy, initialiser]``, read through to the two optimisers
    (``load_state_dict`` replaces their group dicts, so a copied list would go stale and a rate
    set on it would never reach Adam)."""

    def __init__(self, energy_params, init_params, lr: float, init_lr: float, clip: bool):
        self.adam = torch.optim.Adam(energy_params, lr=lr, betas=(0.0, 0.999))
        self.sgd = torch.optim.SGD(init_params, lr=init_lr, momentum=0.85, nesterov=True) if init_params else None
        self.clip = clip
        self.defaults = {}

    @property
    def param_groups(self) -> list[dict]:
        return self.adam.param_groups + (self.sgd.param_groups if self.sgd else [])

    @property
    def state(self):
        return self.adam.state

    @torch.no_grad()
    def _clip(self) -> None:
        """``grad <- clamp(grad, -b, b)``, ``b = 3 sqrt(v_hat) + 0.1`` (after Adam's first step)."""
        for group in self.adam.param_groups:
            beta2 = group["betas"][1]
            for p in group["params"]:
                state = self.adam.state.get(p)
                if p.grad is None or not state or float(state["step"]) < 1:
                    continue
                bound = 3 * torch.sqrt(state["exp_avg_sq"] / (1 - beta2 ** float(state["step"]))) + 0.1
                p.grad.copy_(torch.maximum(torch.minimum(p.grad, bound), -bound))

    def step(self, closure=None):
        if self.clip:
            self._clip()
        self.adam.step()
        if self.sgd is not None:
            self.sgd.step()

    def zero_grad(self, set_to_none: bool = True):
        self.adam.zero_grad(set_to_none=set_to_none)
        if self.sgd is not None:
            self.sgd.zero_grad(set_to_none=set_to_none)

    def state_dict(self):
        return {"adam": self.adam.state_dict(), "sgd": self.sgd.state_dict() if self.sgd else None}

    def load_state_dict(self, state):
        self.adam.load_state_dict(state["adam"])
        if self.sgd is not None and state.get("sgd") is not None:
            self.sgd.load_state_dict(state["sgd"])


class NRFLVSuite(ExperimentsMixin, ModelSuite):
    name = "nrflv"
    Config = NRFLVConfig
    description = "Neural Random Field with Latent Variables sampled by SGHMC (gamma oscillations in V1)"

    @cached_property
    def arch(self):
        return get_architecture(self.cfg.architecture)

    # --- set-up ---------------------------------------------------------------
    def prepare(self) -> None:
        self._images  # noqa: B018  (a missing data set is one line before anything is written)
        if {"gen_exp_stim", "experiment"} & set(self.ctx.stages):
            self.check_experiment()
            if "gen_exp_stim" in self.ctx.stages:
                self.held_out_images(1)
        if self.cfg.compile == "cuda_graphs" and self.device.type != "cuda":
            raise UserError(f"--compile cuda_graphs needs a CUDA device (this run is on {self.device.type})")
        if self.ctx.env.world_size > 1:
            raise UserError("nrflv trains in one process for now (the replay buffer is not shared between "
                            "ranks); run without torchrun")

    @cached_property
    def _images(self) -> torch.Tensor:
        """Training images ``(n, C, H, W)`` in ``image_range`` on the device."""
        cfg, (c, h, w) = self.cfg, self.arch.layers[0]
        if cfg.dataset == "natural_patches":
            x = natural_patches(cfg.n_images, h, colour=c == 3, seed=cfg.seed, standardise=False)
        else:
            x, _ = tensors_of(load_real(cfg.dataset, self.ctx.data_root, train=True, download=self.ctx.download))
            if x.shape[-2:] != (h, w):
                x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
        return self.to_model_range(x.float().clamp(0, 1)).to(self.device)

    def to_model_range(self, x: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] -> the model's ``image_range`` (same shape)."""
        lo, hi = self.cfg.image_range
        return x * (hi - lo) + lo

    def from_model_range(self, x: torch.Tensor) -> torch.Tensor:
        """The model's ``image_range`` -> [0, 1] (same shape; not clamped)."""
        lo, hi = self.cfg.image_range
        return (x - lo) / (hi - lo)

    def build(self):
        cfg = self.cfg
        torch.manual_seed(cfg.seed)
        energy = NRFEnergy(self.arch, weight_norm=cfg.model_weight_norm).to(self.device)
        if cfg.channels_last:
            energy = energy.to(memory_format=torch.channels_last)
        modules = {"energy": energy}
        if cfg.initializer == "ff_init":
            modules["initter"] = FFInit(self.arch, weight_norm=cfg.initter_network_weight_norm).to(self.device)
        return modules

    @cached_property
    def buffer(self) -> ReplayBuffer:
        return ReplayBuffer([tuple(s) for s in self.arch.layers], capacity=self.cfg.buffer_size,
                            sample_buffer_prob=self.cfg.sample_buffer_prob, device=self.device)

    @cached_property
    def neg_schedule(self) -> NegItSchedule:
        c = self.cfg
        return NegItSchedule(c.num_it_neg, c.neg_it_history, c.neg_it_margin, c.neg_it_cooldown)

    def layout(self, states):
        """The states in the memory format the energy model runs fastest with (same values)."""
        fmt = torch.channels_last if self.cfg.channels_last else torch.contiguous_format
        return [s.contiguous(memory_format=fmt) for s in states]

    def state_gradient(self, energy) -> StateGradient:
        """The sampler's ``dE/ds`` of ``energy`` in this run's ``precision`` and ``compile`` (one
        per energy module, so that a compiled graph is built once)."""
        cache = self.__dict__.setdefault("_state_gradients", {})
        key = id(energy)
        if key not in cache or cache[key].energy is not energy:
            cache[key] = StateGradient(energy, self.cfg.precision, self.cfg.compile)
        return cache[key]

    def sampler(self, states, generator, fixed=None) -> SGHMC:
        cfg = self.cfg
        return SGHMC(states, generator=generator, method=cfg.state_optimizer,
                     sampling_step_size=cfg.sampling_step_size, momentum_param=cfg.momentum_param,
                     num_burn_in_steps=cfg.num_burn_in_steps, min_sq_sigma=cfg.min_sq_sigma,
                     max_sq_sigma=cfg.max_sq_sigma if len(cfg.max_sq_sigma) > 1 else cfg.max_sq_sigma[0],
                     sigma=cfg.sigma, scale_grad=cfg.scale_grad, non_diag_inv_mass=cfg.non_diag_inv_mass,
                     fixed=fixed, clip_grad_norm=cfg.clip_state_grad_norm if cfg.clip_grad else None)

    # --- training -------------------------------------------------------------
    def make_optimizer(self, modules, phase):
        init = list(modules["initter"].parameters()) if "initter" in modules else []
        return ClippedAdamAndSGD(list(modules["energy"].parameters()), init, self.cfg.lr,
                                 self.cfg.initter_network_lr, self.cfg.adam_grad_clip)

    def learning_rate(self, phase, phase_step):
        """Energy model: ``lr * lr_decay_gamma ** epoch`` (epochs of the training images); the
        initialiser keeps its rate."""
        epoch = phase_step * self.cfg.batch_size // len(self._images)
        return [self.cfg.lr * self.cfg.lr_decay_gamma ** epoch, self.cfg.initter_network_lr]

    def training_batch(self, step):
        cfg = self.cfg
        idx = epoch_batch_indices(len(self._images), cfg.batch_size, step.step, cfg.seed, step.rank,
                                  step.world_size)
        return self._images[idx.to(self.device)]

    def positive_phase(self, modules, images, generator):
        """Latent states for ``images`` after ``num_it_pos`` steps with the image clamped; also
        the initialiser's prediction (with its graph) for its own update."""
        energy = modules["energy"]
        if "initter" in modules:
            predicted = modules["initter"](images)
            latent = [p.detach().clamp(-1, 1) for p in predicted]
        else:
            predicted = None
            latent = uniform_states(self.arch, images.shape[0], generator, self.device)[1:]
        states = self.layout([images.clone()] + [s.clone() for s in latent])
        latent_layers = list(range(1, self.arch.n_layers))
        sampler = self.sampler(states, generator, fixed=[True] + [False] * len(latent_layers))
        grad = self.state_gradient(energy).grad
        sampler.run(lambda s: grad(s, wrt=latent_layers), self.cfg.num_it_pos)
        return states, predicted, sampler

    def negative_phase(self, modules, n, generator, num_steps=None):
        energy = modules["energy"]
        states = self.layout([s.to(self.device) for s in self.buffer.sample(n, generator, device=self.device)])
        sampler = self.sampler(states, generator)
        sampler.run(self.state_gradient(energy).grad, num_steps or self.cfg.num_it_neg)
        return states, sampler

    def loss(self, modules, batch, step):
        cfg = self.cfg
        energy = modules["energy"]
        num_it_neg = cfg.num_it_neg
        if cfg.neg_it_schedule:
            num_it_neg = self.neg_schedule.new_epoch(step.step * cfg.batch_size // len(self._images))
        pos, predicted, pos_sampler = self.positive_phase(modules, batch, step.generator)
        neg, neg_sampler = self.negative_phase(modules, batch.shape[0], step.generator, num_it_neg)
        self.buffer.push([s.detach() for s in neg])
        e_pos, e_neg = energy([s.detach() for s in pos]), energy([s.detach() for s in neg])
        loss = e_pos - e_neg + cfg.l2_reg_energy_param * (e_pos ** 2 + e_neg ** 2)
        metrics = {"pos_energy": e_pos.detach(), "neg_energy": e_neg.detach(), "ml_loss": (e_pos - e_neg).detach(),
                   "num_it_neg": torch.tensor(float(num_it_neg))}
        if cfg.neg_it_schedule:
            self.neg_schedule.record(float(e_pos), float(e_neg))
        if predicted is not None:
            init_loss = sum(F.mse_loss(p, t.detach()) for p, t in zip(predicted, pos[1:]))
            loss = loss + init_loss  # its parameters are disjoint from the energy's: its own SGD step
            metrics["initter_loss"] = init_loss.detach()
        for i, (sp, sn) in enumerate(zip(pos, neg)):
            metrics[f"pos_state_norm/{i}"] = sp.flatten(1).norm(dim=1).mean()
            metrics[f"neg_state_norm/{i}"] = sn.flatten(1).norm(dim=1).mean()
        for i, (m, v) in enumerate(zip(neg_sampler.inverse_mass(), neg_sampler.noise_variance())):
            if m is not None:
                metrics[f"sampler_inv_mass_mean/{i}"] = m.mean()
                metrics[f"sampler_sq_sigma_mean/{i}"] = v.mean()
        self._last = {"pos": [s.detach() for s in pos], "neg": [s.detach() for s in neg]}
        return loss, metrics

    def train_images(self, modules):
        last = getattr(self, "_last", None)
        if last is None:
            return {}
        rng = self.cfg.image_range
        return {"positive_image": plots.image_grid(last["pos"][0][:64], value_range=rng),
                "negative_image": plots.image_grid(last["neg"][0][:64], value_range=rng)}

    # replay buffer beside the checkpoints --------------------------------------------------
    def state_dict(self):
        sched = self.neg_schedule.state_dict()
        if self.ctx.run is None:
            return {"replay": None, "neg_it_schedule": sched}
        return {"replay": self.buffer.save(self.ctx.run.path / "replay"), "neg_it_schedule": sched}

    def load_state_dict(self, state):
        if (state or {}).get("neg_it_schedule"):
            self.neg_schedule.load_state_dict(state["neg_it_schedule"])
        manifest = (state or {}).get("replay")
        if manifest is None or self.ctx.run is None:
            return  # a loaded model (new run) starts with an empty replay buffer
        self.buffer.load(manifest, self.ctx.run.path / "replay")

    # --- visualisations -----------------------------------------------------------
    @visualization("standard", "every layer from noise, free SGHMC sampling; image frames over time")
    def viz_standard(self, modules, ctx):
        cfg = self.cfg
        g = torch.Generator(device=self.device).manual_seed(cfg.seed)
        states = self.layout(uniform_states(self.arch, cfg.num_viz_samples, g, self.device))
        sampler = self.sampler(states, g)
        frames = [states[0].detach().clone()]
        energy = modules["energy"]
        for k in range(0, cfg.num_it_viz, cfg.viz_img_logging_step_interval):
            sampler.run(self.state_gradient(energy).grad, min(cfg.viz_img_logging_step_interval, cfg.num_it_viz - k))
            frames.append(states[0].detach().clone())
        steps = [0] + [min(k + cfg.viz_img_logging_step_interval, cfg.num_it_viz)
                       for k in range(0, cfg.num_it_viz, cfg.viz_img_logging_step_interval)]
        rng = cfg.image_range
        return {"standard": plots.frames_figure(frames, steps, value_range=rng),
                "strip": Animation(plots.image_grid(f, value_range=rng).permute(1, 2, 0).numpy() for f in frames),
                "final_samples": plots.grid_figure(states[0], "free samples after %d steps" % cfg.num_it_viz,
                                                   value_range=rng)}

    @visualization("state_maps", "per-layer state maps at the end of a positive phase on training images")
    def viz_state_maps(self, modules, ctx):
        g = torch.Generator(device=self.device).manual_seed(self.cfg.seed)
        images = self._images[: min(4, len(self._images))]
        states, _, _ = self.positive_phase(modules, images, g)
        return {"state_maps": plots.state_maps_figure(states, value_range=self.cfg.image_range)}

    @visualization("channels_energy", "per layer from viz_start_layer, chains descending one channel's own "
                                      "energy: the image each channel expects")
    def viz_channels_energy(self, modules, ctx):
        cfg, energy = self.cfg, modules["energy"]
        figures = {}
        for layer in range(cfg.viz_start_layer, self.arch.n_layers):
            n_ch = min(cfg.viz_channels, self.arch.layers[layer][0])
            per = max(1, cfg.num_viz_samples // n_ch)
            g = torch.Generator(device=self.device).manual_seed(cfg.seed + layer)
            states = self.layout(uniform_states(self.arch, n_ch * per, g, self.device))
            channel = torch.arange(n_ch, device=self.device).repeat_interleave(per)
            sampler = self.sampler(states, g)
            sampler.run(lambda s, L=layer, c=channel: channel_energy_grad(energy, s, L, c), cfg.num_it_viz)
            figures[f"layer{layer}"] = plots.channels_figure(states[0], n_ch, per, layer, cfg.num_it_viz,
                                                             value_range=cfg.image_range)
        return figures
