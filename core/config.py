"""Typed configuration: one dataclass per model package, a YAML preset, CLI overrides.

Every field of a config dataclass is declared with :func:`param`, which records a help
text and the allowed values (``min``/``max`` for numbers, ``choices`` for names). A config
is resolved once at start-up -- preset, then command-line overrides -- and validated
completely: an unknown key, a value of the wrong type or out of range raises
:class:`core.errors.UserError` with a one-line message naming the key and what is allowed.

Supported field types: ``int``, ``float``, ``bool``, ``str``, ``typing.Literal[...]``,
``list[int|float|str]``, ``tuple[...]`` and ``Optional[...]`` of these.
"""
from __future__ import annotations

import dataclasses
import math
import types
import typing
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import yaml

from core.errors import UserError

_MISSING = dataclasses.MISSING


def param(default: Any, help: str, *, min: float | None = None, max: float | None = None,
          choices: typing.Sequence | None = None, arch: bool = False, derived: bool = False,
          instead: str | None = None) -> Any:
    """Declare a config field with its help text and allowed values.

    ``arch=True`` marks keys that define the architecture: when a model is loaded from a
    checkpoint these come from the checkpoint, and a conflicting override is an error.
    ``derived=True`` marks keys that ``check()`` computes from others: they are not written
    to a run's ``config.yaml``, so changing their sources on ``--resume`` recomputes them;
    a value given for one that differs from the computed value is refused, naming the keys
    it comes from (``instead``), rather than silently replaced.
    Mutable defaults (lists) are copied per instance.
    """
    meta = {"help": help, "min": min, "max": max, "choices": choices, "arch": arch, "derived": derived,
            "instead": instead}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda d=default: type(d)(d), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


@dataclasses.dataclass
class BaseConfig:
    """Keys every model shares: seeding and the training loop's bookkeeping."""

    seed: int = param(0, "random seed for everything (data order, initialisation, sampling)",
                      min=0, max=2**63 - 1)
    steps: int = param(1000, "number of optimisation steps in training", min=0)
    log_every: int = param(10, "log scalars to TensorBoard every N steps", min=1)
    image_every: int = param(0, "log training images to TensorBoard every N steps (0: never)", min=0)
    hist_every: int = param(0, "log parameter histograms every N steps (0: never)", min=0)
    ckpt_every: int = param(100, "write a checkpoint every N steps (and always at the end)", min=1)
    keep_checkpoints: int = param(2, "periodic checkpoints kept besides last.pt and best.pt (the last one "
                                     "followed by a finite step is always kept too)", min=1)
    eval_every: int = param(0, "run the model's evaluation every N steps (0: never)", min=0)
    early_stop_patience: int = param(
        0, "stop after this many evaluations without improvement (0: never stop early)", min=0)
    grad_clip: float = param(0.0, "clip the global gradient norm to this value (0: off)", min=0.0)
    record_batch: int = param(
        16, "trials simulated and committed together when recording an experiment", min=1)
    ddp_find_unused: bool = param(
        False, "tell DistributedDataParallel that some parameters may get no gradient")
    threads: int = param(0, "torch CPU threads of this run (0: torch's default, one per core); results are "
                            "bitwise reproducible only for the same count", min=0)


def config_fields(cls: type) -> list[dataclasses.Field]:
    return list(dataclasses.fields(cls))


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def describe_type(tp: Any, meta: dict | None = None) -> str:
    """Human-readable description of what a field accepts, e.g. ``float >= 0``."""
    meta = meta or {}
    origin, args = get_origin(tp), get_args(tp)
    if meta.get("choices"):
        return "one of " + ", ".join(map(str, meta["choices"]))
    if origin is Literal:
        return "one of " + ", ".join(map(str, args))
    if origin in (typing.Union, types.UnionType):
        inner = [describe_type(a, meta) for a in args if a is not type(None)]
        return " or ".join(inner) + " or null"
    if origin in (list, tuple):
        item = args[0] if args else Any
        return f"list of {describe_type(item)}"
    name = getattr(tp, "__name__", str(tp))
    lo, hi = meta.get("min"), meta.get("max")
    if lo is not None and hi is not None:
        return f"{name} in [{lo}, {hi}]"
    if lo is not None:
        return f"{name} >= {lo}"
    if hi is not None:
        return f"{name} <= {hi}"
    return name


