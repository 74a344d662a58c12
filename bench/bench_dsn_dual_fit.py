"""How close can a flow get to the max-entropy solution when the multipliers are known?

The maximum-entropy distribution on a box is p*(z) = exp(eta*^T (T(z) - mu)) / Z with
log Z = H* (:mod:`dsn.maxent`, the Monte-Carlo dual). For any q,

    KL(q || p*) = -H(q) - eta*^T (E_q[T] - mu) + H*,

so fitting the flow by minimising E_q[log q - eta*^T (T - mu)] (the AL objective at
lambda = -eta*, c = 0) measures its *capacity*: the KL it is left with is what no
multiplier schedule can remove, and B = H(q) + eta*^T (E_q[T] - mu) is a lower bound on H*
that does not come from the dual's own (noisy) entropy estimate. A DSN that ends at
constraint satisfaction has entropy H*  - KL(q || p*); the fitted KL says how much of its gap
is the flow family's.

    python bench/bench_dsn_dual_fit.py --system lowrank_rnn --couplings 4 --hidden 32,32
    python bench/bench_dsn_dual_fit.py --system linear2d_epi --coupling spline --steps 20000

Prints H*, the dual's ESS, then per fit: H(q) and its s.e., the bound B, KL = H* - B,
the largest |E_q[T_j] - mu_j| in units of T_j's sd, and the wall time.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dsn.flow import DensityNetwork  # noqa: E402
from dsn.maxent import maxent_reference  # noqa: E402
from dsn.pretrain import adam, half_cosine, pretrain_isotropic  # noqa: E402
from dsn.systems import make_system  # noqa: E402


def fit(system, eta: torch.Tensor, args, seed: int) -> dict:
    torch.manual_seed(seed)
    flow = DensityNetwork(system.lower, system.upper, couplings=args.couplings, hidden=tuple(args.hidden),
                          sigma_init=args.sigma_init, coupling=args.coupling)
    centre = (system.lower + system.upper) / 2
    g = torch.Generator().manual_seed(seed)
    pretrain_isotropic(flow, centre, args.sigma_init, 300, args.n, 1e-3, g)
    opt = adam(flow.parameters(), args.lr)
    mu, eta_f = system.mu, eta.float()
    t0 = time.perf_counter()
    for k in range(args.steps):
        for group in opt.param_groups:
            group["lr"] = half_cosine(args.lr, 0.1, k / args.steps)  # falls to lr / 10
        z, log_q = flow.rsample_and_log_prob(args.n, g)
        loss = log_q.mean() - ((system.suff_stats(z) - mu) @ eta_f).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    wall = time.perf_counter() - t0
    flow.eval()
    with torch.no_grad():
        lqs, Ts = [], []
        for _ in range(20):
            z, lq = flow.rsample_and_log_prob(5000, g)
            lqs.append(lq.double())
            Ts.append(system.suff_stats(z).double())
        lq, T = torch.cat(lqs), torch.cat(Ts)
    H = float(-lq.mean())
    dev = T.mean(0) - mu.double()
    bound = H + float(eta @ dev)
    return {"H": H, "H_se": float(lq.std() / math.sqrt(lq.numel())), "bound": bound,
            "max_dev_sd": float((dev.abs() / T.std(0)).max()), "wall": wall}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--system", default="lowrank_rnn", choices=["linear2d", "linear2d_epi", "lowrank_rnn"])
    ap.add_argument("--coupling", default="affine", choices=["affine", "spline"])
    ap.add_argument("--couplings", type=int, default=4)
    ap.add_argument("--hidden", type=lambda s: [int(v) for v in s.split(",")], default=[32, 32])
    ap.add_argument("--sigma_init", type=float, default=None, help="default: 1/4 of the box width")
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--steps", type=int, default=10000)
    ap.add_argument("--seeds", type=lambda s: [int(v) for v in s.split(",")], default=[1])
    ap.add_argument("--maxent_samples", type=int, default=4_000_000)
    args = ap.parse_args()
    torch.set_num_threads(1)
    system = make_system(args.system)
    if args.sigma_init is None:
        args.sigma_init = float((system.upper - system.lower).min()) / 4
    ref = maxent_reference(system, args.maxent_samples, seed=0)
    print(f"{args.system}: dual H* = {ref['entropy']:.3f} nats from {args.maxent_samples:.0e} draws "
          f"(ESS {ref['ess']:.0f}); flow {args.coupling} x {args.couplings}, hidden {args.hidden}, "
          f"n {args.n}, {args.steps} steps")
    for seed in args.seeds:
        r = fit(system, ref["eta"], args, seed)
        print(f"  seed {seed}: H(q) = {r['H']:.3f} ± {r['H_se']:.3f}, bound B = {r['bound']:.3f}, "
              f"KL(q||p*) = H* - B = {ref['entropy'] - r['bound']:.3f} nats, max |E_q[T] - mu| = "
              f"{r['max_dev_sd']:.3f} sd, {r['wall']:.0f} s", flush=True)


if __name__ == "__main__":
    main()
