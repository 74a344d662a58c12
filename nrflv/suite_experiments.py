"""The NRFLV suite's experiment stages, kept apart from training: the Gabor stimulus sets
(``--gen_exp_stim``), the recorded protocol (``--experiment``) and the analysis battery
(``--analyze``; one module per analysis in :mod:`nrflv.battery`).

:class:`ExperimentsMixin` is mixed into :class:`nrflv.suite.NRFLVSuite` and uses its model
(``arch``, ``layout``, ``sampler``, the training images ``_images``).
"""
from __future__ import annotations

from functools import cached_property

import torch
import torch.nn.functional as F

from core.data import load_real, natural_patches, tensors_of
from core.errors import UserError
from core.suite import AnalysisSkipped, Labelled, StimulusSet, analysis
from nrflv.energy import uniform_states
from nrflv.experiment import Protocol, Recorder, layer_sites, run_protocol, window_index


class ExperimentsMixin:
    """``--gen_exp_stim``, ``--experiment`` and ``--analyze`` of the nrflv family."""

    @property
    def protocol(self) -> Protocol:
        c = self.cfg
        return Protocol(c.exp_burn_in, c.exp_blank_before, c.exp_stimulus, c.exp_blank_after)

    @property
    def design(self):
        from nrflv.stimuli import GaborDesign

        c = self.cfg
        return GaborDesign(sigma=c.gabor_sigma, wavelength=c.gabor_wavelength, gamma=c.gabor_gamma, psi=c.gabor_psi,
                           nstds=c.gabor_nstds, contrast=c.stim_contrast,
                           just_angle_directions=c.just_angle_directions,
                           contrast_directions=c.contrast_directions, contrasts=tuple(c.contrast_levels),
                           few_angles_directions=c.few_angles_directions, few_angles_repeats=c.few_angles_repeats,
                           long_bars_gamma=c.long_bars_gamma, long_bars_directions=c.long_bars_directions,
                           long_bars_repeats=c.long_bars_repeats, pair_directions=c.pair_directions,
                           pair_distances=tuple(c.pair_distances), pair_repeats=c.pair_repeats,
                           pair_weight=c.pair_weight, flank_distance=c.flank_distance)

    def conditions(self):
        """One row per trial of the configured sets (see :func:`nrflv.stimuli.conditions_table`)."""
        from nrflv.stimuli import conditions_table

        _, h, w = self.arch.layers[0]
        try:
            return conditions_table(self.cfg.stimulus_sets, self.design, h, w)
        except ValueError as exc:
            raise UserError(f"stimuli: {exc}") from None

    def check_experiment(self) -> None:
        """The stimuli fit the image and every recording window fits the recorded layer."""
        table = self.conditions()
        if self.cfg.record_units == "patch":
            c, lh, lw = self.arch.layers[self.cfg.record_layer]
            _, h, w = self.arch.layers[0]
            ys = torch.tensor(table[["site0_y", "site1_y"]].to_numpy())
            xs = torch.tensor(table[["site0_x", "site1_x"]].to_numpy())
            ly, lx = layer_sites(ys, xs, (h, w), (lh, lw))
            try:
                window_index(ly, lx, self.cfg.record_patch, (lh, lw))
            except ValueError as exc:
                raise UserError(f"--record_patch {self.cfg.record_patch}: {exc}") from None

    @cached_property
    def background(self) -> torch.Tensor:
        """The blank: the mean training image ``(C, H, W)`` in [0, 1] (CPU)."""
        return self.from_model_range(self._images.mean(0)).clamp(0, 1).cpu()

    def held_out_images(self, n: int) -> torch.Tensor:
        """``(n, C, H, W)`` burn-in images in [0, 1] that training never saw: the test split of a
        real data set; for the embedded patches, other crops (another seed) of the photographs."""
        cfg, (c, h, w) = self.cfg, self.arch.layers[0]
        if cfg.dataset == "natural_patches":
            x = natural_patches(n, h, colour=c == 3, seed=cfg.seed + 7919, standardise=False)
        else:
            x = self._test_split[:n]
            if x.shape[-2:] != (h, w):
                x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
        return x.float().clamp(0, 1)

    @cached_property
    def _test_split(self) -> torch.Tensor:
        """The real data set's test images (loaded once: prepare() checks them, --gen_exp_stim uses them)."""
        x, _ = tensors_of(load_real(self.cfg.dataset, self.ctx.data_root, train=False, download=self.ctx.download))
        return x

    def stimulus_set(self, ctx):
        from nrflv.stimuli import contact_sheet, render

        table = self.conditions()
        images = render(table, self.background, self.design)
        n = len(table)
        held = self.held_out_images(min(n, 1024))
        burn_in = held[torch.arange(n) % len(held)]
        blank = self.background.expand(n, *self.background.shape)
        sites = ["site0", "site1"]
        site_y = torch.tensor(table[[f"{s}_y" for s in sites]].to_numpy(), dtype=torch.int64)
        site_x = torch.tensor(table[[f"{s}_x" for s in sites]].to_numpy(), dtype=torch.int64)
        img = ("trial", "channel", "height", "width")
        coords = {k: table[k].to_numpy() for k in table.columns if k != "trial"}
        figures = {}
        for name in self.cfg.stimulus_sets:
            sel = (table["stimulus_set"] == name).to_numpy()
            figures[f"contact_sheet_{name}"] = contact_sheet(images[torch.from_numpy(sel.copy())],
                                                             table[sel].reset_index(drop=True))
        return StimulusSet(
            inputs={"stimulus": Labelled(images, img), "burn_in": Labelled(burn_in, img),
                    "blank": Labelled(blank.contiguous(), img),
                    "site_y": Labelled(site_y, ("trial", "site")), "site_x": Labelled(site_x, ("trial", "site"))},
            coords=coords,
            attrs={"stimulus_sets": list(self.cfg.stimulus_sets), "image_range": [0.0, 1.0],
                   "background": "mean training image", "dataset": self.cfg.dataset},
            figures=figures, tables={"conditions": table})

    def control_modules(self):
        """With ``record_control``: the untrained model of this run (its initial weights, built
        from its seed), to record the same stimuli with."""
        if not self.cfg.record_control:
            return None
        modules = self.build()
        for m in modules.values():
            m.eval()
        return modules, f"initial weights (seed {self.cfg.seed}, untrained control)"

    def stimulus_shapes(self):
        image = tuple(self.arch.layers[0])
        return {"stimulus": image, "burn_in": image, "blank": image, "site_y": (2,), "site_x": (2,)}

    def recording_attrs(self):
        c, p = self.cfg, self.protocol
        return {"ms_per_step": c.ms_per_step, "record_every": c.record_every, "protocol": p.as_dict(),
                "onset_step": p.onset, "offset_step": p.offset, "record_layer": c.record_layer,
                "record_units": c.record_units, "record_patch": c.record_patch,
                "layer_shape": list(self.arch.layers[c.record_layer]),
                "image_shape": list(self.arch.layers[0]), "sites": ["site0", "site1"],
                "layer_means_phases": ["burn_in", "blank_before", "stimulus", "blank_after"],
                "movie_every": c.record_movie_every,
                "momentum_sign": "p as stored; the inhibitory population is -p"}

    def record(self, modules, inputs, ctx):
        from tqdm import tqdm

        cfg, arch, proto = self.cfg, self.arch, self.protocol
        energy, layer = modules["energy"], cfg.record_layer
        to_model = [self.to_model_range(inputs[k].float()) for k in ("burn_in", "blank", "stimulus", "blank")]
        b = to_model[0].shape[0]
        gen = torch.Generator(device=self.device).manual_seed(int(torch.randint(2 ** 62, (1,))))
        if "initter" in modules:
            latent = [p.detach().clamp(-1, 1) for p in modules["initter"](to_model[0])]
        else:
            latent = uniform_states(arch, b, gen, self.device)[1:]
        states = self.layout([to_model[0].clone()] + [s.clone() for s in latent])
        sampler = self.sampler(states, gen, fixed=[True] + [False] * (arch.n_layers - 1))
        c, lh, lw = arch.layers[layer]
        if cfg.record_units == "patch":
            ly, lx = layer_sites(inputs["site_y"], inputs["site_x"], arch.layers[0][1:], (lh, lw))
            rows, cols = window_index(ly, lx, cfg.record_patch, (lh, lw))
        else:
            rows = cols = None
        dtype = torch.float16 if cfg.record_dtype == "float16" else torch.float32
        recorder = Recorder(cfg.record_variables, proto.total, b, c, rows, cols, (lh, lw), dtype, self.device,
                            every=cfg.record_every, layer_means=cfg.record_layer_means,
                            movie_every=cfg.record_movie_every)
        latent_layers = list(range(1, arch.n_layers))
        with tqdm(total=proto.total, desc="sampler steps", leave=False, dynamic_ncols=True, mininterval=1.0,
                  disable=not ctx.env.is_main) as bar:
            energy_and_grad = self.state_gradient(energy).energy_and_grad
            out = run_protocol(proto, states, to_model, lambda s: energy_and_grad(s, wrt=latent_layers),
                               sampler, recorder, layer,
                               unit_energy=lambda s: energy.unit_energies(s)[layer], progress=bar.update)
        dims = {"layer_means": ("trial", "phase", "channel", "y", "x"),
                "layer_movie": ("trial", "frame", "channel", "y", "x")}
        return {k: Labelled(v, dims.get(k, ("trial", "time", "site", "channel", "y", "x"))) for k, v in out.items()}

    # --- the analysis battery (each streams the recording; see nrflv.battery) ----------
    def _experiment(self, ctx):
        from nrflv.battery.reading import Experiment

        key = id(ctx.recording)
        if getattr(self, "_exp_key", None) != key:
            self._exp_key, self._exp, self._battery = key, Experiment(ctx.recording, self.device), {}
        return self._exp

    def _preferences(self, ctx):
        """The channels' orientation preferences (from just_angle), or None without that set."""
        exp = self._experiment(ctx)
        if "just_angle" not in exp.sets:
            return None
        if "orientation_tuning" not in self._battery:
            self.an_orientation_tuning(None, ctx)
        return self._battery["orientation_tuning"][1]

    def _run(self, name, ctx, fn):
        exp = self._experiment(ctx)
        if name not in self._battery:
            self._battery[name] = (fn(exp), None)
        return self._battery[name][0]

    def _run_with_preferences(self, name, ctx):
        """The battery module ``nrflv.battery.<name>``'s ``run(exp, cfg, preferences)``."""
        import importlib

        module = importlib.import_module(f"nrflv.battery.{name}")
        prefs = self._preferences(ctx)
        return self._run(name, ctx, lambda exp: module.run(exp, self.cfg, prefs))

    @analysis("active_units", "units more active during the stimulus than the blank (Welch test), activity maps",
              needs_recording=True)
    def an_active_units(self, modules, ctx):
        from nrflv.battery import active_units

        return self._run("active_units", ctx, lambda exp: active_units.run(exp, self.cfg))

    @analysis("orientation_tuning", "cosine fits at 1 and 2 theta over just_angle's directions, polar plots",
              needs_recording=True)
    def an_orientation_tuning(self, modules, ctx):
        from nrflv.battery import orientation_tuning

        exp = self._experiment(ctx)
        if "orientation_tuning" not in self._battery:
            self._battery["orientation_tuning"] = orientation_tuning.run(exp, self.cfg)
        return self._battery["orientation_tuning"][0]

    @analysis("spectra", "LFP and unit spectra and spectrograms by contrast; peak Hz and power vs contrast",
              needs_recording=True)
    def an_spectra(self, modules, ctx):
        return self._run_with_preferences("spectra", ctx)

    @analysis("ei_lag", "lag of -momentum behind the state per channel (ms, sign, CI)", needs_recording=True)
    def an_ei_lag(self, modules, ctx):
        from nrflv.battery import ei_lag

        return self._run("ei_lag", ctx, lambda exp: ei_lag.run(exp, self.cfg))

    @analysis("transients", "onset and offset responses by contrast, overshoot above the sustained level",
              needs_recording=True)
    def an_transients(self, modules, ctx):
        return self._run_with_preferences("transients", ctx)

    @analysis("synchrony", "shift-corrected correlation, coherence, phase locking and phase of channel, centre-flank "
                           "and along-bar pairs, during vs before the stimulus; amplitude vs preference difference "
                           "(exp 1), phase test (exp 2), profile along the long bar (exp 3)", needs_recording=True)
    def an_synchrony(self, modules, ctx):
        return self._run_with_preferences("synchrony", ctx)

    @analysis("oscillations", "oscillating units (detrended Welch, prominent peaks); summed peak frequency x "
                              "power vs contrast, during and before the stimulus", needs_recording=True)
    def an_oscillations(self, modules, ctx):
        return self._run_with_preferences("oscillations", ctx)

    @analysis("traces", "per-channel traces of active matched units with spectrogram and autocorrelation; "
                        "traces by orientation and contrast around onset", needs_recording=True)
    def an_traces(self, modules, ctx):
        return self._run_with_preferences("traces", ctx)

    @analysis("activity_maps", "maps of the whole layer per trial and channel (stimulus - blank), retinotopic "
                               "centroids, the long-bar retinotopy figure", needs_recording=True)
    def an_activity_maps(self, modules, ctx):
        from nrflv.battery import activity_maps

        return self._run("activity_maps", ctx, lambda exp: activity_maps.run(exp, self.cfg))

    @analysis("activity_movies", "animated GIFs of the whole layer (all channels) per trial; needs layer_movie "
                                 "(record_movie_every) or record_units: all", needs_recording=True)
    def an_activity_movies(self, modules, ctx):
        from nrflv.battery import activity_maps

        return self._run("activity_movies", ctx, lambda exp: activity_maps.run_movies(exp, self.cfg))

    @analysis("findings", "the thesis's findings as tests with controls (untrained model, shuffled, blank): "
                          "effect, CI, holds yes/no; needs the control recording (record_control)",
              needs_recording=True)
    def an_findings(self, modules, ctx):
        from pathlib import Path

        from core.store import RecordingStore
        from nrflv.battery import findings
        from nrflv.battery.reading import Experiment

        path = Path(ctx.recording.path).parent / "control.zarr"
        if not path.exists():
            raise AnalysisSkipped(f"no control recording ({path}): record the untrained control with "
                                  "--record_control true --experiment (it is added to an existing recording)")
        control = Experiment(RecordingStore.open(path), self.device)
        prefs = self._preferences(ctx)
        try:            # the battery's own synchrony analysis of this recording, computed once
            sync = self.an_synchrony(modules, ctx)
        except AnalysisSkipped:
            sync = None
        return self._run("findings", ctx, lambda exp: findings.run(exp, control, self.cfg, prefs, sync))

    @analysis("summary", "one page with every analysis's headline; all their scalars", needs_recording=True)
    def an_summary(self, modules, ctx):
        from nrflv.battery import summary

        exp = self._experiment(ctx)
        before = set(self._battery)
        results, skipped = {}, {}
        for name in ("active_units", "orientation_tuning", "spectra", "ei_lag", "transients", "oscillations",
                     "synchrony", "activity_maps", "findings"):
            try:
                results[name] = self.analysis(name)(modules, ctx)
            except AnalysisSkipped as exc:
                skipped[name] = str(exc)
        out = summary.run(results, skipped, f"NRFLV experiment: {', '.join(exp.sets)} "
                                            f"({len(exp.conditions)} trials, 1 step = {exp.dt_ms:.3g} ms)")
        # scalars of analyses not run on their own in this invocation (the others are already listed)
        out.scalars = {f"{k}/{q}": v for k, r in results.items() if k not in before for q, v in r.scalars.items()}
        return out
