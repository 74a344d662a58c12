"""Numerical hardening of RDMs, RDM similarities and CKA, checked against closed forms and
numpy/scipy references: constant and NaN stimuli, float32 data with a large offset, tiny
stimulus sets, and CKA's chance level and debiased estimator."""
import itertools

import numpy as np
import pytest
import torch
from scipy.spatial.distance import pdist, squareform
from scipy.stats import pearsonr, spearmanr

from rsa.rdm import rdm, upper_tri


def _tau_a_direct(x, y):
    n = len(x)
    s = sum(np.sign(x[i] - x[j]) * np.sign(y[i] - y[j]) for i, j in itertools.combinations(range(n), 2))
    return s / (n * (n - 1) / 2)


# --- item 7: constant but non-zero stimuli -----------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_constant_nonzero_stimulus_is_nan_for_any_value(dtype):
    rng = np.random.default_rng(0)
    values = np.concatenate([[0.1, 1 / 3, 2 / 3, 0.7, -2.5, 1e3 / 7, 1e-5 / 3], rng.uniform(-50, 50, 40)])
    base = rng.normal(size=(5, 3000)).astype(dtype)
    for c in values:
        x = base.copy()
        x[2] = c
        m = rdm(torch.from_numpy(x), "correlation", chunk=1024).numpy()
        assert np.isnan(m[2]).all() and np.isnan(m[:, 2]).all(), c
        rest = [0, 1, 3, 4]
        ref = 1 - np.corrcoef(base[rest].astype(np.float64))
        np.testing.assert_allclose(m[np.ix_(rest, rest)], ref, atol=2e-6 if dtype == np.float32 else 1e-12)


def test_small_but_real_variation_on_a_large_offset_is_not_constant():
    rng = np.random.default_rng(1)
    x = (1000.0 + 1e-2 * rng.normal(size=(6, 4000))).astype(np.float32)  # sd / mean = 1e-5
    m = rdm(torch.from_numpy(x), "correlation").numpy()
    assert np.isfinite(m).all()
    np.testing.assert_allclose(m, 1 - np.corrcoef(x.astype(np.float64)), atol=1e-4)


def test_nan_stimulus_gets_nan_row_and_does_not_touch_the_others():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(6, 500))
    y = x.copy()
    y[3, 17] = np.nan
    for metric in ("correlation", "euclidean", "cosine"):
        m = rdm(torch.from_numpy(y), metric, chunk=128).numpy()
        assert np.isnan(m[3]).all() and np.isnan(m[:, 3]).all(), metric
        keep = [0, 1, 2, 4, 5]
        np.testing.assert_allclose(m[np.ix_(keep, keep)], squareform(pdist(x[keep], metric)), atol=1e-10)


# --- item 8: float32 data with a large offset -----------------------------------------------
def test_float32_rdms_with_large_offset_match_float64():
    rng = np.random.default_rng(3)
    x32 = (10.0 + 0.01 * rng.normal(size=(40, 20000))).astype(np.float32)
    x64 = x32.astype(np.float64)
    iu = np.triu_indices(40, 1)
    for metric in ("euclidean", "cosine", "correlation"):
        ref = pdist(x64, metric)
        got = rdm(torch.from_numpy(x32), metric).numpy()
        assert got.dtype == np.float32
        rel = np.abs(got[iu] - ref) / np.abs(ref)
        assert rel.max() < 1e-4, (metric, rel.max())
    # a per-unit offset as well (unit baselines differ, stimulus effects are small)
    y32 = (rng.normal(10, 1, size=(1, 20000)) + 0.01 * rng.normal(size=(40, 20000))).astype(np.float32)
    for metric in ("euclidean", "cosine", "correlation"):
        ref = pdist(y32.astype(np.float64), metric)
        rel = np.abs(rdm(torch.from_numpy(y32), metric).numpy()[iu] - ref) / ref
        assert rel.max() < 1e-3, (metric, rel.max())


def test_float32_cka_with_large_offset_matches_float64():
    from rsa.compare import linear_cka

    rng = np.random.default_rng(4)
    signal = rng.normal(size=(50, 8))
    x = 10.0 + 0.01 * (signal @ rng.normal(size=(8, 20000)) + rng.normal(size=(50, 20000)))
    y = 10.0 + 0.01 * (signal @ rng.normal(size=(8, 300)) + rng.normal(size=(50, 300)))
    xc, yc = x - x.mean(0), y - y.mean(0)
    k, l_ = xc @ xc.T, yc @ yc.T  # float64 reference
    ref = (k * l_).sum() / (np.linalg.norm(k) * np.linalg.norm(l_))
    got = linear_cka(torch.from_numpy(x.astype(np.float32)), torch.from_numpy(y.astype(np.float32)))
    assert abs(got - ref) < 1e-4, (got, ref)


