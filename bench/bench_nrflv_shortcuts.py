"""Two shortcuts to a shorter NRFLV training, measured on a small model: fewer negative sampler
steps per update (the replay buffer carries the chains on), and larger sampler steps.

    python bench/bench_nrflv_shortcuts.py                    # nrflv_quick, 60 updates, K- = 40 and 10
    python bench/bench_nrflv_shortcuts.py --updates 20 --neg_steps 40 10 --etas 0.1 0.2 --threads 1

Part 1 trains the preset's model from the same seed once per ``--neg_steps`` K- (the positive
phase keeps the preset's length), in this process through the suite's own update (the
learning-rate decay left out), the models' updates interleaved (update u of every K-, the order
reversed every other update, so a busy machine slows them alike); it prints the seconds per
update (median over the second half), the speed-up as the median of per-update ratios, and, at
the end, two measures of how far the negative chains are from the sampler's
stationary regime for that model:

* ``buffer drift``: ``--chains`` chains taken from the replay buffer, run ``--drift_steps``
  further steps; the change of their mean energy, in units of the per-chain energy spread (0:
  the buffer's states are already where the sampler goes; large: the negative phase stopped
  far from it);
* ``gap``: the last updates' mean ``E+ - E-`` (the maximum-likelihood loss term).

Part 2 samples the model trained with the first K- from U[-1, 1] with each ``--etas`` step
size for the same simulated time (``steps = --time_steps x 0.1 / eta``), and compares the
chains' mean energy, energy spread and image-pixel spread with a long reference run at eta =
0.1 (``--ref_steps``), the differences in units of the reference's per-chain energy spread.
Note that the thesis sampler's noise is clamped (``sigma^2`` in ``[min_sq_sigma,
max_sq_sigma]``), so a larger eta scales the gradient kick by eta^2 at a fixed noise: it does
not sample the same law faster.

Figures are printed, never asserted; timings are single-process on this machine (state its load).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="nrflv_quick")
    p.add_argument("--updates", type=int, default=60)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--neg_steps", type=int, nargs="+", default=[40, 10])
    p.add_argument("--chains", type=int, default=32)
    p.add_argument("--drift_steps", type=int, default=200)
    p.add_argument("--etas", type=float, nargs="+", default=[0.1, 0.2, 0.3])
    p.add_argument("--time_steps", type=int, default=300, help="sampler steps at eta 0.1 (part 2)")
    p.add_argument("--ref_steps", type=int, default=1500, help="reference run at eta 0.1 (part 2)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    if min(a.updates, a.batch, a.chains, a.drift_steps, a.time_steps, a.ref_steps, *a.neg_steps) < 1:
        p.error("counts must be >= 1")
    if any(e <= 0 for e in a.etas):
        p.error("--etas must be positive")
    return a


def make_suite(a, **over):
    import torch

    from core.config import from_dict, load_preset
    from core.suite import RunContext
    from nrflv.suite import NRFLVSuite

    values = {k: v for k, v in load_preset(ROOT / "configs" / f"{a.preset}.yaml").items() if k != "model"}
    values.update(batch_size=a.batch, seed=a.seed, **over)
    return NRFLVSuite(RunContext(cfg=from_dict(NRFLVSuite.Config, values), device=torch.device("cpu")))


def trainers(a):
    """One suite, model and optimiser per K-, all from the same seed."""
    out = {}
    for k in a.neg_steps:
        suite = make_suite(a, num_it_neg=k)
        modules = suite.build()
        out[k] = dict(suite=suite, modules=modules, opt=suite.make_optimizer(modules, None), secs=[], gaps=[])
    return out


def update(a, t, u):
    """Update ``u`` of trainer ``t`` (its time and per-chain ``E+ - E-`` appended)."""
    import torch

    from core.suite import StepContext

    suite, modules, opt = t["suite"], t["modules"], t["opt"]
    step = StepContext(step=u, phase="train", phase_step=u, rank=0, world_size=1, device=torch.device("cpu"),
                       generator=torch.Generator().manual_seed(1000 * a.seed + u))
    t0 = time.perf_counter()
    opt.zero_grad()
    loss, metrics = suite.loss(modules, suite.training_batch(step), step)
    loss.backward()
    opt.step()
    t["secs"].append(time.perf_counter() - t0)
    t["gaps"].append(float(metrics["ml_loss"]) / a.batch)


def chain_energies(energy, states):
    import torch

    with torch.no_grad():
        return energy.sample_energies([s.contiguous() for s in states])


def drift(a, suite, modules):
    """Mean energy change of buffer chains over drift_steps more steps, in per-chain sd units."""
    import torch

    g = torch.Generator().manual_seed(7)
    states = suite.layout([s.clone() for s in suite.buffer.sample(a.chains, g)])
    energy = modules["energy"]
    e0 = chain_energies(energy, states)
    suite.sampler(states, g).run(suite.state_gradient(energy).grad, a.drift_steps)
    e1 = chain_energies(energy, states)
    return float((e1.mean() - e0.mean()) / e1.std()), float(e0.mean()), float(e1.mean())


def sample(a, suite, modules, eta, steps, seed):
    import torch

    from nrflv.energy import uniform_states

    g = torch.Generator().manual_seed(seed)
    states = suite.layout(uniform_states(suite.arch, a.chains, g))
    suite.cfg.sampling_step_size = eta
    t0 = time.perf_counter()
    suite.sampler(states, g).run(suite.state_gradient(modules["energy"]).grad, steps)
    secs = time.perf_counter() - t0
    suite.cfg.sampling_step_size = 0.1
    e = chain_energies(modules["energy"], states)
    return float(e.mean()), float(e.std()), float(states[0].std()), secs


def main(argv=None):
    a = parse(argv)
    import os

    os.environ.setdefault("OMP_NUM_THREADS", str(a.threads))
    import torch

    torch.set_num_threads(a.threads)
    print(f"{a.preset}, batch {a.batch}, {a.updates} updates, threads {a.threads}, torch {torch.__version__}, "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print("part 1: fewer negative steps per update (the replay buffer carries the chains on)")
    tr = trainers(a)
    order = list(tr)
    for u in range(a.updates):  # interleaved: update u of every K-, the order reversed every other update
        for k in (order if u % 2 == 0 else order[::-1]):
            update(a, tr[k], u)
    base = tr[order[0]]["secs"]
    for k, t in tr.items():
        suite, modules, secs, gaps = t["suite"], t["modules"], t["secs"], t["gaps"]
        half = slice(len(secs) // 2, None)
        ratios = [b / x for b, x in zip(base[half], secs[half])]
        d, e0, e1 = drift(a, suite, modules)
        tail = gaps[-max(1, len(gaps) // 5):]
        print(f"  K- = {k:4d} (K+ = {suite.cfg.num_it_pos}): {statistics.median(secs[half]):.3f} s per update "
              f"({min(secs[half]):.3f}-{max(secs[half]):.3f}), speed-up vs K- = {order[0]} "
              f"{statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f}); last-fifth mean (E+ - E-) "
              f"per chain {statistics.mean(tail):+.2f}; buffer drift over {a.drift_steps} steps {d:+.2f} sd "
              f"(mean E {e0:.1f} -> {e1:.1f})")
    trained = {k: (t["suite"], t["modules"]) for k, t in tr.items()}
    k0 = a.neg_steps[0]
    suite, modules = trained[k0]
    print(f"part 2: larger sampler steps, the model trained with K- = {k0}, {a.chains} chains from U[-1, 1]")
    ref_e, ref_sd, ref_px, _ = sample(a, suite, modules, 0.1, a.ref_steps, 11)
    print(f"  reference eta 0.1 x {a.ref_steps} steps: mean E {ref_e:.2f}, per-chain sd {ref_sd:.2f}, "
          f"image-pixel sd {ref_px:.3f}")
    for eta in a.etas:
        n = max(1, round(a.time_steps * 0.1 / eta))
        e, sd, px, secs = sample(a, suite, modules, eta, n, 12)
        print(f"  eta {eta:.2f} x {n:5d} steps ({secs:.1f} s): mean E {e:.2f} ({(e - ref_e) / ref_sd:+.2f} ref sd), "
              f"per-chain sd {sd:.2f}, image-pixel sd {px:.3f} (ref {ref_px:.3f})")


if __name__ == "__main__":
    main()
