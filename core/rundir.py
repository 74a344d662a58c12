"""Run directories: one folder per run holding everything the run produced.

Layout::

    RUN/
      config.yaml        the resolved config (preset + overrides), enough to repeat the run
      meta.yaml          model, seed, git revision (+dirty flag), torch version, device,
                         command line, world size, parent run when a model was loaded
      checkpoints/       last.pt, best.pt, step_00000100.pt (periodic)
      tb/                TensorBoard event files
      figures/           PNG figures of visualisations and analyses
      tables/            CSV tables of analyses
      recordings/        stimuli.zarr, activity.zarr (experiments)
"""
from __future__ import annotations

import datetime as _dt
import os
import platform
import subprocess
import sys
import unicodedata
from pathlib import Path
from typing import Any

import torch
import yaml

from core.checkpoint import atomic_write_text
from core.errors import UserError

SUBDIRS = ("checkpoints", "tb", "figures", "tables", "recordings")
CODE_ROOT = Path(__file__).resolve().parent.parent


def git_revision(root: Path = CODE_ROOT) -> tuple[str, bool]:
    """(commit hash or 'unknown', whether the work tree has uncommitted changes)."""
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                             text=True, timeout=10).stdout.strip() or "unknown"
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                                    cwd=root, capture_output=True, text=True, timeout=10).stdout.strip())
    except (OSError, subprocess.SubprocessError):
        return "unknown", False
    return rev, dirty


