"""SGHMC (and plain Langevin) on the states of an energy model, apart from the energy.

The sampler moves a list of per-layer state tensors ``s_i`` (each ``(B, *shape_i)``: B
chains) down an energy ``E(s)`` whose gradient the caller supplies, ``grads = [dE/ds_i]``;
it knows nothing else about the model. Every chain, unit and layer is updated at once with
``torch._foreach`` ops and one noise draw per step over a flat buffer holding all layers.

**SGHMC with burn-in adaptation** (Chen et al. 2014; Springenberg et al. 2016, as in the
NRFLV source). Per element, with step ``eta`` (``sampling_step_size``), friction ``alpha``
(``momentum_param``), burn-in ``B`` (``num_burn_in_steps``), gradient-noise estimate ``nu``
(the source's ``sigma``, 0 in its thesis run) and ``eta~ = eta / sqrt(scale_grad)``; state
``tau = g = v = 1``, ``p = 0`` at the start; at step ``t = 1, 2, ...``::

    Minv  = 1 / sqrt(v)                       (from v *before* this step's adaptation)
    if t <= B:   r   = 1 / (tau + 1)          (from tau before the update)
                 tau <- tau + 1 - tau g^2 / v
                 g   <- g - g r + r dE
                 v   <- v - v r + r dE^2
    sigma^2 = clamp(2 eta~^2 alpha Minv - 2 eta~^3 nu Minv^2 - eta~^4,
                    min_sq_sigma, max_sq_sigma)          (per layer bounds)
    p <- p - eta^2 Minv dE - alpha C(p) + sigma xi,      xi ~ N(0, 1)
    s <- s + C(p)
    s <- clamp(s, lo_i, hi_i)

``C`` is the identity, or with ``non_diag_inv_mass`` on a layer with >= 6 channels the
fixed channel-mixing circulant of :func:`inverse_mass_kernel` (a 1x1 convolution: lateral
inhibition of the momentum). The stored ``p`` is the momentum before ``C``, as in the source;
``p`` is the "inhibitory" population of the experiments (``momentum``). After the burn-in
``v`` is frozen, so ``Minv`` and ``sigma`` are computed once and cached (a step then reads
and writes each buffer about eight times).

Note the ``- eta~^4`` term: it corrects for the variance of a *stochastic* gradient, which
an exact ``dE`` does not have, so with wide sigma bounds the stationary law is slightly
colder than ``exp(-E)`` (on the tests' Gaussian: -5 % in variance at eta = alpha = 0.1 with
M = I, -10 % with the burn-in's adapted M; exact figures in the tests). With the source's
bounds ``[9e-5, 1e-4]`` the noise is almost constant and the law is not ``exp(-E)`` at all;
that is the model as published.

Without noise and friction (``alpha = 0``, both sigma bounds 0, ``B = 0`` so ``Minv = 1``)
the step is leapfrog in disguise: with ``u = p / eta`` and time step ``eta``,
``u <- u - eta dE(s)``, ``s <- s + eta C u``, i.e. a kick-drift (symplectic Euler) whose
stored ``u`` is the half-step momentum ``u_{n+1/2}``. It conserves
``H = E(s) + 1/2 u^T C u = E(s) + p^T C p / (2 eta^2)`` with a bounded O(eta) error, and
O(eta^2) when ``H`` is read with the synchronised momentum ``(p_n + p_{n+1}) / 2``.

**Langevin** (``method="langevin"``, the unadjusted Langevin algorithm)::

    s <- clamp(s - eta dE + sd xi),   sd = sqrt(2 eta) by default (temperature 1),

or any per-layer ``langevin_noise_sd`` (the source's ``sigma`` with its ``sgd`` sampler).

**Gradient norm clipping** (``clip_grad_norm``, the source's ``--clip_grad`` with
``--clip_state_grad_norm``; off in its thesis command): before each step the gradients of the
updated layers are scaled by ``min(1, max_norm / (||dE||_2 + 1e-6))``, ``||dE||_2`` the norm over
all updated layers and chains together (as ``torch.nn.utils.clip_grad_norm_`` over the source's
state list; the source's list also holds the clamped image in the positive phase, whose gradient
it counts in that norm: here only updated layers count).

**Fixed layers** (``fixed[i]``, e.g. the image in the positive phase) are not updated,
clamped or given sampler state at all; their gradient may be ``None``.

**Gradients of parameters.** The sampler's own arithmetic runs under ``torch.no_grad`` and
updates the caller's state tensors in place. Computing ``dE`` is the caller's job: use
``torch.autograd.grad(E, states)`` (or an analytic gradient), not ``E.backward()``, so that
no parameter ``.grad`` accumulates over the thousand sampler steps of an update.

**Precision**: the sampler's buffers (``tau, g, v, p``, noise) are float32 at least, also
for bfloat16 / float16 states (float64 states keep float64).

**Randomness** comes only from the ``torch.Generator`` given (on the states' device); the
caller saves its state next to :meth:`SGHMC.state_dict` for an exact resume.

**A share of a larger batch** (``chains=(first, total)``, e.g. one rank's chains under
torchrun; with ``reduce``, a sum over the processes, the clipping norm is over all of them): each step draws the noise of all ``total`` chains, in exactly the layout a sampler
over the whole batch draws it (layer after layer, each ``(total, *shape_i)``), and uses rows
``first .. first+B-1``. With the same generator on every rank, chain ``j`` then receives the
same noise whatever the number of processes: a function of (generator, step, ``j``) only.

The source re-creates its samplers at each phase (burn-in restarts every phase): do the same
with :meth:`SGHMC.reset`.
"""
from __future__ import annotations