def coerce(key: str, value: Any, tp: Any, meta: dict | None = None, *, source: str = "") -> Any:
    """Check ``value`` against the declared type and range of ``key``; return it converted.

    Strings from the command line are first read as YAML scalars/lists, so ``--lr 1e-3``,
    ``--flag false`` and ``--sizes [8,16]`` (or ``8,16``) all work.
    """
    meta = meta or {}
    where = f" ({source})" if source else ""

    def fail() -> typing.NoReturn:
        raise UserError(f"--{key}: expected {describe_type(tp, meta)}, got {value!r}{where}")

    origin, args = get_origin(tp), get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.strip().lower() in ("null", "none")):
            if type(None) in args:
                return None
            fail()
        inner = [a for a in args if a is not type(None)]
        return coerce(key, value, inner[0], meta, source=source)
    if isinstance(value, str) and tp is not str and origin is not Literal:
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError:
            fail()
        if origin in (list, tuple) and isinstance(parsed, (str, int, float)) and not isinstance(parsed, bool):
            parsed = [yaml.safe_load(v) for v in str(value).split(",")] if "," in str(value) else [parsed]
        value = parsed
    if origin is Literal:
        if value not in args:
            fail()
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            fail()
        item_tp = args[0] if args else Any
        items = [coerce(key, v, item_tp, {k: meta.get(k) for k in ("min", "max", "choices")}, source=source)
                 if item_tp is not Any else v for v in value]
        return list(items) if origin is list else tuple(items)
    if tp is bool:
        if not isinstance(value, bool):
            fail()
    elif tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            else:
                fail()
    elif tp is float:
        if isinstance(value, str):  # YAML 1.1 reads "1e-3" as a string
            try:
                value = float(value)
            except ValueError:
                fail()
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            fail()
        value = float(value)
        if not math.isfinite(value):  # NaN passes every range check (it compares false)
            raise UserError(f"--{key}: expected a finite {describe_type(tp, meta)}, got {value!r}{where}")
    elif tp is str:
        if not isinstance(value, str):
            fail()
    if meta.get("choices") is not None and value not in meta["choices"]:
        fail()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if (meta.get("min") is not None and value < meta["min"]) or \
           (meta.get("max") is not None and value > meta["max"]):
            fail()
    return value


def from_dict(cls: type, values: dict[str, Any], *, source: str = "") -> Any:
    """Build and validate a config of class ``cls`` from a mapping of key -> value."""
    hints = _hints(cls)
    known = {f.name: f for f in config_fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        where = f" in {source}" if source else ""
        raise UserError(f"unknown config key(s) {', '.join(unknown)}{where}; "
                        f"known keys: {', '.join(sorted(known))}")
    kwargs = {k: coerce(k, v, hints[k], dict(known[k].metadata), source=source)
              for k, v in values.items()}
    cfg = cls(**kwargs)
    validate(cfg)
    for k, v in kwargs.items():  # a derived key given a value its sources do not give
        meta = known[k].metadata
        if meta.get("derived") and v != getattr(cfg, k):
            instead = f"; set {meta['instead']} instead" if meta.get("instead") else ""
            raise UserError(f"--{k}: this model derives it from other keys ({meta.get('help')}: "
                            f"{getattr(cfg, k)!r}), so {v!r} would be ignored{instead}")
    return cfg


def validate(cfg: Any) -> None:
    """Re-check every field of ``cfg`` (defaults included) and the model's own cross-checks."""
    hints = _hints(type(cfg))
    for f in config_fields(type(cfg)):
        coerce(f.name, getattr(cfg, f.name), hints[f.name], dict(f.metadata), source="default")
    check = getattr(cfg, "check", None)
    if callable(check):
        check()


def to_dict(cfg: Any, derived: bool = True) -> dict[str, Any]:
    """Plain-YAML-safe dict of a config (tuples become lists); ``derived=False`` leaves out
    the keys marked ``derived``."""
    out = {}
    for f in config_fields(type(cfg)):
        if not derived and f.metadata.get("derived"):
            continue
        v = getattr(cfg, f.name)
        out[f.name] = list(v) if isinstance(v, tuple) else v
    return out


def arch_keys(cls: type) -> list[str]:
    return [f.name for f in config_fields(cls) if f.metadata.get("arch")]


def load_preset(path: str | Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Read a YAML preset; a missing or malformed file is a :class:`UserError`.

    A preset may start from another with ``inherit: other.yaml`` (a path relative to the
    preset's folder): its keys are read first and this preset's keys replace them."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"--config: file not found: {p}" + (f" (inherited by {_seen[-1]})" if _seen else ""))
    if p.resolve() in _seen:
        raise UserError(f"--config: {p} inherits from itself (through {' -> '.join(map(str, _seen))})")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0] if str(exc) else "invalid YAML"
        raise UserError(f"--config: {p} is not valid YAML: {first}") from None
    if not isinstance(data, dict):
        raise UserError(f"--config: {p} must hold a mapping of config keys, got {type(data).__name__}")
    parent = data.pop("inherit", None)
    if parent is not None:
        if not isinstance(parent, str):
            raise UserError(f"--config: {p}: inherit must name one preset file, got {parent!r}")
        data = {**load_preset(p.parent / parent, (*_seen, p.resolve())), **data}
    return data


def help_table(cls: type) -> str:
    """One line per config key: name, default, allowed values and help."""
    hints = _hints(cls)
    lines = []
    for f in config_fields(cls):
        default = f.default if f.default is not _MISSING else f.default_factory()  # type: ignore[misc]
        meta = dict(f.metadata)
        arch = " [architecture]" if meta.get("arch") else ""
        lines.append(f"  --{f.name} ({describe_type(hints[f.name], meta)}; default {default!r}){arch}\n"
                     f"      {meta.get('help', '')}")
    return "\n".join(lines)
