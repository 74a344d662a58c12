"""Benchmark of the correlation-distance RDM at the scale of the mouse V1 recordings.

    pipenv run python bench/bench_rsa.py [--stimuli 4000] [--neurons 20000] [--device cpu|cuda]
                                         [--threads 2] [--chunk 8192] [--skip rsatoolbox]

Three implementations compute the same ``(S, S)`` RDM (1 - Pearson correlation of population
vectors) of ``S`` stimuli x ``N`` neurons (float32 responses, as the V1 file stores them):

* ``toolkit``: :func:`rsa.rdm.rdm` -- a Gram matrix accumulated over blocks of ``chunk``
  neurons on the device (only ``S x S + S x chunk`` numbers live at a time);
* ``numpy``: a plain NumPy version (centre, normalise, one BLAS product), float64 like most
  user code;
* ``rsatoolbox``: ``rsatoolbox.rdm.calc_rdm(Dataset(R), method="correlation")``.

Each runs in its own child process that first builds the same random responses from a seed,
so the peak resident memory it adds on top of the data (peak RSS, reset after the data is
built, minus RSS before)
is its own. The script prints wall time, added peak memory, the speed-up of the toolkit over
each baseline measured in the same run, and the largest absolute difference between RDMs.
Figures are printed, never asserted.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _status_mib(field: str) -> float:
    """``VmRSS`` (now) or ``VmHWM`` (peak since the last reset) of this process, MiB."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def _reset_peak() -> None:
    """Reset the peak-RSS counter (Linux >= 4.0), so the data's construction does not count."""
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")


def _responses(n_stim: int, n_neur: int, seed: int) -> np.ndarray:
    """Heterogeneous, correlated responses ``(S, N)`` float32: a low-rank signal plus noise."""
    rng = np.random.default_rng(seed)
    latent = rng.standard_normal((n_stim, 16), dtype=np.float32)
    loading = rng.standard_normal((16, n_neur), dtype=np.float32)
    out = latent @ loading
    out += 4.0 * rng.standard_normal((n_stim, n_neur), dtype=np.float32)
    return out


def _toolkit(resp: np.ndarray, args) -> np.ndarray:
    import torch

    from rsa.rdm import rdm

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.cuda.synchronize()
    m = rdm(resp, "correlation", chunk=args.chunk, device=device)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return m.cpu().numpy()


def _numpy(resp: np.ndarray, args) -> np.ndarray:
    x = resp.astype(np.float64)
    x -= x.mean(1, keepdims=True)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return 1.0 - x @ x.T


def _rsatoolbox(resp: np.ndarray, args) -> np.ndarray:
    from rsatoolbox.data import Dataset
    from rsatoolbox.rdm import calc_rdm

    rdms = calc_rdm(Dataset(resp), method="correlation")
    return rdms.get_matrices()[0]


METHODS = {"toolkit": _toolkit, "numpy": _numpy, "rsatoolbox": _rsatoolbox}


def _child(name: str, args, queue) -> None:
    import os

    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    if name == "toolkit":
        import torch  # noqa: F401  (imports are not part of the timing)

        import rsa.rdm  # noqa: F401
    elif name == "rsatoolbox":
        import rsatoolbox.rdm  # noqa: F401
    resp = _responses(args.stimuli, args.neurons, args.seed)
    _reset_peak()
    before = _status_mib("VmRSS")
    t0 = time.perf_counter()
    out = METHODS[name](resp, args)
    seconds = time.perf_counter() - t0
    peak = _status_mib("VmHWM")
    sample = np.asarray(out[:: max(1, args.stimuli // 500), :], dtype=np.float64)
    queue.put((name, seconds, max(0.0, peak - before), sample))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--stimuli", type=int, default=4000)
    p.add_argument("--neurons", type=int, default=20000)
    p.add_argument("--chunk", type=int, default=8192, help="neurons per block (toolkit)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--skip", nargs="*", default=[], choices=list(METHODS), help="methods to leave out")
    args = p.parse_args(argv)
    if args.device != "cpu" and "toolkit" in args.skip:
        p.error("--device only affects the toolkit method")

    data_mib = args.stimuli * args.neurons * 4 / 2 ** 20
    print(f"RDM (correlation) of {args.stimuli} stimuli x {args.neurons} neurons "
          f"(responses {data_mib:.0f} MiB float32), {args.threads} CPU threads, toolkit on {args.device}, "
          f"chunk {args.chunk}")
    ctx = mp.get_context("spawn")
    results = {}
    for name in METHODS:
        if name in args.skip:
            continue
        queue = ctx.Queue()
        proc = ctx.Process(target=_child, args=(name, args, queue))
        proc.start()
        res = queue.get()
        proc.join()
        results[name] = res[1:]
        print(f"  {name:10s} {res[1]:8.2f} s   peak memory added {res[2]:8.0f} MiB", flush=True)
    if "toolkit" in results:
        t_tk, _, s_tk = results["toolkit"]
        for name, (sec, _, sample) in results.items():
            if name == "toolkit":
                continue
            diff = float(np.abs(sample - s_tk).max())
            print(f"toolkit vs {name}: {sec / t_tk:.1f}x faster, max |difference| {diff:.1e}")


if __name__ == "__main__":
    main()
