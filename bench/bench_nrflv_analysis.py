"""NRFLV analysis battery: its speed and its recording's size, against the original's layout, in one run.

    python bench/bench_nrflv_analysis.py                      # 5 sets x 16 trials x 540 steps, 32 channels
    python bench/bench_nrflv_analysis.py --trials_per_set 32 --steps 1080 --rounds 5
    python bench/bench_nrflv_analysis.py --baseline_layer_hw 8 --sets just_angle,contrast_and_angle

**Recording.** A synthetic recording (:func:`nrflv.battery.synthetic.synthetic_recording`, the
layout ``--experiment`` writes: state and momentum, a 3x3 window of every channel around each of
2 sites per trial, float16 or float32 in the chunked zstd zarr store) of the stimulus sets
(:mod:`nrflv.stimuli`, ``--trials_per_set`` trials each) through the thesis protocol scaled to
``--steps`` (burn-in / blank / stimulus / blank = 100 / 1000 / 1000 / 600 of 2,700). Its activity
has something for every analysis to find: during the stimulus each unit's state rises by a
contrast- and orientation-tuned level (von Mises in orientation around the channel's preferred
orientation, channel c preferring ``-90 + 180 c / C`` degrees) with an onset overshoot, plus a
tuned oscillation at ``35 + 5 x contrast`` Hz whose phase is random per trial and shared by the
channels and, except orthogonal pairs, by the two sites; Gaussian noise everywhere; the momentum
is ``p[t] = -s[t - 1]`` plus a little noise, so ``-p`` lags the state by one step.

**Toolkit.** The whole battery as ``NRFLVSuite`` runs it (``active_units``,
``orientation_tuning``, ``spectra`` and ``transients`` with the tuning's channel preferences,
``ei_lag``, ``synchrony``, ``summary``; each module's ``run`` on one
:class:`nrflv.battery.reading.Experiment`; figures made and closed, nothing written to disk), and,
apart, the lines of those modules that compute the baseline's quantities.

The synthetic experiment is in ``bench/synthetic_nrflv_analysis.py``, the baseline in
``bench/baselines_nrflv_analysis.py``; this script times them.

**Baseline.** What a straightforward user of the ORIGINAL layout writes: the same recorded values
saved as one float32 ``.npy`` per stimulus set per step per variable, each holding the layer
``(trials, channels, H, W)`` (``H = W = --baseline_layer_hw``; the original's SL1 is 32 x 32; the
recorded windows are placed at their sites, the rest is zeros), and numpy/scipy code that
``np.load``s every step's file it needs and stacks the units it wants:

* ``tuning``: mean state during the stimulus minus the blank before it (each leaving out
  ``onset_skip_ms``) of the unit at site 0, per channel, over ``just_angle``'s directions; least
  squares (``np.linalg.lstsq``) on ``1, cos, sin`` of theta and 2 theta; preferred orientation,
  R^2, tuned when the F-test of the fit (``scipy.stats.f``, 4 and N - 5 dof) rejects at ``alpha``
  and R^2 >= ``tuned_r2``;
* ``spectra``: per ``contrast_and_angle`` trial, the LFP (state summed over the 3x3 window at
  site 0 and the channels matched to the trial's orientation; trials with none are left out),
  ``scipy.signal.welch`` of its stimulus and blank samples, and each spectrum's peak (Hz, power);
* ``ei_lag``: per trial with contrast > 0 and channel, ``np.correlate`` of ``-p`` with ``s`` at the
  unit at site 0 (normalised, lags +- ``max_lag_ms``), the peak within half the period of the
  channel's mean correlogram, interpolated by a parabola, in ms.

The toolkit's numbers for the same quantities are compared with the baseline's (max differences
printed), so the timings compare like with like. Before timing, everything runs once untimed
(warm-up; the baseline's files were just written, so both read from a warm page cache -- a
cold disk costs the baseline far more). Then ``--rounds`` interleaved rounds (``bench/interleave``:
each round every variant in turn, order reversed every other round). Printed: sizes, median
(min-max) seconds over rounds, per-quantity speed-ups (median (min-max) of per-round ratios
baseline / toolkit) and a projection to the thesis scale (five sets x 128 trials x 2,700 steps).
Figures are printed, never asserted.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from baselines_nrflv_analysis import (baseline_ei_lag, baseline_file_bytes, baseline_read_bytes,  # noqa: E402
                                      baseline_spectra, baseline_tuning, choose_layer_hw, write_baseline)
from interleave import human_bytes, human_time  # noqa: E402
from synthetic_nrflv_analysis import (IMAGE_HW, LAG_STEPS, THESIS_PHASES, THESIS_STEPS, VARIABLES,  # noqa: E402
                                      bench_design, oscillating_activity, scaled_protocol)

#: the thesis recording (the protocol, image size and variables are in synthetic_nrflv_analysis)
THESIS_SETS, THESIS_TRIALS_PER_SET, THESIS_CHANNELS, THESIS_LAYER_HW = 5, 128, 32, 32
THESIS_SITES, THESIS_PATCH, THESIS_RECORDED_VARIABLES, ORIGINAL_VARIABLES = 2, 3, 2, 4
SETS = ("just_angle", "contrast_and_angle", "few_angles", "long_bars", "pairs")
MS_PER_STEP = 70.0 / 17.0   # the thesis's time base

# ---------------------------------------------------------------------------------------------
# arguments
# ---------------------------------------------------------------------------------------------
def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--trials_per_set", type=int, default=16, help="trials per stimulus set (a multiple of 16)")
    p.add_argument("--steps", type=int, default=540,
                   help="protocol steps in all (burn-in/blank/stimulus/blank scaled from 100/1000/1000/600)")
    p.add_argument("--channels", type=int, default=32, help="channels of the recorded layer")
    p.add_argument("--sets", default=",".join(SETS), help="comma-separated stimulus sets (need just_angle and "
                                                          "contrast_and_angle)")
    p.add_argument("--dtype", default="float16", choices=["float16", "float32"], help="the store's precision")
    p.add_argument("--baseline_layer_hw", type=int, default=32,
                   help="H = W of the layer in the baseline's .npy files (the original: 32; lowered, with a "
                        "note, when the files would take more than half the free disk)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds")
    p.add_argument("--threads", type=int, default=1, help="torch (and BLAS) CPU threads")
    p.add_argument("--device", default="cpu", help="the toolkit's device (the baseline is numpy)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workdir", default=None, help="folder in which a new temporary folder holds the store and "
                                                   "the .npy files (removed at the end; default: the system's)")
    p.add_argument("--keep", action="store_true", help="keep the work folder")
    a = p.parse_args(argv)
    a.sets = [s.strip() for s in a.sets.split(",") if s.strip()]
    bad = [s for s in a.sets if s not in SETS]
    if bad or len(set(a.sets)) != len(a.sets):
        p.error(f"--sets: unknown or repeated {bad or a.sets}; choose from {', '.join(SETS)}")
    if not {"just_angle", "contrast_and_angle"} <= set(a.sets):
        p.error("--sets must include just_angle (tuning) and contrast_and_angle (spectra): the baseline "
                "computes those quantities")
    if a.trials_per_set < 16 or a.trials_per_set % 16:
        p.error(f"--trials_per_set must be a positive multiple of 16, got {a.trials_per_set}")
    if a.steps < 270:
        p.error(f"--steps must be >= 270 (the stimulus phase must outlast onset_skip_ms), got {a.steps}")
    if a.channels < 2:
        p.error(f"--channels must be >= 2, got {a.channels}")
    if a.baseline_layer_hw < 8:
        p.error(f"--baseline_layer_hw must be >= 8 (the sites' windows must fit), got {a.baseline_layer_hw}")
    if a.rounds < 1 or a.threads < 1:
        p.error("--rounds and --threads must be >= 1")
    return a


def folder_bytes(path: Path) -> int:
    """Bytes of the files under ``path``."""
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


# ---------------------------------------------------------------------------------------------
# the toolkit
# ---------------------------------------------------------------------------------------------
def open_experiment(path: Path, device):
    from core.store import RecordingStore
    from nrflv.battery.reading import Experiment

    return Experiment(RecordingStore.open(path), device)


def toolkit_battery(path: Path, cfg, device, timings: list) -> dict:
    """Every analysis of the battery in ``NRFLVSuite``'s order on one ``Experiment``; appends
    ``{"times": {analysis: seconds}, "skipped": {analysis: why}}`` to ``timings``; returns the
    summary's scalars."""
    import matplotlib.pyplot as plt
    from core.suite import AnalysisSkipped
    from nrflv.battery import (active_units, ei_lag, orientation_tuning, spectra, summary, synchrony,
                               transients)

    times, results, skipped = {}, {}, {}
    t0 = time.perf_counter()
    exp = open_experiment(path, device)
    times["open"] = time.perf_counter() - t0
    prefs = None
    steps = (("active_units", lambda: active_units.run(exp, cfg)),
             ("orientation_tuning", lambda: orientation_tuning.run(exp, cfg)),
             ("spectra", lambda: spectra.run(exp, cfg, prefs)),
             ("ei_lag", lambda: ei_lag.run(exp, cfg)),
             ("transients", lambda: transients.run(exp, cfg, prefs)),
             ("synchrony", lambda: synchrony.run(exp, cfg, prefs)))
    for name, fn in steps:
        t0 = time.perf_counter()
        try:
            res = fn()
            if name == "orientation_tuning":
                res, prefs = res
            results[name] = res
        except AnalysisSkipped as exc:
            skipped[name] = str(exc)
        times[name] = time.perf_counter() - t0
    t0 = time.perf_counter()
    out = summary.run(results, skipped, f"NRFLV experiment: {', '.join(exp.sets)}")
    times["summary"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    plt.close("all")
    times["close figures"] = time.perf_counter() - t0
    timings.append({"times": times, "skipped": skipped})
    return out.scalars


@contextmanager
def figures_stubbed():
    """Within the block, every battery module's private ``_*figure`` maker returns None (the
    analyses' computation without matplotlib; the summary's one-page figure is still made)."""
    import nrflv.battery as battery
    import importlib
    import pkgutil

    saved = []
    for info in pkgutil.iter_modules(battery.__path__):
        mod = importlib.import_module(f"nrflv.battery.{info.name}")
        for name, fn in vars(mod).items():
            if name.startswith("_") and name.endswith("figure") and callable(fn):
                saved.append((mod, name, fn))
                setattr(mod, name, lambda *a, **k: None)
    try:
        yield len(saved)
    finally:
        for mod, name, fn in saved:
            setattr(mod, name, fn)


def toolkit_battery_without_figures(path: Path, cfg, device, timings: list) -> dict:
    """:func:`toolkit_battery` with the analyses' figures stubbed out (:func:`figures_stubbed`)."""
    with figures_stubbed():
        return toolkit_battery(path, cfg, device, timings)


def toolkit_tuning(path: Path, cfg, device):
    """The channels' tuning at site 0 (``orientation_tuning.channel_preferences``' per-channel table)."""
    from nrflv.battery.orientation_tuning import channel_preferences

    return channel_preferences(open_experiment(path, device), cfg)[0]


def toolkit_spectra(path: Path, cfg, device, prefs) -> dict:
    """Per trial, the LFP's Welch peak during the stimulus and the blank: the lines of
    ``spectra.run`` that compute them (``(N,)`` numpy arrays)."""
    from nrflv.battery.spectra import contrast_trials, lfp_traces
    from nrflv.measures.spectral import peak, welch

    exp = open_experiment(path, device)
    table = contrast_trials(exp)
    lfp, table, _ = lfp_traces(exp, table, prefs, cfg.match_tolerance)
    lfp = lfp.double()
    during, blank = exp.samples(cfg.onset_skip_ms, "stimulus"), exp.samples(cfg.onset_skip_ms, "blank")
    nper = min(cfg.spectrum_nperseg, during.stop - during.start, blank.stop - blank.start)
    out = {}
    for key, sl in (("", during), ("blank_", blank)):
        f, psd = welch(lfp[:, sl], exp.fs, nperseg=nper)
        fpk, ppk = peak(f, psd)
        out[key + "peak_hz"], out[key + "peak_power"] = fpk.cpu().numpy(), ppk.cpu().numpy()
    return out


def toolkit_ei_lag(path: Path, cfg, device):
    """``(N, C)`` lag (ms) of ``-p`` behind ``s`` per driven trial and channel: the lines of
    ``ei_lag.run`` that compute it."""
    import torch
    from nrflv.battery.ei_lag import driven_trials, half_period
    from nrflv.measures.correlation import cross_correlation, peak_lag

    exp = open_experiment(path, device)
    table = driven_trials(exp)
    during = exp.samples(cfg.onset_skip_ms, "stimulus")
    max_lag = max(1, int(round(cfg.max_lag_ms / exp.dt_ms)))
    xcs = []
    for s_blk, p_blk in zip(exp.centre("state", table, 0, time=during), exp.centre("momentum", table, 0, time=during)):
        lags, xc = cross_correlation(-p_blk.values.movedim(1, -1).double(), s_blk.values.movedim(1, -1).double(),
                                     max_lag)
        xcs.append(xc)
    xc = torch.cat(xcs)
    inside = lags.abs()[None, :] <= half_period(xc.mean(0))[:, None]
    lag, _ = peak_lag(lags, xc.masked_fill(~inside, float("-inf")), interpolate=True)
    return lag.cpu().numpy() * exp.dt_ms


# ---------------------------------------------------------------------------------------------
# printing
# ---------------------------------------------------------------------------------------------
def spread(xs, scale: float = 1.0, fmt: str = ".2f") -> str:
    return f"{statistics.median(xs) * scale:{fmt}} ({min(xs) * scale:{fmt}}-{max(xs) * scale:{fmt}})"


def ratio(slow, fast) -> str:
    r = [a / b for a, b in zip(slow, fast)]
    return f"{statistics.median(r):.1f}x ({min(r):.1f}-{max(r):.1f})"


def circular_max_diff(a, b, period: float = 180.0) -> float:
    import numpy as np

    d = np.remainder(np.asarray(a) - np.asarray(b), period)
    return float(np.minimum(d, period - d).max())


def agreement_lines(tk: dict, bl: dict) -> list[str]:
    """Max differences of the toolkit's and the baseline's values of the same quantities."""
    import numpy as np

    tun_t, tun_b = tk["tuning"], bl["tuning"]
    lines = [f"  tuning (site 0, {len(tun_t)} channels): max |d pref. orientation| "
             f"{circular_max_diff(tun_t['pref_orientation'].to_numpy(), tun_b['pref_orientation']):.2e} deg, "
             f"max |d R^2| {np.abs(tun_t['r2'].to_numpy() - tun_b['r2']).max():.2e}, tuned flags equal "
             f"{int((tun_t['tuned'].to_numpy() == tun_b['tuned']).sum())}/{len(tun_t)} "
             f"({int(tun_b['tuned'].sum())} tuned)"]
    sp_t, sp_b = tk["spectra"], bl["spectra"]
    for key, label in (("", "stimulus"), ("blank_", "blank")):
        hz = np.abs(sp_t[key + "peak_hz"] - sp_b[key + "peak_hz"]).max()
        rel = (np.abs(sp_t[key + "peak_power"] - sp_b[key + "peak_power"]) / np.abs(sp_b[key + "peak_power"])).max()
        lines.append(f"  spectra ({label}, {len(sp_b['peak_hz'])} trials): max |d peak| {hz:.2e} Hz, max rel. "
                     f"|d peak power| {rel:.2e}; median peak {np.median(sp_b[key + 'peak_hz']):.1f} Hz")
    ei_t, ei_b = tk["ei_lag"], bl["ei_lag"]
    both = np.isfinite(ei_t) & np.isfinite(ei_b)
    nan_note = (f"; NaN lags: toolkit {int(np.isnan(ei_t).sum())}, baseline {int(np.isnan(ei_b).sum())} (not compared)"
                if not both.all() else "")
    mean_t, mean_b = (np.where(both, x, 0).sum(0) / np.maximum(both.sum(0), 1) for x in (ei_t, ei_b))
    lines.append(f"  ei_lag ({ei_b.shape[0]} trials x {ei_b.shape[1]} channels): max |d lag| "
                 f"{np.abs(ei_t - ei_b)[both].max(initial=0.0):.2e} ms, max |d channel mean| "
                 f"{np.abs(mean_t - mean_b).max():.2e} ms; mean lag {ei_b[np.isfinite(ei_b)].mean():.2f} ms "
                 f"(built in: {LAG_STEPS} step){nan_note}")
    return lines


# ---------------------------------------------------------------------------------------------
# the bench
# ---------------------------------------------------------------------------------------------
def main(argv=None) -> None:
    args = parse(argv)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    import torch

    torch.set_num_threads(args.threads)
    if args.workdir:
        Path(args.workdir).mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="bench_nrflv_analysis_", dir=args.workdir))
    try:
        run(args, work)
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def run(args, work: Path) -> None:
    import numpy as np
    import torch
    from core.config import from_dict
    from core.store import RecordingStore
    from interleave import interleaved
    from nrflv.battery.synthetic import synthetic_recording
    from nrflv.config import NRFLVConfig
    from nrflv.stimuli import conditions_table

    cfg = from_dict(NRFLVConfig, {})
    device = torch.device(args.device)
    protocol = scaled_protocol(args.steps)
    table = conditions_table(args.sets, bench_design(args.trials_per_set), *IMAGE_HW)
    n_trials, ms_per_step = len(table), MS_PER_STEP
    fs = 1000.0 / ms_per_step
    trial_steps = n_trials * protocol.total
    print(f"NRFLV analysis battery bench: torch {torch.__version__}, device {device}, threads "
          f"{torch.get_num_threads()} ({os.cpu_count()} CPUs), {args.rounds} interleaved rounds")
    counts = ", ".join(f"{k} {v}" for k, v in table.groupby("stimulus_set", sort=False).size().items())
    print(f"recording: {n_trials} trials ({counts}) x {protocol.total} steps (burn-in {protocol.burn_in} / blank "
          f"{protocol.blank_before} / stimulus {protocol.stimulus} / blank {protocol.blank_after}; 1 step = "
          f"{ms_per_step:.3f} ms) = {trial_steps:,} trial-steps; {args.channels} channels, 3x3 windows at 2 "
          f"sites, state + momentum, {args.dtype}")

    # -- the toolkit's store
    t0 = time.perf_counter()
    path = work / "activity.zarr"
    dtype = np.float16 if args.dtype == "float16" else np.float32
    store = synthetic_recording(path, table, protocol,
                                oscillating_activity(protocol, fs, args.channels, args.seed),
                                dtype=dtype, channels=args.channels, ms_per_step=ms_per_step)
    t_store = time.perf_counter() - t0
    store_bytes = folder_bytes(path)
    raw_per = len(VARIABLES) * 2 * args.channels * 9 * np.dtype(dtype).itemsize
    print(f"toolkit store: {human_bytes(store_bytes)} on disk ({store_bytes / trial_steps:.0f} B per trial-step; "
          f"{raw_per:,} B uncompressed = 2 variables x 2 sites x {args.channels} channels x 9 units x "
          f"{np.dtype(dtype).itemsize} B; zstd ratio {raw_per * trial_steps / store_bytes:.2f}); written in "
          f"{t_store:.1f} s")

    # -- the baseline's files
    per_set = table.groupby("stimulus_set", sort=False).size()

    def baseline_bytes(hw: int) -> int:
        return sum(len(VARIABLES) * protocol.total * baseline_file_bytes(int(n), args.channels, hw) for n in per_set)

    free = shutil.disk_usage(work).free
    hw = choose_layer_hw(args.baseline_layer_hw, baseline_bytes, free)
    if hw != args.baseline_layer_hw:
        need = human_bytes(baseline_bytes(args.baseline_layer_hw))
        print(f"note: --baseline_layer_hw {args.baseline_layer_hw} would need {need}, more than half of the "
              f"{human_bytes(free)} free; using {hw}")
    t0 = time.perf_counter()
    base_root = work / "original_layout"
    n_files = write_baseline(RecordingStore.open(path), table, base_root, hw)
    t_base = time.perf_counter() - t0
    base_bytes = folder_bytes(base_root)
    print(f"baseline files: {n_files:,} float32 .npy (one per set x step x variable), layer {args.channels} x {hw} x "
          f"{hw}: {human_bytes(base_bytes)} ({base_bytes / trial_steps:,.0f} B per trial-step), written in "
          f"{t_base:.1f} s; baseline / toolkit size {base_bytes / store_bytes:,.0f}x")

    # -- variants, interleaved
    tk, bl, battery_times, bare_times = {}, {}, [], []
    prefs = toolkit_tuning(path, cfg, device)

    def keep(d: dict, key: str, fn: Callable) -> Callable:
        def call():
            d[key] = fn()
        return call

    ja = table[table["stimulus_set"] == "just_angle"]
    ca = table[table["stimulus_set"] == "contrast_and_angle"]
    bl_tuning = baseline_tuning(base_root, ja, protocol, ms_per_step, cfg, hw)
    variants = {
        "toolkit battery": (lambda: toolkit_battery(path, cfg, device, battery_times), args.threads),
        "toolkit battery, no figures": (lambda: toolkit_battery_without_figures(path, cfg, device, bare_times),
                                        args.threads),
        "toolkit tuning": (keep(tk, "tuning", lambda: toolkit_tuning(path, cfg, device)), args.threads),
        "baseline tuning": (keep(bl, "tuning", lambda: baseline_tuning(base_root, ja, protocol, ms_per_step, cfg,
                                                                       hw)), args.threads),
        "toolkit spectra": (keep(tk, "spectra", lambda: toolkit_spectra(path, cfg, device, prefs)), args.threads),
        "baseline spectra": (keep(bl, "spectra", lambda: baseline_spectra(base_root, ca, protocol, ms_per_step, cfg,
                                                                          hw, bl_tuning)), args.threads),
        "toolkit ei_lag": (keep(tk, "ei_lag", lambda: toolkit_ei_lag(path, cfg, device)), args.threads),
        "baseline ei_lag": (keep(bl, "ei_lag", lambda: baseline_ei_lag(base_root, table, protocol, ms_per_step, cfg,
                                                                       hw)), args.threads),
    }
    t0 = time.perf_counter()
    times = interleaved(variants, device, args.rounds, block=1, warmup=1)
    t_timing = time.perf_counter() - t0

    print("agreement, toolkit vs baseline (the same float32 values; float16 store "
          if args.dtype == "float16" else "agreement, toolkit vs baseline (float32 store ", end="")
    print("-> float32 .npy):")
    for line in agreement_lines(tk, bl):
        print(line)

    print(f"seconds, median (min-max) over {args.rounds} interleaved rounds (warm page cache, after one untimed "
          f"run of each; {human_time(t_timing)} in all):")
    battery, bare = times["toolkit battery"], times["toolkit battery, no figures"]
    print(f"  toolkit battery (every analysis, figures made and closed, nothing saved) {spread(battery)} s; "
          f"with the analyses' figures stubbed out {spread(bare)} s")
    for label, runs in (("with figures", battery_times), ("no figures", bare_times)):
        last = [r["times"] for r in runs[-args.rounds:]]
        print(f"    by analysis, {label}: "
              + ", ".join(f"{k} {statistics.median(r[k] for r in last):.2f}" for k in last[0]))
    skipped = battery_times[-1]["skipped"]
    if skipped:
        print("    skipped: " + "; ".join(f"{k}: {v}" for k, v in skipped.items()))
    quantities = ("tuning", "spectra", "ei_lag")
    base_total = [sum(x) for x in zip(*(times[f"baseline {q}"] for q in quantities))]
    tk_total = [sum(x) for x in zip(*(times[f"toolkit {q}"] for q in quantities))]
    print("  the same quantities (speed-up = baseline / toolkit):")
    for q in quantities:
        print(f"    {q:9s} toolkit {spread(times['toolkit ' + q]):>18s} s   baseline "
              f"{spread(times['baseline ' + q]):>18s} s   speed-up "
              f"{ratio(times['baseline ' + q], times['toolkit ' + q])}")
    print(f"    all three toolkit {spread(tk_total):>18s} s   baseline {spread(base_total):>18s} s   speed-up "
          f"{ratio(base_total, tk_total)}")
    print(f"  the baseline's three quantities / the toolkit's whole battery: {ratio(base_total, battery)} "
          f"(no figures: {ratio(base_total, bare)})")
    read = baseline_read_bytes(table, protocol, ms_per_step, cfg, args.channels, hw)
    print(f"  the baseline's three loaded {human_bytes(read)} of .npy per round "
          f"({read / statistics.median(base_total) / 2 ** 30:.2f} GiB/s)")

    project(args, store_bytes, trial_steps, times, base_total, hw)


