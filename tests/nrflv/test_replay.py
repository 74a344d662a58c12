"""The replay buffer: the source's 121 + 7 rule, FIFO order and wrap-around, exact resume
from small manifests plus chunk files, crash safety, memory accounting."""
from __future__ import annotations

import io
import math

import pytest
import torch

from core.errors import UserError
from nrflv.replay import ReplayBuffer, chunk_name, replay_count

SHAPES = [(3, 4, 4), (8, 2, 2), (5,)]          # an image and two latent layers per chain
THESIS = [(3, 32, 32), (32, 32, 32), (32, 8, 8), (5, 5, 5)]


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def tagged(ids, shapes=SHAPES):
    """Chains whose every unit holds 10 + id (outside the fresh range [-1, 1])."""
    ids = torch.as_tensor(list(ids), dtype=torch.float32)
    return [(10 + ids).view(-1, *[1] * len(s)).expand(-1, *s).clone() for s in shapes]


def ids_of(states):
    """Chain ids of tagged chains (per layer, checking every unit agrees)."""
    out = []
    for s in states:
        flat = s.reshape(s.shape[0], -1)
        assert (flat == flat[:, :1]).all()
        out.append((flat[:, 0] - 10).round().long())
    assert all(torch.equal(out[0], o) for o in out)
    return out[0].tolist()


def test_replay_121_plus_7_of_128():
    assert replay_count(128, 0.95) == 121          # int(121.6): truncated, as the source
    assert replay_count(100, 0.95) == 95 and replay_count(128, 1.0) == 128 and replay_count(128, 0.0) == 0
    buf = ReplayBuffer(SHAPES, capacity=50)
    empty = buf.sample(128, gen(1))                # empty buffer: all fresh
    assert buf.replay_count(128) == 0 and all(s.shape[0] == 128 for s in empty)
    assert all(((s >= -1) & (s <= 1)).all() for s in empty)
    buf.push(tagged(range(40)))
    out = buf.sample(128, gen(2))
    assert [tuple(s.shape) for s in out] == [(128, *s) for s in SHAPES]
    assert all(s.dtype == torch.float32 for s in out)
    ids = ids_of([s[:121] for s in out])           # the first 121 replayed, with replacement
    assert set(ids) <= set(range(40)) and len(set(ids)) < 121
    fresh = [s[121:] for s in out]                 # the last 7 fresh U[-1, 1]
    assert all(((f >= -1) & (f <= 1)).all() and f.std() > 0.4 for f in fresh)
    # uniform draws: over many samples every stored chain comes up about equally often
    counts = torch.zeros(40)
    for k in range(40):
        for i in ids_of([s[:121] for s in buf.sample(128, gen(100 + k))]):
            counts[i] += 1
    expect = 40 * 121 / 40
    assert ((counts - expect).abs() < 5 * math.sqrt(expect)).all()


def test_fresh_ranges_per_layer_and_device_argument():
    buf = ReplayBuffer(SHAPES, capacity=4, ranges=[(0.0, 1.0), (-1.0, 1.0), (-0.5, 0.5)])
    out = buf.sample(64, gen(), device="cpu")
    assert out[0].min() >= 0 and out[2].abs().max() <= 0.5 and out[1].min() < -0.5


def test_fifo_order_and_wrap_around():
    buf = ReplayBuffer(SHAPES, capacity=5)
    buf.push(tagged([0, 1, 2]))
    assert len(buf) == 3 and ids_of(buf.contents()) == [0, 1, 2]
    buf.push(tagged([3, 4, 5, 6]))                 # wraps: 0 and 1 are dropped
    assert len(buf) == 5 and buf.total_pushed == 7
    assert ids_of(buf.contents()) == [2, 3, 4, 5, 6]
    assert ids_of([d[:2] for d in buf.data]) == [5, 6]     # ring slots r mod 5
    buf.push(tagged(range(7, 19)))                 # more than the capacity in one push
    assert ids_of(buf.contents()) == [14, 15, 16, 17, 18] and buf.total_pushed == 19
    # pushing detaches and converts (float64, requires_grad) to float32 copies
    src = [t.double().requires_grad_() for t in tagged([42])]
    buf.push(src)
    assert ids_of([c[-1:] for c in buf.contents()]) == [42]
    assert all(d.dtype == torch.float32 and not d.requires_grad for d in buf.data)
    with pytest.raises(ValueError, match="layer 1"):
        buf.push([torch.zeros(2, 3, 4, 4), torch.zeros(2, 8, 2, 3), torch.zeros(2, 5)])


def roundtrip(manifest):
    """A manifest through torch.save / weights_only load, as in a checkpoint."""
    b = io.BytesIO()
    torch.save({"replay": manifest}, b)
    b.seek(0)
    return torch.load(b, weights_only=True)["replay"]


def random_chains(n, seed):
    g = gen(seed)
    return [torch.randn(n, *s, generator=g) for s in SHAPES]


