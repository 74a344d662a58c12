"""Data sets by name: torchvision's real loaders plus embedded sets that work offline.

Real sets are read from ``--data_root`` (default ``./data``) in torchvision's own layout;
they are downloaded only with ``--download``. A missing set raises
:class:`core.errors.DatasetUnavailable`, whose message names the set, the path looked at
and how to obtain it.

Embedded sets need no download:

* ``natural_patches`` -- patches cut from the photographs that scikit-image ships
  (camera, astronaut, coffee, chelsea, rocket, grass, gravel, brick), grey or colour, with
  optional whitening; returned as tensors ``(n, channels, size, size)``.
* ``digits`` -- scikit-learn's 1,797 handwritten digits (8x8, 10 classes) upsampled
  bilinearly to ``size`` x ``size``; ``(n, 1, size, size)`` in [0, 1] and labels ``(n,)``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from core.errors import DatasetUnavailable, UserError

NATURAL_IMAGES = ("camera", "astronaut", "coffee", "chelsea", "rocket", "grass", "gravel", "brick")

_TV = {
    "mnist": ("MNIST", "MNIST/raw"),
    "fashion_mnist": ("FashionMNIST", "FashionMNIST/raw"),
    "cifar10": ("CIFAR10", "cifar-10-batches-py"),
    "cifar100": ("CIFAR100", "cifar-100-python"),
}


def _torchvision_set(name: str, root: Path, train: bool, download: bool, transform):
    import torchvision

    cls_name, sub = _TV[name]
    cls = getattr(torchvision.datasets, cls_name)
    try:
        return cls(str(root), train=train, download=download, transform=transform)
    except RuntimeError as exc:
        if "not found" in str(exc).lower() or "corrupted" in str(exc).lower():
            raise DatasetUnavailable(
                name, str(root / sub),
                f"Run again with --download (needs internet) or copy torchvision's {cls_name} "
                f"files into {root}.") from None
        raise


def _imagefolder(root: Path, train: bool, transform):
    import torchvision

    split = root / "imagenet" / ("train" if train else "val")
    if not split.is_dir() or not any(split.iterdir()):
        raise DatasetUnavailable(
            "imagenet", str(split),
            "ImageNet cannot be downloaded automatically: unpack ILSVRC2012 train/val into "
            f"{root / 'imagenet'}/{{train,val}}/<class>/<image> (one folder per class).")
    return torchvision.datasets.ImageFolder(str(split), transform=transform)


REAL_DATASETS = tuple(_TV) + ("imagenet",)
EMBEDDED_DATASETS = ("natural_patches", "digits")


def load_real(name: str, root: str | Path = "data", *, train: bool = True, download: bool = False,
              transform: Callable | None = None):
    """A torchvision data set (``mnist``, ``fashion_mnist``, ``cifar10``, ``cifar100``, ``imagenet``)."""
    import torchvision.transforms as T

    transform = transform or T.ToTensor()
    root = Path(root)
    if name in _TV:
        return _torchvision_set(name, root, train, download, transform)
    if name == "imagenet":
        return _imagefolder(root, train, transform)
    raise UserError(f"unknown data set {name!r}; known: {', '.join(REAL_DATASETS + EMBEDDED_DATASETS)}")


def _grey(img: np.ndarray) -> np.ndarray:
    if img.ndim == 2:
        return img
    return img[..., :3] @ np.array([0.299, 0.587, 0.114])


def natural_photographs(colour: bool = False) -> list[np.ndarray]:
    """scikit-image's bundled photographs as float arrays in [0, 1]: ``(H, W)`` or ``(H, W, 3)``."""
    import skimage.data

    out = []
    for name in NATURAL_IMAGES:
        img = np.asarray(getattr(skimage.data, name)(), dtype=np.float64) / 255.0
        if colour:
            img = np.repeat(img[..., None], 3, axis=-1) if img.ndim == 2 else img[..., :3]
        else:
            img = _grey(img)
        out.append(img)
    return out


