"""What the GPU report's workloads share (``bench/gpu_report.py`` is the command): the devices'
peaks, the tolerances that make a variant *correct*, the CSV fields, the failure lines, and
:class:`ReportBase` -- timing (interleaved, with the memory of the first call on CUDA), rows,
tables, the written report and the run over the families."""
from __future__ import annotations

import csv
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for _p in (str(ROOT), str(ROOT / "bench")):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import torch  # noqa: E402

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



#: test-set sizes of the real data sets (ImageNet: the ILSVRC2012 validation set)
TEST_SET_SIZES = {"imagenet": 50_000, "cifar10": 10_000, "cifar100": 10_000, "mnist": 10_000, "fashion_mnist": 10_000}


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


class ReportBase:
    """The report's frame; the families' workloads are the mixins of :class:`gpu_report.Report`."""

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
