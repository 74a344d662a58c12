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

The code: this file (the command line and :class:`Report`), ``gpu_report_common.py`` (the frame:
timing, rows, tables, the written report; tolerances and peaks), ``gpu_report_nrflv.py``,
``gpu_report_cordsnet.py`` and ``gpu_report_small.py`` (snn_dales, dsn, rsa): each family's
workloads, mixed into :class:`Report`.

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

import torch

from gpu_report_common import ReportBase, failure  # noqa: F401 (failure: for the tests)
from gpu_report_cordsnet import CordsNetWorkloads
from gpu_report_nrflv import NRFLVWorkloads
from gpu_report_small import SmallWorkloads


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
    p.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 3; --tiny 2; --smoke 1)")
    p.add_argument("--steps", type=int, default=None, help="sampler steps per timed block (default 10; --tiny and --smoke 1)")
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
    try:
        torch.device(a.device)
    except (RuntimeError, ValueError):
        p.error(f"--device: not a torch device: {a.device!r} (cpu, cuda or cuda:N)")
    return a


class Report(NRFLVWorkloads, CordsNetWorkloads, SmallWorkloads, ReportBase):
    """The whole report: :class:`ReportBase`'s frame and every family's workloads."""


def main(argv=None) -> None:
    args = parse(argv)
    from core.runtime import keep_freed_memory_mapped

    keep_freed_memory_mapped()
    Report(args).run()


if __name__ == "__main__":
    main()
