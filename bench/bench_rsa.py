"""Benchmark of the correlation-distance RDM at the scale of the mouse V1 recordings.

    pipenv run python bench/bench_rsa.py [--stimuli 4000] [--neurons 20000] [--device cpu|cuda]
                                         [--threads 2] [--chunk 8192] [--repeats 3]
                                         [--skip numpy64 rsatoolbox]

Implementations of the same ``(S, S)`` RDM (1 - Pearson correlation of population vectors)
of ``S`` stimuli x ``N`` neurons (float32 responses, as the V1 file stores them):

* ``toolkit``: :func:`rsa.rdm.rdm` -- float64 per-stimulus statistics, then a float32 Gram
  matrix of centred, normalised rows accumulated over blocks of ``chunk`` neurons on the
  device (upper triangle only; ``S x S + S x chunk`` numbers live at a time);
* ``ssyrk`` (**the baseline**): plain NumPy/SciPy in float32 -- centre and normalise each
  row, then one BLAS symmetric rank-k update on the upper triangle
  (``scipy.linalg.blas.ssyrk``, half the multiply-adds of ``X @ X.T``), mirrored;
* ``numpy64``: the same in float64 with one ``X @ X.T`` (what most user code does);
* ``rsatoolbox``: ``rsatoolbox.rdm.calc_rdm(Dataset(R), method="correlation")``.

Every measurement runs in a fresh child process that first builds the same random
responses from a seed, so the peak resident memory it adds on top of the data (peak RSS,
reset after the data is built, minus RSS before) is its own. Repetitions are interleaved
(A, B, C, A, B, C, ... with the order rotated each round), so a slow phase of a shared
machine hits every method alike; the script prints each method's median time with its
min-max spread, the median and spread of the per-round ratios against the baseline, the
BLAS threads each child actually used, and the largest absolute difference between RDMs.
Figures are printed, never asserted.

``--threads`` sets ``OMP_NUM_THREADS``, ``OPENBLAS_NUM_THREADS`` and ``MKL_NUM_THREADS``
before NumPy is imported (here and so in every child) and ``torch.set_num_threads``.
"""
from __future__ import annotations

import os
import sys


def _threads_from_argv(argv) -> str | None:
    for k, a in enumerate(argv):
        if a == "--threads" and k + 1 < len(argv):
            return argv[k + 1]
        if a.startswith("--threads="):
            return a.split("=", 1)[1]
    return None


THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def _set_thread_env(n) -> None:
    for var in THREAD_VARS:
        os.environ[var] = str(n)


# before NumPy is imported: BLAS reads these once, when it is loaded
if __name__ == "__main__":
    _set_thread_env(_threads_from_argv(sys.argv[1:]) or 2)

import argparse  # noqa: E402
import multiprocessing as mp  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

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

    device = torch.device(args.device)
    if device.type == "cuda":
        torch.cuda.synchronize()
    m = rdm(resp, "correlation", chunk=args.chunk, device=device)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return m.cpu().numpy()


def _ssyrk(resp: np.ndarray, args) -> np.ndarray:
    from scipy.linalg.blas import ssyrk

    x = resp - resp.mean(1, keepdims=True, dtype=np.float64).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    # x is C-ordered (S, N), so x.T is Fortran-ordered (N, S): trans=1 gives x x^T; the
    # Fortran view of the C-ordered result is its transpose, so lower=1 fills its upper half
    g = np.zeros((x.shape[0], x.shape[0]), np.float32)
    ssyrk(1.0, x.T, beta=0.0, c=g.T, trans=1, lower=1, overwrite_c=1)
    g = np.triu(g)
    g += np.triu(g, 1).T
    return 1.0 - g


def _numpy64(resp: np.ndarray, args) -> np.ndarray:
    x = resp.astype(np.float64)
    x -= x.mean(1, keepdims=True)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return 1.0 - x @ x.T


def _rsatoolbox(resp: np.ndarray, args) -> np.ndarray:
    from rsatoolbox.data import Dataset
    from rsatoolbox.rdm import calc_rdm

    rdms = calc_rdm(Dataset(resp), method="correlation")
    return rdms.get_matrices()[0]


