"""Superior colliculus (SC) four-population circuit: rapid Pro/Anti task switching.

The model of Duan et al. (2021) as used by EPI (Bittner et al., eLife 2021, Figs. 4-5;
paper source ``written/eLifeRevision/Bittner_eLife2021.tex`` and the simulator
``neural_circuits/SC_Circuit_4.py`` of ``cunningham-lab/epi``; the 8-weight form from
``SCCircuit`` in ``dsn/util/systems.py`` of ``cunningham-lab/dsn``). Populations, in the
order of both codes: left Pro, left Anti, right Anti, right Pro, ``(LP, LA, RA, RP)``.
Each has an internal variable u and an activity x in (0, 1)::

    x = eta(t) phi(u),   phi(u) = 1/2 tanh((u - a) / b) + 1/2 = sigmoid(2 (u - a) / b)
    u <- u + (dt / tau) (-u + W x + h(t) + sigma xi),   xi ~ N(0, I) per step and trial

a = 0.05, b = 0.5, tau = 90 ms, dt = 24 ms, sigma = 0.2 (the published "Gaussian noise of
variance 0.2^2"; as in the EPI code it enters inside the bracket, so each Euler step adds
(dt / tau) sigma xi to u). Time grid t_i = i dt, i = 0..74 (1.8 s, read out at t = 1.776 s).
Initial state as in the EPI code: x0 = 0.1 + 0.005 eps, u0 = b atanh(2 x0 - 1) - a (the
source's sign of a, so phi(u0) is not exactly x0; kept for fidelity).

Connectivity (post-synaptic rows, pre-synaptic columns), self sW, vertical vW (Pro <-> Anti
in one hemisphere), horizontal hW (same type across hemispheres), diagonal dW (other type,
other hemisphere)::

    W = [[sW, vW, dW, hW],          reduced form, z = [sW, vW, hW, dW] (the paper's order;
         [vW, sW, hW, dW],          the EPI code orders [sW, vW, dW, hW])
         [dW, hW, sW, vW],
         [hW, dW, vW, sW]]

The 8-weight form (``form="full"``, DSN's "full" parameterisation) splits each weight by
post/pre type, z = [sW_P, sW_A, vW_PA, vW_AP, hW_P, hW_A, dW_PA, dW_AP] (X_PA: onto a Pro
from an Anti population)::

    W = [[sW_P,  vW_PA, dW_PA, hW_P ],
         [vW_AP, sW_A,  hW_A,  dW_AP],
         [dW_AP, hW_A,  sW_A,  vW_AP],
         [hW_P,  dW_PA, vW_PA, sW_P ]]

The reduced W is symmetric and commutes with the left-right mirror, so its eigenvectors
are fixed: all (1, 1, 1, 1), side (1, 1, -1, -1), task (1, -1, -1, 1), diag (1, -1, 1, -1)
with eigenvalues lambda = B z, B = [[1, 1, 1, 1], [1, 1, -1, -1], [1, -1, 1, -1],
[1, -1, -1, 1]] for z = [sW, vW, hW, dW] (z = B lambda / 4; this agrees with the EPI code's
A_EIG; the paper's printed A lists the rows of vW, hW, dW in another order).

Inputs (left stimulus; the model is left-right symmetric), amplitudes as published::

    h = 0.75 [1,1,1,1]                           constant
      + 0.5  [1,0,0,1]                           Pro bias, whole trial
      + 0.6  [1,0,0,1] (Pro) or [0,1,1,0] (Anti) rule, t < 1.2 s (steps 0..49)
      + 0.25 [1,1,1,1]                           choice period, t > 1.2 s (steps 51..74)
      + 0.5  [1,1,0,0]                           light, 1.2 s < t < 1.5 s (steps 51..62)

Step 50 (t = 1.2 s exactly) gets neither rule nor choice input, as the source's strict
inequalities give. Optogenetic inactivation (``gamma``): x = (1 - gamma) phi(u) during the
delay period 0.8 s <= t <= 1.2 s (steps 34..50, the code's inclusive window) or the choice
period t >= 1.2 s.

Choice: d = Theta(x_LP - x_RP) at the last step, Theta(y) = sigmoid(100 y); accuracies
p_P = mean over trials of d on Pro trials, p_A = mean of 1 - d on Anti trials (the EPI code
constrains 1 - p_A with mean 0.25, the same thing). Emergent property (published)::

    T = [p_P, p_A, (p_P - mu_1)^2, (p_A - mu_2)^2],  mu = [0.75, 0.75, 0.075^2, 0.075^2]

``statistics="epi_bernoulli"`` appends the DSN-era Bernoulli-variance errors
Var_trials[d] - p (1 - p) per task (target 0; they equal -mean d (1 - d) <= 0, so they ask
for saturated, all-or-none choices and can only be approached from below).

Noise is frozen: one draw xi (2 tasks, 75 steps, trials, 4) and x0 jitter (2, trials, 4)
from a fixed generator seed (DSN froze its noise; the EPI code redrew it every call), shared
by every z (common random numbers, so T is a smooth function of z) and by a silenced
condition and its unsilenced twin (paired comparisons of the optogenetic effect).
"""
from __future__ import annotations

