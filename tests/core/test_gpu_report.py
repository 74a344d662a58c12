"""bench/gpu_report.py at its tiny CPU sizes: every family's rows, the variants' differences from
fp32, the skipped CUDA-only variants with their reason, FLOPs against torch's own count, and the
projections' arithmetic consistent with the measured rows."""
import csv
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run_report(out, *extra):
    res = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_report.py"), "--device", "cpu", "--tiny",
                          "--out", str(out), *extra], capture_output=True, text=True, timeout=600, cwd=ROOT,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert res.returncode == 0, res.stderr[-3000:]
    rows = list(csv.DictReader(open(out / "report.csv")))
    return rows, (out / "report.md").read_text(), res.stdout


def pick(rows, family, workload, variant):
    found = [r for r in rows if r["family"] == family and r["workload"].startswith(workload) and r["variant"] == variant]
    assert len(found) == 1, (family, workload, variant, found)
    return found[0]


def test_tiny_report_on_the_cpu(tmp_path):
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    rows, md, stdout = run_report(tmp_path, "--no_compile")
    assert md.strip() == stdout.strip()
    assert {r["family"] for r in rows} == {"nrflv", "cordsnet", "snn_dales", "dsn", "rsa"}
    for phase in ("positive", "negative"):
        fp32 = pick(rows, "nrflv", f"sampler step {phase}", "fp32")
        assert float(fp32["ms_median"]) > 0 and fp32["peak_tflops"] == "not stated"
        for v in ("channels_last", "bf16", "channels_last+bf16"):
            r = pick(rows, "nrflv", f"sampler step {phase}", v)
            assert r["correct"] == "yes" and float(r["speedup_vs_fp32"]) > 0
            grad = float(re.search(r"grad ([\d.e+-]+)", r["difference"]).group(1))
            assert grad < (1e-5 if v == "channels_last" else 2e-2)   # the same numbers / bf16 rounding
        assert "CUDA" in pick(rows, "nrflv", f"sampler step {phase}", "cuda_graph_step")["note"]
        assert "--no_compile" in pick(rows, "nrflv", f"sampler step {phase}", "compile")["note"]
    # the sampler step's FLOPs against torch's own counter (negative phase: every layer's gradient)
    from nrflv.architecture import get_architecture
    from nrflv.energy import NRFEnergy, uniform_states
    arch = get_architecture("nrflv_quick")
    energy = NRFEnergy(arch).requires_grad_(False)
    with FlopCounterMode(display=False) as m:
        energy.grad(uniform_states(arch, 2, torch.Generator().manual_seed(0)))
    assert float(pick(rows, "nrflv", "sampler step negative", "fp32")["gflop"]) == pytest.approx(
        m.get_total_flops() / 1e9, abs=1e-3)

    # the thesis projection's arithmetic: N x (overhead + P x t+ + Q x t-) ms = N x per s
    lines = re.findall(r"- fp32: ([\d,]+) x \(([\d.]+) \+ (\d+) x ([\d.]+) \+ (\d+) x ([\d.]+)\) ms = [\d,]+ x ([\d.]+) s", md)
    assert len(lines) == 1
    n, oh, p, tp, q, tq, per = lines[0]
    assert float(oh) + int(p) * float(tp) + int(q) * float(tq) == pytest.approx(1000 * float(per), rel=1e-2, abs=2)
    assert float(tp) == pytest.approx(float(pick(rows, "nrflv", "sampler step positive", "fp32")["ms_median"]), abs=0.01)
    assert "projected: the five recorded sets" in md and "all five:" in md
    assert re.search(r"- 2 GPUs: 60 x \(", md)  # the chains split over 2 GPUs (batch 2 -> 1 per rank)
    assert any(r["workload"].startswith("2 GPUs: sampler step negative, batch 1") for r in rows)

    for v in ("fp32", "channels_last", "bf16"):
        r = pick(rows, "cordsnet", "finetune training step", v)
        assert float(r["ms_median"]) > 0 and r["correct"] in ("", "yes")
        r = pick(rows, "cordsnet", "forward time step", v)
        assert float(r["gflop"]) > 0 and r["correct"] in ("", "yes")
    for phase in ("cnn", "inversion", "linear", "anneal", "finetune"):
        assert any(r["workload"].startswith(f"pipeline phase {phase}:") for r in rows)
    assert re.search(r"- fp32, 1 GPU: cnn .* total \*\*", md) and re.search(r"- fp32, 4 GPUs: cnn .* total \*\*", md)
    # global batches: the same steps on 1 and 4 GPUs, each 4-GPU step at the per-rank share (tiny: 2 -> 1)
    one = re.search(r"- fp32, 1 GPU: cnn ([\d,]+) x [\d.]+ ms \(batch 2\)", md)
    four = re.search(r"- fp32, 4 GPUs: cnn ([\d,]+) x [\d.]+ ms \(batch 1\)", md)
    assert one and four and one.group(1) == four.group(1) == "150"
    assert "whole test set (360 images)" in md
    assert "saved activations of one training step" in md and "working_gib" in rows[0]
    assert pick(rows, "rsa", "correlation RDM", "fp32, chunk 128")["correct"] == "yes"
    assert "TF32 matmuls need a CUDA device" in pick(rows, "rsa", "correlation RDM", "tf32")["note"]
    assert float(pick(rows, "snn_dales", "training batch", "fused (fp32)")["ms_median"]) > 0
    assert float(pick(rows, "dsn", "STG AL iteration", "adjoint (fp32)")["ms_median"]) > 0