METHODS = {"toolkit": _toolkit, "ssyrk": _ssyrk, "numpy64": _numpy64, "rsatoolbox": _rsatoolbox}
BASELINE = "ssyrk"


def _blas_threads() -> str:
    """What the loaded BLAS/OpenMP libraries use, as threadpoolctl reports it."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "unknown (no threadpoolctl)"
    seen = {}
    for info in threadpool_info():
        seen.setdefault(info.get("internal_api", info.get("user_api")), info["num_threads"])
    return ", ".join(f"{k} {v}" for k, v in sorted(seen.items()))


def _child(name: str, args, queue) -> None:
    if name == "toolkit":
        import torch

        import rsa.rdm  # noqa: F401  (imports are not part of the timing)

        torch.set_num_threads(args.threads)
    elif name == "rsatoolbox":
        import rsatoolbox.rdm  # noqa: F401
    elif name == "ssyrk":
        import scipy.linalg.blas  # noqa: F401
    resp = _responses(args.stimuli, args.neurons, args.seed)
    _reset_peak()
    before = _status_mib("VmRSS")
    t0 = time.perf_counter()
    out = METHODS[name](resp, args)
    seconds = time.perf_counter() - t0
    peak = _status_mib("VmHWM")
    sample = np.asarray(out[:: max(1, args.stimuli // 500), :], dtype=np.float64)
    blas = _blas_threads()
    if name == "toolkit":
        blas += f", torch {torch.get_num_threads()}"
    queue.put((seconds, max(0.0, peak - before), sample, blas))


def _run(ctx, name, args):
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(name, args, queue))
    proc.start()
    res = queue.get()
    proc.join()
    return res


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--stimuli", type=int, default=4000)
    p.add_argument("--neurons", type=int, default=20000)
    p.add_argument("--chunk", type=int, default=8192, help="neurons per block (toolkit)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3, help="interleaved rounds (each method once per round)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--skip", nargs="*", default=[], choices=list(METHODS), help="methods to leave out")
    args = p.parse_args(argv)
    if args.device != "cpu" and "toolkit" in args.skip:
        p.error("--device only affects the toolkit method")
    _set_thread_env(args.threads)  # inherited by every child process (spawned below)

    names = [n for n in METHODS if n not in args.skip]
    data_mib = args.stimuli * args.neurons * 4 / 2 ** 20
    print(f"RDM (correlation) of {args.stimuli} stimuli x {args.neurons} neurons "
          f"(responses {data_mib:.0f} MiB float32), {args.threads} CPU threads, toolkit on {args.device}, "
          f"chunk {args.chunk}, {args.repeats} interleaved rounds")
    ctx = mp.get_context("spawn")
    times = {n: [] for n in names}
    memory, samples, threads = {}, {}, {}
    for r in range(args.repeats):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            seconds, mib, sample, blas = _run(ctx, name, args)
            times[name].append(seconds)
            memory[name] = max(memory.get(name, 0.0), mib)
            samples[name], threads[name] = sample, blas
            print(f"  round {r + 1} {name:10s} {seconds:8.2f} s   peak memory added {mib:8.0f} MiB", flush=True)
    print(f"{'method':10s} {'median':>8s} {'min-max':>15s} {'peak MiB':>9s}   BLAS threads")
    for name in names:
        t = np.array(times[name])
        print(f"{name:10s} {np.median(t):7.2f}s {t.min():6.2f}-{t.max():6.2f} s {memory[name]:9.0f}   {threads[name]}")
    if "toolkit" in names:
        tk = np.array(times["toolkit"])
        for name in names:
            if name == "toolkit":
                continue
            ratio = np.array(times[name]) / tk  # per round: > 1 means the toolkit is faster
            diff = float(np.abs(samples[name] - samples["toolkit"]).max())
            tag = " (baseline)" if name == BASELINE else ""
            print(f"{name}{tag} time / toolkit time: median {np.median(ratio):.2f}x "
                  f"(rounds {ratio.min():.2f}-{ratio.max():.2f}x), max |RDM difference| {diff:.1e}")


if __name__ == "__main__":
    main()
