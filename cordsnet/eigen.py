"""Eigen-analysis of convolutional recurrences and of the full model's Jacobian.

A CordsNet area's recurrent convolution (weight ``(C, C, k, k)``, stride 1, "same" zero
padding ``p = (k - 1) / 2``) acting on the area's state ``r`` of shape ``(C, H, W)`` is a
linear map on ``R^n``, ``n = C * H * W``, with the state flattened channel-major::

    (R r)[c, y, x] = sum_{c', i, j} w[c, c', i, j] * r[c', y + i - p, x + j - p]

(zero outside the image, exactly ``torch.nn.functional.conv2d``). Its transpose is
``conv_transpose2d`` with the same weight and padding.

Tools, all pure functions on a matvec ``f: (..., n) -> (..., n)``:

* :func:`conv_operator_matrix` -- the explicit dense ``(n, n)`` matrix (small layers);
* :func:`conv_matvec` -- the same operator matrix-free (and its transpose), batched;
* :func:`arnoldi_eigs` -- leading Ritz values of ``iterations`` Arnoldi steps with full
  re-orthogonalisation (the original's 5,000 unshifted QR sweeps on the Hessenberg matrix are
  a similarity transform and change nothing: we take its eigenvalues directly);
* :func:`power_iteration` -- dominant eigenpair from many parallel trials, keeping the trial
  with the smallest residual ``||A v - lambda v||`` (the original averages the trials, which
  cancels when their signs differ), with a 2-D Rayleigh-Ritz step so that a complex pair is
  reported as such instead of as a meaningless real Rayleigh quotient;
* stability margins: a linear area ``tau dr/dt = -r + R r + u`` is stable iff every
  ``Re lambda(R) < 1``; the Euler map ``r <- (1 - alpha) r + alpha (R r + u)`` iff every
  ``|1 - alpha + alpha lambda| < 1`` (``lambda`` inside the disc of centre ``1 - 1/alpha``,
  radius ``1/alpha``);
* :func:`jacobian_matvec` -- the Jacobian of any recurrent map ``F`` at a state ``r*`` as a
  matvec by forward-mode autodiff (``torch.func.jvp``), for the spectrum of the full nonlinear
  model at its steady state.

Eigenvalues are returned as complex128 CPU tensors. "Leading" is by modulus (``which="LM"``,
the spectral radius side, what power iteration finds) or by real part (``which="LR"``, the
side that decides continuous-time stability); ties (conjugate pairs) put ``+Im`` first.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Callable, Sequence, Union

import torch
import torch.nn.functional as F

Matvec = Callable[[torch.Tensor], torch.Tensor]
State = Union[torch.Tensor, Sequence[torch.Tensor]]
WHICH = ("LM", "LR")


# --------------------------------------------------------------------------- convolution


def _conv_geometry(weight: torch.Tensor, padding) -> tuple[int, int, int, int, int]:
    """``(C, kh, kw, ph, pw)`` of a square, stride-1, same-padded recurrent convolution."""
    if weight.ndim != 4 or weight.shape[0] != weight.shape[1]:
        raise ValueError(f"a recurrent convolution needs a weight (C, C, k, k), got {tuple(weight.shape)}")
    c, _, kh, kw = weight.shape
    if padding is None:
        padding = ((kh - 1) // 2, (kw - 1) // 2)
    ph, pw = (padding, padding) if isinstance(padding, int) else tuple(padding)
    if kh != 2 * ph + 1 or kw != 2 * pw + 1:
        raise ValueError(f"padding {(ph, pw)} does not keep the size of a {kh}x{kw} kernel at stride 1 "
                         f"(needs kernel = 2 * padding + 1)")
    return c, kh, kw, ph, pw


def conv_operator_matrix(weight: torch.Tensor, height: int, width: int, padding=None,
                         max_size: int = 16384) -> torch.Tensor:
    """The dense matrix ``A`` (``(n, n)``, ``n = C*H*W``, weight's dtype and device) of the map
    ``r -> conv2d(r, weight, padding)`` on states flattened as ``(C, H, W)``.

    Built by placing each kernel tap directly (``A[(c,y,x), (c',y',x')] = w[c,c',y'-y+p,x'-x+p]``
    where the offset lies in the kernel), not by probing ``conv2d``, so a test against
    ``conv2d`` is a real check. ``padding`` defaults to ``(k - 1) // 2``; ``n > max_size``
    is refused (use :func:`conv_matvec`).
    """
    c, kh, kw, ph, pw = _conv_geometry(weight, padding)
    n = c * height * width
    if n > max_size:
        raise ValueError(f"a dense {n} x {n} matrix is too large (max_size={max_size}); "
                         f"use conv_matvec with arnoldi_eigs / power_iteration")
    dev = weight.device
    co, ci, i, j, y, x = torch.meshgrid(
        torch.arange(c, device=dev), torch.arange(c, device=dev), torch.arange(kh, device=dev),
        torch.arange(kw, device=dev), torch.arange(height, device=dev), torch.arange(width, device=dev),
        indexing="ij")
    yy, xx = y + i - ph, x + j - pw
    ok = (yy >= 0) & (yy < height) & (xx >= 0) & (xx < width)
    rows = (co * height + y) * width + x
    cols = (ci * height + yy) * width + xx
    vals = weight.detach()[:, :, :, :, None, None].expand(c, c, kh, kw, height, width)
    a = torch.zeros(n, n, dtype=weight.dtype, device=dev)
    a[rows[ok], cols[ok]] = vals[ok]       # each (row, col) pair has exactly one kernel offset
    return a


def conv_matvec(weight: torch.Tensor, height: int, width: int, padding=None,
                transpose: bool = False) -> Matvec:
    """Matrix-free ``v -> A v`` (or ``A^T v`` with ``transpose``) of :func:`conv_operator_matrix`.

    The returned function maps ``(..., n)`` to ``(..., n)`` (any batch shape, one conv call),
    computing in the weight's dtype and device and returning in the input's.
    """
    c, _, _, ph, pw = _conv_geometry(weight, padding)
    w = weight.detach()
    n = c * height * width
    op = F.conv_transpose2d if transpose else F.conv2d

    def matvec(v: torch.Tensor) -> torch.Tensor:
        if v.shape[-1] != n:
            raise ValueError(f"vectors of length {n} = {c}x{height}x{width} expected, got {tuple(v.shape)}")
        out = op(v.reshape(-1, c, height, width).to(w.device, w.dtype), w, padding=(ph, pw))
        return out.reshape(v.shape).to(v.device, v.dtype)

    return matvec


# --------------------------------------------------------------------------- Arnoldi


def _order(values: torch.Tensor, which: str) -> list[int]:
    """Indices of ``values`` (complex 1-D, CPU) sorted leading-first by ``which``."""
    if which == "LM":
        key = values.abs()
    elif which == "LR":
        key = values.real
    else:
        raise ValueError(f"which must be one of {', '.join(WHICH)}, got {which!r}")
    key, im = key.tolist(), values.imag.tolist()
    return sorted(range(len(key)), key=lambda i: (-key[i], -im[i]))


def _default_device(device, v0, generator):
    """The given device, else ``v0``'s, else the generator's, else the CPU."""
    if device is not None:
        return device
    if v0 is not None:
        return v0.device
    return generator.device if generator is not None else "cpu"


def _start_vector(n, v0, generator, dtype, device) -> torch.Tensor:
    if v0 is None:
        gen_dev = generator.device if generator is not None else "cpu"
        v0 = torch.randn(n, generator=generator, dtype=dtype, device=gen_dev)
    v0 = v0.reshape(-1).to(device, dtype)
    if v0.numel() != n:
        raise ValueError(f"v0 has {v0.numel()} entries, n = {n}")
    return v0 / torch.linalg.vector_norm(v0)


def _extend(matvec: Matvec, v: torch.Tensor, h: torch.Tensor, start: int, reorthogonalise: bool) -> int:
    """Arnoldi steps ``start .. m-1`` in place on ``v`` ``(m + 1, n)`` and ``h`` ``(m + 1, m)``
    (rows ``v[:start + 1]`` orthonormal, ``h[:, :start]`` filled). Returns the number of columns
    done: ``m``, or ``j + 1`` when ``A v_j`` lies in the basis (lucky breakdown; ``h[j+1, j] = 0``).

    ``reorthogonalise``: classical Gram-Schmidt with a second pass whenever the first removed
    more than ``1 - 1/sqrt 2`` of the norm (DGKS; orthogonal to working precision), else one
    modified Gram-Schmidt sweep (the original's; orthogonality decays as Ritz values converge).
    """
    m = h.shape[1]
    for j in range(start, m):
        w = matvec(v[j]).to(v.dtype)
        scale = float(torch.linalg.vector_norm(w))
        basis = v[: j + 1]
        if reorthogonalise:
            coef = basis @ w
            w = w - coef @ basis
            norm = float(torch.linalg.vector_norm(w))
            if norm < 0.7071 * scale:
                again = basis @ w
                w = w - again @ basis
                coef = coef + again
                norm = float(torch.linalg.vector_norm(w))
            h[: j + 1, j] = coef
        else:
            for i in range(j + 1):
                h[i, j] = torch.dot(v[i], w)
                w = w - h[i, j] * v[i]
            norm = float(torch.linalg.vector_norm(w))
        if norm <= 1e-12 * max(scale, 1e-300):
            h[j + 1, j] = 0.0
            return j + 1
        h[j + 1, j] = norm
        v[j + 1] = w / norm
    return m


def arnoldi(matvec: Matvec, n: int, iterations: int = 300, reorthogonalise: bool = True,
            generator: torch.Generator | None = None, v0: torch.Tensor | None = None,
            dtype: torch.dtype = torch.float64, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Arnoldi factorisation ``A V_m^T = V_{m+1}^T H`` from a random (or given) start vector.

    Returns ``V`` ``(m + 1, n)`` (orthonormal rows) and the Hessenberg ``H`` ``(m + 1, m)``,
    ``m = min(iterations, n)``, in ``dtype`` on ``device`` (default: ``v0``'s, else the
    generator's, else the CPU).
    On an invariant subspace (lucky breakdown) it stops early with ``H[m, m-1] = 0``.
    """
    v, h, done = _factorise(matvec, n, iterations, reorthogonalise, generator, v0, dtype, device)
    return v[: done + 1], h[: done + 1, :done]


def _factorise(matvec: Matvec, n: int, iterations: int, reorthogonalise: bool, generator, v0, dtype, device
               ) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Preallocated ``V (m+1, n)``, ``H (m+1, m)`` and the steps done (``m = min(iterations, n)``)."""
    device = _default_device(device, v0, generator)
    m = min(int(iterations), n)
    v = torch.zeros(m + 1, n, dtype=dtype, device=device)
    h = torch.zeros(m + 1, m, dtype=dtype, device=device)
    v[0] = _start_vector(n, v0, generator, dtype, device)
    return v, h, _extend(matvec, v, h, 0, reorthogonalise)


def ritz_pairs(h: torch.Tensor, which: str = "LM") -> tuple[torch.Tensor, torch.Tensor]:
    """Ritz values of ``H`` ``(m + 1, m)`` from ``A V_m^T = V_{m+1}^T H`` and their residuals.

    Returns complex128 ``values`` ``(m,)`` sorted leading-first and ``residuals`` ``(m,)``:
    ``|H[m, :] y|`` for unit eigenvectors ``y`` of ``H[:m, :m]``, which equals
    ``||A x - theta x||`` for the unit Ritz vector ``x = V_m^T y`` (for a Hessenberg ``H``,
    ``|h_{m+1,m}| |y_m|``; 0 after a lucky breakdown).
    """
    m = h.shape[1]
    h = h.detach().to("cpu", torch.float64)
    values, vecs = torch.linalg.eig(h[:m, :m])
    vecs = vecs / torch.linalg.vector_norm(vecs, dim=0, keepdim=True)
    residuals = (h[m:].to(vecs.dtype) @ vecs).abs().reshape(-1) if h.shape[0] > m else torch.zeros(m)
    order = torch.tensor(_order(values, which), dtype=torch.long)
    return values[order], residuals.to(torch.float64)[order]


def _krylov_schur_restart(v: torch.Tensor, h: torch.Tensor, keep: int, which: str) -> int | None:
    """Compress the factorisation to the ``~keep`` leading Ritz values (in place; Stewart's
    Krylov-Schur restart, equivalent to an implicit restart): with the ordered real Schur form
    ``H_m = Z T Z^T``, ``V_p <- Z_p^T V_m``, ``v_{p+1} <- v_{m+1}``, ``H <- [T_p; h_{m+1,:} Z_p]``.
    Returns ``p`` (``keep``, or more so that a conjugate pair or a tie is not split), or None,
    changing nothing, when LAPACK cannot reorder the Schur form (eigenvalues too close)."""
    import scipy.linalg

    m = h.shape[1]
    hm = h[:m, :m].detach().to("cpu", torch.float64).numpy()
    values = torch.linalg.eigvals(torch.from_numpy(hm))
    key = (values.abs() if which == "LM" else values.real).sort(descending=True).values
    cut = float(key[keep - 1])
    tol = 1e-9 * max(float(key.abs().max()), 1e-300)
    select = (lambda re, im: abs(complex(re, im)) >= cut - tol) if which == "LM" else \
        (lambda re, im: re >= cut - tol)
    try:
        t, z, p = scipy.linalg.schur(hm, output="real", sort=select)
    except scipy.linalg.LinAlgError:
        return None
    z = torch.from_numpy(z[:, :p]).to(v.device, v.dtype)
    last = h[m, :m] @ z
    v[:p] = z.T @ v[:m]
    v[p] = v[m]
    h.zero_()
    h[:p, :p] = torch.from_numpy(t[:p, :p]).to(h.device, h.dtype)
    h[p, :p] = last
    return p


def arnoldi_eigs(matvec: Matvec, n: int, k: int = 10, iterations: int = 300,
                 reorthogonalise: bool = True, generator: torch.Generator | None = None,
                 which: str = "LM", restarts: int = 0, tol: float = 1e-8, v0: torch.Tensor | None = None,
                 dtype: torch.dtype = torch.float64, device=None, return_residuals: bool = False):
    """The ``k`` leading eigenvalues of the operator ``matvec`` (``n`` x ``n``) by Arnoldi.

    ``iterations`` Arnoldi steps (basis in ``dtype`` on ``device``, as in :func:`arnoldi`), then the
    eigenvalues of the small Hessenberg matrix, sorted by ``which`` (``"LM"`` modulus, ``"LR"``
    real part). With ``restarts > 0``, up to that many Krylov-Schur restarts follow (each keeps
    the ``max(2k, iterations/2)`` leading Ritz vectors and extends the basis back to
    ``iterations``) until the ``k`` leading residuals are below ``tol * |theta|``; none runs
    when the first pass has converged. Returns complex128 ``(min(k, m),)`` on the CPU, and
    with ``return_residuals`` also each value's residual ``||A x - theta x||`` (the Ritz value
    is trustworthy when it is small next to ``|theta|``; the estimate assumes the Arnoldi
    relation holds exactly, so with a float32 basis values below ~1e-6 are not meaningful).
    ``iterations >= n`` is exact up to rounding.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    _order(torch.zeros(0, dtype=torch.complex128), which)          # validates `which`
    v, h, done = _factorise(matvec, n, iterations, reorthogonalise, generator, v0, dtype, device)
    m = h.shape[1]
    keep = min(max(2 * k, m // 2), m - 2)
    for _ in range(restarts if done == m and keep >= k else 0):
        values, residuals = ritz_pairs(h, which)
        if bool((residuals[:k] <= tol * values[:k].abs()).all()):
            break
        p = _krylov_schur_restart(v, h, keep, which)
        if p is None or p >= m - 1:
            break
        done = _extend(matvec, v, h, p, reorthogonalise)
        if done < m:
            break
    values, residuals = ritz_pairs(h[: done + 1, :done], which)
    if return_residuals:
        return values[:k], residuals[:k]
    return values[:k]


def conv_eigs(weight: torch.Tensor, height: int, width: int, padding=None, k: int | None = None,
              which: str = "LM", dense_max: int = 4096, iterations: int = 300, restarts: int = 0,
              generator: torch.Generator | None = None) -> torch.Tensor:
    """Leading eigenvalues (complex128, CPU) of a recurrent convolution: dense ``eig`` of the
    explicit matrix when ``n <= dense_max`` (all ``n`` of them when ``k`` is None), else
    :func:`arnoldi_eigs` with ``iterations`` steps and ``restarts`` (``k`` None: all Ritz
    values, the trailing ones unconverged)."""
    c, *_ = _conv_geometry(weight, padding)
    n = c * height * width
    if n <= dense_max:
        a = conv_operator_matrix(weight, height, width, padding).to("cpu", torch.float64)
        values = torch.linalg.eigvals(a)
        values = values[torch.tensor(_order(values, which), dtype=torch.long)]
        return values if k is None else values[:k]
    return arnoldi_eigs(conv_matvec(weight, height, width, padding), n, k=k or iterations,
                        iterations=iterations, restarts=restarts, generator=generator, which=which,
                        device=weight.device)


# --------------------------------------------------------------------------- power iteration


@dataclass
class PowerResult:
    """Dominant eigenpair found by :func:`power_iteration`.

    ``eigenvalue`` (complex), ``eigenvector`` ``(n,)`` of unit norm (real dtype when the
    eigenvalue is real, else complex; phase fixed so its largest entry is real positive),
    ``residual`` = ``||A v - lambda v|| / |lambda|``, ``converged`` = residual < tol; ``rayleigh``
    and ``rayleigh_residual`` are the plain real Rayleigh quotient ``v^T A v`` of the kept
    trial and its relative residual (large when the dominant eigenvalue is complex);
    ``trial`` is the kept trial and ``iterations`` the steps run.
    """
    eigenvalue: complex
    eigenvector: torch.Tensor
    residual: float
    converged: bool
    rayleigh: float
    rayleigh_residual: float
    trial: int
    iterations: int


def _rowdot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a.conj() * b).sum(-1)


def power_iteration(matvec: Matvec, n: int, trials: int = 32, iterations: int = 2000,
                    generator: torch.Generator | None = None, tol: float = 1e-8,
                    check_every: int = 20, dtype: torch.dtype = torch.float64,
                    device=None) -> PowerResult:
    """Dominant eigenpair by power iteration over ``trials`` parallel random start vectors.

    Each step is one batched matvec of ``(trials, n)``; every ``check_every`` steps the
    Rayleigh quotients and residuals come for free from that product, and the run stops when
    the best trial's relative residual is below ``tol``. At the end each trial gets a 2-D
    Rayleigh-Ritz step on ``span(v, A v)``: a real dominant eigenvalue (positive or negative)
    is found either way, a complex pair ``a +- ib`` (where ``v`` rotates and never converges)
    gives its eigenvalue of ``+Im`` and complex eigenvector. The trial with the smallest
    relative residual is kept. Convergence needs a gap ``|lambda_2| < |lambda_1|`` (rate
    ``|lambda_2 / lambda_1|`` per step); ``converged`` says whether it happened. Vectors are
    in ``dtype`` on ``device`` (default: the generator's, else the CPU).
    """
    device = _default_device(device, None, generator)
    tiny = torch.finfo(dtype).tiny
    gen_dev = generator.device if generator is not None else "cpu"
    v = torch.randn(trials, n, generator=generator, dtype=dtype, device=gen_dev).to(device)
    v = v / torch.linalg.vector_norm(v, dim=-1, keepdim=True)
    done = 0
    for done in range(1, iterations + 1):
        w = matvec(v).to(dtype)
        if done % check_every == 0:
            rq = _rowdot(v, w)
            res = torch.linalg.vector_norm(w - rq[:, None] * v, dim=-1) / rq.abs().clamp_min(tiny)
            if float(res.min()) < tol:
                break
        v = w / torch.linalg.vector_norm(w, dim=-1, keepdim=True).clamp_min(tiny)

    w = matvec(v).to(dtype)                                     # A v, real (trials, n)
    rq = _rowdot(v, w)
    rq_res = torch.linalg.vector_norm(w - rq[:, None] * v, dim=-1) / rq.abs().clamp_min(tiny)
    # 2-D Rayleigh-Ritz on span(q1 = v, q2 = normalised part of A v orthogonal to v)
    q2 = w - rq[:, None] * v
    q2_norm = torch.linalg.vector_norm(q2, dim=-1, keepdim=True)
    q2 = q2 / q2_norm.clamp_min(tiny)
    q2 = q2 - _rowdot(v, q2)[:, None] * v                       # re-orthogonalise (v nearly converged)
    q2 = q2 / torch.linalg.vector_norm(q2, dim=-1, keepdim=True).clamp_min(tiny)
    aq2 = matvec(q2).to(dtype)
    t = torch.stack([torch.stack([_rowdot(v, w), _rowdot(v, aq2)], -1),
                     torch.stack([_rowdot(q2, w), _rowdot(q2, aq2)], -1)], -2)   # (trials, 2, 2)
    mu, y = torch.linalg.eig(t.to("cpu", torch.float64))
    pick = torch.stack([mu.abs(), mu.imag], -1)
    idx = torch.where((pick[:, 0, 0] > pick[:, 1, 0]) |
                      ((pick[:, 0, 0] == pick[:, 1, 0]) & (pick[:, 0, 1] >= pick[:, 1, 1])), 0, 1)
    rows = torch.arange(trials)
    mu1 = mu[rows, idx].to(device)
    y1 = y[rows, :, idx].to(device)                              # (trials, 2)
    cdt = torch.complex128 if dtype == torch.float64 else torch.complex64
    u = y1[:, :1] * v.to(cdt) + y1[:, 1:] * q2.to(cdt)
    au = y1[:, :1] * w.to(cdt) + y1[:, 1:] * aq2.to(cdt)
    u_norm = torch.linalg.vector_norm(u, dim=-1)
    ritz_res = torch.linalg.vector_norm(au - mu1[:, None] * u, dim=-1) / (u_norm * mu1.abs()).clamp_min(tiny)
    ritz_res = torch.where(q2_norm[:, 0] > 0, ritz_res, torch.full_like(ritz_res, float("inf")))

    use_ritz = ritz_res < rq_res
    best_res = torch.where(use_ritz, ritz_res, rq_res)
    best = int(torch.argmin(best_res))
    if bool(use_ritz[best]):
        lam = complex(mu1[best])
        vec = u[best] / u_norm[best]
        phase = vec[torch.argmax(vec.abs())]
        vec = vec * (phase.abs() / phase)
        if lam.imag == 0.0:
            vec = vec.real / torch.linalg.vector_norm(vec.real)
    else:
        lam = complex(float(rq[best]), 0.0)
        vec = v[best] * torch.sign(v[best][torch.argmax(v[best].abs())])
    residual = float(best_res[best])
    return PowerResult(lam, vec, residual, residual < tol, float(rq[best]), float(rq_res[best]),
                       best, done)


# --------------------------------------------------------------------------- stability


def _complex(eigenvalues) -> torch.Tensor:
    return torch.as_tensor(eigenvalues).to("cpu", torch.complex128).reshape(-1)


def linear_stability_margin(eigenvalues) -> float:
    """``1 - max Re lambda``: positive iff the linear area ``tau dr/dt = -r + R r + u`` is stable
    (its fixed point ``(I - R)^-1 u`` attracts)."""
    return 1.0 - float(_complex(eigenvalues).real.max())


def euler_map_eigenvalues(eigenvalues, alpha: float) -> torch.Tensor:
    """Eigenvalues ``1 - alpha + alpha lambda`` of the Euler map ``(1 - alpha) I + alpha R``."""
    return 1.0 - alpha + alpha * _complex(eigenvalues)


def euler_stability_margin(eigenvalues, alpha: float) -> float:
    """``1 - max |1 - alpha + alpha lambda|``: positive iff the discrete update
    ``r <- (1 - alpha) r + alpha (R r + u)`` converges."""
    if not 0.0 < alpha <= 1.0:
        raise ValueError(f"alpha = dt / tau must be in (0, 1], got {alpha}")
    return 1.0 - float(euler_map_eigenvalues(eigenvalues, alpha).abs().max())


def euler_stability_disc(alpha: float) -> tuple[float, float]:
    """``(centre, radius)`` of the disc in the ``lambda(R)`` plane where the Euler map is stable:
    centre ``1 - 1/alpha`` on the real axis, radius ``1/alpha`` (it touches ``Re lambda = 1`` at
    ``lambda = 1``, and tends to the half-plane as ``alpha -> 0``)."""
    if not 0.0 < alpha <= 1.0:
        raise ValueError(f"alpha = dt / tau must be in (0, 1], got {alpha}")
    return 1.0 - 1.0 / alpha, 1.0 / alpha


# --------------------------------------------------------------------------- Jacobian


def _flatten(state: State) -> tuple[torch.Tensor, Callable[[torch.Tensor], State]]:
    if isinstance(state, torch.Tensor):
        shape = state.shape
        return state.reshape(-1), lambda vec: vec.reshape(shape)
    shapes = [s.shape for s in state]
    sizes = [s.numel() for s in state]
    flat = torch.cat([s.reshape(-1) for s in state])
    return flat, lambda vec: tuple(p.reshape(sh) for p, sh in zip(vec.split(sizes), shapes))


def _flat_out(out: State) -> torch.Tensor:
    return out.reshape(-1) if isinstance(out, torch.Tensor) else torch.cat([o.reshape(-1) for o in out])


def jacobian_matvec(func: Callable[[State], State], state: State, transpose: bool = False,
                    vectorize: bool = True) -> tuple[Matvec, int]:
    """The Jacobian ``J = dF/dr`` of a map ``F`` at ``r*`` as a matrix-free matvec.

    ``state`` is a tensor or a sequence of tensors (e.g. every area's rates); ``func`` maps a
    state of that structure to one of the same total size (e.g. one Euler step of the model,
    or ``F(r) - r`` for the continuous-time vector field). Returns ``(matvec, n)`` where
    ``matvec`` maps ``(..., n)`` to ``(..., n)`` with the state flattened in order: ``J v`` by
    ``torch.func.jvp`` (forward mode, one evaluation of ``F`` per call), or ``J^T v`` with
    ``transpose`` by ``torch.func.vjp`` (linearised once). Batches go through ``vmap``
    (``vectorize=False``: a loop, for functions ``vmap`` cannot trace).
    """
    r0, unflatten = _flatten(tuple(s.detach() for s in state) if not isinstance(state, torch.Tensor)
                             else state.detach())
    n = r0.numel()

    def g(vec: torch.Tensor) -> torch.Tensor:
        return _flat_out(func(unflatten(vec)))

    with torch.no_grad():
        m = g(r0).numel()
    if m != n:
        raise ValueError(f"the map must be square: state has {n} entries, F(state) has {m}")

    if transpose:
        _, pullback = torch.func.vjp(g, r0)

        def one(t: torch.Tensor) -> torch.Tensor:
            return pullback(t)[0]
    else:
        def one(t: torch.Tensor) -> torch.Tensor:
            return torch.func.jvp(g, (r0,), (t,))[1]

    def matvec(v: torch.Tensor) -> torch.Tensor:
        if v.shape[-1] != n:
            raise ValueError(f"vectors of length {n} expected, got {tuple(v.shape)}")
        flat = v.reshape(-1, n).to(r0.device, r0.dtype)
        with warnings.catch_warnings():     # torch's forward AD loads jit-scripted decompositions once
            warnings.filterwarnings("ignore", message=".*torch.jit.script.*", category=FutureWarning)
            out = torch.func.vmap(one)(flat) if vectorize else torch.stack([one(t) for t in flat])
        return out.detach().reshape(v.shape).to(v.dtype)

    return matvec, n


def jacobian_eigs(func: Callable[[State], State], state: State, k: int = 10, iterations: int = 300,
                  which: str = "LM", generator: torch.Generator | None = None,
                  return_residuals: bool = False):
    """Leading eigenvalues of ``dF/dr`` at ``state`` by :func:`arnoldi_eigs` on
    :func:`jacobian_matvec` (basis in float64 on the state's device)."""
    matvec, n = jacobian_matvec(func, state)
    device = state.device if isinstance(state, torch.Tensor) else state[0].device
    return arnoldi_eigs(matvec, n, k=k, iterations=iterations, generator=generator, which=which,
                        device=device, return_residuals=return_residuals)
