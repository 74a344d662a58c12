"""TensorBoard and figure/table output, written by rank 0 only.

:class:`RunLogger` wraps a :class:`torch.utils.tensorboard.SummaryWriter` (events in
``RUN/tb``) and saves figures as PNG and tables as CSV inside the run directory. On ranks
other than 0 every method does nothing, so callers need no ``if rank == 0``.
"""
from __future__ import annotations

import io
import os
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

os.environ.setdefault("MPLBACKEND", "Agg")

from core.checkpoint import atomic_write_bytes, atomic_write_text  # noqa: E402

_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def to_numpy(x) -> np.ndarray:
    """A tensor (any device, with or without grad) or array-like as a NumPy array."""
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def safe_name(name: str) -> str:
    """A file-name-safe version of a figure/table name (``a/b c`` -> ``a_b_c``)."""
    return _SAFE.sub("_", name).strip("_") or "unnamed"


def figure_to_png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return buf.getvalue()


def png_to_chw(png: bytes) -> np.ndarray:
    import matplotlib.image as mpimg

    img = mpimg.imread(io.BytesIO(png), format="png")  # (H, W, 4) float in [0, 1]
    return np.ascontiguousarray(img[..., :3].transpose(2, 0, 1))


class RunLogger:
    """Scalars, images, histograms to TensorBoard; PNG figures and CSV tables to disk."""

    def __init__(self, run, enabled: bool = True):
        self.run = run
        self.enabled = enabled and run is not None
        self._writer = None

    @property
    def writer(self):
        if self._writer is None and self.enabled:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(log_dir=str(self.run.tb))
        return self._writer

    def scalars(self, values: Mapping[str, Any], step: int, prefix: str = "") -> None:
        if not self.enabled:
            return
        for k, v in values.items():
            if isinstance(v, torch.Tensor):
                if v.numel() != 1:
                    continue
                v = v.item()
            if isinstance(v, (int, float, np.floating, np.integer)) and not isinstance(v, bool):
                self.writer.add_scalar(f"{prefix}{k}", float(v), step)

    def histograms(self, named_tensors, step: int, prefix: str = "params/") -> None:
        if not self.enabled:
            return
        for name, t in named_tensors:
            t = t.detach()
            if t.numel() and torch.isfinite(t).all():
                self.writer.add_histogram(prefix + name, t.float().cpu(), step)

    def image(self, name: str, image, step: int) -> None:
        """``image``: a tensor (C, H, W) in [0, 1] or a matplotlib Figure."""
        if not self.enabled:
            return
        if hasattr(image, "savefig"):
            self.writer.add_image(name, png_to_chw(figure_to_png(image)), step)
        else:
            self.writer.add_image(name, torch.as_tensor(image).detach().float().cpu().clamp(0, 1), step)

    def figure(self, name: str, fig, step: int = 0, subdir: str = "") -> Path | None:
        """Save ``fig`` as ``RUN/figures/[subdir/]name.png`` and to TensorBoard; closes it."""
        import matplotlib.pyplot as plt

        if not self.enabled:
            plt.close(fig)
            return None
        png = figure_to_png(fig)
        plt.close(fig)
        path = self.run.figures / subdir / f"{safe_name(name)}.png"
        atomic_write_bytes(path, png)
        self.writer.add_image(f"{subdir + '/' if subdir else ''}{name}", png_to_chw(png), step)
        return path

    def animation(self, name: str, frames: Sequence[Any], subdir: str = "", ms_per_frame: int = 300
                  ) -> Path | None:
        """Save ``frames`` (``(H, W, 3)`` arrays in [0, 1]) as an animated
        ``RUN/figures/[subdir/]name.gif`` (looping) and the last one to TensorBoard."""
        if not self.enabled:
            return None
        from PIL import Image

        pics = [Image.fromarray((np.clip(np.asarray(f, dtype=np.float32), 0, 1) * 255).astype(np.uint8))
                for f in frames]
        buf = io.BytesIO()
        pics[0].save(buf, format="GIF", save_all=True, append_images=pics[1:], duration=ms_per_frame, loop=0)
        path = self.run.figures / subdir / f"{safe_name(name)}.gif"
        atomic_write_bytes(path, buf.getvalue())
        last = np.asarray(frames[-1], dtype=np.float32).transpose(2, 0, 1)
        self.writer.add_image(f"{subdir + '/' if subdir else ''}{name}", np.clip(last, 0, 1), 0)
        return path

    def table(self, name: str, frame, subdir: str = "") -> Path | None:
        """Save a pandas DataFrame as ``RUN/tables/[subdir/]name.csv``."""
        if not self.enabled:
            return None
        path = self.run.tables / subdir / f"{safe_name(name)}.csv"
        atomic_write_text(path, frame.to_csv(index=False))
        return path

    def append_row(self, name: str, row: Mapping[str, Any], subdir: str = "") -> Path | None:
        """Append one row (scalars only) to ``RUN/tables/[subdir/]name.csv`` (atomic rewrite).

        A row whose ``step`` is already in the table replaces it, so a resumed run that
        repeats an evaluation does not duplicate it. New columns are added as they appear.
        """
        if not self.enabled:
            return None
        import pandas as pd

        clean = {}
        for k, v in row.items():
            if isinstance(v, torch.Tensor):
                if v.numel() != 1:
                    continue
                v = v.item()
            if isinstance(v, (int, float, bool, str, np.floating, np.integer)):
                clean[k] = v
        path = self.run.tables / subdir / f"{safe_name(name)}.csv"
        frame = pd.DataFrame([clean])
        if path.exists():
            old = pd.read_csv(path)
            if "step" in clean and "step" in old:
                old = old[old["step"] != clean["step"]]
            frame = pd.concat([old, frame], ignore_index=True)
        atomic_write_text(path, frame.to_csv(index=False))
        return path

    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