@pytest.mark.parametrize("block", [512, 3])
def test_resume_is_exact(tmp_path, block):
    """Save at several points (before and after wrapping, with and without new rows), reload
    into a new buffer: same contents, same slots, identical samples, identical behaviour
    after further pushes; the checkpoint part is small and the chunk files bounded. A small
    ``block`` streams chunks in pieces that straddle the live boundary."""
    d = tmp_path / "replay"
    buf = ReplayBuffer(SHAPES, capacity=50)
    for step in range(12):
        buf.push(random_chains(8, step))
        if step in (2, 3, 7, 11):
            manifest = roundtrip(buf.save(d, block=block))
            if step == 3:
                assert roundtrip(buf.save(d)) == manifest        # nothing new: same manifest
            new = ReplayBuffer(SHAPES, capacity=50)
            new.load(manifest, d, block=block + 2)
            assert new.total_pushed == buf.total_pushed and len(new) == len(buf)
            for a, b in zip(new.data, buf.data):
                assert torch.equal(a[:len(buf)], b[:len(buf)])
            for a, b in zip(new.sample(32, gen(step)), buf.sample(32, gen(step))):
                assert torch.equal(a, b)
            # both continue identically
            new.push(random_chains(8, 99))
            ref = ReplayBuffer(SHAPES, capacity=50)
            ref.load(manifest, d)
            ref.push(random_chains(8, 99))
            for a, b in zip(new.contents(), ref.contents()):
                assert torch.equal(a, b)
    # 96 rows pushed, 50 live: the checkpoint holds only ints and names
    assert len(str(manifest)) < 2000 and manifest["total_pushed"] == 96
    assert all(c["stop"] > 96 - 50 for c in manifest["chunks"])
    files = sorted(p.name for p in d.iterdir())
    assert len(files) <= 6 and all(f.startswith("replay-") for f in files)
    assert sum((d / c["file"]).stat().st_size for c in manifest["chunks"]) <= \
        (96 - 16) * buf.bytes_per_chain


def test_crash_safety_and_damage(tmp_path):
    d = tmp_path / "replay"
    buf = ReplayBuffer(SHAPES, capacity=20)
    buf.push(random_chains(8, 0))
    m1 = buf.save(d)
    buf.push(random_chains(8, 1))
    m2 = buf.save(d)                 # committed
    at_m2 = buf.contents()
    buf.push(random_chains(8, 2))
    buf.save(d)                      # written, then the process dies before its checkpoint
    assert (d / chunk_name(16, 24)).is_file()
    # resume from the committed manifest: its chunks are all still there
    res = ReplayBuffer(SHAPES, capacity=20)
    res.load(m2, d)
    for a, b in zip(res.contents(), at_m2):
        assert torch.equal(a, b)
    res.push(random_chains(8, 5))
    m3 = res.save(d)                 # same row range as the stray file: replaced
    res.push(random_chains(8, 6))
    m4 = res.save(d)
    ReplayBuffer(SHAPES, capacity=20).load(m3, d)        # the previous manifest stays loadable
    res.push(random_chains(8, 7))
    m5 = res.save(d)
    assert [c["start"] for c in m5["chunks"]] == [16, 24, 32]
    assert sorted(p.name for p in d.iterdir()) == [chunk_name(a, b) for a, b in
                                                   ((8, 16), (16, 24), (24, 32), (32, 40))]
    with pytest.raises(UserError, match="missing"):
        ReplayBuffer(SHAPES, capacity=20).load(m1, d)    # older than the last two: pruned
    # a damaged chunk is refused
    name = m5["chunks"][-1]["file"]
    raw = bytearray((d / name).read_bytes())
    raw[5] ^= 0xFF
    (d / name).write_bytes(bytes(raw))
    with pytest.raises(UserError, match="damaged"):
        ReplayBuffer(SHAPES, capacity=20).load(m5, d)
    (d / name).write_bytes(bytes(raw[:-4]))
    with pytest.raises(UserError, match="size"):
        ReplayBuffer(SHAPES, capacity=20).load(m5, d)
    with pytest.raises(UserError, match="mismatch"):
        ReplayBuffer(SHAPES, capacity=30).load(m4, d)


def test_memory_accounting():
    """Bytes per chain = 4 x units; the ring is capacity x that. Thesis preset: 3,072 image
    + 34,941 latent = 38,013 units = 152,052 B per chain, 1.52 GB for 10,000 chains."""
    units = sum(math.prod(s) for s in THESIS)
    assert units == 38_013 and units - 3 * 32 * 32 == 34_941
    small = ReplayBuffer(THESIS, capacity=3)
    assert small.bytes_per_chain == 4 * units == 152_052
    assert small.nbytes == 3 * small.bytes_per_chain
    assert 10_000 * small.bytes_per_chain == 1_520_520_000


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA")
@pytest.mark.parametrize("store", ["cpu", "cuda"])
def test_cuda_generator_and_storage(tmp_path, store):
    """Draws on the generator's device; storage on the CPU or the GPU; same resume."""
    buf = ReplayBuffer(SHAPES, capacity=20, device=store)
    buf.push([t.cuda() for t in random_chains(24, 0)])
    out = buf.sample(16, torch.Generator(device="cuda").manual_seed(1), device="cuda")
    assert all(o.is_cuda and o.shape[0] == 16 for o in out)
    m = buf.save(tmp_path)
    new = ReplayBuffer(SHAPES, capacity=20, device=store)
    new.load(m, tmp_path)
    a = buf.sample(16, torch.Generator(device="cuda").manual_seed(2), device="cuda")
    b = new.sample(16, torch.Generator(device="cuda").manual_seed(2), device="cuda")
    assert all(torch.equal(x, y) for x, y in zip(a, b))
