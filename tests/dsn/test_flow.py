"""The density network: box bijection, exact log-density, inverse, pre-training."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dsn.flow import DensityNetwork, SupportMap, coupling_masks
from dsn.pretrain import isotropic_log_prob, pretrain_isotropic

BOX = (torch.tensor([-2.0, 0.0, -20.0]), torch.tensor([3.0, 4.0, 20.0]))


def _jiggled(flow: DensityNetwork, seed: int = 0, scale: float = 0.3) -> DensityNetwork:
    """Perturb every parameter so the couplings are far from the identity."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return flow


def test_box_bijection_log_det_matches_autograd_and_is_stable():
    t = SupportMap(*BOX).double()().base  # the elementwise map z = m tanh(x) + c
    x = torch.linspace(-6, 6, 25, dtype=torch.float64)[:, None].expand(25, 3).clone().requires_grad_(True)
    z = t(x)
    dzdx = torch.autograd.grad(z.sum(), x)[0]  # elementwise map: the Jacobian is diagonal
    torch.testing.assert_close(t.log_abs_det_jacobian(x, z), dzdx.log(), rtol=1e-10, atol=1e-10)
    # far in the tails the naive log(m (1 - tanh^2)) is -inf; the stable form is exact
    far = torch.tensor([[40.0, -60.0, 90.0]], dtype=torch.float64)
    ladj = t.log_abs_det_jacobian(far, t(far))
    m = (BOX[1] - BOX[0]).double() / 2
    expected = m.log() + math.log(4.0) - 2.0 * far.abs()  # 1 - tanh^2 x ~ 4 exp(-2|x|)
    assert torch.isfinite(ladj).all()
    torch.testing.assert_close(ladj, expected, rtol=1e-12, atol=1e-9)


def test_box_bijection_inverse_round_trip_and_range():
    t = SupportMap(*BOX).double()().base
    g = torch.Generator().manual_seed(0)
    x = (torch.randn(1000, 3, generator=g, dtype=torch.float64) * 2).clamp(-6, 6)
    z = t(x)
    assert ((z >= BOX[0].double()) & (z <= BOX[1].double())).all()
    torch.testing.assert_close(t.inv(z), x, rtol=1e-6, atol=1e-6)
    # the inverse clamps at 1 - 1e-7 of the half-width: finite on the box's edges
    assert torch.isfinite(t.inv(torch.stack([BOX[0], BOX[1]]).double())).all()


def test_unbounded_dimensions_are_left_alone():
    t = SupportMap(torch.tensor([-math.inf, 0.0]), torch.tensor([math.inf, 1.0]))().base
    x = torch.tensor([[3.0, 0.0]])
    assert t(x)[0, 0] == 3.0 and t(x)[0, 1] == pytest.approx(0.5)
    assert t.log_abs_det_jacobian(x, t(x))[0, 0] == 0.0
    with pytest.raises(ValueError):
        SupportMap(torch.tensor([0.0]), torch.tensor([math.inf]))


def test_masks_alternate_and_cover_every_dimension():
    for D in (2, 3, 4, 7):
        masks = coupling_masks(D, 4)
        for a, b in zip(masks[::2], masks[1::2]):
            assert torch.equal(a, ~b)  # a pair updates every dimension once
        assert all(0 < int(m.sum()) < D for m in masks)


