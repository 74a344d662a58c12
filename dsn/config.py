"""Configuration of a DSN run (one dataclass, validated once)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

from core.config import BaseConfig, param
from core.errors import UserError

SYSTEMS = ("linear2d", "linear2d_epi", "stg", "v1", "lowrank_rnn", "sc", "gaussian", "uniform", "truncexp")


@dataclass
class DSNConfig(BaseConfig):
    threads: int = param(1, "torch CPU threads of this run (0: torch's default, one per core); one thread ran "
                            "the quick preset 8.6x faster than two on a loaded 2-core CPU", min=0)
    system: Literal[SYSTEMS] = param(
        "linear2d", "system to condition: linear2d (DSN tutorial form), linear2d_epi (EPI form), "
        "stg (hub frequency), v1 (E/P/S/V responses), lowrank_rnn (rank-2 RNN with stable amplification), "
        "sc (superior colliculus, Pro/Anti task switching), "
        "gaussian/uniform/truncexp (ground truths)")
    mu: Optional[list[float]] = param(None, "emergent property E_q[T] = mu (null: the system's default)")
    system_dim: int = param(2, "dimension of the ground-truth systems (gaussian/uniform/truncexp)", min=1, max=16)
    v1_alpha: Literal["E", "P", "S", "V"] = param("E", "v1: the population whose response is constrained")
    sc_form: Literal["reduced", "full"] = param(
        "reduced", "sc: the four symmetric weights z = [sW, vW, hW, dW] (EPI) or the 8 weights split by pre/post "
                   "type (DSN's full form)")
    sc_statistics: Literal["epi", "epi_bernoulli"] = param(
        "epi", "sc: the eLife paper's accuracies and squared deviations (m = 4), or with the DSN-era Bernoulli-"
               "variance terms appended (m = 6)")
    sc_trials: int = param(200, "sc: frozen-noise trials per task and z (published: 200)", min=2)
    rnn_neurons: int = param(2, "lowrank_rnn: neurons N (the flow is over U, V in [-1, 1]^(N x 2), D = 4N)",
                             min=2, max=10)
    compiled: bool = param(False, "stg: compile the Euler step and its adjoint with torch.compile (needs a C++ "
                                  "compiler; compiled once per process in ~10 s, then ~3x faster at n = 200)")
    # density network (architecture)
    couplings: int = param(4, "real NVP coupling layers (alternating masks)", min=0, max=32, arch=True)
    hidden: list[int] = param([32, 32], "hidden widths of each scale and shift network", min=1, arch=True)
    coupling: Literal["affine", "spline"] = param(
        "affine", "coupling layers: affine (real NVP, published) or spline (rational-quadratic neural-spline "
                  "couplings, zuko)", arch=True)
    spline_bins: int = param(8, "bins of each spline coupling (with coupling: spline)", min=2, max=64, arch=True)
    batch_norm: bool = param(False, "batch-norm flow layer after each coupling", arch=True)
    post_affine: bool = param(True, "learnable per-dimension scale and shift before the support map", arch=True)
    base_components: int = param(1, "components of the flow's base distribution: 1, N(0, I) (published); K > 1, "
                                    "an equal-weight mixture of K unit Gaussians with learnable means (for "
                                    "multi-modal targets)", min=1, max=16, arch=True)
    sigma_init: float = param(1.0, "std of the isotropic Gaussian the flow starts from (pre-training target)",
                              min=1e-3)
    init_centre: Optional[list[float]] = param(None, "centre of that Gaussian in parameter units, one value per "
                                                     "parameter inside the support (null: the support's centre)")
    # optimisation
    n: int = param(1000, "samples per Adam step (the batch; split in halves for the penalty)", min=4)
    lr: float = param(1e-3, "Adam learning rate", min=0.0)
    anneal_fraction: float = param(0.0, "fraction of each AL epoch, at its end, over which the learning rate "
                                        "falls (cosine) from lr to lr * lr_floor, so the epoch's test and the "
                                        "multiplier update see a settled flow (0: constant lr, as published)",
                                   min=0.0, max=1.0)
    lr_floor: float = param(0.1, "learning-rate factor reached at the end of each epoch (with anneal_fraction)",
                            min=0.0, max=1.0)
    init_steps: int = param(500, "pre-training steps (Adam, batch n) towards N(centre, sigma_init^2 I); the "
                                 "result is cached (see init_cache)", min=0)
    init_cache: str = param("auto", "folder of cached pre-trained flows: auto ($DSN_INIT_CACHE when set, "
                                    "else DATA_ROOT/cache/dsn_init), off (always pre-train), or a path")
    iters_per_epoch: int = param(5000, "Adam iterations per augmented-Lagrangian epoch", min=1)
    epochs: int = param(10, "augmented-Lagrangian epochs", min=1)
    restarts: int = param(1, "independent AL runs, restart r from the pre-trained flow of seed + r with fresh "
                             "lambda, c0 and Adam; the kept flow is the maximum-entropy converged epoch over "
                             "all of them (EPI's selection across random seeds)", min=1, max=100)
    c0: float = param(1e-4, "initial penalty coefficient c_0", min=0.0)
    beta: float = param(4.0, "penalty growth factor: c <- beta c", min=1.0)
    constraint_grad: Literal["pathwise", "score"] = param(
        "pathwise", "gradient of the constraint terms: pathwise through T (published) or the score-function "
                    "estimate with z held fixed (needs no dT/dz; not with batch_norm)")
    constraint_scale: Optional[list[float]] = param(
        None, "per-statistic scale s_j > 0: the AL works with the residuals (E[T_j] - mu_j) / s_j (the same "
              "solution, a better-balanced penalty when the statistics differ in size; lambda is reported in "
              "these units); null: 1 for every statistic")
    multiplier_update: Literal["al", "newton", "tilt"] = param(
        "al", "between epochs: lambda <- lambda + c R (al, published) or lambda <- lambda + s (d + c R) with d the "
              "dual's step on the epoch's fresh samples: Cov_q[T]^-1 R (newton, one Newton step) or the tilt of the "
              "samples' weights that meets mu (tilt: the dual solved on them); neither needs a large c; "
              "s = newton_step")
    newton_step: float = param(1.0, "damping s of the newton / tilt multiplier update (1: a full step)",
                               min=0.0, max=2.0)
    newton_max_kl: float = param(0.5, "trust region of the newton / tilt update: d may move the multipliers' "
                                      "exponential family by at most this KL (nats) per epoch (newton: its "
                                      "quadratic estimate d^T Cov d / 2; tilt: the KL of the samples' weights)",
                                 min=1e-6)
    tilt_ridge: float = param(0.0, "tilt: ridge of the dual step in standardised units; it shrinks the step along "
                                   "directions the epoch's samples leave undetermined (e.g. accuracies that "
                                   "take only a few values, with their squared deviations as statistics)",
                              min=0.0)
    gamma: float = param(0.25, "wanted reduction of E||R|| per epoch in the Welch test", min=0.0, max=1.0)
    c_rule: Literal["probability", "test", "hold"] = param(
        "probability", "grow c with probability 1 - p (published), when p < 0.05 (test), or with probability "
                       "1 - p only while the epoch's convergence test rejects the constraints (hold)")
    norm_batches: int = param(20, "independent batches of n drawn at each epoch end for the Welch test",
                              min=2)
    alpha: float = param(0.05, "significance of the convergence test (Bonferroni over constraints)",
                         min=1e-6, max=0.5)
    n_boot: int = param(1000, "bootstrap resamples per convergence test", min=50)
    test_samples: int = param(1000, "fresh samples in each epoch's convergence test (at most norm_batches * n)",
                              min=10)
    # outputs
    n_plot: int = param(1000, "samples drawn for pair plots and the saved sample table", min=10)
    n_hessian: int = param(5, "samples at which the exact Hessian of log q is computed", min=1)
    maxent_samples: int = param(1_000_000, "uniform Monte-Carlo draws for the max-entropy dual reference "
                                           "(bounded systems; a simulated one uses at most its own cap, "
                                           "stg 100 000, v1 none; 0: skip)", min=0)
    maxent_proposal: Literal["uniform", "flow"] = param(
        "uniform", "draws of the max-entropy reference: uniform on the box, or half of them from the kept flow and "
                   "half uniform, each weighted by 1 / r (a defensive mixture: the same dual, a far larger "
                   "effective sample size when the solution fills a small part of the box and the flow covers it)")
    steps: int = param(0, "derived: restarts * epochs * iters_per_epoch (leave 0)", min=0, derived=True)

    def check(self) -> None:
        if self.constraint_grad == "score" and self.batch_norm:
            raise UserError("--constraint_grad score needs the flow's exact density at fixed samples; "
                            "set batch_norm false")
        if self.constraint_scale is not None and not all(s > 0 for s in self.constraint_scale):
            raise UserError("--constraint_scale: every scale must be positive")
        total = self.restarts * self.epochs * self.iters_per_epoch
        if self.steps not in (0, total):
            raise UserError(f"--steps: DSN training length is restarts * epochs * iters_per_epoch = {total}; "
                            "set those instead (or leave steps at 0)")
        self.steps = total
