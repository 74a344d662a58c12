"""The GPU report's snn_dales, dsn and rsa workloads: fp32 against the fastest correct variant
(see ``bench/gpu_report.py``)."""
from __future__ import annotations

from argparse import Namespace

import torch


class SmallWorkloads:
    """Mixed into :class:`gpu_report.Report` (needs :class:`gpu_report_common.ReportBase`)."""

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
