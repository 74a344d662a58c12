"""The paper preset follows the source: all epochs, final weights (early stopping is an option);
the family's thread count."""
from pathlib import Path

import pytest
import torch
import yaml

from core.checkpoint import load_checkpoint
from core.config import from_dict, load_preset
from core.store import RecordingStore
from core.suite import RunContext
from snn_dales.config import SNNDalesConfig
from snn_dales.dale import dale_sign_mask
from snn_dales.model import DaleSNN
from snn_dales.stimulus import IPDTask
from snn_dales.suite import SNNDalesSuite
from snn_dales.train import DataSpec, train_networks, validation_set

PAPER = Path(__file__).resolve().parents[2] / "configs" / "snn_dales_paper.yaml"
SMALL = ["--steps", "4", "--batch_size", "8", "--batches_per_epoch", "2", "--eval_every", "2",
         "--val_batches", "1", "--duration_steps", "30", "--exp_trials", "6", "--record_batch", "4"]


def _paper_config(**overrides):
    values = {k: v for k, v in load_preset(PAPER).items() if k != "model"}
    return from_dict(SNNDalesConfig, {**values, **overrides})


def test_paper_preset_trains_every_epoch_and_keeps_the_final_weights():
    cfg = _paper_config()
    assert cfg.keep_weights == "final"
    assert cfg.early_stop_patience == 0 and cfg.sweep_patience == 0
    assert cfg.steps == 50 * cfg.batches_per_epoch and cfg.sweep_epochs == 50 and cfg.train_set == "fixed"
    assert SNNDalesSuite(RunContext(cfg=cfg, device=torch.device("cpu"))).selection_metric is None
    best = _paper_config(keep_weights="best", early_stop_patience=10, sweep_patience=10)  # the option
    assert SNNDalesSuite(RunContext(cfg=best, device=torch.device("cpu"))).selection_metric == ("val_acc", "max")


def test_final_weights_need_no_early_stopping(run_main):
    rc, err = run_main("--config", str(PAPER), "--early_stop_patience", "3")
    assert rc == 2 and "--early_stop_patience: must be 0 with --keep_weights final" in err
    rc, err = run_main("--config", str(PAPER), "--sweep_patience", "3")
    assert rc == 2 and "--sweep_patience: must be 0" in err


def test_paper_preset_cli_uses_the_final_weights_for_later_stages(run_main, tmp_path):
    rc, err = run_main("--config", str(PAPER), *SMALL, "--gen_exp_stim", "--experiment",
                       "--run_name", "paper")
    assert rc == 0, err
    run = tmp_path / "runs" / "paper"
    assert not (run / "checkpoints/best.pt").exists() and "using best checkpoint" not in err
    last = load_checkpoint(run / "checkpoints/last.pt")
    assert last["step"] == 4                                  # every step ran
    assert (run / "tables/training/evaluations.csv").read_text().count("\n") == 3  # header + 2 epochs
    # the experiment recorded the network with the final weights
    cfg = from_dict(SNNDalesConfig, {k: v for k, v in yaml.safe_load((run / "config.yaml").read_text()).items()
                                     if k != "model"})
    net = SNNDalesSuite(RunContext(cfg=cfg, device=torch.device("cpu"))).build()["snn"]
    net.load_state_dict(last["modules"]["snn"])
    spikes = torch.from_numpy(RecordingStore.open(run / "recordings/stimuli.zarr").read("spikes")).bool()
    recorded = torch.from_numpy(RecordingStore.open(run / "recordings/activity.zarr").read("logits"))
    with torch.no_grad():
        torch.testing.assert_close(net(spikes)[0][0], recorded)


def _two_networks():
    g = torch.Generator().manual_seed(0)
    s1 = torch.stack([dale_sign_mask(40, 0.5, "random", g) for _ in range(2)])
    s2 = torch.stack([dale_sign_mask(10, 0.5, "random", g) for _ in range(2)])
    return DaleSNN(s1, s2, 4, generator=g)


def test_train_networks_keep_final_returns_the_last_epochs_weights():
    task = IPDTask(n_per_ear=20, duration_steps=30, n_classes=4)
    spec = DataSpec(batch_size=16, batches_per_epoch=2)
    val = validation_set(task, 32, "per_sample", 1, "cpu")
    snapshots = []
    model = _two_networks()
    hist = train_networks(model, task, spec, val, epochs=3, keep="final", seed=2,
                          progress=lambda e, h: snapshots.append(model.w1.detach().clone()))
    assert hist.epochs_run == 3 and len(snapshots) == 3
    assert torch.equal(model.w1, snapshots[-1])
    again = _two_networks()
    train_networks(again, task, spec, val, epochs=3, keep="best", seed=2)
    for m in range(2):   # keep='best' restores the best epoch, which the history names
        assert torch.equal(again.w1[m], snapshots[hist.best_epoch[m] - 1][m])
    with pytest.raises(ValueError, match="patience"):
        train_networks(_two_networks(), task, spec, val, epochs=1, patience=2, keep="final")
