"""NRFLV architectures as data: a layer list, a connection table, connection kinds, base kernels.

Layer 0 is the image, layers ``1..L-1`` are latent state layers; layer ``i`` has shape
``layers[i] = (C_i, H_i, W_i)``. Layer ``i`` *listens to* the layers ``inputs[i]`` (its own index
allowed: a self-connection); its quadratic net ``f_i`` (``nets.QuadraticNet``) reads
``rho(s_j)`` for ``j in inputs[i]``, in that order. Each connection has a kind:

=============  ==========  ==========================================================
kind           original    base layer of the connection (``nets.BaseConv``)
=============  ==========  ==========================================================
``conv``       status 1    weight-normed ``Conv2d(C_j, base_channels, k, padding=p)``
``convT``      status 2    weight-normed ``ConvTranspose2d(C_j, base_channels, k, padding=p)``
``conv+convT`` status 0    half the output channels from a Conv2d, half from a ConvTranspose2d
``fc``         status 3    no base layer: ``s_j`` is flattened into the fully connected path
=============  ==========  ==========================================================

``kernels[i][n]`` is the base kernel of the ``n``-th connection of layer ``i`` (``None`` for
``fc``; 7 by default) and ``paddings[i][n]`` its zero padding (``k // 2`` by default, as the
original's 7 -> 3, 11 -> 5). ``top_kernels[i]`` is the kernel of the conv after the 1x1 mixing conv
of layer ``i`` (7 by default), ``fc_hidden`` the width of the fully connected path (64) and
``init_channels`` the width and growth rate of the initialiser (``nets.FFInit``, 32).

Presets (``PRESETS``; the original's name is an alias of ``nrflv_thesis``):

* ``nrflv_thesis``: the original's ``NRFLV_CIFAR_4SL_small_densebackw_wideSL1base``;
  3x32x32 / 32x32x32 / 32x8x8 / 5x5x5, 38,013 units (34,941 latent per sample).
* ``nrflv_quick``: 3x16x16 / 16x16x16 / 8x4x4, small enough for every stage on a 2-core CPU.
* ``nrflv_medium``: 3x16x16 / 32x16x16 / 32x4x4, the thesis's 32 channels (and inverse mass) in
  both latent layers, trainable on a CPU in about an hour.

The table is validated once, at construction; a bad one raises :class:`ArchitectureError`
(a ``ValueError``) naming the layer and entry at fault.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Callable, Mapping, Optional, Sequence

from core.errors import UserError

KINDS = ("conv", "convT", "conv+convT", "fc")
#: the original's ``mod_cct_status_dict`` codes of each kind.
ORIGINAL_STATUS = {"conv+convT": 0, "conv": 1, "convT": 2, "fc": 3}
DEFAULT_KERNEL = 7

Shape = tuple[int, int, int]


class ArchitectureError(UserError, ValueError):
    """An architecture table that cannot be built (the message names layer and entry)."""


def _per_layer(name: str, table: Any, n: int) -> list:
    """A ``{layer: value}`` mapping (keys int or str, as YAML gives) or a sequence -> a list of n."""
    if isinstance(table, Mapping):
        try:
            keyed = {int(k): v for k, v in table.items()}
        except (TypeError, ValueError):
            raise ArchitectureError(f"architecture {name}: keys must be layer indices 0..{n - 1}, "
                                    f"got {sorted(map(str, table))}") from None
        if sorted(keyed) != list(range(n)):
            raise ArchitectureError(f"architecture {name}: needs exactly one entry per layer 0..{n - 1}, "
                                    f"got layers {sorted(keyed)}")
        return [keyed[i] for i in range(n)]
    if isinstance(table, (str, bytes)) or not isinstance(table, Sequence):
        raise ArchitectureError(f"architecture {name}: expected a list or a {{layer: list}} mapping, "
                                f"got {table!r}")
    if len(table) != n:
        raise ArchitectureError(f"architecture {name}: has entries for {len(table)} layers but there are "
                                f"{n} layers")
    return list(table)


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _conv_out(size: int, kind: str, k: int, p: int) -> int:
    """Side of a stride-1 base conv's output (both halves agree for ``conv+convT``)."""
    return size + 2 * p - k + 1 if kind in ("conv", "conv+convT") else size - 2 * p + k - 1