import math
from typing import Callable, Mapping, Optional, Sequence, Union

import torch
from torch import Tensor

Grads = Sequence[Optional[Tensor]]
GradFn = Callable[[list], Grads]

#: the source's standard deviations of the circulant Gaussian, by number of channels
INV_MASS_SDS = {32: 0.55, 16: 0.3, 8: 0.1}
#: fewest channels for which the source mixes momentum across channels
MIN_MIXING_CHANNELS = 6
METHODS = ("sghmc", "langevin")
STATE_FORMAT = "nrflv-sghmc-1"


def inverse_mass_kernel(num_channels: int, sd: Optional[float] = None) -> Tensor:
    """The fixed ``(C, C)`` channel-mixing matrix ``K`` (float64) of the non-diagonal mass.

    A Gaussian density of standard deviation ``sd`` (default :data:`INV_MASS_SDS`) evaluated
    at the channel offsets ``d = j - C // 2`` for ``j = 0 .. C-1`` (so ``d`` runs from
    ``-(C // 2)`` to ``C - 1 - C // 2``), rolled so that offset 0 sits at channel 0, with
    densities below 1e-15 set to zero; row ``o`` is that vector rolled by ``o``::

        K[o, c] = pdf(((c - o + C // 2) mod C) - C // 2)

    It acts on a momentum ``p`` of shape ``(B, C, ...)`` as ``(C p)[b, o] = sum_c K[o, c]
    p[b, c]`` (a 1x1 convolution). For C = 32, sd = 0.55: row 0.72535 / 0.13890 / 0.000975 /
    2.5e-7 at offsets 0 / +-1 / +-2 / +-3, row sum about 1.0051 (not normalised).
    """
    if num_channels < 1:
        raise ValueError(f"num_channels must be positive, got {num_channels}")
    if sd is None:
        if num_channels not in INV_MASS_SDS:
            raise ValueError(f"no standard deviation for a circulant inverse mass on {num_channels} "
                             f"channels (the source has {sorted(INV_MASS_SDS)}); pass inv_mass_sds")
        sd = INV_MASS_SDS[num_channels]
    if not sd > 0:
        raise ValueError(f"the circulant's sd must be positive, got {sd}")
    half = num_channels // 2
    offsets = torch.arange(num_channels, dtype=torch.float64) - half
    dens = torch.exp(-0.5 * (offsets / sd) ** 2) / (sd * math.sqrt(2.0 * math.pi))
    dens = torch.roll(dens, half)
    dens[dens < 1e-15] = 0.0
    return torch.stack([torch.roll(dens, o) for o in range(num_channels)])


