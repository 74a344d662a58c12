"""Multi-network studies: the ie_ratio sweep and "where is inhibition needed".

Both build one :class:`~snn_dales.model.DaleSNN` whose model axis holds every
(condition, seed) pair, train it with :func:`~snn_dales.train.train_networks` (one batched
forward per step for all networks) and score every network on the same fresh test sets.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from snn_dales.analysis import mean_ci, score, test_sets
from snn_dales.dale import dale_sign_mask
from snn_dales.model import DaleSNN
from snn_dales.stimulus import IPDTask
from snn_dales.train import DataSpec, TrainHistory, train_networks, validation_set

#: name -> (inhibitory fraction of inputs, of hidden units)
INHIBITION_SITES = {
    "mixed (E/I inputs and hidden)": (0.5, 0.5),
    "all-excitatory inputs": (0.0, 0.5),
    "all-excitatory hidden": (0.5, 0.0),
    "all-excitatory": (0.0, 0.0),
}


@dataclass
class StudySettings:
    """Everything a multi-network study needs besides the conditions."""

    task: IPDTask
    data: DataSpec
    n_hidden: int = 30
    tau: float = 5e-3
    beta: float = 5.0
    readout_scale: float = 0.01
    lr: float = 0.01
    epochs: int = 50
    patience: int = 10
    n_seeds: int = 5
    assignment: str = "random"
    val_size: int = 4096
    test_size: int = 2048
    n_test_sets: int = 5
    seed: int = 0
    compiled: bool = False
    keep: str = "best"        # weights each network keeps: best validation epoch's, or final


@dataclass
class StudyResult:
    conditions: list          # per model: the condition label
    seeds: list               # per model: the seed index
    test_acc: torch.Tensor    # (n_test_sets, M), fraction correct
    test_mae: torch.Tensor    # (n_test_sets, M), degrees
    rate_hz: torch.Tensor     # (M,), mean hidden rate on the test sets
    history: TrainHistory

    def summary(self) -> list[dict]:
        """Per condition: mean +- 95% CI over seeds of the per-network mean test accuracy (%)."""
        per_net = self.test_acc.mean(0) * 100
        mae = self.test_mae.mean(0)
        rows = []
        for cond in dict.fromkeys(self.conditions):
            idx = [i for i, c in enumerate(self.conditions) if c == cond]
            m, h, n = mean_ci(per_net[idx])
            mm, mh, _ = mean_ci(mae[idx])
            rows.append({"condition": cond, "acc_mean": m, "acc_ci95": h, "n_networks": n,
                         "acc_min": float(per_net[idx].min()), "acc_max": float(per_net[idx].max()),
                         "mae_deg_mean": mm, "mae_deg_ci95": mh, "rate_hz_mean": float(self.rate_hz[idx].mean())})
        return rows


def sign_masks(conditions: list[tuple[float, float]], st: StudySettings, device
               ) -> tuple[torch.Tensor, torch.Tensor, list[int], list[int]]:
    """Stacked sign masks for every (condition, seed): ``(M, I)``, ``(M, H)``, cond idx, seed idx."""
    s1, s2, ci, si = [], [], [], []
    for c, (r_in, r_hid) in enumerate(conditions):
        for k in range(st.n_seeds):
            g = torch.Generator().manual_seed(st.seed * 10_007 + k)
            s1.append(dale_sign_mask(st.task.n_inputs, r_in, st.assignment, g))
            s2.append(dale_sign_mask(st.n_hidden, r_hid, st.assignment, g))
            ci.append(c)
            si.append(k)
    return torch.stack(s1).to(device), torch.stack(s2).to(device), ci, si


def run_study(labels: list[str], conditions: list[tuple[float, float]], st: StudySettings, device,
              progress=None) -> StudyResult:
    """Train ``len(conditions) * n_seeds`` networks together and test them."""
    sign1, sign2, cidx, sidx = sign_masks(conditions, st, device)
    g = torch.Generator(device=device).manual_seed(st.seed * 31 + 5)
    model = DaleSNN(sign1, sign2, st.task.n_classes, tau=st.tau, dt=st.task.dt, beta=st.beta,
                    readout_scale=st.readout_scale, compiled=st.compiled, generator=g)
    val = validation_set(st.task, st.val_size, st.data.phase_offset, st.seed * 31 + 7, device)
    hist = train_networks(model, st.task, st.data, val, epochs=st.epochs, lr=st.lr, patience=st.patience,
                          keep=st.keep, seed=st.seed * 31 + 11, progress=progress)
    accs, maes, rates = [], [], []
    for ipd, x in test_sets(st.task, st.n_test_sets, st.test_size, st.data.phase_offset, st.seed * 31 + 13,
                            device):
        r = score(model, ipd, x, st.task.n_classes)
        accs.append(r["acc"])
        maes.append(r["mae_deg"])
        rates.append(r["rates"].mean((1, 2)) / st.task.dt)
    return StudyResult([labels[c] for c in cidx], sidx, torch.stack(accs).cpu(), torch.stack(maes).cpu(),
                       torch.stack(rates).mean(0).cpu(), hist)
