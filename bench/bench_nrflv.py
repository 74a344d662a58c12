"""NRFLV sampler throughput: the toolkit's SGHMC step against the original's eager step, in one run.

    python bench/bench_nrflv.py                          # nrflv_thesis, batch 128, 3 rounds of 20 steps, CPU
    python bench/bench_nrflv.py --quick                  # nrflv_quick, batch 8, 3 rounds of 3 steps
    python bench/bench_nrflv.py --batch 16 --steps 3 --threads 1
    python bench/bench_nrflv.py --device cuda            # + channels-last, bf16, torch.compile, CUDA graph

A *sampler step* is one full step of a phase: the energy gradient with respect to the states
plus the SGHMC update (the thesis run's settings: step 0.1, friction 0.1, burn-in 100,
sigma^2 in [9e-5, 1e-4], non-diagonal inverse mass, states clamped to [-1, 1]). Both phases
are timed: *positive* (image fixed, latent layers free, starting from ``FFInit``'s states)
and *negative* (every layer free, from U[-1, 1]).

* ``original``: the step written the way the original code does it (``bench/baselines_nrflv.py``)
  (``lib/managers.py`` ``sampler_step``, ``lib/utils.py`` ``get_state_optimizers``,
  ``lib/custom_components/sghmc.py``, ``lib/networks/{models,layers}.py``): every state layer
  requires grad (the image too), the model's parameters still require grad (the original's
  ``requires_grad(self.parameters, False)`` walks a generator Adam has exhausted), the energy is
  built as the original's ``forward_bp_dynamics`` (squared, bias and quadratic terms plus the
  per-unit energies; each base conv at full resolution, then nearest resampling; weight norm
  recomputed at every use) and ``energy.backward()`` writes ``.grad`` of the states *and*
  accumulates ``.grad`` of every parameter at every step; then one torch.optim-style SGHMC
  optimiser object per layer reads ``state.grad`` and updates ``state.data`` (the image's is
  skipped in the positive phase), and the states' grads are zeroed and the states clamped.
  Left out, in the baseline's favour: the original's per-layer ``print``/``.item()`` calls
  (device syncs), its TensorBoard logging, and its autograd recording of the 1x1
  inverse-mass conv inside ``step`` (its conv weight is an ``nn.Parameter``; here the
  optimiser runs under ``no_grad`` as torch.optim's own optimisers do).
* ``toolkit``: :class:`nrflv.sghmc.SGHMC` (one vectorised update of all layers and chains,
  one noise draw per step) stepping on :meth:`nrflv.energy.NRFEnergy.grad` (autograd with
  respect to the free states only: no parameter gradient is computed or stored), each timed
  block inside ``torch.nn.utils.parametrize.cached()`` (weight norm formed once per block, as a
  phase would once per 500 steps).

Both use the same weights, start states, float32, thread count and device. Before timing, a
*trajectory check* runs a few steps of both phases from the same state with the noise
aligned: the baseline takes its per-layer N(0, sigma^2) draws as sigma times slices of one
N(0, 1) vector drawn per step from the same generator as the toolkit's (layers in order), so
the two trajectories should agree to float rounding; the timed baseline draws per layer with
``torch.normal(0, sigma)`` as the original. Then the (phase, variant) blocks are timed
**interleaved**: ``--reps`` rounds, each running ``--steps`` steps of every block in turn
(order reversed every other round; one untimed warm-up step each before), the chains carrying
on from block to block (so the timed steps of the default run are burn-in steps, the toolkit's
dearer path). Printed: median (min-max) ms per step over rounds, steps/s, and the speed-up as
the median (min-max) of the per-round ratios. Figures are printed, never asserted.

Also printed: the memory per chain (states, sampler state, the original's per-layer optimiser
state and kept ``.grad`` buffers, the autograd tensors saved for one gradient, the replay
buffer's row of 4 bytes x units) and the projected wall time of the thesis schedule: 47,500
updates x (500 positive + 500 negative) sampler steps (``--num_it_pos 500 --num_it_neg 500``
in the original's README command), from the per-step times measured here at this batch on this
device (the rest of an update -- the initialiser, the two energies and Adam -- is a few
forward/backward passes against 1,000 sampler steps and is left out).

On CUDA (or on the CPU with ``--extras``, CUDA graphs excepted), extra toolkit variants are
timed in the same rounds: ``channels_last`` (model and states in channels-last memory),
``bf16`` (the energy's forward under ``torch.autocast`` bfloat16; states, gradients and sampler
stay float32), ``compile`` (``torch.compile`` of the energy of a parameter-frozen copy, the
gradient by autograd through the compiled graph; the first call, which compiles, is timed
apart) and ``cuda_graph`` (the whole step -- gradient and update -- captured once in a CUDA
graph after a warm-up on a side stream and replayed; it draws from the default CUDA generator;
timing only: a replay repeats the captured burn-in path and does not advance the sampler's
Python step counter, so a training loop would capture one graph for the burn-in and one
after). Each prints its gradient's difference from the float32 toolkit gradient; a variant that
fails prints its error instead of a time.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from contextlib import nullcontext
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from baselines_nrflv import HP, NoiseFeed, OriginalPhase, original_energy  # noqa: E402
from interleave import human_time, saved_bytes  # noqa: E402

#: the thesis schedule: updates x (positive + negative) sampler steps
UPDATES, NUM_IT_POS, NUM_IT_NEG = 47_500, 500, 500


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", default=None, help="architecture preset (default nrflv_thesis; --quick: nrflv_quick)")
    p.add_argument("--batch", type=int, default=None, help="chains (default 128; --quick: 8)")
    p.add_argument("--steps", type=int, default=None, help="sampler steps per timed block (default 20; --quick: 3)")
    p.add_argument("--reps", type=int, default=3, help="interleaved rounds")
    p.add_argument("--quick", action="store_true", help="nrflv_quick, batch 8, 3 steps per block")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--check_steps", type=int, default=3, help="steps of the trajectory check per phase (0: skip)")
    p.add_argument("--check_batch", type=int, default=8, help="chains in the trajectory check (at most --batch)")
    p.add_argument("--extras", action="store_true",
                   help="also time channels_last / bf16 / compile on the CPU (always on with CUDA)")
    p.add_argument("--no_compile", action="store_true", help="skip the torch.compile variant")
    p.add_argument("--default_malloc", action="store_true",
                   help="leave glibc's malloc thresholds alone (main.py tunes them; see core.runtime)")
    args = p.parse_args(argv)
    args.arch = args.arch or ("nrflv_quick" if args.quick else "nrflv_thesis")
    args.batch = args.batch or (8 if args.quick else 128)
    args.steps = args.steps or (3 if args.quick else 20)
    if args.batch < 1 or args.steps < 1 or args.reps < 1 or args.check_steps < 0 or args.check_batch < 1:
        p.error("--batch, --steps, --reps and --check_batch must be >= 1, --check_steps >= 0")
    return args


def main(argv=None) -> None:
    args = parse(argv)
    if args.threads:  # before torch is imported, so that every pool starts at this size
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            os.environ[var] = str(args.threads)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    if not args.default_malloc:
        from core.runtime import keep_freed_memory_mapped
        keep_freed_memory_mapped()
    Bench(args, torch).run()


# ---------------------------------------------------------------------------------------------
# the toolkit's step (the original's is in baselines_nrflv.py)
# ---------------------------------------------------------------------------------------------
class ToolkitPhase:
    """One phase with the toolkit: :class:`SGHMC` stepping on ``grad_fn`` (default ``energy.grad``)."""

    def __init__(self, torch, energy, start, positive, generator, grad_fn=None, cached=True, memory_format=None):
        from nrflv.sghmc import SGHMC

        self.torch = torch
        fmt = memory_format or torch.contiguous_format
        self.states = [s.clone().contiguous(memory_format=fmt) for s in start]
        fixed = [positive and i == 0 for i in range(len(start))]
        self.sampler = SGHMC(self.states, generator=generator, fixed=fixed, non_diag_inv_mass=True,
                             clamp=(-1.0, 1.0), **HP)
        wrt = self.sampler.active
        self.wrt = wrt
        self.grad_fn = grad_fn or (lambda s: energy.grad(s, wrt=wrt))
        self.cached = cached
        self.replay = None  # a CUDA graph's replay, once captured

    def step(self):
        self.sampler.step(self.grad_fn)

    def block(self, n):
        if self.replay is not None:
            for _ in range(n):
                self.replay()
            return
        from torch.nn.utils import parametrize

        with parametrize.cached() if self.cached else nullcontext():
            for _ in range(n):
                self.step()


# ---------------------------------------------------------------------------------------------
# the bench
# ---------------------------------------------------------------------------------------------
def spread(xs, scale=1e3, fmt=".1f"):
    return f"{statistics.median(xs) * scale:{fmt}} ({min(xs) * scale:{fmt}}-{max(xs) * scale:{fmt}})"


def ratio(slow, fast):
    r = [a / b for a, b in zip(slow, fast)]
    return f"{statistics.median(r):.2f}x ({min(r):.2f}-{max(r):.2f})"


class Bench:
    def __init__(self, args, torch):
        self.args, self.torch = args, torch
        self.dev = torch.device(args.device)
        if self.dev.type == "cuda" and not torch.cuda.is_available():
            raise SystemExit("--device cuda: CUDA is not available on this machine")

    def sync(self):
        if self.dev.type == "cuda":
            self.torch.cuda.synchronize(self.dev)

    def gen(self, seed, device=None):
        return self.torch.Generator(device=device or self.dev).manual_seed(seed)

    # ---------------------------------------------------------------- set-up
    def build(self):
        torch = self.torch
        from nrflv.architecture import get_architecture
        from nrflv.energy import NRFEnergy, uniform_states
        from nrflv.nets import FFInit

        a = self.args
        self.arch = arch = get_architecture(a.arch)
        torch.manual_seed(0)
        self.energy = NRFEnergy(arch).to(self.dev)
        with torch.no_grad():  # small nonzero biases so that every term of E is exercised
            gb = self.gen(1, "cpu")
            for b in self.energy.biases:
                b.copy_(0.01 * torch.randn(b.shape, generator=gb))
        self.energy.eval()
        init = FFInit(arch).to(self.dev).eval()
        g = self.gen(2)
        image = uniform_states(arch, a.batch, g, self.dev)[0]
        with torch.no_grad():
            latents = init(image)
        self.start = {"positive": [image, *latents], "negative": uniform_states(arch, a.batch, g, self.dev)}

    # ---------------------------------------------------------------- equality
    def check(self):
        torch, a, arch = self.torch, self.args, self.arch
        n = min(a.check_batch, a.batch)
        st = [s[:n] for s in self.start["negative"]]
        e_tk, g_tk = self.energy.energy_and_grad(st)
        leaves = [s.clone().requires_grad_(True) for s in st]
        e_or, _, full = original_energy(torch, self.energy, arch, leaves)
        g_or = torch.autograd.grad(e_or, leaves)
        e_or, full = e_or.detach(), [f.detach() for f in full]
        self.energy.zero_grad(set_to_none=True)
        rel_e = abs(float(e_or) - float(e_tk)) / abs(float(e_tk))
        rel_g = max(float((x - y).norm() / y.norm()) for x, y in zip(g_or, g_tk))
        rel_u = abs(float(sum(f.sum() for f in full)) - float(e_or)) / abs(float(e_or))
        print(f"check at batch {n}: energy rel. diff {rel_e:.1e}, gradient rel. diff (worst layer) {rel_g:.1e}, "
              f"original's per-unit energies sum to E within {rel_u:.1e}")
        if not a.check_steps:
            return
        print(f"trajectory check, {a.check_steps} steps per phase from the same state, noise aligned "
              f"(the original's per-layer draws taken as sigma x slices of the toolkit's one N(0,1) draw per step):")
        for phase in ("positive", "negative"):
            start = [s[:n] for s in self.start[phase]]
            pos = phase == "positive"
            tk = ToolkitPhase(torch, self.energy, start, pos, self.gen(7))
            feed = NoiseFeed(torch, sum(start[i].numel() for i in tk.sampler.active), self.gen(7), self.dev)
            orig = OriginalPhase(torch, self.energy, arch, start, pos, None, feed)
            tk.block(a.check_steps)
            orig.block(a.check_steps)
            ds = max(float((x.detach() - y).abs().max()) for x, y in zip(orig.states, tk.states))
            moved = max(float((y - s).abs().max()) for y, s in zip(tk.states, start))
            dp, pmax = 0.0, 0.0
            for i, p in enumerate(tk.sampler.momentum):
                if p is None:
                    continue
                q = orig.momentum(i)
                dp = max(dp, float((q - p).abs().max()))
                pmax = max(pmax, float(p.abs().max()))
            pnorm = sum(float(p.grad.norm()) ** 2 for p in self.energy.parameters() if p.grad is not None) ** 0.5
            print(f"  {phase}: max |state diff| {ds:.1e} (states moved up to {moved:.2f}), "
                  f"max |momentum diff| {dp:.1e} (max |p| {pmax:.1e}); original accumulated parameter "
                  f".grad (norm {pnorm:.3g}), toolkit computes none")
            self.energy.zero_grad(set_to_none=True)

    # ---------------------------------------------------------------- memory
    def saved_bytes(self, fn, states):
        """Bytes of the distinct storages autograd saves for one gradient ``fn(states)``."""
        return saved_bytes(lambda: fn(states))[1]

    def memory(self):
        torch, a, arch = self.torch, self.args, self.arch
        b = a.batch
        units = arch.n_units
        print(f"memory per chain (float32; {units:,} units per chain, {arch.n_latent_units:,} latent):")
        print(f"  states: {4 * units:,} B")
        for phase in ("positive", "negative"):
            tk = self.variants[phase, "toolkit"]
            sd = tk.sampler.state_dict()
            persistent = sum(sd[k].numel() * sd[k].element_size() for k in ("tau", "g", "v", "p"))
            total = sum(t.numel() * t.element_size() for t in vars(tk.sampler).values()
                        if isinstance(t, torch.Tensor))
            orig = self.variants[phase, "original"]
            ostate = sum(t.numel() * t.element_size() for opt in orig.opts for st in opt.state.values()
                         for t in st.values() if isinstance(t, torch.Tensor))
            ograd = sum(s.grad.numel() * s.grad.element_size() for s in orig.states if s.grad is not None)
            print(f"  {phase} phase: toolkit sampler state (tau, g, v, p) {persistent // b:,} B + scratch "
                  f"(a, z, coef, noise) {(total - persistent) // b:,} B = {total // b:,} B, with the states "
                  f"{(total + 4 * units * b) // b:,} B; original optimiser state {ostate // b:,} B + kept state "
                  f".grad {ograd // b:,} B = {(ostate + ograd) // b:,} B, with the states "
                  f"{(ostate + ograd + 4 * units * b) // b:,} B")
        # autograd's saved tensors for one gradient: slope between batches 1 and 2
        st = self.start["negative"]
        wrt = list(range(arch.n_layers))

        def tk_fn(s):
            return self.energy.grad(s, wrt=wrt)

        def or_fn(s):
            leaves = [x.clone().requires_grad_(True) for x in s]
            original_energy(torch, self.energy, arch, leaves)[0].backward()

        if b >= 2:
            per = {}
            for name, fn in (("toolkit", tk_fn), ("original", or_fn)):
                m1 = self.saved_bytes(fn, [s[:1] for s in st])
                m2 = self.saved_bytes(fn, [s[:2] for s in st])
                per[name] = m2 - m1
            self.energy.zero_grad(set_to_none=True)
            print(f"  autograd tensors saved for one gradient (negative phase, transient): toolkit "
                  f"{per['toolkit'] / 2 ** 20:.2f} MiB, original {per['original'] / 2 ** 20:.2f} MiB per chain")
        n_par = sum(p.numel() for p in self.energy.parameters())
        print(f"  (not per chain: the original also keeps parameter .grad, {4 * n_par / 2 ** 20:.1f} MiB, "
              f"accumulated at every sampler step)")
        print(f"  replay buffer: {4 * units:,} B per stored chain (4 x {units:,}); "
              f"{4 * units * 10_000 / 1e9:.2f} GB for 10,000 chains")

    # ---------------------------------------------------------------- extras (GPU)
    def extras(self):
        """Extra toolkit variants: ``{name: (phase -> ToolkitPhase)}``; failures are reported."""
        torch, a, arch = self.torch, self.args, self.arch
        from nrflv.energy import NRFEnergy

        out = {}
        cuda = self.dev.type == "cuda"
        if not (cuda or a.extras):
            return out

        def copy_energy(frozen=False, memory_format=None):
            e = NRFEnergy(arch).to(self.dev)
            e.load_state_dict(self.energy.state_dict())
            if memory_format is not None:
                e = e.to(memory_format=memory_format)
            return e.eval().requires_grad_(not frozen)

        cl = torch.channels_last
        e_cl = copy_energy(memory_format=cl)
        out["channels_last"] = lambda ph, s, g: ToolkitPhase(torch, e_cl, s, ph == "positive", g,
                                                             memory_format=cl)

        def bf16_fn(ph):
            wrt = [i for i in range(arch.n_layers) if not (ph == "positive" and i == 0)]

            def fn(s):
                with torch.autocast(self.dev.type, dtype=torch.bfloat16):
                    return self.energy.grad(s, wrt=wrt)
            return fn

        out["bf16"] = lambda ph, s, g: ToolkitPhase(torch, self.energy, s, ph == "positive", g, bf16_fn(ph))

        if not a.no_compile:
            e_frozen = copy_energy(frozen=True)
            compiled = torch.compile(e_frozen)

            def compiled_fn(ph):
                wrt = [i for i in range(arch.n_layers) if not (ph == "positive" and i == 0)]

                def fn(s):
                    with torch.enable_grad():
                        leaves = [x.detach().requires_grad_(i in wrt) for i, x in enumerate(s)]
                        gs = torch.autograd.grad(compiled(leaves), [leaves[i] for i in wrt])
                    res = [None] * len(s)
                    for i, gi in zip(wrt, gs):
                        res[i] = gi
                    return res
                return fn

            out["compile"] = lambda ph, s, g: ToolkitPhase(torch, e_frozen, s, ph == "positive", g,
                                                           compiled_fn(ph), cached=False)
        if cuda:
            def graphed(ph, s, _g):
                gen = torch.cuda.default_generators[self.dev.index or 0]
                tk = ToolkitPhase(torch, self.energy, s, ph == "positive", gen, cached=False)
                side = torch.cuda.Stream(self.dev)
                side.wait_stream(torch.cuda.current_stream(self.dev))
                with torch.cuda.stream(side):
                    for _ in range(3):
                        tk.step()
                torch.cuda.current_stream(self.dev).wait_stream(side)
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph):
                    tk.step()
                tk.replay = graph.replay
                return tk

            out["cuda_graph"] = graphed
        return out

    # ---------------------------------------------------------------- timing
    def run(self):
        torch, a = self.torch, self.args
        self.build()
        arch = self.arch
        dev_name = torch.cuda.get_device_name(self.dev) if self.dev.type == "cuda" else f"{os.cpu_count()} CPUs"
        print(f"{a.arch}: layers {' / '.join('x'.join(map(str, l)) for l in arch.layers)}, batch {a.batch}, "
              f"float32, device {self.dev} ({dev_name}), threads {torch.get_num_threads()}, torch {torch.__version__}")
        self.check()

        self.variants = {}
        for phase in ("positive", "negative"):
            pos = phase == "positive"
            self.variants[phase, "original"] = OriginalPhase(torch, self.energy, arch, self.start[phase], pos,
                                                             self.gen(11))
            self.variants[phase, "toolkit"] = ToolkitPhase(torch, self.energy, self.start[phase], pos, self.gen(11))
        extras = self.extras()
        failed = {}
        for name, make in extras.items():
            for phase in ("positive", "negative"):
                try:
                    t0 = time.perf_counter()
                    v = make(phase, self.start[phase], self.gen(11))
                    first = time.perf_counter()
                    v.block(1)
                    self.sync()
                    t_first = time.perf_counter() - first
                    ref = self.energy.grad(v.states, wrt=v.wrt)
                    if v.replay is None:
                        got = v.grad_fn(v.states)
                        diff = max(float((x.float() - y).norm() / y.norm()) for x, y in
                                   zip(got, ref) if y is not None)
                        dtxt = f"gradient rel. diff vs float32 toolkit {diff:.1e}"
                    else:
                        ok = all(bool(torch.isfinite(s).all()) for s in v.states)
                        dtxt = f"states finite after replay: {ok}"
                    print(f"extra {name} ({phase}): set-up {first - t0:.1f} s, first step {t_first:.1f} s; {dtxt}")
                    self.variants[phase, name] = v
                except Exception as exc:  # report, keep benchmarking the rest
                    failed[name] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
        for name, msg in failed.items():
            print(f"extra {name}: not measured ({msg})")

        for v in self.variants.values():  # warm-up: one untimed step each
            v.block(1)
        self.sync()
        names = list(self.variants)
        times = {k: [] for k in names}
        for r in range(a.reps):
            for key in names if r % 2 == 0 else names[::-1]:
                self.sync()
                t0 = time.perf_counter()
                self.variants[key].block(a.steps)
                self.sync()
                times[key].append((time.perf_counter() - t0) / a.steps)

        print(f"ms per sampler step (gradient + update), median (min-max) over {a.reps} interleaved rounds of "
              f"{a.steps} steps; speed-up = median (min-max) of per-round ratios original / variant:")
        for phase in ("positive", "negative"):
            base = times[phase, "original"]
            for (ph, name), t in times.items():
                if ph != phase:
                    continue
                line = (f"  {phase:8s} {name:13s} {spread(t):>24s} ms/step  "
                        f"{1 / statistics.median(t):7.2f} steps/s")
                if name != "original":
                    line += f"  speed-up {ratio(base, t)}"
                if name not in ("original", "toolkit"):
                    line += f", vs toolkit {ratio(times[phase, 'toolkit'], t)}"
                print(line)
        both = {}
        for name in dict.fromkeys(n for _, n in names):
            if ("positive", name) in times and ("negative", name) in times:
                both[name] = [(NUM_IT_POS * p + NUM_IT_NEG * q) / (NUM_IT_POS + NUM_IT_NEG)
                              for p, q in zip(times["positive", name], times["negative", name])]
        for name, t in both.items():
            if name == "original":
                continue
            line = (f"  both phases ({NUM_IT_POS} + {NUM_IT_NEG} steps per update) {name:13s} speed-up "
                    f"{ratio(both['original'], t)}")
            if name != "toolkit":
                line += f", vs toolkit {ratio(both['toolkit'], t)}"
            print(line)
        self.memory()

        steps = UPDATES * (NUM_IT_POS + NUM_IT_NEG)
        where = (f"this GPU ({dev_name})" if self.dev.type == "cuda"
                 else f"this CPU (threads {torch.get_num_threads()})")
        print(f"projected thesis schedule: {UPDATES:,} updates x ({NUM_IT_POS} + {NUM_IT_NEG}) sampler steps = "
              f"{steps / 1e6:.1f} M steps of {a.arch} at batch {a.batch}, sampler steps only, on {where}:")
        for name, t in both.items():
            med = statistics.median(t)
            line = (f"  {name:13s} {human_time(steps * med):>10s}  "
                    f"({human_time(steps * min(t))}-{human_time(steps * max(t))})")
            if a.batch != 128:
                line += (f"; x 128/{a.batch} (linear in batch, an extrapolation) "
                         f"~ {human_time(steps * med * 128 / a.batch)}")
            print(line)
        if self.dev.type != "cuda":
            print("  one GPU: not measured here (run with --device cuda on the GPU)")


if __name__ == "__main__":
    main()
