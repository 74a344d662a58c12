"""v1_likeness on recordings written with core.store.RecordingStore, as any model writes them."""
import numpy as np
import pytest
import torch

from core.errors import UserError
from core.store import RecordingStore
from rsa.recording import condition_means, most_v1_like, orientation_conditions, v1_likeness
from rsa.v1data import synthetic_v1

ORIS = np.linspace(-90, 90, 12, endpoint=False)


def v1_at(orientations):
    return synthetic_v1(torch.as_tensor(orientations, dtype=torch.float32), 200, seed=5).resp


def make_recording(path, *, radians=False, repeats=3, hidden_time=3, steps=5):
    """Variable 'rates' (trial, time, unit): at ``hidden_time`` a permuted, rescaled and shifted
    copy of V1's responses (+ small noise); noise elsewhere. 'readout' (trial, unit): noise."""
    rng = np.random.default_rng(0)
    ori = np.repeat(ORIS, repeats)
    v1 = v1_at(ORIS).numpy()
    cond = np.repeat(np.arange(len(ORIS)), repeats)
    rates = rng.normal(size=(len(ori), steps, 200)).astype(np.float32)
    rates[:, hidden_time] = 2.0 * v1[cond][:, rng.permutation(200)] + 1.0 + 0.01 * rng.normal(size=(len(ori), 200))
    readout = rng.normal(size=(len(ori), 4)).astype(np.float32)
    coord = np.deg2rad(ori) if radians else ori
    store = RecordingStore.create(path, len(ori), coords={"theta" if radians else "orientation": coord},
                                  chunk_trials=5)
    dims = {"rates": ("trial", "time", "unit"), "readout": ("trial", "unit")}
    for start in range(0, len(ori), 5):
        sl = slice(start, start + 5)
        store.write(start, {"rates": rates[sl], "readout": readout[sl]}, dims)
    return store, rates, cond


def test_finds_the_hidden_v1_like_time_step(tmp_path):
    store, _, _ = make_recording(tmp_path / "activity.zarr")
    table, ori = v1_likeness(store, v1_at)
    np.testing.assert_allclose(ori, ORIS)
    assert set(table["variable"]) == {"rates", "readout"}
    assert len(table) == 5 + 1
    for measure in ("pearson", "spearman", "kendall_tau_a", "cka"):
        best = most_v1_like(table, measure)
        assert (best["variable"], best["time"]) == ("rates", 3), measure
    hit = table[(table.variable == "rates") & (table.time == 3)].iloc[0]
    assert hit["pearson"] > 0.99 and hit["cka"] > 0.99
    others = table[(table.variable == "rates") & (table.time != 3)]
    assert others["pearson"].abs().max() < 0.5


def test_radians_coordinate_strided_time_and_selected_variables(tmp_path):
    store, _, _ = make_recording(tmp_path / "activity.zarr", radians=True, hidden_time=2)
    table, _ = v1_likeness(store, v1_at, coord="theta", units="radians", variables=["rates"],
                           time_stride=2, methods=("pearson",), cka=False)
    assert table["time"].tolist() == [0, 2, 4]
    assert list(table.columns) == ["variable", "time", "n_units", "pearson", "n_pairs_dropped"]
    assert most_v1_like(table, "pearson")["time"] == 2
    with pytest.raises(UserError, match="no per-trial coordinate 'orientation'"):
        v1_likeness(store, v1_at)
    with pytest.raises(UserError, match="compare_variables"):
        v1_likeness(store, v1_at, coord="theta", variables=["nope"])


def test_condition_means_streamed_and_unfinished_trials_ignored(tmp_path):
    store, rates, cond = make_recording(tmp_path / "activity.zarr")
    index, conditions = orientation_conditions(store, "orientation")
    means = condition_means(store, "rates", index, conditions.size)
    ref = np.stack([rates[cond == c].mean(0) for c in range(len(ORIS))]).reshape(len(ORIS), 5, -1)
    np.testing.assert_allclose(means.numpy(), ref, atol=1e-6)
    # an unfinished trial does not enter the average
    store.group["_done"][0] = False
    means = condition_means(store, "rates", index, conditions.size)
    np.testing.assert_allclose(means[0].numpy(), rates[1:3].mean(0), atol=1e-6)


def test_trials_selected_by_coordinate_and_time_window(tmp_path):
    """Only the trials named by ``where`` enter the comparison (an NRFLV recording holds several
    stimulus sets), and only the time steps of ``time_window``."""
    store, rates, cond = make_recording(tmp_path / "activity.zarr", hidden_time=3)
    # a second "set": the same orientations, activity that hides nothing
    kind = np.array(["gratings"] * store.n_trials, dtype=object)
    kind[::3] = "noise"
    store.set_coord("stimulus_set", kind)
    store.set_coord("contrast", np.where(kind == "noise", 0.0, 1.0))
    index, conditions = orientation_conditions(store, "orientation", where=["stimulus_set=gratings"])
    assert (index[kind == "noise"] == -1).all() and (index[kind == "gratings"] >= 0).all()
    means = condition_means(store, "rates", index, conditions.size)
    keep = kind == "gratings"
    ref = np.stack([rates[keep & (cond == c)].mean(0) for c in range(len(ORIS))]).reshape(len(ORIS), 5, -1)
    np.testing.assert_allclose(means.numpy(), ref, atol=1e-6)
    table, _ = v1_likeness(store, v1_at, where=["contrast=1"], time_window=(2, 5), methods=("pearson",), cka=False)
    assert table[table.variable == "rates"]["time"].tolist() == [2, 3, 4]
    assert most_v1_like(table, "pearson")["time"] == 3
    with pytest.raises(UserError, match="KEY=VALUE"):
        orientation_conditions(store, "orientation", where=["colour=red"])
    with pytest.raises(UserError, match="no trial"):
        orientation_conditions(store, "orientation", where=["stimulus_set=pairs"])
