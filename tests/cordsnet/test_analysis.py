"""cordsnet.analysis against known answers (synthetic traces, planted low-rank trajectories, explicit Euler matrices) and a smoke test of
every figure in cordsnet.plots."""
from __future__ import annotations

import math

import matplotlib.figure
import numpy as np
import pandas as pd
import pytest
import torch

from cordsnet import plots
from cordsnet.analysis import (accuracy_over_time, mean_rate_traces, pca_trajectories,
                               phases, population_states, response_dynamics, spectrum_table,
                               stability_verdict)

# ---- accuracy ---------------------------------------------------------------------------


def test_accuracy_over_time_hard_and_soft_labels():
    # 4 items, 3 steps, 2 classes; correct counts per step: 0, 2, 4
    logits = torch.zeros(4, 3, 2)
    y = torch.tensor([0, 1, 0, 1])
    wrong, right = torch.nn.functional.one_hot(1 - y, 2).float(), torch.nn.functional.one_hot(y, 2).float()
    logits[:, 0] = wrong
    logits[:2, 1], logits[2:, 1] = right[:2], wrong[2:]
    logits[:, 2] = right
    np.testing.assert_allclose(accuracy_over_time(logits, y), [0.0, 0.5, 1.0])
    soft = 0.3 + 0.4 * right       # argmax = y
    np.testing.assert_allclose(accuracy_over_time(logits, soft), [0.0, 0.5, 1.0])
    with pytest.raises(ValueError, match="readout='all'"):
        accuracy_over_time(logits[:, 0], y)


# ---- response dynamics ------------------------------------------------------------------
BLANK, STIM, POST = 50, 200, 60


def synthetic_trace(s0=0.3, amp=1.0, tau=5.0, bump=0.5, t_bump=40, width=4.0, tau_off=7.0):
    """Spontaneous ``s0``; stimulus: ``s0 + amp (1 - e^{-t/tau})`` plus a Gaussian bump of height
    ``bump`` at step ``t_bump``; post: ``s0 + amp e^{-t/tau_off}`` (``t`` = steps since the phase began)."""
    t_on = np.arange(1, STIM + 1)
    stim = s0 + amp * (1 - np.exp(-t_on / tau)) + bump * np.exp(-((t_on - t_bump) / width) ** 2)
    post = s0 + amp * np.exp(-np.arange(1, POST + 1) / tau_off)
    return np.concatenate([np.full(BLANK, s0), stim, post])


def test_response_dynamics_known_answers():
    up = synthetic_trace()
    down = synthetic_trace(s0=2.0, amp=-0.8, bump=-0.2, t_bump=30, tau_off=12.0)  # a suppressed area
    df = response_dynamics(np.stack([up, down]), BLANK, STIM, POST, area_names=["V1", "IT"])
    assert list(df["area"]) == ["V1", "IT"]
    a, b = df.iloc[0], df.iloc[1]
    assert a.spontaneous == pytest.approx(0.3) and b.spontaneous == pytest.approx(2.0)
    assert a.steady == pytest.approx(1.3, abs=1e-9) and b.steady == pytest.approx(1.2, abs=1e-9)
    # the peak is at the bump's centre: approach value there plus the bump
    peak_a, peak_b = 1.0 * (1 - math.exp(-40 / 5)) + 0.5, 0.8 * (1 - math.exp(-30 / 5)) + 0.2
    assert a.peak == pytest.approx(peak_a, abs=1e-5) and b.peak == pytest.approx(peak_b, abs=1e-5)
    assert a.time_to_peak == 40 and b.time_to_peak == 30
    assert a.overshoot == pytest.approx(peak_a / 1.0, abs=1e-5)
    assert b.overshoot == pytest.approx(peak_b / 0.8, abs=1e-5)
    assert a.decay_steps == pytest.approx(7.0, abs=1.0) and b.decay_steps == pytest.approx(12.0, abs=1.0)
    assert a.return_fraction == pytest.approx(math.exp(-POST / 7.0), rel=1e-6)
    assert b.return_fraction == pytest.approx(math.exp(-POST / 12.0), rel=1e-6)


