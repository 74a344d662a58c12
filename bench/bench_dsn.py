"""Benchmark of DSN training: iteration speed and wall time to convergence.

    pipenv run python bench/bench_dsn.py [--threads 1|1,2] [--device cpu|cuda] [--iters 200]
                                         [--rounds 5] [--no_stg] [--converge linear2d,stg|none] [--full]

Prints, measured in the same run, interleaved (every round runs a block of each variant in
turn, the order reversed every other round; all in float32 with the same thread count):
times as the median and range over rounds, ratios as the median and range of the per-round
ratios.

1. **Iteration speed** (one Adam step on the augmented Lagrangian: sample n, log q, T,
   loss, backward, step) for Linear2D (n = 1000, 4 couplings of 2x32 tanh MLPs, as
   published) with

   * ``zuko MLPs + nn.Tanh`` -- the straightforward build (the baseline): each coupling's
     scale and shift networks as two zuko MLPs with torch's tanh, torch's default Adam;
   * ``zuko MLPs + SigmoidTanh`` -- tanh computed as 2 sigmoid(2x) - 1 (the same function;
     torch's CPU tanh kernel is slow here);
   * ``PairedMLP + SigmoidTanh`` -- both networks evaluated by one batched matmul per
     layer (:mod:`dsn.paired_mlp`), what :class:`dsn.flow.DensityNetwork` uses;
   * ``... + fused Adam`` -- plus torch's fused Adam kernel (what the suite trains with);

   and the ratio to the published 3.7 ms per iteration (TensorFlow 1, laptop CPU; another
   machine, so only indicative). ``--threads 1,2`` runs every variant at both counts in the
   same rounds and prints the thread ratio.
2. **STG simulator**: the batched forward-Euler simulation of n circuits (and, for scale
   only, a per-sample loop), and the STG iteration time at n = 200/1000 with autograd
   through every Euler step of the batched simulator (the baseline), with the
   hand-derived adjoint (:mod:`dsn.systems.stg_dynamics`, the default), and with the
   adjoint's step functions compiled (``compiled: true``; compile time excluded), and with
   the score-function constraint gradient (compiled forward only, the STG preset's mode).
3. **Wall time to convergence** (``--converge``): the whole DSN run of a preset
   (``configs/dsn_quick.yaml`` for Linear2D, ``configs/dsn_stg.yaml`` for STG;
   ``--full`` uses ``configs/dsn_linear2d.yaml``, the published settings): pre-training,
   AL epochs, time to the first converged epoch, the kept epoch and its entropy.

Figures are printed, never asserted.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import yaml
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.config import from_dict  # noqa: E402
from interleave import interleaved, sync  # noqa: E402
from core.runtime import derive_seed, generator, keep_freed_memory_mapped  # noqa: E402
from core.suite import RunContext, StepContext  # noqa: E402
from dsn import lagrangian  # noqa: E402
from dsn.flow import DensityNetwork, SigmoidTanh  # noqa: E402
from dsn.pretrain import adam  # noqa: E402
from dsn.suite import DSNSuite  # noqa: E402
from dsn.systems import make_system  # noqa: E402

PUBLISHED_MS = 3.7  # ms per iteration, published DSN (TensorFlow 1) on a laptop CPU




def _stepper(system, n: int, activation, device, hidden=(32, 32), paired: bool = True, fused: bool = True,
             score: bool = False):
    """A closure running one AL Adam step of a fresh flow (``score``: the score-function
    constraint gradient, T without a backward pass, as ``constraint_grad: score``)."""
    torch.manual_seed(0)
    flow = DensityNetwork(system.lower, system.upper, couplings=4, hidden=hidden, sigma_init=3.0,
                          activation=activation, paired=paired).to(device)
    opt = adam(flow.parameters(), 1e-3) if fused else torch.optim.Adam(flow.parameters(), lr=1e-3)
    mu, lam = system.mu.to(device), torch.zeros(system.m, device=device)
    g = torch.Generator(device=device).manual_seed(0)

    def step():
        z, log_q = flow.rsample_and_log_prob(n, g)
        if score:
            with torch.no_grad():
                T = system.suff_stats(z)
            loss = log_q.mean() + lagrangian.score_constraint_surrogate(flow.log_prob(z.detach()), T, mu, lam, 1.0)
        else:
            loss, _ = lagrangian.al_objective(log_q, system.suff_stats(z), mu, lam, 1.0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def interleaved_ms(variants: dict, iters: int, device, rounds: int = 5) -> dict:
    """ms per step of each ``name -> (step, threads)``, one value per round (blocks of ``iters``
    steps interleaved A, B, C, C, B, A, ...; warm-up steps and any compiling first)."""
    times = interleaved(variants, device, rounds, iters, warmup=max(5, iters // 10))
    return {k: [t * 1e3 for t in v] for k, v in times.items()}


def spread(xs: list, fmt: str = "7.2f") -> str:
    """``median (min-max)``."""
    return f"{statistics.median(xs):{fmt}} ({min(xs):.4g}-{max(xs):.4g})"


def ratio(slow: list, fast: list) -> str:
    """Per-round ratios slow/fast as ``xmedian (min-max)``."""
    r = [a / b for a, b in zip(slow, fast)]
    return f"x{statistics.median(r):.2f} ({min(r):.2f}-{max(r):.2f})"


def stg_batched_vs_loop(n: int, loop_samples: int, device, rounds: int = 3) -> tuple[list, list]:
    """ms of simulating n STG circuits, per round (interleaved): batched, and a per-sample
    loop over ``loop_samples`` circuits extrapolated to n."""
    system = make_system("stg")
    z = (system.lower + (system.upper - system.lower) * torch.rand(n, 2)).to(device)
    batched, loop = [], []
    with torch.no_grad():
        system.simulate(z[:8])
        for _ in range(rounds):
            sync(device)
            t = time.perf_counter()
            system.simulate(z)
            sync(device)
            batched.append((time.perf_counter() - t) * 1e3)
            t = time.perf_counter()
            for i in range(loop_samples):
                system.simulate(z[i:i + 1])
            sync(device)
            loop.append((time.perf_counter() - t) / loop_samples * n * 1e3)
    return batched, loop


def converge(preset: Path, device, overrides: dict | None = None) -> dict:
    """Run a preset's whole DSN training the way TrainingManager does; report timings."""
    values = {k: v for k, v in yaml.safe_load(preset.read_text()).items() if k != "model"}
    values.update({"init_cache": "off", **(overrides or {})})
    cfg = from_dict(DSNSuite.Config, values)
    suite = DSNSuite(RunContext(cfg=cfg, device=device))
    t0 = time.perf_counter()
    modules = suite.build()
    t_init = time.perf_counter() - t0
    phase = suite.phases()[0]
    opt = suite.make_optimizer(modules, phase)
    first_ok = None
    for step in range(cfg.steps):
        seed = derive_seed(cfg.seed, "step", step, 0)
        torch.manual_seed(seed)
        ctx = StepContext(step=step, phase=phase.name, phase_step=step, rank=0, world_size=1, device=device,
                          generator=generator(seed, device))
        loss, metrics = suite.loss(modules, None, ctx)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        suite.after_step(modules, ctx, metrics)
        if first_ok is None and suite.history["accepted"] and suite.history["accepted"][-1]:
            first_ok = (len(suite.history["accepted"]), time.perf_counter() - t0)
    total = time.perf_counter() - t0
    return {"preset": preset.name, "system": cfg.system, "n": cfg.n, "iters_per_epoch": cfg.iters_per_epoch,
            "epochs": cfg.epochs, "init_s": t_init, "total_s": total,
            "ms_per_iter": (total - t_init) / max(cfg.steps, 1) * 1e3,
            "first_converged_epoch": first_ok[0] if first_ok else None,
            "s_to_first_converged": first_ok[1] if first_ok else None,
            "kept_epoch": suite.best_epoch + 1 if suite.best_epoch >= 0 else None,
            "kept_entropy": suite.best_entropy if suite.best_epoch >= 0 else None,
            "entropies": [round(h, 3) for h in suite.history["entropy"]]}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", default="1",
                   help="torch CPU threads (default 1), or a comma list (e.g. 1,2): part 1 then runs every "
                        "variant at each count in the same interleaved rounds; parts 2-3 use the first")
    p.add_argument("--iters", type=int, default=200, help="timed iterations per block (Linear2D)")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds (each: one block per variant)")
    p.add_argument("--converge", default="linear2d",
                   help="comma list of systems to run to convergence (linear2d, stg) or 'none'")
    p.add_argument("--no_stg", action="store_true", help="skip part 2 (STG)")
    p.add_argument("--full", action="store_true", help="Linear2D convergence with the published settings")
    args = p.parse_args(argv)
    thread_counts = [int(t) for t in str(args.threads).split(",")]
    torch.set_num_threads(thread_counts[0])
    keep_freed_memory_mapped()
    device = torch.device(args.device)
    print(f"device {device}, torch {torch.__version__}, threads {args.threads}; ms/it as median (min-max) "
          f"over {args.rounds} interleaved rounds, ratios as the median (min-max) of per-round ratios")

    lin = make_system("linear2d")
    print("\n1. Linear2D AL iteration (n = 1000, 4 couplings, 2x32 tanh MLPs; forward+backward+Adam, float32)")
    builds = {
        "zuko MLPs + nn.Tanh + Adam (baseline)": dict(activation=nn.Tanh, paired=False, fused=False),
        "zuko MLPs + SigmoidTanh": dict(activation=SigmoidTanh, paired=False, fused=False),
        "PairedMLP + SigmoidTanh": dict(activation=SigmoidTanh, fused=False),
        "PairedMLP + SigmoidTanh + fused Adam (ours)": dict(activation=SigmoidTanh),
    }
    variants = {(label, nt): (_stepper(lin, 1000, device=device, **kw), nt)
                for nt in thread_counts for label, kw in builds.items()}
    ms = interleaved_ms(variants, args.iters, device, args.rounds)
    base_label, ours_label = next(iter(builds)), list(builds)[-1]
    for nt in thread_counts:
        for label in builds:
            t = ms[label, nt]
            print(f"   {label:44s} {nt} thr {spread(t)} ms/it ({1e3 / statistics.median(t):5.0f} it/s)  "
                  f"speed-up {ratio(ms[base_label, nt], t)}")
        print(f"   {'published (TensorFlow 1, laptop CPU)':44s}       {PUBLISHED_MS:7.2f} ms/it   published / ours "
              f"({nt} thr) = x{PUBLISHED_MS / statistics.median(ms[ours_label, nt]):.2f} (another machine)")
    for nt in thread_counts[1:]:
        for label in (base_label, ours_label):
            print(f"   {label:44s} time({nt} thr) / time({thread_counts[0]} thr) = "
                  f"{ratio(ms[label, nt], ms[label, thread_counts[0]])}")
    torch.set_num_threads(thread_counts[0])
    for n in (300, 3000):
        t = interleaved_ms({"": (_stepper(lin, n, SigmoidTanh, device), thread_counts[0])}, args.iters, device,
                           rounds=3)[""]
        print(f"   {f'ours at n = {n}':44s} {thread_counts[0]} thr {spread(t)} ms/it")

    if not args.no_stg:
        print(f"\n2. STG simulator (300 forward-Euler steps, 5 neurons; {thread_counts[0]} thread(s))")
        batched, loop = stg_batched_vs_loop(1000, 20, device)
        print(f"   simulate 1000 circuits: batched {spread(batched, '8.1f')} ms, per-sample loop (extrapolated "
              f"from 20; for scale, not a baseline) {spread(loop, '8.0f')} ms: {ratio(loop, batched)}")
        stg_variants = {"autograd through every step (baseline)": ({"adjoint": False}, False),
                        "hand-derived adjoint (default)": ({}, False),
                        "adjoint + compiled: true": ({"compiled": True}, False),
                        "score-function grad + compiled (preset)": ({"compiled": True}, True)}
        for n in (200, 1000):
            ms = interleaved_ms({label: (_stepper(make_system("stg", **kw), n, SigmoidTanh, device, score=score),
                                         thread_counts[0])
                                 for label, (kw, score) in stg_variants.items()},
                                max(5, args.iters // 20), device, rounds=max(2, args.rounds // 2))
            base = next(iter(ms.values()))
            for label, t in ms.items():
                print(f"   STG AL iteration n = {n:<4d} {label:40s} {spread(t, '7.1f')} ms/it "
                      f"({1e3 / statistics.median(t):5.1f} it/s)  {ratio(base, t)}")

    systems = [] if args.converge == "none" else [s.strip() for s in args.converge.split(",") if s.strip()]
    if systems:
        print("\n3. Wall time to convergence")
    for name in systems:
        if name == "linear2d":
            preset = ROOT / "configs" / ("dsn_linear2d.yaml" if args.full else "dsn_quick.yaml")
        elif name == "stg":
            preset = ROOT / "configs" / "dsn_stg.yaml"
        else:
            raise SystemExit(f"--converge: unknown system {name!r}; choose linear2d, stg")
        r = converge(preset, device)
        first = (f"first converged epoch {r['first_converged_epoch']} after {r['s_to_first_converged']:.1f} s"
                 if r["first_converged_epoch"] else "no epoch converged")
        kept = (f"kept epoch {r['kept_epoch']} (H = {r['kept_entropy']:.3f} nats)" if r["kept_epoch"] else "")
        print(f"   {r['preset']}: {r['system']}, n = {r['n']}, {r['epochs']} AL epochs x {r['iters_per_epoch']} "
              f"iterations: pre-training {r['init_s']:.1f} s, total {r['total_s']:.1f} s "
              f"({r['ms_per_iter']:.2f} ms/it incl. epoch ends); {first}; {kept}")
        print(f"      entropy per epoch: {r['entropies']}")


if __name__ == "__main__":
    main()
