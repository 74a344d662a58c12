"""Benchmark of the superior-colliculus system: simulator speed and EPI's sampling-speed claim.

    pipenv run python bench/bench_dsn_sc.py [--run RUN_DIR] [--device cpu|cuda] [--threads 1]
                                            [--rounds 5] [--reject_seconds 120] [--flow_samples 100000]

1. **suff_stats** at n = 100 samples x 200 trials (x 2 tasks x 74 Euler steps): ms per call,
   forward only (no graph) and forward + backward (what one training iteration pays), the
   median and range over interleaved rounds.
2. **Sampling speed** (EPI, Methods "Sample grouping by mode": the learned distribution gave
   parameters ~21,500x faster than brute force):

   * *rejection*: z ~ U[-5, 5]^4, simulated with the same simulator (1000 draws per batch,
     no graph) for ``--reject_seconds``; accepted when both accuracies lie within the
     target's tolerance mu +- 2 sd = 0.75 +- 0.15, i.e. [0.6, 0.9] (EPI's brute-force
     window). Reports the acceptance rate and accepted samples per second;
   * *flow*: draws from the kept flow of a trained run (``--run``; without it the quick
     preset is trained first, into a temporary folder), samples per second without
     simulation (what EPI timed), and the share of flow draws inside the same window
     (simulated on 2000 draws) with the "verified" rate = that share x the rate of
     sampling-and-simulating;
   * the ratios flow / rejection (and verified flow / rejection).

Figures are printed, never asserted.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from interleave import interleaved, sync  # noqa: E402
from core.config import from_dict  # noqa: E402
from dsn.config import DSNConfig  # noqa: E402
from dsn.flow import DensityNetwork  # noqa: E402
from dsn.suite import build_flow, build_system  # noqa: E402
from dsn.systems.sc import SCCircuit  # noqa: E402

WINDOW = (0.6, 0.9)


def spread(xs: list, fmt: str = "8.1f") -> str:
    return f"{statistics.median(xs):{fmt}} ({min(xs):.4g}-{max(xs):.4g})"


def suff_stats_ms(system: SCCircuit, n: int, device, rounds: int) -> dict[str, list[float]]:
    """ms per suff_stats call on n uniform draws: forward only, forward + backward."""
    g = torch.Generator().manual_seed(0)
    z = (torch.rand(n, system.D, generator=g) * 10 - 5).to(device)
    zg = z.clone().requires_grad_()

    def forward():
        with torch.no_grad():
            system.suff_stats(z)

    def backward():
        system.suff_stats(zg).sum().backward()

    threads = torch.get_num_threads()
    times = interleaved({"forward": (forward, threads), "forward+backward": (backward, threads)}, device,
                        rounds, block=3)
    return {k: [t * 1e3 for t in v] for k, v in times.items()}


def in_window(p: torch.Tensor) -> torch.Tensor:
    return ((p >= WINDOW[0]) & (p <= WINDOW[1])).all(-1)


def rejection(system: SCCircuit, device, seconds: float, batch: int = 1000) -> dict[str, float]:
    """Uniform draws simulated for ``seconds``: draws, accepted, acceptance rate, accepted/s."""
    g = torch.Generator().manual_seed(1)
    drawn = accepted = 0
    sync(device)
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        z = (torch.rand(batch, system.D, generator=g) * 10 - 5).to(device)
        with torch.no_grad():
            accepted += int(in_window(system.accuracies(z)).sum())
        drawn += batch
    sync(device)
    elapsed = time.perf_counter() - t0
    return {"draws": drawn, "accepted": accepted, "seconds": elapsed, "rate": accepted / drawn,
            "per_second": accepted / elapsed}


def load_kept_flow(run: Path, device) -> DensityNetwork:
    """The max-entropy converged flow of a DSN run (the last one if none converged)."""
    values = yaml.safe_load((run / "config.yaml").read_text())
    values.pop("model", None)
    cfg = from_dict(DSNConfig, values, source=str(run / "config.yaml"))
    if cfg.system != "sc" or cfg.sc_form != "reduced":
        raise SystemExit(f"--run {run}: a run of the reduced SC circuit is needed (system sc, sc_form reduced); "
                         f"this one has system {cfg.system}, sc_form {cfg.sc_form}")
    flow = build_flow(cfg, build_system(cfg))
    ckpt = torch.load(run / "checkpoints" / "last.pt", weights_only=True, map_location="cpu")
    best = ckpt["suite_state"].get("best_flow") or ckpt["modules"]["flow"]
    flow.load_state_dict(best)
    print(f"flow: {run} ({'max-entropy converged epoch' if ckpt['suite_state'].get('best_flow') else 'last flow'})")
    return flow.to(device).eval()


def train_quick(out: Path) -> Path:
    import main
    rc = main.main(["--config", "configs/dsn_sc_quick.yaml", "--out_dir", str(out), "--run_name", "quick",
                    "--init_cache", "off"])
    if rc != 0:
        raise SystemExit(f"training the quick preset failed (exit status {rc})")
    return out / "quick"


def flow_rates(flow: DensityNetwork, system: SCCircuit, device, samples: int, check: int = 2000) -> dict[str, float]:
    """Flow samples per second (no simulation), the in-window share of ``check`` draws and
    the rate of sampling-and-simulating."""
    g = torch.Generator(device=device).manual_seed(2)
    with torch.no_grad():
        flow.rsample_and_log_prob(1000, g)  # warm-up
        sync(device)
        t0 = time.perf_counter()
        for start in range(0, samples, 10_000):
            flow.rsample_and_log_prob(min(10_000, samples - start), g)
        sync(device)
        sample_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        z, _ = flow.rsample_and_log_prob(check, g)
        ok = torch.cat([in_window(system.accuracies(z[i:i + 1000])) for i in range(0, check, 1000)])
        sync(device)
        check_s = time.perf_counter() - t0
    share = float(ok.double().mean())
    return {"per_second": samples / sample_s, "share": share, "verified_per_second": share * check / check_s}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", type=Path, default=None, help="a trained sc run (default: train the quick preset)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--reject_seconds", type=float, default=120.0)
    ap.add_argument("--flow_samples", type=int, default=100_000)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    system = SCCircuit()
    print(f"device {device}, {args.threads} thread(s), torch {torch.__version__}")

    ms = suff_stats_ms(system, 100, device, args.rounds)
    for k, v in ms.items():
        print(f"suff_stats n=100 x 200 trials, {k:17s}: {spread(v)} ms")

    rej = rejection(system, device, args.reject_seconds)
    print(f"rejection from U[-5,5]^4: {rej['accepted']} of {rej['draws']} draws in [0.6, 0.9]^2 "
          f"(acceptance {rej['rate']:.2e}), {rej['per_second']:.3g} accepted/s over {rej['seconds']:.0f} s")

    with tempfile.TemporaryDirectory() as tmp:
        run = args.run or train_quick(Path(tmp))
        flow = load_kept_flow(run, device)
        fl = flow_rates(flow, system, device, args.flow_samples)
    print(f"flow: {fl['per_second']:.3g} samples/s (no simulation); {100 * fl['share']:.1f}% of its draws in "
          f"[0.6, 0.9]^2; sampled and verified by simulation: {fl['verified_per_second']:.3g} accepted/s")
    if rej["accepted"]:
        print(f"speed-up flow / rejection: x{fl['per_second'] / rej['per_second']:.3g} "
              f"(verified: x{fl['verified_per_second'] / rej['per_second']:.3g}); EPI reported ~21,500x")
    else:
        print("no draw accepted by rejection in the time given: raise --reject_seconds")


if __name__ == "__main__":
    main()
