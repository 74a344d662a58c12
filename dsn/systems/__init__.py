"""The systems library: circuit models with a differentiable T(x(z)) and a default mu.

``make_system(name, **options)`` builds one by name; :func:`register` adds a user's own
:class:`System` subclass under a name (see :mod:`dsn.systems.base` for the interface).
"""
from __future__ import annotations

from typing import Callable

from dsn.systems.base import System
from dsn.systems.linear2d import Linear2D
from dsn.systems.lowrank_rnn import LowRankRNN
from dsn.systems.moments import GaussianMoments, TruncatedExponentialMean, UniformBox
from dsn.systems.sc import SCCircuit
from dsn.systems.stg import STGHub
from dsn.systems.v1 import V1Circuit

_REGISTRY: dict[str, Callable[..., System]] = {
    "linear2d": lambda **kw: Linear2D(form="dsn", **kw),
    "linear2d_epi": lambda **kw: Linear2D(form="epi", **kw),
    "stg": STGHub,
    "v1": V1Circuit,
    "lowrank_rnn": LowRankRNN,
    "sc": SCCircuit,
    "gaussian": GaussianMoments,
    "uniform": UniformBox,
    "truncexp": TruncatedExponentialMean,
}


def register(name: str, factory: Callable[..., System]) -> None:
    """Make ``factory(**options)`` available as system ``name``."""
    _REGISTRY[name] = factory


def system_names() -> list[str]:
    return list(_REGISTRY)


def make_system(name: str, **options) -> System:
    if name not in _REGISTRY:
        raise KeyError(f"unknown system {name!r}; choose one of {', '.join(_REGISTRY)}")
    return _REGISTRY[name](**options)


__all__ = ["System", "Linear2D", "STGHub", "V1Circuit", "LowRankRNN", "SCCircuit", "GaussianMoments", "UniformBox",
           "TruncatedExponentialMean", "make_system", "register", "system_names"]
