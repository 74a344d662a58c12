"""Exact Hessian of log q(z) through the inverse flow."""
from __future__ import annotations

import math

import torch

from dsn.flow import DensityNetwork
from dsn.hessian import hessian_directions, log_density_hessian


def test_hessian_of_a_gaussian_log_density_is_minus_the_precision():
    A = torch.tensor([[2.0, 0.3, 0.0], [0.3, 1.0, -0.2], [0.0, -0.2, 0.5]], dtype=torch.float64)
    m = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)

    def log_prob(z):
        d = z - m
        return -0.5 * torch.einsum("ki,ij,kj->k", d, A, d)

    H = log_density_hessian(log_prob, torch.randn(4, 3, dtype=torch.float64))
    torch.testing.assert_close(H, -A.expand(4, 3, 3), rtol=1e-12, atol=1e-12)


def test_flow_hessian_matches_finite_differences_of_the_gradient():
    torch.manual_seed(0)
    flow = DensityNetwork(torch.full((4,), -5.0), torch.full((4,), 5.0), couplings=4, hidden=(8,),
                          sigma_init=2.0)
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.3 * torch.randn_like(p))
    flow = flow.double().eval()
    with torch.no_grad():
        z, _ = flow.rsample_and_log_prob(3, torch.Generator().manual_seed(1))
    H = log_density_hessian(flow.log_prob, z)

    def grad(x):
        x = x.clone().requires_grad_(True)
        return torch.autograd.grad(flow.log_prob(x[None])[0], x)[0]

    h = 1e-5
    for k in range(z.shape[0]):
        fd = torch.stack([(grad(z[k] + h * e) - grad(z[k] - h * e)) / (2 * h)
                          for e in torch.eye(4, dtype=torch.float64)], 1)
        torch.testing.assert_close(H[k], 0.5 * (fd + fd.T), rtol=1e-5, atol=1e-6)
    assert torch.allclose(H, H.transpose(1, 2))


def test_directions_are_ordered_by_degeneracy():
    H = torch.diag(torch.tensor([-1.0, -100.0, -0.01, 5.0]))[None]
    R = torch.linalg.qr(torch.randn(4, 4, generator=torch.Generator().manual_seed(0)))[0]
    d = hessian_directions(R @ H @ R.T)
    torch.testing.assert_close(d["eigenvalues"][0], torch.tensor([-0.01, -1.0, 5.0, -100.0]), rtol=1e-5, atol=1e-5)
    for key, col in (("most_degenerate", 2), ("least_degenerate", 1)):
        assert abs(float(d[key][0] @ R[:, col])) > 1 - 1e-5
        assert float(d[key][0][d[key][0].abs().argmax()]) > 0  # sign convention
    assert math.isclose(float(d["most_degenerate"].norm()), 1.0, rel_tol=1e-6)
