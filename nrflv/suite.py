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

**Under torchrun** (``W`` processes) ``batch_size`` stays the number of chains of an update;
rank ``q`` runs chains ``q b .. (q+1) b - 1``, ``b = batch_size / W`` (a batch that does not
divide is refused). Every random number of an update is drawn for the whole batch from one
generator seeded by (seed, step) -- the one a single process uses -- and each rank takes its
chains' share (:class:`nrflv.sghmc.SGHMC` ``chains``, :meth:`ReplayBuffer.sample` ``chains``);
the replay buffer is sharded by slot (:mod:`nrflv.replay`). So chain ``j`` follows the same
trajectory on 1, 2 or 4 processes. The loss sums energies over all chains, and its square
terms ``E+^2`` are of the global sums, so each rank backpropagates
``W [e+_q - e-_q + 2 c (E+ e+_q + E- e-_q)] + init_loss_q`` (``e_q`` its chains' energies,
``E`` the global sums all-reduced without gradient, ``init_loss_q`` the initialiser's MSE, a
mean over its chains); DDP averages the ranks' gradients, which gives exactly the gradient of
the single-process loss. The loss and metrics logged are the global ones.
"""
from __future__ import annotations

from functools import cached_property

import torch
import torch.nn.functional as F

from core.data import epoch_batch_indices, load_real, natural_patches, tensors_of
from core.errors import UserError
from core.runtime import all_reduce_mean, all_reduce_sum, derive_seed, generator as seeded_generator
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
        world = self.ctx.env.world_size
        if world > 1 and self.cfg.batch_size % world:
            raise UserError(f"--batch_size {self.cfg.batch_size} (chains per update, all ranks together) does not "
                            f"divide between {world} processes; use a multiple of {world}")

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
        env = self.ctx.env
        return ReplayBuffer([tuple(s) for s in self.arch.layers], capacity=self.cfg.buffer_size,
                            sample_buffer_prob=self.cfg.sample_buffer_prob, device=self.device,
                            shard=(env.rank, env.world_size))

    @property
    def chains(self) -> tuple[int, int]:
        """``(first, stop)``: this rank's chains of the ``batch_size`` chains of an update."""
        env = self.ctx.env
        share = self.cfg.batch_size // env.world_size
        return env.rank * share, (env.rank + 1) * share

    def chain_generator(self, step) -> torch.Generator:
        """The generator of an update's chains: the step's own in one process, and the same one
        (rank 0's seed) on every rank under torchrun, each rank taking its chains' share."""
        if step.world_size == 1:
            return step.generator
        return seeded_generator(derive_seed(self.cfg.seed, "step", step.step, 0), self.device)

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

    def sampler(self, states, generator, fixed=None, chains=None) -> SGHMC:
        cfg = self.cfg
        return SGHMC(states, generator=generator, method=cfg.state_optimizer,
                     sampling_step_size=cfg.sampling_step_size, momentum_param=cfg.momentum_param,
                     num_burn_in_steps=cfg.num_burn_in_steps, min_sq_sigma=cfg.min_sq_sigma,
                     max_sq_sigma=cfg.max_sq_sigma if len(cfg.max_sq_sigma) > 1 else cfg.max_sq_sigma[0],
                     sigma=cfg.sigma, scale_grad=cfg.scale_grad, non_diag_inv_mass=cfg.non_diag_inv_mass,
                     fixed=fixed, clip_grad_norm=cfg.clip_state_grad_norm if cfg.clip_grad else None,
                     chains=chains, reduce=None if chains is None else self._sum_over_ranks)

    def _sum_over_ranks(self, t: torch.Tensor) -> torch.Tensor:
        """The sum of a tensor over the ranks (the state-gradient clipping norm of all chains)."""
        return all_reduce_sum(t, self.ctx.env)

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
        idx = epoch_batch_indices(len(self._images), cfg.batch_size // step.world_size, step.step, cfg.seed,
                                  step.rank, step.world_size)
        return self._images[idx.to(self.device)]

    def positive_phase(self, modules, images, generator, chains=None):
        """Latent states for ``images`` after ``num_it_pos`` steps with the image clamped; also
        the initialiser's prediction (with its graph) for its own update. ``chains=(first,
        total)``: ``images`` are chains ``first ..`` of a batch of ``total`` (random draws made
        for all of them)."""
        energy = modules["energy"]
        n = images.shape[0]
        first, total = chains or (0, n)
        if "initter" in modules:
            predicted = modules["initter"](images)
            latent = [p.detach().clamp(-1, 1) for p in predicted]
        else:
            predicted = None
            latent = [s[first:first + n] for s in uniform_states(self.arch, total, generator, self.device)[1:]]
        states = self.layout([images.clone()] + [s.clone() for s in latent])
        latent_layers = list(range(1, self.arch.n_layers))
        sampler = self.sampler(states, generator, fixed=[True] + [False] * len(latent_layers),
                               chains=None if chains is None else (first, total))
        grad = self.state_gradient(energy).grad
        sampler.run(lambda s: grad(s, wrt=latent_layers), self.cfg.num_it_pos)
        return states, predicted, sampler

    def negative_phase(self, modules, n, generator, num_steps=None, chains=None):
        """``n`` chains (or chains ``first .. first+n-1`` of ``total``, ``chains=(first, total)``)
        from the replay buffer and fresh noise, after ``num_steps`` free steps."""
        energy = modules["energy"]
        first, total = chains or (0, n)
        drawn = self.buffer.sample(total, generator, device=self.device, chains=(first, first + n))
        states = self.layout([s.to(self.device) for s in drawn])
        sampler = self.sampler(states, generator, chains=None if chains is None else (first, total))
        sampler.run(self.state_gradient(energy).grad, num_steps or self.cfg.num_it_neg)
        return states, sampler

    def loss(self, modules, batch, step):
        cfg = self.cfg
        energy = modules["energy"]
        num_it_neg = cfg.num_it_neg
        if cfg.neg_it_schedule:
            num_it_neg = self.neg_schedule.new_epoch(step.step * cfg.batch_size // len(self._images))
        gen, env = self.chain_generator(step), self.ctx.env
        first, stop = self.chains
        chains = (first, cfg.batch_size) if env.distributed else None
        pos, predicted, pos_sampler = self.positive_phase(modules, batch, gen, chains)
        neg, neg_sampler = self.negative_phase(modules, batch.shape[0], gen, num_it_neg, chains)
        self.buffer.push([s.detach() for s in neg])
        e_pos, e_neg = energy([s.detach() for s in pos]), energy([s.detach() for s in neg])
        c = cfg.l2_reg_energy_param
        init_loss = None
        if predicted is not None:  # its parameters are disjoint from the energy's: its own SGD step
            init_loss = sum(F.mse_loss(p, t.detach()) for p, t in zip(predicted, pos[1:]))
        if not env.distributed:
            loss = e_pos - e_neg + c * (e_pos ** 2 + e_neg ** 2)
            E_pos, E_neg, init_value = e_pos.detach(), e_neg.detach(), init_loss
            if init_loss is not None:
                loss = loss + init_loss
        else:  # see the module doc: DDP's mean of these gradients is the single-process gradient
            W = env.world_size
            E_pos, E_neg = (all_reduce_sum(e, env) for e in (e_pos, e_neg))
            share = W * (e_pos - e_neg + 2 * c * (E_pos * e_pos + E_neg * e_neg))
            value = E_pos - E_neg + c * (E_pos ** 2 + E_neg ** 2)
            init_value = None if init_loss is None else all_reduce_mean(init_loss, env)
            if init_loss is not None:
                share, value = share + init_loss, value + init_value
            loss = share + (value - share).detach()  # the global loss's value, this share's gradient
        metrics = {"pos_energy": E_pos, "neg_energy": E_neg, "ml_loss": E_pos - E_neg,
                   "num_it_neg": torch.tensor(float(num_it_neg))}
        if cfg.neg_it_schedule:
            self.neg_schedule.record(float(E_pos), float(E_neg))
        if init_value is not None:
            metrics["initter_loss"] = init_value.detach()
        for i, (sp, sn) in enumerate(zip(pos, neg)):  # chain means: equal shares, so the mean of the ranks'
            metrics[f"pos_state_norm/{i}"] = all_reduce_mean(sp.flatten(1).norm(dim=1).mean(), env)
            metrics[f"neg_state_norm/{i}"] = all_reduce_mean(sn.flatten(1).norm(dim=1).mean(), env)
        for i, (m, v) in enumerate(zip(neg_sampler.inverse_mass(), neg_sampler.noise_variance())):
            if m is not None:
                metrics[f"sampler_inv_mass_mean/{i}"] = all_reduce_mean(m.mean(), env)
                metrics[f"sampler_sq_sigma_mean/{i}"] = all_reduce_mean(v.mean(), env)
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