@pytest.mark.slow  # torch.compile on a CPU: minutes of compiling
def test_tiny_report_with_the_compiled_variants(tmp_path):
    rows, md, _ = run_report(tmp_path, "--families", "nrflv", "snn_dales")
    for phase in ("positive", "negative"):
        r = pick(rows, "nrflv", f"sampler step {phase}", "compile")
        assert r["correct"] == "yes" and float(re.search(r"grad ([\d.e+-]+)", r["difference"]).group(1)) < 1e-5
        assert "CUDA" in pick(rows, "nrflv", f"sampler step {phase}", "cuda_graphs")["note"]
    assert pick(rows, "snn_dales", "training batch", "compiled")["correct"] == "yes"


def test_the_time_budget_leaves_later_families_out_with_how_to_measure_them(tmp_path):
    """--budget_min: no family starts once the budget is spent; each one left out is one row saying
    how to measure it, and the report written after every family holds what was measured."""
    rows, md, _ = run_report(tmp_path, "--no_compile", "--families", "rsa", "snn_dales", "dsn",
                             "--budget_min", "1e-6")
    measured = [r for r in rows if r["family"] == "rsa"]
    assert measured and any(r["ms_median"] for r in measured)      # the first family always runs
    for fam in ("snn_dales", "dsn"):
        (row,) = [r for r in rows if r["family"] == fam]
        assert row["note"].startswith("skipped: time budget") and f"--families {fam}" in row["note"]
    assert "snn_dales: skipped: time budget" in md


def test_smoke_runs_the_full_size_models(tmp_path):
    """--smoke: the thesis architecture and CordsNet R8 at 224 px (the ImageNet preset) at batch 2:
    the full-size code paths, the FLOPs the thesis count per chain, and the saved-activation memory
    extrapolated to the preset's 100 + 100 time steps, larger for the nonlinear phases."""
    res = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_report.py"), "--device", "cpu", "--smoke",
                          "--no_compile", "--families", "nrflv", "cordsnet", "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=600, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert res.returncode == 0, res.stderr[-3000:]
    md = (tmp_path / "report.md").read_text()
    rows = list(csv.DictReader(open(tmp_path / "report.csv")))
    assert "smoke" in md.splitlines()[0] and "NOT a projection" in md
    assert "nrflv_thesis (3x32x32 / 32x32x32 / 32x8x8 / 5x5x5), batch 2" in md and "R8 at 224 px" in md
    # 1.045 GFLOP per chain per negative step at the thesis size (docs/performance.md), 2 chains
    assert float(pick(rows, "nrflv", "sampler step negative", "fp32")["gflop"]) == pytest.approx(2.09, abs=0.01)
    assert not any(r["note"].startswith(("failed", "skipped: failed")) for r in rows), \
        [r for r in rows if "failed" in r["note"]]
    line = next(l for l in md.splitlines() if l.startswith("saved activations"))
    assert "extrapolated to 100 + 100 time steps" in line
    size = {m.group(1): float(m.group(2)) * (1024 if m.group(3) == "GiB" else 1)
            for m in re.finditer(r"(\w+) ([\d.]+) (MiB|GiB) per image", line)}
    assert set(size) == {"cnn", "inversion", "linear", "anneal", "finetune"}
    assert 0 < size["inversion"] < size["linear"] < size["anneal"] <= size["finetune"] * 1.05
    assert size["finetune"] > 100 * size["cnn"] / 2  # a state per time step against one pass


