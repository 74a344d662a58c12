"""On-disk cache of pre-trained initial flows (the only file I/O of the dsn package).

An entry is ``{"state": flow state_dict, "kl": final KL, "settings": JSON text}`` saved
with :func:`torch.save` under ``<dir>/<key>.pt`` and read back with
``torch.load(weights_only=True)``, so a cache file cannot run code. Writes go to a
temporary file that is renamed into place, so concurrent runs never see half a file.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
from torch import Tensor

ENV_VAR = "DSN_INIT_CACHE"


def cache_key(**settings) -> str:
    """Stable hash of everything the pre-trained weights depend on (JSON of the settings)."""
    text = json.dumps(settings, sort_keys=True, default=lambda v: v.tolist() if hasattr(v, "tolist") else str(v))
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def cache_dir(setting: str, data_root: str | Path = "data") -> Path | None:
    """Where cached initialisations live: ``off`` -> None (no cache); ``auto`` -> $DSN_INIT_CACHE
    when set, else ``DATA_ROOT/cache/dsn_init`` (beside the data sets, never in the home
    folder); anything else is taken as a folder path."""
    if setting == "off":
        return None
    if setting == "auto":
        return Path(os.environ.get(ENV_VAR) or Path(data_root) / "cache" / "dsn_init")
    return Path(setting).expanduser()


def load_cached(path: Path) -> dict | None:
    """The cached entry at ``path`` (weights only), or None if absent or unreadable."""
    if not path.is_file():
        return None
    try:
        entry = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # a truncated or foreign file is ignored and rebuilt
        return None
    return entry if isinstance(entry, dict) and "state" in entry else None


def save_cached(path: Path, state: dict[str, Tensor], kl: float, settings: dict) -> None:
    """Write the entry atomically (temporary file + rename); concurrent writers are harmless."""
    from core.checkpoint import atomic_target

    entry = {"state": {k: v.detach().cpu() for k, v in state.items()}, "kl": float(kl),
             "settings": json.dumps(settings, sort_keys=True, default=str)}
    with atomic_target(path) as tmp:
        torch.save(entry, tmp)
