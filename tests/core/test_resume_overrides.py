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


# --- the overrides of a refused or failed resume are not recorded ----------------------------
def _resumes(run):
    return yaml.safe_load((run / "meta.yaml").read_text()).get("resumed") or []


def test_a_failed_resume_records_nothing_and_a_started_one_its_overrides(run_main, tmp_path, monkeypatch):
    from tests.conftest import TOY
    from tests.toy_suite import ToySuite

    rc, err = run_main("--model", TOY, "--steps", "10", "--ckpt_every", "5", "--run_name", "t")
    assert rc == 0, err
    run = tmp_path / "runs/t"
    real_batch = ToySuite.training_batch

    def oom(self, step):  # what a batch of 10^8 does: out of memory in the first step
        if self.cfg.batch_size > 1000:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 1.49 GiB")
        return real_batch(self, step)
    monkeypatch.setattr(ToySuite, "training_batch", oom)
    rc, err = run_main("--resume", str(run), "--steps", "20", "--batch_size", "100000000")
    assert rc == 2 and "out of memory" in err and _resumes(run) == []
    # diverging in the first step: exit 3, nothing recorded (the next resume has the old rate)
    rc, err = run_main("--resume", str(run), "--steps", "20", "--nan_at_step", "10")
    assert rc == 3 and _resumes(run) == []
    # an analysis that cannot run, a recording refused by the model
    rc, err = run_main("--resume", str(run), "--no_train_model", "--analyze", "--only", "mean_response",
                       "--mode", "b")
    assert rc == 2 and "needs a recording" in err and _resumes(run) == []

    def refuse(self, modules, inputs, ctx):
        if self.cfg.mode == "b":
            from core.errors import UserError
            raise UserError("--mode: b cannot record")
        return real_record(self, modules, inputs, ctx)
    real_record = ToySuite.record
    monkeypatch.setattr(ToySuite, "record", refuse)
    rc, err = run_main("--resume", str(run), "--no_train_model", "--experiment", "--mode", "b")
    assert rc == 2 and "cannot record" in err and _resumes(run) == []
    # the plain commands still work: no override came back
    rc, err = run_main("--resume", str(run), "--no_train_model", "--experiment")
    assert rc == 0, err
    rc, err = run_main("--resume", str(run), "--steps", "20")
    assert rc == 0, err
    assert [r["overrides"] for r in _resumes(run)] == [{}, {"steps": 20}]
    # a resume killed after its first step has started: its overrides are kept for the next one
    from tests.resume_helpers import killed
    killed(run_main, monkeypatch, ToySuite, "loss", 3, "--resume", str(run), "--steps", "30", "--lr", "0.01")
    assert _resumes(run)[-1]["overrides"] == {"steps": 30, "lr": 0.01}


def test_cordsnet_resume_refuses_to_rewrite_phases_that_have_run(run_main, tmp_path, monkeypatch, capsys):
    """After phase 2, a new phase-1 rate or a new length of phases 1-2 would change nothing (or move
    steps already taken to another phase): refused with one line, nothing recorded."""
    from cordsnet.suite import CordsNetSuite

    killed(run_main, monkeypatch, CordsNetSuite, "loss", 13, *CORDSNET, "--run_name", "c")  # 2 linear steps run
    run = tmp_path / "runs/c"
    capsys.readouterr()  # the killed run's output
    before = (run / "meta.yaml").read_bytes()
    for flags, words in ((["--cnn_lr", "0.5"], "--cnn_lr: the phase it acts in (cnn) ended before step 12"),
                         (["--inversion_clip", "2"], "--inversion_clip:"),
                         (["--cnn_steps", "7"], "phase cnn has run 6 of its 6 steps"),
                         (["--inversion_steps", "3"], "phase inversion has run 4 of its 4 steps"),
                         (["--linear_steps", "0"], "phase linear (from step 10) and resumes at step 12, but the config now drops"),
                         (["--linear_steps", "1", "--anneal_steps", "5"], "phase linear has run 2 of its 3 steps")):
        rc, err = run_main("--resume", str(run), *flags)
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert rc == 2 and len(lines) == 1 and words in lines[0] and lines[0].startswith("main.py: error:"), err
        assert (run / "meta.yaml").read_bytes() == before
    # the phase being trained and the later ones may change; the same value is no change
    rc, err = run_main("--resume", str(run), "--linear_steps", "4", "--anneal_steps", "2", "--cnn_lr", "0.05")
    assert rc == 0, err
    assert load_checkpoint(run / "checkpoints/last.pt")["step"] == 19


def test_a_failed_only_v1_likeness_resume_leaves_meta_as_it_was(run_main, tmp_path):
    rc, err = run_main(*RSA, "--steps", "2", "--run_name", "v")
    assert rc == 0, err
    run = tmp_path / "runs/v"
    before = (run / "meta.yaml").read_bytes()
    rc, err = run_main("--resume", str(run), "--no_train_model", "--analyze", "--only", "v1_likeness",
                       "--n_bootstrap", "7")
    assert rc == 2 and "v1_likeness" in err and (run / "meta.yaml").read_bytes() == before
    rc, err = run_main("--resume", str(run), "--no_train_model", "--analyze", "--only", "v1_likeness")
    assert rc == 2 and (run / "meta.yaml").read_bytes() == before
