"""The max-entropy dual reference and the closed-form ground truths it is checked against."""
from __future__ import annotations

import math

import pytest
import torch
from scipy import integrate

from dsn.maxent import maxent_dual, maxent_reference
from dsn.systems import make_system
from dsn.systems.moments import truncated_exponential


@pytest.mark.parametrize("mean,b", [(1.0, 4.0), (3.2, 4.0), (0.5, 1.0), (0.25, 2.0)])
def test_truncated_exponential_against_quadrature(mean, b):
    eta, H = truncated_exponential(mean, b)
    Z = integrate.quad(lambda z: math.exp(eta * z), 0, b)[0]
    m = integrate.quad(lambda z: z * math.exp(eta * z), 0, b)[0] / Z
    h = -integrate.quad(lambda z: math.exp(eta * z) / Z * (eta * z - math.log(Z)), 0, b)[0]
    assert m == pytest.approx(mean, rel=1e-6)
    assert H == pytest.approx(h, rel=1e-6)
    assert (eta > 0) == (mean > b / 2)


def test_truncated_exponential_at_the_midpoint_is_uniform():
    eta, H = truncated_exponential(2.0, 4.0)
    assert abs(eta) < 1e-6 and H == pytest.approx(math.log(4.0), abs=1e-9)


def test_dual_recovers_the_truncated_exponential():
    g = torch.Generator().manual_seed(0)
    u = 4.0 * torch.rand(400_000, 1, generator=g, dtype=torch.float64)
    res = maxent_dual(u, torch.tensor([1.0]), math.log(4.0))
    eta, H = truncated_exponential(1.0, 4.0)
    assert float(res["eta"][0]) == pytest.approx(eta, rel=0.02)
    assert res["entropy"] == pytest.approx(H, abs=0.01)
    assert float(res["moments"][0]) == pytest.approx(1.0, abs=1e-4)  # weighted moments are exact


def test_dual_recovers_the_gaussian_on_a_wide_box():
    """E[z] = 0, E[z^2] = 1 on [-8, 8]: the answer is N(0, 1) up to a negligible truncation."""
    g = torch.Generator().manual_seed(1)
    u = 16.0 * torch.rand(1_000_000, 1, generator=g, dtype=torch.float64) - 8.0
    res = maxent_dual(torch.cat([u, u ** 2], 1), torch.tensor([0.0, 1.0]), math.log(16.0))
    assert res["entropy"] == pytest.approx(0.5 * math.log(2 * math.pi * math.e), abs=0.01)
    torch.testing.assert_close(res["eta"], torch.tensor([0.0, -0.5], dtype=torch.float64), rtol=0, atol=0.02)


def test_reference_for_linear2d_is_below_the_box_entropy_and_meets_the_moments():
    system = make_system("linear2d")
    res = maxent_reference(system, n_samples=200_000, seed=0)
    assert res["entropy"] < 4 * math.log(40.0)  # constraints can only lower the entropy
    torch.testing.assert_close(res["moments"], system.mu, rtol=0, atol=1e-3)
    assert res["ess"] > 1000


def test_a_reference_the_draws_cannot_support_is_marked_unreliable():
    """A target deep in a tail that few uniform draws reach: the dual's number is not trusted."""
    from dsn.maxent import reliable

    g = torch.Generator().manual_seed(0)
    u = torch.rand(200_000, 1, generator=g, dtype=torch.float64) * 4 - 2
    good = maxent_dual(u, torch.tensor([1.0]), math.log(4.0))
    assert reliable(good) == (True, "")
    few = maxent_dual(u[:300], torch.tensor([1.99]), math.log(4.0))   # the mean of a sliver near the edge
    ok, why = reliable(few)
    assert not ok and ("effective sample size" in why or "miss mu" in why)
    beyond = maxent_dual(u[:1000], torch.tensor([2.5]), math.log(4.0))  # outside the box: unreachable
    assert not reliable(beyond)[0]


class _TruncExpProposal(torch.nn.Module):
    """q(z) ∝ exp(eta z) on [0, b] (exact inverse-CDF draws), shaped like a trained flow."""

    def __init__(self, eta: float, b: float):
        super().__init__()
        self.eta, self.b = eta, b
        self.register_buffer("ref", torch.zeros(()))
        self.log_z = math.log(math.expm1(eta * b) / eta)

    def rsample_and_log_prob(self, n, generator):
        u = torch.rand(n, 1, generator=generator, dtype=torch.float64)
        z = torch.log1p(u * math.expm1(self.eta * self.b)) / self.eta
        return z, self.log_prob(z)

    def log_prob(self, z):
        return self.eta * z[:, 0] - self.log_z


def test_dual_with_a_proposal_matches_the_closed_form_with_a_larger_ess():
    """E[z] = 0.2 on [0, 4]: a truncated exponential with nearly all its mass below 1, where a
    quarter of the uniform draws land. Drawing half of them from a proposal near the solution
    (a defensive mixture, each draw weighted by 1 / r) gives the same closed-form H* and
    moments with a larger ESS; a poor proposal (far off) is still unbiased."""
    system = make_system("truncexp", mean=(0.2,))
    eta, H = truncated_exponential(0.2, 4.0)
    plain = maxent_reference(system, 40_000, seed=3)
    good = maxent_reference(system, 40_000, seed=3, proposal=_TruncExpProposal(-4.0, 4.0), keep_samples=True)
    poor = maxent_reference(system, 40_000, seed=3, proposal=_TruncExpProposal(+1.0, 4.0))
    for res, tol in ((plain, 0.03), (good, 0.01), (poor, 0.06)):  # seeds 3-5: |error| < 0.033, 0.004, 0.047
        assert res["entropy"] == pytest.approx(H, abs=tol)
        assert float(res["eta"][0]) == pytest.approx(eta, rel=0.05)
    assert good["ess"] > 1.5 * plain["ess"]
    assert poor["ess"] < plain["ess"]
    assert float(good["weights"] @ good["z"][:, 0]) == pytest.approx(0.2, abs=1e-4)
    with pytest.raises(ValueError, match="proposal_fraction"):
        maxent_reference(system, 100, proposal=_TruncExpProposal(-4.0, 4.0), proposal_fraction=1.0)
