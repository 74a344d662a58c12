"""Eigen-analysis of convolutional recurrences, checked against dense ground truth."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cordsnet.eigen import (arnoldi, arnoldi_eigs, conv_eigs, conv_matvec, conv_operator_matrix,
                            euler_map_eigenvalues, euler_stability_disc, euler_stability_margin,
                            jacobian_eigs, jacobian_matvec, linear_stability_margin, power_iteration,
                            ritz_pairs)

D = torch.float64


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def random_weight(c: int, k: int = 3, seed: int = 0) -> torch.Tensor:
    return torch.randn(c, c, k, k, generator=gen(seed), dtype=D) / (k * c ** 0.5)


def dense_sorted(a: torch.Tensor, which: str = "LM") -> np.ndarray:
    vals = torch.linalg.eigvals(a).numpy()        # LAPACK geev (torch's threads, not numpy's pool)
    key = np.abs(vals) if which == "LM" else vals.real
    return vals[np.lexsort((-vals.imag, -key))]


def assert_same_leading(found: torch.Tensor, dense: np.ndarray, k: int, rtol: float) -> None:
    """The k found values and the k leading dense ones coincide as sets (ties in modulus at
    position k -- a conjugate pair -- may be split either way, so match both directions)."""
    found = found.numpy()
    assert len(found) == k
    ref = dense[: k + 2]
    for lam in found:
        assert np.min(np.abs(ref - lam)) <= rtol * abs(lam), (lam, ref)
    for lam in dense[:k - 1]:
        assert np.min(np.abs(found - lam)) <= rtol * abs(lam), (lam, found)


# ------------------------------------------------------------------ the operator


@pytest.mark.parametrize("c,h,w,k", [(3, 5, 6, 3), (2, 7, 4, 5), (4, 1, 1, 1)])
def test_explicit_matrix_reproduces_conv2d(c, h, w, k):
    weight = random_weight(c, k, seed=1)
    a = conv_operator_matrix(weight, h, w)
    assert a.shape == (c * h * w, c * h * w)
    x = torch.randn(6, c, h, w, generator=gen(2), dtype=D)
    ref = F.conv2d(x, weight, padding=(k - 1) // 2)
    torch.testing.assert_close((x.reshape(6, -1) @ a.T).reshape(ref.shape), ref, rtol=0, atol=1e-12)


def test_matvec_and_transpose_equal_the_matrix_on_batches():
    weight = random_weight(3, seed=3)
    a = conv_operator_matrix(weight, 6, 5)
    v = torch.randn(2, 4, 90, generator=gen(4), dtype=D)
    torch.testing.assert_close(conv_matvec(weight, 6, 5)(v), v @ a.T, rtol=0, atol=1e-12)
    torch.testing.assert_close(conv_matvec(weight, 6, 5, transpose=True)(v), v @ a, rtol=0, atol=1e-12)
    # float32 weight, float64 vectors: computed in float32, returned in float64
    out = conv_matvec(weight.float(), 6, 5)(v)
    assert out.dtype == D
    torch.testing.assert_close(out, v @ a.T, rtol=1e-5, atol=1e-5)


def test_bad_geometry_is_refused():
    with pytest.raises(ValueError, match="2 \\* padding \\+ 1"):
        conv_operator_matrix(random_weight(2), 4, 4, padding=0)
    with pytest.raises(ValueError, match="\\(C, C, k, k\\)"):
        conv_matvec(torch.zeros(3, 2, 3, 3), 4, 4)
    with pytest.raises(ValueError, match="too large"):
        conv_operator_matrix(random_weight(2), 100, 100, max_size=1000)
    with pytest.raises(ValueError, match="which must be one of LM, LR"):
        arnoldi_eigs(conv_matvec(random_weight(2), 4, 4), 32, which="SM")


# ------------------------------------------------------------------ Arnoldi


def test_arnoldi_leading_10_match_dense_eig_on_a_small_convolution():
    """C=4, 8x8 (n = 256): 300 iterations span the whole space, so the Ritz values are exact."""
    weight = random_weight(4, seed=5)
    dense = dense_sorted(conv_operator_matrix(weight, 8, 8))
    found = arnoldi_eigs(conv_matvec(weight, 8, 8), 256, k=10, iterations=300, generator=gen(6))
    assert found.dtype == torch.complex128
    assert_same_leading(found, dense, 10, rtol=1e-4)
    np.testing.assert_allclose(np.abs(found.numpy()), np.abs(dense[:10]), rtol=1e-10)


@pytest.mark.parametrize("which", ["LM", "LR"])
def test_arnoldi_converges_before_spanning_the_space(which):
    """n = 800 with a 150 (LM) or 250 (LR; the rightmost edge converges more slowly)
    dimensional basis, and a 40-dimensional one with Krylov-Schur restarts: the leading 10
    still match dense eig to 1e-4."""
    weight = random_weight(8, seed=7)
    dense = dense_sorted(conv_operator_matrix(weight, 10, 10), which)
    mv = conv_matvec(weight, 10, 10)
    plain, res = arnoldi_eigs(mv, 800, k=10, iterations=150 if which == "LM" else 250, generator=gen(8),
                              which=which,
                              return_residuals=True)
    assert_same_leading(plain, dense, 10, rtol=1e-4)
    assert (res <= 1e-4 * plain.abs()).all()
    restarted, res = arnoldi_eigs(mv, 800, k=10, iterations=40, restarts=40, tol=1e-10,
                                  generator=gen(8), which=which, return_residuals=True)
    assert_same_leading(restarted, dense, 10, rtol=1e-6)
    assert (res <= 1e-10 * restarted.abs()).all()
    short = arnoldi_eigs(mv, 800, k=10, iterations=40, generator=gen(8), which=which)
    assert np.abs(short.numpy() - dense[:10]).max() > 1e-3    # without restarts 40 steps are not enough


def test_arnoldi_factorisation_and_residual_estimates_are_exact():
    weight = random_weight(3, seed=9)
    a = conv_operator_matrix(weight, 6, 6)
    v, h = arnoldi(conv_matvec(weight, 6, 6), 108, iterations=30, generator=gen(10))
    torch.testing.assert_close(v @ v.T, torch.eye(31, dtype=D), rtol=0, atol=1e-12)
    torch.testing.assert_close(a @ v[:30].T, v.T @ h, rtol=0, atol=1e-12)
    assert torch.equal(h, torch.triu(h, diagonal=-1))                        # Hessenberg
    # |H[m, :] y| is the true residual of the Ritz pair
    theta, y = torch.linalg.eig(h[:30])
    x = v[:30].T.to(torch.complex128) @ (y / torch.linalg.vector_norm(y, dim=0))
    true = torch.linalg.vector_norm(a.to(torch.complex128) @ x - x * theta, dim=0)
    values, residuals = ritz_pairs(h)
    order = [int(torch.argmin((theta - t).abs())) for t in values]
    torch.testing.assert_close(residuals, true[order], rtol=1e-8, atol=1e-12)


def test_unreorthogonalised_arnoldi_is_the_originals_scheme():
    weight = random_weight(4, seed=11)
    dense = dense_sorted(conv_operator_matrix(weight, 8, 8))
    found = arnoldi_eigs(conv_matvec(weight, 8, 8), 256, k=4, iterations=120, reorthogonalise=False,
                         generator=gen(12))
    assert_same_leading(found, dense, 4, rtol=1e-4)


def test_arnoldi_stops_on_an_invariant_subspace():
    """A 1x1 convolution with weight c I is c times the identity: one step, exact."""
    weight = (0.7 * torch.eye(3, dtype=D))[:, :, None, None]
    vals, res = arnoldi_eigs(conv_matvec(weight, 4, 4), 48, k=10, restarts=5, generator=gen(0),
                             return_residuals=True)
    assert vals.shape == (1,) and complex(vals[0]) == pytest.approx(0.7, abs=1e-14)
    assert float(res[0]) == 0.0


def test_conv_eigs_dense_and_arnoldi_paths_agree():
    weight = random_weight(4, seed=13)
    dense = conv_eigs(weight, 6, 6, k=6, which="LR")
    iterative = conv_eigs(weight, 6, 6, k=6, which="LR", dense_max=10, iterations=144)
    assert_same_leading(iterative, dense.numpy(), 6, rtol=1e-8)


# ------------------------------------------------------------------ power iteration


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_power_iteration_eigenvector_matches_the_dense_dominant_one(sign):
    """A non-negative kernel (times +-1): the dominant eigenvalue is real and simple."""
    weight = sign * random_weight(4, seed=14).abs()
    a = conv_operator_matrix(weight, 8, 8)
    vals, vecs = (t.numpy() for t in torch.linalg.eig(a))
    top = int(np.argmax(np.abs(vals)))                       # sorted by modulus, not column 0
    ref = vecs[:, top].real / np.linalg.norm(vecs[:, top].real)
    out = power_iteration(conv_matvec(weight, 8, 8), 256, trials=8, iterations=3000, generator=gen(15))
    assert out.converged and out.residual < 1e-8
    assert out.eigenvalue.real == pytest.approx(vals[top].real, rel=1e-8) and out.eigenvalue.imag == 0.0
    assert np.sign(out.eigenvalue.real) == sign
    assert out.eigenvector.dtype == D and out.eigenvector.shape == (256,)
    assert abs(float(out.eigenvector.numpy() @ ref)) > 0.999
    assert out.rayleigh == pytest.approx(out.eigenvalue.real, rel=1e-8)


def test_power_iteration_reports_a_complex_dominant_pair_honestly():
    """Channels (0, 1) rotate with eigenvalues 0.9 e^{+-i 0.5}; channel 2 decays at 0.5:
    the real Rayleigh quotient never converges, the 2-D Rayleigh-Ritz step finds the pair."""
    lam = 0.9 * np.exp(0.5j)
    m = torch.tensor([[lam.real, -lam.imag, 0.1], [lam.imag, lam.real, 0.0], [0.0, 0.0, 0.5]], dtype=D)
    weight = m[:, :, None, None]
    out = power_iteration(conv_matvec(weight, 3, 3), 27, trials=4, iterations=200, generator=gen(16))
    assert out.converged and out.residual < 1e-8
    assert out.eigenvalue == pytest.approx(lam, abs=1e-10)
    assert out.rayleigh_residual > 0.1                       # a real quotient cannot describe it
    a = conv_operator_matrix(weight, 3, 3).to(torch.complex128)
    u = out.eigenvector
    assert u.is_complex() and float(torch.linalg.vector_norm(u)) == pytest.approx(1.0)
    assert float(torch.linalg.vector_norm(a @ u - out.eigenvalue * u)) < 1e-8


def test_power_iteration_without_a_gap_says_it_did_not_converge():
    weight = (0.5 * torch.eye(2, dtype=D))[:, :, None, None]
    weight[0, 0] = -0.5                                       # eigenvalues +-0.5: no dominant one
    out = power_iteration(conv_matvec(weight, 2, 2), 8, trials=3, iterations=50, generator=gen(17))
    assert abs(out.eigenvalue) == pytest.approx(0.5, rel=1e-8)   # span(v, Av) is invariant here
    weight = random_weight(4, seed=18)
    out = power_iteration(conv_matvec(weight, 8, 8), 256, trials=2, iterations=20, generator=gen(19))
    assert not out.converged and out.residual > 1e-8 and out.iterations == 20


# ------------------------------------------------------------------ stability


def test_stability_margins_of_a_scalar_identity_convolution():
    alpha = 0.2
    centre, radius = euler_stability_disc(alpha)
    assert (centre, radius) == pytest.approx((-4.0, 5.0))
    for c in (0.5, 1.5, -9.5, 0.9 + 2.0j):
        if isinstance(c, complex):
            vals = torch.tensor([c, c.conjugate()], dtype=torch.complex128)
        else:
            weight = (c * torch.eye(3, dtype=D))[:, :, None, None]
            vals = arnoldi_eigs(conv_matvec(weight, 5, 5), 75, generator=gen(0))
            assert complex(vals[0]) == pytest.approx(c, abs=1e-13)
        assert linear_stability_margin(vals) == pytest.approx(1 - c.real)
        assert euler_stability_margin(vals, alpha) == pytest.approx(1 - abs(1 - alpha + alpha * c))
        assert complex(euler_map_eigenvalues(vals, alpha)[0]) == pytest.approx(1 - alpha + alpha * c)
        inside_disc = abs(c - centre) < radius
        assert (euler_stability_margin(vals, alpha) > 0) == inside_disc
    # c = -9.5: stable in continuous time (Re < 1) yet the alpha = 0.2 Euler map diverges
    assert linear_stability_margin([-9.5]) > 0 > euler_stability_margin([-9.5], alpha)


@pytest.mark.parametrize("target,stable", [(0.9, True), (1.1, False)])
def test_margin_sign_predicts_the_euler_simulation(target, stable):
    """Scale a conv so its rightmost eigenvalue is real at `target`; simulate the linear area."""
    weight = random_weight(3, seed=20).abs()                 # Perron: rightmost eigenvalue real
    top = conv_eigs(weight, 5, 5, k=1, which="LR")[0].real
    weight = weight * (target / float(top))
    vals = conv_eigs(weight, 5, 5)
    margin = euler_stability_margin(vals, 0.2)
    assert (margin > 0) == stable and (linear_stability_margin(vals) > 0) == stable
    a = conv_operator_matrix(weight, 5, 5)
    u = torch.randn(75, generator=gen(21), dtype=D)
    r = torch.zeros(75, dtype=D)
    for _ in range(1500):                                   # contraction 0.98 per step at 0.9
        r = 0.8 * r + 0.2 * (a @ r + u)
    fixed = torch.linalg.solve(torch.eye(75, dtype=D) - a, u)
    err = float(torch.linalg.vector_norm(r - fixed) / torch.linalg.vector_norm(fixed))
    assert (err < 1e-6) == stable


# ------------------------------------------------------------------ Jacobian


def test_jacobian_matvec_matches_the_autograd_jacobian():
    g = gen(22)
    m = torch.randn(24, 24, generator=g, dtype=D) / 5
    b = torch.randn(24, generator=g, dtype=D)

    def step(r):                                            # (2, 3, 4) -> (2, 3, 4)
        return 0.8 * r + 0.2 * torch.tanh((m @ r.reshape(-1) + b)).reshape(2, 3, 4) * r.sin()

    r0 = torch.randn(2, 3, 4, generator=g, dtype=D)
    dense = torch.autograd.functional.jacobian(lambda x: step(x.reshape(2, 3, 4)).reshape(-1), r0.reshape(-1))
    v = torch.randn(5, 24, generator=g, dtype=D)
    mv, n = jacobian_matvec(step, r0)
    assert n == 24
    torch.testing.assert_close(mv(v), v @ dense.T, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(mv(v[0]), dense @ v[0], rtol=1e-12, atol=1e-12)
    mvt, _ = jacobian_matvec(step, r0, transpose=True)
    torch.testing.assert_close(mvt(v), v @ dense, rtol=1e-12, atol=1e-12)
    loop, _ = jacobian_matvec(step, r0, vectorize=False)
    torch.testing.assert_close(loop(v), v @ dense.T, rtol=1e-12, atol=1e-12)


def test_jacobian_of_a_two_area_euler_step_is_the_closed_form():
    """Two areas, relu dynamics: J = (1 - a) I + a D [[R1, 0], [W, R2]] with D = relu' at r*."""
    g = gen(23)
    r1w, r2w, ww = random_weight(2, seed=24), random_weight(2, seed=25), random_weight(2, seed=26)
    b1 = torch.randn(2, 4, 4, generator=g, dtype=D)
    b2 = torch.randn(2, 4, 4, generator=g, dtype=D)
    alpha = 0.2

    def step(state):
        r1, r2 = state
        z1 = F.conv2d(r1[None], r1w, padding=1)[0] + b1
        z2 = F.conv2d(r2[None], r2w, padding=1)[0] + F.conv2d(r1[None], ww, padding=1)[0] + b2
        return (1 - alpha) * r1 + alpha * F.relu(z1), (1 - alpha) * r2 + alpha * F.relu(z2)

    state = (torch.randn(2, 4, 4, generator=g, dtype=D), torch.randn(2, 4, 4, generator=g, dtype=D))
    z1 = F.conv2d(state[0][None], r1w, padding=1)[0] + b1
    z2 = F.conv2d(state[1][None], r2w, padding=1)[0] + F.conv2d(state[0][None], ww, padding=1)[0] + b2
    d = torch.cat([(z1 > 0).reshape(-1), (z2 > 0).reshape(-1)]).to(D)
    zero = torch.zeros(32, 32, dtype=D)
    big = torch.cat([torch.cat([conv_operator_matrix(r1w, 4, 4), zero], 1),
                     torch.cat([conv_operator_matrix(ww, 4, 4), conv_operator_matrix(r2w, 4, 4)], 1)])
    jac = (1 - alpha) * torch.eye(64, dtype=D) + alpha * d[:, None] * big
    mv, n = jacobian_matvec(step, state)
    assert n == 64
    torch.testing.assert_close(mv(torch.eye(64, dtype=D)), jac.T, rtol=0, atol=1e-12)
    found = jacobian_eigs(step, state, k=8, iterations=64, generator=gen(27))
    assert_same_leading(found, dense_sorted(jac), 8, rtol=1e-8)


