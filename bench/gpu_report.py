"""One command that turns a GPU into the toolkit's figures: every family's main workload, its
variants with their numerical difference from float32, achieved FLOP/s against the device's
peak, and the projected wall time of the full-scale presets, with the arithmetic shown.

    python bench/gpu_report.py --device cuda --out gpu_report      # one GPU, about 5-8 minutes
    python bench/gpu_report.py --device cpu --tiny --out /tmp/r    # tiny sizes, seconds (the test)
    python bench/gpu_report.py --device cpu --smoke --no_compile   # full-size models at batch 2: checks the
                                                                   # full-size code paths; times mean nothing
    python bench/gpu_report.py --device cuda --no_compile          # without the torch.compile variants

Written to ``--out``: ``report.csv`` (one row per workload and variant), ``report.md`` (the
tables, the projections with their arithmetic) and the same text on stdout. On CUDA every timed
row also carries ``working_gib``: the memory its first call allocated beyond what was allocated
before it (activations, gradients, workspaces), from ``torch.cuda.max_memory_allocated``. A
workload that runs out of GPU memory is reported as such and left out of the projections, which
then say which phase is missing instead of stating a total.

Workloads (``--tiny``: the quick presets' sizes, batch 2):

* **nrflv** -- one SGHMC sampler step (energy gradient + update) of ``configs/nrflv_thesis.yaml``'s
  architecture at batch 128, positive phase (image fixed) and negative phase, from the states
  of ``bench/bench_nrflv.py``; variants ``fp32`` (contiguous), ``channels_last``, ``bf16``
  (``precision: bf16``), ``channels_last+bf16``, ``compile`` (``compile: on``), ``cuda_graphs``
  (``compile: cuda_graphs``; CUDA only) and ``cuda_graph_step`` (the whole step -- gradient and
  update -- captured in one CUDA graph, ``bench_nrflv``'s variant; timing only, not an option).
  Each variant's difference from fp32: the gradient at the start (relative, worst layer), and
  after ``check`` steps from the same state with the same noise the largest state difference
  and the largest per-chain energy difference (relative). *Correct* means within the stated
  tolerances (:data:`NRFLV_TOL`). Then one full parameter update (both phases, the energies,
  Adam) with a shortened sampler at two lengths K1 < K2: ``t(K) = overhead + K (t+ + t-)`` gives
  the update's overhead. Also: the step's floors (compute at the peak, bytes moved at the
  memory bandwidth, aten operations x 5 us of launch), the step of the fastest correct option
  at batch 128 / N (the per-rank share of the chains on N = 2, 4, 8 GPUs) and at ``record_batch``
  (the recordings).
* **cordsnet** -- R8 at 224 px (``configs/cordsnet_imagenet.yaml``): one forward time step at
  batch 64 (no gradient) and one finetune training step at the published per-GPU batch 2
  (blank 100 + image 100 + blank 100 steps, loss, backward, AdamW); variants ``fp32``,
  ``channels_last``, ``bf16`` (``precision: bf16``) and ``compile`` (``torch.compile`` of the
  time step); difference from fp32: the rates after ``check`` steps, the loss and the gradients.
  Then every phase's training step at its batch (256, 64, 8, 2, 2) for the pipeline projection.
* **snn_dales** (``bench_snn_dales``'s training batch: ``fused`` vs ``compiled``), **dsn** (an STG
  AL iteration, n = 200, ``bench_dsn``'s stepper: the adjoint vs the adjoint compiled) and **rsa**
  (``bench_rsa``'s correlation RDM, 4,000 x 20,000: chunk sizes, and TF32 matmuls on CUDA): fp32
  and the fastest correct variant.

Timings: ``interleave.interleaved`` (every variant of a workload in the same rounds, order
reversed every other round; warm-up and compiling untimed); the median over rounds with the
min-max spread, speed-ups as the median of per-round ratios. Figures are printed, never asserted.

FLOPs are counted from the convolutions' and dense layers' shapes (:mod:`core.flops`): the
sampler step as the energy's forward plus its input-gradient pass, the CordsNet time step as its
forward; elementwise work is not counted. Peaks (dense, no sparsity) from NVIDIA's data sheets
for the GPUs in :data:`PEAKS`; any other device: not stated. float32 convolutions run on TF32
tensor cores under PyTorch's default ``torch.backends.cudnn.allow_tf32 = True``, so fp32 variants
are set against the TF32 peak and bf16 against the BF16 peak.
"""
from __future__ import annotations

import argparse
import copy
import csv
import math
import statistics
import sys
import time
from argparse import Namespace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import torch  # noqa: E402

from core.flops import ConvFlopCounter  # noqa: E402
from interleave import human_time, interleaved, sync  # noqa: E402

#: device-name pattern -> (label, FP32, TF32, BF16 peak TFLOP/s dense, memory TB/s); first match wins
PEAKS = [
    ("NVL", None),  # H100 / H200 NVL boards: not in this table
    ("H200", ("H200 SXM", 67.0, 494.7, 989.4, 4.8)),
    ("H100 PCIe", ("H100 PCIe", 51.2, 378.0, 756.0, 2.0)),
    ("H100", ("H100 SXM", 67.0, 494.7, 989.4, 3.35)),
    ("A100-SXM4-80GB", ("A100 SXM 80 GB", 19.5, 156.0, 312.0, 2.039)),
    ("A100 80GB PCIe", ("A100 PCIe 80 GB", 19.5, 156.0, 312.0, 1.935)),
    ("A100", ("A100 40 GB", 19.5, 156.0, 312.0, 1.555)),
]

#: a variant of the sampler step is *correct* when, against fp32: the gradient's relative
#: difference (worst layer) <= grad, and after the check steps the largest state difference
#: <= state (states live in [-1, 1]) and every chain's energy within energy (relative)
NRFLV_TOL = dict(grad=2e-2, state=5e-2, energy=1e-2)
#: CordsNet: loss and gradients (relative) and the rates after the check steps (relative to max |r|)
CORDS_TOL = dict(loss=2e-2, grad=5e-2, rates=2e-2)
#: option keys of each NRFLV variant (cuda_graph_step is not an option)
NRFLV_OPTIONS = {"fp32": {}, "channels_last": {"channels_last": True}, "bf16": {"precision": "bf16"},
                 "channels_last+bf16": {"channels_last": True, "precision": "bf16"},
                 "compile": {"compile": "on"}, "cuda_graphs": {"compile": "cuda_graphs"}}
CORDS_OPTIONS = {"fp32": {}, "channels_last": {}, "bf16": {"precision": "bf16"}, "compile": {}}

FIELDS = ["family", "workload", "variant", "ms_median", "ms_min", "ms_max", "speedup_vs_fp32", "difference",
          "correct", "gflop", "achieved_tflops", "peak_tflops", "percent_of_peak", "working_gib", "note"]