def whiten_patches(x: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """ZCA-whiten flattened patches: zero mean, covariance ~ identity.

    ``eps`` (relative to the mean eigenvalue of the pixel covariance) regularises the
    smallest eigen-directions so that noise is not blown up.

    ``x``: ``(n, c, h, w)``; returns the same shape.
    """
    n = x.shape[0]
    flat = x.reshape(n, -1).double()
    flat = flat - flat.mean(0, keepdim=True)
    cov = flat.T @ flat / max(n - 1, 1)
    evals, evecs = torch.linalg.eigh(cov)
    zca = evecs @ torch.diag((evals.clamp_min(0) + eps * evals.mean()).rsqrt()) @ evecs.T
    return (flat @ zca).reshape(x.shape).to(x.dtype)


def natural_patches(n: int = 1024, size: int = 16, *, colour: bool = False, whiten: str = "none",
                    seed: int = 0, standardise: bool = True) -> torch.Tensor:
    """Random patches of scikit-image's photographs.

    Args:
        n: number of patches.
        size: side length in pixels.
        colour: RGB patches (3 channels) instead of grey (1 channel).
        whiten: ``none``, ``zca`` (decorrelate pixels) or ``center`` (subtract each patch's mean).
        seed: which patches are cut.
        standardise: scale the set to zero mean and unit variance (before whitening).
    Returns:
        float32 tensor ``(n, channels, size, size)``.
    """
    if whiten not in ("none", "zca", "center"):
        raise UserError(f"natural_patches: whiten must be one of none, zca, center; got {whiten!r}")
    if size < 2 or n < 1:
        raise UserError("natural_patches: need size >= 2 and n >= 1")
    photos = natural_photographs(colour)
    rng = np.random.default_rng(seed)
    which = rng.integers(len(photos), size=n)
    patches = np.empty((n, size, size, 3 if colour else 1), dtype=np.float32)
    for i, k in enumerate(which):
        img = photos[k]
        r = rng.integers(img.shape[0] - size + 1)
        c = rng.integers(img.shape[1] - size + 1)
        p = img[r:r + size, c:c + size]
        patches[i] = p if colour else p[..., None]
    x = torch.from_numpy(patches).permute(0, 3, 1, 2).contiguous()
    if standardise:
        x = (x - x.mean()) / x.std().clamp_min(1e-8)
    if whiten == "zca":
        x = whiten_patches(x)
    elif whiten == "center":
        x = x - x.mean(dim=(1, 2, 3), keepdim=True)
    return x


def digits(size: int = 28) -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's handwritten digits upsampled to ``size`` x ``size``.

    Returns ``(images (1797, 1, size, size) float32 in [0, 1], labels (1797,) int64)``.
    """
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.from_numpy(d.images.astype(np.float32) / 16.0)[:, None]
    if size != 8:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False).clamp(0, 1)
    return x, torch.from_numpy(d.target.astype(np.int64))


def tensors_of(dataset, limit: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack a (small) map-style data set into ``(images, labels)`` tensors."""
    n = len(dataset) if limit is None else min(limit, len(dataset))
    xs, ys = zip(*(dataset[i] for i in range(n)))
    return torch.stack(xs), torch.as_tensor(ys)


def epoch_batch_indices(n: int, batch_size: int, step: int, seed: int, rank: int = 0,
                        world_size: int = 1) -> torch.Tensor:
    """Indices of training step ``step``'s batch for this rank, a pure function of its arguments.

    Each epoch is a fresh permutation of ``range(n)`` seeded by ``(seed, epoch)``; the global
    batch of ``batch_size * world_size`` is split between ranks. Because nothing depends on
    iterator state, a resumed run sees exactly the batches an uninterrupted one would.
    """
    from core.runtime import derive_seed

    global_batch = batch_size * world_size
    per_epoch = max(n // global_batch, 1)
    epoch, k = divmod(step, per_epoch)
    g = torch.Generator().manual_seed(derive_seed(seed, "epoch", epoch))
    perm = torch.randperm(n, generator=g)
    start = (k * global_batch + rank * batch_size) % n
    idx = perm[start:start + batch_size]
    if idx.numel() < batch_size:  # tiny data sets: wrap around
        idx = torch.cat([idx, perm[: batch_size - idx.numel()]])
    return idx


def get_dataset(name: str, root: str | Path = "data", *, train: bool = True, download: bool = False,
                transform: Callable | None = None, **options):
    """Any registered data set by name, as a map-style ``Dataset`` of ``(image, label)``.

    Real sets: ``mnist``, ``fashion_mnist``, ``cifar10``, ``cifar100``, ``imagenet``.
    Embedded sets: ``digits`` (options: ``size``; ``train`` picks a fixed 80/20 split) and
    ``natural_patches`` (options as :func:`natural_patches`; labels are all 0).
    """
    if name in REAL_DATASETS:
        return load_real(name, root, train=train, download=download, transform=transform)
    if name == "digits":
        x, y = digits(size=options.pop("size", 28))
        order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
        cut = int(0.8 * len(y))
        keep = order[:cut] if train else order[cut:]
        return torch.utils.data.TensorDataset(x[keep], y[keep])
    if name == "natural_patches":
        x = natural_patches(seed=options.pop("seed", 0 if train else 1), **options)
        return torch.utils.data.TensorDataset(x, torch.zeros(len(x), dtype=torch.int64))
    raise UserError(f"unknown data set {name!r}; known: {', '.join(REAL_DATASETS + EMBEDDED_DATASETS)}")