class RunDir:
    """A run's folder and the paths inside it."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    # paths -----------------------------------------------------------------
    def __truediv__(self, other: str) -> Path:
        return self.path / other

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def tb(self) -> Path:
        return self.path / "tb"

    @property
    def figures(self) -> Path:
        return self.path / "figures"

    @property
    def tables(self) -> Path:
        return self.path / "tables"

    @property
    def recordings(self) -> Path:
        return self.path / "recordings"

    # creation --------------------------------------------------------------
    @classmethod
    def create(cls, out_dir: str | Path, model: str, run_name: str | None = None) -> "RunDir":
        """Make a new, empty run folder; never reuses an existing one (safe against concurrent
        creators: a name taken meanwhile moves on to the next suffix)."""
        out = Path(out_dir)
        base = run_name or f"{model}-{_dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"
        check_run_name(base)
        check_out_dir(out)
        try:
            out.mkdir(parents=True, exist_ok=True)
            path, n = out / base, 1
            while True:
                try:
                    path.mkdir()
                    break
                except FileExistsError:
                    path, n = out / f"{base}-{n}", n + 1
            for sub in SUBDIRS:
                (path / sub).mkdir()
        except OSError as exc:
            raise UserError(f"--out_dir: cannot create a run folder in {out}: {exc.strerror or exc}") from None
        return cls(path)

    @classmethod
    def existing(cls, path: str | Path) -> "RunDir":
        p = Path(path)
        if not (p / "config.yaml").is_file():
            raise UserError(f"not a run directory (no config.yaml): {p}")
        return cls(p)

    def write_config(self, config: dict[str, Any]) -> None:
        atomic_write_text(self.path / "config.yaml", yaml.safe_dump(config, sort_keys=False))

    def read_config(self) -> dict[str, Any]:
        return _read_yaml(self.path / "config.yaml")

    def write_meta(self, *, model: str, seed: int, device: torch.device, world_size: int,
                   parent: str | None = None, extra: dict | None = None) -> dict[str, Any]:
        rev, dirty = git_revision()
        meta = {
            "model": model,
            "seed": seed,
            "git_revision": rev,
            "git_dirty": dirty,
            "torch_version": str(torch.__version__),
            "python_version": platform.python_version(),
            "device": str(device),
            "cuda_device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
            "world_size": world_size,
            "command": " ".join(sys.argv),
            "created": _dt.datetime.now().isoformat(timespec="seconds"),
            "host": platform.node(),
            "loaded_from": parent,
        }
        meta.update(extra or {})
        atomic_write_text(self.path / "meta.yaml", yaml.safe_dump(meta, sort_keys=False))
        return meta

    def note_resume(self, *, device: torch.device, world_size: int, overrides: dict | None = None) -> None:
        """Append this invocation to meta.yaml's ``resumed`` list (the original entries stay).

        ``config.yaml`` keeps describing the run's first part; each resume's config overrides
        are recorded here and re-applied by later resumes (:meth:`resume_overrides`)."""
        meta = self.read_meta()
        meta.setdefault("resumed", []).append({
            "when": _dt.datetime.now().isoformat(timespec="seconds"), "command": " ".join(sys.argv),
            "device": str(device), "world_size": world_size, "git_revision": git_revision()[0],
            "overrides": {k: (list(v) if isinstance(v, tuple) else v) for k, v in (overrides or {}).items()}})
        atomic_write_text(self.path / "meta.yaml", yaml.safe_dump(meta, sort_keys=False))

    def read_meta(self) -> dict[str, Any]:
        p = self.path / "meta.yaml"
        return _read_yaml(p) if p.is_file() else {}

    def resume_overrides(self) -> dict[str, Any]:
        """The config overrides of every earlier ``--resume`` of this run, in order, merged."""
        merged: dict[str, Any] = {}
        for entry in self.read_meta().get("resumed") or []:
            if isinstance(entry, dict):
                merged.update(entry.get("overrides") or {})
        return merged

    # checkpoints -----------------------------------------------------------
    @property
    def last_checkpoint(self) -> Path:
        return self.checkpoints / "last.pt"

    @property
    def best_checkpoint(self) -> Path:
        return self.checkpoints / "best.pt"


MAX_RUN_NAME = 200  # bytes; leaves room for "-N" suffixes under the usual 255-byte limit


def check_run_name(name: str) -> None:
    """A plain folder name of at most :data:`MAX_RUN_NAME` bytes."""
    if "/" in name or "\0" in name or name in ("", ".", ".."):
        raise UserError(f"--run_name: must be a plain folder name, got {name!r}")
    bad = sorted({c for c in name if unicodedata.category(c) in ("Cc", "Cs", "Zl", "Zp")})
    if bad:
        raise UserError(f"--run_name: control character(s) {', '.join(repr(c) for c in bad)} in {name!r}; "
                        "use letters, digits, '-', '_' or '.'")
    if len(name.encode(errors="surrogatepass")) > MAX_RUN_NAME:
        raise UserError(f"--run_name: at most {MAX_RUN_NAME} bytes, got {len(name.encode())}")


def check_out_dir(out: Path) -> None:
    """``--out_dir`` must be a folder we can write in (or one we can create)."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out_dir: {out} exists and is not a folder")
    probe = out
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise UserError(f"--out_dir: {probe} is not writable")


def _read_yaml(path: Path) -> dict[str, Any]:
    """A YAML mapping from a run's file; unreadable or malformed is a one-line UserError."""
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read {path}: {exc}") from None
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0] if str(exc) else "invalid YAML"
        raise UserError(f"{path} is not valid YAML ({first}); restore it from the run's first command") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"{path} must hold a mapping, got {type(data).__name__}")
    return data


def resolve_checkpoint(target: str | Path, prefer: str = "best") -> Path:
    """Find the checkpoint meant by ``--load_model``: a ``.pt`` file or a run folder.

    For a run folder, ``checkpoints/best.pt`` is used when it exists (``prefer='best'``),
    else ``checkpoints/last.pt``.
    """
    p = Path(target)
    if p.is_file():
        return p
    if p.is_dir():
        order = ("best.pt", "last.pt") if prefer == "best" else ("last.pt", "best.pt")
        for name in order:
            if (p / "checkpoints" / name).is_file():
                return p / "checkpoints" / name
        raise UserError(f"--load_model: run {p} has no checkpoints/best.pt or checkpoints/last.pt")
    raise UserError(f"--load_model: no such run folder or checkpoint file: {p}")
