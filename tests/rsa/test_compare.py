"""RDM similarity measures, bootstrap CIs and linear CKA against independent computations."""
import itertools

import numpy as np
import pytest
import torch
from scipy.stats import pearsonr, spearmanr

from rsa.compare import (average_ranks, bootstrap_rdm_similarity, kendall_tau_a, linear_cka,
                         rdm_similarity, vector_similarity)
from rsa.rdm import rdm, upper_tri


def _rdms(seed=0, S=25):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(S, 60))
    b = a @ rng.normal(size=(60, 40)) * 0.3 + rng.normal(size=(S, 40))
    return rdm(torch.from_numpy(a)), rdm(torch.from_numpy(b))


def _tau_a_direct(x, y):
    """O(n^2) count of concordant minus discordant pairs over all pairs."""
    n = len(x)
    s = sum(np.sign(x[i] - x[j]) * np.sign(y[i] - y[j]) for i, j in itertools.combinations(range(n), 2))
    return s / (n * (n - 1) / 2)


def test_pearson_and_spearman_on_upper_triangle():
    ra, rb = _rdms()
    iu = np.triu_indices(ra.shape[0], k=1)
    va, vb = ra.numpy()[iu], rb.numpy()[iu]
    assert abs(rdm_similarity(ra, rb, "pearson").item() - pearsonr(va, vb).statistic) < 1e-10
    assert abs(rdm_similarity(ra, rb, "spearman").item() - spearmanr(va, vb).statistic) < 1e-10


def test_against_rsatoolbox_compare():
    from rsatoolbox.rdm import RDMs, compare

    ra, rb = _rdms(1)
    A, B = RDMs(ra.numpy()[None]), RDMs(rb.numpy()[None])
    for ours, theirs in (("pearson", "corr"), ("spearman", "spearman"), ("kendall_tau_a", "tau-a")):
        ref = float(compare(A, B, method=theirs)[0, 0])
        assert abs(rdm_similarity(ra, rb, ours).item() - ref) < 1e-6, ours


@pytest.mark.parametrize("ties", [False, True])
def test_kendall_tau_a_equals_direct_count(ties):
    rng = np.random.default_rng(3)
    n = 120
    if ties:  # many ties in both vectors: tau-a differs from tau-b here
        x, y = rng.integers(0, 5, n).astype(float), rng.integers(0, 4, n).astype(float)
        y[:60] = x[:60]
    else:
        x = rng.normal(size=n)
        y = x + rng.normal(size=n)
    got = kendall_tau_a(torch.from_numpy(x), torch.from_numpy(y))
    assert abs(got - _tau_a_direct(x, y)) < 1e-10
    assert kendall_tau_a(torch.ones(10), torch.arange(10.0)) == 0.0


def test_average_ranks_with_ties():
    r = average_ranks(torch.tensor([[3.0, 1.0, 3.0, 2.0]]))
    assert r.tolist() == [[3.5, 1.0, 3.5, 2.0]]


def test_batched_similarity_equals_pairwise():
    ra, rb = _rdms(2)
    _, rc = _rdms(4)
    both = torch.stack([rb, rc])
    for method in ("pearson", "spearman", "kendall_tau_a"):
        got = vector_similarity(upper_tri(ra)[None], upper_tri(both), method)
        ref = [rdm_similarity(ra, rb, method).item(), rdm_similarity(ra, rc, method).item()]
        np.testing.assert_allclose(got.numpy(), ref, atol=1e-12)


def test_bootstrap_ci_brackets_value_and_is_seeded():
    ra, rb = _rdms(5, S=30)
    _, rc = _rdms(6, S=30)
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    res = bootstrap_rdm_similarity(ra, torch.stack([rb, rc, ra]), "pearson", n_boot=200, generator=g())
    again = bootstrap_rdm_similarity(ra, torch.stack([rb, rc, ra]), "pearson", n_boot=200, generator=g())
    assert torch.equal(res["samples"], again["samples"])
    assert (res["low"] <= res["high"]).all()
    assert res["low"][0] < res["value"][0] < res["high"][0]
    # an RDM compared with itself: every resample gives exactly 1
    assert torch.allclose(res["samples"][:, 2], torch.ones(200, dtype=torch.float64))
    assert res["high"][0] - res["low"][0] > 0.01


def test_linear_cka_invariances_and_reference():
    rng = np.random.default_rng(7)
    x = rng.normal(size=(50, 30))
    y = x[:, :20] @ rng.normal(size=(20, 25)) + 0.5 * rng.normal(size=(50, 25))
    q, _ = np.linalg.qr(rng.normal(size=(30, 30)))
    c = linear_cka(x, y)
    assert abs(linear_cka(x, x) - 1) < 1e-12
    assert abs(linear_cka(x @ q, y) - c) < 1e-10          # orthogonal transform
    assert abs(linear_cka(3.7 * x, 0.2 * y) - c) < 1e-10  # isotropic scaling
    assert abs(linear_cka(x + 5.0, y) - c) < 1e-10        # constant offset per unit
    # feature-space formula of Kornblith et al. (2019)
    xc, yc = x - x.mean(0), y - y.mean(0)
    ref = np.linalg.norm(yc.T @ xc) ** 2 / (np.linalg.norm(xc.T @ xc) * np.linalg.norm(yc.T @ yc))
    assert abs(c - ref) < 1e-10
    assert abs(linear_cka(x, y, chunk=4) - c) < 1e-10
    assert linear_cka(x, rng.normal(size=(50, 25))) < c
