"""Probing a trained CordsNet: run its time course without gradients and turn what it does
into tables and figures (the suite's analyses and recordings).

The time course is ``blank_steps`` without an image (ending in the spontaneous state),
``stimulus_steps`` with it and ``post_blank_steps`` without it again; :func:`course` steps
through it once and hands every state to the caller, so nothing of size
``(batch, time, units)`` is kept unless asked for.
"""
from __future__ import annotations

from typing import Iterator, NamedTuple, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from core.runtime import derive_seed
from core.suite import AnalysisResult
from cordsnet import analysis as A
from cordsnet import eigen
from cordsnet import plots
from cordsnet.model import CordsNet


@torch.no_grad()
def course(rnn: CordsNet, images: torch.Tensor, blank_steps: int, stimulus_steps: int,
           post_blank_steps: int) -> Iterator[tuple[int, list[torch.Tensor], object]]:
    """Yield ``(t, rates, weights)`` after every step ``t`` of the course (rates: per area
    ``(B, C_j, H_j, W_j)``), starting from rest."""
    w = rnn.weights()
    state = rnn.rest_state(images.shape[0])
    blank = rnn.input_drive(torch.zeros_like(images), w)
    shown = rnn.input_drive(images, w)
    t = 0
    for drive, n in ((blank, blank_steps), (shown, stimulus_steps), (blank, post_blank_steps)):
        for _ in range(n):
            state = rnn.step(state, drive, w)
            yield t, state, w
            t += 1


def _course_of(cfg) -> tuple[int, int, int]:
    return cfg.blank_steps, cfg.stimulus_steps, cfg.post_blank_steps


class Recorded(NamedTuple):
    rates: dict[int, torch.Tensor]  # area -> (B, T', C, h, w) float32
    logits: torch.Tensor            # (B, T', K)
    times: np.ndarray               # (T',) step index of each recorded frame


def record_course(rnn: CordsNet, images: torch.Tensor, areas: Sequence[int], *, blank_steps: int,
                  stimulus_steps: int, post_blank_steps: int, stride: int = 1, pool: int = 1) -> Recorded:
    """Rates of ``areas`` (average-pooled by ``pool`` pixels) and logits every ``stride``-th step."""
    keep: dict[int, list[torch.Tensor]] = {a: [] for a in areas}
    logits, times = [], []
    for t, state, w in course(rnn, images, blank_steps, stimulus_steps, post_blank_steps):
        if t % stride:
            continue
        times.append(t)
        logits.append(rnn.readout(state, w).float().cpu())
        for a in areas:
            r = state[a]
            if pool > 1:
                r = F.avg_pool2d(r, pool, ceil_mode=True)
            keep[a].append(r.float().cpu())
    return Recorded({a: torch.stack(v, 1) for a, v in keep.items()}, torch.stack(logits, 1), np.asarray(times))


def hits_over_time(rnn: CordsNet, images: torch.Tensor, labels: torch.Tensor,
                   course_steps: tuple[int, int, int] | None = None) -> torch.Tensor:
    """How many of ``images`` ``(B, C, S, S)`` are classified as ``labels`` ``(B,)`` after each
    step of the course: counts ``(T,)`` (sum them over batches, divide by the images)."""
    nb, ns, npost = course_steps or (rnn.blank_steps, rnn.stimulus_steps, rnn.post_blank_steps)
    return torch.stack([(rnn.readout(s, w).argmax(-1) == labels).sum()
                        for _, s, w in course(rnn, images, nb, ns, npost)])


def accuracy_over_time(rnn: CordsNet, images: torch.Tensor, labels: torch.Tensor, batch: int,
                       course_steps: tuple[int, int, int] | None = None) -> np.ndarray:
    """Fraction of ``images`` classified correctly after each step of the course ``(T,)``."""
    hits = sum(hits_over_time(rnn, x, y, course_steps) for x, y in zip(images.split(batch), labels.split(batch)))
    return (hits.float() / len(labels)).cpu().numpy()