@pytest.mark.parametrize("batch_norm,coupling", [(False, "affine"), (True, "affine"), (False, "spline")])
def test_log_prob_is_the_change_of_variables_by_autograd(batch_norm, coupling):
    torch.manual_seed(0)
    flow = _jiggled(DensityNetwork(*BOX, couplings=4, hidden=(8, 8), batch_norm=batch_norm,
                                   sigma_init=2.0, coupling=coupling)).double()
    if batch_norm:  # give the running statistics non-trivial values, then freeze them
        with torch.no_grad():
            flow.train()
            for _ in range(5):
                flow.rsample_and_log_prob(256)
    flow.eval()
    w = torch.randn(6, 3, dtype=torch.float64)
    z, log_q = flow.push(w)
    jac = torch.stack([torch.autograd.functional.jacobian(lambda v: flow.push(v[None])[0][0], wi) for wi in w])
    base = -0.5 * (w ** 2).sum(-1) - 1.5 * math.log(2 * math.pi)
    expected = base - torch.linalg.slogdet(jac)[1]
    # (autograd's 1 - tanh^2 loses digits in the tails, hence 1e-6 rather than 1e-12)
    torch.testing.assert_close(log_q, expected, rtol=1e-6, atol=1e-6)
    # the inverse flow gives the same density at the same points
    torch.testing.assert_close(flow.log_prob(z), log_q, rtol=1e-7, atol=1e-7)


@pytest.mark.parametrize("coupling,components", [("affine", 1), ("spline", 1), ("affine", 3)])
def test_flow_density_integrates_to_one_on_a_box(coupling, components):
    """q is a density on the support: a grid integral of exp(log q) over a 2-D box is 1 (also
    with a mixture base)."""
    torch.manual_seed(0)
    flow = _jiggled(DensityNetwork(torch.tensor([-1.0, 0.0]), torch.tensor([1.0, 2.0]), couplings=4,
                                   hidden=(8,), sigma_init=0.5, coupling=coupling, base_components=components),
                    seed=3).double().eval()
    k = 600
    a = torch.linspace(-1, 1, k + 1, dtype=torch.float64)[:-1] + 1.0 / k  # midpoints
    b = torch.linspace(0, 2, k + 1, dtype=torch.float64)[:-1] + 1.0 / k
    grid = torch.cartesian_prod(a, b)
    with torch.no_grad():
        mass = flow.log_prob(grid).exp().sum() * (2.0 / k) * (2.0 / k)
    assert float(mass) == pytest.approx(1.0, abs=5e-3)


