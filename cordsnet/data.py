"""Images for CordsNet: the published per-data-set transforms, CutMix/MixUp, and batches
that are pure functions of the training step.

Transforms (as published, with the resize following ``input_size``): ImageNet
``RandomResizedCrop + flip + RandAugment`` (test: resize 256/224 of the side, centre crop);
CIFAR ``resize + flip + RandAugment``; MNIST ``resize + affine(5 deg, 5 %, 0.95-1.05, shear 5)
+ colour jitter 0.1 + elastic (alpha 20, sigma 5)``; Fashion-MNIST ``resize + flip + affine
+ jitter``; then normalisation by the data set's mean and std. CutMix or MixUp (one of
the two per batch, at random, Beta(1, 1) mixing) on Fashion-MNIST and CIFAR.

Every random draw of a sample is seeded by ``(seed, step, position in the global batch)``
and every batch-level draw (CutMix/MixUp, on each rank's share) by the step's generator, so
a resumed run sees the very batches an uninterrupted one would, also with loader worker
processes, and the ranks of a run draw the samples one process would.
"""
from __future__ import annotations

import functools
from typing import Callable, Iterator, Sequence

import torch
import torch.nn.functional as F

from core.data import digits, epoch_batch_indices, get_dataset
from core.runtime import derive_seed

#: per-data-set channel mean and std used by the published normalisation
STATS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "mnist": ((0.1307,), (0.3081,)),
    "fashion_mnist": ((0.2860,), (0.3530,)),
}
MIXED = ("fashion_mnist", "cifar10", "cifar100")  # where the source mixes batches


def eval_resize(name: str, size: int) -> int:
    """The side the shorter image side is resized to before the centre crop to ``size`` in the
    published test transform (and ``process_image``): ImageNet 256 for 224 (``round(size * 256 / 224)``),
    every other set ``size``."""
    return round(size * 256 / 224) if name == "imagenet" else size


def image_transform(name: str, size: int, train: bool, augment: bool = True) -> Callable:
    """The published torchvision (v2) pipeline for data set ``name`` at side ``size``."""
    from torchvision.transforms import v2

    mean, std = STATS[name]
    to_float = [v2.ToImage(), v2.ToDtype(torch.float32, scale=True)]
    norm = [v2.Normalize(mean=list(mean), std=list(std))]
    if name == "imagenet":
        if train and augment:
            return v2.Compose([v2.RandomResizedCrop(size), v2.RandomHorizontalFlip(), *to_float,
                               v2.RandAugment(), *norm])
        return v2.Compose([v2.Resize(eval_resize(name, size)), v2.CenterCrop(size), *to_float, *norm])
    aug: list = []
    if train and augment:
        if name in ("cifar10", "cifar100"):
            aug = [v2.RandomHorizontalFlip(), *to_float, v2.RandAugment()]
        elif name == "mnist":
            aug = [*to_float, v2.RandomAffine(degrees=5, translate=(0.05, 0.05), scale=(0.95, 1.05), shear=5),
                   v2.ColorJitter(brightness=0.1, contrast=0.1), v2.ElasticTransform(alpha=20.0, sigma=5.0)]
        elif name == "fashion_mnist":
            aug = [v2.RandomHorizontalFlip(), *to_float,
                   v2.RandomAffine(degrees=5, translate=(0.05, 0.05), scale=(0.95, 1.05), shear=5),
                   v2.ColorJitter(brightness=0.1, contrast=0.1)]
    if not any(isinstance(t, v2.ToDtype) for t in aug):
        aug = [*aug, *to_float]
    return v2.Compose([v2.Resize(size), v2.CenterCrop(size), *aug, *norm])


class SeededSamples(torch.utils.data.Dataset):
    """``dataset[(seed, index)]``: the transformed sample ``index`` with torch's RNG seeded by
    ``seed`` first, so random augmentation is a pure function of ``seed`` in any process."""

    def __init__(self, dataset, transform: Callable):
        self.dataset, self.transform = dataset, transform

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]):
        seed, index = key
        image, label = self.dataset[index]
        torch.manual_seed(seed)
        return self.transform(image), label


class StepBatches(torch.utils.data.Sampler):
    """Batch sampler: for each step from ``start``, the ``(sample seed, index)`` keys of that
    step's batch on this rank (indices from :func:`core.data.epoch_batch_indices`).

    ``batch_size`` is the rank's share of the global batch ``batch_size * world_size``; a
    sample's seed follows its position in the global batch, so the ranks of a run together
    draw the very samples, augmented alike, that one process drawing the global batch would."""

    def __init__(self, n: int, batch_size: int, seed: int, start: int, stop: int, rank: int = 0,
                 world_size: int = 1):
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.start, self.stop, self.rank, self.world_size = start, stop, rank, world_size

    def __len__(self) -> int:
        return max(0, self.stop - self.start)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for step in range(self.start, self.stop):
            idx = epoch_batch_indices(self.n, self.batch_size, step, self.seed, self.rank, self.world_size)
            first = self.rank * self.batch_size  # this rank's place in the global batch
            yield [(derive_seed(self.seed, "sample", step, 0, first + k) % 2**63, int(i))
                   for k, i in enumerate(idx.tolist())]


