"""RDMs against independent computations (numpy/scipy, rsatoolbox) on random data."""
import numpy as np
import pytest
import torch
from scipy.spatial.distance import pdist, squareform
from scipy.stats import zscore

from rsa.rdm import rdm, stimulus_gram, upper_tri, zscore_rows


@pytest.fixture
def resp():
    rng = np.random.default_rng(0)
    # heterogeneous scales and offsets per stimulus and unit
    return rng.normal(size=(40, 300)) * rng.uniform(0.5, 3, size=(40, 1)) + rng.normal(size=(1, 300))


def test_correlation_rdm_is_one_minus_pearson(resp):
    got = rdm(torch.from_numpy(resp), "correlation").numpy()
    np.testing.assert_allclose(got, 1 - np.corrcoef(resp), atol=1e-10)
    # the tutorial's formula: M = 1 - Z Z^T / N with rows z-scored over units
    z = zscore(resp, axis=1)
    np.testing.assert_allclose(got, 1 - z @ z.T / resp.shape[1], atol=1e-10)
    np.testing.assert_allclose(zscore_rows(torch.from_numpy(resp)).numpy(), z, atol=1e-12)


def test_correlation_rdm_matches_rsatoolbox(resp):
    from rsatoolbox.data import Dataset
    from rsatoolbox.rdm import calc_rdm

    ref = calc_rdm(Dataset(resp), method="correlation").get_matrices()[0]
    np.testing.assert_allclose(rdm(torch.from_numpy(resp)).numpy(), ref, atol=1e-6)


def test_euclidean_and_cosine_match_scipy_and_rsatoolbox(resp):
    from rsatoolbox.data import Dataset
    from rsatoolbox.rdm import calc_rdm

    eu = rdm(torch.from_numpy(resp), "euclidean").numpy()
    np.testing.assert_allclose(eu, squareform(pdist(resp, "euclidean")), atol=1e-8)
    # rsatoolbox's 'euclidean' is the squared distance divided by the number of channels
    ref = calc_rdm(Dataset(resp), method="euclidean").get_matrices()[0]
    np.testing.assert_allclose(eu ** 2 / resp.shape[1], ref, atol=1e-6)
    cos = rdm(torch.from_numpy(resp), "cosine").numpy()
    np.testing.assert_allclose(cos, squareform(pdist(resp, "cosine")), atol=1e-10)


@pytest.mark.parametrize("metric", ["correlation", "euclidean", "cosine"])
def test_chunking_numpy_input_and_float32(resp, metric):
    whole = rdm(torch.from_numpy(resp), metric)
    for chunk in (1, 7, 64, 10_000):
        np.testing.assert_allclose(rdm(resp, metric, chunk=chunk).numpy(), whole.numpy(), atol=1e-10)
    single = rdm(torch.from_numpy(resp).float(), metric, chunk=37)
    assert single.dtype == torch.float32
    np.testing.assert_allclose(single.numpy(), whole.numpy(), atol=5e-5 * max(1, whole.abs().max().item()))


def test_gram_centring(resp):
    gram, mean = stimulus_gram(resp, centre=True, chunk=50)
    c = resp - resp.mean(1, keepdims=True)
    np.testing.assert_allclose(gram.numpy(), c @ c.T, atol=1e-8)
    np.testing.assert_allclose(mean.numpy(), resp.mean(1), atol=1e-12)


def test_constant_stimulus_gives_nan_and_upper_tri():
    x = torch.randn(5, 20, dtype=torch.float64)
    x[2] = 1.0
    m = rdm(x)
    assert torch.isnan(m[2]).all() and torch.isnan(m[:, 2]).all()
    assert torch.isfinite(m[[0, 1, 3, 4]][:, [0, 1, 3, 4]]).all()
    tri = upper_tri(torch.arange(16.0).reshape(4, 4))
    assert tri.tolist() == [1, 2, 3, 6, 7, 11]