# --- item 6: NaN-aware similarity measures --------------------------------------------------
def test_similarities_drop_nan_pairs_and_match_scipy_on_the_rest():
    from rsa.compare import finite_pairs, kendall_tau_a, vector_similarity

    rng = np.random.default_rng(5)
    a = rng.normal(size=60)
    b = a + rng.normal(size=60)
    a[[3, 10]] = np.nan
    b[[10, 41, 42]] = np.nan
    ok = np.isfinite(a) & np.isfinite(b)
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    assert int(finite_pairs(ta, tb)) == ok.sum() == 56
    assert abs(vector_similarity(ta, tb, "pearson").item() - pearsonr(a[ok], b[ok]).statistic) < 1e-12
    # NaNs ranked as the largest values would give a different, finite Spearman
    assert abs(vector_similarity(ta, tb, "spearman").item() - spearmanr(a[ok], b[ok]).statistic) < 1e-12
    assert abs(vector_similarity(ta, tb, "kendall_tau_a").item() - _tau_a_direct(a[ok], b[ok])) < 1e-12
    assert abs(kendall_tau_a(ta, tb) - _tau_a_direct(a[ok], b[ok])) < 1e-12
    # batched with different NaN positions per row = row by row
    both = torch.stack([tb, torch.from_numpy(rng.normal(size=60))])
    for method in ("pearson", "spearman", "kendall_tau_a"):
        got = vector_similarity(ta[None], both, method).numpy()
        ref = [vector_similarity(ta, both[k], method).item() for k in range(2)]
        np.testing.assert_allclose(got, ref, atol=1e-12)


def test_bootstrap_with_a_constant_stimulus_reports_dropped_pairs():
    from rsa.compare import bootstrap_rdm_similarity

    rng = np.random.default_rng(6)
    S = 20
    v1 = rng.normal(size=(S, 100))
    model = v1[:, :60] + 0.5 * rng.normal(size=(S, 60))
    model[4] = 0.25  # a constant stimulus: correlation distance undefined
    ra, rb = rdm(torch.from_numpy(v1)), rdm(torch.from_numpy(model))
    va, vb = upper_tri(ra).numpy(), upper_tri(rb).numpy()
    ok = np.isfinite(vb)
    assert (~ok).sum() == S - 1
    g = torch.Generator().manual_seed(0)
    for method, ref in (("pearson", pearsonr(va[ok], vb[ok]).statistic),
                        ("spearman", spearmanr(va[ok], vb[ok]).statistic),
                        ("kendall_tau_a", _tau_a_direct(va[ok], vb[ok]))):
        res = bootstrap_rdm_similarity(ra, rb[None], method, n_boot=100, generator=g)
        assert abs(res["value"][0].item() - ref) < 1e-12, method
        assert res["n_pairs_dropped"][0] == S - 1 and res["n_pairs"][0] == ok.sum()
        assert res["low"][0] < res["value"][0] < res["high"][0] and res["n_boot_valid"][0] == 100
    # a NaN value never comes with a finite CI (Pearson of a constant model RDM is undefined)
    flat = torch.ones(S, S, dtype=torch.float64).fill_diagonal_(0)
    for method in ("pearson", "spearman"):
        res = bootstrap_rdm_similarity(ra, flat[None], method, n_boot=50, generator=g)
        assert torch.isnan(res["value"][0]) and torch.isnan(res["low"][0]) and torch.isnan(res["high"][0])
    nan_rdm = torch.full((S, S), float("nan"), dtype=torch.float64)
    res = bootstrap_rdm_similarity(ra, nan_rdm[None], "kendall_tau_a", n_boot=50, generator=g)
    assert torch.isnan(res["value"][0]) and torch.isnan(res["low"][0]) and torch.isnan(res["high"][0])
    assert res["n_pairs"][0] == 0 and res["n_boot_valid"][0] == 0


# --- item 11: tiny stimulus sets ---------------------------------------------------------------
@pytest.mark.parametrize("S", [2, 3, 4, 5, 6])
@pytest.mark.parametrize("method", ["pearson", "spearman", "kendall_tau_a"])
def test_bootstrap_with_few_stimuli(S, method):
    from rsa.compare import MIN_BOOTSTRAP_STIMULI, bootstrap_rdm_similarity

    rng = np.random.default_rng(S)
    a, b = rng.normal(size=(S, 30)), rng.normal(size=(S, 30))
    ra, rb = rdm(torch.from_numpy(a)), rdm(torch.from_numpy(b))
    res = bootstrap_rdm_similarity(ra, rb[None], method, n_boot=200, generator=torch.Generator().manual_seed(0))
    va, vb = upper_tri(ra).numpy(), upper_tri(rb).numpy()
    if S < 3:  # one pair: no correlation
        assert torch.isnan(res["value"][0])
    else:
        ref = {"pearson": lambda: pearsonr(va, vb).statistic, "spearman": lambda: spearmanr(va, vb).statistic,
               "kendall_tau_a": lambda: _tau_a_direct(va, vb)}[method]()
        assert abs(res["value"][0].item() - ref) < 1e-12
    if S < MIN_BOOTSTRAP_STIMULI:
        assert torch.isnan(res["low"][0]) and torch.isnan(res["high"][0])
    else:
        assert res["low"][0] <= res["value"][0] <= res["high"][0] and res["low"][0] < res["high"][0]


