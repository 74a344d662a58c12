"""core.runplan on its own: which run, config, checkpoint, data root and weights a command uses,
for a new run, --load_model, --resume (training or --no_train_model) and analysis_main. The runs
are made by hand (config.yaml, meta.yaml, checkpoints whose weights are known constants), so
every expected value is written down before the plan is asked."""
from __future__ import annotations

import contextlib
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from core import config as C
from core.checkpoint import checkpoint_dict, load_checkpoint, save_checkpoint
from core.errors import UserError
from core.rundir import RunDir
from core.runlock import RunLock
from core.runplan import (RunPlan, arch_from_checkpoint, config_values, resume_command, run_data_root,
                          starting_preset)
from core.suite import RunContext
from tests.conftest import TOY
from tests.toy_suite import ToyConfig, ToySuite

CPU = torch.device("cpu")


def toy(cfg=None, **values):
    cfg = cfg or C.from_dict(ToyConfig, values)
    suite = ToySuite(RunContext(cfg=cfg, device=CPU))
    return suite, suite.build()


def save_toy(path: Path, weight: float, step: int, **values) -> Path:
    """A toy checkpoint at ``step`` whose weights are all ``weight``."""
    suite, modules = toy(**values)
    with torch.no_grad():
        for p in modules["net"].parameters():
            p.fill_(weight)
    save_checkpoint(checkpoint_dict(suite, modules, step=step), path)
    return path


def make_run(root: Path, *, last: float | None = 1.0, best: float | None = 2.0, data_root: str | None = None,
             **values) -> RunDir:
    """A finished toy run: config.yaml, meta.yaml, last.pt (step 5) and best.pt (step 3) as asked."""
    run = RunDir(root)
    run.checkpoints.mkdir(parents=True)
    run.recordings.mkdir(parents=True)
    cfg = C.from_dict(ToyConfig, values)
    run.write_config({"model": TOY, **C.to_dict(cfg, derived=False)})
    run.write_meta(model=TOY, seed=cfg.seed, device=CPU, world_size=1,
                   extra={"data_root": data_root} if data_root else None)
    if last is not None:
        save_toy(run.last_checkpoint, last, 5, **values)
    if best is not None:
        save_toy(run.best_checkpoint, best, 3, **values)
    return run


def main_args(**kw):
    """What main.parse_args hands on (the fields a plan reads)."""
    base = dict(model=TOY, resume=None, load_model=None, overrides={}, no_train_model=False,
                out_dir="runs", run_name=None, data_root=None)
    return SimpleNamespace(**{**base, **kw})


def plan_for(args, held=None, **values):
    cfg = C.from_dict(ToyConfig, values)
    return RunPlan.for_main(args, ToySuite, cfg, held=held)


def weights_of(modules) -> float:
    w = modules["net"].weight.detach()
    assert torch.all(w == w.flatten()[0]), "expected constant weights"
    return float(w.flatten()[0])


def lock_refused(path: Path) -> bool:
    try:
        RunLock(path, "--test").acquire().release()
    except UserError:
        return True
    return False


# -- the config ----------------------------------------------------------------------------

def test_config_values_layer_preset_then_resumes_then_flags(tmp_path):
    run = make_run(tmp_path / "r", last=None, best=None, lr=0.1, seed=7)
    run.note_resume(device=CPU, world_size=1, overrides={"lr": 0.2, "batch_size": 4})
    preset, source, resumed = starting_preset(str(run.path), None)
    assert source == str(run.path / "config.yaml") and resumed.path == run.path and preset["model"] == TOY
    values = config_values(preset, {"lr": 0.3}, None, resumed)
    assert values["lr"] == 0.3 and values["batch_size"] == 4 and values["seed"] == 7 and "model" not in values
    assert config_values(preset, {}, 7, resumed)["seed"] == 7  # the same seed is fine
    with pytest.raises(UserError, match="keeps its seed"):
        config_values(preset, {}, 8, resumed)
    assert config_values({"model": "x", "seed": 1}, {}, 8)["seed"] == 8  # a new run takes --seed
    with pytest.raises(UserError, match="drop --config"):
        starting_preset(str(run.path), "configs/whatever.yaml")
    assert starting_preset(None, None) == ({}, None, None)


def test_data_root_given_else_the_runs_else_data(tmp_path):
    run = make_run(tmp_path / "r", last=None, best=None, data_root="/data/elsewhere")
    assert run_data_root("x", run) == Path("x")
    assert run_data_root(None, run) == Path("/data/elsewhere")
    assert run_data_root(None, make_run(tmp_path / "s", last=None, best=None)) == Path("data")
    assert run_data_root(None) == Path("data")