import math
from typing import Sequence

import matplotlib.pyplot as plt
import torch
from torch import Tensor

from dsn.systems.base import System

POPULATIONS = ("LP", "LA", "RA", "RP")
REDUCED_PARAMS = ("sW", "vW", "hW", "dW")
FULL_PARAMS = ("sW_P", "sW_A", "vW_PA", "vW_AP", "hW_P", "hW_A", "dW_PA", "dW_AP")
EIGENMODES = ("all", "side", "task", "diag")
TASKS = ("pro", "anti")
PERIODS = ("delay", "choice")
#: published input amplitudes (EPI: E_constant, E_Pbias, E_Prule, E_Arule, E_choice, E_light)
INPUTS = {"constant": 0.75, "pro_bias": 0.5, "pro_rule": 0.6, "anti_rule": 0.6, "choice": 0.25, "light": 0.5}
PHI_A, PHI_B = 0.05, 0.5          # position and width of the tanh nonlinearity
TAU, DT, DURATION = 0.09, 0.024, 1.8
SIGMA = 0.2
HEAVISIDE_SLOPE = 100.0
X0, X0_JITTER = 0.1, 0.005
T_CUE_END, T_LIGHT_END, T_DELAY_START = 1.2, 1.5, 0.8
OPTO_GAMMA_EXPERIMENT = 0.675     # delay silencing whose mean Anti-error increase matched the rats' 7 %
_TIME_TOL = 1e-9                  # t_i = i dt compared to the window edges with this tolerance

# eigenvalues from z = [sW, vW, hW, dW]: lambda = EIGEN_MATRIX @ z (rows: all, side, task, diag)
EIGEN_MATRIX = ((1.0, 1.0, 1.0, 1.0), (1.0, 1.0, -1.0, -1.0), (1.0, -1.0, 1.0, -1.0), (1.0, -1.0, -1.0, 1.0))
# the eigenvectors over (LP, LA, RA, RP), same row order
EIGENVECTORS = ((1.0, 1.0, 1.0, 1.0), (1.0, 1.0, -1.0, -1.0), (1.0, -1.0, -1.0, 1.0), (1.0, -1.0, 1.0, -1.0))


# ---- schedules -----------------------------------------------------------------------------
def time_grid(dt: float = DT, duration: float = DURATION) -> Tensor:
    """Times t_i = i dt on [0, duration), float64 (steps,); 75 points for the published grid."""
    if dt <= 0 or duration <= dt:
        raise ValueError(f"need 0 < dt < duration, got dt={dt}, duration={duration}")
    steps = int(math.floor(duration / dt - _TIME_TOL)) + 1
    return torch.arange(steps, dtype=torch.float64) * dt