class Times(list):
    """Seconds per call, one value per round, and the memory the first call needed (CUDA only)."""
    working_bytes: int | None = None


def failure(exc: BaseException) -> str:
    """One line for a variant that failed; out-of-memory said as such (and the cache emptied)."""
    if isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc).lower():
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
            total = torch.cuda.get_device_properties(torch.cuda.current_device()).total_memory
            return f"failed: out of memory on this GPU ({total / 2**30:.0f} GiB)"
        return "failed: out of memory"
    return f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:150] if str(exc) else ''}"


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--tiny", action="store_true", help="tiny sizes (seconds on a CPU): the test's run")
    size.add_argument("--smoke", action="store_true",
                      help="the full-size models (NRFLV thesis architecture, CordsNet R8 at 224 px with the ImageNet "
                           "preset) at batch 2 with short courses and few steps: runs every full-size code path on a "
                           "CPU in minutes; its times and projections mean nothing")
    p.add_argument("--out", default="gpu_report", help="folder for report.csv and report.md")
    p.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 3; --tiny 2)")
    p.add_argument("--steps", type=int, default=None, help="sampler steps per timed block (default 10; --tiny 1)")
    p.add_argument("--no_compile", action="store_true", help="skip the torch.compile variants")
    p.add_argument("--budget_min", type=float, default=8.0,
                   help="start no new family after this many minutes (0: no limit); the families left out are "
                        "listed as skipped with the command that measures them")
    p.add_argument("--families", nargs="+", default=["nrflv", "cordsnet", "snn_dales", "dsn", "rsa"],
                   choices=["nrflv", "cordsnet", "snn_dales", "dsn", "rsa"])
    a = p.parse_args(argv)
    a.rounds = a.rounds or (1 if a.smoke else 2 if a.tiny else 3)
    a.steps = a.steps or (1 if a.tiny or a.smoke else 10)
    if a.rounds < 1 or a.steps < 1:
        p.error("--rounds and --steps must be >= 1")
    return a


#: test-set sizes of the real data sets (ImageNet: the ILSVRC2012 validation set)
TEST_SET_SIZES = {"imagenet": 50_000, "cifar10": 10_000, "cifar100": 10_000, "mnist": 10_000, "fashion_mnist": 10_000}


def nbytes(n: float) -> str:
    """A memory size for people: GiB from 1 GiB, MiB below."""
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def human(s: float) -> str:
    return human_time(s, second_digits=2)


def device_peaks(dev: torch.device):
    """``(label, fp32, tf32, bf16 TFLOP/s, TB/s)`` of this device, or None (not stated)."""
    if dev.type != "cuda":
        return None
    name = torch.cuda.get_device_name(dev)
    for pattern, peaks in PEAKS:
        if pattern in name:
            return peaks
    return None


