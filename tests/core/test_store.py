import numpy as np
import pytest

from core.errors import UserError
from core.store import RecordingStore


def test_write_read_labelled_and_streamed(tmp_path):
    s = RecordingStore.create(tmp_path / "a.zarr", 10, coords={"ori": np.arange(10) * 18.0,
                                                                 "name": [f"c{i}" for i in range(10)]},
                              attrs={"what": "test"}, chunk_trials=4)
    data = np.random.default_rng(0).normal(size=(10, 7, 3)).astype(np.float32)
    spikes = data > 0
    for start in range(0, 10, 4):
        s.write(start, {"rate": data[start:start + 4], "spk": spikes[start:start + 4]},
                {"rate": ("trial", "time", "unit"), "spk": ("trial", "time", "unit")})
    r = RecordingStore.open(tmp_path / "a.zarr")
    assert r.complete and r.n_trials == 10 and r.variables == ["rate", "spk"]
    assert r.dims("rate") == ("trial", "time", "unit") and r.attrs["what"] == "test"
    np.testing.assert_array_equal(r.read("rate"), data)
    np.testing.assert_array_equal(r.read("spk"), spikes)
    assert r.coords["name"][3] == "c3" and r.coords["ori"][2] == 36.0
    blocks = list(r.iter_blocks("rate", block=3))
    assert [b[0] for b in blocks] == [slice(0, 3), slice(3, 6), slice(6, 9), slice(9, 10)]
    np.testing.assert_array_equal(np.concatenate([b[1] for b in blocks]), data)
    with pytest.raises(UserError, match="has no variable 'nope'"):
        r.read("nope")


def test_partial_write_is_pending_and_resumable(tmp_path):
    s = RecordingStore.create(tmp_path / "a.zarr", 10, chunk_trials=4)
    x = np.arange(10 * 2, dtype=np.float64).reshape(10, 2)
    s.write(0, {"x": x[:4]}, {"x": ("trial", "unit")})
    # a crash in the middle of block 2: data written, done flags not
    s.group["x"][4:8] = x[4:8] * 0 - 1
    r = RecordingStore.open(tmp_path / "a.zarr", mode="r+")
    assert r.pending(4) == [(4, 8), (8, 10)]
    for start, stop in r.pending(4):
        r.write(start, {"x": x[start:stop]}, {"x": ("trial", "unit")})
    assert r.complete
    np.testing.assert_array_equal(RecordingStore.open(tmp_path / "a.zarr").read("x"), x)


def test_append_grows_the_trial_axis(tmp_path):
    s = RecordingStore.create(tmp_path / "g.zarr", 0, chunk_trials=2)
    dims = {"v": ("trial", "unit")}
    for i in range(3):
        start = s.append({"v": np.full((2, 5), i, np.int16)}, dims, coords={"block": [i, i]})
        assert start == 2 * i
    r = RecordingStore.open(tmp_path / "g.zarr")
    assert r.n_trials == 6 and r.complete
    np.testing.assert_array_equal(r.read("v")[:, 0], [0, 0, 1, 1, 2, 2])
    np.testing.assert_array_equal(r.coords["block"], [0, 0, 1, 1, 2, 2])


def test_opening_something_else_is_a_clear_error(tmp_path):
    with pytest.raises(UserError, match="recording not found"):
        RecordingStore.open(tmp_path / "none.zarr")
    (tmp_path / "x.zarr").mkdir()
    with pytest.raises(UserError):
        RecordingStore.open(tmp_path / "x.zarr")


def test_experiment_crash_and_rerun_resumes(run_main, tmp_path, monkeypatch):
    """A crash while recording keeps finished blocks; --resume records only the rest."""
    from tests.conftest import TOY
    import managers

    rc, _ = run_main("--model", TOY, "--steps", "5", "--run_name", "ref", "--experiment",
                     "--n_trials", "10", "--record_batch", "3")
    ref = RecordingStore.open(tmp_path / "runs/ref/recordings/activity.zarr").read("y")

    calls = {"n": 0}
    orig = managers.ExperimentsManager.record

    real_write = RecordingStore.write

    def flaky_write(self, start, data, dims):
        if self.attrs.get("kind") == "activity":
            calls["n"] += 1
            if calls["n"] == 3:
                raise KeyboardInterrupt("killed")
        return real_write(self, start, data, dims)
    monkeypatch.setattr(RecordingStore, "write", flaky_write)
    with pytest.raises(KeyboardInterrupt):
        run_main("--model", TOY, "--steps", "5", "--run_name", "crash", "--experiment",
                 "--n_trials", "10", "--record_batch", "3")
    part = RecordingStore.open(tmp_path / "runs/crash/recordings/activity.zarr")
    assert part.pending(3) == [(6, 9), (9, 10)]
    monkeypatch.setattr(RecordingStore, "write", real_write)
    rc, err = run_main("--resume", str(tmp_path / "runs/crash"), "--experiment")
    assert rc == 0 and "resuming recording: 2 block(s)" in err
    np.testing.assert_allclose(RecordingStore.open(tmp_path / "runs/crash/recordings/activity.zarr").read("y"), ref)
    assert orig is managers.ExperimentsManager.record