def _as_loaded(image):
    return image


def real_dataset(name: str, root, size: int, train: bool, augment: bool, download: bool):
    """A torchvision data set with the published transform, indexable by ``(seed, index)``."""
    base = get_dataset(name, root, train=train, download=download, transform=_as_loaded)
    return SeededSamples(base, image_transform(name, size, train, augment))


@functools.lru_cache(maxsize=4)
def _digits_split(size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The embedded digits at ``size`` px in [0, 1], their labels, and the fixed 80/20 split's
    training and test indices (computed once per size)."""
    x, y = digits(size=size)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    cut = int(0.8 * len(y))
    return x, y, order[:cut], order[cut:]


def channel_stats(name: str, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std ``(C, 1, 1)`` that normalise the model's inputs of data set ``name``
    (for ``digits``: of its training split at ``size`` px)."""
    if name == "digits":
        x, _, train, _ = _digits_split(size)
        return x[train].mean().view(1, 1, 1), x[train].std().view(1, 1, 1)
    mean, std = STATS[name]
    return torch.tensor(mean).view(-1, 1, 1), torch.tensor(std).view(-1, 1, 1)


def embedded_digits(size: int, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The embedded digits at ``size`` px, normalised by the training split's mean and std:
    ``(n, 1, size, size)`` and labels ``(n,)`` (a fixed 80/20 train/test split)."""
    x, y, train_idx, test_idx = _digits_split(size)
    keep = train_idx if train else test_idx
    mean, std = channel_stats("digits", size)
    return (x[keep] - mean) / std, y[keep]


def one_hot(labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Integer labels ``(B,)`` -> probabilities ``(B, K)``; soft labels pass through."""
    if labels.dim() == 2:
        return labels.float()
    return F.one_hot(labels.long(), n_classes).float()


def mix_batch(images: torch.Tensor, labels: torch.Tensor, n_classes: int, generator: torch.Generator
              ) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """CutMix or MixUp (one at random, each with probability 1/2) of a batch ``(B, C, H, W)``
    with itself rolled by one (torchvision's pairing: sample ``i`` with sample ``i - 1``, the
    first with the last), mixing weight ``lam ~ Beta(1, 1)`` (torchvision's default). For
    ``B >= 2`` no sample is paired with itself; a batch of one is returned unmixed.

    MixUp: ``x = lam x + (1 - lam) x[pair]``. CutMix: a box of area ``(1 - lam) H W`` from
    ``x[pair]`` pasted in, ``lam`` then corrected to the box actually pasted (clipped at the
    border). Labels become ``lam y + (1 - lam) y[pair]`` ``(B, K)``. Returns the mixed
    batch, the soft labels and ``{"kind", "lam", "pair"}`` (``pair``: ``(B,)`` partner indices).
    """
    b, _, h, w = images.shape
    dev = images.device
    y = one_hot(labels, n_classes).to(dev)
    u = torch.rand(3, generator=generator, device=generator.device).cpu()
    pair = torch.arange(b, device=dev).roll(1)  # x.roll(1, 0)[i] = x[i - 1], as torchvision
    lam = float(u[0])  # Beta(1, 1) is uniform
    if b < 2:
        return images, y, {"kind": "none", "lam": 1.0, "pair": pair}
    if u[1] < 0.5:
        x = lam * images + (1 - lam) * images[pair]
        kind = "mixup"
    else:
        cut = (1 - lam) ** 0.5
        ch, cw = int(h * cut), int(w * cut)
        cy = int(torch.randint(h, (1,), generator=generator, device=generator.device))
        cx = int(torch.randint(w, (1,), generator=generator, device=generator.device))
        y0, y1 = max(cy - ch // 2, 0), min(cy + ch // 2, h)
        x0, x1 = max(cx - cw // 2, 0), min(cx + cw // 2, w)
        x = images.clone()
        x[:, :, y0:y1, x0:x1] = images[pair][:, :, y0:y1, x0:x1]
        lam = 1 - (y1 - y0) * (x1 - x0) / (h * w)
        kind = "cutmix"
    return x, lam * y + (1 - lam) * y[pair], {"kind": kind, "lam": lam, "pair": pair}


def uses_mixing(dataset: str, setting: str) -> bool:
    return setting == "on" or (setting == "auto" and dataset in MIXED)

