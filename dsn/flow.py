"""The density network q_theta(z): a real NVP normalising flow onto the parameters' support.

Generative direction (what sampling runs)::

    w ~ N(0, I_D)
    x = coupling_K o ... o coupling_1 (w)      real NVP, zuko's CouplingTransform
          (optional batch norm after each coupling)
    x = exp(a) * x + b                          per-dimension scale and shift (zuko)
    z = m * tanh(x) + c                         box bijection onto [lower, upper]
                                                (identity on unbounded dimensions)

    log q(z) = log N(w; 0, I) - sum_layers log|det df_l/dx|

Each affine coupling updates the dimensions outside its mask,
``x_b <- x_b * exp(s(x_a)) + t(x_a)``, with *separate* scale and shift networks s and t
(tanh MLPs whose last layers start at zero, so the initial flow is the identity).

What comes from zuko: the coupling transform, the soft-clipped monotonic affine
transform used both inside the couplings and as the per-dimension affine, and the
composition that returns samples with their exact log-determinant in one pass (plus its
MLPs for the unpaired build). What is written here (zuko lacks it): the two-network
coupling (its two MLPs evaluated together by :class:`dsn.paired_mlp.PairedMLP`), the box
bijection with a clamped inverse and the stable log-derivative
``log(m (1 - tanh(x)^2)) = log m + 2 (log 2 - x - softplus(-2 x))``, a flow batch-norm
layer whose training-mode log-determinant uses the batch's own statistics, and
:class:`SigmoidTanh`.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.distributions import Transform, constraints
from torch.nn import functional as F
from zuko.lazy import LazyTransform, UnconditionalTransform
from zuko.nn import MLP
from zuko.transforms import (ComposedTransform, CouplingTransform, DependentTransform, MonotonicAffineTransform,
                             MonotonicRQSTransform)

from dsn.paired_mlp import PairedMLP

_LOG_SLOPE = math.log(1e-3)  # zuko's MonotonicAffineTransform soft-clips log-scales at |log 1e-3|


def _unclip_log_scale(log_scale: Tensor) -> Tensor:
    """Raw parameter a whose soft-clipped value a / (1 + |a / log 1e-3|) equals ``log_scale``."""
    return log_scale / (1.0 - log_scale.abs() / abs(_LOG_SLOPE))


class SigmoidTanh(nn.Module):
    """tanh(x) computed as 2 sigmoid(2x) - 1 (the same function).

    On CPU builds whose ``torch.tanh`` kernel is not vectorised this is several times
    faster (measured in ``bench/bench_dsn.py``); the couplings' MLPs spend most of a step
    in their activations.
    """

    def forward(self, x: Tensor) -> Tensor:
        return torch.sigmoid(2.0 * x).mul(2.0).sub(1.0)


def _zero_last(mlp: nn.Sequential) -> nn.Sequential:
    last = [m for m in mlp.modules() if hasattr(m, "weight")][-1]
    nn.init.zeros_(last.weight)
    nn.init.zeros_(last.bias)
    return mlp


def coupling_masks(features: int, count: int) -> list[Tensor]:
    """Alternating masks (True = conditioning half): checkerboard pairs, then block pairs.

    Consecutive masks are complements, so every dimension is updated once per pair.
    """
    masks = []
    idx = torch.arange(features)
    for i in range(count):
        if (i // 2) % 2 == 0 or features < 4:
            m = idx % 2 == (i % 2)
        else:
            m = (idx < features // 2) ^ bool(i % 2)
        masks.append(m)
    return masks


class TwoNetCoupling(LazyTransform):
    """Real NVP affine coupling with separate scale and shift networks.

    ``y_a = x_a``; ``y_b = x_b * exp(s(x_a)) + t(x_a)`` with s soft-clipped by zuko's
    :class:`MonotonicAffineTransform`. Shapes: ``x`` (batch, features).
    """

    def __init__(self, features: int, mask: Tensor, hidden: tuple[int, ...], activation=SigmoidTanh,
                 paired: bool = True):
        super().__init__()
        self.register_buffer("mask", mask.bool())
        n_a = int(mask.sum())
        n_b = features - n_a
        if paired:  # both networks in one batched pass (same maths, fewer kernels)
            self.nets = PairedMLP(n_a, n_b, hidden, activation)
        else:  # zuko's MLPs, one per network (the straightforward build)
            self.scale_net = _zero_last(MLP(n_a, n_b, hidden_features=hidden, activation=activation))
            self.shift_net = _zero_last(MLP(n_a, n_b, hidden_features=hidden, activation=activation))
        self.paired = paired

    def meta(self, x_a: Tensor) -> Transform:
        if self.paired:
            scale, shift = self.nets(x_a).unbind(0)
        else:
            scale, shift = self.scale_net(x_a), self.shift_net(x_a)
        return DependentTransform(MonotonicAffineTransform(shift, scale), 1)

    def forward(self, c: Tensor | None = None) -> Transform:
        return CouplingTransform(self.meta, self.mask)


class _BatchNormT(Transform):
    """y = (x - mean) / sqrt(var + eps) * exp(log_gamma) + beta, summed log-det over features."""

    domain = constraints.real_vector
    codomain = constraints.real_vector
    bijective = True

    def __init__(self, layer: "FlowBatchNorm"):
        super().__init__()
        self.layer = layer

    def _stats(self, x: Tensor) -> tuple[Tensor, Tensor]:
        L = self.layer
        if L.training and x.dim() == 2 and x.shape[0] > 1:
            mean, var = x.mean(0), x.var(0, unbiased=False)
            with torch.no_grad():
                L.running_mean.lerp_(mean.detach(), L.momentum)
                L.running_var.lerp_(var.detach(), L.momentum)
            return mean, var
        return L.running_mean, L.running_var

    def call_and_ladj(self, x: Tensor) -> tuple[Tensor, Tensor]:
        L = self.layer
        mean, var = self._stats(x)
        inv_std = torch.rsqrt(var + L.eps)
        y = (x - mean) * inv_std * L.log_gamma.exp() + L.beta
        ladj = (L.log_gamma + inv_std.log()).sum(-1)
        return y, ladj.expand(x.shape[:-1])

    def _call(self, x: Tensor) -> Tensor:
        return self.call_and_ladj(x)[0]

    def _inverse(self, y: Tensor) -> Tensor:
        L = self.layer  # running statistics: the inverse is defined for a fixed (eval) layer
        return (y - L.beta) * (-L.log_gamma).exp() * (L.running_var + L.eps).sqrt() + L.running_mean

    def log_abs_det_jacobian(self, x: Tensor, y: Tensor) -> Tensor:
        L = self.layer
        ladj = (L.log_gamma - 0.5 * (L.running_var + L.eps).log()).sum(-1)
        return ladj.expand(x.shape[:-1])


class FlowBatchNorm(LazyTransform):
    """Batch norm as a flow layer (Dinh et al. 2017): batch statistics in training mode,
    running averages in eval mode (so ``log_prob`` and the Hessian use a fixed map)."""

    def __init__(self, features: int, momentum: float = 0.01, eps: float = 1e-5):
        super().__init__()
        self.momentum, self.eps = momentum, eps
        self.log_gamma = nn.Parameter(torch.zeros(features))
        self.beta = nn.Parameter(torch.zeros(features))
        self.register_buffer("running_mean", torch.zeros(features))
        self.register_buffer("running_var", torch.ones(features))

    def forward(self, c: Tensor | None = None) -> Transform:
        return _BatchNormT(self)


class _BoxT(Transform):
    """z = m tanh(x) + c on bounded dimensions, z = x on the others (elementwise)."""

    domain = constraints.real
    codomain = constraints.real
    bijective = True
    sign = +1

    def __init__(self, half_width: Tensor, centre: Tensor, bounded: Tensor):
        super().__init__()
        self.m, self.c, self.bounded = half_width, centre, bounded

    def _call(self, x: Tensor) -> Tensor:
        return torch.where(self.bounded, self.m * torch.tanh(x) + self.c, x)

    def _inverse(self, z: Tensor) -> Tensor:
        u = ((z - self.c) / self.m).clamp(-1 + 1e-7, 1 - 1e-7)
        return torch.where(self.bounded, torch.atanh(u), z)

    def log_abs_det_jacobian(self, x: Tensor, z: Tensor) -> Tensor:
        stable = self.m.log() + 2.0 * (math.log(2.0) - x - F.softplus(-2.0 * x))
        return torch.where(self.bounded, stable, torch.zeros_like(x))


class SupportMap(LazyTransform):
    """Bijection from R^D onto the support: a box where both bounds are finite."""

    def __init__(self, lower: Tensor, upper: Tensor):
        super().__init__()
        lower, upper = torch.as_tensor(lower, dtype=torch.float32), torch.as_tensor(upper, dtype=torch.float32)
        bounded = torch.isfinite(lower) & torch.isfinite(upper)
        if bool((torch.isfinite(lower) ^ torch.isfinite(upper)).any()):
            raise ValueError("each support dimension must be bounded on both sides or unbounded")
        self.register_buffer("bounded", bounded)
        self.register_buffer("half_width", torch.where(bounded, (upper - lower) / 2, torch.ones_like(lower)))
        self.register_buffer("centre", torch.where(bounded, (upper + lower) / 2, torch.zeros_like(lower)))

    def forward(self, c: Tensor | None = None) -> Transform:
        return DependentTransform(_BoxT(self.half_width, self.centre, self.bounded), 1)


class SplineCoupling(LazyTransform):
    """Neural-spline coupling (Durkan et al. 2019): ``y_b = g(x_b; x_a)`` with g a monotonic
    rational-quadratic spline of ``bins`` bins on [-bound, bound] (identity outside), whose
    widths, heights and inner knot slopes come from one MLP of ``x_a`` (zuko's
    :class:`MonotonicRQSTransform`). The MLP's last layer starts at zero: equal bins and unit
    slopes, the identity. Shapes: ``x`` (batch, features).
    """

    def __init__(self, features: int, mask: Tensor, hidden: tuple[int, ...], activation=SigmoidTanh,
                 bins: int = 8, bound: float = 5.0):
        super().__init__()
        self.register_buffer("mask", mask.bool())
        n_a = int(mask.sum())
        self.n_b, self.bins, self.bound = features - n_a, bins, bound
        self.net = _zero_last(MLP(n_a, self.n_b * (3 * bins - 1), hidden_features=hidden, activation=activation))

    def meta(self, x_a: Tensor) -> Transform:
        p = self.net(x_a).unflatten(-1, (self.n_b, 3 * self.bins - 1))
        K = self.bins
        return DependentTransform(MonotonicRQSTransform(p[..., :K], p[..., K:2 * K], p[..., 2 * K:],
                                                        bound=self.bound), 1)

    def forward(self, c: Tensor | None = None) -> Transform:
        return CouplingTransform(self.meta, self.mask)


class DensityNetwork(nn.Module):
    """q_theta(z) over D circuit parameters.

    Args:
        lower, upper: (D,) support bounds (``-inf``/``inf`` for unbounded dimensions).
        couplings: number of real NVP coupling layers (>= 2 recommended, even).
        hidden: hidden widths of each scale/shift network.
        batch_norm: batch-norm layer after each coupling.
        post_affine: learnable per-dimension scale and shift before the support map.
        sigma_init: the initial flow maps w to ~N(centre, sigma_init^2 I) (identity couplings).
        activation: the MLPs' activation class (tanh; ``nn.Tanh`` gives the same function
            through torch's own kernel, the benchmark's baseline).
        paired: evaluate each coupling's scale and shift networks in one batched pass
            (False: two zuko MLPs; the same family of maps, the benchmark's baseline).
        coupling: "affine" (real NVP) or "spline" (rational-quadratic neural-spline couplings
            with ``spline_bins`` bins on [-5, 5]).
        base_components: K > 1 replaces the N(0, I) base by the equal-weight mixture
            (1/K) sum_k N(m_k, I) with learnable means m_k (K, D), drawn N(0, I) at construction:
            a multi-modal target can then keep a component per mode instead of the couplings
            tearing one Gaussian apart. The component of each draw is chosen uniformly (it does
            not depend on the parameters), so the draws stay reparameterised and the entropy
            and constraint gradients unbiased.
    """

    def __init__(self, lower, upper, couplings: int = 4, hidden: tuple[int, ...] = (32, 32),
                 batch_norm: bool = False, post_affine: bool = True, sigma_init: float = 1.0,
                 activation=SigmoidTanh, paired: bool = True, coupling: str = "affine", spline_bins: int = 8,
                 base_components: int = 1):
        super().__init__()
        if base_components < 1:
            raise ValueError(f"base_components must be >= 1, got {base_components}")
        self.support = SupportMap(lower, upper)
        D = self.support.centre.numel()
        self.features = D
        layers: list[nn.Module] = []
        if D > 1:
            for mask in coupling_masks(D, couplings):
                if coupling == "spline":
                    layers.append(SplineCoupling(D, mask, tuple(hidden), activation, spline_bins))
                elif coupling == "affine":
                    layers.append(TwoNetCoupling(D, mask, tuple(hidden), activation, paired))
                else:
                    raise ValueError(f"coupling must be affine or spline, got {coupling!r}")
                if batch_norm:
                    layers.append(FlowBatchNorm(D))
        self.couplings = nn.ModuleList(layers)
        # scale so that m * tanh(s w) has slope sigma_init at the centre
        init_scale = torch.full((D,), float(sigma_init)) / self.support.half_width
        shift = torch.zeros(D)
        raw = _unclip_log_scale(init_scale.log())
        self.affine = UnconditionalTransform(
            lambda b, a: DependentTransform(MonotonicAffineTransform(b, a), 1), shift, raw,
        ) if post_affine else None
        if not post_affine:
            self.register_buffer("_fixed_raw_scale", raw)
        self.register_buffer("_log2pi", torch.tensor(math.log(2 * math.pi)))
        self.base_means = nn.Parameter(torch.randn(base_components, D)) if base_components > 1 else None

    def transform(self) -> ComposedTransform:
        """The generative map w -> z as one zuko transform."""
        ts = [layer() for layer in self.couplings]
        if self.affine is not None:
            ts.append(self.affine())
        else:
            ts.append(DependentTransform(MonotonicAffineTransform(
                torch.zeros_like(self._fixed_raw_scale), self._fixed_raw_scale), 1))
        ts.append(self.support())
        return ComposedTransform(*ts)

    def base_log_prob(self, w: Tensor) -> Tensor:
        """log density of the base distribution at w (..., D) -> (...)."""
        if self.base_means is None:
            return -0.5 * (w.pow(2).sum(-1) + w.shape[-1] * self._log2pi)
        K = self.base_means.shape[0]
        sq = (w.unsqueeze(-2) - self.base_means).pow(2).sum(-1)  # (..., K)
        return torch.logsumexp(-0.5 * sq, -1) - math.log(K) - 0.5 * w.shape[-1] * self._log2pi

    def rsample_and_log_prob(self, n: int, generator: torch.Generator | None = None
                             ) -> tuple[Tensor, Tensor]:
        """Reparameterised samples z (n, D) and their exact log q(z) (n,) in one pass."""
        w = torch.randn(n, self.features, generator=generator, device=self._log2pi.device,
                        dtype=self._log2pi.dtype)
        if self.base_means is not None:
            k = torch.randint(self.base_means.shape[0], (n,), generator=generator, device=w.device)
            w = w + self.base_means[k]
        return self.push(w)

    def push(self, w: Tensor) -> tuple[Tensor, Tensor]:
        """z = f(w) and log q(z) for given base draws w (n, D)."""
        z, ladj = self.transform().call_and_ladj(w)
        return z, self.base_log_prob(w) - ladj

    def log_prob(self, z: Tensor) -> Tensor:
        """log q(z) (..., ) through the inverse flow (batch norm uses running statistics)."""
        t = self.transform()
        w = t.inv(z)
        return self.base_log_prob(w) - t.log_abs_det_jacobian(w, z)
