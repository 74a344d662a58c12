"""`--resume RUN --lr X` applies X in every family (the optimiser's state comes back from the
checkpoint, its settings from the config with the override); a resume that fails records nothing."""
import pytest
import torch
import yaml

from core.checkpoint import load_checkpoint
from tests.cordsnet.test_resume import SMALL as CORDSNET
from tests.resume_helpers import killed

RSA = ["--model", "rsa", "--n_train", "20", "--batch_size", "10", "--n_test", "20", "--eval_every", "2",
       "--v1_source", "synthetic", "--ckpt_every", "2"]
SNN = ["--config", "configs/snn_dales_quick.yaml", "--batch_size", "8", "--batches_per_epoch", "2",
       "--eval_every", "2", "--val_batches", "1", "--test_batches", "1", "--duration_steps", "30",
       "--ckpt_every", "2"]


def _params(ckpt, module):
    """The trainable tensors of a module (not batch-norm statistics, which move without a rate)."""
    return {k: v for k, v in ckpt["modules"][module].items()
            if v.is_floating_point() and "running_" not in k}


def _rates(ckpt):
    return [g["lr"] for g in ckpt["optimizer"]["param_groups"]]


@pytest.mark.parametrize("family, argv, module", [("rsa", RSA, "net"), ("snn_dales", SNN, "snn")])
def test_resume_with_a_new_rate_uses_it(run_main, tmp_path, family, argv, module):
    rc, err = run_main(*argv, "--steps", "2", "--lr", "0.05", "--run_name", "r")
    assert rc == 0, err
    run = tmp_path / "runs/r"
    before = load_checkpoint(run / "checkpoints/last.pt")
    if module not in before["modules"]:
        pytest.fail(f"{family}: modules are {list(before['modules'])}")
    assert _rates(before) == [0.05]
    rc, err = run_main("--resume", str(run), "--steps", "4", "--lr", "0")
    assert rc == 0, err
    after = load_checkpoint(run / "checkpoints/last.pt")
    assert after["step"] == 4 and _rates(after) == [0.0]
    b, a = _params(before, module), _params(after, module)
    assert all(torch.equal(b[k], a[k]) for k in b), "rate 0 must leave the weights as they were"
    assert yaml.safe_load((run / "meta.yaml").read_text())["resumed"][-1]["overrides"] == {"steps": 4, "lr": 0.0}


def test_cordsnet_resume_with_new_rates_uses_them_in_phases_2_to_5(run_main, tmp_path, monkeypatch):
    from cordsnet.suite import CordsNetSuite

    killed(run_main, monkeypatch, CordsNetSuite, "loss", 8, *CORDSNET, "--run_name", "c")  # checkpoint: step 7
    run = tmp_path / "runs/c"
    before = load_checkpoint(run / "checkpoints/last.pt")
    assert before["step"] == 7 and _rates(before) == [0.001]  # inside the inversion (steps 6-9)
    killed(run_main, monkeypatch, CordsNetSuite, "loss", 4, "--resume", str(run), "--inversion_lr", "0",
           "--rnn_lr", "0.25")
    after = load_checkpoint(run / "checkpoints/last.pt")
    assert after["step"] == 10 and after["phase_index"] == 1 and _rates(after) == [0.0]
    b, a = _params(before, "rnn"), _params(after, "rnn")
    assert all(torch.equal(b[k], a[k]) for k in b), "rate 0 must leave the weights as they were"
    killed(run_main, monkeypatch, CordsNetSuite, "loss", 2, "--resume", str(run))  # the overrides stay
    after = load_checkpoint(run / "checkpoints/last.pt")
    assert after["step"] == 11 and after["phase_index"] == 2 and _rates(after) == [0.25]
    rc, err = run_main("--resume", str(run), "--rnn_lr", "0.125")  # inside the linear phase
    assert rc == 0, err
    assert _rates(load_checkpoint(run / "checkpoints/last.pt")) == [0.125]