def test_response_dynamics_of_euler_integration():
    """A leaky unit under the model's Euler step: time constant -1/ln(1 - alpha) steps."""
    alpha = 0.2
    r, out = 0.0, []
    for u in [0.0] * 20 + [1.0] * 100 + [0.0] * 40:
        r = (1 - alpha) * r + alpha * u
        out.append(r)
    row = response_dynamics(np.array(out), 20, 100, 40).iloc[0]
    tau_steps = -1 / math.log(1 - alpha)                     # 4.48 steps
    assert row.decay_steps == pytest.approx(tau_steps, abs=1.0)
    # monotone approach: no peak, so no overshoot; settled long before the image ends
    assert not row.onset_peak and np.isnan(row.overshoot) and np.isnan(row.peak) and np.isnan(row.time_to_peak)
    assert row.steady_reached and row.steady_change == pytest.approx((1 - alpha) ** 90 - (1 - alpha) ** 100, rel=1e-3)


def _rise(stim, tau):
    """``1 - e^{-t/tau}`` over ``stim`` stimulus steps after a blank of 10 at 0 (no post)."""
    return np.concatenate([np.zeros(10), 1 - np.exp(-np.arange(1, stim + 1) / tau)])


def test_overshoot_only_for_a_peak_and_steady_state_only_when_reached():
    # a monotone rise: never an overshoot, whether it settles (tau 5) or not (tau 100)
    settled, rising = response_dynamics(np.stack([_rise(200, 5.0), _rise(200, 100.0)]), 10, 200, 0).itertuples()
    assert not settled.onset_peak and not rising.onset_peak
    assert np.isnan(settled.overshoot) and np.isnan(rising.overshoot)
    assert settled.steady_reached and not rising.steady_reached
    t = np.arange(1, 201)
    level = (1 - np.exp(-t / 100.0))[-20:].mean()             # steady = mean of the last 10 %
    want = (math.exp(-180 / 100) - math.exp(-200 / 100)) / level  # change over the last 20 steps
    assert rising.steady_change == pytest.approx(want, rel=1e-12) and rising.steady == pytest.approx(level)
    # peak then decay: linear rise to P at step 5, then S + (P - S) e^{-(j-5)/2}: overshoot P / S
    P, S = 1.5, 0.6
    j = np.arange(1, 101)
    resp = np.where(j <= 5, P * j / 5, S + (P - S) * np.exp(-(j - 5) / 2.0))
    for sign, s0 in ((1, 0.2), (-1, 3.0)):                   # an excited and a suppressed area
        row = response_dynamics(np.concatenate([np.full(10, s0), s0 + sign * resp]), 10, 100, 0).iloc[0]
        assert row.onset_peak and row.time_to_peak == 5 and row.peak == pytest.approx(P, rel=1e-12)
        assert row.overshoot == pytest.approx(P / S, rel=1e-12) and row.steady_reached
    # a bump that falls back by less than peak_drop (1 % < 2 %) is no peak; with peak_drop 0.5 % it is
    bump = np.concatenate([np.zeros(10), np.minimum(j / 10, 1.0) + 0.01 * (j >= 10) * (j < 50)])
    assert not response_dynamics(bump, 10, 100, 0).iloc[0].onset_peak
    row = response_dynamics(bump, 10, 100, 0, peak_drop=0.005).iloc[0]
    assert row.onset_peak and row.overshoot == pytest.approx(1.01, rel=1e-12) and row.time_to_peak == 10


def test_response_dynamics_nans_and_errors():
    flat = np.full(30, 0.5)
    row = response_dynamics(flat, 10, 20, 0).iloc[0]
    assert not row.onset_peak and np.isnan(row.peak) and np.isnan(row.overshoot)
    assert np.isnan(row.return_fraction) and np.isnan(row.decay_steps) and row.steady_reached
    never = np.concatenate([np.zeros(10), np.ones(20), np.ones(5)])    # no decay after offset
    row = response_dynamics(never, 10, 20, 5).iloc[0]
    assert np.isnan(row.decay_steps) and row.return_fraction == pytest.approx(1.0)
    with pytest.raises(ValueError, match="blank \\+ stimulus \\+ post"):
        response_dynamics(flat, 10, 10, 0)
    with pytest.raises(ValueError, match="at least one blank"):
        response_dynamics(flat, 0, 30, 0)
    assert phases(2, 3, 1) == (slice(0, 2), slice(2, 5), slice(5, 6))


