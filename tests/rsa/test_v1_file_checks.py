"""The Stringer V1 file is read and validated before anything is written: corrupt, mis-shaped
or garbage files (NaN or constant stimulus rows, radians, out-of-range directions) are refused
with one line, by the loader and by main.py at the prepare stage (exit 2, no run folder)."""
import numpy as np
import pytest

from core.errors import UserError
from rsa.v1data import STRINGER_FILE, load_stringer_v1

from .test_cli import TINY


def _valid(n_neurons=40, step=2.0, seed=0):
    rng = np.random.default_rng(seed)
    stim = np.arange(0, 360, step)
    resp = rng.normal(size=(stim.size, n_neurons)).astype(np.float32)
    return resp, stim


def _write(root, **arrays):
    (root / "stringer").mkdir(parents=True, exist_ok=True)
    path = root / "stringer" / STRINGER_FILE
    np.savez(path, **arrays)
    return path


def _refused(root, *patterns, **kw):
    with pytest.raises(UserError) as err:
        load_stringer_v1(root, **kw)
    msg = str(err.value)
    assert "\n" not in msg
    for p in patterns:
        assert p in msg, (p, msg)
    return msg


def test_a_valid_file_loads(tmp_path):
    resp, stim = _valid()
    _write(tmp_path, resp=resp, stimuli=stim)
    v1 = load_stringer_v1(tmp_path)
    assert v1.resp.shape == (91, 40) and float(v1.ori.min()) == -90 and float(v1.ori.max()) == 90


# --- item 6: garbage values ------------------------------------------------------------------
def test_nan_rows_are_refused_and_named(tmp_path):
    resp, stim = _valid()
    resp[5, 3] = np.nan
    resp[77, :] = np.inf
    _write(tmp_path, resp=resp, stimuli=stim)
    _refused(tmp_path, "rows 5 (10°), 77 (154°)", "NaN or infinite")


@pytest.mark.parametrize("value", [0.0, 0.1, 1 / 3, 7.0])
def test_constant_rows_are_refused_and_named(tmp_path, value):
    resp, stim = _valid()
    resp[12] = value
    _write(tmp_path, resp=resp, stimuli=stim)
    _refused(tmp_path, "row 12 (24°)", "constant")


# --- item 10: unreadable and mis-shaped files, units -----------------------------------------------
@pytest.mark.parametrize("content", [b"", b"PK\x03\x04 truncated", bytes(range(256)) * 8, b"\x93NUMPY"])
def test_unreadable_files(tmp_path, content):
    (tmp_path / "stringer").mkdir()
    (tmp_path / "stringer" / STRINGER_FILE).write_bytes(content)
    msg = _refused(tmp_path, "V1 file", ".npz")
    assert "not found" not in msg


def test_truncated_archive(tmp_path):
    resp, stim = _valid()
    path = _write(tmp_path, resp=resp, stimuli=stim)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    _refused(tmp_path, "cannot read", "truncated or corrupt")


def test_mis_shaped_and_wrong_typed_arrays(tmp_path):
    resp, stim = _valid()
    _write(tmp_path, resp=resp[:, 0], stimuli=stim)
    _refused(tmp_path, "'resp' has shape (180,)")
    _write(tmp_path, resp=resp.reshape(180, 4, 10), stimuli=stim)
    _refused(tmp_path, "'resp' has shape (180, 4, 10)")
    _write(tmp_path, resp=resp, stimuli=stim[:-3])
    _refused(tmp_path, "177 directions", "180 stimulus rows")
    _write(tmp_path, resp=resp.astype(object), stimuli=stim)
    _refused(tmp_path, "object arrays", "never loaded")
    _write(tmp_path, resp=resp, stimuli=np.array(["a"] * 180))
    _refused(tmp_path, "'stimuli' has dtype")


def test_missing_key_says_what_the_file_has(tmp_path):
    resp, stim = _valid()
    _write(tmp_path, responses=resp, stimuli=stim)
    msg = _refused(tmp_path, "no array 'resp'", "'responses'")
    assert "not found" not in msg


def test_direction_units_and_range(tmp_path):
    resp, stim = _valid()
    _write(tmp_path, resp=resp, stimuli=np.deg2rad(stim))
    _refused(tmp_path, "radians")
    _write(tmp_path, resp=resp, stimuli=stim - 180)
    _refused(tmp_path, "range from -180", "0..360")
    _write(tmp_path, resp=resp, stimuli=stim + 200)
    _refused(tmp_path, "0..360")
    _write(tmp_path, resp=resp[:80], stimuli=np.linspace(181, 359, 80))  # all directions > 180
    msg = _refused(tmp_path, "0 stimulus direction(s) <= 180")
    assert "layer" not in msg