def project(args, store_bytes: int, trial_steps: int, times: dict, base_total: list, hw: int) -> None:
    """Print the thesis-scale projection, arithmetic shown."""
    import torch

    thesis = THESIS_SETS * THESIS_TRIALS_PER_SET * THESIS_STEPS
    ch = THESIS_CHANNELS / args.channels
    per_store = store_bytes / trial_steps * ch
    print(f"projection to the thesis scale: {THESIS_SETS} sets x {THESIS_TRIALS_PER_SET} trials x {THESIS_STEPS:,} "
          f"steps = {thesis:,} trial-steps, {THESIS_CHANNELS} channels, 3x3 windows at 2 sites, state + momentum "
          f"(linear in trial-steps" + (f", x {THESIS_CHANNELS}/{args.channels} channels" if ch != 1 else "") + "):")
    print(f"  toolkit store ({args.dtype}, zstd): {per_store:.0f} B/trial-step x {thesis:,} = "
          f"{human_bytes(per_store * thesis)} (synthetic noise; real activity compresses differently)")
    sec, bare = statistics.median(times["toolkit battery"]), statistics.median(times["toolkit battery, no figures"])
    per, per_bare, figs = sec / trial_steps * ch, bare / trial_steps * ch, max(sec - bare, 0.0)
    print(f"  toolkit battery on this CPU (threads {torch.get_num_threads()}): {sec:.2f} s / {trial_steps:,} "
          f"trial-steps = {per * 1e6:.2f} us/trial-step x {thesis:,} = {human_time(per * thesis)} if all of it grew "
          f"with the data; figures are a fixed cost ({sec:.2f} - {bare:.2f} = {figs:.2f} s here), so "
          f"{bare:.2f} s / {trial_steps:,} = {per_bare * 1e6:.2f} us/trial-step x {thesis:,} + {figs:.2f} s = "
          f"{human_time(per_bare * thesis + figs)}")
    orig_per = ORIGINAL_VARIABLES * THESIS_CHANNELS * THESIS_LAYER_HW ** 2 * 4
    print(f"  original's full protocol: {ORIGINAL_VARIABLES} variables x {THESIS_CHANNELS} x {THESIS_LAYER_HW} x "
          f"{THESIS_LAYER_HW} units x 4 B = {orig_per:,} B/trial-step x {thesis:,} = {human_bytes(orig_per * thesis)} "
          f"({human_bytes(orig_per * thesis / THESIS_SETS)} per set); {orig_per * thesis / (per_store * thesis):,.0f}x "
          f"the toolkit's store")
    bsec = statistics.median(base_total)
    bper = bsec / trial_steps * ch
    read_thesis = thesis_baseline_read_bytes()
    at = f" at this {hw}x{hw} layer" if hw != THESIS_LAYER_HW else ""
    print(f"  baseline's three quantities{at}: {bsec:.2f} s / {trial_steps:,} = {bper * 1e6:.2f} us/trial-step x "
          f"{thesis:,} = {human_time(bper * thesis)} from a warm page cache; at the thesis scale they load "
          f"{human_bytes(read_thesis)} of the 32x32 layer's files (thesis protocol, onset_skip_ms as configured), "
          f"more than this machine's page cache holds: at an assumed 0.5 GiB/s from disk "
          f"{human_time(read_thesis / 2 ** 29)} of reading alone")


def thesis_baseline_read_bytes() -> int:
    """Bytes the baseline's three quantities load from the original's files at the thesis scale
    (128 trials per set, the 2,700-step protocol, 32 channels, 32x32 layer)."""
    from core.config import from_dict
    from nrflv.config import NRFLVConfig
    from nrflv.experiment import Protocol
    from nrflv.stimuli import GaborDesign, conditions_table

    table = conditions_table(SETS, GaborDesign(), *IMAGE_HW)
    return baseline_read_bytes(table, Protocol(*THESIS_PHASES), MS_PER_STEP, from_dict(NRFLVConfig, {}),
                               THESIS_CHANNELS, THESIS_LAYER_HW)


if __name__ == "__main__":
    main()