def clip_by_total_norm(grads: Sequence[Tensor], max_norm: float,
                       reduce: Optional[Callable[[Tensor], Tensor]] = None) -> list[Tensor]:
    """``grads`` scaled by ``min(1, max_norm / (N + 1e-6))``, ``N`` the 2-norm of all of them
    together (new tensors; the inputs are left alone), as ``torch.nn.utils.clip_grad_norm_``.
    ``reduce``: sums a float64 scalar over the processes that share a batch (``N`` is then the
    norm over all their chains)."""
    norms = torch.stack([torch.linalg.vector_norm(g.double()) for g in grads])
    if reduce is None:
        total = torch.linalg.vector_norm(norms)
    else:
        total = reduce((norms * norms).sum()).sqrt()
    coef = (max_norm / (total + 1e-6)).clamp(max=1.0)
    return [g * coef.to(g.dtype) for g in grads]


def _per_layer(value, n: int, name: str) -> list[float]:
    """Broadcast a scalar or a length-1 list to ``n`` layers (as the source's ``nargs='+'``)."""
    vals = [value] if isinstance(value, (int, float)) else list(value)
    if len(vals) == 1:
        vals = vals * n
    if len(vals) != n:
        raise ValueError(f"{name} needs 1 or {n} values (one per layer), got {len(vals)}")
    out = [float(v) for v in vals]
    if not all(math.isfinite(v) for v in out):
        raise ValueError(f"{name} must be finite, got {out}")
    return out


def _clamp_ranges(clamp, n: int) -> list[Optional[tuple[float, float]]]:
    if clamp is None:
        return [None] * n
    if len(clamp) == 2 and all(isinstance(v, (int, float)) for v in clamp):
        clamp = [tuple(clamp)] * n
    clamp = list(clamp)
    if len(clamp) != n:
        raise ValueError(f"clamp needs one (lo, hi) or None per layer ({n}), got {len(clamp)}")
    out = []
    for rng in clamp:
        if rng is None:
            out.append(None)
            continue
        lo, hi = float(rng[0]), float(rng[1])
        if not lo <= hi:
            raise ValueError(f"clamp range needs lo <= hi, got {rng}")
        out.append((lo, hi))
    return out