def test_mean_rate_traces_and_population_states():
    g = torch.Generator().manual_seed(0)
    rates = {2: torch.rand(3, 5, 4, 2, 2, generator=g), 0: torch.rand(3, 5, 2, 3, 3, generator=g) - 0.5}
    tr = mean_rate_traces(rates)
    assert tr.shape == (2, 5)
    np.testing.assert_allclose(tr[0], rates[0].double().mean(dim=(0, 2, 3, 4)).numpy())   # ascending area order
    np.testing.assert_allclose(tr[1], rates[2].double().mean(dim=(0, 2, 3, 4)).numpy())
    np.testing.assert_allclose(mean_rate_traces(rates, rectify=True)[0],
                               rates[0].clamp_min(0).double().mean(dim=(0, 2, 3, 4)).numpy())
    st = population_states(rates)
    assert st.shape == (3, 5, 18 + 16)
    assert torch.equal(st[..., :18], rates[0].flatten(2))
    with pytest.raises(ValueError, match="not recorded"):
        population_states(rates, areas=[1])


# ---- PCA ---------------------------------------------------------------------------------


def planted_states(seed=5, b=6, t=40, n=20, noise=1e-4):
    g = torch.Generator().manual_seed(seed)
    basis, _ = torch.linalg.qr(torch.randn(n, 2, generator=g, dtype=torch.float64))
    z = torch.randn(b, t, 2, generator=g, dtype=torch.float64) * torch.tensor([2.0, 1.0], dtype=torch.float64)
    z = z - z.reshape(-1, 2).mean(0)
    return 7.0 + z @ basis.T + noise * torch.randn(b, t, n, generator=g, dtype=torch.float64), z