def test_arch_keys_come_from_the_checkpoint(tmp_path):
    ckpt = load_checkpoint(save_toy(tmp_path / "a.pt", 0.5, 1, n_in=3))
    cfg = C.from_dict(ToyConfig, {"lr": 0.2})
    got = arch_from_checkpoint(ToySuite, cfg, ckpt, {}, "a.pt")
    assert got.n_in == 3 and got.lr == 0.2  # architecture from the checkpoint, the rest from the command
    assert arch_from_checkpoint(ToySuite, cfg, ckpt, {"n_in": 3}, "a.pt").n_in == 3
    with pytest.raises(UserError, match="--n_in: the checkpoint a.pt was built with n_in=3"):
        arch_from_checkpoint(ToySuite, cfg, ckpt, {"n_in": 4}, "a.pt")


# -- main.py: new, --load_model, --resume --------------------------------------------------

def test_new_run(tmp_path):
    plan = plan_for(main_args(out_dir=str(tmp_path / "runs"), run_name="n", data_root=str(tmp_path / "d")), seed=3)
    assert (plan.mode, plan.run, plan.start, plan.current) == ("new", None, None, None)
    assert plan.data_root == tmp_path / "d" and plan.train
    suite, modules = toy(plan.cfg)
    assert plan.load_weights(suite, modules) == "initial weights (seed 3)" and not plan.notes
    assert not plan.uses_initial_weights  # it trains
    ctx = RunContext(cfg=plan.cfg, device=CPU)
    with contextlib.ExitStack() as held:
        run = plan.open_run(suite, modules, ctx, held)
        assert run.path == tmp_path / "runs/n" and plan.created.path == run.path and ctx.run is run
        assert plan.current is run and lock_refused(run.path)
        assert run.read_config() == {"model": TOY, **C.to_dict(plan.cfg, derived=False)}
        meta = run.read_meta()
        assert meta["loaded_from"] is None and meta["data_root"] == str((tmp_path / "d").resolve())
        assert not any(run.checkpoints.glob("*.pt"))  # nothing to copy: training writes them
    plan.drop_if_empty()  # made by this command and empty: removed
    assert not run.path.exists()


def test_new_run_without_training_uses_the_initial_weights():
    plan = plan_for(main_args(no_train_model=True))
    suite, modules = toy(plan.cfg)
    plan.load_weights(suite, modules)
    assert plan.uses_initial_weights and not plan.train


def test_load_model_from_a_run_takes_best_and_never_writes_it(tmp_path):
    src = make_run(tmp_path / "src", last=1.0, best=2.0, n_in=3)
    before = {p.name: p.read_bytes() for p in src.checkpoints.iterdir()}
    plan = plan_for(main_args(load_model=str(src.path), out_dir=str(tmp_path / "runs"), run_name="l",
                              no_train_model=True), lr=0.2)
    assert plan.mode == "load_model" and plan.start_path == src.best_checkpoint
    assert plan.cfg.n_in == 3 and plan.cfg.lr == 0.2 and plan.run is None
    assert plan.data_root == Path("data")  # a new run: not the source run's data root
    suite, modules = toy(plan.cfg)
    assert plan.load_weights(suite, modules) == f"{src.best_checkpoint} (step 3)"
    assert weights_of(modules) == 2.0 and not plan.uses_initial_weights and not plan.notes
    with contextlib.ExitStack() as held:
        run = plan.open_run(suite, modules, ctx := RunContext(cfg=plan.cfg, device=CPU), held)
        assert ctx.run is run and run.read_meta()["loaded_from"] == str(src.best_checkpoint)
        copy = load_checkpoint(run.last_checkpoint)  # the new run starts from a copy at step 0
        assert copy["step"] == 0 and torch.equal(copy["modules"]["net"]["weight"], torch.full((1, 3), 2.0))
    assert {p.name: p.read_bytes() for p in src.checkpoints.iterdir()} == before
    plan.drop_if_empty()  # it holds a checkpoint now: kept
    assert run.path.exists()


def test_load_model_file_and_conflicting_architecture(tmp_path):
    path = save_toy(tmp_path / "w.pt", 0.25, 9, n_in=2)
    plan = plan_for(main_args(load_model=str(path)))
    assert plan.start_path == path and plan.cfg.n_in == 2 and plan.start["step"] == 9
    with pytest.raises(UserError, match="architecture keys cannot change"):
        plan_for(main_args(load_model=str(path), overrides={"n_in": 4}), n_in=4)
    with pytest.raises(UserError, match="--load_model: no such run folder"):
        plan_for(main_args(load_model=str(tmp_path / "nothing")))