def test_coarse_bins_still_load(tmp_path):
    # --v1_bin_width 45: 4 stimuli (directions 0..180) remain; an RDM comparison needs 3
    resp, stim = _valid(step=1.0)
    _write(tmp_path, resp=resp, stimuli=stim)
    assert load_stringer_v1(tmp_path, bin_width=45).resp.shape[0] >= 3


# --- main.py refuses at the prepare stage: before training, nothing written -------------------------
@pytest.mark.parametrize("source", ["stringer", "auto"])
def test_main_refuses_a_bad_file_before_training(run_main, tmp_path, source):
    resp, stim = _valid()
    resp[30] = 0.1
    _write(tmp_path / "data", resp=resp, stimuli=stim)
    args = [a if a != "synthetic" else source for a in TINY]
    rc, err = run_main(*args, "--data_root", str(tmp_path / "data"), "--steps", "50", "--analyze",
                       "--run_name", "bad")
    assert rc == 2, err
    assert "row 30 (60°)" in err and "constant" in err and "Traceback" not in err
    assert not (tmp_path / "runs" / "bad").exists()
    (tmp_path / "data" / "stringer" / STRINGER_FILE).write_bytes(b"not an archive")
    rc, err = run_main(*args, "--data_root", str(tmp_path / "data"), "--analyze", "--run_name", "bad2")
    assert rc == 2 and "cannot read" in err and not (tmp_path / "runs" / "bad2").exists()


def test_four_stimuli_from_coarse_bins_run_to_the_end(run_main, tmp_path):
    """--v1_bin_width 45 leaves 4 stimuli: every analysis runs or is skipped with a note (no
    bootstrap crash, no t-SNE/ridge traceback), and the similarity table reports NaN
    confidence intervals instead of made-up ones."""
    import pandas as pd

    rng = np.random.default_rng(3)
    stim = np.arange(0, 360, 1.0)
    pref = rng.uniform(0, 180, 40)
    resp = np.cos(np.deg2rad(2 * (stim[:, None] - pref[None]))) + 0.3 * rng.normal(size=(360, 40))
    _write(tmp_path / "data", resp=resp.astype(np.float32), stimuli=stim)
    args = [a if a != "synthetic" else "stringer" for a in TINY]
    rc, err = run_main(*args, "--data_root", str(tmp_path / "data"), "--v1_bin_width", "45",
                       "--no_train_model", "--analyze", "--run_name", "coarse")
    assert rc == 0, err
    assert "skipped: analysis 'embedding'" in err and "skipped: analysis 'ridge_predictivity'" in err
    tables = tmp_path / "runs" / "coarse" / "tables"
    table = pd.read_csv(tables / "rdm_similarity" / "rdm_similarity.csv")
    assert (table["n_stimuli"] == 4).all() and (table["v1_source"] != "synthetic").all()
    assert table["value"].notna().all() and (table["n_pairs"] == 6).all()
    assert table["ci_low"].isna().all() and table["ci_high"].isna().all()
    assert (tables / "cka" / "cka.csv").exists() and (tables / "rdms" / "rdm_V1_data.csv").exists()


# --- issue 23: a header declaring 36 TiB, and values too large to square --------------------------
def test_an_array_header_larger_than_memory_is_named_as_such(tmp_path):
    import io
    import zipfile

    (tmp_path / "stringer").mkdir()
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f4", "fortran_order": False, "shape": (3_200_000, 3_200_000)})
    buf.write(b"\0" * 64)
    with zipfile.ZipFile(tmp_path / "stringer" / STRINGER_FILE, "w") as z:
        z.writestr("resp.npy", buf.getvalue())
        sbuf = io.BytesIO()
        np.save(sbuf, np.arange(4.0))
        z.writestr("stimuli.npy", sbuf.getvalue())
    msg = _refused(tmp_path, "larger than this machine's memory")
    assert "batch size" not in msg


def test_responses_too_large_to_square_are_refused(tmp_path):
    resp, stim = _valid()
    resp[9] *= np.float32(1e19)
    _write(tmp_path, resp=resp, stimuli=stim)
    _refused(tmp_path, "row 9 (18°)", "too large to be squared")