# --- item 15: CKA's chance level and debiased estimator -----------------------------------------
def test_unbiased_hsic_equals_the_u_statistic_and_ignores_centring():
    from rsa.compare import centred_gram, hsic_unbiased

    rng = np.random.default_rng(7)
    n = 7
    x = rng.normal(size=(n, 4)) + 3
    y = x[:, :2] @ rng.normal(size=(2, 3)) + rng.normal(size=(n, 3)) - 2
    k, l_ = x @ x.T, y @ y.T
    # Song et al. (2012): the U-statistic over ordered 4-tuples of distinct indices
    terms = [k[i, j] * l_[i, j] + k[i, j] * l_[q, r] - 2 * k[i, j] * l_[i, q]
             for i, j, q, r in itertools.permutations(range(n), 4)]
    ref = np.mean(terms)
    assert abs(hsic_unbiased(torch.from_numpy(k), torch.from_numpy(l_)) - ref) < 1e-10
    got = hsic_unbiased(centred_gram(torch.from_numpy(x)), centred_gram(torch.from_numpy(y)))
    assert abs(got - ref) < 1e-10


def test_cka_chance_and_debiased_cka_on_independent_data():
    from rsa.compare import cka_report

    rng = np.random.default_rng(8)
    out = {}
    for S in (36, 181):
        x = rng.normal(size=(S, 200))
        ckas, debiased = [], []
        for t in range(40):
            rep = cka_report(x, rng.normal(size=(S, 300)), n_perm=20, generator=torch.Generator().manual_seed(t))
            ckas.append(rep["cka"])
            debiased.append(rep["cka_debiased"])
        chance = cka_report(x, rng.normal(size=(S, 300)), n_perm=200,
                            generator=torch.Generator().manual_seed(99))["cka_chance"]
        # the shuffled-stimulus chance level is the CKA that independent data reach
        assert abs(chance - np.mean(ckas)) < 0.01, (S, chance, np.mean(ckas))
        # the debiased estimator is ~0 for independent data whatever S
        assert abs(np.mean(debiased)) < 3 * np.std(debiased) / np.sqrt(len(debiased)) + 0.005, S
        out[S] = chance
    assert out[36] > out[181] + 0.2  # CKA's chance level depends on the number of stimuli
    x = rng.normal(size=(30, 20))
    same = cka_report(x, x @ np.linalg.qr(rng.normal(size=(20, 20)))[0], n_perm=10)
    assert abs(same["cka"] - 1) < 1e-12 and abs(same["cka_debiased"] - 1) < 1e-12


# --- issue 23 item 14: one outlying stimulus must not spoil the other distances ---------------
@pytest.mark.parametrize("scale", [1e3, 1e4, 1e5])
def test_euclidean_outlier_row_does_not_spoil_the_others(scale):
    rng = np.random.default_rng(14)
    x = rng.normal(size=(30, 5000)).astype(np.float32)
    x[7] *= scale
    got = rdm(torch.from_numpy(x), "euclidean", chunk=1024).numpy()
    ref = squareform(pdist(x.astype(np.float64), "euclidean"))
    off = ~np.eye(30, dtype=bool)
    rel = np.abs(got - ref)[off] / ref[off]
    assert rel.max() < 1e-5, rel.max()  # before: 8.7e-4, 6e-2, 2.6 for the other rows


def test_euclidean_near_duplicates_are_exact_and_huge_values_refused():
    rng = np.random.default_rng(15)
    x = (100.0 + rng.normal(size=(5, 3000))).astype(np.float32)
    x[1] = x[0]
    x[1, :10] += np.float32(1e-3)  # differs from row 0 by 1e-3 in 10 units among values of ~100
    got = rdm(torch.from_numpy(x), "euclidean").numpy()
    ref = squareform(pdist(x.astype(np.float64), "euclidean"))
    np.testing.assert_allclose(got[0, 1], ref[0, 1], rtol=1e-5)
    y = rng.normal(size=(4, 100)).astype(np.float32)
    y[2] *= 1e19  # finite, but its squares overflow float32
    with pytest.raises(ValueError, match="cannot be squared"):
        rdm(torch.from_numpy(y), "euclidean")
    ok = rdm(torch.from_numpy(y.astype(np.float64)), "euclidean").numpy()  # float64 has the room
    np.testing.assert_allclose(ok, squareform(pdist(y.astype(np.float64))), rtol=1e-12)
