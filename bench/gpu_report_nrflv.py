"""The GPU report's nrflv workloads: the sampler step's variants, the update, the floors and the
projections of the thesis training and its recordings (see ``bench/gpu_report.py``)."""
from __future__ import annotations

import math
import statistics
import time
from argparse import Namespace

import torch

from gpu_report_common import NRFLV_OPTIONS, NRFLV_TOL, ROOT, failure, human
from interleave import saved_bytes
from core.flops import ConvFlopCounter  # noqa: E402 (gpu_report_common puts the repository on sys.path)


class NRFLVWorkloads:
    """Mixed into :class:`gpu_report.Report` (needs :class:`gpu_report_common.ReportBase`)."""

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

        st = [s.clone() for s in states]
        sampler = SGHMC(st, generator=torch.Generator(device=self.dev).manual_seed(0), non_diag_inv_mass=True,
                        num_burn_in_steps=0)
        sg = StateGradient(energy)
        _, saved = saved_bytes(lambda: sg.grad(st), exclude=list(energy.parameters()))
        with Ops():
            sampler.step(sg.grad(st))
        units = sum(s.numel() for s in st)
        nbytes = 2 * saved + 8 * 4 * units
        line = (f"one negative-phase step (fp32): {flops / 1e9:.2f} GFLOP, >= {nbytes / 1e6:.0f} MB moved "
                f"(2 x {saved / 1e6:.0f} MB autograd-saved + 8 x 4 B x {units:,} state elements), "
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
