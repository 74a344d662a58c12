"""The suite end to end: init cache, exact resume, the command line."""
from __future__ import annotations

import io
import math

import pandas as pd
import pytest
import torch
import yaml

import main
from tests.dsn.helpers import make_suite, run_steps, train

TINY = dict(system="linear2d", couplings=2, hidden=[8], n=64, init_steps=20, iters_per_epoch=4, epochs=3,
            norm_batches=3, n_boot=100, test_samples=128, c0=1.0, seed=3)


def _roundtrip(obj):
    """What a checkpoint does: torch.save, then torch.load(weights_only=True)."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


def _stopped_and_resumed(cfg: dict, stop: int):
    """Train to ``stop``, checkpoint (weights only), rebuild, resume to the end."""
    first = make_suite(**cfg)
    mods = first.build()
    opt = run_steps(first, mods, 0, stop)
    ckpt = _roundtrip({"modules": {k: m.state_dict() for k, m in mods.items()},
                       "optimizer": opt.state_dict(), "suite": first.state_dict()})
    second = make_suite(**cfg)
    mods2 = second.build()
    for k, m in mods2.items():
        m.load_state_dict(ckpt["modules"][k])
    second.load_state_dict(ckpt["suite"])
    per = second.cfg.epochs * second.cfg.iters_per_epoch
    opt2 = second.make_optimizer(mods2, second.phases()[stop // per])
    opt2.load_state_dict(ckpt["optimizer"])
    run_steps(second, mods2, stop, second.cfg.steps, opt2)
    return second, mods2


def test_two_halves_equal_one_run():
    """Stop mid-epoch, checkpoint (weights only), rebuild, continue: identical to one run."""
    torch.set_num_threads(1)
    full = make_suite(**TINY)
    whole = train(full)

    second, mods2 = _stopped_and_resumed(TINY, 6)  # stopped after 1.5 epochs

    for (name, a), (_, b) in zip(whole["flow"].state_dict().items(), mods2["flow"].state_dict().items()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)
    assert full.history["entropy"] == second.history["entropy"]
    assert full.c == second.c and torch.equal(full.lam, second.lam)
    assert full.best_epoch == second.best_epoch


def test_annealed_epochs_fall_to_the_floor_and_resume_exactly():
    """anneal_fraction: lr is constant for the first part of each epoch, then falls by a half
    cosine to lr * lr_floor at the epoch's last step; the next epoch starts at lr again. The
    schedule is a function of the step, so a stopped run resumes bit for bit."""
    cfg = dict(TINY, iters_per_epoch=10, anneal_fraction=0.4, lr_floor=0.1, lr=1e-2)
    suite = make_suite(**cfg)
    phase = suite.phases()[0]
    rates = [suite.learning_rate(phase, k) for k in range(30)]
    assert rates[:6] == [1e-2] * 6 and rates[10:16] == [1e-2] * 6  # constant part of epochs 1, 2
    assert rates[9] == pytest.approx(1e-3) and rates[19] == pytest.approx(1e-3)  # floor at each epoch's end
    assert all(a > b for a, b in zip(rates[5:10], rates[6:10]))  # falling
    assert rates[7] == pytest.approx(1e-3 + 0.9e-2 * 0.5 * (1 + math.cos(math.pi * 2 / 4)))
    assert make_suite(**TINY).learning_rate(phase, 3) is None  # off by default (published)
    torch.set_num_threads(1)
    full = make_suite(**cfg)
    whole = train(full)
    second, mods2 = _stopped_and_resumed(cfg, 17)
    for (name, a), (_, b) in zip(whole["flow"].state_dict().items(), mods2["flow"].state_dict().items()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)


def test_restarts_start_from_seed_plus_r_and_resume_exactly():
    """restarts = 2: restart 2 begins from the pre-trained flow of seed + 1 with lambda = 0
    and c = c0; a run stopped inside restart 2 and resumed equals one run; the kept epoch is
    the maximum-entropy accepted one over both restarts."""
    torch.set_num_threads(1)
    cfg = dict(TINY, restarts=2, epochs=2)
    full = make_suite(**cfg)
    per = full.cfg.epochs * full.cfg.iters_per_epoch
    assert [p.name for p in full.phases()] == ["al1", "al2"] and full.cfg.steps == 2 * per
    mods = full.build()
    run_steps(full, mods, 0, per)
    assert full.restart == 0 and float(full.lam.abs().sum()) > 0
    ctx_flow = make_suite(**dict(TINY, seed=TINY["seed"] + 1)).build()["flow"]
    full._begin_restart(mods["flow"], 1)  # what the first step of phase al2 does
    for (name, a), (_, b) in zip(mods["flow"].state_dict().items(), ctx_flow.state_dict().items()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)
    assert full.restart == 1 and float(full.lam.abs().sum()) == 0 and full.c == full.cfg.c0

    whole_suite = make_suite(**cfg)
    whole = train(whole_suite)
    assert whole_suite.history["restart"] == [0, 0, 1, 1]
    second, mods2 = _stopped_and_resumed(cfg, per + 5)  # stopped inside restart 2
    for (name, a), (_, b) in zip(whole["flow"].state_dict().items(), mods2["flow"].state_dict().items()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)
    assert whole_suite.history["entropy"] == second.history["entropy"]
    assert whole_suite.history["restart"] == second.history["restart"]
    H, ok = whole_suite.history["entropy"], whole_suite.history["accepted"]
    accepted = [h for h, a in zip(H, ok) if a]
    assert whole_suite.best_epoch == (H.index(max(accepted)) if accepted else -1)


def test_constraint_scale_is_a_change_of_units():
    """Scaling every residual by s is the same AL as the raw one with c / s^2 and lambda / s:
    the same flow after two epochs, lambda_scaled = s lambda_raw, E[T] reported in raw units."""
    from core.errors import UserError

    torch.set_num_threads(1)
    s = 4.0
    raw = make_suite(**dict(TINY, system="gaussian", c0=0.5))
    scaled = make_suite(**dict(TINY, system="gaussian", c0=0.5 * s * s, constraint_scale=[s] * 4))
    a, b = train(raw), train(scaled)
    for (name, x), (_, y) in zip(a["flow"].state_dict().items(), b["flow"].state_dict().items()):
        torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-5, msg=name)
    torch.testing.assert_close(scaled.lam, s * raw.lam, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(torch.stack(scaled.history["R"]), torch.stack(raw.history["R"]), rtol=1e-4, atol=1e-6)
    for bad, match in (([1.0], "constraint_scale"), ([1.0, -1.0, 1.0, 1.0], "positive")):
        with pytest.raises(UserError, match=match):
            make_suite(**dict(TINY, system="gaussian", constraint_scale=bad))


def test_pretrained_flow_is_cached_and_reused(tmp_path, monkeypatch):
    torch.set_num_threads(1)
    cache = tmp_path / "cache"
    a = make_suite(**TINY, init_cache=str(cache))
    flow_a = a.build()["flow"]
    files = list(cache.glob("*.pt"))
    assert len(files) == 1 and not a.init_cached
    entry = torch.load(files[0], weights_only=True)
    assert entry["kl"] == pytest.approx(a.init_kl)

    b = make_suite(**TINY, init_cache=str(cache))
    flow_b = b.build()["flow"]
    assert b.init_cached and b.init_kl == a.init_kl
    for x, y in zip(flow_a.state_dict().values(), flow_b.state_dict().values()):
        assert torch.equal(x, y)
    # the cache and a fresh pre-training agree exactly (the cache only saves time)
    c = make_suite(**TINY, init_cache="off")
    for x, y in zip(flow_a.state_dict().values(), c.build()["flow"].state_dict().values()):
        assert torch.equal(x, y)
    # another key (sigma_init) gets its own entry; the env var picks the folder under "auto"
    monkeypatch.setenv("DSN_INIT_CACHE", str(cache))
    make_suite(**{**TINY, "sigma_init": 2.0}, init_cache="auto").build()
    assert len(list(cache.glob("*.pt"))) == 2
    # a corrupt entry is ignored and rewritten
    files[0].write_bytes(b"not a checkpoint")
    d = make_suite(**TINY, init_cache=str(cache))
    d.build()
    assert not d.init_cached and torch.load(files[0], weights_only=True)["kl"] == pytest.approx(a.init_kl)


def test_cli_smoke(tmp_path):
    torch.set_num_threads(1)
    cache = tmp_path / "cache"
    argv = ["--config", "configs/dsn_quick.yaml", "--epochs", "2", "--iters_per_epoch", "1",
            "--init_steps", "2", "--n", "64", "--norm_batches", "2", "--n_boot", "100", "--n_plot", "200",
            "--n_hessian", "2", "--maxent_samples", "20000", "--init_cache", str(cache),
            "--viz", "--analyze", "--out_dir", str(tmp_path)]
    assert main.main(argv + ["--run_name", "smoke"]) == 0
    run = tmp_path / "smoke"
    expected = ["config.yaml", "meta.yaml", "checkpoints/last.pt",
                "figures/viz/traces.png", "figures/viz/pairs_z.png", "figures/viz/pairs_T.png",
                "figures/viz/behaviour.png", "figures/hessian/hessian_directions.png",
                "tables/samples/samples.csv", "tables/samples/history.csv", "tables/hessian/hessian.csv",
                "tables/reference/constraints.csv", "tables/reference/summary.csv",
                "figures/reference/marginals.png", "tables/analysis/summary.csv"]
    missing = [p for p in expected if not (run / p).is_file()]
    assert not missing, missing
    assert len(pd.read_csv(run / "tables/samples/history.csv")) == 2
    assert len(pd.read_csv(run / "tables/samples/samples.csv")) == 200
    assert list(pd.read_csv(run / "tables/reference/constraints.csv")["statistic"]) == [
        "Re l1", "Im l1/2pi", "(Re l1)^2", "(Im l1/2pi)^2"]
    assert len(list(cache.glob("*.pt"))) == 1
    # the second run takes the pre-trained flow from the cache
    assert main.main(argv + ["--run_name", "again", "--no_train_model", "--load_model", str(run)]) == 0
    assert main.main(argv + ["--run_name", "third"]) == 0
    ckpt = torch.load(tmp_path / "third/checkpoints/last.pt", weights_only=True)
    assert ckpt["suite_state"]["init_cached"] is True
    # --resume of a finished run loads the suite state (kept flow, history) and runs later stages
    assert main.main(["--resume", str(run), "--viz", "--viz_type", "traces"]) == 0
    # steps is derived, not saved: resuming with more epochs extends the run
    assert "steps" not in yaml.safe_load((run / "config.yaml").read_text())
    assert main.main(["--resume", str(run), "--epochs", "3"]) == 0
    assert len(torch.load(run / "checkpoints/last.pt", weights_only=True)["suite_state"]["entropy"]) == 3
    # bad input is a one-line error, exit status 2
    assert main.main(argv + ["--run_name", "bad", "--mu", "[1, 2]"]) == 2


@pytest.mark.parametrize("preset", sorted(p.name for p in __import__("pathlib").Path("configs").glob("dsn_*.yaml")))
def test_presets_are_valid(preset):
    from core.config import from_dict, load_preset
    from dsn.suite import DSNSuite, build_system

    values = load_preset(f"configs/{preset}")
    assert values.pop("model") == "dsn"
    cfg = from_dict(DSNSuite.Config, values)
    assert cfg.steps == cfg.epochs * cfg.iters_per_epoch
    build_system(cfg)


def test_init_centre_moves_the_pretrained_gaussian():
    from core.errors import UserError
    from dsn.config import DSNConfig
    from dsn.suite import build_system

    suite = make_suite(system="stg", couplings=2, hidden=[8], n=256, init_steps=300, sigma_init=0.2,
                       init_centre=[6.5, 1.5], seed=0)
    flow = suite.build()["flow"]
    with torch.no_grad():
        z, _ = flow.rsample_and_log_prob(4000, torch.Generator().manual_seed(1))
    torch.testing.assert_close(z.mean(0), torch.tensor([6.5, 1.5]), rtol=0, atol=0.05)
    torch.testing.assert_close(z.std(0), torch.tensor([0.2, 0.2]), rtol=0.15, atol=0)
    for bad in ([6.5], [9.0, 1.5]):
        with pytest.raises(UserError, match="init_centre"):
            build_system(DSNConfig(system="stg", init_centre=bad))


def test_score_constraint_gradient_trains_towards_the_constraint():
    """With the score-function estimate (no dT/dz used) a Gaussian-moment system still moves
    E_q[T] towards mu; batch norm is refused in that mode."""
    from core.errors import UserError

    suite = make_suite(system="gaussian", couplings=2, hidden=[8], n=256, init_steps=50, iters_per_epoch=300,
                       epochs=1, c0=10.0, norm_batches=3, n_boot=100, test_samples=256, seed=2,
                       constraint_grad="score", sigma_init=1.0)
    modules = suite.build()
    flow = modules["flow"]
    with torch.no_grad():
        before = (suite.system.suff_stats(flow.rsample_and_log_prob(4000)[0]).mean(0) - suite.mu).abs().sum()
    run_steps(suite, modules, 0, 300)
    with torch.no_grad():
        after = (suite.system.suff_stats(flow.rsample_and_log_prob(4000)[0]).mean(0) - suite.mu).abs().sum()
    assert after < 0.5 * before, (float(before), float(after))
    with pytest.raises(UserError, match="constraint_grad"):
        make_suite(system="gaussian", constraint_grad="score", batch_norm=True)