def test_pca_trajectories_planted_rank_two():
    states, z = planted_states()
    proj, ratio = pca_trajectories(states, 3)
    assert proj.shape == (6, 40, 3) and ratio.shape == (3,)
    # the planted variances 4 : 1 (sample estimate), then ~0
    v = z.reshape(-1, 2).var(0, unbiased=False).numpy()
    np.testing.assert_allclose(ratio[:2], v / v.sum(), atol=1e-3)
    assert ratio[2] < 1e-6
    # against numpy's SVD, up to sign
    x = states.reshape(-1, 20).numpy()
    x = x - x.mean(0)
    _, s, vt = np.linalg.svd(x, full_matrices=False)
    np.testing.assert_allclose(ratio, s[:3] ** 2 / (s ** 2).sum(), rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(np.abs(proj.reshape(-1, 3)), np.abs(x @ vt[:3].T), atol=1e-10)


def test_pca_trajectories_sign_is_deterministic():
    states, _ = planted_states(seed=6)
    proj, _ = pca_trajectories(states, 2)
    perm = torch.tensor([3, 1, 5, 0, 2, 4])
    proj_p, _ = pca_trajectories(states[perm], 2)
    np.testing.assert_allclose(proj_p, proj[perm.numpy()], atol=1e-10)
    with pytest.raises(ValueError, match="n_components"):
        pca_trajectories(states, 21)


# ---- spectra -----------------------------------------------------------------------------


def test_spectrum_table_boundaries():
    alpha = 0.2
    lam = np.array([0.0, 1.0, -9.0, 0.5 + 2.0j, 1.2 - 0.1j, -9.5])
    df = spectrum_table(lam, alpha)
    assert list(df.columns) == ["re", "im", "modulus", "euler_modulus", "stable_linear", "stable_euler"]
    np.testing.assert_allclose(df.euler_modulus, [0.8, 1.0, 1.0, math.sqrt(0.9 ** 2 + 0.4 ** 2),
                                                  abs(1.04 - 0.02j), 1.1])
    assert list(df.stable_linear) == [True, False, True, True, False, True]
    assert list(df.stable_euler) == [True, False, False, True, False, False]
    np.testing.assert_allclose(df.modulus, np.abs(lam))
    with pytest.raises(ValueError, match="alpha"):
        spectrum_table(lam, 0.0)


def test_spectrum_table_matches_explicit_euler_matrix():
    """The Euler map's eigenvalues are 1 - alpha + alpha lambda (lambda of R)."""
    rng = np.random.default_rng(7)
    r = rng.normal(size=(8, 8)) * 0.6
    alpha = 0.3
    df = spectrum_table(torch.from_numpy(np.linalg.eigvals(r)), alpha)
    euler = np.linalg.eigvals((1 - alpha) * np.eye(8) + alpha * r)
    np.testing.assert_allclose(np.sort(df.euler_modulus), np.sort(np.abs(euler)), atol=1e-10)


# ---- figures -----------------------------------------------------------------------------


def test_figures_run_and_have_expected_axes():
    g = torch.Generator().manual_seed(8)
    t = 30
    acc = np.linspace(0.1, 0.9, t)
    f = plots.accuracy_over_time_figure(acc, 10, 15, 5, chance=0.1)
    assert isinstance(f, matplotlib.figure.Figure) and len(f.axes) == 1
    traces = np.stack([synthetic_trace()[::10][:t], synthetic_trace(s0=1.0)[::10][:t]])
    assert len(plots.dynamics_figure(traces, 10, 15, 5, ["V1", "V2"]).axes) == 2
    eigs = {f"area {i}": np.linalg.eigvals(np.random.default_rng(i).normal(size=(6, 6))) for i in range(5)}
    assert len(plots.spectra_figure(eigs, 0.2).axes) == 5
    vecs = {"V1": torch.randn(4, 5, 5, generator=g), "V2": np.exp(1j * np.arange(27.0)).reshape(3, 3, 3)}
    assert len(plots.eigenvector_figure(vecs).axes) == 4          # a panel and a colour bar each
    proj, ratio = pca_trajectories(planted_states()[0][:, :t], 3)
    f = plots.trajectories_figure(proj, 10, 15, labels=np.array([0, 1, 2, 0, 1, 2]), explained=ratio)
    assert len(f.axes) == 1
    assert f.axes[0].get_xlabel() == f"PC1 ({100 * ratio[0]:.1f} % var.)"
    assert f.axes[0].get_ylabel() == f"PC2 ({100 * ratio[1]:.1f} % var.)"
    f = plots.spectra_figure({"J": np.array([0.5, -2.0])}, 0.2, title="Jacobian of X")
    assert f.get_suptitle().startswith("Jacobian of X")
    f = plots.grid_figure(torch.rand(7, 3, 8, 8, generator=g), [str(i) for i in range(7)], "kernels")
    assert len(f.axes) == 7 and f.get_suptitle() == "kernels"
    assert len(plots.grid_figure(torch.rand(2, 1, 8, 8, generator=g), None, "two").axes) == 2


def test_stability_verdict_boundaries():
    alpha = 0.2
    v = stability_verdict(np.array([0.5, 0.9 + 0.2j, 0.9 - 0.2j, -3.0]), alpha)
    assert v["rightmost_re"] == 0.9 and v["rightmost_im"] == pytest.approx(0.2) and v["inside"]
    assert v["margin"] == pytest.approx(0.1) and v["verdict"] == "inside both"
    assert v["euler_max_modulus"] == pytest.approx(abs(0.8 + 0.2 * (0.9 + 0.2j)))
    assert v["spectral_radius"] == 3.0 and v["rightmost_residual"] == 0
    v = stability_verdict(np.array([0.5, -10.0]), alpha)          # |1 - 0.2 - 2| = 1.2: the Euler step diverges
    assert v["inside"] and not v["euler_inside"] and v["euler_margin"] == pytest.approx(-0.2)
    assert v["verdict"] == "inside Re λ < 1 only (Euler-unstable)"
    v = stability_verdict(np.array([1.1 + 0.5j, 1.1 - 0.5j, 0.2]), alpha, residuals=np.array([1e-9, 1e-9, 0]))
    assert not v["inside"] and v["margin"] == pytest.approx(-0.1) and v["verdict"] == "outside"
    assert v["rightmost_residual"] == 1e-9
    with pytest.raises(ValueError):
        stability_verdict(np.array([]), alpha)