@dataclass(frozen=True)
class Architecture:
    """Layer shapes and the connection table of an NRFLV (validated; all fields tuples).

    Accepts lists or ``{layer: list}`` mappings (as YAML gives them) for the per-layer tables.
    """

    layers: Sequence[Sequence[int]]
    inputs: Any
    kinds: Any
    kernels: Any = None
    paddings: Any = None
    top_kernels: Any = DEFAULT_KERNEL
    base_channels: int = 32
    fc_hidden: int = 64
    init_channels: int = 32

    def __post_init__(self) -> None:
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 (frozen dataclass)
        if isinstance(self.layers, (str, bytes)) or not isinstance(self.layers, Sequence) \
                or len(self.layers) < 2:
            raise ArchitectureError("architecture layers: need the image and at least one latent layer, "
                                    f"each [channels, height, width]; got {self.layers!r}")
        layers = []
        for i, shp in enumerate(self.layers):
            if isinstance(shp, (str, bytes)) or not isinstance(shp, Sequence) or len(shp) != 3 \
                    or not all(_is_int(x) and x > 0 for x in shp):
                raise ArchitectureError(f"architecture layers: layer {i} must be 3 positive integers "
                                        f"[channels, height, width], got {shp!r}")
            layers.append(tuple(shp))
        n = len(layers)
        set_("layers", tuple(layers))
        for name in ("base_channels", "fc_hidden", "init_channels"):
            v = getattr(self, name)
            if not _is_int(v) or v < 1:
                raise ArchitectureError(f"architecture {name}: must be a positive integer, got {v!r}")

        inputs = _per_layer("inputs", self.inputs, n)
        kinds = _per_layer("kinds", self.kinds, n)
        kernels = _per_layer("kernels", self.kernels, n) if self.kernels is not None else [None] * n
        paddings = _per_layer("paddings", self.paddings, n) if self.paddings is not None else [None] * n
        tops = [self.top_kernels] * n if _is_int(self.top_kernels) else \
            _per_layer("top_kernels", self.top_kernels, n)
        for i in range(n):
            inputs[i], kinds[i], kernels[i], paddings[i] = self._check_layer(
                i, layers, inputs[i], kinds[i], kernels[i], paddings[i])
            if any(kd != "fc" for kd in kinds[i]) and not (_is_int(tops[i]) and tops[i] > 0
                                                           and tops[i] % 2 == 1):
                raise ArchitectureError(f"architecture top_kernels: layer {i} has a conv path and needs an "
                                        f"odd positive kernel (size-preserving), got {tops[i]!r}")
        set_("inputs", tuple(inputs))
        set_("kinds", tuple(kinds))
        set_("kernels", tuple(kernels))
        set_("paddings", tuple(paddings))
        set_("top_kernels", tuple(t if any(kd != "fc" for kd in kinds[i]) else None
                                  for i, t in enumerate(tops)))

    def _check_layer(self, i: int, layers: list[Shape], inp: Any, kind: Any, kern: Any, pad: Any):
        where = f"architecture: layer {i}"
        if isinstance(inp, (str, bytes)) or not isinstance(inp, Sequence) or not inp:
            raise ArchitectureError(f"{where} needs a non-empty list of input layers, got {inp!r}")
        for j in inp:
            if not _is_int(j) or not 0 <= j < len(layers):
                raise ArchitectureError(f"{where} input {j!r} does not exist (layers are 0..{len(layers) - 1})")
        if len(set(inp)) != len(inp):
            raise ArchitectureError(f"{where} lists an input twice: {list(inp)}")
        m = len(inp)
        if isinstance(kind, str):
            kind = [kind] * m
        if not isinstance(kind, Sequence) or len(kind) != m:
            raise ArchitectureError(f"{where} has {m} inputs {list(inp)} but kinds {kind!r}; "
                                    f"give one kind per input")
        for kd in kind:
            if kd not in KINDS:
                raise ArchitectureError(f"{where} kind {kd!r} is not one of {', '.join(KINDS)}")
        kern = [None] * m if kern is None else kern
        pad = [None] * m if pad is None else pad
        for name, tab in (("kernels", kern), ("paddings", pad)):
            if isinstance(tab, (str, bytes)) or not isinstance(tab, Sequence) or len(tab) != m:
                raise ArchitectureError(f"{where} has {m} inputs but {name} {tab!r}; give one per input "
                                        f"(null for fc)")
        kernels, paddings = [], []
        for j, kd, k, p in zip(inp, kind, kern, pad):
            if kd == "fc":
                if k is not None or p is not None:
                    raise ArchitectureError(f"{where} input {j} is fc and takes no kernel or padding "
                                            f"(use null), got kernel {k!r}, padding {p!r}")
                kernels.append(None)
                paddings.append(None)
                continue
            k = DEFAULT_KERNEL if k is None else k
            if not _is_int(k) or k < 1:
                raise ArchitectureError(f"{where} input {j}: kernel must be a positive integer, got {k!r}")
            p = k // 2 if p is None else p
            if not _is_int(p) or p < 0:
                raise ArchitectureError(f"{where} input {j}: padding must be an integer >= 0, got {p!r}")
            if kd == "conv+convT" and self.base_channels < 2:
                raise ArchitectureError(f"{where} input {j}: conv+convT splits base_channels between a conv "
                                        f"and a transposed conv; base_channels must be >= 2")
            _, h, w = layers[j]
            oh, ow = _conv_out(h, kd, k, p), _conv_out(w, kd, k, p)
            if kd == "conv+convT":
                oh2, ow2 = _conv_out(h, "convT", k, p), _conv_out(w, "convT", k, p)
                if (oh, ow) != (oh2, ow2):
                    raise ArchitectureError(f"{where} input {j}: conv+convT needs a size-preserving kernel "
                                            f"and padding (2*padding = kernel - 1), got kernel {k}, padding {p}")
            if oh < 1 or ow < 1:
                raise ArchitectureError(f"{where} input {j}: a {kd} with kernel {k} and padding {p} on a "
                                        f"{h}x{w} layer has an empty output")
            kernels.append(k)
            paddings.append(p)
        return tuple(inp), tuple(kind), tuple(kernels), tuple(paddings)

    # ------------------------------------------------------------------ derived quantities
    @property
    def n_layers(self) -> int:
        return len(self.layers)

    def units(self, i: int) -> int:
        """Units of layer ``i`` per sample, ``C_i H_i W_i``."""
        return math.prod(self.layers[i])

    @property
    def n_units(self) -> int:
        """Units of all layers (image included) per sample: the number of biases."""
        return sum(self.units(i) for i in range(self.n_layers))

    @property
    def n_latent_units(self) -> int:
        """Units of the latent layers ``1..L-1`` per sample."""
        return self.n_units - self.units(0)

    def state_shapes(self, batch: int) -> list[tuple[int, int, int, int]]:
        """``[(batch, C_i, H_i, W_i)]`` for every layer."""
        return [(batch, *shp) for shp in self.layers]

    def connections(self, i: int, kinds: Optional[Sequence[str]] = None):
        """``(j, kind, kernel, padding)`` of each input of layer ``i`` (only ``kinds`` if given)."""
        return [c for c in zip(self.inputs[i], self.kinds[i], self.kernels[i], self.paddings[i])
                if kinds is None or c[1] in kinds]

    def to_dict(self) -> dict:
        """Plain lists and ints (YAML/JSON-ready); ``Architecture(**a.to_dict()) == a``."""
        d = asdict(self)
        return {k: [list(x) if isinstance(x, tuple) else x for x in v] if isinstance(v, tuple) else v
                for k, v in d.items()}

    @classmethod
    def from_original(cls, state_sizes: Sequence[Sequence[int]], arch_dict: Mapping) -> "Architecture":
        """Build from the original code's ``state_sizes`` ([batch, C, H, W] per layer) and
        ``arch_dict`` (``mod_connect_dict``, ``mod_cct_status_dict``, ``base_kern_pad_dict``,
        ``main_kern_dict``, ``num_ch_base``, ``num_ch_initter``; dense middles and spectral norm,
        which the original's NRFLV presets do not use, are refused)."""
        status_kind = {v: k for k, v in ORIGINAL_STATUS.items()}
        n = len(state_sizes)
        if any(arch_dict.get("mod_num_lyr_dict", {}).get(i, 0) for i in range(n)):
            raise ArchitectureError("original architecture: dense middle layers (mod_num_lyr_dict > 0) "
                                    "are not supported")
        if arch_dict.get("spec_norm_reg", False):
            raise ArchitectureError("original architecture: spectral norm (spec_norm_reg) is not supported")
        kinds, kernels, paddings = {}, {}, {}
        for i in range(n):
            sts = arch_dict["mod_cct_status_dict"][i]
            if any(s not in status_kind for s in sts):
                raise ArchitectureError(f"original architecture: layer {i} status {sts} not in 0..3")
            kinds[i] = [status_kind[s] for s in sts]
            kp = arch_dict["base_kern_pad_dict"][i]
            kernels[i] = [kp_[0] if kd != "fc" else None for kd, kp_ in zip(kinds[i], kp)]
            # the original's CCTLayer: padding 0 stays 0, kernels 1/3/7/11 get 0/1/3/5, else as given
            paddings[i] = [None if kd == "fc" else 0 if kp_[1] == 0 else
                           {1: 0, 3: 1, 7: 3, 11: 5}.get(kp_[0], kp_[1]) for kd, kp_ in zip(kinds[i], kp)]
        return cls(layers=[tuple(s[1:]) for s in state_sizes],
                   inputs={i: list(arch_dict["mod_connect_dict"][i]) for i in range(n)},
                   kinds=kinds, kernels=kernels, paddings=paddings,
                   top_kernels=[arch_dict["main_kern_dict"][i] or None for i in range(n)],
                   base_channels=arch_dict["num_ch_base"],
                   init_channels=arch_dict.get("num_ch_initter", arch_dict["num_ch_base"]))


