"""A damaged recording or stimulus store is refused with one line, never read as data."""
import json
import os
import time

import numpy as np
import pytest

from core import integrity
from core.errors import UserError
from core.store import RecordingStore
from tests.conftest import TOY

DIMS = {"x": ("trial", "unit")}


def _store(path, n=12, ct=4):
    s = RecordingStore.create(path, n, coords={"ori": np.arange(n) * 1.0}, chunk_trials=ct)
    x = np.arange(n * 3, dtype=np.float32).reshape(n, 3)
    x[4:8] = 0  # a block equal to the fill value is still written and listed
    for start in range(0, n, ct):
        s.write(start, {"x": x[start:start + ct]}, DIMS)
    return s, x


def test_intact_store_verifies_and_reads(tmp_path):
    _, x = _store(tmp_path / "a.zarr")
    np.testing.assert_array_equal(RecordingStore.open(tmp_path / "a.zarr").read("x"), x)
    assert (tmp_path / "a.zarr/x/c/1/0").is_file()  # the all-zero chunk exists


@pytest.mark.parametrize("damage, words", [
    ("truncate", "has .* bytes"), ("delete", "is missing"), ("flip", "differs"),
    ("delete_zero", "is missing"), ("coord", "coordinate")])
def test_damaged_chunk_is_refused_with_one_line(tmp_path, damage, words):
    _store(tmp_path / "a.zarr")
    integrity._verified.clear()
    chunk = tmp_path / "a.zarr/x/c/2/0"
    if damage == "truncate":
        chunk.write_bytes(chunk.read_bytes()[:-5])
    elif damage == "delete":
        chunk.unlink()
    elif damage == "flip":
        b = bytearray(chunk.read_bytes())
        b[-1] ^= 1
        chunk.write_bytes(bytes(b))
    elif damage == "delete_zero":
        chunk = tmp_path / "a.zarr/x/c/1/0"
        chunk.unlink()
    else:
        chunk = tmp_path / "a.zarr/coords/ori/c/0"
        chunk.write_bytes(chunk.read_bytes()[:3])
    with pytest.raises(UserError, match=words) as exc:
        RecordingStore.open(tmp_path / "a.zarr")
    msg = str(exc.value)
    assert "\n" not in msg and "damaged" in msg and str(chunk.relative_to(tmp_path / "a.zarr")) in msg


def test_missing_manifest_and_torn_line(tmp_path):
    _store(tmp_path / "a.zarr")
    m = tmp_path / "a.zarr" / integrity.MANIFEST
    m.write_text(m.read_text() + '{"key": "x/c/0/0", "si')  # a crash mid-append: ignored
    integrity._verified.clear()
    RecordingStore.open(tmp_path / "a.zarr")
    m.unlink()
    integrity._verified.clear()
    with pytest.raises(UserError, match="manifest"):
        RecordingStore.open(tmp_path / "a.zarr")


def test_pending_block_need_not_match(tmp_path):
    """A block whose data was written but whose done flags were not (a crash) is not damage."""
    s = RecordingStore.create(tmp_path / "a.zarr", 8, chunk_trials=4)
    s.write(0, {"x": np.ones((4, 3), np.float32)}, DIMS)
    s.group["x"][4:8] = 5  # written, never listed, never marked done
    integrity._verified.clear()
    r = RecordingStore.open(tmp_path / "a.zarr", mode="r+")
    assert r.pending(4) == [(4, 8)]


def test_legacy_store_without_manifest_must_decode(tmp_path):
    import zarr

    s, _ = _store(tmp_path / "a.zarr")
    del s.group.attrs["integrity"]
    (tmp_path / "a.zarr" / integrity.MANIFEST).unlink()
    integrity._verified.clear()
    RecordingStore.open(tmp_path / "a.zarr")
    chunk = tmp_path / "a.zarr/x/c/2/0"
    chunk.write_bytes(chunk.read_bytes()[:-5])
    integrity._verified.clear()
    with pytest.raises(UserError, match=r"x \(trials 8-11\) does not decode"):
        RecordingStore.open(tmp_path / "a.zarr")
    assert zarr  # imported for the group API above


def test_zarr_v2_pickled_object_array_is_refused_without_running_code(tmp_path):
    """A zarr v2 store with a pickle-coded object array: refused before anything is decoded."""
    root = tmp_path / "evil.zarr"
    (root / "_done").mkdir(parents=True)
    (root / ".zgroup").write_text(json.dumps({"zarr_format": 2}))
    (root / "_done" / ".zarray").write_text(json.dumps({
        "zarr_format": 2, "shape": [1], "chunks": [1], "dtype": "|O", "compressor": None,
        "fill_value": 0, "order": "C", "filters": [{"id": "pickle"}]}))
    marker = tmp_path / "ran"
    (root / "_done" / "0").write_bytes(b"cos\nsystem\n(S'touch " + str(marker).encode() + b"'\ntR.")
    with pytest.raises(UserError) as exc:
        RecordingStore.open(root)
    assert not marker.exists() and "\n" not in str(exc.value)