def test_initial_flow_and_pretraining_reach_the_isotropic_gaussian():
    sigma = 1.5
    lo, hi = torch.full((3,), -math.inf), torch.full((3,), math.inf)
    flow = DensityNetwork(lo, hi, couplings=2, hidden=(8,), sigma_init=sigma)
    z, _ = flow.rsample_and_log_prob(20000, torch.Generator().manual_seed(0))
    torch.testing.assert_close(z.std(0), torch.full((3,), sigma), rtol=0.03, atol=0.0)
    # from a perturbed start, pre-training brings the KL to N(0, sigma^2 I) near zero
    flow = _jiggled(flow, scale=0.5)
    kl = pretrain_isotropic(flow, torch.zeros(3), sigma, steps=300, n=256, lr=1e-2,
                            generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        z, lq = flow.rsample_and_log_prob(20000, torch.Generator().manual_seed(2))
        kl_fresh = float((lq - isotropic_log_prob(z, torch.zeros(3), sigma)).mean())
    assert abs(kl) < 0.05 and kl_fresh < 0.02
    torch.testing.assert_close(z.mean(0), torch.zeros(3), rtol=0, atol=0.1 * sigma)
    torch.testing.assert_close(z.std(0), torch.full((3,), sigma), rtol=0.08, atol=0)


def test_spline_couplings_start_as_the_identity_and_bend():
    """Zero-initialised spline couplings leave w untouched (only the affine and box maps act);
    perturbed, the coupling is a genuinely non-affine monotone map of the updated half."""
    lo, hi = torch.full((2,), -math.inf), torch.full((2,), math.inf)
    spline = DensityNetwork(lo, hi, couplings=2, hidden=(8,), sigma_init=1.0, coupling="spline").double()
    w = torch.randn(50, 2, dtype=torch.float64)
    torch.testing.assert_close(spline.push(w)[0], w, rtol=1e-12, atol=1e-12)
    layer = _jiggled(spline, scale=1.0).couplings[0]
    t = layer()
    b = int((~layer.mask).nonzero()[0, 0])  # the updated dimension; the other is held at 0
    x = torch.zeros(200, 2, dtype=torch.float64)
    x[:, b] = torch.linspace(-4, 4, 200, dtype=torch.float64)
    y = t(x)[:, b].detach()
    dy = y.diff()
    assert bool((dy > 0).all())  # monotone
    assert float(dy.max() / dy.min()) > 1.5  # not a straight line
    torch.testing.assert_close(t.inv(t(x)), x, rtol=1e-9, atol=1e-9)
    with pytest.raises(ValueError):
        DensityNetwork(lo, hi, couplings=2, coupling="quadratic")


def test_paired_mlp_is_two_independent_networks():
    from dsn.paired_mlp import PairedMLP

    torch.manual_seed(0)
    net = PairedMLP(3, 2, (5, 4), activation=torch.nn.Tanh, zero_last=False)
    x = torch.randn(7, 3)
    out = net(x)
    for k in range(2):
        h = x
        for i, (w, b) in enumerate(zip(net.weights, net.biases)):
            h = h @ w[k] + b[k, 0]
            if i < 2:
                h = torch.tanh(h)
        torch.testing.assert_close(out[k], h)
    assert net(torch.randn(2, 7, 3)).shape == (2, 2, 7, 2)  # leading dimensions kept
    assert (PairedMLP(3, 2, (5,))(x) == 0).all()  # zero last layer: identity coupling


def test_unpaired_zuko_mlps_give_the_same_kind_of_flow():
    flow = _jiggled(DensityNetwork(*BOX, couplings=2, hidden=(8,), paired=False)).double().eval()
    w = torch.randn(5, 3, dtype=torch.float64)
    z, log_q = flow.push(w)
    torch.testing.assert_close(flow.log_prob(z), log_q, rtol=1e-7, atol=1e-7)
    assert hasattr(flow.couplings[0], "scale_net") and not hasattr(flow.couplings[0], "nets")


def test_mixture_base_density_draws_and_gradients():
    """base_components = K: the base log-density is the equal-weight mixture of N(m_k, I) (closed
    form via scipy), a flow with identity couplings on R^2 draws each component a K-th of the
    time around its mean, and the reparameterised draws carry gradients to the means."""
    from scipy import stats as st

    lo, hi = torch.full((2,), -math.inf), torch.full((2,), math.inf)
    torch.manual_seed(0)
    flow = DensityNetwork(lo, hi, couplings=2, hidden=(8,), sigma_init=1.0, base_components=2).double()
    with torch.no_grad():
        flow.base_means.copy_(torch.tensor([[-4.0, 0.0], [4.0, 1.0]], dtype=torch.float64))
    w = torch.randn(7, 2, dtype=torch.float64)
    means = flow.base_means.detach().numpy()
    expected = np.log(0.5 * sum(st.multivariate_normal(m, np.eye(2)).pdf(w.numpy()) for m in means))
    np.testing.assert_allclose(flow.base_log_prob(w).detach().numpy(), expected, rtol=1e-7)  # log 2π kept in float32
    z, lq = flow.rsample_and_log_prob(40_000, torch.Generator().manual_seed(1))
    left = z[:, 0] < 0
    assert float(left.double().mean()) == pytest.approx(0.5, abs=0.01)
    torch.testing.assert_close(z[left].mean(0).detach(), torch.tensor([-4.0, 0.0], dtype=torch.float64),
                               rtol=0, atol=0.03)
    torch.testing.assert_close(lq, flow.log_prob(z), rtol=1e-8, atol=1e-8)
    (z[:, 0].mean() + lq.mean()).backward()
    assert flow.base_means.grad is not None and bool(flow.base_means.grad.abs().sum() > 0)
    with pytest.raises(ValueError, match="base_components"):
        DensityNetwork(lo, hi, base_components=0)