# ---------------------------------------------------------------------- presets
def nrflv_thesis() -> Architecture:
    """The thesis model (the original's ``NRFLV_CIFAR_4SL_small_densebackw_wideSL1base``).

    Every conv connection is a plain conv (the original's status 1); SL1's self-connection has
    an 11x11 kernel, padding 5; the 5x5x5 layer is reached by fc connections only.
    """
    return Architecture(
        layers=[(3, 32, 32), (32, 32, 32), (32, 8, 8), (5, 5, 5)],
        inputs={0: [1, 2, 3], 1: [0, 1, 2], 2: [1, 2, 3], 3: [2, 3]},
        kinds={0: ["conv", "conv", "fc"], 1: ["conv", "conv", "conv"],
               2: ["conv", "conv", "fc"], 3: ["fc", "fc"]},
        kernels={0: [7, 7, None], 1: [7, 11, 7], 2: [7, 7, None], 3: [None, None]},
        top_kernels=7, base_channels=32, fc_hidden=64, init_channels=32)


def nrflv_quick() -> Architecture:
    """A small colour model for CPU runs: 3x16x16 / 16x16x16 / 8x4x4, base width 16, 5x5 kernels.

    The thesis wiring without its 5x5x5 layer; every kind appears: conv, conv+convT (SL1's
    self-connection) and fc (SL2 -> image, SL2's self-connection).
    """
    return Architecture(
        layers=[(3, 16, 16), (16, 16, 16), (8, 4, 4)],
        inputs={0: [1, 2], 1: [0, 1, 2], 2: [1, 2]},
        kinds={0: ["conv", "fc"], 1: ["conv", "conv+convT", "conv"], 2: ["conv", "fc"]},
        kernels={0: [5, None], 1: [5, 5, 3], 2: [5, None]},
        top_kernels=5, base_channels=16, fc_hidden=32, init_channels=16)