class Report:
    def __init__(self, args):
        self.args = args
        self.dev = torch.device(args.device)
        if self.dev.type == "cuda" and not torch.cuda.is_available():
            raise SystemExit("--device cuda: CUDA is not available on this machine")
        self.rows: list[dict] = []
        self.failed: dict = {}
        self.lines: list[str] = []
        self.peaks = device_peaks(self.dev)
        self.t0 = time.perf_counter()

    # ------------------------------------------------------------------ output
    def say(self, text: str = "") -> None:
        print(text, flush=True)
        self.lines.append(text)

    def time(self, fns: dict, block: int = 1) -> dict:
        """Seconds per call of each ``name -> fn``, one value per interleaved round. A function that
        fails on its first (untimed) call is left out, its error kept in ``self.failed[name]``."""
        threads = torch.get_num_threads()
        cuda = self.dev.type == "cuda"
        ok, working = {}, {}
        for k, f in fns.items():
            try:
                if cuda:
                    sync(self.dev)
                    before = torch.cuda.memory_allocated(self.dev)
                    torch.cuda.reset_peak_memory_stats(self.dev)
                f()
                sync(self.dev)
                if cuda:
                    working[k] = torch.cuda.max_memory_allocated(self.dev) - before
                ok[k] = (f, threads)
            except Exception as exc:  # report it, time the others
                self.failed[k] = failure(exc)
        out = {}
        for k, v in interleaved(ok, self.dev, self.args.rounds, block, warmup=0).items():
            out[k] = Times(v)
            out[k].working_bytes = working.get(k)
        return out

    def add(self, family, workload, variant, times, base=None, difference="", correct=None, flops=None,
            bf16=False, note=""):
        row = dict.fromkeys(FIELDS, "")
        row.update(family=family, workload=workload, variant=variant, difference=difference, note=note,
                   correct="" if correct is None else ("yes" if correct else "no"))
        if getattr(times, "working_bytes", None) is not None:
            row["working_gib"] = f"{times.working_bytes / 2**30:.2f}"
        if times:
            med = statistics.median(times)
            row.update(ms_median=f"{med * 1e3:.3f}", ms_min=f"{min(times) * 1e3:.3f}", ms_max=f"{max(times) * 1e3:.3f}")
            if base:
                row["speedup_vs_fp32"] = f"{statistics.median(b / t for b, t in zip(base, times)):.2f}"
            if flops:
                achieved = flops / med / 1e12
                row.update(gflop=f"{flops / 1e9:.3f}", achieved_tflops=f"{achieved:.3f}")
                if self.peaks:
                    peak = self.peaks[3] if bf16 else self.peaks[2]
                    row.update(peak_tflops=f"{peak:g}", percent_of_peak=f"{100 * achieved / peak:.1f}")
                else:
                    row["peak_tflops"] = "not stated"
        self.rows.append(row)
        return row

    def table(self, rows) -> None:
        cols = ["family", "workload", "variant", "ms_median", "ms_min", "ms_max", "speedup_vs_fp32", "correct",
                "difference", "achieved_tflops", "percent_of_peak", "working_gib", "note"]
        self.say("| " + " | ".join(cols) + " |")
        self.say("|" + "---|" * len(cols))
        for r in rows:
            self.say("| " + " | ".join(str(r[c]).replace("|", "/") for c in cols) + " |")

    def write(self) -> None:
        out = Path(self.args.out)
        out.mkdir(parents=True, exist_ok=True)
        tmp = out / "report.csv.tmp"
        with open(tmp, "w", newline="") as fh:
            w = csv.DictWriter(fh, FIELDS)
            w.writeheader()
            w.writerows(self.rows)
        tmp.replace(out / "report.csv")
        tmp = out / "report.md.tmp"
        tmp.write_text("\n".join(self.lines) + "\n")
        tmp.replace(out / "report.md")

    def fastest_correct(self, rows):
        """The correct timed row with the smallest median (fp32 when nothing beats it)."""
        ok = [r for r in rows if r["ms_median"] and r["correct"] != "no"]
        return min(ok, key=lambda r: float(r["ms_median"])) if ok else None

    def skipped(self, family, workload, variant, why):
        self.add(family, workload, variant, None, note=f"skipped: {why}")

    # ------------------------------------------------------------------ run
    def run(self) -> None:
        a = self.args
        name = torch.cuda.get_device_name(self.dev) if self.dev.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
        peak = (f"peak {self.peaks[0]}: FP32 {self.peaks[1]:g}, TF32 {self.peaks[2]:g}, BF16 {self.peaks[3]:g} "
                f"TFLOP/s dense, {self.peaks[4]:g} TB/s") if self.peaks else "peak FLOP/s: not stated for this device"
        self.say(f"# GPU report{' (tiny sizes)' if a.tiny else ''}"
                 f"{' (smoke: full-size models at batch 2, short courses; times and projections mean nothing)' if a.smoke else ''}")
        self.say()
        self.say(f"device {self.dev} = {name}; {peak}; torch {torch.__version__}; rounds {a.rounds}")
        for i, fam in enumerate(a.families):
            t0 = time.perf_counter()
            spent = (t0 - self.t0) / 60
            if i and a.budget_min and spent >= a.budget_min:  # the first family always runs
                why = (f"time budget of {a.budget_min:g} min spent ({spent:.1f} min); measure it with "
                       f"--families {fam}")
                self.say(f"{fam}: skipped: {why}")
                self.add(fam, "(whole family)", "", None, note=f"skipped: {why}")
                continue
            try:
                getattr(self, fam)()
            except Exception as exc:  # one family's failure leaves the others' figures
                import traceback

                self.say(f"{fam}: FAILED ({type(exc).__name__}: {exc})")
                self.say("```\n" + traceback.format_exc()[-2000:] + "```")
                self.add(fam, "(whole family)", "", None, note=failure(exc))
            self.say(f"({fam}: {time.perf_counter() - t0:.0f} s)")
            self.write()  # what is measured so far survives a kill
        self.say()
        self.say(f"report done in {time.perf_counter() - self.t0:.0f} s")
        self.write()

    # ================================================================== nrflv
    def nrflv(self) -> None:
        from bench_nrflv import Bench, ToolkitPhase
        from core.config import load_preset
        from nrflv.energy import NRFEnergy
        from nrflv.gradient import StateGradient

        a, dev = self.args, self.dev
        arch_name = "nrflv_quick" if a.tiny else "nrflv_thesis"
        batch = 2 if a.tiny or a.smoke else 128
        check = 3 if a.tiny else 2 if a.smoke else 20
        bench = Bench(Namespace(arch=arch_name, batch=batch, device=str(dev), extras=True, no_compile=True), torch)
        bench.build()
        energy, arch = bench.energy, bench.arch
        cl = torch.channels_last
        energy_cl = NRFEnergy(arch).to(dev)
        energy_cl.load_state_dict(energy.state_dict())
        energy_cl = energy_cl.to(memory_format=cl).eval()
        self.say()
        self.say(f"## nrflv: one sampler step, {arch_name} ({' / '.join('x'.join(map(str, l)) for l in arch.layers)}), "
                 f"batch {batch}")

        grads = {"fp32": (energy, StateGradient(energy), None),
                 "channels_last": (energy_cl, StateGradient(energy_cl), cl),
                 "bf16": (energy, StateGradient(energy, "bf16"), None),
                 "channels_last+bf16": (energy_cl, StateGradient(energy_cl, "bf16"), cl)}
        skipped = {}
        if a.no_compile:
            skipped["compile"] = skipped["cuda_graphs"] = "--no_compile"
        else:
            grads["compile"] = (energy, StateGradient(energy, compile="on"), None)
            if dev.type == "cuda":
                grads["cuda_graphs"] = (energy, StateGradient(energy, compile="cuda_graphs"), None)
            else:
                skipped["cuda_graphs"] = "CUDA graphs need a CUDA device"
        if dev.type != "cuda":
            skipped["cuda_graph_step"] = "CUDA graphs need a CUDA device"

        def phase_of(name, phase, start, seed):
            e, sg, fmt = grads[name]
            pos = phase == "positive"
            wrt = [i for i in range(arch.n_layers) if not (pos and i == 0)]
            return ToolkitPhase(torch, e, start, pos, bench.gen(seed), grad_fn=lambda s: sg.grad(s, wrt=wrt),
                                cached=False, memory_format=fmt)

        # numerical differences from fp32 (the compiling happens here, untimed)
        diffs, ok = {}, {}
        for phase in ("positive", "negative"):
            start = bench.start[phase]
            ref = phase_of("fp32", phase, start, 5)
            g_ref = ref.grad_fn(ref.states)
            ref.block(check)
            e_ref = energy.sample_energies(ref.states).detach()
            for name in list(grads):
                if name == "fp32":
                    continue
                try:
                    t0 = time.perf_counter()
                    v = phase_of(name, phase, start, 5)
                    g = v.grad_fn(v.states)
                    t_first = time.perf_counter() - t0
                    v.block(check)
                except Exception as exc:  # report it, go on with the others
                    skipped[name] = failure(exc)
                    del grads[name]
                    continue
                dg = max(float((x.float() - y).norm() / y.norm()) for x, y in zip(g, g_ref) if y is not None)
                ds = max(float((x.float() - y).abs().max()) for x, y in zip(v.states, ref.states))
                de = float(((energy.sample_energies([s.contiguous() for s in v.states]).detach() - e_ref).abs()
                            / e_ref.abs()).max())
                good = dg <= NRFLV_TOL["grad"] and ds <= NRFLV_TOL["state"] and de <= NRFLV_TOL["energy"]
                diffs[phase, name] = f"grad {dg:.1e}; after {check} steps state {ds:.1e}, energy {de:.1e}"
                ok[name] = ok.get(name, True) and good  # correct in both phases
                if t_first > 5:
                    diffs[phase, name] += f"; first call {t_first:.0f} s (compiling)"
        # the timed variants, chains carrying on from the check states
        variants = {(ph, n): phase_of(n, ph, bench.start[ph], 11) for ph in ("positive", "negative") for n in grads}
        if dev.type == "cuda":
            try:
                graphed = bench.extras()["cuda_graph"]
                for ph in ("positive", "negative"):
                    variants[ph, "cuda_graph_step"] = graphed(ph, bench.start[ph], None)
            except Exception as exc:
                skipped["cuda_graph_step"] = failure(exc)
        times = self.time({k: (lambda v=v: v.block(1)) for k, v in variants.items()}, block=a.steps)

        flops = {}
        for phase in ("positive", "negative"):
            wrt = [i for i in range(arch.n_layers) if not (phase == "positive" and i == 0)]
            with ConvFlopCounter() as c:
                StateGradient(energy).grad(bench.start[phase], wrt=wrt)
            flops[phase] = c.forward + c.input_gradient
        self.say(f"conv/linear FLOPs per sampler step (forward + input gradient): positive "
                 f"{flops['positive'] / 1e9:.2f} GFLOP, negative {flops['negative'] / 1e9:.2f} GFLOP")
        self.nrflv_floors(energy, bench.start["negative"], flops["negative"], times.get(("negative", "fp32")))
        for key in variants:
            if key not in times:
                skipped[key[1]] = self.failed.get(key, "failed")
        rows = []
        for phase in ("positive", "negative"):
            base = times[phase, "fp32"]
            for name in [n for p, n in times if p == phase]:
                note = "timing only (replays the captured burn-in path; not an option)" \
                    if name == "cuda_graph_step" else ""
                rows.append(self.add("nrflv", f"sampler step {phase}", name, times[phase, name],
                                     None if name == "fp32" else base, diffs.get((phase, name), ""),
                                     ok.get(name) if name not in ("fp32", "cuda_graph_step") else None,
                                     flops[phase], bf16="bf16" in name, note=note))
            for name, why in skipped.items():
                rows.append(self.add("nrflv", f"sampler step {phase}", name, None, note=f"skipped: {why}"))
        self.table(rows)
        self.say(f"tolerances of 'correct' (vs fp32): gradient {NRFLV_TOL['grad']:g}, state "
                 f"{NRFLV_TOL['state']:g}, energy {NRFLV_TOL['energy']:g} (relative)")

        # the fastest correct option (both phases, 500 + 500 steps)
        pair = {n: [p + q for p, q in zip(times["positive", n], times["negative", n])]
                for n in grads if ("positive", n) in times and ("negative", n) in times}
        options = [n for n in pair if n in NRFLV_OPTIONS and (n == "fp32" or ok.get(n))]
        best = min(options, key=lambda n: statistics.median(pair[n]))
        self.say(f"fastest correct option for both phases: {best} {NRFLV_OPTIONS[best] or '(defaults off)'}")

        # one full update with a shortened sampler at two lengths
        preset = load_preset(ROOT / "configs" / f"{'nrflv_quick' if a.tiny else 'nrflv_thesis'}.yaml")
        k1, k2 = (2, 4) if a.tiny or a.smoke else (5, 15)
        # a compiled option changes only the sampler's gradient, not the update's own work
        # (initialiser, energies and their backward, Adam, replay buffer): its update is not
        # built again (two more suites to compile, minutes on a GPU host); it takes fp32's overhead
        measured = ["fp32"] + ([best] if best != "fp32" and "compile" not in NRFLV_OPTIONS[best] else [])
        upd = {}
        for name in measured:
            for k in (k1, k2):
                upd[name, k] = self.nrflv_update(preset, batch, k, NRFLV_OPTIONS[name])
        ut = self.time(upd)
        per_update = {}
        rows = []
        for name in measured:
            if (name, k1) not in ut or (name, k2) not in ut:
                self.skipped("nrflv", "update", name, self.failed.get((name, k1)) or self.failed.get((name, k2)))
                continue
            t1, t2 = statistics.median(ut[name, k1]), statistics.median(ut[name, k2])
            overhead = max(0.0, (k2 * t1 - k1 * t2) / (k2 - k1))
            pos, neg = statistics.median(times["positive", name]), statistics.median(times["negative", name])
            per_update[name] = (overhead, pos, neg)
            for k in (k1, k2):
                rows.append(self.add("nrflv", f"update, {k}+{k} sampler steps", name, ut[name, k],
                                     ut.get(("fp32", k)) if name != "fp32" else None))
            self.say(f"update ({name}): t({k1}) = {t1 * 1e3:.1f} ms, t({k2}) = {t2 * 1e3:.1f} ms -> overhead "
                     f"(K2 t(K1) - K1 t(K2)) / (K2 - K1) = {overhead * 1e3:.1f} ms per update (initialiser, "
                     f"energies, backward, Adam, replay buffer)")
        if best not in measured and "fp32" in per_update:
            per_update[best] = (per_update["fp32"][0], statistics.median(times["positive", best]),
                                statistics.median(times["negative", best]))
            self.say(f"update ({best}): not built (compiling changes only the sampler's gradient); its projection "
                     f"takes fp32's overhead, {per_update['fp32'][0] * 1e3:.1f} ms per update")
        self.table(rows)

        # projections
        cfg = preset
        updates, n_pos, n_neg = int(cfg["steps"]), int(cfg["num_it_pos"]), int(cfg["num_it_neg"])
        where = "this device" + (" (tiny sizes: NOT the thesis model)" if a.tiny else
                                 " (smoke: batch 2, NOT a projection)" if a.smoke else "")
        self.say()
        self.say(f"### projected: NRFLV thesis training on {where}")
        self.say(f"{updates:,} updates x (overhead + {n_pos} t+ + {n_neg} t-), batch {batch}:")
        for name, (oh, pos, neg) in per_update.items():
            per = oh + n_pos * pos + n_neg * neg
            self.say(f"- {name}: {updates:,} x ({oh * 1e3:.1f} + {n_pos} x {pos * 1e3:.2f} + {n_neg} x "
                     f"{neg * 1e3:.2f}) ms = {updates:,} x {per:.3f} s = **{human(updates * per)}**")
        self.nrflv_gpus(best, per_update.get(best), bench, phase_of, batch, updates, n_pos, n_neg)
        self.nrflv_recordings(preset, grads, bench, best, phase_of)

    def nrflv_gpus(self, best, per_update, bench, phase_of, batch, updates, n_pos, n_neg) -> None:
        """Chains split over N GPUs: each runs batch / N chains; the step measured at that batch here."""
        if per_update is None:
            return
        oh = per_update[0]
        shares = {n: batch // n for n in (2, 4, 8) if batch % n == 0}
        fns = {(n, ph): (lambda v=phase_of(best, ph, [s[:b] for s in bench.start[ph]], 17): v.block(1))
               for n, b in shares.items() for ph in ("positive", "negative")}
        t = self.time(fns, block=self.args.steps)
        self.say(f"{best} on N GPUs, the {batch} chains split (per-rank step measured here at batch {batch} / N; "
                 f"the update's overhead kept whole, the gradient all-reduce not counted):")
        for n, b in shares.items():
            if (n, "positive") not in t or (n, "negative") not in t:
                continue
            pos, neg = statistics.median(t[n, "positive"]), statistics.median(t[n, "negative"])
            self.add("nrflv", f"{n} GPUs: sampler step positive, batch {b} (1/{n} of the chains)", best,
                     t[n, "positive"])
            self.add("nrflv", f"{n} GPUs: sampler step negative, batch {b} (1/{n} of the chains)", best,
                     t[n, "negative"])
            per = oh + n_pos * pos + n_neg * neg
            self.say(f"- {n} GPUs: {updates:,} x ({oh * 1e3:.1f} + {n_pos} x {pos * 1e3:.2f} + {n_neg} x "
                     f"{neg * 1e3:.2f}) ms = **{human(updates * per)}**")

    def nrflv_floors(self, energy, states, flops, measured) -> None:
        """What bounds one (negative-phase, fp32) sampler step: the compute, memory and launch floors.

        Bytes: a lower-bound estimate -- the tensors autograd saves for the gradient (written in
        the forward, read in the backward) plus the sampler's update (each of its float32 buffers
        over the free units read and written about eight times: ``nrflv.sghmc``'s note).
        Launches: the aten operations of one step (gradient + update), each at least one kernel.
        """
        from torch.utils._python_dispatch import TorchDispatchMode

        from nrflv.gradient import StateGradient
        from nrflv.sghmc import SGHMC

        class Ops(TorchDispatchMode):
            n = 0

            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                Ops.n += 1
                return func(*args, **(kwargs or {}))

        seen = {}
        params = {p.untyped_storage().data_ptr() for p in energy.parameters()}

        def pack(t):
            st = t.untyped_storage()
            if st.data_ptr() not in params:
                seen[st.data_ptr()] = st.nbytes()
            return t
        st = [s.clone() for s in states]
        sampler = SGHMC(st, generator=torch.Generator(device=self.dev).manual_seed(0), non_diag_inv_mass=True,
                        num_burn_in_steps=0)
        sg = StateGradient(energy)
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            sg.grad(st)
        with Ops():
            sampler.step(sg.grad(st))
        units = sum(s.numel() for s in st)
        nbytes = 2 * sum(seen.values()) + 8 * 4 * units
        line = (f"one negative-phase step (fp32): {flops / 1e9:.2f} GFLOP, >= {nbytes / 1e6:.0f} MB moved "
                f"(2 x {sum(seen.values()) / 1e6:.0f} MB autograd-saved + 8 x 4 B x {units:,} state elements), "
                f"{Ops.n} aten operations (gradient + update)")
        if self.peaks:
            label, _, tf32, _, tbs = self.peaks
            line += (f"; floors on {label}: compute {flops / (tf32 * 1e12) * 1e3:.3f} ms at the TF32 peak, memory "
                     f"{nbytes / (tbs * 1e12) * 1e3:.3f} ms at {tbs:g} TB/s, launches {Ops.n} x 5 us = "
                     f"{Ops.n * 5e-3:.2f} ms")
        if measured:
            line += f"; measured {statistics.median(measured) * 1e3:.3f} ms"
        self.say(line)

    def nrflv_update(self, preset: dict, batch: int, k: int, options: dict):
        """A closure running one parameter update of the NRFLV suite (sampler shortened to k + k)."""
        from core.config import from_dict
        from core.suite import RunContext, StepContext
        from nrflv.suite import NRFLVSuite

        values = {key: v for key, v in preset.items() if key != "model"}
        values.update(dataset="natural_patches", n_images=max(64, 2 * batch), batch_size=batch, num_it_pos=k,
                      num_it_neg=k, num_burn_in_steps=k // 2, channels_last=False, buffer_size=4 * batch)
        values.update(options)
        suite = NRFLVSuite(RunContext(cfg=from_dict(NRFLVSuite.Config, values), device=self.dev))
        modules = suite.build()
        opt = suite.make_optimizer(modules, None)
        step = StepContext(step=0, phase="train", phase_step=0, rank=0, world_size=1, device=self.dev,
                           generator=torch.Generator(device=self.dev).manual_seed(0))
        images = suite.training_batch(step)

        def update():
            opt.zero_grad()
            loss, _ = suite.loss(modules, images, step)
            loss.backward()
            opt.step()
        return update

    def nrflv_recordings(self, preset, grads, bench, best, phase_of) -> None:
        """The five recorded sets: trials x protocol steps, positive-phase steps at record_batch."""
        from core.config import from_dict
        from core.suite import RunContext
        from nrflv.suite import NRFLVSuite

        a = self.args
        values = {key: v for key, v in preset.items() if key != "model"}
        values["dataset"] = "natural_patches"
        suite = NRFLVSuite(RunContext(cfg=from_dict(NRFLVSuite.Config, values), device=self.dev))
        rb = min(suite.cfg.record_batch, bench.start["positive"][0].shape[0])
        steps = suite.protocol.total
        thesis_sets = ["just_angle", "contrast_and_angle", "few_angles", "long_bars", "pairs"]
        start = [s[:rb] for s in bench.start["positive"]]
        t = self.time({n: (lambda v=phase_of(n, "positive", start, 13): v.block(1))
                       for n in dict.fromkeys(["fp32", best])}, block=a.steps)
        names = list(t)
        for n in names:
            self.add("nrflv", f"recording step (positive, batch {rb})", n, t[n], t["fp32"] if n != "fp32" else None)
        self.say()
        self.say(f"### projected: the five recorded sets (configs/nrflv_thesis_*.yaml), record_batch {rb}, "
                 f"{steps:,} steps per trial (burn-in {suite.cfg.exp_burn_in} + {suite.cfg.exp_blank_before} + "
                 f"{suite.cfg.exp_stimulus} + {suite.cfg.exp_blank_after})")
        for n in names:
            per = statistics.median(t[n])
            total = 0.0
            parts = []
            table = suite.conditions()
            for s in thesis_sets:
                trials = int((table["stimulus_set"] == s).sum())
                blocks = math.ceil(trials / rb)
                total += blocks * steps * per
                parts.append(f"{s} {trials} trials = {blocks} blocks")
            self.say(f"- {n}: {per * 1e3:.2f} ms per step at batch {rb}; " + ", ".join(parts) +
                     f"; each block {steps:,} x {per * 1e3:.2f} ms = {human(steps * per)}; all five: **{human(total)}**")

    # ================================================================== cordsnet
    def cords_suite(self, values: dict, **over):
        from core.config import from_dict
        from core.suite import RunContext
        from cordsnet.suite import CordsNetSuite

        v = {**values, **over}
        return CordsNetSuite(RunContext(cfg=from_dict(CordsNetSuite.Config, v), device=self.dev))

    def cordsnet(self) -> None:
        from core.config import load_preset
        from core.suite import Phase, StepContext

        a, dev = self.args, self.dev
        preset = load_preset(ROOT / "configs" / ("cordsnet_quick.yaml" if a.tiny else "cordsnet_imagenet.yaml"))
        values = {k: v for k, v in preset.items() if k != "model"}
        if a.tiny:
            values.update(input_size=32, blank_steps=3, stimulus_steps=4, post_blank_steps=3, loss_steps=2,
                          spont_steps=2)
        if a.smoke:  # R8 at 224 px, short courses
            values.update(blank_steps=2, stimulus_steps=3, post_blank_steps=2, loss_steps=2, spont_steps=1)
        fwd_batch = 2 if a.tiny or a.smoke else 64
        check = 3 if a.tiny else 2 if a.smoke else 20
        base_suite = self.cords_suite(values)
        cfg = base_suite.cfg
        torch.manual_seed(0)
        ref_modules = base_suite.build()
        with torch.no_grad():
            for b in ref_modules["rnn"].conv_bias:
                b.normal_(0, 0.05)
        self.say()
        self.say(f"## cordsnet: R{cfg.depth} at {cfg.input_size} px")

        def modules_for(name):
            m = {k: copy.deepcopy(v) for k, v in ref_modules.items()}
            if name == "channels_last":
                m = {k: v.to(memory_format=torch.channels_last) for k, v in m.items()}
            if name == "compile":
                m["rnn"].step = torch.compile(m["rnn"].step)
            return m

        names = ["fp32", "channels_last", "bf16"] + ([] if a.no_compile else ["compile"])
        g = torch.Generator().manual_seed(1)
        img = torch.randn(fwd_batch, cfg.in_channels, cfg.input_size, cfg.input_size, generator=g).to(dev)

        # forward time step at fwd_batch, every variant from the same rates
        fwd, finals = {}, {}
        start0 = [0.1 * torch.rand(r.shape, generator=g).to(dev) for r in ref_modules["rnn"].rest_state(fwd_batch)]
        for name in names:
            net = modules_for(name)["rnn"].eval()
            x = img.contiguous(memory_format=torch.channels_last) if name == "channels_last" else img
            ac = torch.autocast(dev.type, dtype=torch.bfloat16) if name == "bf16" else torch.autocast(dev.type, enabled=False)
            with torch.no_grad(), ac:
                w = net.weights()
                drive = net.input_drive(x, w)
                start = [r.clone() for r in start0]
                if name == "channels_last":
                    start = [r.contiguous(memory_format=torch.channels_last) for r in start]
            state = {"r": start}

            def fstep(net=net, drive=drive, w=w, state=state, ac_bf16=name == "bf16"):
                with torch.no_grad(), torch.autocast(dev.type, dtype=torch.bfloat16, enabled=ac_bf16):
                    state["r"] = net.step(state["r"], drive, w)
            try:
                rs = start
                for _ in range(check):
                    state["r"] = rs
                    fstep()
                    rs = state["r"]
                finals[name] = [r.float() for r in rs]
            except Exception as exc:
                self.skipped("cordsnet", f"forward time step, batch {fwd_batch}", name,
                             failure(exc))
                continue
            state["r"] = start
            fwd[name] = fstep
        with torch.no_grad(), ConvFlopCounter() as c:
            net = ref_modules["rnn"].eval()
            w = net.weights()
            net.step(net.rest_state(fwd_batch), net.input_drive(img, w), w)
        step_flops = c.forward
        times = fwd_times = self.time(fwd, block=a.steps)
        rows = []
        scale = max(float(r.abs().max()) for r in finals["fp32"])
        for name in fwd:
            if name not in times:
                rows.append(self.add("cordsnet", f"forward time step, batch {fwd_batch}", name, None,
                                     note=self.failed.get(name, "failed")))
                continue
            diff = max(float((x - y).abs().max()) for x, y in zip(finals[name], finals["fp32"])) / scale
            rows.append(self.add("cordsnet", f"forward time step, batch {fwd_batch}", name, times[name],
                                 times["fp32"] if name != "fp32" else None,
                                 f"rates after {check} steps {diff:.1e} (relative to the largest rate)",
                                 None if name == "fp32" else diff <= CORDS_TOL["rates"], step_flops,
                                 bf16=name == "bf16"))
        self.say(f"conv/linear FLOPs of one forward time step at batch {fwd_batch}: {step_flops / 1e9:.2f} GFLOP")

        # the finetune training step (and every phase) through the suite's own loss and optimiser
        phase_batches = dict(zip(("cnn", "inversion", "linear", "anneal", "finetune"),
                                 cfg.phase_batch_sizes or [cfg.batch_size] * 5))
        if a.tiny or a.smoke:
            phase_batches = dict.fromkeys(phase_batches, 2)

        def train_step(name, phase, n=None, over=None):
            suite = self.cords_suite(values, **CORDS_OPTIONS[name], **(over or {}))
            m = modules_for(name)
            n = n or phase_batches[phase]
            gg = torch.Generator().manual_seed(2)
            x = torch.randn(n, cfg.in_channels, cfg.input_size, cfg.input_size, generator=gg).to(dev)
            if name == "channels_last":
                x = x.contiguous(memory_format=torch.channels_last)
            y = torch.randint(cfg.n_classes, (n,), generator=gg).to(dev)
            ph = Phase(phase, 1000)
            if phase == "inversion":
                suite.begin_phase(m, ph)
            opt = suite.make_optimizer(m, ph)
            ctx = StepContext(step=0, phase=phase, phase_step=500 if phase == "anneal" else 0, rank=0,
                              world_size=1, device=dev, generator=torch.Generator(device=dev).manual_seed(0))
            for mod in m.values():
                mod.train()

            def step():
                opt.zero_grad()
                loss, _ = suite.loss(m, (x, y), ctx)
                loss.backward()
                opt.step()
                return loss
            return step, m, suite, (x, y), ctx

        ft = {}
        ref = None
        for name in names:
            try:
                step, m, suite, batch, ctx = train_step(name, "finetune")
                loss, _ = suite.loss(m, batch, ctx)
                loss.backward()
                grads_ = {k: p.grad.detach().float().clone() for k, p in m["rnn"].named_parameters()
                          if p.grad is not None}
            except Exception as exc:
                self.skipped("cordsnet", "finetune training step", name,
                             failure(exc))
                continue
            if name == "fp32":
                ref = (float(loss.detach()), grads_)
                diff, good = "", None
            else:
                dl = abs(float(loss.detach()) - ref[0]) / abs(ref[0])
                dg = max(float((grads_[k] - v).norm() / v.norm()) for k, v in ref[1].items() if v.norm() > 0)
                diff, good = f"loss {dl:.1e}, gradients {dg:.1e}", dl <= CORDS_TOL["loss"] and dg <= CORDS_TOL["grad"]
            ft[name] = (step, diff, good)
        times = self.time({n: v[0] for n, v in ft.items()})
        for name, (_, diff, good) in ft.items():
            if name not in times:
                rows.append(self.add("cordsnet", "finetune training step", name, None,
                                     note=self.failed.get(name, "failed")))
                continue
            rows.append(self.add("cordsnet", f"finetune training step, batch {phase_batches['finetune']}", name,
                                 times[name], times["fp32"] if name != "fp32" else None, diff, good,
                                 bf16=name == "bf16"))
        self.table(rows)
        self.say(f"tolerances of 'correct' (vs fp32): loss {CORDS_TOL['loss']:g}, gradients {CORDS_TOL['grad']:g}, "
                 f"rates {CORDS_TOL['rates']:g} (relative); the trainer's gradient-norm clip is left out")
        best_rows = [r for r in rows if r["workload"].startswith("finetune")]
        # the pipeline is timed for fp32 and the fastest correct variant that needs no compiling
        # (compiling each phase at its batch would take minutes per phase on a GPU host; the
        # compile row above gives its speed-up on the finetune step)
        fastest = self.fastest_correct([r for r in best_rows if r["variant"] != "compile"])
        best = fastest["variant"] if fastest else "fp32"

        # every phase at its global batch (1 GPU) and at its per-rank share on 4 GPUs: fp32 and the
        # fastest correct variant
        per_rank = {1: phase_batches, 4: {p: max(1, b // 4) for p, b in phase_batches.items()}}
        target = (cfg.stimulus_steps, cfg.post_blank_steps) if a.tiny else \
            (preset["stimulus_steps"], preset["post_blank_steps"])
        self.cords_memory(values, target, per_rank, train_step)
        phase_times, missing = {}, {}
        for name in dict.fromkeys(["fp32", best]):
            phase_times[name], missing[name] = {}, {}
            for gpus, batches in per_rank.items():
                fns, why = {}, {}
                for phase in phase_batches:
                    try:
                        fns[phase] = train_step(name, phase, batches[phase])[0]
                    except Exception as exc:
                        why[phase] = failure(exc)
                t = self.time(fns)
                why.update({p: self.failed.pop(p, "failed") for p in fns if p not in t})
                fns = None  # the closures (and their models) go before the next batch sizes
                for phase in phase_batches:
                    label = f"pipeline phase {phase}: training step, batch {batches[phase]}"
                    note = f"for the projection on {gpus} GPU{'s' if gpus > 1 else ''}"
                    if phase in t:
                        self.add("cordsnet", label, name, t[phase], note=note)
                    else:
                        self.add("cordsnet", label, name, None, note=f"{why[phase]} ({note})")
                phase_times[name][gpus] = {p: statistics.median(v) for p, v in t.items()}
                missing[name][gpus] = why
        self.cords_projection(cfg, phase_times, missing, per_rank, statistics.median(fwd_times["fp32"]), fwd_batch)

    def cords_memory(self, values, target, per_rank, train_step) -> None:
        """What one training step of each phase keeps for its backward pass (autograd's saved
        tensors, the parameters' own storages not counted), per image: counted at batch 1 and 2
        on two short courses here, then extrapolated linearly in the batch and in the number of
        time steps with a gradient (``stimulus + post-blank``, the spontaneous term being on) to
        the ``target`` course (the preset's). Printed for each phase at its batch on 1 and 4 GPUs;
        it is the bulk of a step's memory (add the parameters, their gradients and AdamW's moments:
        under 0.4 GB for R8 with its CNN)."""
        def saved(phase, n, course):
            over = dict(stimulus_steps=course, post_blank_steps=course, loss_steps=min(2, course), spont_steps=1,
                        spont_weight=values.get("spont_weight") or 1e-3, blank_steps=1)
            step, m, suite, batch, ctx = train_step("fp32", phase, n, over)
            # this call's parameters only: an earlier call's freed storages may be reused for activations
            params = {p.untyped_storage().data_ptr() for mod in m.values() for p in mod.parameters()}
            seen = {}

            def pack(t):
                st = t.untyped_storage()
                if st.data_ptr() not in params:
                    seen[st.data_ptr()] = st.nbytes()
                return t
            with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
                loss, _ = suite.loss(m, batch, ctx)
            del loss
            return sum(seen.values())

        per_image = {}
        try:
            for phase in per_rank[1]:
                one, two = saved(phase, 1, 2), saved(phase, 2, 2)
                if phase in ("cnn", "inversion"):  # no time steps
                    per_image[phase] = two - one
                else:
                    longer = saved(phase, 2, 4) - saved(phase, 1, 4)
                    per_step = (longer - (two - one)) / (2 * 2)  # 2 more stimulus + 2 more post-blank steps
                    per_image[phase] = (two - one) + per_step * (sum(target) - 4)
        except Exception as exc:  # the timing still runs
            self.say(f"saved-activation memory: not measured ({failure(exc)})")
            return
        total = torch.cuda.get_device_properties(self.dev).total_memory if self.dev.type == "cuda" else None
        parts = []
        for phase, b in per_image.items():
            too_big = total and per_rank[1][phase] * b > total
            parts.append(f"{phase} {nbytes(b)} per image -> {nbytes(per_rank[1][phase] * b)} at batch "
                         f"{per_rank[1][phase]}{' (more than this GPU has)' if too_big else ''}, "
                         f"{nbytes(per_rank[4][phase] * b)} at {per_rank[4][phase]} per rank")
        self.say(f"saved activations of one training step (counted here at batches 1-2 and courses of 2-4 steps, "
                 f"extrapolated to {target[0]} + {target[1]} time steps with a gradient): " + "; ".join(parts))

    def cords_projection(self, cfg, phase_times, missing, per_rank, t_fwd, fwd_batch) -> None:
        """The pipeline's wall time on 1 and 4 GPUs. The presets' batches are global and their step
        counts the published epochs, the same on any number of processes: on N GPUs each step is one
        per-rank step at batch/N (measured), the gradient all-reduce not counted. Rank 0 evaluates
        alone: ``n_eval`` images every ``eval_every`` steps, the whole test set at each phase end."""
        steps = {"cnn": cfg.cnn_steps, "inversion": cfg.inversion_steps, "linear": cfg.linear_steps,
                 "anneal": cfg.anneal_steps, "finetune": cfg.finetune_steps}
        course = cfg.blank_steps + cfg.stimulus_steps + cfg.post_blank_steps
        n_test = 360 if cfg.dataset == "digits" else TEST_SET_SIZES.get(cfg.dataset, 0)
        subset = math.ceil(cfg.n_eval / fwd_batch) * course * t_fwd
        full = math.ceil(n_test / fwd_batch) * course * t_fwd
        self.say()
        label = ("tiny preset, NOT ImageNet" if self.args.tiny else "smoke: batch 2 and short courses, NOT a projection"
                 if self.args.smoke else "configs/cordsnet_imagenet.yaml")
        self.say(f"### projected: CordsNet pipeline ({label}), phase by phase")
        self.say("Batches are global and step counts the published epochs, the same on any number of GPUs: on N GPUs "
                 "each step is one per-rank step at batch / N (measured; the gradient all-reduce not counted). "
                 f"Evaluations on rank 0 (RNN phases; the CNN's are not counted): every {cfg.eval_every} steps "
                 f"{cfg.n_eval} images = {math.ceil(cfg.n_eval / fwd_batch)} x {course} x {t_fwd * 1e3:.2f} ms "
                 f"= {human(subset)}, and at each phase end the whole test set ({n_test:,} images) = {human(full)}.")
        for name, by_gpus in phase_times.items():
            for gpus, pt in by_gpus.items():
                total, parts = 0.0, []
                for phase, n in steps.items():
                    if n and phase not in pt:
                        total = math.nan
                        parts.append(f"{phase} at batch {per_rank[gpus][phase]}: not measured "
                                     f"({missing[name][gpus].get(phase, 'failed')})")
                    if phase not in pt or not n:
                        continue
                    sec = n * pt[phase]
                    if phase != "cnn":
                        sec += (n // cfg.eval_every if cfg.eval_every else 0) * subset + full
                    total += sec
                    parts.append(f"{phase} {n:,} x {pt[phase] * 1e3:.1f} ms (batch {per_rank[gpus][phase]})"
                                 f"{' + evaluations' if phase != 'cnn' else ''} = {human(sec)}")
                stated = f"total **{human(total)}**" if not math.isnan(total) else \
                    "total not stated (a phase was not measured)"
                self.say(f"- {name}, {gpus} GPU{'s' if gpus > 1 else ''}: " + "; ".join(parts) + f"; {stated}")

    # ================================================================== snn_dales, dsn, rsa
    def snn_dales(self) -> None:
        from bench_snn_dales import nll_loss, training_step, workload
        from snn_dales.model import DaleSNN

        dev = self.dev
        spikes, x, y, sign1, sign2 = workload(dev)
        models = {"fused (fp32)": DaleSNN(sign1, sign2, 12, generator=torch.Generator(device=dev).manual_seed(1))}
        rows, fns, diffs = [], {}, {}
        if self.args.no_compile:
            self.skipped("snn_dales", "training batch", "compiled", "--no_compile")
        else:
            comp = DaleSNN(sign1, sign2, 12, compiled=True)
            comp.load_state_dict(models["fused (fp32)"].state_dict())
            models["compiled"] = comp
        grads = {}
        for name, m in models.items():
            nll_loss(m(spikes)[0], y).backward()
            grads[name] = [p.grad.clone() for p in m.parameters()]
            m.zero_grad()
            fns[name] = training_step(m, spikes, y)
        for name in models:
            d = max(float((a - b).norm() / b.norm()) for a, b in zip(grads[name], grads["fused (fp32)"]))
            diffs[name] = (f"gradient {d:.1e}", d <= 1e-5)
        t = self.time(fns, block=1 if self.args.tiny or self.args.smoke else 5)
        self.say()
        self.say("## snn_dales: one training batch (64 x 100 steps x 200 inputs -> 30 -> 12; forward, backward, Adam)")
        for name in models:
            if name not in t:
                self.skipped("snn_dales", "training batch", name, self.failed.get(name, "failed"))
                continue
            rows.append(self.add("snn_dales", "training batch", name, t[name],
                                 t["fused (fp32)"] if name != "fused (fp32)" else None, diffs[name][0],
                                 None if name == "fused (fp32)" else diffs[name][1]))
        self.table(rows)
        self.say(f"fastest correct: {self.fastest_correct(rows)['variant']} (tolerance: gradient 1e-5 relative)")

    def dsn(self) -> None:
        from bench_dsn import _stepper
        from dsn.flow import SigmoidTanh
        from dsn.systems import make_system

        dev = self.dev
        n = 8 if self.args.tiny or self.args.smoke else 200
        systems = {"adjoint (fp32)": make_system("stg")}
        if self.args.no_compile:
            self.skipped("dsn", f"STG AL iteration, n = {n}", "compiled", "--no_compile")
        else:
            systems["compiled"] = make_system("stg", compiled=True)
        lo, hi = systems["adjoint (fp32)"].lower, systems["adjoint (fp32)"].upper
        z = (lo + (hi - lo) * torch.rand(n, 2, generator=torch.Generator().manual_seed(0))).to(dev)
        stats = {}
        for name, sysm in systems.items():
            torch.manual_seed(3)
            with torch.no_grad():
                stats[name] = sysm.suff_stats(z)
        fns = {name: _stepper(s, n, SigmoidTanh, dev) for name, s in systems.items()}
        t = self.time(fns)
        self.say()
        self.say(f"## dsn: one STG augmented-Lagrangian iteration (n = {n} circuits, 300 Euler steps; flow forward, "
                 "simulation, backward, Adam)")
        rows = []
        ref = stats["adjoint (fp32)"]
        for name in systems:
            if name not in t:
                self.skipped("dsn", f"STG AL iteration, n = {n}", name, self.failed.get(name, "failed"))
                continue
            d = float(((stats[name] - ref).abs() / ref.abs().clamp_min(1e-12)).max())
            rows.append(self.add("dsn", f"STG AL iteration, n = {n}", name, t[name],
                                 t["adjoint (fp32)"] if name != "adjoint (fp32)" else None,
                                 f"T(z) {d:.1e}", None if name == "adjoint (fp32)" else d <= 1e-5))
        self.table(rows)
        self.say(f"fastest correct: {self.fastest_correct(rows)['variant']} (tolerance: sufficient statistics 1e-5 "
                 "relative)")

    def rsa(self) -> None:
        import numpy as np

        from bench_rsa import _numpy64, _responses, _toolkit

        dev = self.dev
        small = self.args.tiny or self.args.smoke
        s, n = (100, 500) if small else (4000, 20000)
        chunks = (128, 512) if small else (8192, 2048, 32768)
        resp = _responses(s, n, 0)
        ref = _numpy64(resp, None)
        fns, diffs = {}, {}
        for c in chunks:
            fns[f"fp32, chunk {c}"] = lambda c=c: _toolkit(resp, Namespace(device=str(dev), chunk=c))
        if dev.type == "cuda":
            def tf32(c=chunks[0]):
                old = torch.backends.cuda.matmul.allow_tf32
                torch.backends.cuda.matmul.allow_tf32 = True
                try:
                    return _toolkit(resp, Namespace(device=str(dev), chunk=c))
                finally:
                    torch.backends.cuda.matmul.allow_tf32 = old
            fns[f"tf32, chunk {chunks[0]}"] = tf32
        else:
            self.skipped("rsa", f"correlation RDM {s} x {n}", "tf32", "TF32 matmuls need a CUDA device")
        for name, fn in fns.items():
            d = float(np.abs(fn() - ref).max())
            diffs[name] = (f"largest difference from the float64 RDM {d:.1e}", d <= 1e-4)
        t = self.time(fns)
        self.say()
        self.say(f"## rsa: correlation RDM of {s} stimuli x {n} neurons (float32 responses)")
        rows = []
        base = f"fp32, chunk {chunks[0]}"
        for name in fns:
            if name not in t:
                self.skipped("rsa", f"correlation RDM {s} x {n}", name, self.failed.get(name, "failed"))
                continue
            rows.append(self.add("rsa", f"correlation RDM {s} x {n}", name, t[name], t[base] if name != base else None,
                                 diffs[name][0], diffs[name][1]))
        self.table(rows)
        self.say(f"fastest correct: {self.fastest_correct(rows)['variant']} (tolerance: 1e-4 from the float64 RDM)")


def main(argv=None) -> None:
    args = parse(argv)
    from core.runtime import keep_freed_memory_mapped

    keep_freed_memory_mapped()
    Report(args).run()


if __name__ == "__main__":
    main()