def test_resume_continues_last_in_place(tmp_path):
    run = make_run(tmp_path / "r", last=1.0, best=2.0, data_root=str(tmp_path / "d"), n_in=3)
    with contextlib.ExitStack() as held:
        plan = plan_for(main_args(resume=str(run.path), overrides={"lr": 0.5}), held=held, lr=0.5)
        assert lock_refused(run.path)  # locked from the start: nothing else writes it meanwhile
        assert plan.mode == "resume" and plan.run.path == run.path and plan.current is None
        assert plan.start_path == run.last_checkpoint and plan.cfg.n_in == 3 and plan.cfg.lr == 0.5
        assert plan.data_root == tmp_path / "d" and plan.training_resumes_from is plan.start
        suite, modules = toy(plan.cfg)
        assert plan.load_weights(suite, modules) == f"{run.last_checkpoint} (step 5)"
        assert weights_of(modules) == 1.0 and not plan.notes
        ctx = RunContext(cfg=plan.cfg, device=CPU)
        assert plan.open_run(suite, modules, ctx, held) is plan.run and plan.created is None
        assert run.read_config()["lr"] == ToyConfig().lr  # config.yaml stays the first part's
        assert "resumed" not in run.read_meta()
        ctx.resume_started()  # once something has been done: the resume and its overrides noted
        assert run.read_meta()["resumed"][-1]["overrides"] == {"lr": 0.5}
        # training ended: the later stages use best.pt, as the run's first part did
        assert plan.after_training(suite, modules) == f"{run.best_checkpoint} (step 3)"
        assert weights_of(modules) == 2.0
    assert not lock_refused(run.path)  # released with `held`


def test_resume_without_training_uses_best_and_says_so(tmp_path):
    run = make_run(tmp_path / "r", last=1.0, best=2.0)
    plan = plan_for(main_args(resume=str(run.path), no_train_model=True))
    suite, modules = toy(plan.cfg)
    assert plan.load_weights(suite, modules) == f"{run.best_checkpoint} (step 3)"
    assert weights_of(modules) == 2.0 and plan.notes == ["using best checkpoint (val_mse) for later stages"]
    assert not plan.uses_initial_weights
    # without best.pt: the last weights
    run2 = make_run(tmp_path / "s", last=1.0, best=None)
    plan = plan_for(main_args(resume=str(run2.path), no_train_model=True))
    suite, modules = toy(plan.cfg)
    assert plan.load_weights(suite, modules) == f"{run2.last_checkpoint} (step 5)" and weights_of(modules) == 1.0


def test_resume_of_a_run_that_never_saved(tmp_path):
    run = make_run(tmp_path / "r", last=None, best=None, seed=4)
    plan = plan_for(main_args(resume=str(run.path)), seed=4)
    assert plan.start is None and plan.training_resumes_from is None
    suite, modules = toy(plan.cfg)
    assert plan.load_weights(suite, modules) == "initial weights (seed 4)"
    with pytest.raises(UserError, match="not a run directory"):
        plan_for(main_args(resume=str(tmp_path / "nothing")))


def test_resume_command_repeats_the_stages():
    args = SimpleNamespace(no_train_model=True, viz=False, gen_exp_stim=False, experiment=True, analyze=True,
                           viz_type="all", only="a,b", stimuli=None)
    assert resume_command(Path("runs/r"), args) == \
        "python main.py --resume runs/r --no_train_model --experiment --analyze --only a,b"


# -- analysis_main.py ----------------------------------------------------------------------

def test_analysis_reads_the_run_config_and_best(tmp_path, capsys):
    run = make_run(tmp_path / "r", last=1.0, best=2.0, data_root=str(tmp_path / "d"), n_in=3, lr=0.1)
    with contextlib.ExitStack() as held:
        plan = RunPlan.for_analysis(run.path, {"lr": "0.3"}, held=held)
        assert lock_refused(run.path)
    assert plan.mode == "analysis" and plan.run.path == run.path and plan.suite_cls is ToySuite
    assert plan.cfg.n_in == 3 and plan.cfg.lr == 0.3 and plan.data_root == tmp_path / "d"
    assert plan.start_path == run.best_checkpoint and plan.start is None  # read when the model is built
    suite, modules = toy(plan.cfg)
    assert plan.load_weights(suite, modules) == f"{run.best_checkpoint} (step 3)" and weights_of(modules) == 2.0
    assert RunPlan.for_analysis(run.path, data_root="x").data_root == Path("x")
    run.best_checkpoint.unlink()
    assert RunPlan.for_analysis(run.path).start_path == run.last_checkpoint


def test_analysis_of_a_run_without_checkpoints(tmp_path, capsys):
    run = make_run(tmp_path / "r", last=None, best=None)
    plan = RunPlan.for_analysis(run.path)
    suite, modules = toy(plan.cfg)
    before = modules["net"].weight.detach().clone()
    plan.load_weights(suite, modules)
    assert torch.equal(modules["net"].weight, before)
    assert "the run has no checkpoint; analysing the initial weights" in capsys.readouterr().err


def test_analysis_refuses_bad_sets_and_bad_runs(tmp_path):
    run = make_run(tmp_path / "r", last=None, best=None)
    with pytest.raises(UserError, match="lr"):
        RunPlan.for_analysis(run.path, {"lr": "-1"})
    with pytest.raises(UserError, match="not a run directory"):
        RunPlan.for_analysis(tmp_path / "nothing")
    (run.path / "config.yaml").write_text("")
    with pytest.raises(UserError, match="is empty"):
        RunPlan.for_analysis(run.path)


def test_mode_is_checked():
    with pytest.raises(ValueError, match="mode must be one of"):
        RunPlan(mode="other", suite_cls=ToySuite, model=TOY, cfg=ToyConfig())
