"""The systems library against independent computations."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import optimize

from dsn.systems import System, make_system, register, system_names
from dsn.systems.linear2d import principal_eigenvalue
from dsn.systems.v1 import rk4_rates, v1_rate_derivative


def test_principal_eigenvalue_matches_numpy_eig():
    g = torch.Generator().manual_seed(0)
    z = 20 * torch.rand(2000, 4, generator=g, dtype=torch.float64) - 10
    tau = 0.5
    re, im = principal_eigenvalue(z, tau)
    ev = np.linalg.eig(z.reshape(-1, 2, 2).numpy() / tau)[0]  # (batch, 2)
    top = ev[np.arange(len(ev)), ev.real.argmax(1)]
    np.testing.assert_allclose(re.numpy(), top.real, rtol=1e-9, atol=1e-6)
    np.testing.assert_allclose(im.numpy(), np.abs(top.imag), rtol=1e-9, atol=1e-5)


@pytest.mark.parametrize("form", ["dsn", "epi"])
def test_linear2d_statistics_of_a_centre(form):
    """A = [[0, w], [-w, 0]] is a centre with lambda = +- i w."""
    system = make_system("linear2d" if form == "dsn" else "linear2d_epi")
    w = 2 * math.pi
    T = system.suff_stats(torch.tensor([[0.0, w, -w, 0.0]], dtype=torch.float64))[0]
    expected = [0.0, 1.0, 0.0, 1.0] if form == "dsn" else [0.0, w, 0.0, 0.0]
    torch.testing.assert_close(T, torch.tensor(expected, dtype=torch.float64), rtol=1e-9, atol=1e-7)
    lo, hi = (-20.0, 20.0) if form == "dsn" else (-10.0, 10.0)
    assert float(system.lower[0]) == lo and float(system.upper[0]) == hi
    mu = [0.0, 1.0, 1.0, 1.025] if form == "dsn" else [0.0, w, 0.0625, (math.pi / 5) ** 2]
    torch.testing.assert_close(system.mu, torch.tensor(mu))


def test_linear2d_gradients_stay_finite_at_repeated_eigenvalues():
    z = torch.tensor([[1.0, 0.0, 0.0, 1.0], [1.0, 1.0, 0.0, 1.0]], requires_grad=True)  # disc = 0
    make_system("linear2d").suff_stats(z).sum().backward()
    assert torch.isfinite(z.grad).all()


def test_linear2d_trajectories_follow_the_exact_solution():
    system = make_system("linear2d")
    z = torch.tensor([[-0.5, 2 * math.pi, -2 * math.pi, -0.5]])
    x = system.simulate(z, dt=0.01, steps=100)
    t = 1.0  # decaying rotation: x(t) = exp(-0.5 t) (cos 2 pi t, -sin 2 pi t)
    expected = math.exp(-0.5 * t) * torch.tensor([math.cos(2 * math.pi * t), -math.sin(2 * math.pi * t)])
    torch.testing.assert_close(x[0, -1], expected, rtol=0, atol=1e-5)


def test_v1_rk4_reaches_the_fixed_point_of_the_rate_equation():
    system = make_system("v1", alpha="E")
    W, n = system.W.double(), system.n
    g = torch.Generator().manual_seed(0)
    dh = 2 * torch.rand(64, 4, generator=g, dtype=torch.float64) - 1
    h = system.h_b.double() + dh
    r = rk4_rates(h, W, n, system.tau, system.dt, system.steps)
    # the end state is a fixed point: relu(W r + h)^n = r, and scipy's root finder agrees
    torch.testing.assert_close(v1_rate_derivative(r, h, W, n, system.tau), torch.zeros_like(r), rtol=0, atol=1e-6)
    for k in range(0, 64, 8):
        fun = lambda x: -x + np.maximum(W.numpy() @ x + h[k].numpy(), 0) ** n  # noqa: E731
        sol = optimize.root(fun, r[k].numpy() * 1.05 + 0.01, tol=1e-12)
        assert sol.success
        np.testing.assert_allclose(sol.x, r[k].numpy(), rtol=1e-5, atol=1e-7)
    # responses are differences of two such steady states
    d = system.responses(dh.float())
    r0 = rk4_rates(system.h_b[None].double(), W, n, system.tau, system.dt, system.steps)
    torch.testing.assert_close(d.double(), r - r0, rtol=1e-4, atol=1e-5)


def test_v1_statistics_and_gradients():
    system = make_system("v1", alpha="P")
    z = torch.zeros(3, 4, requires_grad=True)
    T = system.suff_stats(z)
    torch.testing.assert_close(T[:, 0], torch.zeros(3), rtol=0, atol=1e-6)  # no input change, no response
    T[:, 0].sum().backward()
    assert torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0
    with pytest.raises(ValueError):
        make_system("v1", alpha="X")


def test_stg_hub_frequency_readout_recovers_a_sinusoid():
    system = make_system("stg")
    t = torch.arange(400) * system.dt
    for f0 in (0.2, 0.35, 0.53, 0.8):
        v = 0.03 * torch.sin(2 * math.pi * f0 * t)[None]
        assert float(system.hub_frequency(v)[0]) == pytest.approx(f0, abs=0.02)


def test_stg_hub_sits_between_the_slow_and_fast_rhythms():
    """At moderate coupling (4, 4) nS the fast neurons run near 0.7 Hz and the hub locks to its
    electrically coupled slow partner s2 near 0.35 Hz; strong electrical coupling with weak
    synapses (6, 1) nS locks the whole circuit at an intermediate frequency near the published
    0.53 Hz, and along g_el = 6 nS the hub slows monotonically as g_synA grows to 1.8 nS."""
    system = make_system("stg")
    z = torch.tensor([[4.0, 4.0], [6.0, 1.0]])
    with torch.no_grad():
        v = system.simulate(z)
    f = torch.stack([system.hub_frequency(v[:, :, j]) for j in range(5)], 1)
    f1, f2, hub, s1, s2 = f[0]
    assert min(f1, f2) > 0.6 and hub < 0.4
    assert float(hub) == pytest.approx(float(s2), abs=0.03)
    assert ((f[1] > 0.5) & (f[1] < 0.6)).all()
    assert float(f[1, 2]) == pytest.approx(0.53, abs=0.05)
    g_syn = torch.linspace(0.1, 1.8, 8)
    with torch.no_grad():
        hub_f = system.suff_stats(torch.stack([torch.full_like(g_syn, 6.0), g_syn], 1))[:, 0]
    assert (hub_f.diff() < 0).all() and hub_f[0] > 0.6 and hub_f[-1] < 0.54


@pytest.mark.parametrize("noise", [0.0, 2e-12])
def test_stg_adjoint_gradient_equals_autograd_through_every_step(noise):
    """The hand-derived adjoint of the Euler sweep reproduces autograd's gradient (float64)."""
    z = torch.tensor([[4.3, 0.7], [5.5, 1.6], [6.2, 2.9], [7.8, 3.8]], dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 301, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    out = []
    for adjoint in (True, False):
        system = make_system("stg", adjoint=adjoint, noise=noise)
        torch.manual_seed(0)
        v = system.simulate(z)
        (g_v,) = torch.autograd.grad((v * w).sum(), z)
        torch.manual_seed(0)
        (g_t,) = torch.autograd.grad(system.suff_stats(z)[:, 0].sum(), z)
        out.append((v.detach(), g_v, g_t))
    (v_a, gv_a, gt_a), (v_r, gv_r, gt_r) = out
    torch.testing.assert_close(v_a, v_r, rtol=0, atol=1e-12)
    torch.testing.assert_close(gv_a, gv_r, rtol=1e-9, atol=1e-9 * float(gv_r.abs().max()))
    torch.testing.assert_close(gt_a, gt_r, rtol=1e-9, atol=1e-9 * float(gt_r.abs().max()))
    assert gt_r.abs().max() > 0


def test_a_user_system_can_be_registered():
    class Sum(System):
        name = "sum_test"

        def __init__(self, mu=None):
            super().__init__(["a", "b"], [-1, -1], [1, 1], ["a+b"], [0.5] if mu is None else mu)

        def suff_stats(self, z):
            return z.sum(-1, keepdim=True)

    register("sum_test", Sum)
    assert "sum_test" in system_names()
    s = make_system("sum_test")
    assert s.D == 2 and s.m == 1 and float(s.suff_stats(torch.ones(1, 2))[0, 0]) == 2.0
    with pytest.raises(KeyError):
        make_system("no_such_system")
