import collections
import os

import pytest
import torch
from torch import nn

from core.checkpoint import load_checkpoint, load_module_states, save_checkpoint
from core.errors import CheckpointMismatch, UserError


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_round_trip_and_atomicity(tmp_path):
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    opt = torch.optim.Adam(net.parameters())
    net(torch.randn(5, 3)).sum().backward()
    opt.step()
    ckpt = {"modules": {"net": net.state_dict()}, "optimizer": opt.state_dict(), "step": 7,
            "config": {"lr": 0.1, "sizes": [1, 2]}, "suite_state": {"lam": torch.ones(3)}}
    save_checkpoint(ckpt, tmp_path / "c.pt")
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]  # no temporary left behind
    back = load_checkpoint(tmp_path / "c.pt")
    assert back["step"] == 7 and back["config"] == {"lr": 0.1, "sizes": [1, 2]}
    other = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    load_module_states({"net": other}, back["modules"], "c.pt")
    for a, b in zip(net.parameters(), other.parameters()):
        torch.testing.assert_close(a, b)
    opt2 = torch.optim.Adam(other.parameters())
    opt2.load_state_dict(back["optimizer"])


def test_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    save_checkpoint({"step": 1}, tmp_path / "c.pt")

    def boom(*a, **k):
        raise OSError("disk full")
    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(OSError):
        save_checkpoint({"step": 2}, tmp_path / "c.pt")
    monkeypatch.undo()
    assert load_checkpoint(tmp_path / "c.pt")["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]


def test_code_in_a_checkpoint_is_refused(tmp_path):
    torch.save({"modules": {}, "payload": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(UserError, match="weights_only=True"):
        load_checkpoint(tmp_path / "evil.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="cannot read checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")


def test_mismatch_lists_every_problem():
    net = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    state = collections.OrderedDict(net.state_dict())
    state["0.weight"] = torch.zeros(5, 3)
    del state["1.bias"]
    state["2.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointMismatch) as err:
        load_module_states({"net": net, "extra": nn.Linear(1, 1)}, {"net": state, "ghost": {}}, "x.pt")
    msg = str(err.value)
    for needle in ("module 'extra' missing", "unknown module 'ghost'", "missing 1.bias (2,)",
                   "unexpected 2.weight (1,)", "shape of 0.weight: model (4, 3) vs checkpoint (5, 3)"):
        assert needle in msg
