"""RSA suite: a CNN trained on tilt discrimination, compared with mouse V1 (and any recording).

Stages: train (SGD + momentum on binary cross-entropy, held-out accuracy), --viz
(stimuli, filters), --gen_exp_stim/--experiment (layer activity to gratings, recorded like
any model's), --analyze (RDMs, RDM similarity with bootstrap CIs, RDM rows, tuning curves,
PCA + t-SNE, linear CKA, ridge predictivity, and ``v1_likeness`` of any recording).
"""
from __future__ import annotations

import sys
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from core.data import epoch_batch_indices
from core.errors import DatasetUnavailable, UserError
from core.runtime import derive_seed
from core.store import RecordingStore
from core.suite import AnalysisResult, AnalysisSkipped, Labelled, ModelSuite, StimulusSet, analysis, visualization
from rsa import plots
from rsa.activations import layer_activations
from rsa.cnn import TiltNet
from rsa.compare import bootstrap_rdm_similarity, cka_report
from rsa.config import RSAConfig
from rsa.embedding import pca_tsne
from core.gratings import grating_images, random_orientations, tilt_labels
from rsa.predictivity import ridge_predictivity
from rsa.rdm import ResponsesTooLarge, rdm
from rsa.recording import most_v1_like, v1_likeness
from rsa.v1data import V1Data, load_stringer_v1, nearest_stimuli, stringer_path, synthetic_v1

MAX_RDM_CSV = 500  # stimuli; larger RDMs are only drawn, not written as CSV