def test_jacobian_of_a_non_square_map_is_refused():
    with pytest.raises(ValueError, match="must be square"):
        jacobian_matvec(lambda r: r[:3], torch.zeros(5, dtype=D))


def test_area_stability_by_arnoldi_equals_the_dense_verdict():
    """The spectra analysis' stability inputs: Arnoldi sorted by modulus, by real part and on the
    Euler map find the same rightmost eigenvalue and Euler modulus as the dense spectrum."""
    from types import SimpleNamespace

    from cordsnet.analysis import stability_verdict
    from cordsnet.probes import _area_spectrum

    g = torch.Generator().manual_seed(2)
    w = 0.1 * torch.randn(6, 6, 3, 3, generator=g, dtype=torch.float64)
    cfg = SimpleNamespace(n_eigs=6, dense_limit=10**6, arnoldi_iters=120, arnoldi_restarts=20, alpha=0.2)
    *_, every, _ = _area_spectrum(w, 6, cfg, g)
    assert len(every) == 6 * 6 * 6
    dense = stability_verdict(every, 0.2)
    cfg.dense_limit = 10
    values, res, method, deciding, deciding_res = _area_spectrum(w, 6, cfg, g)
    assert method == "arnoldi_120" and len(values) == 6
    sparse = stability_verdict(deciding, 0.2, deciding_res)
    assert sparse["rightmost_re"] == pytest.approx(dense["rightmost_re"], abs=1e-8)
    assert sparse["euler_max_modulus"] == pytest.approx(dense["euler_max_modulus"], abs=1e-8)
    assert sparse["verdict"] == dense["verdict"] and sparse["rightmost_residual"] < 1e-6
    # the rightmost eigenvalue (0.64) is not among the 6 leading ones by modulus here (their largest
    # real part is -0.41): a verdict from those alone would be wrong
    assert values.real.max() < dense["rightmost_re"] - 0.5 and dense["verdict"] == "inside both"
