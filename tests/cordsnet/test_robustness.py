"""cordsnet.robustness against ground truth: the Wilson interval's closed form and exact
coverage, the bootstrap interval's coverage by simulation, the activation change of an
identity model in closed form, identical models under shared noise (difference exactly 0),
and a constructed pair where one model is known to be the more robust."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

from cordsnet import plots
from cordsnet.robustness import (Z95, bootstrap_indices, bootstrap_mean_ci, noise_responses, robustness_table,
                                 wilson_interval)


def test_wilson_interval_closed_form_and_exact_coverage():
    n, z2 = 10, Z95 ** 2
    lo, hi = wilson_interval(0, n)
    assert lo == 0 and hi == pytest.approx(z2 / (n + z2))
    lo, hi = wilson_interval(n, n)
    assert hi == pytest.approx(1) and lo == pytest.approx(n / (n + z2))
    # exact coverage: the binomial probability of the k whose interval holds p
    n = 200
    k = np.arange(n + 1)
    lo, hi = wilson_interval(k, n)
    for p in (0.5, 0.8, 0.9, 0.97):
        cover = stats.binom.pmf(k, n, p)[(lo <= p) & (p <= hi)].sum()
        assert 0.935 <= cover <= 0.975, (p, cover)  # the Wald interval fails here (0.927 at p = 0.9)


def test_bootstrap_interval_covers_the_true_mean_and_difference():
    """400 simulated data sets (n = 80, skewed): the 95 % percentile interval of a mean and of a
    paired difference holds the true value in 91-98 % of them (binomial sd 1.1 %)."""
    rng = np.random.default_rng(0)
    n, reps = 80, 400
    idx = bootstrap_indices(n, 1000, rng)
    hit_mean = hit_diff = 0
    for _ in range(reps):
        x = rng.exponential(2.0, n)                   # mean 2
        y = x + rng.normal(0.3, 1.0, n)               # paired with x; E[x - y] = -0.3
        _, lo, hi = bootstrap_mean_ci(x, idx)
        hit_mean += lo <= 2.0 <= hi
        _, lo, hi = bootstrap_mean_ci(x - y, idx)
        hit_diff += lo <= -0.3 <= hi
    assert 0.91 <= hit_mean / reps <= 0.98
    assert 0.91 <= hit_diff / reps <= 0.98


def _images(n=200, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    x = (2 * y - 1).double()[:, None, None, None] * 0.5 + 0.1 * torch.randn(n, 1, 8, 8, generator=g,
                                                                               dtype=torch.float64)
    z = torch.randn(x.shape, generator=g, dtype=torch.float64)
    return x, y, z


def test_identity_model_activation_change_closed_form():
    """Activity = pixels: change_i = s sigma ||z_i|| / D, D the RMS distance of the clean images
    from their mean image; chunked runs give the same numbers."""
    x, y, z = _images()

    def run(im):
        m = im.flatten(1).mean(1)
        return torch.stack([-m, m], 1), {"pixels": im}

    levels = [0.0, 0.5, 2.0]
    r = noise_responses(run, x, y, levels, z)
    flat = x.flatten(1)
    d = math.sqrt(((flat - flat.mean(0)) ** 2).sum(1).mean())
    sigma = float(x.std(unbiased=False))
    assert r.spread["pixels"] == pytest.approx(d, rel=1e-10)
    for li, s in enumerate(levels):
        np.testing.assert_allclose(r.change["pixels"][li], s * sigma * z.flatten(1).norm(dim=1).numpy() / d,
                                   rtol=1e-9, atol=1e-12)
    assert r.correct[0].all()                         # the clean answers are right
    r7 = noise_responses(run, x, y, levels, z, batch_size=7)
    np.testing.assert_allclose(r7.change["pixels"], r.change["pixels"], rtol=1e-12)
    np.testing.assert_array_equal(r7.correct, r.correct)


def _mean_model(im):       # reads the mean of 64 pixels: the noise is averaged down 8-fold
    m = im.flatten(1).mean(1)
    return torch.stack([-m, m], 1), {"readout": torch.stack([-m, m], 1)}


def _pixel_model(im):      # reads one pixel: the noise passes whole
    m = im.flatten(1)[:, 0]
    return torch.stack([-m, m], 1), {"readout": torch.stack([-m, m], 1)}


def test_the_known_more_robust_model_is_found_and_identical_models_tie():
    x, y, z = _images()
    levels = [0.0, 0.5, 1.0]
    a = noise_responses(_mean_model, x, y, levels, z)
    b = noise_responses(_pixel_model, x, y, levels, z)
    table = robustness_table({"mean": a, "pixel": b}, n_boot=500, seed=1)
    assert set(table["measure"]) == {"accuracy", "accuracy_drop", "activation_change"}
    noisy = table[table["level"] > 0]
    assert (noisy[noisy["measure"] != "accuracy"]["verdict"] == "mean more robust").all()
    row = noisy[(noisy["measure"] == "accuracy") & (noisy["level"] == 1.0)].iloc[0]
    assert row["verdict"] == "mean more accurate" and row["mean"] > row["pixel"]
    assert row["mean_ci_low"] <= row["mean"] <= row["mean_ci_high"]
    clean = table[table["level"] == 0]
    assert (clean[clean["measure"] != "accuracy"]["verdict"] == "no noise").all()
    # the activation change of the readout in closed form: |s sigma zbar_i| / RMS |m_i - mean m|
    m = x.flatten(1).mean(1)
    sigma = float(x.std(unbiased=False))
    want = (1.0 * sigma * z.flatten(1).mean(1)).abs() / (m - m.mean()).pow(2).mean().sqrt()
    got = table[(table["measure"] == "activation_change") & (table["level"] == 1.0)].iloc[0]["mean"]
    assert got == pytest.approx(float(want.mean()), rel=1e-9)
    # swapped order: the verdict names the same model; the difference changes sign
    swapped = robustness_table({"pixel": b, "mean": a}, n_boot=500, seed=1)
    assert (swapped[swapped["level"] > 0]["verdict"][swapped["measure"] != "accuracy"] == "mean more robust").all()
    np.testing.assert_allclose(swapped["difference"], -table["difference"])
    # identical models on the same noise draws: every difference and its interval are exactly 0
    tie = robustness_table({"one": a, "two": noise_responses(_mean_model, x, y, levels, z)}, n_boot=200)
    assert (tie[["difference", "difference_ci_low", "difference_ci_high"]] == 0).all().all()
    assert set(tie["verdict"]) == {"no noise", "not resolved (CI includes 0)"}
    fig = plots.robustness_figure(table, ["mean", "pixel"])
    assert len(fig.axes) == 4
    assert len(plots.robustness_figure(robustness_table({"mean": a}, n_boot=100), ["mean"]).axes) == 2


def test_mismatched_runs_are_refused():
    x, y, z = _images(40)
    a = noise_responses(_mean_model, x, y, [0.0, 1.0], z)
    b = noise_responses(_pixel_model, x, y, [0.0, 2.0], z)
    with pytest.raises(ValueError, match="same images and levels"):
        robustness_table({"a": a, "b": b})
    with pytest.raises(ValueError, match="noise"):
        noise_responses(_mean_model, x, y, [1.0], z[:3])
    assert isinstance(robustness_table({"a": a}, n_boot=100), pd.DataFrame)


def test_the_suite_compares_cordsnet_with_its_trained_cnn_only(run_main, tmp_path):
    """After the pipeline the table holds both models with a verdict per level; with published
    weights and no training the never-trained CNN is left out."""
    from tests.cordsnet.test_suite import TINY

    rc, err = run_main(*TINY, "--noise_levels", "0,0.5,2", "--analyze", "--only", "robustness",
                       "--bootstrap_resamples", "200", "--run_name", "r")
    assert rc == 0, err
    table = pd.read_csv(tmp_path / "runs/r/tables/robustness/robustness.csv")
    assert {"cordsnet", "cnn", "difference", "verdict"} <= set(table.columns)
    assert set(table["layer"]) == {"area0", "area1", "readout"} and set(table["level"]) == {0.0, 0.5, 2.0}
    assert (table["n_images"] == 32).all()
    level0 = table[table["level"] == 0]
    assert (level0[level0["measure"] != "accuracy"]["verdict"] == "no noise").all()
    clean = table[(table["level"] == 0) & (table["measure"] == "activation_change")]
    assert (clean[["cordsnet", "cnn"]] == 0).all().all()

    from cordsnet.model import CordsNet

    torch.save(CordsNet(2, 1, 10, 16).state_dict(), tmp_path / "w.pth")
    rc, err = run_main(*TINY, "--pretrained", str(tmp_path / "w.pth"), "--no_train_model", "--analyze", "--only",
                       "robustness", "--bootstrap_resamples", "100", "--run_name", "p")
    assert rc == 0, err
    table = pd.read_csv(tmp_path / "runs/p/tables/robustness/robustness.csv")
    assert "cordsnet" in table and "cnn" not in table and "verdict" not in table