def test_a_phase_that_did_not_run_leaves_the_total_unstated(tmp_path):
    """Out of memory (or any failure) in one phase: the projection says which phase and why, and
    states no total computed from the phases that did run."""
    sys.path.insert(0, str(ROOT / "bench"))
    import gpu_report

    rep = gpu_report.Report(gpu_report.parse(["--device", "cpu", "--out", str(tmp_path)]))
    cfg = type("Cfg", (), dict(cnn_steps=10, inversion_steps=10, linear_steps=10, anneal_steps=10, finetune_steps=10,
                               blank_steps=1, stimulus_steps=1, post_blank_steps=1, dataset="digits", n_eval=2,
                               eval_every=5))
    batches = dict.fromkeys(("cnn", "inversion", "linear", "anneal", "finetune"), 8)
    times = {p: 0.1 for p in batches}
    short = {p: t for p, t in times.items() if p != "linear"}
    oom = gpu_report.failure(RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert oom.startswith("failed: out of memory")
    rep.cords_projection(cfg, {"fp32": {1: short, 4: times}}, {"fp32": {1: {"linear": oom}, 4: {}}},
                         {1: batches, 4: batches}, 0.001, 2)
    one = next(l for l in rep.lines if l.startswith("- fp32, 1 GPU"))
    four = next(l for l in rep.lines if l.startswith("- fp32, 4 GPUs"))
    assert "linear at batch 8: not measured (failed: out of memory" in one and "total not stated" in one
    assert "total **" not in one and "total **" in four
    assert gpu_report.failure(ValueError("bad")) == "failed: ValueError: bad"


def test_the_device_script_runs_the_report_and_the_tests_with_the_python3_it_finds(tmp_path):
    """bench/gpu_device_run.sh with this interpreter as `python3`: `report` writes the report, the log
    and the versions into OUT; `tests` runs pytest -m gpu (skipped here: no CUDA); a wrong mode is
    one line and exit 2."""
    shim = tmp_path / "bin"
    shim.mkdir()
    (shim / "python3").write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    (shim / "python3").chmod(0o755)
    env = {**os.environ, "PATH": f"{shim}:{os.environ['PATH']}", "OUT": str(tmp_path / "out"),
           "WHEELS": str(tmp_path / "no_wheels"), "OMP_NUM_THREADS": "1"}
    script = str(ROOT / "bench" / "gpu_device_run.sh")
    res = subprocess.run(["bash", script, "report", "--device", "cpu", "--tiny", "--no_compile", "--families", "rsa"],
                         capture_output=True, text=True, timeout=300, env=env)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    out = tmp_path / "out"
    assert "rsa | correlation RDM" in (out / "gpu_report" / "report.md").read_text()
    assert "report done" in (out / "gpu_report.log").read_text()
    assert "torch " in (out / "nvidia_smi.csv").read_text()
    res = subprocess.run(["bash", script, "tests", "tests/nrflv/test_energy.py", "tests/core/test_gpu.py"],
                         capture_output=True, text=True, timeout=300, env=env)
    log = (out / "gpu_tests.log").read_text()
    assert res.returncode == 0 and "2 skipped" in log, log[-2000:]   # no CUDA here: skipped, with the reason
    res = subprocess.run(["bash", script, "bogus"], capture_output=True, text=True, timeout=60, env=env)
    assert res.returncode == 2 and "usage" in res.stderr