def input_pattern(task: str, t: Tensor, amplitudes: dict[str, float] | None = None) -> Tensor:
    """External input h(t) (steps, 4) over (LP, LA, RA, RP) on a left-stimulus ``task`` trial
    ("pro" or "anti") for times t (steps,), from the published amplitudes (or ``amplitudes``)."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    amp = dict(INPUTS, **(amplitudes or {}))
    unknown = set(amp) - set(INPUTS)
    if unknown:
        raise ValueError(f"unknown input amplitudes {sorted(unknown)}; known: {sorted(INPUTS)}")
    t = t.to(torch.float64)[:, None]
    vec = lambda *v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
    cue = (t < T_CUE_END - _TIME_TOL).double()
    choice = (t > T_CUE_END + _TIME_TOL).double()
    light = choice * (t < T_LIGHT_END - _TIME_TOL).double()
    rule = amp["pro_rule"] * vec(1, 0, 0, 1) if task == "pro" else amp["anti_rule"] * vec(0, 1, 1, 0)
    return (amp["constant"] * vec(1, 1, 1, 1) + amp["pro_bias"] * vec(1, 0, 0, 1) + cue * rule
            + choice * amp["choice"] * vec(1, 1, 1, 1) + light * amp["light"] * vec(1, 1, 0, 0))


def inactivation_gain(t: Tensor, gamma: float = 0.0, period: str = "delay") -> Tensor:
    """eta(t) (steps,) multiplying the activities: 1 - gamma inside the silenced ``period``
    ("delay": 0.8 s <= t <= 1.2 s; "choice": t >= 1.2 s), 1 elsewhere."""
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"optogenetic strength gamma must lie in [0, 1], got {gamma}")
    if period not in PERIODS:
        raise ValueError(f"inactivation period must be one of {PERIODS}, got {period!r}")
    t = t.to(torch.float64)
    if period == "delay":
        window = (t >= T_DELAY_START - _TIME_TOL) & (t <= T_CUE_END + _TIME_TOL)
    else:
        window = t >= T_CUE_END - _TIME_TOL
    return torch.where(window, torch.tensor(1.0 - gamma, dtype=torch.float64), torch.tensor(1.0, dtype=torch.float64))


# ---- connectivity --------------------------------------------------------------------------
def weight_matrix(z: Tensor, form: str = "reduced") -> Tensor:
    """W (batch, 4, 4), rows post-synaptic over (LP, LA, RA, RP), from z (batch, 4) in the
    order [sW, vW, hW, dW] (``form="reduced"``) or z (batch, 8) in the order
    [sW_P, sW_A, vW_PA, vW_AP, hW_P, hW_A, dW_PA, dW_AP] (``form="full"``)."""
    if form == "reduced":
        sP = sA = z[:, 0]
        vPA = vAP = z[:, 1]
        hP = hA = z[:, 2]
        dPA = dAP = z[:, 3]
    elif form == "full":
        sP, sA, vPA, vAP, hP, hA, dPA, dAP = z.unbind(1)
    else:
        raise ValueError(f"form must be 'reduced' or 'full', got {form!r}")
    rows = [torch.stack([sP, vPA, dPA, hP], -1), torch.stack([vAP, sA, hA, dAP], -1),
            torch.stack([dAP, hA, sA, vAP], -1), torch.stack([hP, dPA, vPA, sP], -1)]
    return torch.stack(rows, 1)


def eigenvalues(z: Tensor) -> Tensor:
    """Connectivity eigenvalues (batch, 4) = (lambda_all, lambda_side, lambda_task, lambda_diag)
    of the reduced W for z (batch, 4) = [sW, vW, hW, dW]."""
    return z @ torch.tensor(EIGEN_MATRIX, dtype=z.dtype, device=z.device).T


def eigenmode_directions(dtype: torch.dtype = torch.float64) -> Tensor:
    """Unit directions v_a (4, 4) in z = [sW, vW, hW, dW] that change only lambda_a, one row
    per mode (all, side, task, diag): dz/dlambda_a = B[:, a] / 4, normalised (orthonormal)."""
    return torch.tensor(EIGEN_MATRIX, dtype=dtype) / 2.0


# ---- dynamics ------------------------------------------------------------------------------
def initial_internal_state(x0: Tensor) -> Tensor:
    """u0 = b atanh(2 x0 - 1) - a, as the source code initialises u from x0 (any shape)."""
    return PHI_B * torch.atanh(2.0 * x0 - 1.0) - PHI_A


def simulate_rates(W: Tensor, drive: Tensor, gain: Tensor | None, x0: Tensor, dt: float = DT,
                   tau: float = TAU, keep_trajectory: bool = False) -> Tensor:
    """Euler integration of the SC rates for a batch of connectivities.

    Args:
        W: (batch, 4, 4) connectivities.
        drive: (conditions, steps, trials, 4) external input plus noise, h(t_i) + sigma xi_i
            (index 0 is unused: the state at step 0 is the initial one).
        gain: (conditions, steps) inactivation gains eta(t_i), or None for none.
        x0: (conditions, trials, 4) initial activities.
    Returns x at the last step (batch, conditions, trials, 4), or with ``keep_trajectory``
    every step (steps, batch, conditions, trials, 4).

    The update u <- u + k (-u + W x + h + sigma xi), x = eta phi(u), k = dt / tau, runs on
    the scaled variable w = 2 (u - a) / b, for which phi(u) = sigmoid(w) and
    w <- (1 - k) w + x (2k/b) W^T + (2k/b)(h + sigma xi - a): one fused batched
    multiply-add (all conditions and trials of a sample in one matrix) per step.
    """
    B = W.shape[0]
    C, steps, N, P = drive.shape
    k = dt / tau
    scale = 2.0 * k / PHI_B
    W_scaled = scale * W.transpose(1, 2)
    forcing = (scale * (drive - PHI_A)).transpose(0, 1).reshape(steps, C * N, P)
    g = None if gain is None else gain.transpose(0, 1).repeat_interleave(N, 1)[..., None]  # (steps, C N, 1)
    x = x0.reshape(C * N, P).expand(B, C * N, P)
    w = ((2.0 / PHI_B) * (initial_internal_state(x0) - PHI_A)).reshape(C * N, P).expand(B, C * N, P)
    traj = [x] if keep_trajectory else None
    for i in range(1, steps):
        w = torch.baddbmm(w, x, W_scaled, beta=1.0 - k) + forcing[i]
        x = torch.sigmoid(w) if g is None else torch.sigmoid(w) * g[i]
        if keep_trajectory:
            traj.append(x)
    if keep_trajectory:
        return torch.stack(traj).reshape(steps, B, C, N, P)
    return x.reshape(B, C, N, P)


def smooth_choice(x_final: Tensor, slope: float = HEAVISIDE_SLOPE) -> Tensor:
    """Soft left choice d = sigmoid(slope (x_LP - x_RP)) (...,) from final activities (..., 4)."""
    return torch.sigmoid(slope * (x_final[..., 0] - x_final[..., 3]))


def bernoulli_variance_error(d: Tensor) -> Tensor:
    """Var[d] - p (1 - p) over the last (trials) axis, p = mean d: (...,) from d (..., trials);
    zero exactly for all-or-none choices, -mean d (1 - d) in general."""
    p = d.mean(-1)
    return (d - p[..., None]).pow(2).mean(-1) - p * (1.0 - p)


# ---- the system ----------------------------------------------------------------------------
class SCCircuit(System):
    """Rapid task switching in the four-population SC model (see the module doc).

    Args:
        mu: E_q[T] (m,); default [0.75, 0.75, 0.075^2, 0.075^2] (+ [0, 0] with the Bernoulli terms).
        form: "reduced" (z = [sW, vW, hW, dW], D = 4) or "full" (the 8 weights, D = 8).
        statistics: "epi" (m = 4) or "epi_bernoulli" (m = 6).
        trials: frozen-noise trials per task and z (published: 200).
        noise_seed: seed of the frozen noise; sigma, x0_jitter: noise and initial jitter sizes.
        inputs: overrides of the input amplitudes (keys of ``INPUTS``).
        bound: the support [-bound, bound]^D (published: 5).
        opto_gamma: silencing strength used by :meth:`summary` (default 0.675, the paper's
            experiment-matching level).
    """

    name = "sc"
    reference_draws, reference_chunk = 300_000, 2_000  # ~0.04% of the box is in the target window

    def __init__(self, mu: Sequence[float] | None = None, form: str = "reduced", statistics: str = "epi",
                 trials: int = 200, noise_seed: int = 0, sigma: float = SIGMA, x0_jitter: float = X0_JITTER,
                 inputs: dict[str, float] | None = None, bound: float = 5.0,
                 opto_gamma: float = OPTO_GAMMA_EXPERIMENT):
        if form not in ("reduced", "full"):
            raise ValueError(f"form must be 'reduced' or 'full', got {form!r}")
        if statistics not in ("epi", "epi_bernoulli"):
            raise ValueError(f"statistics must be 'epi' or 'epi_bernoulli', got {statistics!r}")
        if int(trials) < 2:
            raise ValueError(f"trials must be at least 2, got {trials}")
        if sigma < 0 or x0_jitter < 0:
            raise ValueError(f"sigma and x0_jitter must be non-negative, got {sigma}, {x0_jitter}")
        if bound <= 0:
            raise ValueError(f"bound must be positive, got {bound}")
        if not 0.0 <= opto_gamma <= 1.0:
            raise ValueError(f"opto_gamma must lie in [0, 1], got {opto_gamma}")
        self.form, self.statistics, self.trials = form, statistics, int(trials)
        self.noise_seed, self.sigma = int(noise_seed), float(sigma)
        self.x0_jitter, self.opto_gamma = float(x0_jitter), float(opto_gamma)
        self.t = time_grid()
        self.inputs = {task: input_pattern(task, self.t, inputs) for task in TASKS}
        self._noise, self._cache = self._frozen_noise(), {}
        names = REDUCED_PARAMS if form == "reduced" else FULL_PARAMS
        stats = ["p_P", "p_A", "(p_P - mu1)^2", "(p_A - mu2)^2"]
        default = [0.75, 0.75, 0.075 ** 2, 0.075 ** 2]
        if statistics == "epi_bernoulli":
            stats += ["Var[d_P] - p_P(1 - p_P)", "Var[d_A] - p_A(1 - p_A)"]
            default += [0.0, 0.0]
        super().__init__(names, [-bound] * len(names), [bound] * len(names), stats,
                         default if mu is None else mu)

    def _frozen_noise(self) -> dict[str, Tensor]:
        """xi (2 tasks, steps, trials, 4) and x0 (2, trials, 4), float64 on the CPU."""
        g = torch.Generator().manual_seed(self.noise_seed)
        xi = torch.randn((2, self.t.numel(), self.trials, 4), generator=g, dtype=torch.float64)
        eps = torch.randn((2, self.trials, 4), generator=g, dtype=torch.float64)
        return {"xi": xi, "x0": X0 + self.x0_jitter * eps}

    def _conditions(self, conditions: Sequence[tuple[str, float, str]], like: Tensor
                    ) -> tuple[Tensor, Tensor | None, Tensor]:
        """drive (C, steps, trials, 4), gain (C, steps) or None, x0 (C, trials, 4) for
        conditions (task, gamma, period), cast to ``like``'s device and dtype (cached)."""
        key = (tuple(conditions), like.device, like.dtype)
        if key not in self._cache:
            drive, gain, x0 = [], [], []
            for task, gamma, period in conditions:
                j = TASKS.index(task)
                drive.append(self.inputs[task][:, None, :] + self.sigma * self._noise["xi"][j])
                gain.append(inactivation_gain(self.t, gamma, period))
                x0.append(self._noise["x0"][j])
            silenced = any(g > 0 for _, g, _ in conditions)
            cast = lambda x: x.to(like.device, like.dtype)  # noqa: E731
            if len(self._cache) >= 4:
                self._cache.clear()
            self._cache.update({key: (cast(torch.stack(drive)), cast(torch.stack(gain)) if silenced else None,
                                 cast(torch.stack(x0)))})
        return self._cache[key]

    def _check(self, z: Tensor) -> None:
        if z.dim() != 2 or z.shape[1] != self.D:
            raise ValueError(f"sc ({self.form}): z must be (batch, {self.D}), got {tuple(z.shape)}")

    def simulate(self, z: Tensor, tasks: Sequence[str] = TASKS, gamma: float = 0.0, period: str = "delay",
                 keep_trajectory: bool = False) -> Tensor:
        """Activities of every trial for z (batch, D) on left-stimulus trials of each of ``tasks``
        (silenced with strength ``gamma`` in ``period``): (batch, tasks, trials, 4) at the
        last step, or (steps, batch, tasks, trials, 4) with ``keep_trajectory``."""
        self._check(z)
        for task in tasks:
            if task not in TASKS:
                raise ValueError(f"task must be one of {TASKS}, got {task!r}")
        inactivation_gain(self.t[:1], gamma, period)  # validates gamma and period
        drive, gain, x0 = self._conditions([(task, float(gamma), period) for task in tasks], z)
        return simulate_rates(weight_matrix(z, self.form), drive, gain, x0, keep_trajectory=keep_trajectory)

    def choices(self, z: Tensor, gamma: float = 0.0, period: str = "delay") -> Tensor:
        """Smooth correct-choice indicators (batch, 2, trials): d on Pro, 1 - d on Anti trials."""
        d = smooth_choice(self.simulate(z, TASKS, gamma, period))
        return torch.stack([d[:, 0], 1.0 - d[:, 1]], 1)

    def accuracies(self, z: Tensor, gamma: float = 0.0, period: str = "delay") -> Tensor:
        """(p_P, p_A) (batch, 2) for z (batch, D), optionally under optogenetic silencing."""
        return self.choices(z, gamma, period).mean(-1)

    def suff_stats(self, z: Tensor) -> Tensor:
        """T (batch, m) = [p_P, p_A, (p_P - mu_1)^2, (p_A - mu_2)^2 (, Bernoulli-variance errors)]."""
        correct = self.choices(z)
        p = correct.mean(-1)
        centre = self.mu[:2].to(z.device, z.dtype)
        stats = [p, (p - centre) ** 2]
        if self.statistics == "epi_bernoulli":
            stats.append(bernoulli_variance_error(correct))
        return torch.cat(stats, -1)

    def opto_error_increase(self, z: Tensor, gamma: float | None = None, period: str = "delay") -> Tensor:
        """Increase in Pro and Anti error (batch, 2) caused by silencing at strength ``gamma``
        (default: the system's ``opto_gamma``), paired on the same frozen noise."""
        gamma = self.opto_gamma if gamma is None else gamma
        return self.accuracies(z) - self.accuracies(z, gamma, period)

    def summary(self, z: Tensor, weights: Tensor | None = None, max_points: int = 1000) -> dict[str, float]:
        """Task accuracies, the share of rapid-switching draws (both accuracies in EPI's
        brute-force window [0.6, 0.9]), the delay-silencing error increases at ``opto_gamma``
        and (reduced form) the mean eigenvalues and the share of draws with sW < 0 (the
        paper's regime 1 side). A weighted sample is resampled to ``max_points`` draws."""
        z = z.detach()
        if weights is not None or z.shape[0] > max_points:
            g = torch.Generator().manual_seed(0)
            w = torch.ones(z.shape[0]) if weights is None else weights.detach().double().cpu().clamp(min=0)
            idx = torch.multinomial(w, min(max_points, z.shape[0]) if weights is None else max_points,
                                    replacement=weights is not None, generator=g)
            z = z[idx.to(z.device)]
        with torch.no_grad():
            p = self.accuracies(z)
            opto = self.opto_error_increase(z)
        ok = ((p >= 0.6) & (p <= 0.9)).all(1).to(p.dtype)
        out = {"mean_p_P": float(p[:, 0].mean()), "mean_p_A": float(p[:, 1].mean()),
               "frac_rapid_switching": float(ok.mean()),
               "opto_pro_error_increase": float(opto[:, 0].mean()),
               "opto_anti_error_increase": float(opto[:, 1].mean())}
        if self.form == "reduced":
            lam = eigenvalues(z)
            out.update({f"mean_lambda_{m}": float(lam[:, j].mean()) for j, m in enumerate(EIGENMODES)})
            out["frac_sW_negative"] = float((z[:, 0] < 0).to(p.dtype).mean())
        return out

    def hessian_summary(self, points: Tensor, hessian: Tensor, most: Tensor, least: Tensor) -> dict[str, float]:
        """Mean squared loading of the most and least degenerate directions of log q on each
        parameter and (reduced form) on each connectivity eigenmode direction v_a (each set
        sums to 1; a random direction puts 1/D on each). EPI's sensitivity dimension is the
        eigenvector of the most negative eigenvalue, i.e. typically the least degenerate."""
        out = {}
        for label, v in (("most", most), ("least", least)):
            v = v.detach().double().cpu()
            v = v / v.norm(dim=1, keepdim=True)
            load = (v ** 2).mean(0)
            out.update({f"{label}_load_{n}": float(load[j]) for j, n in enumerate(self.param_names)})
            if self.form == "reduced":
                modes = ((v @ eigenmode_directions().T) ** 2).mean(0)
                out.update({f"{label}_load_lambda_{m}": float(modes[j]) for j, m in enumerate(EIGENMODES)})
        return out

    def plot(self, z: Tensor, draws: int = 3):
        """Mean +- sd over trials of the four populations on Pro and Anti trials for a few draws."""
        z = z[:draws].detach()
        with torch.no_grad():
            x = self.simulate(z, keep_trajectory=True).cpu()  # (steps, k, 2, trials, 4)
            p = self.accuracies(z).cpu()
        t = self.t.numpy()
        colours = ("#3B8023", "#EA8E4C", "#F4C673", "#81C176")  # the EPI figure's colours
        fig, axes = plt.subplots(z.shape[0], 2, figsize=(8, 1.9 * z.shape[0]), squeeze=False, sharex=True,
                                 sharey=True)
        for k in range(z.shape[0]):
            for c, task in enumerate(TASKS):
                ax = axes[k, c]
                mean, sd = x[:, k, c].mean(1), x[:, k, c].std(1)
                for j, name in enumerate(POPULATIONS):
                    ax.fill_between(t, mean[:, j] - sd[:, j], mean[:, j] + sd[:, j], color=colours[j], alpha=0.2)
                    ax.plot(t, mean[:, j], color=colours[j], label=name)
                ax.axvspan(T_CUE_END, T_LIGHT_END, color="0.9", zorder=0)
                ax.set_ylim(0, 1)
                params = ", ".join(f"{n}={float(v):.2f}" for n, v in zip(self.param_names, z[k]))
                ax.set_title(f"{task}: {100 * float(p[k, c]):.0f}% correct ({params})", fontsize=7)
        axes[0, 0].legend(fontsize=7, ncol=4, loc="upper left")
        for ax in axes[-1]:
            ax.set_xlabel("t (s); grey: light")
        fig.tight_layout()
        return fig
