"""Data registry on tiny sets written in torchvision's own on-disk format, and the embedded sets."""
import struct

import numpy as np
import pytest
import torch

from core import data
from core.errors import DatasetUnavailable, UserError


def _idx(path, arr):
    arr = np.asarray(arr, dtype=np.uint8)
    header = struct.pack(">BBBB", 0, 0, 0x08, arr.ndim) + b"".join(struct.pack(">I", d) for d in arr.shape)
    path.write_bytes(header + arr.tobytes())


def _write_mnist(root, folder="MNIST", n=6):
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, size=(n, 28, 28))
    labels = np.arange(n) % 10
    for split in ("train", "t10k"):
        _idx(raw / f"{split}-images-idx3-ubyte", imgs)
        _idx(raw / f"{split}-labels-idx1-ubyte", labels)
    return imgs, labels


def test_mnist_from_torchvision_layout(tmp_path):
    imgs, labels = _write_mnist(tmp_path)
    ds = data.load_real("mnist", tmp_path, train=True)
    assert len(ds) == 6
    x, y = data.tensors_of(ds)
    assert x.shape == (6, 1, 28, 28) and y.tolist() == labels.tolist()
    torch.testing.assert_close(x[2, 0], torch.from_numpy(imgs[2] / 255.0).float())
    fm = tmp_path / "fm"
    _write_mnist(fm, "FashionMNIST", n=3)
    assert len(data.load_real("fashion_mnist", fm, train=False)) == 3


def test_imagefolder_layout(tmp_path):
    from PIL import Image

    for cls in ("cat", "dog"):
        d = tmp_path / "imagenet" / "val" / cls
        d.mkdir(parents=True)
        for i in range(2):
            Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(d / f"{i}.png")
    ds = data.load_real("imagenet", tmp_path, train=False)
    assert len(ds) == 4 and ds.classes == ["cat", "dog"]


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist", "cifar10", "cifar100", "imagenet"])
def test_missing_set_says_what_where_and_how(tmp_path, name):
    with pytest.raises(DatasetUnavailable) as err:
        data.load_real(name, tmp_path / "empty", train=True)
    msg = str(err.value)
    assert name in msg and str(tmp_path / "empty") in msg
    assert "--download" in msg or "unpack" in msg
    assert isinstance(err.value, UserError)


def test_unknown_set():
    with pytest.raises(UserError, match="unknown data set 'nope'; known: mnist"):
        data.load_real("nope")


def test_natural_patches_options():
    x = data.natural_patches(n=300, size=8, seed=1)
    assert x.shape == (300, 1, 8, 8) and x.dtype == torch.float32
    assert abs(x.mean().item()) < 1e-4 and abs(x.std().item() - 1) < 1e-3
    # natural images: neighbouring pixels are strongly correlated
    assert torch.corrcoef(torch.stack([x[:, 0, :, 3].flatten(), x[:, 0, :, 4].flatten()]))[0, 1] > 0.7
    torch.testing.assert_close(x, data.natural_patches(n=300, size=8, seed=1))
    assert not torch.equal(x, data.natural_patches(n=300, size=8, seed=2))
    c = data.natural_patches(n=10, size=5, colour=True)
    assert c.shape == (10, 3, 5, 5)
    w = data.natural_patches(n=4000, size=4, whiten="zca", seed=0)
    flat = w.reshape(4000, -1).double()
    cov = torch.cov(flat.T)
    off = cov - torch.diag(torch.diag(cov))
    assert off.abs().max() < 0.05 and (torch.diag(cov) - 1).abs().max() < 0.1
    cen = data.natural_patches(n=20, size=4, whiten="center")
    torch.testing.assert_close(cen.mean(dim=(1, 2, 3)), torch.zeros(20), atol=1e-5, rtol=0)
    with pytest.raises(UserError, match="whiten must be one of"):
        data.natural_patches(whiten="pca")


def test_digits():
    x, y = data.digits(size=28)
    assert x.shape == (1797, 1, 28, 28) and y.shape == (1797,)
    assert set(y.tolist()) == set(range(10)) and 0 <= x.min() and x.max() <= 1
    x8, _ = data.digits(size=8)
    from sklearn.datasets import load_digits
    np.testing.assert_allclose(x8[:, 0].numpy(), load_digits().images / 16.0, rtol=1e-6)


def test_epoch_batches_are_pure_permutations_split_by_rank():
    n, b = 20, 4
    epoch = torch.cat([data.epoch_batch_indices(n, b, s, seed=0) for s in range(5)])
    assert sorted(epoch.tolist()) == list(range(20))  # one epoch = one permutation
    assert torch.equal(data.epoch_batch_indices(n, b, 7, seed=0), data.epoch_batch_indices(n, b, 7, seed=0))
    r0 = [data.epoch_batch_indices(n, b, s, 0, rank=0, world_size=2) for s in range(2)]
    r1 = [data.epoch_batch_indices(n, b, s, 0, rank=1, world_size=2) for s in range(2)]
    assert len(set(torch.cat(r0 + r1).tolist())) == 16  # ranks see disjoint samples


def test_get_dataset_dispatches_real_and_embedded(tmp_path):
    _write_mnist(tmp_path, n=4)
    assert len(data.get_dataset("mnist", tmp_path)) == 4
    tr, te = data.get_dataset("digits", size=8), data.get_dataset("digits", size=8, train=False)
    assert len(tr) + len(te) == 1797 and len(tr) == int(0.8 * 1797)
    x, y = tr[0]
    assert x.shape == (1, 8, 8) and 0 <= int(y) <= 9
    p = data.get_dataset("natural_patches", n=5, size=6)
    assert len(p) == 5 and p[0][0].shape == (1, 6, 6)
    with pytest.raises(UserError, match="known: mnist"):
        data.get_dataset("svhn")
