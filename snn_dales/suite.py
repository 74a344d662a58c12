"""snn_dales: sound localisation from interaural phase differences by a spiking network
whose units obey Dale's law. Glue between the pure modules and the generic managers."""
from __future__ import annotations

import math

import pandas as pd
import torch
from tqdm.auto import tqdm

from core.runtime import derive_seed, generator
from core.suite import AnalysisResult, Labelled, ModelSuite, StimulusSet, analysis, visualization
from snn_dales import plots
from snn_dales.analysis import (confusion_matrix, inhibitory_input_ablation, mean_ci, preferred_ipd, score,
                                sign_flip_fraction, single_unit_ablations, test_sets, tuning_curves)
from snn_dales.config import SNNDalesConfig
from snn_dales.dale import dale_sign_mask, sign_violations
from snn_dales.model import DaleSNN, evaluate_logits, nll_loss
from snn_dales.stimulus import IPDTask, continuise, discretise, make_dataset
from snn_dales.studies import INHIBITION_SITES, StudySettings, run_study
from snn_dales.train import BatchSource, DataSpec


class SNNDalesSuite(ModelSuite):
    name = "snn_dales"
    Config = SNNDalesConfig
    description = "surrogate-gradient SNN localising sounds from IPDs, with Dale's law"
    selection_metric = ("val_acc", "max")

    def __init__(self, ctx):
        super().__init__(ctx)
        if self.cfg.keep_weights == "final":
            # no best-validation selection: the managers then write no best.pt, never stop
            # early, and later stages (and --load_model RUN) use the final weights (last.pt)
            self.selection_metric = None
        self._source = None
        self._val = None

    # --- set-up -------------------------------------------------------------------
    @property
    def task(self) -> IPDTask:
        c = self.cfg
        return IPDTask(c.n_per_ear, c.duration_steps, c.dt_ms * 1e-3, c.rate_max_hz, c.tone_hz,
                       c.envelope_power, c.n_classes)

    @property
    def chance(self) -> float:
        return 100.0 / self.cfg.n_classes

    def _gen(self, *parts) -> torch.Generator:
        return generator(derive_seed(self.cfg.seed, *parts), self.device)

    def _new_model(self) -> DaleSNN:
        """The network with its initial weights (a pure function of the seed)."""
        c = self.cfg
        g = torch.Generator().manual_seed(derive_seed(c.seed, "signs"))
        sign1 = dale_sign_mask(self.task.n_inputs, c.ratio_input, c.sign_assignment, g)[None]
        sign2 = dale_sign_mask(c.n_hidden, c.ratio_hidden, c.sign_assignment, g)[None]
        return DaleSNN(sign1.to(self.device), sign2.to(self.device), c.n_classes, dale_w1=c.dale_w1,
                       dale_w2=c.dale_w2, tau=c.tau_ms * 1e-3, dt=c.dt_ms * 1e-3, beta=c.beta,
                       readout_scale=c.readout_scale, fused=c.fused, compiled=c.compiled,
                       generator=self._gen("init"))

    def build(self):
        return {"snn": self._new_model()}

    def _data_spec(self, batches_per_epoch=None) -> DataSpec:
        c = self.cfg
        return DataSpec(c.batch_size, batches_per_epoch or c.batches_per_epoch, c.phase_offset, c.train_set)

    def _validation(self):
        if self._val is None:
            ipd, x = make_dataset(self.cfg.val_batches * self.cfg.batch_size, self.task, self.cfg.phase_offset,
                                  self._gen("validation"))
            self._val = (ipd, x)
        return self._val

    def _test_sets(self, phase_offset=None):
        c = self.cfg
        return test_sets(self.task, c.test_sets, c.test_batches * c.batch_size, phase_offset or c.phase_offset,
                         derive_seed(c.seed, "test") % (2 ** 31), self.device)

    # --- training -----------------------------------------------------------------
    def training_batch(self, step):
        if self._source is None:
            self._source = BatchSource(self.task, self._data_spec(), self._gen("training data"))
        epoch = step.step // self.cfg.batches_per_epoch
        return self._source.batch(step.step, step.generator, self._gen("epoch", epoch))

    def loss(self, modules, batch, step):
        x, y = batch
        logits, spikes = modules["snn"](x)
        loss = nll_loss(logits, y)
        with torch.no_grad():
            acc = (logits[0].argmax(-1) == y).float().mean()
            rate = spikes.mean() / (self.cfg.dt_ms * 1e-3)
        return loss, {"acc": acc, "hidden_rate_hz": rate}

    def evaluate(self, modules, step):
        ipd, x = self._validation()
        logits = evaluate_logits(modules["snn"], x)[0]
        y = discretise(ipd, self.cfg.n_classes)
        est = logits.argmax(-1)
        mae = ((ipd - continuise(est, self.cfg.n_classes)).abs() * 180 / math.pi).mean()
        return {"val_acc": float((est == y).float().mean()),
                "val_loss": float(torch.nn.functional.cross_entropy(logits, y)),
                "val_mae_deg": float(mae)}

    def train_images(self, modules):
        w1, w2 = modules["snn"].effective_weights()
        return {"weights": plots.signed_weights(w1[0], w2[0])}

    # --- visualisations -------------------------------------------------------------
    @visualization("stimulus", "input spike rasters for eight IPDs")
    def viz_stimulus(self, modules, ctx):
        ipd = torch.linspace(-math.pi / 2, math.pi / 2, 8, device=self.device) * 0.999
        g = self._gen("viz stimulus")
        from snn_dales.stimulus import ipd_spikes, random_phase_offsets
        x = ipd_spikes(ipd, random_phase_offsets(8, "per_dataset", g), self.task, g)
        return {"stimulus": plots.stimulus_examples(x.float(), ipd * 180 / math.pi, self.cfg.n_per_ear)}

    @visualization("weights", "effective (signed) weights W1 and W2")
    def viz_weights(self, modules, ctx):
        w1, w2 = modules["snn"].effective_weights()
        return {"weights": plots.signed_weights(w1[0], w2[0])}

    @visualization("hidden", "hidden-layer spike rasters for four IPDs")
    def viz_hidden(self, modules, ctx):
        from snn_dales.stimulus import ipd_spikes, random_phase_offsets
        ipd = torch.tensor([-60.0, -20.0, 20.0, 60.0], device=self.device) * math.pi / 180
        g = self._gen("viz hidden")
        x = ipd_spikes(ipd, random_phase_offsets(4, "per_sample", g), self.task, g)
        _, s = modules["snn"](x)
        return {"hidden": plots.hidden_raster(s[:, :, 0].transpose(0, 1), ipd * 180 / math.pi)}

    # --- experiment ---------------------------------------------------------------
    def stimulus_set(self, ctx):
        n = self.cfg.exp_trials
        g = self._gen("experiment stimuli")
        from snn_dales.stimulus import ipd_spikes, random_ipds, random_phase_offsets
        ipd = random_ipds(n, g)
        offset = random_phase_offsets(n, self.cfg.phase_offset, g)
        x = ipd_spikes(ipd, offset, self.task, g)
        return StimulusSet({"spikes": Labelled(x.to(torch.uint8).cpu(), ("trial", "time", "input"))},
                           coords={"ipd": ipd.cpu().numpy(), "ipd_class": discretise(ipd, self.cfg.n_classes).cpu().numpy(),
                                   "phase_offset": offset.cpu().numpy()},
                           attrs={"phase_offset": self.cfg.phase_offset, "dt_ms": self.cfg.dt_ms})

    def record(self, modules, inputs, ctx):
        logits, s = modules["snn"](inputs["spikes"].bool())
        return {"hidden_spikes": Labelled(s[:, :, 0].transpose(0, 1).to(torch.uint8), ("trial", "time", "unit")),
                "logits": Labelled(logits[0], ("trial", "class"))}

    # --- analyses -------------------------------------------------------------------
    @analysis("accuracy", "test accuracy and error (deg) on several fresh test sets, confusion, histograms")
    def analyse_accuracy(self, modules, ctx):
        net, n_c = modules["snn"], self.cfg.n_classes
        rows, pooled = [], None
        for mode in ("per_sample", "per_dataset"):
            for k, (ipd, x) in enumerate(self._test_sets(mode)):
                r = score(net, ipd, x, n_c)
                rows.append({"phase_offset": mode, "test_set": k, "acc_pct": 100 * float(r["acc"][0]),
                             "mae_deg": float(r["mae_deg"][0]), "n": int(ipd.numel())})
                if mode == self.cfg.phase_offset:
                    item = (ipd, r["est"][0])
                    pooled = item if pooled is None else tuple(torch.cat([a, b]) for a, b in zip(pooled, item))
        per_set = pd.DataFrame(rows)
        summary = []
        for mode, grp in per_set.groupby("phase_offset", sort=False):
            m, h, n = mean_ci(grp["acc_pct"].to_numpy())
            mm, mh, _ = mean_ci(grp["mae_deg"].to_numpy())
            summary.append({"phase_offset": mode, "acc_mean_pct": m, "acc_ci95": h, "acc_sd": grp["acc_pct"].std(),
                            "acc_min": grp["acc_pct"].min(), "acc_max": grp["acc_pct"].max(),
                            "mae_deg_mean": mm, "mae_deg_ci95": mh, "n_sets": n, "chance_pct": self.chance})
        summary = pd.DataFrame(summary)
        ipd, est = pooled
        true_c = discretise(ipd, n_c)
        cm = confusion_matrix(true_c, est, n_c)
        fig = plots.confusion_and_histograms(ipd * 180 / math.pi, continuise(est, n_c) * 180 / math.pi, cm, n_c,
                                             f"test ({self.cfg.phase_offset} offsets)")
        cm_df = pd.DataFrame(cm.cpu().numpy(), columns=[f"true_{i}" for i in range(n_c)])
        cm_df.insert(0, "estimated", range(n_c))
        own = summary[summary.phase_offset == self.cfg.phase_offset].iloc[0]
        return AnalysisResult(tables={"test_sets": per_set, "accuracy_summary": summary, "confusion": cm_df},
                              figures={"confusion_histograms": fig},
                              scalars={"test_acc_pct": float(own.acc_mean_pct), "test_acc_ci95": float(own.acc_ci95),
                                       "test_mae_deg": float(own.mae_deg_mean), "chance_pct": self.chance})

    @analysis("weight_signs", "weight-sign maps before/after training; Dale's law check")
    def analyse_weight_signs(self, modules, ctx):
        net, init = modules["snn"], self._new_model()
        w1, w2 = (w[0] for w in net.effective_weights())
        b1, b2 = (w[0].detach() for w in init.effective_weights())
        rows = []
        for layer, w, b, sign, dale in (("W1", w1, b1, net.sign1[0], net.dale_w1),
                                        ("W2", w2, b2, net.sign2[0], net.dale_w2)):
            rows.append({"layer": layer, "dale": dale, "inhibitory_units": int((sign < 0).sum()),
                         "units": int(sign.numel()), "frac_positive_before": float((b > 0).float().mean()),
                         "frac_positive_after": float((w > 0).float().mean()),
                         "frac_zero_after": float((w == 0).float().mean()),
                         "sign_flips": sign_flip_fraction(b, w.detach()),
                         "dale_violations": sign_violations(w.detach(), sign) if dale else -1})
        fig = plots.weight_sign_maps(b1, w1.detach(), b2, w2.detach())
        return AnalysisResult(tables={"weight_signs": pd.DataFrame(rows)}, figures={"weight_sign_maps": fig},
                              scalars={"dale_violations": float(sum(max(r["dale_violations"], 0) for r in rows))})

    @analysis("ablation", "silence inhibitory inputs (zero their W1 rows) and single hidden units")
    def analyse_ablation(self, modules, ctx):
        net, n_c = modules["snn"], self.cfg.n_classes
        w1, w2 = net.effective_weights()
        variants = {"intact": (w1, w2), "no inhibitory inputs": (inhibitory_input_ablation(w1, net.sign1), w2),
                    "no excitatory inputs": (w1 * (net.sign1 < 0).float().unsqueeze(-1), w2)}
        units_w = single_unit_ablations(w1[0], w2[0])
        accs = {k: [] for k in variants}
        unit_acc = []
        for ipd, x in self._test_sets():
            for k, w in variants.items():
                accs[k].append(100 * float(score(net, ipd, x, n_c, weights=w)["acc"][0]))
            unit_acc.append(100 * score(net, ipd, x, n_c, weights=units_w)["acc"])
        rows = []
        for k, v in accs.items():
            m, h, n = mean_ci(v)
            rows.append({"condition": k, "acc_mean_pct": m, "acc_ci95": h, "n_sets": n})
        table = pd.DataFrame(rows)
        unit_acc = torch.stack(unit_acc).mean(0).cpu()
        drop = table.acc_mean_pct[0] - unit_acc
        sign2 = net.sign2[0].cpu()
        units = pd.DataFrame({"unit": range(len(drop)), "sign": sign2.numpy().astype(int),
                              "acc_pct": unit_acc.numpy(), "acc_drop_pct": drop.numpy()})
        figs = {"ablation": plots.bars(list(table.condition), table.acc_mean_pct, table.acc_ci95,
                                       "test accuracy (%)", "Input ablations", chance=self.chance),
                "unit_ablation": plots.unit_ablation(drop, sign2)}
        return AnalysisResult(tables={"input_ablation": table, "unit_ablation": units}, figures=figs,
                              scalars={"acc_no_inhibitory_inputs": float(table.acc_mean_pct[1]),
                                       "max_unit_drop": float(drop.max())})

    @analysis("tuning", "hidden firing rates and tuning curves vs IPD")
    def analyse_tuning(self, modules, ctx):
        net = modules["snn"]
        ipd, x = self._test_sets()[0]
        rates = score(net, ipd, x, self.cfg.n_classes)["rates"][0] / (self.cfg.dt_ms * 1e-3)   # (N, H) Hz
        centres, curves = tuning_curves(rates, ipd, self.cfg.tuning_bins)
        mean_hz = rates.mean(0).cpu()
        pref = preferred_ipd(centres, curves.cpu())
        sign2 = net.sign2[0].cpu()
        units = pd.DataFrame({"unit": range(len(mean_hz)), "sign": sign2.numpy().astype(int),
                              "mean_rate_hz": mean_hz.numpy(), "preferred_ipd_deg": pref.numpy(),
                              "tuning_depth_hz": (curves.amax(0) - curves.amin(0)).cpu().numpy()})
        curve_df = pd.DataFrame(curves.cpu().numpy(), columns=[f"unit_{j}" for j in range(curves.shape[1])])
        curve_df.insert(0, "ipd_deg", centres.numpy())
        return AnalysisResult(tables={"unit_rates": units, "tuning_curves": curve_df},
                              figures={"tuning": plots.tuning(centres, curves, mean_hz, sign2)},
                              scalars={"mean_rate_hz": float(mean_hz.mean())})

    def _study_settings(self) -> StudySettings:
        c = self.cfg
        spec = self._data_spec(c.sweep_batches_per_epoch)
        return StudySettings(self.task, spec, c.n_hidden, c.tau_ms * 1e-3, c.beta, c.readout_scale, c.lr,
                             c.sweep_epochs, c.sweep_patience, c.sweep_seeds,
                             c.sweep_sign_assignment or c.sign_assignment, c.val_batches * c.batch_size,
                             c.test_batches * c.batch_size, c.test_sets, derive_seed(c.seed, "study") % (2 ** 31),
                             c.compiled, c.keep_weights)

    def _run_study(self, name: str, labels: list[str], conditions: list[tuple[float, float]]):
        """Train every (condition, seed) network together, with an epoch progress bar."""
        st = self._study_settings()
        with tqdm(total=st.epochs, desc=f"{name}: {len(labels)} x {st.n_seeds} networks", unit="epoch",
                  leave=False, dynamic_ncols=True, disable=not self.ctx.env.is_main) as bar:
            def progress(epoch, hist):
                bar.set_postfix(mean_val_acc=f"{100 * sum(hist.val_acc[-1]) / len(hist.val_acc[-1]):.1f}%")
                bar.update(1)
            return run_study(labels, conditions, st, self.device, progress=progress)

    def _study_result(self, result, name: str, x_label: str):
        rows = pd.DataFrame(result.summary())
        per_net = pd.DataFrame({"condition": result.conditions, "seed": result.seeds,
                                "acc_pct": (result.test_acc.mean(0) * 100).numpy(),
                                "mae_deg": result.test_mae.mean(0).numpy(), "rate_hz": result.rate_hz.numpy(),
                                "best_val_acc_pct": [100 * a for a in result.history.best_val_acc],
                                "best_epoch": result.history.best_epoch,
                                "final_val_acc_pct": [100 * a for a in result.history.val_acc[-1]],
                                "kept_weights": self.cfg.keep_weights})
        curves = plots.learning_curves(result.history.val_acc, result.conditions, f"{name}: validation accuracy")
        return rows, per_net, curves

    @analysis("ie_sweep", "train networks over ie_ratio x seeds (batched) and test them: mean +- 95% CI")
    def analyse_ie_sweep(self, modules, ctx):
        ratios = list(self.cfg.sweep_ratios)
        labels = [f"{r:g}" for r in ratios]
        res = self._run_study("ie_sweep", labels, [(r, r) for r in ratios])
        table, per_net, curves = self._study_result(res, "ie_sweep", "ie_ratio")
        table.insert(0, "ie_ratio", ratios)
        per_net.insert(0, "ie_ratio", [float(c) for c in per_net.condition])
        fig = plots.sweep_curve(table.ie_ratio, table.acc_mean, table.acc_ci95, self.chance,
                                (per_net.ie_ratio, per_net.acc_pct))
        return AnalysisResult(tables={"ie_sweep": table, "ie_sweep_networks": per_net},
                              figures={"ie_sweep": fig, "ie_sweep_learning": curves},
                              scalars={f"acc_ie_{r:g}": float(a) for r, a in zip(ratios, table.acc_mean)})

    @analysis("inhibition_site", "where is inhibition needed: mixed vs all-excitatory inputs vs hidden")
    def analyse_inhibition_site(self, modules, ctx):
        labels = list(INHIBITION_SITES)
        res = self._run_study("inhibition_site", labels, [INHIBITION_SITES[k] for k in labels])
        table, per_net, curves = self._study_result(res, "inhibition_site", "site")
        fig = plots.bars(list(table.condition), table.acc_mean, table.acc_ci95, "test accuracy (%)",
                         "Where is inhibition needed?", chance=self.chance)
        return AnalysisResult(tables={"inhibition_site": table, "inhibition_site_networks": per_net},
                              figures={"inhibition_site": fig, "inhibition_site_learning": curves},
                              scalars={f"acc_{k.split(' (')[0].replace(' ', '_')}": float(a)
                                       for k, a in zip(table.condition, table.acc_mean)})
