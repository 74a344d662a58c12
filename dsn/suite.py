"""Degenerate Solution Networks: glue between the pure DSN modules and the managers.

:meth:`build` makes the flow and pre-trains it to N(centre, sigma_init^2 I) (or loads that
pre-trained flow from the on-disk cache, :mod:`dsn.init_cache`). Training is then one
phase per restart (``al``, or ``al1``, ``al2``, ... with ``restarts > 1``; each phase gets a
fresh Adam, and its first step re-initialises the flow from the pre-trained flow of
seed + r and resets lambda and c): one step is one Adam iteration on the augmented
Lagrangian; every
``iters_per_epoch`` steps :meth:`after_step` ends an AL epoch (convergence test on fresh
samples, history, lambda and c updates, the max-entropy converged flow kept in the
suite state, so checkpoints carry it and resume is exact).
"""
from __future__ import annotations

import copy
import math

import pandas as pd
import torch

from core.errors import UserError
from core.runtime import derive_seed
from core.suite import AnalysisResult, ModelSuite, Phase, analysis, visualization
from dsn import convergence, lagrangian
from dsn.config import DSNConfig
from dsn.flow import DensityNetwork
from dsn.hessian import hessian_directions, log_density_hessian
from dsn import init_cache
from dsn.maxent import maxent_reference, reliable
from dsn.plots import pair_plot, plot_marginals, plot_traces
from dsn.pretrain import adam, half_cosine, pretrain_isotropic
from dsn.systems import make_system
from dsn.systems.base import System

_HIST = ("entropy", "R", "p", "accepted", "c", "lam", "step", "restart")


def build_system(cfg: DSNConfig) -> System:
    """The configured system with ``cfg.mu`` (if given) checked against its statistics."""
    D, mu = cfg.system_dim, cfg.mu
    if cfg.system == "gaussian":
        if mu is not None and len(mu) != 2 * D:
            raise UserError(f"--mu: gaussian with system_dim={D} needs {2 * D} values (means, second moments)")
        mean = torch.tensor(mu[:D]) if mu else torch.linspace(-1.0, 1.0, D)
        second = torch.tensor(mu[D:]) if mu else mean ** 2 + torch.linspace(1.0, 2.0, D) ** 2
        if bool((second - mean ** 2 <= 0).any()):
            raise UserError("--mu: each second moment must exceed its mean squared")
        return make_system("gaussian", mean=mean.tolist(), std=(second - mean ** 2).sqrt().tolist())
    if cfg.system == "uniform":
        if mu:
            raise UserError("--mu: the uniform system has no constraints; leave mu null")
        return make_system("uniform", lower=[-1.0] * D, upper=[2.0] * D)
    if cfg.system == "truncexp":
        mean = mu if mu is not None else [1.0] * D
        if len(mean) != D or not all(0 < v < 4 for v in mean):
            raise UserError(f"--mu: truncexp needs {D} means strictly inside (0, 4)")
        return make_system("truncexp", mean=mean, b=4.0)
    opts = {"v1": {"alpha": cfg.v1_alpha}, "stg": {"compiled": cfg.compiled},
            "lowrank_rnn": {"neurons": cfg.rnn_neurons},
            "sc": {"form": cfg.sc_form, "statistics": cfg.sc_statistics, "trials": cfg.sc_trials}}.get(cfg.system, {})
    system = make_system(cfg.system, **opts)
    if mu is not None:
        if len(mu) != system.m:
            raise UserError(f"--mu: {cfg.system} has {system.m} statistics ({', '.join(system.stat_names)}), "
                            f"got {len(mu)} values")
        system.mu = torch.tensor(mu, dtype=torch.float32)
    centre = cfg.init_centre
    if centre is not None and (len(centre) != system.D or not all(
            lo < c < hi for c, lo, hi in zip(centre, system.lower.tolist(), system.upper.tolist()))):
        box = ", ".join(f"{name} in ({lo:g}, {hi:g})" for name, lo, hi in
                        zip(system.param_names, system.lower.tolist(), system.upper.tolist()))
        raise UserError(f"--init_centre: {cfg.system} needs {system.D} values strictly inside its support ({box})")
    return system


