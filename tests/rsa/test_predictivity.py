"""Ridge predictivity: closed forms against direct computations and a known linear map."""
import numpy as np
import torch

from rsa.predictivity import _loo_alpha, ridge_fit, ridge_predictivity


def test_ridge_fit_matches_normal_equations():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(60, 8, generator=g, dtype=torch.float64)
    y = torch.randn(60, 3, generator=g, dtype=torch.float64)
    w, b = ridge_fit(x, y, alpha=2.5)
    xc, yc = x - x.mean(0), y - y.mean(0)
    ref = torch.linalg.solve(xc.T @ xc + 2.5 * torch.eye(8, dtype=torch.float64), xc.T @ yc)
    torch.testing.assert_close(w, ref)
    torch.testing.assert_close(b, y.mean(0) - x.mean(0) @ ref)


def test_loo_alpha_choice_equals_brute_force_refits():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(25, 6))
    y = x @ rng.normal(size=(6, 4)) + rng.normal(size=(25, 4)) * np.array([0.1, 1, 3, 10])
    alphas = np.array([1e-2, 1.0, 10.0, 100.0, 1e4])
    loo = np.zeros((len(alphas), 4))
    for a_i, a in enumerate(alphas):
        for i in range(25):
            keep = np.arange(25) != i
            w, b = ridge_fit(torch.from_numpy(x[keep]), torch.from_numpy(y[keep]), float(a))
            loo[a_i] += (y[i] - (x[i] @ w.numpy() + b.numpy())) ** 2
    xm, ym = x.mean(0), y.mean(0)
    u, s, _ = torch.linalg.svd(torch.from_numpy(x - xm), full_matrices=False)
    got = _loo_alpha(u, s, torch.from_numpy(y - ym), torch.from_numpy(alphas))
    assert got.tolist() == loo.argmin(0).tolist()


def test_predictivity_recovers_a_known_linear_map():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(200, 30, generator=g, dtype=torch.float64)
    w = torch.randn(30, 50, generator=g, dtype=torch.float64)
    y = x @ w + 0.01 * torch.randn(200, 50, generator=g, dtype=torch.float64)
    res = ridge_predictivity(x, y, folds=5, generator=g)
    assert res["r2"].min() > 0.999 and res["r"].min() > 0.999
    # pure-noise targets are not predictable out of sample
    noise = torch.randn(200, 50, generator=g, dtype=torch.float64)
    res = ridge_predictivity(x, noise, folds=5, generator=g)
    assert res["r2"].median() < 0.02
    # a neuron driven by one unit through a known slope: the refit weight is that slope
    wfit, _ = ridge_fit(x, 2.0 * x[:, :1] + 1.0, alpha=1e-8)
    assert abs(wfit[0, 0].item() - 2.0) < 1e-6 and wfit[1:].abs().max() < 1e-6
