"""The GPU report's cordsnet workloads: the forward time step and the training steps' variants,
the saved-activation memory per phase and the pipeline's projection (see ``bench/gpu_report.py``)."""
from __future__ import annotations

import copy
import math
import statistics

import torch

from gpu_report_common import CORDS_OPTIONS, CORDS_TOL, ROOT, TEST_SET_SIZES, failure, human
from interleave import human_bytes, saved_bytes
from core.flops import ConvFlopCounter  # noqa: E402 (gpu_report_common puts the repository on sys.path)


class CordsNetWorkloads:
    """Mixed into :class:`gpu_report.Report` (needs :class:`gpu_report_common.ReportBase`)."""

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
            params = [p for mod in m.values() for p in mod.parameters()]
            return saved_bytes(lambda: suite.loss(m, batch, ctx)[0], exclude=params)[1]

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
            parts.append(f"{phase} {human_bytes(b)} per image -> {human_bytes(per_rank[1][phase] * b)} at batch "
                         f"{per_rank[1][phase]}{' (more than this GPU has)' if too_big else ''}, "
                         f"{human_bytes(per_rank[4][phase] * b)} at {per_rank[4][phase]} per rank")
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
