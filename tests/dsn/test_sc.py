"""Superior-colliculus circuit (dsn/systems/sc.py) against ground truths.

* a plain NumPy loop, written here from the paper's equations in the *paper's* population
  order (LP, LA, RP, RA) and with the source code's time windows, per sample and trial;
* the W = 0 circuit, where u(t) is linear in the noise: the exact per-trial solution of the
  Euler recursion, and the accuracy as a 2-D Gaussian integral (scipy quadrature);
* symmetry: without a light stimulus and without noise the mirror-symmetric circuit cannot
  choose (d = 1/2 exactly, any z); full choice-period silencing gives d = 1/2 exactly;
* the connectivity's fixed eigenvectors and closed-form eigenvalues;
* gradients of T against central finite differences (frozen noise: T is smooth in z);
* the registry, the config and a few training steps of the quick preset through main.py.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats

from dsn.systems import make_system
from dsn.systems.sc import (EIGENVECTORS, SCCircuit, bernoulli_variance_error, eigenmode_directions, eigenvalues,
                            inactivation_gain, input_pattern, time_grid, weight_matrix)

# z in the paper's order [sW, vW, hW, dW]
Z_CASES = [[0.9657, -2.8044, -1.6618, -1.7758], [-1.0477, -4.5131, -2.5905, -3.5422], [2.0, 1.0, -3.0, 0.5]]
PAPER_ORDER = [0, 1, 3, 2]  # paper populations (LP, LA, RP, RA) as indices of ours (LP, LA, RA, RP)


def numpy_sc_trial(z, task, xi, x0, gamma=0.0):
    """One trial, written from the paper (Bittner et al. 2021, Methods 'SC model') with the EPI
    code's time windows; populations in the paper's order (LP, LA, RP, RA). Returns x(t) (75, 4)."""
    sW, vW, hW, dW = z
    W = np.array([[sW, vW, hW, dW], [vW, sW, dW, hW], [hW, dW, sW, vW], [dW, hW, vW, sW]])
    t = np.arange(0.0, 1.8, 0.024)
    a, b, tau, dt, sigma = 0.05, 0.5, 0.09, 0.024, 0.2
    x = np.zeros((t.size, 4))
    x[0] = x0
    u = b * np.arctanh(2 * x0 - 1) - a
    for i in range(1, t.size):
        h = 0.75 * np.ones(4) + 0.5 * np.array([1, 0, 1, 0])
        if t[i] < 1.2:
            h = h + (0.6 * np.array([1, 0, 1, 0]) if task == "pro" else 0.6 * np.array([0, 1, 0, 1]))
        if t[i] > 1.2:
            h = h + 0.25 * np.ones(4)
        if 1.2 < t[i] < 1.5:
            h = h + 0.5 * np.array([1, 1, 0, 0])
        u = u + dt / tau * (-u + W @ x[i - 1] + h + sigma * xi[i])
        eta = 1.0 - gamma if 0.8 <= t[i] <= 1.2 else 1.0
        x[i] = eta * (0.5 * np.tanh((u - a) / b) + 0.5)
    return x


def test_simulation_equals_numpy_loop_per_sample_and_trial():
    sc = SCCircuit(trials=4, noise_seed=3)
    xi = sc._noise["xi"].numpy()[..., PAPER_ORDER]   # (task, step, trial, 4) in the paper's order
    x0 = sc._noise["x0"].numpy()[..., PAPER_ORDER]
    z = torch.tensor(Z_CASES, dtype=torch.float64)
    for gamma in (0.0, 0.675):
        traj = sc.simulate(z, gamma=gamma, keep_trajectory=True).numpy()[..., PAPER_ORDER]
        correct = np.zeros((len(Z_CASES), 2, sc.trials))
        for s, zs in enumerate(Z_CASES):
            for c, task in enumerate(("pro", "anti")):
                for n in range(sc.trials):
                    ref = numpy_sc_trial(zs, task, xi[c, :, n], x0[c, n], gamma)
                    np.testing.assert_allclose(traj[:, s, c, n], ref, rtol=0, atol=1e-10)
                    d = 1.0 / (1.0 + np.exp(-100.0 * (ref[-1, 0] - ref[-1, 2])))
                    correct[s, c, n] = d if task == "pro" else 1.0 - d
        if gamma == 0.0:
            p = correct.mean(-1)
            expect = np.concatenate([p, (p - 0.75) ** 2], 1)
            np.testing.assert_allclose(sc.suff_stats(z).numpy(), expect, rtol=0, atol=1e-10)
        else:
            np.testing.assert_allclose(sc.accuracies(z, gamma=gamma).numpy(), correct.mean(-1), rtol=0, atol=1e-10)
    # float32 (what training uses) agrees to ~1e-6
    T32 = sc.suff_stats(z.float()).double()
    np.testing.assert_allclose(T32.numpy(), sc.suff_stats(z).numpy(), rtol=0, atol=2e-5)


def test_schedules_follow_the_source_windows():
    t = time_grid()
    assert t.numel() == 75 and float(t[-1]) == pytest.approx(1.776)
    h = input_pattern("anti", t)
    # rule on steps 0..49 (t < 1.2 s), nothing at step 50 (t = 1.2 s), choice 51..74, light 51..62
    torch.testing.assert_close(h[49], torch.tensor([1.25, 1.35, 1.35, 1.25], dtype=torch.float64))
    torch.testing.assert_close(h[50], torch.tensor([1.25, 0.75, 0.75, 1.25], dtype=torch.float64))
    torch.testing.assert_close(h[62], torch.tensor([2.0, 1.5, 1.0, 1.5], dtype=torch.float64))
    torch.testing.assert_close(h[63], torch.tensor([1.5, 1.0, 1.0, 1.5], dtype=torch.float64))
    eta = inactivation_gain(t, 0.3, "delay")
    assert torch.nonzero(eta < 1).flatten().tolist() == list(range(34, 51))
    assert torch.nonzero(inactivation_gain(t, 0.3, "choice") < 1).flatten().tolist() == list(range(50, 75))


def test_zero_weights_solve_in_closed_form():
    """W = 0: u_T = (1-k)^74 u0 + sum_i k (1-k)^(74-i) (h_i + sigma xi_i) per trial exactly, and
    p_P = E[sigmoid(100 (phi(u_LP) - phi(u_RP)))] with u_LP, u_RP independent Gaussians."""
    sc = SCCircuit(trials=3000, noise_seed=5)
    z = torch.zeros(1, 4, dtype=torch.float64)
    k, steps = 0.024 / 0.09, 75
    coef = k * (1 - k) ** (steps - 1 - torch.arange(steps, dtype=torch.float64))
    coef[0] = 0.0
    h = input_pattern("pro", time_grid())
    u0 = 0.5 * torch.atanh(2 * sc._noise["x0"][0] - 1) - 0.05
    u_T = (1 - k) ** (steps - 1) * u0 + torch.einsum("i,ip->p", coef, h) + 0.2 * torch.einsum(
        "i,inp->np", coef, sc._noise["xi"][0])
    x_T = 0.5 * torch.tanh((u_T - 0.05) / 0.5) + 0.5
    torch.testing.assert_close(sc.simulate(z)[0, 0], x_T, rtol=0, atol=1e-12)

    mean = (coef @ h).numpy()
    sd = 0.2 * float(coef.pow(2).sum().sqrt())
    phi = lambda u: 0.5 * np.tanh((u - 0.05) / 0.5) + 0.5  # noqa: E731
    mLP, mRP = mean[0], mean[3]

    def integrand(a, b):
        return stats.norm.pdf(a) * stats.norm.pdf(b) / (1 + np.exp(-100 * (phi(mLP + sd * a) - phi(mRP + sd * b))))
    exact, _ = integrate.dblquad(integrand, -8, 8, -8, 8, epsabs=1e-9)
    d = sc.choices(z)[0, 0]
    se = float(d.std()) / math.sqrt(sc.trials)
    assert exact - 0.5 > 5 * se  # the light's left bias survives its 12 steps of decay, weakly
    assert abs(float(d.mean()) - exact) < 4 * se
    # Anti trials: the rule input only reaches the Anti populations, so with W = 0 the LP/RP race
    # is the same, and the Anti accuracy is one minus it
    assert abs(float(sc.accuracies(z)[0, 1]) - (1 - exact)) < 4 * se


@pytest.mark.parametrize("form", ["reduced", "full"])
def test_no_stimulus_no_noise_is_exactly_chance(form):
    """Without the light and the noise every input is mirror-symmetric, and so is W: x_LP = x_RP
    at all times, d = 1/2 for any z (also under silencing). Up to rounding: the matrix product
    sums the mirror rows in different orders, and an unstable side mode amplifies that."""
    sc = SCCircuit(form=form, trials=3, sigma=0.0, x0_jitter=0.0, inputs={"light": 0.0})
    z = torch.rand(6, sc.D, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 10 - 5
    half = torch.full((6, 2), 0.5, dtype=torch.float64)
    torch.testing.assert_close(sc.accuracies(z), half, rtol=0, atol=1e-8)
    torch.testing.assert_close(sc.accuracies(z, gamma=0.9), half, rtol=0, atol=1e-8)
    lit = SCCircuit(form=form, trials=3, sigma=0.0, x0_jitter=0.0)  # the light alone breaks the tie
    assert (lit.accuracies(z) - 0.5).abs().max() > 0.1
    # with the noise back, W = 0 and no input: chance up to sampling error
    noisy = SCCircuit(trials=4000, inputs={k: 0.0 for k in ("constant", "pro_bias", "pro_rule", "anti_rule",
                                                            "choice", "light")})
    d = noisy.choices(torch.zeros(1, 4, dtype=torch.float64))
    assert (d.mean(-1) - 0.5).abs().max() < 4 * float(d.std()) / math.sqrt(4000)


def test_silencing_the_choice_period_erases_the_choice():
    sc = SCCircuit(trials=20)
    z = torch.tensor(Z_CASES, dtype=torch.float64)
    torch.testing.assert_close(sc.accuracies(z, gamma=1.0, period="choice"),
                               torch.full((3, 2), 0.5, dtype=torch.float64), rtol=0, atol=0)
    traj = sc.simulate(z, gamma=1.0, period="delay", keep_trajectory=True)
    assert traj[34:51].abs().max() == 0 and traj[51:].abs().min() > 0
    assert sc.opto_error_increase(z, 0.0).abs().max() == 0


def test_connectivity_forms_and_eigenmodes():
    g = torch.Generator().manual_seed(1)
    z = torch.rand(5, 4, generator=g, dtype=torch.float64) * 10 - 5
    W = weight_matrix(z)
    lam = eigenvalues(z)
    modes = torch.tensor(EIGENVECTORS, dtype=torch.float64)
    for a in range(4):  # W e_a = lambda_a e_a for the four fixed eigenvectors
        torch.testing.assert_close(W @ modes[a], lam[:, a:a + 1] * modes[a], rtol=0, atol=1e-12)
    torch.testing.assert_close(torch.linalg.eigvalsh(W), lam.sort(1).values, rtol=0, atol=1e-10)
    V = eigenmode_directions()
    torch.testing.assert_close(V @ V.T, torch.eye(4, dtype=torch.float64))
    torch.testing.assert_close(eigenvalues(z + 0.3 * V[2]) - lam, torch.tensor([0, 0, 0.6, 0.0],
                                                                                 dtype=torch.float64).expand(5, 4))
    # the 8-weight form: DSN's matrix (dsn/util/systems.py), and the reduced form when P = A
    full = torch.rand(5, 8, generator=g, dtype=torch.float64)
    sP, sA, vPA, vAP, hP, hA, dPA, dAP = full.T
    ref = torch.stack([torch.stack(r, -1) for r in ([sP, vPA, dPA, hP], [vAP, sA, hA, dAP],
                                                    [dAP, hA, sA, vAP], [hP, dPA, vPA, sP])], 1)
    torch.testing.assert_close(weight_matrix(full, "full"), ref, rtol=0, atol=0)
    tied = z[:, [0, 0, 1, 1, 2, 2, 3, 3]]
    torch.testing.assert_close(weight_matrix(tied, "full"), W, rtol=0, atol=0)
    a, b = SCCircuit(trials=8), SCCircuit(form="full", trials=8)
    torch.testing.assert_close(b.suff_stats(tied), a.suff_stats(z), rtol=0, atol=1e-12)


def test_gradients_match_finite_differences():
    sc = SCCircuit(trials=40, noise_seed=2)
    z = torch.tensor(Z_CASES[:2], dtype=torch.float64, requires_grad=True)
    T = sc.suff_stats(z)
    jac = torch.stack([torch.autograd.grad(T[:, j].sum(), z, retain_graph=True)[0] for j in range(sc.m)], 1)
    h = 1e-6
    fd = torch.zeros_like(jac)
    with torch.no_grad():
        for d in range(4):
            e = torch.zeros(4, dtype=torch.float64)
            e[d] = h
            fd[:, :, d] = (sc.suff_stats(z + e) - sc.suff_stats(z - e)) / (2 * h)
    assert torch.isfinite(jac).all() and jac[:, :2].abs().max() > 1e-2  # informative gradients
    torch.testing.assert_close(jac, fd, rtol=1e-5, atol=1e-8)


def test_bernoulli_variance_terms():
    d = torch.tensor([[0.9, 0.2, 0.7, 0.5], [1.0, 0.0, 1.0, 1.0]], dtype=torch.float64)
    err = bernoulli_variance_error(d)
    torch.testing.assert_close(err, -(d * (1 - d)).mean(-1))
    assert float(err[1]) == 0.0
    sc = SCCircuit(statistics="epi_bernoulli", trials=30)
    z = torch.tensor(Z_CASES, dtype=torch.float64)
    T = sc.suff_stats(z)
    assert sc.m == 6 and sc.mu.tolist()[4:] == [0.0, 0.0]
    torch.testing.assert_close(T[:, :4], SCCircuit(trials=30).suff_stats(z))
    c = sc.choices(z)
    torch.testing.assert_close(T[:, 4:], -(c * (1 - c)).mean(-1))
    assert (T[:, 4:] <= 0).all()


def test_frozen_noise_common_random_numbers_and_devices():
    a, b = SCCircuit(trials=16), SCCircuit(trials=16)
    z = torch.tensor(Z_CASES, dtype=torch.float64)
    torch.testing.assert_close(a.suff_stats(z), b.suff_stats(z), rtol=0, atol=0)
    torch.testing.assert_close(a.suff_stats(z[1:2]), a.suff_stats(z)[1:2], rtol=0, atol=1e-14)  # batch-free
    assert not torch.equal(SCCircuit(trials=16, noise_seed=1).suff_stats(z), a.suff_stats(z))
    if torch.cuda.is_available():
        torch.testing.assert_close(a.suff_stats(z.cuda()).cpu(), a.suff_stats(z), rtol=0, atol=1e-9)


def test_summaries():
    sc = SCCircuit(trials=20)
    z = torch.tensor(Z_CASES, dtype=torch.float64)
    s = sc.summary(z)
    p = sc.accuracies(z)
    assert s["mean_p_P"] == pytest.approx(float(p[:, 0].mean()))
    assert s["frac_sW_negative"] == pytest.approx(1 / 3)
    assert s["mean_lambda_task"] == pytest.approx(float(eigenvalues(z)[:, 2].mean()))
    w = torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64)  # a weighted sample: only the second draw
    assert sc.summary(z, w)["frac_sW_negative"] == 1.0
    most = torch.eye(4, dtype=torch.float64)[[2, 2]]
    least = eigenmode_directions()[[3, 3]]
    hs = sc.hessian_summary(z[:2], torch.zeros(2, 4, 4), most, least)
    assert hs["most_load_hW"] == pytest.approx(1.0) and hs["least_load_lambda_diag"] == pytest.approx(1.0)
    assert sum(hs[f"most_load_lambda_{m}"] for m in ("all", "side", "task", "diag")) == pytest.approx(1.0)


def test_arguments_are_validated():
    with pytest.raises(ValueError, match="form"):
        SCCircuit(form="tiny")
    with pytest.raises(ValueError, match="statistics"):
        SCCircuit(statistics="wta")
    with pytest.raises(ValueError, match="trials"):
        SCCircuit(trials=1)
    with pytest.raises(ValueError, match="amplitudes"):
        SCCircuit(inputs={"lights": 1.0})
    sc = SCCircuit(trials=2)
    with pytest.raises(ValueError, match=r"\(batch, 4\)"):
        sc.suff_stats(torch.zeros(3, 8))
    with pytest.raises(ValueError, match="gamma"):
        sc.accuracies(torch.zeros(1, 4), gamma=1.5)
    with pytest.raises(ValueError, match="period"):
        sc.accuracies(torch.zeros(1, 4), gamma=0.5, period="cue")
    with pytest.raises(ValueError, match="task"):
        sc.simulate(torch.zeros(1, 4), tasks=("left",))


def test_registry_config_and_plot():
    from core.config import from_dict
    from dsn.config import DSNConfig
    from dsn.suite import build_system

    sc = make_system("sc")
    assert isinstance(sc, SCCircuit) and sc.param_names == ["sW", "vW", "hW", "dW"]
    torch.testing.assert_close(sc.mu, torch.tensor([0.75, 0.75, 0.075 ** 2, 0.075 ** 2]))
    assert sc.lower.tolist() == [-5.0] * 4 and sc.upper.tolist() == [5.0] * 4 and sc.trials == 200
    cfg = from_dict(DSNConfig, {"system": "sc"})
    assert isinstance(build_system(cfg), SCCircuit)
    full = build_system(from_dict(DSNConfig, {"system": "sc", "sc_form": "full", "sc_statistics": "epi_bernoulli",
                                              "sc_trials": 20}))
    assert (full.D, full.m, full.trials) == (8, 6, 20) and full.param_names[:2] == ["sW_P", "sW_A"]
    fig = SCCircuit(trials=10).plot(torch.tensor(Z_CASES))
    assert len(fig.axes) == 6


def test_quick_preset_trains_through_main(run_main, tmp_path):
    rc, err = run_main("--config", "configs/dsn_sc_quick.yaml", "--epochs", "1", "--iters_per_epoch", "2",
                       "--init_steps", "2", "--n", "16", "--norm_batches", "2", "--n_boot", "50",
                       "--test_samples", "32", "--n_plot", "32", "--n_hessian", "1", "--maxent_samples", "64",
                       "--init_cache", "off", "--analyze", "--run_name", "sc")
    assert rc == 0, err
    import pandas as pd
    run = tmp_path / "runs" / "sc"
    assert list(pd.read_csv(run / "tables/reference/constraints.csv")["statistic"]) == sc_stat_names()
    summary = pd.read_csv(run / "tables/reference/summary.csv")
    assert {"opto_anti_error_increase", "reference_mean_p_P", "mean_lambda_task"} <= set(summary.columns)


def test_maxent_preset_trains_through_main(run_main, tmp_path):
    """configs/dsn_sc_maxent.yaml end to end, shrunk: score-function gradient, tilted
    multipliers and the reference drawn half from the kept flow."""
    rc, err = run_main("--config", "configs/dsn_sc_maxent.yaml", "--epochs", "2", "--iters_per_epoch", "2",
                       "--init_steps", "2", "--n", "16", "--norm_batches", "2", "--n_boot", "50",
                       "--test_samples", "32", "--n_plot", "32", "--n_hessian", "1", "--maxent_samples", "64",
                       "--init_cache", "off", "--analyze", "--only", "samples,reference", "--run_name", "scm")
    assert rc == 0, err
    import pandas as pd
    run = tmp_path / "runs" / "scm"
    summary = pd.read_csv(run / "tables/reference/summary.csv")
    assert summary["reference_flow_proposal"].iloc[0] == 1.0
    assert summary["reference_reliable"].iloc[0] == 0.0  # 64 draws cannot support the dual
    hist = pd.read_csv(run / "tables/samples/history.csv")
    assert len(hist) == 2 and (hist["c"] == 1.0).all()
    assert hist.filter(like="lambda:").iloc[-1].abs().sum() > 0  # the tilt moved the multipliers


def sc_stat_names():
    return ["p_P", "p_A", "(p_P - mu1)^2", "(p_A - mu2)^2"]
