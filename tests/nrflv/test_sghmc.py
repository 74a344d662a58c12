"""The SGHMC / Langevin state sampler against ground truth.

* a per-layer reference written from the equations (the source's one-optimiser-per-layer
  loop) gives the same trajectory, burn-in adaptation and caching included;
* on a correlated Gaussian ``E = 1/2 x^T L x`` the chains' covariance equals the exact
  stationary covariance of the discrete-time linear recursion (a Lyapunov equation, per
  chain after the burn-in has fixed each chain's mass), which is within a stated bias of
  the target ``inv(L)``; with small steps the target itself is reproduced; Langevin
  likewise (its exact law is known);
* without friction and noise the Hamiltonian ``E(s) + p^T C p / (2 eta^2)`` is conserved:
  bounded O(eta) error, O(eta^2) with the synchronised momentum;
* the circulant inverse mass reproduces the source's printed row;
* clamps, fixed layers, validation, and an exact state_dict resume.
"""
from __future__ import annotations

import io
import math

import pytest
import torch
import torch.nn.functional as F

from nrflv.sghmc import SGHMC, inverse_mass_kernel

D = torch.float64


def gen(seed: int = 0, device: str = "cpu") -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


DEVICES = ["cpu", pytest.param("cuda", marks=[
    pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA")])]


# Target covariance of the Gaussian tests: correlation 0.85, eigenvalues of L 0.71 and 10
COV = torch.tensor([[1.0, 0.6], [0.6, 0.5]], dtype=D)
LAM = torch.linalg.inv(COV)


def gaussian_chains(n: int, seed: int) -> torch.Tensor:
    """n exact draws of N(0, COV), shape (n, 2)."""
    return torch.randn(n, 2, generator=gen(seed), dtype=D) @ torch.linalg.cholesky(COV).T


def chain_moments(sampler: SGHMC, x: torch.Tensor, steps: int, warmup: int):
    """Per-chain time averages of x and x x^T over ``steps`` after ``warmup`` steps; returns
    the across-chain mean and standard error (chains are independent, so the SE accounts
    for autocorrelation within a chain)."""
    def grad(states):
        return [states[0] @ LAM]

    sampler.run(grad, warmup)
    m1 = torch.zeros_like(x)
    m2 = torch.zeros(x.shape[0], 2, 2, dtype=D)
    for _ in range(steps):
        sampler.step(grad)
        m1 += x
        m2 += x[:, :, None] * x[:, None, :]
    m1, m2 = m1 / steps, m2 / steps
    n = x.shape[0]
    return (m1.mean(0), m1.std(0) / math.sqrt(n), m2.mean(0), m2.std(0) / math.sqrt(n))


def discrete_stationary_cov(L: torch.Tensor, eta: float, alpha: float, minv=None) -> torch.Tensor:
    """Exact stationary covariance of s under the recursion p' = (1-a) p - eta^2 Minv L s + xi,
    s' = s + p', Var xi = 2 eta^2 a Minv - eta^4 (diagonal Minv, default I): the (s, s) block
    of S = A S A^T + Q, solved as (I - A kron A) vec S = vec Q. ``minv`` of shape (n, d)
    gives one law per chain, (n, d, d)."""
    d = L.shape[0]
    single = minv is None
    minv = torch.ones(1, d, dtype=D) if single else minv.to(D)
    n = minv.shape[0]
    eye = torch.eye(d, dtype=D).expand(n, d, d)
    kick = -eta ** 2 * minv[:, :, None] * L
    A = torch.cat([torch.cat([eye + kick, (1 - alpha) * eye], 2),
                   torch.cat([kick, (1 - alpha) * eye], 2)], 1)
    B = torch.cat([torch.eye(d, dtype=D)] * 2, 0)
    Q = B @ torch.diag_embed(2 * eta ** 2 * alpha * minv - eta ** 4) @ B.T
    m = 2 * d
    kron = torch.einsum("nij,nkl->nikjl", A, A).reshape(n, m * m, m * m)
    S = torch.linalg.solve(torch.eye(m * m, dtype=D) - kron, Q.reshape(n, -1)).reshape(n, m, m)
    return S[0, :d, :d] if single else S[:, :d, :d]


# ------------------------------------------------------------------ circulant inverse mass


def test_circulant_row_is_the_sources():
    k = inverse_mass_kernel(32)
    row = k[0]
    # the printed figures, to their printed precision; offsets +-d are equal
    assert abs(row[0].item() - 0.72535) < 5e-6
    for d, want, tol in ((1, 0.13890, 5e-6), (2, 0.000975, 5e-7), (3, 2.5e-7, 5e-9)):
        assert abs(row[d].item() - want) < tol and row[-d].item() == row[d].item()
    assert abs(row.sum().item() - 1.0051) < 5e-5
    # densities below 1e-15 are zeroed: offsets 0, +-1 .. +-4 survive
    assert int((row != 0).sum()) == 9 and row[4].item() > 1e-15
    # every row is row 0 rolled; the matrix is symmetric and positive definite
    for o in range(32):
        assert torch.equal(k[o], torch.roll(row, o))
    assert torch.equal(k, k.T)
    assert torch.linalg.eigvalsh(k).min() > 0.4
    # the source's other channel counts: sd 0.3 (16) and 0.1 (8, a scaled identity)
    assert abs(inverse_mass_kernel(16)[0, 0].item() - 1 / (0.3 * math.sqrt(2 * math.pi))) < 1e-12
    k8 = inverse_mass_kernel(8)
    assert torch.equal(k8, k8[0, 0] * torch.eye(8, dtype=D))
    with pytest.raises(ValueError, match="no standard deviation"):
        inverse_mass_kernel(12)


def test_mixing_is_a_1x1_convolution_over_channels():
    """One step from p = 0 without noise or friction: p = -eta^2 dE, s <- s + C(p), where
    C is conv2d with the circulant as a (32, 32, 1, 1) kernel; the 3-channel and the
    5-channel layers (< 6 channels) are not mixed."""
    s = [torch.zeros(2, 32, 4, 4, dtype=D), torch.zeros(2, 3, 4, 4, dtype=D),
         torch.zeros(2, 5, 2, 2, dtype=D)]
    g = [torch.randn(x.shape, generator=gen(i), dtype=D) for i, x in enumerate(s)]
    smp = SGHMC(s, generator=gen(), non_diag_inv_mass=True, num_burn_in_steps=0,
                momentum_param=0.0, min_sq_sigma=0.0, max_sq_sigma=0.0, clamp=None,
                sampling_step_size=0.3)
    assert smp.mixing[0] is not None and smp.mixing[1] is None and smp.mixing[2] is None
    smp.step(g)
    conv = F.conv2d(-0.09 * g[0], inverse_mass_kernel(32)[:, :, None, None])
    torch.testing.assert_close(s[0], conv, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(smp.momentum[0], -0.09 * g[0], rtol=1e-12, atol=0)
    torch.testing.assert_close(s[1], -0.09 * g[1], rtol=1e-12, atol=0)
    torch.testing.assert_close(s[2], -0.09 * g[2], rtol=1e-12, atol=0)


# ------------------------------------------------------------------ the update rule itself


def reference_sghmc(states, grad_fn, steps, eta, alpha, nu, lo_sq, hi_sq, burn, scale_grad,
                    kernels, clamp, seed):
    """The source's algorithm written out per layer and per line (one state dict per layer,
    ``torch.normal(0, sigma)`` replaced by the same standard normals as the sampler: one
    draw over all layers per step)."""
    g = gen(seed, states[0].device.type)
    st = [dict(tau=torch.ones_like(s), g=torch.ones_like(s), v=torch.ones_like(s),
               p=torch.zeros_like(s)) for s in states]
    total = sum(s.numel() for s in states)
    history = []
    for it in range(1, steps + 1):
        grads = grad_fn(states)
        xi_all = torch.empty(total, dtype=states[0].dtype, device=states[0].device).normal_(generator=g)
        off = 0
        for i, (s, d, grad) in enumerate(zip(states, st, grads)):
            xi = xi_all[off:off + s.numel()].view(s.shape)
            off += s.numel()
            r = 1.0 / (d["tau"] + 1.0)
            minv = 1.0 / torch.sqrt(d["v"])
            if it <= burn:
                d["tau"] = d["tau"] + 1.0 - d["tau"] * (d["g"] * d["g"] / d["v"])
                d["g"] = d["g"] + (-d["g"] * r + r * grad)
                d["v"] = d["v"] + (-d["v"] * r + r * grad ** 2)
            e = eta[i] / math.sqrt(scale_grad)
            var = 2 * e ** 2 * alpha[i] * minv - 2 * e ** 3 * minv ** 2 * nu[i] - e ** 4
            sigma = torch.sqrt(torch.clamp(var, min=lo_sq, max=hi_sq[i]))

            def mix(p):
                if kernels[i] is None:
                    return p
                return F.conv2d(p, kernels[i][:, :, None, None])

            d["p"] = d["p"] + (-(eta[i] ** 2) * minv * grad - alpha[i] * mix(d["p"]) + sigma * xi)
            s += mix(d["p"])
            s.clamp_(*clamp[i])
        history.append([x.clone() for x in states])
    return history, st


@pytest.mark.parametrize("device", DEVICES)
def test_matches_per_layer_reference_through_burn_in(device):
    """Every hyperparameter off its default (per-layer eta, alpha, max sigma^2; nu > 0;
    scale_grad != 1; mixing; per-layer clamps); 12 steps with a 5-step burn-in cover the
    adaptation, the switch to the cached coefficients, and the clamp."""
    shapes = [(3, 2, 8, 8), (3, 32, 4, 4), (3, 5, 2, 2)]
    s0 = [(torch.rand(sh, generator=gen(i), dtype=D) * 2 - 1).to(device) for i, sh in enumerate(shapes)]
    w = [torch.randn(sh[1:], generator=gen(10 + i), dtype=D).to(device) for i, sh in enumerate(shapes)]

    def grad_fn(states):   # E = sum_i (1/2) w_i s_i^2 + sum sin(3 s_i): any smooth energy
        return [wi * si + 3 * torch.cos(3 * si) for wi, si in zip(w, states)]

    eta, alpha, nu, hi = [0.3, 0.2, 0.25], [0.1, 0.3, 0.05], [0.01, 0.0, 0.02], [1e-3, 2e-3, 5e-4]
    clamp = [(-1.0, 1.0), (-0.7, 0.9), (-1.0, 0.5)]
    kernels = [None, inverse_mass_kernel(32).to(device), None]
    ref_states = [x.clone() for x in s0]
    hist, ref_st = reference_sghmc(ref_states, grad_fn, 12, eta, alpha, nu, 1e-5, hi, 5, 2.0,
                                   kernels, clamp, seed=7)

    states = [x.clone() for x in s0]
    smp = SGHMC(states, generator=gen(7, device), sampling_step_size=eta, momentum_param=alpha,
                sigma=nu, min_sq_sigma=1e-5, max_sq_sigma=hi, num_burn_in_steps=5,
                scale_grad=2.0, non_diag_inv_mass=True, clamp=clamp)
    for t in range(12):
        smp.step(grad_fn)
        for a, b in zip(states, hist[t]):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    for p, d in zip(smp.momentum, ref_st):
        torch.testing.assert_close(p, d["p"], rtol=1e-10, atol=1e-12)
    sd = smp.state_dict()
    torch.testing.assert_close(sd["v"], torch.cat([d["v"].reshape(-1) for d in ref_st]).cpu())
    torch.testing.assert_close(sd["tau"], torch.cat([d["tau"].reshape(-1) for d in ref_st]).cpu())
    # the noise actually varies per element with Minv, and the clamps were active
    assert states[1].max() == 0.9 and states[2].max() == 0.5
    var = smp.noise_variance()
    assert var[0].min() < var[0].max() <= 1e-3


def test_langevin_update_rule():
    s = [torch.zeros(4, 3, dtype=D), torch.zeros(4, 2, dtype=D)]
    g = [torch.ones(4, 3, dtype=D), 2 * torch.ones(4, 2, dtype=D)]
    smp = SGHMC(s, generator=gen(3), method="langevin", sampling_step_size=[0.1, 0.02],
                clamp=None)
    smp.step(g)
    xi = torch.empty(20, dtype=D).normal_(generator=gen(3))
    torch.testing.assert_close(s[0], -0.1 + math.sqrt(0.2) * xi[:12].view(4, 3))
    torch.testing.assert_close(s[1], -0.04 + math.sqrt(0.04) * xi[12:].view(4, 2))
    # the source's --sigma: any per-layer noise sd
    s2 = [torch.zeros(4, 3, dtype=D)]
    SGHMC(s2, generator=gen(3), method="langevin", langevin_noise_sd=0.0, clamp=None).step([g[0]])
    assert torch.equal(s2[0], torch.full((4, 3), -0.1, dtype=D))


# ------------------------------------------------------------------ ground truth: Gaussians


def test_gaussian_exact_discrete_law_and_target_bias():
    """M = I (no burn-in), eta = alpha = 0.1 (the defaults), sigma^2 bounds wide (the
    source's [9e-5, 1e-4] would fix the noise and so the temperature). 2048 chains started
    at the target, 200 warm-up + 1500 averaged steps. The mean is 0 and every covariance
    entry is the exact discrete-time stationary value within 4 standard errors. That value
    differs from the target inv(L) by the -eta^4 noise correction (colder: -4.7 % in the
    variance of x1) and the discretisation; the test states the size of that bias."""
    x = gaussian_chains(2048, seed=1)
    smp = SGHMC([x], generator=gen(2), num_burn_in_steps=0, min_sq_sigma=0.0,
                max_sq_sigma=1.0, clamp=None)
    mean, mean_se, cov, cov_se = chain_moments(smp, x, steps=1500, warmup=200)
    exact = discrete_stationary_cov(LAM, 0.1, 0.1)
    assert (mean.abs() <= 4 * mean_se).all(), (mean, mean_se)
    assert ((cov - exact).abs() <= 4 * cov_se).all(), (cov, exact, cov_se)
    assert (cov_se < 0.006).all()                       # the check is tight enough to mean something
    bias = (exact - COV) / COV
    assert -0.06 < bias[0, 0] < -0.04 and bias.abs().max() < 0.06
    # without the -eta^4 term the law would be 1.003 x the target: 10 SE away from the chains
    assert (cov[0, 0] - 1.0027) < -8 * cov_se[0, 0]


def test_gaussian_burn_in_adapted_exact_law():
    """The sampler as used: the defaults (eta = alpha = 0.1, a 100-step burn-in adapting M
    per element and per chain, then frozen), sigma^2 bounds wide. Each chain then follows
    the linear recursion with its own diagonal Minv, whose exact law is computed; the
    chains' covariance equals the mean of those laws within 4 SE (2048 chains, 300 + 1500
    steps). At these settings the law is 10 % colder than the target (stated, checked)."""
    x = gaussian_chains(2048, seed=3)
    smp = SGHMC([x], generator=gen(4), min_sq_sigma=0.0, max_sq_sigma=1.0, clamp=None)
    mean, mean_se, cov, cov_se = chain_moments(smp, x, steps=1500, warmup=300)
    minv = smp.inverse_mass()[0]
    assert 0.2 < minv.mean() < 1.0 and minv.std(0).min() > 0.02   # adapted per chain
    exact = discrete_stationary_cov(LAM, 0.1, 0.1, minv).mean(0)
    assert (mean.abs() <= 4 * mean_se).all(), (mean, mean_se)
    assert ((cov - exact).abs() <= 4 * cov_se).all(), (cov, exact, cov_se)
    assert (cov_se < 0.006).all()
    bias = (exact - COV) / COV
    assert (-0.12 < bias).all() and (bias < -0.08).all()


def test_gaussian_reproduces_the_target():
    """Where the discrete law is the target to < 1 % (eta = 0.03, alpha = 0.05, M = I,
    sigma^2 bounds wide: the -eta^4 deficit eta^2 / (2 alpha) is 0.9 %), the chains
    reproduce N(0, inv(L)): mean within 4 SE of 0, each covariance entry within
    4 SE + 1.5 % of the target (2048 chains, 300 + 1500 steps; SE about 0.5 %)."""
    x = gaussian_chains(2048, seed=3)
    smp = SGHMC([x], generator=gen(4), sampling_step_size=0.03, momentum_param=0.05,
                num_burn_in_steps=0, min_sq_sigma=0.0, max_sq_sigma=1.0, clamp=None)
    mean, mean_se, cov, cov_se = chain_moments(smp, x, steps=1500, warmup=300)
    assert ((discrete_stationary_cov(LAM, 0.03, 0.05) - COV).abs() < 0.01 * COV.abs()).all()
    assert (mean.abs() <= 4 * mean_se).all(), (mean, mean_se)
    assert (cov_se < 0.01 * COV.abs()).all()
    assert ((cov - COV).abs() <= 4 * cov_se + 0.015 * COV.abs()).all(), (cov, cov_se)


def test_langevin_gaussian_exact_law():
    """ULA on a Gaussian has the exact law inv(L) (I - eta L / 2)^-1 (L and the recursion's
    matrix commute); eta = 0.05 (the bias is +33 % on the stiff direction: the check is
    against the exact law, within 4 SE)."""
    x = gaussian_chains(2048, seed=5)
    smp = SGHMC([x], generator=gen(6), method="langevin", sampling_step_size=0.05, clamp=None)
    mean, mean_se, cov, cov_se = chain_moments(smp, x, steps=1000, warmup=100)
    exact = torch.linalg.inv(LAM @ (torch.eye(2, dtype=D) - 0.025 * LAM))
    assert (mean.abs() <= 4 * mean_se).all()
    assert ((cov - exact).abs() <= 4 * cov_se).all(), (cov, exact, cov_se)


# ------------------------------------------------------------------ Hamiltonian dynamics


def hamiltonian_errors(eta: float, mixing: bool, t_end: float = 40.0):
    """alpha = 0, sigma = 0, M = I on E = 1/2 sum_b s_b^T L s_b (32 units as channels of a
    1x1 map, 4 chains). Returns the max relative error of H read with the stored p (the
    half-step momentum) and with the synchronised momentum, over the run and per quarter."""
    c = 32
    q, _ = torch.linalg.qr(torch.randn(c, c, generator=gen(8), dtype=D))
    L = q @ torch.diag(torch.linspace(0.5, 4.0, c, dtype=D)) @ q.T
    s = torch.randn(4, c, 1, 1, generator=gen(9), dtype=D)
    K = inverse_mass_kernel(c) if mixing else torch.eye(c, dtype=D)

    def energy(x):
        v = x.reshape(4, c)
        return 0.5 * ((v @ L) * v).sum()

    def grad(states):
        return [(states[0].reshape(4, c) @ L).reshape(4, c, 1, 1)]

    def kinetic(p):
        v = p.reshape(4, c)
        return 0.5 * ((v @ K) * v).sum() / eta ** 2

    smp = SGHMC([s], generator=gen(), num_burn_in_steps=0, momentum_param=0.0,
                min_sq_sigma=0.0, max_sq_sigma=0.0, clamp=None, non_diag_inv_mass=mixing,
                sampling_step_size=eta)
    h0 = energy(s).item()
    n = int(round(t_end / eta))
    raw, sync, p_prev, e_prev = [], [], None, None
    for _ in range(n):
        smp.step(grad)
        p = smp.momentum[0].clone()
        raw.append(abs(energy(s).item() + kinetic(p).item() - h0) / h0)
        if p_prev is not None:      # s_{n-1} with (p_{n-1} + p_n) / 2
            sync.append(abs(e_prev + kinetic(0.5 * (p_prev + p)).item() - h0) / h0)
        p_prev, e_prev = p, energy(s).item()
    return torch.tensor(raw), torch.tensor(sync)


@pytest.mark.parametrize("mixing", [False, True])
def test_hamiltonian_conserved_without_friction_and_noise(mixing):
    raw1, sync1 = hamiltonian_errors(0.05, mixing)
    raw2, sync2 = hamiltonian_errors(0.025, mixing)
    # symplectic: bounded error, no drift (last quarter no worse than the first)
    for raw in (raw1, raw2):
        quarter = len(raw) // 4
        assert raw[-quarter:].max() < 1.5 * raw[:quarter].max()
    assert raw1.max() < 0.2 and sync1.max() < 5e-3
    # orders: O(eta) with the half-step momentum, O(eta^2) with the synchronised one
    assert 1.6 < raw1.max() / raw2.max() < 2.5
    assert 3.0 < sync1.max() / sync2.max() < 5.0


# ------------------------------------------------------------------ clamps, masks, state


def test_fixed_layers_and_per_layer_clamps():
    img = torch.rand(4, 3, 4, 4, generator=gen(1)) * 2 - 1
    img0 = img.clone()
    s = [img, torch.zeros(4, 8, 2, 2), torch.zeros(4, 6), torch.zeros(4, 5)]
    smp = SGHMC(s, generator=gen(), fixed=[True, False, False, False],
                clamp=[(0.0, 1.0), (-1.0, 1.0), (-0.25, 0.5), None],
                sampling_step_size=1.0, momentum_param=0.5)
    big = [None, torch.full((4, 8, 2, 2), -50.0), torch.full((4, 6), -50.0), torch.full((4, 5), -50.0)]
    for _ in range(5):
        smp.step(big)
    assert torch.equal(img, img0)                      # not updated, not clamped to (0, 1)
    assert smp.momentum[0] is None and smp.inverse_mass()[0] is None
    assert torch.equal(s[1], torch.ones_like(s[1]))
    assert torch.equal(s[2], torch.full_like(s[2], 0.5))
    assert (s[3] > 1.0).all()                          # no clamp on that layer
    assert smp.state_dict()["p"].numel() == 4 * (32 + 6 + 5)   # no state for the fixed layer
    # all layers fixed: a step does nothing
    t = [torch.zeros(2, 3)]
    SGHMC(t, generator=gen(), fixed=[True]).step([None])
    assert torch.equal(t[0], torch.zeros(2, 3))


def test_state_dict_resume_is_exact():
    """Save mid burn-in and after it (through torch.save / weights_only load, as a checkpoint
    is), restore into a new sampler with the generator's state: the continuation is
    bit-identical."""
    shapes = [(6, 3, 4, 4), (6, 32, 2, 2), (6, 7)]
    w = [torch.randn(sh[1:], generator=gen(20 + i)) for i, sh in enumerate(shapes)]

    def grad_fn(states):
        return [wi * si + torch.sin(3 * si) for wi, si in zip(w, states)]

    kw = dict(non_diag_inv_mass=True, num_burn_in_steps=20)
    for save_at in (7, 30):
        states = [torch.rand(sh, generator=gen(i)) * 2 - 1 for i, sh in enumerate(shapes)]
        g = gen(11)
        smp = SGHMC(states, generator=g, **kw)
        smp.run(grad_fn, save_at)
        buf = io.BytesIO()
        torch.save({"sampler": smp.state_dict(), "rng": g.get_state(),
                    "states": [x.clone() for x in states]}, buf)
        smp.run(grad_fn, 25)
        expect = [x.clone() for x in states] + [p.clone() for p in smp.momentum]

        buf.seek(0)
        ck = torch.load(buf, weights_only=True)
        g2 = torch.Generator()
        g2.set_state(ck["rng"])
        states2 = ck["states"]
        smp2 = SGHMC(states2, generator=g2, **kw)
        smp2.load_state_dict(ck["sampler"])
        assert smp2.step_count == save_at
        smp2.run(grad_fn, 25)
        got = states2 + smp2.momentum
        for a, b in zip(got, expect):
            assert torch.equal(a, b)
        with pytest.raises(ValueError, match="mismatch"):
            SGHMC(states2, generator=g2, fixed=[True, False, False]).load_state_dict(ck["sampler"])
        smp2.reset()
        assert smp2.step_count == 0 and all((p == 0).all() for p in smp2.momentum)


def test_sampling_accumulates_no_parameter_gradients():
    """The documented use: the caller's gradient is torch.autograd.grad with respect to the
    states only, so no parameter .grad appears; the sampler's update builds no graph."""
    weight = torch.nn.Parameter(torch.randn(5, 5, generator=gen(1)))
    s = [torch.zeros(3, 5, requires_grad=True)]

    def grad_fn(states):
        energy = 0.5 * (states[0] ** 2).sum() - 0.5 * (states[0] * torch.tanh(states[0] @ weight)).sum()
        return torch.autograd.grad(energy, states)

    smp = SGHMC(s, generator=gen(), num_burn_in_steps=3)
    smp.run(grad_fn, 10)
    assert weight.grad is None and s[0].grad is None and s[0].grad_fn is None
    assert s[0].abs().sum() > 0


def test_mean_batch_minv_and_validation():
    s = [torch.rand(5, 4, generator=gen(1))]
    smp = SGHMC(s, generator=gen(), mean_batch_minv_t=True, num_burn_in_steps=3)
    smp.run(lambda st: [st[0] * torch.arange(1.0, 6.0)[:, None]], 4)
    m = smp.inverse_mass()[0]
    assert torch.equal(m, m[:1].expand_as(m)) and m[0].std() > 0
    with pytest.raises(ValueError, match="one per layer"):
        SGHMC(s, generator=gen(), sampling_step_size=[0.1, 0.2])
    with pytest.raises(ValueError, match="gradient of layer 0"):
        smp.step([torch.zeros(5, 3)])
    with pytest.raises(ValueError, match="circulant sd"):
        SGHMC([torch.zeros(2, 12, 3, 3)], generator=gen(), non_diag_inv_mass=True)
    with pytest.raises(ValueError, match="min_sq_sigma"):
        SGHMC(s, generator=gen(), min_sq_sigma=1e-3, max_sq_sigma=1e-4)
    with pytest.raises(ValueError, match="method"):
        SGHMC(s, generator=gen(), method="hmc")


def test_half_precision_states_keep_float32_sampler_state():
    s = [torch.rand(4, 3, 4, 4, generator=gen(1)).bfloat16(),
         torch.rand(4, 32, 2, 2, generator=gen(2)).bfloat16()]
    smp = SGHMC(s, generator=gen(), non_diag_inv_mass=True, num_burn_in_steps=3)
    smp.run(lambda st: [x.float() * 0.1 for x in st], 6)
    assert s[0].dtype == torch.bfloat16 and smp.momentum[1].dtype == torch.float32
    assert smp.state_dict()["v"].dtype == torch.float32 and all(x.abs().max() <= 1 for x in s)