def test_verification_cost_is_small(tmp_path):
    """Hashing is cheap next to writing: verifying a 40 MB store takes well under a second."""
    s = RecordingStore.create(tmp_path / "big.zarr", 64, chunk_trials=8)
    rng = np.random.default_rng(0)
    for start in range(0, 64, 8):
        s.write(start, {"x": rng.normal(size=(8, 160_000)).astype(np.float32)}, DIMS)
    integrity._verified.clear()
    t = time.perf_counter()
    RecordingStore.open(tmp_path / "big.zarr")
    assert time.perf_counter() - t < 5.0  # ~0.05 s measured; generous for a loaded machine


def _toy_run(run_main, tmp_path, name, *extra):
    rc, err = run_main("--model", TOY, "--steps", "2", "--ckpt_every", "1", "--run_name", name,
                       "--n_trials", "8", "--record_batch", "4", *extra)
    assert rc == 0, err
    return tmp_path / "runs" / name


def test_damaged_stimuli_stop_the_run_before_training(run_main, tmp_path):
    run = _toy_run(run_main, tmp_path, "s", "--gen_exp_stim")
    chunk = run / "recordings/stimuli.zarr/x/c/1/0/0"
    chunk.write_bytes(chunk.read_bytes()[:-3])
    integrity._verified.clear()
    before = sorted(os.listdir(run / "checkpoints"))
    rc, err = run_main("--resume", str(run), "--steps", "4", "--experiment")
    assert rc == 2 and "x/c/1/0/0" in err and "damaged" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    assert sorted(os.listdir(run / "checkpoints")) == before  # no training happened
    assert not (run / "recordings/activity.zarr").exists()


def test_deleted_activity_chunk_is_not_reported_complete(run_main, tmp_path):
    run = _toy_run(run_main, tmp_path, "a", "--experiment")
    (run / "recordings/activity.zarr/y/c/1/0/0").unlink()
    integrity._verified.clear()
    rc, err = run_main("--resume", str(run), "--no_train_model", "--experiment")
    assert rc == 2 and "y/c/1/0/0" in err and "is missing" in err and "complete" not in err


def test_a_torn_manifest_line_does_not_damage_later_blocks(tmp_path):
    """A full disk mid-append leaves half a line; the next block's lines must stay readable."""
    s = RecordingStore.create(tmp_path / "a.zarr", 8, chunk_trials=4)
    s.write(0, {"x": np.ones((4, 3), np.float32)}, DIMS)
    m = tmp_path / "a.zarr" / integrity.MANIFEST
    m.write_text(m.read_text() + '{"key": "x/c/1/0", "si')
    integrity._verified.clear()
    r = RecordingStore.open(tmp_path / "a.zarr", mode="r+")
    r.write(4, {"x": np.full((4, 3), 2, np.float32)}, DIMS)
    integrity._verified.clear()
    assert RecordingStore.open(tmp_path / "a.zarr").read("x")[5, 0] == 2
    assert all(line.startswith("{") and line.endswith("}") for line in m.read_text().splitlines())


def test_partly_done_chunk_after_a_block_size_change(tmp_path):
    """Blocks of 3 in chunks of 4: a crash while trials 6-8 were written leaves chunk 1 newer
    than listed, which is accepted while it decodes; a truncated one is refused."""
    s = RecordingStore.create(tmp_path / "a.zarr", 12, chunk_trials=4)
    x = np.arange(36, dtype=np.float32).reshape(12, 3)
    s.write(0, {"x": x[0:3]}, DIMS)
    s.write(3, {"x": x[3:6]}, DIMS)
    s.group["x"].with_config({"write_empty_chunks": True})[6:8] = x[6:8]  # crash: data, no manifest, no flags
    integrity._verified.clear()
    r = RecordingStore.open(tmp_path / "a.zarr", mode="r+")
    assert r.pending(3) == [(6, 9), (9, 12)]
    chunk = tmp_path / "a.zarr/x/c/1/0"
    chunk.write_bytes(chunk.read_bytes()[:-4])
    integrity._verified.clear()
    with pytest.raises(UserError, match=r"x/c/1/0 \(trials 4-7\) does not decode"):
        RecordingStore.open(tmp_path / "a.zarr", mode="r+")
