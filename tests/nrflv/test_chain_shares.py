"""The pieces that let nrflv split its chains between processes: a sampler over a share of the
batch draws the whole batch's noise and keeps its rows, a sharded replay buffer gives every rank
the chains one buffer would, and a batch that does not divide is refused before anything runs."""
from __future__ import annotations

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from core import config as C
from core.errors import UserError
from core.runtime import DistEnv
from core.suite import RunContext
from nrflv.config import NRFLVConfig
from nrflv.replay import ReplayBuffer
from nrflv.sghmc import SGHMC

SHAPES = [(3, 4, 4), (8, 2, 2), (5,)]


def _states(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.rand((n, *s), generator=g) * 2 - 1 for s in SHAPES]


def _grad(a):
    """dE/ds of E = sum_i a_i |s_i|^2 / 2 + sum(s_0) s_1[:, 0] (chains independent, layers coupled)."""
    def fn(states):
        g = [a_i * s for a_i, s in zip(a, states)]
        g[0] = g[0] + states[1][:, 0, 0, 0].reshape(-1, 1, 1, 1)
        return g
    return fn


@pytest.mark.parametrize("method, extra", [("sghmc", {"non_diag_inv_mass": True, "num_burn_in_steps": 4}),
                                           ("sghmc", {"fixed": [True, False, False]}),
                                           ("langevin", {})])
def test_a_share_of_the_batch_follows_the_same_chains(method, extra):
    kw = dict(method=method, sampling_step_size=0.1, momentum_param=0.1, max_sq_sigma=0.05, min_sq_sigma=0.0,
              **extra)
    whole = _states(4)
    halves = [[s[a:b].clone() for s in whole] for a, b in ((0, 2), (2, 4))]
    grad = _grad([1.0, 2.0, 0.5])
    SGHMC(whole, generator=torch.Generator().manual_seed(7), **kw).run(grad, 8)
    for half, first in zip(halves, (0, 2)):
        SGHMC(half, generator=torch.Generator().manual_seed(7), chains=(first, 4), **kw).run(grad, 8)
    for i, s in enumerate(whole):
        assert torch.equal(torch.cat([halves[0][i], halves[1][i]]), s), i
    # without the share, the second half would get the first half's noise: different chains
    other = [s[2:4].clone() for s in _states(4)]
    SGHMC(other, generator=torch.Generator().manual_seed(7), **kw).run(grad, 8)
    assert not torch.equal(other[1], halves[1][1])


def test_clipping_norm_over_every_share():
    """With ``reduce`` summing the shares' squared norms, each share clips by the whole batch's norm."""
    whole = _states(4, seed=3)
    halves = [[s[a:b].clone() for s in whole] for a, b in ((0, 2), (2, 4))]
    grad = _grad([30.0, 50.0, 20.0])  # large: the clip acts
    kw = dict(sampling_step_size=0.1, momentum_param=0.1, num_burn_in_steps=2, clip_grad_norm=1.0)
    SGHMC(whole, generator=torch.Generator().manual_seed(1), **kw).run(grad, 5)
    box = {}

    def reduce(sq):  # the two shares step in turn; each sees the sum of both squared norms
        return box["total"]

    samplers = [SGHMC(h, generator=torch.Generator().manual_seed(1), chains=(f, 4), reduce=reduce, **kw)
                for h, f in zip(halves, (0, 2))]
    for _ in range(5):
        gs = [grad(h) for h in halves]
        box["total"] = sum(sum(g.double().square().sum() for g in g_h) for g_h in gs)
        for smp, g in zip(samplers, gs):
            smp.step(g)
    for i, s in enumerate(whole):
        torch.testing.assert_close(torch.cat([halves[0][i], halves[1][i]]), s, rtol=1e-6, atol=1e-7)


def _tagged(ids):
    ids = torch.as_tensor(list(ids), dtype=torch.float32)
    return [(10 + ids).view(-1, *[1] * len(s)).expand(-1, *s).clone() for s in SHAPES]


def _buffer_script(rank, world, directory, port, out):
    """Pushes of 4 chains (as 4 / world per rank), samples, a save, a load, more samples."""
    if world > 1:
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        dist.init_process_group("gloo", rank=rank, world_size=world)
    share = 4 // world
    mine = (rank * share, (rank + 1) * share)
    buf = ReplayBuffer(SHAPES, capacity=6, sample_buffer_prob=0.75, shard=(rank, world))
    got = []
    for step in range(5):
        got.append(buf.sample(4, torch.Generator().manual_seed(step), chains=mine))
        buf.push([s[mine[0]:mine[1]] for s in _tagged(range(4 * step, 4 * step + 4))])
        if step == 2:
            manifest = buf.save(directory)
    manifest = buf.save(directory)
    again = ReplayBuffer(SHAPES, capacity=6, sample_buffer_prob=0.75, shard=(rank, world))
    again.load(manifest, directory)
    got.append(again.sample(4, torch.Generator().manual_seed(99), chains=mine))
    torch.save({"got": got, "manifest": manifest, "nbytes": buf.nbytes}, f"{out}.{rank}")
    if world > 1:
        dist.destroy_process_group()


@pytest.mark.slow  # two processes start (~15 s on a busy 2-core machine)
def test_sharded_buffer_gives_each_rank_the_chains_of_one_buffer(tmp_path):
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    _buffer_script(0, 1, tmp_path / "one", 0, tmp_path / "one.pt")
    mp.spawn(_buffer_script, args=(2, tmp_path / "two", port, tmp_path / "two.pt"), nprocs=2)
    one = torch.load(tmp_path / "one.pt.0", weights_only=True)
    two = [torch.load(tmp_path / f"two.pt.{r}", weights_only=True) for r in range(2)]
    for k, chains in enumerate(one["got"]):
        for layer, s in enumerate(chains):
            assert torch.equal(torch.cat([two[0]["got"][k][layer], two[1]["got"][k][layer]]), s), (k, layer)
    assert any((c >= 10).all() for c in one["got"][-1][0][:3])  # replayed chains (tags), not only fresh ones
    # one manifest for both ranks, loadable in one process (a resume on another number of processes)
    assert two[0]["manifest"] == two[1]["manifest"]
    assert two[0]["manifest"]["total_pushed"] == one["manifest"]["total_pushed"] == 20
    for world, directory, manifest in ((1, "one", one["manifest"]), (2, "two", two[0]["manifest"])):
        buf = ReplayBuffer(SHAPES, capacity=6, sample_buffer_prob=0.75)
        buf.load(manifest, tmp_path / directory)
        ids = [int(x) - 10 for x in buf.contents()[2][:, 0]]
        assert ids == list(range(14, 20)), world   # the last 6 rows, oldest first
    assert two[0]["nbytes"] * 2 == one["nbytes"]


def test_a_batch_that_does_not_divide_is_refused_in_prepare():
    cfg = C.from_dict(NRFLVConfig, {"architecture": "nrflv_quick", "dataset": "natural_patches", "n_images": 16,
                                    "batch_size": 6})
    from nrflv.suite import NRFLVSuite
    for world, ok in ((2, True), (3, True), (4, False)):
        suite = NRFLVSuite(RunContext(cfg=cfg, device=torch.device("cpu"), env=DistEnv(0, world), stages=("train",)))
        if ok:
            suite.prepare()
            assert suite.chains == (0, 6 // world)
        else:
            with pytest.raises(UserError, match=r"--batch_size 6 .* does not divide between 4 processes") as exc:
                suite.prepare()
            assert "\n" not in str(exc.value)