class SGHMC:
    """SGHMC (or Langevin) sampler over a list of per-layer state tensors (see module doc).

    ``states``: the caller's tensors ``(B, *shape_i)``, updated in place by :meth:`step`.
    Hyperparameters accept a scalar or one value per layer (``min_sq_sigma`` is one value,
    as in the source). ``clamp``: ``(lo, hi)`` for all layers, or per layer ``(lo, hi)`` or
    ``None`` (no clamp). ``fixed``: per-layer bools, layers never updated.
    ``non_diag_inv_mass``: mix momentum across channels (layers with >= 3 dims and >= 6
    channels), ``inv_mass_sds`` overriding the source's sd per channel count.
    ``mean_batch_minv_t``: use each unit's ``Minv`` averaged over the chains (source option).
    """

    def __init__(self, states: Sequence[Tensor], *, generator: torch.Generator,
                 method: str = "sghmc",
                 sampling_step_size: Union[float, Sequence[float]] = 0.1,
                 momentum_param: Union[float, Sequence[float]] = 0.1,
                 num_burn_in_steps: int = 100,
                 min_sq_sigma: float = 9e-5,
                 max_sq_sigma: Union[float, Sequence[float]] = 1e-4,
                 sigma: Union[float, Sequence[float]] = 0.0,
                 scale_grad: float = 1.0,
                 non_diag_inv_mass: bool = False,
                 inv_mass_sds: Optional[Mapping[int, float]] = None,
                 mean_batch_minv_t: bool = False,
                 clamp=(-1.0, 1.0),
                 fixed: Optional[Sequence[bool]] = None,
                 langevin_noise_sd: Union[None, float, Sequence[float]] = None,
                 clip_grad_norm: Optional[float] = None,
                 chains: Optional[tuple[int, int]] = None,
                 reduce: Optional[Callable[[Tensor], Tensor]] = None) -> None:
        states = list(states)
        if not states:
            raise ValueError("SGHMC needs at least one state layer")
        n = len(states)
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        dev, dtype = states[0].device, states[0].dtype
        batch = states[0].shape[0] if states[0].ndim else None
        for i, s in enumerate(states):
            if s.ndim < 2 or s.shape[0] != batch:
                raise ValueError(f"state {i} must be (B, ...) with B = {batch}, got {tuple(s.shape)}")
            if s.device != dev or s.dtype != dtype or not s.is_floating_point():
                raise ValueError(f"state {i} is {s.dtype} on {s.device}; all must be one floating "
                                 f"dtype on one device ({dtype}, {dev})")
        first, total = (0, batch) if chains is None else (int(chains[0]), int(chains[1]))
        if not (0 <= first and first + batch <= total):
            raise ValueError(f"chains=(first, total) must hold the {batch} chains: got {chains}")
        if generator.device.type != dev.type:
            raise ValueError(f"the generator is on {generator.device}, the states on {dev}")
        fixed = [False] * n if fixed is None else [bool(f) for f in fixed]
        if len(fixed) != n:
            raise ValueError(f"fixed needs one bool per layer ({n}), got {len(fixed)}")
        if int(num_burn_in_steps) != num_burn_in_steps or num_burn_in_steps < 0:
            raise ValueError(f"num_burn_in_steps must be a non-negative integer, got {num_burn_in_steps}")
        if not scale_grad > 0:
            raise ValueError(f"scale_grad must be positive, got {scale_grad}")

        self.states = states
        self.generator = generator
        self.method = method
        self.fixed = fixed
        self.active = [i for i in range(n) if not fixed[i]]
        self.eta = _per_layer(sampling_step_size, n, "sampling_step_size")
        self.alpha = _per_layer(momentum_param, n, "momentum_param")
        self.nu = _per_layer(sigma, n, "sigma")
        self.max_sq_sigma = _per_layer(max_sq_sigma, n, "max_sq_sigma")
        self.min_sq_sigma = float(min_sq_sigma)
        self.num_burn_in_steps = int(num_burn_in_steps)
        self.scale_grad = float(scale_grad)
        self.mean_batch_minv_t = bool(mean_batch_minv_t)
        self.clamp = _clamp_ranges(clamp, n)
        if clip_grad_norm is not None and not (math.isfinite(clip_grad_norm) and clip_grad_norm > 0):
            raise ValueError(f"clip_grad_norm must be positive and finite, got {clip_grad_norm}")
        self.clip_grad_norm = None if clip_grad_norm is None else float(clip_grad_norm)
        self.reduce = reduce
        if any(e <= 0 for e in self.eta):
            raise ValueError(f"sampling_step_size must be positive, got {self.eta}")
        if any(a < 0 for a in self.alpha):
            raise ValueError(f"momentum_param must be >= 0, got {self.alpha}")
        if any(not 0 <= self.min_sq_sigma <= m for m in self.max_sq_sigma):
            raise ValueError(f"need 0 <= min_sq_sigma <= max_sq_sigma, got {self.min_sq_sigma}, "
                             f"{self.max_sq_sigma}")
        sd = [math.sqrt(2 * e) for e in self.eta] if langevin_noise_sd is None else \
            _per_layer(langevin_noise_sd, n, "langevin_noise_sd")
        if any(v < 0 for v in sd):
            raise ValueError(f"langevin_noise_sd must be >= 0, got {sd}")
        self.langevin_noise_sd = sd

        # the channel-mixing inverse mass, per layer (None: identity)
        sds = dict(INV_MASS_SDS if inv_mass_sds is None else inv_mass_sds)
        self.mixing: list[Optional[Tensor]] = [None] * n
        if non_diag_inv_mass and method == "sghmc":
            for i, s in enumerate(states):
                ch = s.shape[1]
                if s.ndim >= 3 and ch >= MIN_MIXING_CHANNELS:
                    if ch not in sds:
                        raise ValueError(f"layer {i} has {ch} channels and no circulant sd "
                                         f"(known: {sorted(sds)}); pass inv_mass_sds")
                    self.mixing[i] = inverse_mass_kernel(ch, sds[ch]).to(
                        dev, torch.promote_types(dtype, torch.float32))

        # flat buffers over the active layers, one (B, *shape_i) view per active layer
        self._sizes = [states[i].numel() for i in self.active]
        self._numel = sum(self._sizes)
        # sampler state at >= float32 even for half-precision states
        self._dev, self._dtype = dev, torch.promote_types(dtype, torch.float32)

        def flat():
            return torch.empty(self._numel, device=dev, dtype=self._dtype)

        self._noise = flat()
        # the whole batch's draw when these chains are a share of it (None: the batch is ours)
        self._first, self._total = first, total
        self._draw = None if total == batch else torch.empty(
            self._numel // batch * total, device=dev, dtype=self._dtype)
        if method == "sghmc":
            self._tau, self._g, self._v, self._p = flat(), flat(), flat(), flat()
            self._a = flat()        # scratch: -eta^2 Minv dE + sigma xi - alpha C(p)
            self._z = flat()        # sigma (fixed after the burn-in)
            self._coef = flat()     # -eta^2 Minv after the burn-in; scratch during it
            self._cached = False
        self.reset()

    # ------------------------------------------------------------------ views and state
    def _views(self, buf: Tensor) -> list[Tensor]:
        out, off = [], 0
        for i, k in zip(self.active, self._sizes):
            out.append(buf[off:off + k].view(self.states[i].shape))
            off += k
        return out

    @property
    def step_count(self) -> int:
        """Number of steps taken since the last :meth:`reset`."""
        return self._step

    @property
    def momentum(self) -> list[Optional[Tensor]]:
        """Per-layer momentum ``p`` (views of the sampler's buffer, before ``C``; ``None`` for
        fixed layers, and zeros for every layer with Langevin). ``-p`` is the inhibitory
        population of the experiments; read, do not write."""
        if self.method != "sghmc":
            return [None if f else torch.zeros_like(s) for s, f in zip(self.states, self.fixed)]
        views = iter(self._views(self._p))
        return [None if f else next(views) for f in self.fixed]

    def reset(self, states: Optional[Sequence[Tensor]] = None) -> None:
        """Start a new chain: ``tau = g = v = 1``, ``p = 0``, step 0 (burn-in restarts).

        ``states`` (same shapes, dtype, device) replaces the tensors being sampled."""
        if states is not None:
            states = list(states)
            if len(states) != len(self.states) or any(
                    a.shape != b.shape or a.dtype != b.dtype or a.device != b.device
                    for a, b in zip(states, self.states)):
                raise ValueError("reset(states) needs tensors of the same shapes, dtype and device")
            self.states = states
        self._step = 0
        if self.method == "sghmc":
            for buf in (self._tau, self._g, self._v):
                buf.fill_(1.0)
            self._p.zero_()
            self._cached = False

    def state_dict(self) -> dict:
        """The sampler's state (CPU tensors): step count and, for SGHMC, the flat buffers of
        ``tau, g, v, p`` over the active layers. The generator's state is the caller's."""
        sd = {"format": STATE_FORMAT, "method": self.method, "step": self._step,
              "shapes": [list(s.shape) for s in self.states], "fixed": list(self.fixed)}
        if self.method == "sghmc":
            for k in ("tau", "g", "v", "p"):
                sd[k] = getattr(self, "_" + k).detach().to("cpu", copy=True)
        return sd

    def load_state_dict(self, sd: Mapping) -> None:
        """Restore :meth:`state_dict` (same layer shapes, fixed mask and method)."""
        want = {"format": STATE_FORMAT, "method": self.method,
                "shapes": [list(s.shape) for s in self.states], "fixed": list(self.fixed)}
        for key in ("format", "method", "shapes", "fixed"):
            if sd.get(key) != want[key]:
                raise ValueError(f"sampler state mismatch in {key!r}: saved {sd.get(key)!r}, "
                                 f"this sampler {want[key]!r}")
        if self.method == "sghmc":
            for k in ("tau", "g", "v", "p"):
                t = sd[k]
                if tuple(t.shape) != (self._numel,):
                    raise ValueError(f"sampler state {k!r} has shape {tuple(t.shape)}, "
                                     f"expected ({self._numel},)")
                getattr(self, "_" + k).copy_(t)
            self._cached = False
        self._step = int(sd["step"])

    # ------------------------------------------------------------------ diagnostics
    def inverse_mass(self) -> list[Optional[Tensor]]:
        """Per-layer ``Minv = 1/sqrt(v)`` that the next step uses (None for fixed layers)."""
        if self.method != "sghmc":
            raise ValueError("Langevin has no mass")
        views = iter(self._views(torch.rsqrt(self._v)))
        return [None if f else self._batch_mean(next(views)) for f in self.fixed]

    def noise_variance(self) -> list[Optional[Tensor]]:
        """Per-layer ``sigma^2`` (after the clamp) that the next step uses."""
        minv = self.inverse_mass()
        out = []
        for i, m in enumerate(minv):
            if m is None:
                out.append(None)
                continue
            e = self.eta[i] / math.sqrt(self.scale_grad)
            var = 2 * e * e * self.alpha[i] * m - 2 * e ** 3 * self.nu[i] * m * m - e ** 4
            out.append(var.clamp(self.min_sq_sigma, self.max_sq_sigma[i]))
        return out

    def _batch_mean(self, m: Tensor) -> Tensor:
        return m.mean(0, keepdim=True).expand_as(m) if self.mean_batch_minv_t else m

    # ------------------------------------------------------------------ stepping
    def run(self, grad_fn: GradFn, num_steps: int,
            callback: Optional[Callable[["SGHMC", Grads], None]] = None) -> None:
        """``num_steps`` steps, the gradient from ``grad_fn(states)`` at each;
        ``callback(self, grads)`` after each step (logging)."""
        for _ in range(int(num_steps)):
            grads = grad_fn(self.states)
            self.step(grads)
            if callback is not None:
                callback(self, grads)

    def step(self, grads: Union[Grads, GradFn]) -> None:
        """One step from ``grads`` (one ``dE/ds_i`` per layer, shaped like the state; ``None``
        allowed for fixed layers) or from a callable ``grads(states)``."""
        if callable(grads):
            grads = grads(self.states)
        grads = list(grads)
        if len(grads) != len(self.states):
            raise ValueError(f"got {len(grads)} gradients for {len(self.states)} layers")
        gs = []
        for i in self.active:
            g = grads[i]
            if g is None or g.shape != self.states[i].shape:
                raise ValueError(f"gradient of layer {i} must have shape {tuple(self.states[i].shape)}, "
                                 f"got {None if g is None else tuple(g.shape)}")
            gs.append(g.detach())
        if self.clip_grad_norm is not None and gs:
            gs = clip_by_total_norm(gs, self.clip_grad_norm, self.reduce)
        self._step += 1
        if not self.active:
            return
        with torch.no_grad():
            if self.method == "sghmc":
                self._sghmc(gs)
            else:
                self._langevin(gs)
            self._clamp()

    def _clamp(self) -> None:
        act = [i for i in self.active if self.clamp[i] is not None]
        if act:
            states = [self.states[i] for i in act]
            torch._foreach_clamp_min_(states, [self.clamp[i][0] for i in act])
            torch._foreach_clamp_max_(states, [self.clamp[i][1] for i in act])

    def _draw_noise(self) -> None:
        """``self._noise <- xi ~ N(0, 1)``: drawn for this batch, or for the whole batch and
        sliced to these chains (see ``chains``)."""
        if self._draw is None:
            self._noise.normal_(generator=self.generator)
            return
        self._draw.normal_(generator=self.generator)
        off, rows = 0, slice(self._first, self._first + self.states[0].shape[0])
        for i, xi in zip(self.active, self._views(self._noise)):
            k = self.states[i][0].numel() * self._total
            xi.copy_(self._draw[off:off + k].view(self._total, *self.states[i].shape[1:])[rows])
            off += k

    def _langevin(self, gs: list[Tensor]) -> None:
        self._draw_noise()
        for i, g, xi in zip(self.active, gs, self._views(self._noise)):
            self.states[i].add_(g, alpha=-self.eta[i]).add_(xi, alpha=self.langevin_noise_sd[i])

    def _mix(self, i: int, p: Tensor) -> Tensor:
        """``C(p)`` for layer i: a 1x1 channel mixing, or ``p`` itself (identity)."""
        k = self.mixing[i]
        if k is None:
            return p
        b, c = p.shape[:2]
        return torch.matmul(k, p.reshape(b, c, -1)).view(p.shape)

    def _noise_sd(self, a: list[Tensor], z: list[Tensor]) -> None:
        """``z <- sigma = sqrt(clamp(2 e^2 alpha Minv - 2 e^3 nu Minv^2 - e^4))`` from ``a = Minv``."""
        act = self.active
        e = [self.eta[i] / math.sqrt(self.scale_grad) for i in act]
        torch._foreach_copy_(z, a)
        torch._foreach_mul_(z, [2 * ei * ei * self.alpha[i] for ei, i in zip(e, act)])
        if any(self.nu[i] for i in act):
            torch._foreach_addcmul_(z, a, a, [-2 * ei ** 3 * self.nu[i] for ei, i in zip(e, act)])
        torch._foreach_add_(z, [-ei ** 4 for ei in e])
        torch._foreach_clamp_min_(z, self.min_sq_sigma)
        torch._foreach_clamp_max_(z, [self.max_sq_sigma[i] for i in act])
        torch._foreach_sqrt_(z)

    def _coefficients(self, coef: Tensor) -> None:
        """``coef <- -eta^2 Minv`` and ``self._z <- sigma``, both from the current ``v``."""
        torch.rsqrt(self._v, out=coef)
        c = self._views(coef)
        if self.mean_batch_minv_t:
            for m in c:
                m.copy_(m.mean(0, keepdim=True).expand_as(m))
        self._noise_sd(c, self._views(self._z))
        torch._foreach_mul_(c, [-self.eta[i] ** 2 for i in self.active])

    def _sghmc(self, gs: list[Tensor]) -> None:
        act = self.active
        if self._step <= self.num_burn_in_steps:
            coef = self._a                          # from the v before this step's adaptation
            self._coefficients(coef)
            self._adapt(gs, scratch=self._coef)
        else:                                       # v is frozen: compute once, then reuse
            coef = self._coef
            if not self._cached:
                self._coefficients(coef)
                self._cached = True
        a = self._views(self._a)
        for ak, ck, g in zip(a, self._views(coef), gs):
            torch.mul(ck, g, out=ak)                # a = -eta^2 Minv dE
        self._draw_noise()
        torch._foreach_addcmul_(a, self._views(self._z), self._views(self._noise))  # + sigma xi
        p = self._views(self._p)
        for k, i in enumerate(act):                 # - alpha C(p)
            if self.alpha[i]:
                a[k].add_(self._mix(i, p[k]), alpha=-self.alpha[i])
        self._p.add_(self._a)                       # p <- p + a
        torch._foreach_add_([self.states[i] for i in act],
                            [self._mix(i, pk) for i, pk in zip(act, p)])   # s <- s + C(p)

    def _adapt(self, gs: list[Tensor], scratch: Tensor) -> None:
        """Burn-in: ``r = 1/(tau+1)``; ``tau += 1 - tau g^2/v``; ``g += r dE - g r``;
        ``v += r dE^2 - v r`` (each from the values before this step)."""
        r, d = self._noise, scratch                 # the noise buffer is free until the draw
        torch.add(self._tau, 1.0, out=r)
        r.reciprocal_()
        torch.mul(self._g, self._g, out=d)
        d.div_(self._v).mul_(self._tau)
        self._tau.sub_(d).add_(1.0)
        dv = self._views(d)
        torch._foreach_copy_(dv, gs)
        d.mul_(r).addcmul_(self._g, r, value=-1.0)
        self._g.add_(d)
        torch._foreach_copy_(dv, gs)
        d.mul_(d).mul_(r).addcmul_(self._v, r, value=-1.0)
        self._v.add_(d)