def nrflv_medium() -> Architecture:
    """Between quick and thesis for a CPU: 3x16x16 / 32x16x16 / 32x4x4, base width 32, 5x5 kernels.

    The quick wiring with the thesis's 32 channels in both latent layers, so the sampler's
    circulant inverse mass is the thesis's (row sum 1.005; 16 channels: 1.34, 8: 3.99).
    """
    return Architecture(
        layers=[(3, 16, 16), (32, 16, 16), (32, 4, 4)],
        inputs={0: [1, 2], 1: [0, 1, 2], 2: [1, 2]},
        kinds={0: ["conv", "fc"], 1: ["conv", "conv+convT", "conv"], 2: ["conv", "fc"]},
        kernels={0: [5, None], 1: [5, 5, 3], 2: [5, None]},
        top_kernels=5, base_channels=32, fc_hidden=64, init_channels=32)


PRESETS: dict[str, Callable[[], Architecture]] = {
    "nrflv_thesis": nrflv_thesis,
    "NRFLV_CIFAR_4SL_small_densebackw_wideSL1base": nrflv_thesis,
    "nrflv_quick": nrflv_quick,
    "nrflv_medium": nrflv_medium,
}


def get_architecture(name: str) -> Architecture:
    """The preset called ``name``; an unknown name lists the valid ones."""
    if name in PRESETS:
        return PRESETS[name]()
    raise ArchitectureError(f"unknown architecture {name!r}; valid: {', '.join(PRESETS)}")