class RSASuite(ModelSuite):
    name = "rsa"
    Config = RSAConfig
    description = "CNN on grating tilt discrimination vs mouse V1: RDMs, RSA, CKA, ridge predictivity"
    selection_metric = ("accuracy", "max")

    # --- set-up ---------------------------------------------------------------
    def prepare(self) -> None:
        """Check the inputs before anything is written: the compare recording exists, and the
        Stringer V1 file, when it is going to be used (``v1_source: stringer``, or ``auto``
        and present), is read and validated now (kept for the analyses), so a corrupt or
        mis-shaped file stops the run here, not after training."""
        if self.cfg.compare_recording:
            if not Path(self.cfg.compare_recording).exists():
                raise UserError(f"--compare_recording: not found: {self.cfg.compare_recording}")
            try:  # opened and verified now: a damaged or unsafe store stops the run here
                RecordingStore.open(self.cfg.compare_recording)
            except UserError as exc:
                raise UserError(f"--compare_recording: {exc}") from None
        self.__dict__["v1"] = self._load_v1()

    def _load_v1(self) -> V1Data:
        c = self.cfg
        use_file = c.v1_source == "stringer"
        if c.v1_source == "auto":
            try:
                stringer_path(self.ctx.data_root, c.v1_file)
                use_file = True
            except DatasetUnavailable:
                print("note: Stringer V1 file not found; using the SYNTHETIC V1 population "
                      "(v1_source: synthetic); every output says so", file=sys.stderr)
        if use_file:
            data = load_stringer_v1(self.ctx.data_root, c.v1_file, c.v1_bin_width)
            return V1Data(data.resp.to(self.device), data.ori.to(self.device), data.source)
        ori = torch.linspace(-90.0, 90.0, c.synthetic_stimuli, device=self.device)
        return self._synthetic(ori)

    def build(self):
        cfg = self.cfg
        torch.manual_seed(cfg.seed)
        net = TiltNet(cfg.arch, cfg.image_height, cfg.image_width, cfg.conv_channels, cfg.kernel_size,
                      cfg.pool_size, cfg.hidden_units)
        return {"net": net.to(self.device)}

    def gratings(self, ori: torch.Tensor) -> torch.Tensor:
        """``(n,)`` orientations -> ``(n, H, W)`` images with this config's grating settings."""
        c = self.cfg
        return grating_images(ori, c.image_height, c.image_width, spatial_freq=c.spatial_freq,
                              phase=c.phase, contrast=c.contrast, waveform=c.waveform)

    def _set(self, n: int, tag: str) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(derive_seed(self.cfg.seed, tag))
        ori = random_orientations(n, g).to(self.device)
        return self.gratings(ori), tilt_labels(ori)

    @cached_property
    def _train_set(self):
        return self._set(self.cfg.n_train, "train_set")

    @cached_property
    def _test_set(self):
        return self._set(self.cfg.n_test, "test_set")

    # --- training -------------------------------------------------------------
    def make_optimizer(self, modules, phase):
        params = [p for m in modules.values() for p in m.parameters()]
        return torch.optim.SGD(params, lr=self.cfg.lr, momentum=self.cfg.momentum)

    def training_batch(self, step):
        """A fixed training set visited in seeded epochs, or (``n_train=0``) fresh gratings
        drawn from ``step.generator``: either way a pure function of the step."""
        cfg = self.cfg
        if cfg.n_train == 0:
            ori = random_orientations(cfg.batch_size, step.generator, step.device)
            return self.gratings(ori), tilt_labels(ori)
        idx = epoch_batch_indices(cfg.n_train, cfg.batch_size, step.step, cfg.seed, step.rank, step.world_size)
        images, labels = self._train_set
        idx = idx.to(images.device)
        return images[idx], labels[idx]

    def loss(self, modules, batch, step):
        images, labels = batch
        logits = modules["net"].logits(images).squeeze(-1)
        loss = F.binary_cross_entropy_with_logits(logits, labels)
        acc = ((logits > 0).float() == labels).float().mean()
        return loss, {"accuracy": acc.detach()}

    def evaluate(self, modules, step):
        images, labels = self._test_set
        logits = modules["net"].logits(images).squeeze(-1)
        return {"accuracy": float(((logits > 0).float() == labels).float().mean()),
                "bce": float(F.binary_cross_entropy_with_logits(logits, labels))}

    # --- visualisations -------------------------------------------------------
    @visualization("stimuli", "example gratings with their orientation and tilt label")
    def viz_stimuli(self, modules, ctx):
        ori = torch.tensor([-75.0, -45.0, -15.0, 15.0, 45.0, 75.0])
        return {"stimuli": plots.gratings_figure(self.gratings(ori), ori)}

    @visualization("filters", "the convolution kernels (cnn, conv_fc)")
    def viz_filters(self, modules, ctx):
        net = modules["net"]
        if not hasattr(net, "conv"):
            raise UserError(f"--viz_type filters: the {self.cfg.arch} network has no convolution")
        return {"filters": plots.filters_figure(net.conv.weight)}

    # --- V1 data and model responses to the same stimuli -----------------------
    @cached_property
    def v1(self) -> V1Data:
        """The V1 data (loaded and checked by :meth:`prepare`, or here if it was not called)."""
        return self._load_v1()

    @property
    def synthetic(self) -> bool:
        return self.v1.source == "synthetic"

    def _mark(self, title: str) -> str:
        """Figure titles say when V1 is the synthetic stand-in."""
        return f"SYNTHETIC V1 — {title}" if self.synthetic else title

    def _need_stimuli(self, need: int, what: str) -> None:
        """Skip (:class:`AnalysisSkipped`: a note when every analysis runs, an error when it
        was asked for by name) an analysis that needs more stimuli than the V1 data have
        (e.g. with a coarse ``v1_bin_width``)."""
        have = int(self.v1.ori.shape[0])
        if have < need:
            raise AnalysisSkipped(f"{what} needs at least {need} stimuli; the V1 data have {have} "
                                  f"(v1_bin_width {self.cfg.v1_bin_width:g})")

    def _scalars(self, values: dict[str, float]) -> dict[str, float]:
        """Scalars for summary.csv / TensorBoard: with synthetic V1 every name starts with
        ``synthetic_v1/`` and ``v1_is_synthetic`` = 1 is added (0 with the real file)."""
        prefix = "synthetic_v1/" if self.synthetic else ""
        return {"v1_is_synthetic": float(self.synthetic), **{prefix + k: v for k, v in values.items()}}

    def _synthetic(self, ori: torch.Tensor) -> V1Data:
        c = self.cfg
        return synthetic_v1(ori, c.synthetic_neurons, seed=derive_seed(c.seed, "synthetic_v1") % 2**31,
                            fano=c.synthetic_fano, gain_noise=c.synthetic_gain_noise,
                            trials_averaged=c.synthetic_trials)

    def v1_at(self, orientations: np.ndarray) -> torch.Tensor:
        """V1 responses ``(C, neurons)`` to the given orientations (nearest recorded stimulus
        for the real data; the same synthetic population shown exactly these otherwise)."""
        if self.v1.source == "synthetic":
            return self._synthetic(torch.as_tensor(orientations, dtype=torch.float32, device=self.device)).resp
        return self.v1.resp[nearest_stimuli(self.v1.ori.cpu(), torch.as_tensor(orientations)).to(self.device)]

    def _v1_label(self) -> str:
        return "V1 (synthetic)" if self.v1.source == "synthetic" else "V1 data"

    def responses(self, modules) -> dict[str, torch.Tensor]:
        """``{population: (stimuli, units)}``: V1 first, then each configured layer, for the
        orientations of the V1 data."""
        images = self.gratings(self.v1.ori)
        acts = layer_activations(modules["net"], images, self.cfg.layers)
        return {self._v1_label(): self.v1.resp, **{f"layer {k}": v for k, v in acts.items()}}

    def _rdms(self, modules) -> dict[str, torch.Tensor]:
        c = self.cfg
        out = {}
        for k, v in self.responses(modules).items():
            try:
                out[k] = rdm(v, c.rdm_metric, chunk=c.chunk_units)
            except ResponsesTooLarge as exc:
                raise UserError(f"--rdm_metric {c.rdm_metric}: {k}: {exc}") from None
        return out

    # --- analyses ---------------------------------------------------------------
    @analysis("rdms", "RDM of the V1 data and of each layer")
    def rdms(self, modules, ctx):
        rdms = self._rdms(modules)
        ori = self.v1.ori.cpu().numpy()
        order = np.argsort(ori)
        tables = {}
        if len(ori) <= MAX_RDM_CSV:
            for label, m in rdms.items():
                frame = pd.DataFrame(m.cpu().numpy()[np.ix_(order, order)], columns=[f"{o:.2f}" for o in ori[order]])
                frame.insert(0, "orientation", ori[order])
                tables[f"rdm_{label.replace(' ', '_')}"] = frame
        sorted_rdms = {k: v[order][:, order] for k, v in rdms.items()}
        fig = plots.rdms_figure(sorted_rdms, ori[order], self.cfg.rdm_metric,
                                title=self._mark(f"RDMs ({self.cfg.rdm_metric})") if self.synthetic else None)
        return AnalysisResult(tables=tables, figures={"rdms": fig})

    @analysis("rdm_similarity", "similarity of each layer's RDM to V1's (Pearson, Spearman, "
              "Kendall tau-a) with bootstrap CIs over stimuli")
    def rdm_similarity(self, modules, ctx):
        c = self.cfg
        rdms = self._rdms(modules)
        labels = list(rdms)
        ref, cands = rdms[labels[0]], torch.stack([rdms[k] for k in labels[1:]])
        g = torch.Generator().manual_seed(derive_seed(c.seed, "bootstrap") % 2**63)
        rows, scalars = [], {}
        for method in c.similarity_methods:
            res = bootstrap_rdm_similarity(ref.double(), cands.double(), method, n_boot=c.n_bootstrap,
                                           ci=c.ci, generator=g)
            for k, label in enumerate(labels[1:]):
                layer = label.removeprefix("layer ")
                rows.append({"layer": layer, "method": method, "value": float(res["value"][k]),
                             "ci_low": float(res["low"][k]), "ci_high": float(res["high"][k]),
                             "boot_std": float(res["std"][k]), "n_boot": c.n_bootstrap,
                             "n_boot_valid": int(res["n_boot_valid"][k]), "n_stimuli": int(ref.shape[0]),
                             "n_pairs": int(res["n_pairs"][k]), "n_pairs_dropped": int(res["n_pairs_dropped"][k]),
                             "v1_source": self.v1.source})
                scalars[f"{method}/{layer}"] = float(res["value"][k])
        table = pd.DataFrame(rows)
        title = self._mark(f"RDM similarity to V1 ({c.ci:.0%} bootstrap CI over stimuli)")
        return AnalysisResult(tables={"rdm_similarity": table},
                              figures={"rdm_similarity": plots.similarity_figure(table, c.ci, title)},
                              scalars=self._scalars(scalars))

    @analysis("rdm_rows", "RDM rows: dissimilarity to chosen orientations, per population")
    def rdm_rows(self, modules, ctx):
        rdms = self._rdms(modules)
        ori = self.v1.ori.cpu().numpy()
        order = np.argsort(ori)
        rows = []
        for target in self.cfg.rdm_row_orientations:
            i = int(np.argmin(np.abs(ori - target)))
            for label, m in rdms.items():
                d = m[i].cpu().numpy()
                rows += [{"target": target, "row_orientation": ori[i], "population": label,
                          "orientation": o, "dissimilarity": v} for o, v in zip(ori[order], d[order])]
        sorted_rdms = {k: v.cpu().numpy()[np.ix_(order, order)] for k, v in rdms.items()}
        fig = plots.rdm_rows_figure(ori[order], sorted_rdms, self.cfg.rdm_row_orientations)
        return AnalysisResult(tables={"rdm_rows": pd.DataFrame(rows)}, figures={"rdm_rows": fig})

    @analysis("tuning_curves", "tuning curves of random units of V1 and each layer")
    def tuning_curves(self, modules, ctx):
        resp = self.responses(modules)
        ori = self.v1.ori.cpu().numpy()
        rng = np.random.default_rng(derive_seed(self.cfg.seed, "tuning") % 2**32)
        picks, rows = {}, []
        for label, r in resp.items():
            r = r.cpu().numpy()
            tuned = np.flatnonzero(r.std(0) > 0)  # skip units that never respond
            pool = tuned if tuned.size >= self.cfg.n_tuning_units else np.arange(r.shape[1])
            picks[label] = rng.choice(pool, min(self.cfg.n_tuning_units, pool.size), replace=False)
            for u in picks[label]:
                rows += [{"population": label, "unit": int(u), "orientation": o, "response": v}
                         for o, v in zip(ori, r[:, u])]
        return AnalysisResult(tables={"tuning_curves": pd.DataFrame(rows)},
                              figures={"tuning_curves": plots.tuning_figure(ori, resp, picks)})

    @analysis("embedding", "PCA then t-SNE 2-D embedding of each population, coloured by orientation")
    def embedding(self, modules, ctx):
        c = self.cfg
        self._need_stimuli(5, "t-SNE")
        resp = self.responses(modules)
        ori = self.v1.ori.cpu().numpy()
        emb = {label: pca_tsne(r, c.pca_components, perplexity=c.tsne_perplexity, seed=c.seed)
               for label, r in resp.items()}
        rows = [{"population": label, "orientation": o, "tsne_1": p[0], "tsne_2": p[1]}
                for label, xy in emb.items() for o, p in zip(ori, xy)]
        return AnalysisResult(tables={"embedding": pd.DataFrame(rows)},
                              figures={"embedding": plots.embedding_figure(ori, emb)})

    @analysis("cka", "linear CKA between V1 and each layer, with its debiased version and chance level")
    def cka(self, modules, ctx):
        c = self.cfg
        resp = self.responses(modules)
        labels = list(resp)
        v1 = resp[labels[0]]
        g = torch.Generator().manual_seed(derive_seed(c.seed, "cka_chance") % 2**63)
        rows = []
        for k in labels[1:]:
            rep = cka_report(v1, resp[k], n_perm=c.cka_permutations, generator=g, chunk=c.chunk_units)
            rows.append({"layer": k.removeprefix("layer "), **rep, "n_permutations": c.cka_permutations,
                         "n_stimuli": int(v1.shape[0]), "v1_source": self.v1.source})
        table = pd.DataFrame(rows)
        fig = plots.cka_figure(table, self._mark(f"linear CKA: layer vs V1 ({v1.shape[0]} stimuli)"))
        scalars = {f"{m}/{r['layer']}": r[m] for r in rows for m in ("cka", "cka_debiased", "cka_chance")}
        return AnalysisResult(tables={"cka": table}, figures={"cka": fig}, scalars=self._scalars(scalars))

    @analysis("ridge_predictivity", "cross-validated ridge prediction of V1 neurons from each layer")
    def ridge_predictivity(self, modules, ctx):
        c = self.cfg
        self._need_stimuli(max(5, c.ridge_folds), f"{c.ridge_folds}-fold cross-validation")
        resp = self.responses(modules)
        labels = list(resp)
        v1 = resp[labels[0]]
        g = torch.Generator().manual_seed(derive_seed(c.seed, "ridge") % 2**63)
        neurons = torch.randperm(v1.shape[1], generator=g)[: c.ridge_neurons].sort().values
        y = v1[:, neurons.to(v1.device)]
        rows, per_neuron, summary = [], [], {}
        for label in labels[1:]:
            layer = label.removeprefix("layer ")
            res = ridge_predictivity(resp[label], y, alphas=c.ridge_alphas, folds=c.ridge_folds, generator=g)
            r2, r = res["r2"].numpy(), res["r"].numpy()
            rows.append({"layer": layer, "median_r2": float(np.nanmedian(r2)), "mean_r2": float(np.nanmean(r2)),
                         "median_r": float(np.nanmedian(r)), "frac_r2_positive": float(np.mean(r2 > 0)),
                         "n_neurons": int(y.shape[1]), "n_units": int(resp[label].shape[1]),
                         "folds": c.ridge_folds, "v1_source": self.v1.source})
            per_neuron += [{"layer": layer, "neuron": int(n), "r2": a, "r": b, "v1_source": self.v1.source}
                           for n, a, b in zip(neurons.tolist(), r2, r)]
            summary[layer] = float(np.nanmedian(r2))
        fig = plots.bars_figure(summary, "median cross-validated R²",
                                self._mark(f"ridge predictivity of {y.shape[1]} V1 neurons"))
        return AnalysisResult(tables={"ridge_predictivity": pd.DataFrame(rows),
                                      "ridge_per_neuron": pd.DataFrame(per_neuron)},
                              figures={"ridge_predictivity": fig},
                              scalars=self._scalars({f"median_r2/{k}": v for k, v in summary.items()}))

    @analysis("v1_likeness", "which variable/time step of a recording (any model; compare_recording or "
              "--recording) is most V1-like")
    def v1_likeness(self, modules, ctx):
        c = self.cfg
        if c.compare_recording:
            store = RecordingStore.open(c.compare_recording)
        elif ctx.recording is not None:
            store = ctx.recording
        else:  # skipped with a note when all analyses run; an error when asked for by name
            raise AnalysisSkipped("needs a recording: set compare_recording: PATH/activity.zarr, "
                                  "pass --recording to analysis_main.py, or run --experiment")
        table, ori = v1_likeness(store, self.v1_at, coord=c.compare_coord, units=c.compare_coord_units,
                                 variables=c.compare_variables, metric=c.rdm_metric,
                                 methods=c.similarity_methods, time_stride=c.compare_time_stride,
                                 where=c.compare_where, time_window=c.compare_time_window,
                                 device=self.device, cka_permutations=c.cka_permutations,
                                 generator=torch.Generator().manual_seed(derive_seed(c.seed, "cka_chance") % 2**63))
        table.insert(0, "recording", str(store.path))
        table["v1_source"] = self.v1.source
        measures = [m for m in (*c.similarity_methods, "cka", "cka_debiased") if m in table]
        best = []
        for m in measures:
            row = most_v1_like(table, m)
            best.append({"measure": m, "variable": row["variable"], "time": int(row["time"]), "value": row[m],
                         **({"cka_chance": row["cka_chance"]} if m.startswith("cka") else {}),
                         "v1_source": self.v1.source})
        fig = plots.v1_likeness_figure(table, measures, self._mark("similarity to V1"))
        scalars = {f"best_{b['measure']}": float(b["value"]) for b in best}
        return AnalysisResult(tables={"v1_likeness": table, "most_v1_like": pd.DataFrame(best)},
                              figures={"v1_likeness": fig}, scalars=self._scalars(scalars))

    # --- experiments ----------------------------------------------------------
    def stimulus_shapes(self):
        return {"images": (self.cfg.image_height, self.cfg.image_width)}

    def stimulus_set(self, ctx):
        c = self.cfg
        base = torch.arange(c.n_exp_orientations) * (180.0 / c.n_exp_orientations) - 90.0
        ori = base.repeat_interleave(c.exp_repeats)
        return StimulusSet({"images": Labelled(self.gratings(ori), ("trial", "height", "width"))},
                           coords={"orientation": ori.numpy()},
                           attrs={"orientation_units": "degrees"})

    def record(self, modules, inputs, ctx):
        acts = layer_activations(modules["net"], inputs["images"].float(), self.cfg.layers)
        return {k: Labelled(v, ("trial", "unit")) for k, v in acts.items()}