def build_flow(cfg: DSNConfig, system: System) -> DensityNetwork:
    """The configured density network over ``system``'s support (weights from torch's RNG)."""
    return DensityNetwork(system.lower, system.upper, couplings=cfg.couplings, hidden=tuple(cfg.hidden),
                          batch_norm=cfg.batch_norm, post_affine=cfg.post_affine, sigma_init=cfg.sigma_init,
                          coupling=cfg.coupling, spline_bins=cfg.spline_bins, base_components=cfg.base_components)


class DSNSuite(ModelSuite):
    name = "dsn"
    Config = DSNConfig
    description = "maximum-entropy flows over circuit parameters conditioned on emergent properties"

    def __init__(self, ctx):
        super().__init__(ctx)
        self.system = build_system(self.cfg)
        self.mu = self.system.mu.to(self.device)
        m = self.system.m
        scale = self.cfg.constraint_scale
        if scale is not None and len(scale) != m:
            raise UserError(f"--constraint_scale: {self.cfg.system} has {m} statistics "
                            f"({', '.join(self.system.stat_names)}), got {len(scale)} scales")
        self.scale = (torch.tensor(scale, dtype=torch.float32) if scale is not None else torch.ones(m)).to(self.device)
        self.lam = torch.zeros(m, device=self.device)
        self.c = float(self.cfg.c0)
        self.prev_norms = torch.zeros(0)
        self.history: dict[str, list] = {k: [] for k in _HIST}
        self.best_epoch, self.best_entropy = -1, -math.inf
        self.best_flow: dict[str, torch.Tensor] = {}
        self.init_kl, self.init_cached = math.nan, False
        self.restart = 0

    # ---- model and training ---------------------------------------------------------
    def prepare(self) -> None:
        if self.ctx.env.world_size > 1:
            raise UserError("dsn trains in one process (the AL updates are global); run without torchrun")

    def build(self):
        return {"flow": self._initial_flow(self.cfg.seed)}

    def _initial_flow(self, seed: int) -> DensityNetwork:
        """A flow with weights drawn from ``seed``, pre-trained (or loaded from the cache)."""
        torch.manual_seed(seed)
        cfg = self.cfg
        flow = build_flow(cfg, self.system).to(self.device)
        self._pretrain(flow, seed)
        return flow

    def init_settings(self, seed: int | None = None) -> dict:
        """Everything the pre-trained initial flow depends on (the cache key)."""
        cfg = self.cfg
        arch = {} if cfg.coupling == "affine" else {"coupling": cfg.coupling, "spline_bins": cfg.spline_bins}
        if cfg.base_components > 1:
            arch["base_components"] = cfg.base_components
        return {"version": 1, **arch, "couplings": cfg.couplings, "hidden": list(cfg.hidden),
                "batch_norm": cfg.batch_norm, "post_affine": cfg.post_affine, "sigma_init": cfg.sigma_init,
                "centre": self.system_centre.tolist(),
                "lower": self.system.lower.tolist(), "upper": self.system.upper.tolist(),
                "seed": cfg.seed if seed is None else seed, "init_steps": cfg.init_steps, "n": cfg.n, "lr": cfg.lr}

    def _pretrain(self, flow, seed: int) -> None:
        """Fit the flow to N(centre, sigma_init^2 I), or load that fit from the cache."""
        cfg = self.cfg
        if cfg.init_steps == 0:
            return
        settings = self.init_settings(seed)
        folder = init_cache.cache_dir(cfg.init_cache, self.ctx.data_root)
        path = folder / f"{init_cache.cache_key(**settings)}.pt" if folder is not None else None
        entry = init_cache.load_cached(path) if path is not None else None
        if entry is not None:
            flow.load_state_dict(entry["state"])
            self.init_kl, self.init_cached = float(entry["kl"]), True
            return
        g = torch.Generator(device=self.device).manual_seed(derive_seed(seed, "dsn-init"))
        self.init_kl = pretrain_isotropic(flow, self.system_centre.to(self.device), cfg.sigma_init,
                                          cfg.init_steps, cfg.n, cfg.lr, g)
        if path is not None:
            try:
                init_cache.save_cached(path, flow.state_dict(), self.init_kl, settings)
            except OSError:  # a read-only cache folder only costs the next run the pre-training
                pass

    def phases(self):
        steps, R = self.cfg.epochs * self.cfg.iters_per_epoch, self.cfg.restarts
        return [Phase("al" if R == 1 else f"al{r + 1}", steps) for r in range(R)]

    def _begin_restart(self, flow, r: int) -> None:
        """Restart r: the flow from the pre-trained flow of seed + r (weights copied in
        place, so the phase's fresh Adam keeps tracking them), lambda = 0, c = c0."""
        flow.load_state_dict(self._initial_flow(self.cfg.seed + r).state_dict())
        self.restart = r
        self.lam = torch.zeros_like(self.lam)
        self.c = float(self.cfg.c0)
        self.prev_norms = torch.zeros(0)

    def make_optimizer(self, modules, phase):
        """Adam (lr = cfg.lr), fused into one kernel where torch offers it (measured ~4x
        faster than the per-tensor update on the CPU; the same arithmetic)."""
        return adam(modules["flow"].parameters(), self.cfg.lr)

    def learning_rate(self, phase, phase_step):
        """lr, falling by a half cosine to lr * lr_floor over the last ``anneal_fraction`` of each epoch."""
        cfg = self.cfg
        if cfg.anneal_fraction <= 0:
            return None
        E = cfg.iters_per_epoch
        start = E * (1.0 - cfg.anneal_fraction)
        k = phase_step % E
        if k < start:
            return cfg.lr
        return half_cosine(cfg.lr, cfg.lr_floor, (k + 1 - start) / (E - start))  # x in (0, 1]

    @property
    def system_centre(self) -> torch.Tensor:
        """Centre of the pre-training Gaussian: ``init_centre`` or the support's centre."""
        lo, hi = self.system.lower, self.system.upper
        if self.cfg.init_centre is not None:
            return torch.tensor(self.cfg.init_centre, dtype=torch.float32)
        return torch.where(torch.isfinite(lo) & torch.isfinite(hi), (lo + hi) / 2, torch.zeros_like(lo))

    def loss(self, modules, batch, step):
        flow = modules["flow"]
        r = int(step.phase[2:]) - 1 if step.phase != "al" else 0
        if step.phase_step == 0 and r != self.restart:
            self._begin_restart(flow, r)
        if step.phase_step == 0 and self.prev_norms.numel() == 0:
            self.prev_norms = self._fresh(flow, step.generator)["norms"]  # ||R|| before the first epoch
        z, log_q = flow.rsample_and_log_prob(self.cfg.n, step.generator)
        mu_s = self.mu / self.scale  # the AL works in scaled units (constraint_scale)
        if self.cfg.constraint_grad == "score":
            with torch.no_grad():
                T_s = self.system.suff_stats(z) / self.scale
            _, parts = lagrangian.al_objective(log_q, T_s, mu_s, self.lam, self.c)
            loss = log_q.mean() + lagrangian.score_constraint_surrogate(
                flow.log_prob(z.detach()), T_s, mu_s, self.lam, self.c)
        else:
            T_s = self.system.suff_stats(z) / self.scale
            loss, parts = lagrangian.al_objective(log_q, T_s, mu_s, self.lam, self.c)
        R = parts["R"] * self.scale
        metrics = {"entropy": parts["entropy"], "R_norm": parts["R"].norm(), "c": self.c}
        metrics.update({f"R/{name}": R[j] for j, name in enumerate(self.system.stat_names)})
        return loss, metrics

    @torch.no_grad()
    def _fresh(self, flow, generator) -> dict[str, torch.Tensor]:
        """norm_batches fresh batches of n from the eval-mode flow: entropy, R and dev (in the
        statistics' units) and the scaled residual norms of the Welch test."""
        was = flow.training
        flow.eval()
        devs, logs = [], []
        for _ in range(self.cfg.norm_batches):
            z, lq = flow.rsample_and_log_prob(self.cfg.n, generator)
            devs.append(self.system.suff_stats(z) - self.mu)
            logs.append(lq)
        flow.train(was)
        dev = torch.stack(devs)  # (batches, n, m)
        return {"dev": dev, "entropy": -torch.cat(logs).mean(), "R": dev.mean((0, 1)),
                "norms": lagrangian.constraint_norms(dev / self.scale).cpu()}

    def after_step(self, modules, step, metrics):
        if (step.phase_step + 1) % self.cfg.iters_per_epoch:
            return
        cfg, flow = self.cfg, modules["flow"]
        fresh = self._fresh(flow, step.generator)
        p = convergence.bootstrap_p_values(fresh["dev"].flatten(0, 1)[: cfg.test_samples], cfg.n_boot,
                                           step.generator)
        ok = convergence.constraints_satisfied(p, cfg.alpha)
        H = float(fresh["entropy"])
        for key, val in (("entropy", H), ("R", fresh["R"].cpu()), ("p", p.cpu()), ("accepted", ok),
                         ("c", self.c), ("lam", self.lam.cpu().clone()), ("step", step.step + 1),
                         ("restart", self.restart)):
            self.history[key].append(val)
        if ok and H > self.best_entropy:
            self.best_epoch, self.best_entropy = len(self.history["entropy"]) - 1, H
            self.best_flow = {k: v.detach().clone() for k, v in flow.state_dict().items()}
        R_s = fresh["R"] / self.scale
        self.lam = lagrangian.next_multipliers(cfg.multiplier_update, self.lam, self.c, R_s,
                                               fresh["dev"].flatten(0, 1) / self.scale, cfg.newton_step,
                                               cfg.newton_max_kl, cfg.tilt_ridge)
        p_welch = lagrangian.welch_greater_p(fresh["norms"], cfg.gamma * self.prev_norms)
        u = float(torch.rand((), generator=step.generator, device=step.generator.device))
        self.c = lagrangian.penalty_update(self.c, p_welch, cfg.beta, cfg.c_rule, u, satisfied=ok)
        self.prev_norms = fresh["norms"]
        metrics.update({"epoch/entropy": H, "epoch/accepted": float(ok), "epoch/welch_p": p_welch,
                        "epoch/min_p": float(p.min()) if p.numel() else 1.0})

    def state_dict(self):
        h = self.history
        m = self.system.m
        stack = lambda xs, shape: torch.stack(xs) if xs else torch.zeros(shape)  # noqa: E731
        return {"lam": self.lam.cpu(), "c": self.c, "prev_norms": self.prev_norms,
                "entropy": torch.tensor(h["entropy"], dtype=torch.float64),
                "R": stack(h["R"], (0, m)), "p": stack(h["p"], (0, m)), "lam_hist": stack(h["lam"], (0, m)),
                "accepted": torch.tensor(h["accepted"], dtype=torch.bool),
                "c_hist": torch.tensor(h["c"], dtype=torch.float64),
                "step": torch.tensor(h["step"], dtype=torch.long),
                "restart": self.restart, "restart_hist": torch.tensor(h["restart"], dtype=torch.long),
                "best_epoch": self.best_epoch, "best_entropy": self.best_entropy, "best_flow": self.best_flow,
                "init_kl": self.init_kl, "init_cached": self.init_cached}

    def load_state_dict(self, state):
        if not state:
            return
        self.lam = state["lam"].to(self.device)
        self.c, self.prev_norms = float(state["c"]), state["prev_norms"]
        self.history = {"entropy": state["entropy"].tolist(), "R": list(state["R"]), "p": list(state["p"]),
                        "accepted": state["accepted"].tolist(), "c": state["c_hist"].tolist(),
                        "lam": list(state["lam_hist"]), "step": state["step"].tolist(),
                        "restart": state.get("restart_hist", torch.zeros(len(state["step"]), dtype=torch.long)).tolist()}
        self.restart = int(state.get("restart", 0))
        per = self.cfg.epochs * self.cfg.iters_per_epoch
        if self.cfg.restarts > 1 and any((st - 1) // per != r for st, r in zip(self.history["step"], self.history["restart"])):
            raise UserError("this run's restarts were laid out with other epochs / iters_per_epoch; with "
                            "restarts > 1 resume it with the settings it was started with")
        self.best_epoch, self.best_entropy = int(state["best_epoch"]), float(state["best_entropy"])
        self.best_flow = dict(state["best_flow"])
        self.init_kl = float(state.get("init_kl", math.nan))
        self.init_cached = bool(state.get("init_cached", False))

    # ---- outputs ---------------------------------------------------------------------
    def kept_flow(self, modules):
        """The max-entropy converged flow (or the last one if no epoch converged), eval mode."""
        flow = modules["flow"]
        if self.best_flow:
            flow = copy.deepcopy(flow)
            flow.load_state_dict(self.best_flow)
        return flow.eval()

    def _samples(self, modules, n=None):
        g = torch.Generator(device=self.device).manual_seed(self.cfg.seed + 7)
        flow = self.kept_flow(modules)
        with torch.no_grad():
            z, lq = flow.rsample_and_log_prob(n or self.cfg.n_plot, g)
            T = self.system.suff_stats(z)
        return flow, z, lq, T

    def _label(self):
        if self.best_epoch >= 0:
            where = f" (restart {self.history['restart'][self.best_epoch] + 1})" if self.cfg.restarts > 1 else ""
            return f"max-entropy converged epoch {self.best_epoch + 1}{where}"
        return "no converged epoch: last flow"

    def _maxent(self, modules):
        """The max-entropy dual reference (computed once) for bounded systems: closed forms
        with ``maxent_samples`` draws, simulators with at most their ``reference_draws``; with
        ``maxent_proposal: flow`` half of them from the kept flow."""
        if not hasattr(self, "_maxent_ref"):
            sys_ = self.system
            n = self.cfg.maxent_samples if sys_.closed_form else min(self.cfg.maxent_samples, sys_.reference_draws)
            ok = (n > 0 and not hasattr(sys_, "entropy")
                  and bool(torch.isfinite(sys_.lower).all() and torch.isfinite(sys_.upper).all()))
            proposal = self.kept_flow(modules) if self.cfg.maxent_proposal == "flow" else None
            self._maxent_ref = maxent_reference(sys_, n, seed=self.cfg.seed, chunk=sys_.reference_chunk,
                                                keep_samples=True, proposal=proposal) if ok else None
        return self._maxent_ref

    def _reference_entropy(self, modules):
        """The closed-form or dual ceiling H*, or None (none, or a dual the draws cannot support)."""
        if hasattr(self.system, "entropy"):
            return self.system.entropy()
        ref = self._maxent(modules)
        return ref["entropy"] if ref is not None and reliable(ref)[0] else None

    @visualization("traces", "entropy and constraint traces per AL epoch, kept epoch marked")
    def viz_traces(self, modules, ctx):
        if not self.history["entropy"]:
            raise UserError("--viz traces: no AL epoch has finished yet; train for at least iters_per_epoch steps")
        h = {"entropy": self.history["entropy"], "accepted": self.history["accepted"],
             "R": torch.stack(self.history["R"]) if self.system.m else None, "restart": self.history["restart"]}
        return {"traces": plot_traces(h, self.system.stat_names, self.mu, self.best_epoch,
                                      self._reference_entropy(modules))}

    @visualization("pairs", "pair plots of z (coloured by log q) and of T(x) at the kept epoch")
    def viz_pairs(self, modules, ctx):
        _, z, lq, T = self._samples(modules)
        figs = {"z": pair_plot(z, self.system.param_names, lq, f"q(z): {self._label()}")}
        if self.system.m:
            figs["T"] = pair_plot(T, self.system.stat_names, None, "T(x) of the samples (lines: mu)",
                                  lines={j: float(v) for j, v in enumerate(self.mu)})
        return figs

    @visualization("behaviour", "the system's behaviour for a few samples")
    def viz_behaviour(self, modules, ctx):
        _, z, _, _ = self._samples(modules, 16)
        return {"behaviour": self.system.plot(z)}

    @analysis("samples", "samples z, log q(z) and T(x) of the kept flow, and the AL history")
    def samples(self, modules, ctx):
        _, z, lq, T = self._samples(modules)
        frame = pd.DataFrame(z.cpu().numpy(), columns=self.system.param_names)
        frame["log_q"] = lq.cpu().numpy()
        for j, name in enumerate(self.system.stat_names):
            frame[f"T:{name}"] = T[:, j].cpu().numpy()
        hist = pd.DataFrame({"epoch": range(1, len(self.history["entropy"]) + 1),
                             "restart": [r + 1 for r in self.history["restart"]], "step": self.history["step"], "entropy": self.history["entropy"],
                             "accepted": self.history["accepted"], "c": self.history["c"]})
        for j, name in enumerate(self.system.stat_names):
            hist[f"E[{name}]-mu"] = [float(r[j]) for r in self.history["R"]]
            hist[f"p:{name}"] = [float(p[j]) for p in self.history["p"]]
            hist[f"lambda:{name}"] = [float(v[j]) for v in self.history["lam"]]
        return AnalysisResult(tables={"samples": frame, "history": hist},
                              scalars={"entropy": float(-lq.mean()), "kept_epoch": self.best_epoch + 1,
                                       "init_kl": self.init_kl})

    @analysis("hessian", "exact Hessian of log q(z) at samples; most/least degenerate directions")
    def hessian(self, modules, ctx):
        flow, z, lq, _ = self._samples(modules)
        pts = z[: self.cfg.n_hessian]
        with torch.enable_grad():
            H = log_density_hessian(flow.log_prob, pts)
        d = hessian_directions(H)
        rows = []
        for k in range(pts.shape[0]):
            row = {f"z:{n}": float(pts[k, i]) for i, n in enumerate(self.system.param_names)}
            row.update({f"eig{i + 1}": float(v) for i, v in enumerate(d["eigenvalues"][k])})
            row.update({f"most:{n}": float(d["most_degenerate"][k, i]) for i, n in enumerate(self.system.param_names)})
            row.update({f"least:{n}": float(d["least_degenerate"][k, i]) for i, n in enumerate(self.system.param_names)})
            rows.append(row)
        dirs = [(pts[k], d["most_degenerate"][k], d["least_degenerate"][k]) for k in range(pts.shape[0])]
        fig = pair_plot(z, self.system.param_names, lq, "Hessian eigen-directions (solid: most degenerate, "
                        "dotted: least)", directions=dirs)
        scalars = {"mean_abs_min_eigenvalue": float(d["eigenvalues"][:, 0].abs().mean()),
                   "mean_abs_max_eigenvalue": float(d["eigenvalues"][:, -1].abs().mean())}
        scalars.update(self.system.hessian_summary(pts, H, d["most_degenerate"], d["least_degenerate"]))
        return AnalysisResult(tables={"hessian": pd.DataFrame(rows)}, figures={"hessian_directions": fig},
                              scalars=scalars)

    @analysis("reference", "constraints met, entropy against the closed form or the max-entropy dual")
    def reference(self, modules, ctx):
        _, z, lq, T = self._samples(modules, max(self.cfg.n_plot, self.cfg.n))
        dev = T - self.mu
        p = convergence.bootstrap_p_values(dev, self.cfg.n_boot,
                                           torch.Generator(device=self.device).manual_seed(self.cfg.seed))
        rows = [{"statistic": n, "mu": float(self.mu[j]), "E_q[T]": float(T[:, j].mean()),
                 "p_zero_violation": float(p[j])} for j, n in enumerate(self.system.stat_names)]
        scalars = {"entropy": float(-lq.mean()), "entropy_se": float(lq.std() / math.sqrt(lq.numel())),
                   "converged": float(convergence.constraints_satisfied(p, self.cfg.alpha))}
        ref = self._maxent(modules)
        trusted, why = reliable(ref) if ref is not None else (False, "")
        if hasattr(self.system, "entropy"):
            scalars["reference_entropy"] = self.system.entropy()
        elif ref is not None:
            scalars.update(reference_entropy=ref["entropy"], reference_ess=ref["ess"],
                           reference_reliable=float(trusted),
                           reference_flow_proposal=float(self.cfg.maxent_proposal == "flow"))
        if "reference_entropy" in scalars:
            scalars["entropy_gap"] = scalars["reference_entropy"] - scalars["entropy"]
        for key, val in self.system.summary(z).items():
            scalars[key] = val
        if ref is not None:
            for key, val in self.system.summary(ref["z"], ref["weights"]).items():
                scalars[f"reference_{key}"] = val
        summary = pd.DataFrame([scalars])
        figures = {}
        if ref is not None and not trusted:
            summary["reference_note"] = "unreliable max-entropy reference: " + why
        elif ref is not None:
            figures["marginals"] = plot_marginals(
                z, ref["z"], ref["weights"], self.system.param_names, self.system.lower, self.system.upper,
                title=f"{self.cfg.system}: flow ({self._label()}, H = {scalars['entropy']:.2f}) against the "
                      f"max-entropy dual (H* = {scalars['reference_entropy']:.2f})")
        return AnalysisResult(tables={"constraints": pd.DataFrame(rows), "summary": summary}, figures=figures,
                              scalars=scalars)