# --- analyses -----------------------------------------------------------------------
def _eval_images(suite, n: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = suite._test_set
    return (images, labels) if n is None else (images[:n], labels[:n])


def accuracy_time_result(suite, modules) -> AnalysisResult:
    cfg = suite.cfg
    images, labels = _eval_images(suite)
    acc = accuracy_over_time(modules["rnn"], images, labels, cfg.batch_size, _course_of(cfg))
    nb, ns, npost = _course_of(cfg)
    frame = pd.DataFrame({"step": np.arange(len(acc)), "time_ms": np.arange(1, len(acc) + 1) * 10 * cfg.alpha,
                          "phase": ["blank"] * nb + ["stimulus"] * ns + ["post"] * npost, "accuracy": acc})
    fig = plots.accuracy_over_time_figure(acc, nb, ns, npost, chance=1.0 / cfg.n_classes)
    end = nb + ns - 1
    return AnalysisResult(tables={"accuracy_time": frame}, figures={"accuracy_time": fig},
                          scalars={"accuracy_end_of_stimulus": float(acc[end]),
                                   "accuracy_max": float(acc.max()), "n_images": float(len(labels))})


def mean_rates(rnn: CordsNet, images: torch.Tensor, course_steps) -> np.ndarray:
    """Mean rate of every area after every step ``(A, T)`` (over images and units)."""
    rows = [torch.stack([r.mean() for r in state]) for _, state, _ in course(rnn, images, *course_steps)]
    return torch.stack(rows, 1).cpu().numpy()


def dynamics_result(suite, modules) -> AnalysisResult:
    cfg = suite.cfg
    images, _ = _eval_images(suite, min(cfg.n_eval, 4 * cfg.batch_size))
    traces = np.mean([mean_rates(modules["rnn"], x, _course_of(cfg)) for x in images.split(cfg.batch_size)],
                     axis=0)
    names = [f"area{a}" for a in range(traces.shape[0])]
    table = A.response_dynamics(traces, *_course_of(cfg), area_names=names)
    traces_frame = pd.DataFrame(traces.T, columns=names).rename_axis("step").reset_index()
    fig = plots.dynamics_figure(traces, *_course_of(cfg), names)
    return AnalysisResult(tables={"dynamics": table, "mean_rates": traces_frame}, figures={"dynamics": fig},
                          scalars={**{f"overshoot/area{a}": float(v) for a, v in enumerate(table["overshoot"])
                                      if np.isfinite(v)},
                                   **{f"steady_reached/area{a}": float(v)
                                      for a, v in enumerate(table["steady_reached"])}})


def _area_spectrum(weight: torch.Tensor, side: int, cfg, g: torch.Generator):
    """An area's leading ``n_eigs`` eigenvalues by modulus with their residuals, the method, and
    the eigenvalues (with residuals) that decide its stability: all of them for a dense matrix;
    for Arnoldi the Ritz values sorted by modulus, by real part (the rightmost: continuous-time
    boundary) and of the Euler map ``(1 - alpha) I + alpha R`` by modulus (its boundary)."""
    n = weight.shape[0] * side * side
    if n <= cfg.dense_limit:
        every = eigen.conv_eigs(weight, side, side, k=None, dense_max=cfg.dense_limit)
        return every[: cfg.n_eigs], np.zeros(min(cfg.n_eigs, len(every))), "dense", every.numpy(), None
    mv = eigen.conv_matvec(weight, side, side)
    kw = dict(k=cfg.n_eigs, iterations=cfg.arnoldi_iters, restarts=cfg.arnoldi_restarts, generator=g,
              return_residuals=True)
    values, res = eigen.arnoldi_eigs(mv, n, **kw)
    right, right_res = eigen.arnoldi_eigs(mv, n, which="LR", **kw)
    a = cfg.alpha
    mu, mu_res = eigen.arnoldi_eigs(lambda x: (1 - a) * x + a * mv(x), n, **kw)
    deciding = torch.cat([values, right, (mu - (1 - a)) / a]).numpy()
    deciding_res = torch.cat([res, right_res, mu_res / a]).numpy()   # |A x - mu x| = alpha |R x - lambda x|
    return values, res.numpy(), f"arnoldi_{cfg.arnoldi_iters}", deciding, deciding_res


def spectra_result(suite, modules) -> AnalysisResult:
    cfg = suite.cfg
    rnn = modules["rnn"]
    g = torch.Generator().manual_seed(derive_seed(cfg.seed, "spectra") % 2**63)
    eigs, vectors, rows, verdicts = {}, {}, [], []
    for a in range(rnn.depth):
        weight = rnn.recurrent_weight(a).detach().double().cpu()
        side = rnn.sizes[a]
        n = weight.shape[0] * side * side
        values, residuals, method, deciding, deciding_res = _area_spectrum(weight, side, cfg, g)
        eigs[f"area{a}"] = values.numpy()
        verdicts.append({"area": f"area{a}", "method": method, "n_units": n,
                         **A.stability_verdict(deciding, cfg.alpha, deciding_res)})
        power = eigen.power_iteration(eigen.conv_matvec(weight, side, side), n, trials=cfg.power_trials,
                                      iterations=cfg.power_iters, generator=g)
        vec = power.eigenvector.reshape(weight.shape[0], side, side)
        vectors[f"area{a}"] = (vec.abs() if vec.is_complex() else vec).numpy()
        table = A.spectrum_table(values.numpy(), cfg.alpha)
        table.insert(0, "area", f"area{a}")
        table.insert(1, "method", method)
        table["ritz_residual"] = residuals
        rows.append(table)
        rows[-1]["power_eigenvalue_re"] = complex(power.eigenvalue).real
        rows[-1]["power_eigenvalue_im"] = complex(power.eigenvalue).imag
        rows[-1]["power_residual"] = float(power.residual)
    table = pd.concat(rows, ignore_index=True)
    stability = pd.DataFrame(verdicts)
    radius = table.groupby("area")["modulus"].max()
    return AnalysisResult(tables={"spectra": table, "stability": stability},
                          figures={"spectra": plots.spectra_figure(eigs, cfg.alpha, verdicts={
                                       v["area"]: f"rightmost Re λ = {v['rightmost_re']:.3f}: {v['verdict']}"
                                       for v in verdicts}),
                                   "top_eigenvectors": plots.eigenvector_figure(vectors)},
                          scalars={**{f"spectral_radius/{k}": float(v) for k, v in radius.items()},
                                   **{f"max_real_part/{v['area']}": v["rightmost_re"] for v in verdicts},
                                   **{f"stability_margin/{v['area']}": v["margin"] for v in verdicts},
                                   "all_areas_inside": float(all(v["inside"] for v in verdicts))})


@torch.no_grad()
def steady_state(rnn: CordsNet, image: torch.Tensor, blank_steps: int, stimulus_steps: int,
                 rtol: float = 1e-6, max_extra: int = 5000) -> tuple[list[torch.Tensor], float, int]:
    """Run the blank and the stimulus course, then keep the image on until one step changes no
    rate by more than ``rtol`` times the largest rate (at most ``max_extra`` more steps).
    Returns the state, the last step's largest change and how many extra steps it took."""
    state = None
    for _, state, _w in course(rnn, image, blank_steps, stimulus_steps, 0):
        pass
    w = rnn.weights()
    drive = rnn.input_drive(image, w)
    drift, extra = float("inf"), 0
    while extra < max_extra:
        new = rnn.step(state, drive, w)
        scale = max(float(r.abs().max()) for r in new) or 1.0
        drift = max(float((a - b).abs().max()) for a, b in zip(new, state))
        state, extra = new, extra + 1
        if drift <= rtol * scale:
            break
    return state, drift, extra


def jacobian_result(suite, modules) -> AnalysisResult:
    cfg = suite.cfg
    rnn = modules["rnn"]
    image, _ = _eval_images(suite, 1)
    steady, drift, extra = steady_state(rnn, image, cfg.blank_steps, cfg.stimulus_steps)
    g = torch.Generator().manual_seed(derive_seed(cfg.seed, "jacobian") % 2**63)
    rnn.double()  # the Krylov basis is float64; so is the map it probes
    try:
        w = rnn.weights()
        drive = rnn.input_drive(image.double(), w)

        def one_step(rates):
            return rnn.step(list(rates), drive, w)
        matvec, n = eigen.jacobian_matvec(one_step, [s.double() for s in steady])
        values, residuals = eigen.arnoldi_eigs(matvec, n, k=cfg.n_eigs, iterations=cfg.arnoldi_iters,
                                               restarts=cfg.arnoldi_restarts, generator=g,
                                               device=image.device, return_residuals=True)
    finally:
        rnn.float()
    mu = values.numpy()
    table = pd.DataFrame({"re": mu.real, "im": mu.imag, "modulus": np.abs(mu), "stable": np.abs(mu) < 1,
                          "ritz_residual": residuals.numpy()})
    table["state_change_last_step"] = drift
    table["steps_after_stimulus_course"] = extra
    # eigenvalues mu of the one-step map are 1 - alpha + alpha*lambda for the continuous-time
    # Jacobian's lambda: drawn as lambda, against the same boundaries as the areas' spectra
    lam = (mu - (1 - cfg.alpha)) / cfg.alpha
    fig = plots.spectra_figure(
        {f"one-step Jacobian, μ shown as λ = (μ − 1 + α)/α\n(steady state after {extra} extra steps)": lam},
        cfg.alpha, title="Jacobian of the full nonlinear model at the steady state of a test image")
    return AnalysisResult(tables={"jacobian": table}, figures={"jacobian": fig},
                          scalars={"one_step_spectral_radius": float(values.abs().max()),
                                   "steady_state_drift": drift, "extra_steps_to_steady_state": float(extra)})


def _cnn_trained(cnn) -> bool:
    """Whether the equivalent CNN has been trained (phase 1 ran): its batch norms have counted
    training batches. A CNN that was only built (``--pretrained`` without training, a run
    stopped before phase 1) is not the CordsNet's equivalent and is left out of the comparison."""
    counts = [int(m.num_batches_tracked) for m in cnn.modules()
              if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.num_batches_tracked is not None]
    return bool(counts) and max(counts) > 0


def robustness_result(suite, modules) -> AnalysisResult:
    """CordsNet against its own phase-1 CNN (batch norms folded, as the RNN was initialised from
    it) under the same Gaussian pixel-noise draws: accuracy, accuracy drop and the normalised
    activation change of every area and of the readout, with 95 % intervals over images and the
    paired CordsNet - CNN difference and verdict per level (:mod:`cordsnet.robustness`). The RNN
    is read at the end of the image, after the blank (the published readout)."""
    from cordsnet import robustness as R
    from cordsnet.cnn import fold_batchnorm

    cfg = suite.cfg
    images, labels = _eval_images(suite, min(cfg.n_eval, cfg.robustness_images))
    g = torch.Generator(device=images.device).manual_seed(derive_seed(cfg.seed, "noise") % 2**63)
    noise = torch.randn(images.shape, generator=g, device=images.device, dtype=images.dtype)
    rnn = modules["rnn"]
    rnn.slope = 0.0
    end = cfg.blank_steps + cfg.stimulus_steps

    def run_rnn(x):
        for t, state, w in course(rnn, x, cfg.blank_steps, cfg.stimulus_steps, 0):
            if t == end - 1:
                return rnn.readout(state, w), {**{f"area{a}": F.relu(r) for a, r in enumerate(state)},
                                               "readout": rnn.readout(state, w)}

    responses = {"cordsnet": R.noise_responses(run_rnn, images, labels, cfg.noise_levels, noise, cfg.batch_size)}
    compared = "cnn" in modules and _cnn_trained(modules["cnn"])
    if compared:
        folded = fold_batchnorm(modules["cnn"].eval()).to(images.device).eval()

        @torch.no_grad()
        def run_cnn(x):
            logits, acts = folded(x, return_areas=True)
            return logits, {**{f"area{a}": r for a, r in enumerate(acts)}, "readout": logits}
        responses["cnn"] = R.noise_responses(run_cnn, images, labels, cfg.noise_levels, noise, cfg.batch_size)
    table = R.robustness_table(responses, n_boot=cfg.bootstrap_resamples,
                               seed=derive_seed(cfg.seed, "robustness_bootstrap") % 2**32)
    scalars = {}
    for _, row in table[table["measure"] == "accuracy"].iterrows():
        for m in responses:
            scalars[f"accuracy/{m}/level_{row['level']:g}"] = float(row[m])
    return AnalysisResult(tables={"robustness": table},
                          figures={"robustness": plots.robustness_figure(table, list(responses))},
                          scalars=scalars)


def trajectories_result(suite, modules) -> AnalysisResult:
    cfg = suite.cfg
    images, labels = _eval_images(suite, cfg.n_trajectories)
    states = torch.stack([state[-1].flatten(1).float() for _, state, _ in
                          course(modules["rnn"], images, *_course_of(cfg))], 1)    # (B, T, N)
    proj, ratio = A.pca_trajectories(states.cpu(), n_components=3)
    frame = pd.DataFrame([{"image": b, "label": int(labels[b]), "step": t, **{f"pc{k + 1}": proj[b, t, k]
                                                                             for k in range(proj.shape[2])}}
                          for b in range(proj.shape[0]) for t in range(proj.shape[1])])
    fig = plots.trajectories_figure(proj, cfg.blank_steps, cfg.stimulus_steps, labels.cpu().numpy(),
                                    explained=ratio)
    return AnalysisResult(tables={"trajectories": frame}, figures={"trajectories": fig},
                          scalars={f"explained_variance/pc{k + 1}": float(v) for k, v in enumerate(ratio)})
