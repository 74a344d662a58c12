"""What the analyses write: synthetic V1 is marked in every table, figure and summary scalar
(and the real file is not), NaN values are visible in bar charts, and CKA comes with its
chance level and debiased value."""
import numpy as np
import pandas as pd
import pytest
import torch

from core.store import RecordingStore
from core.suite import RunContext
from rsa import plots
from rsa.v1data import STRINGER_FILE

from .test_cli import TINY

COMPARED = ("rdm_similarity", "cka", "ridge_predictivity", "v1_likeness")


def _suite(tmp_path, source):
    from rsa.suite import RSASuite

    cfg = RSASuite.Config(seed=0, v1_source=source, synthetic_neurons=60, synthetic_stimuli=19,
                          n_bootstrap=20, ridge_neurons=10, ridge_folds=3, cka_permutations=20,
                          v1_bin_width=10.0)
    ctx = RunContext(cfg=cfg, device=torch.device("cpu"), data_root=tmp_path / "data")
    suite = RSASuite(ctx)
    suite.prepare()
    modules = suite.build()
    ori = np.repeat(np.linspace(-90, 90, 8, endpoint=False), 2)
    store = RecordingStore.create(tmp_path / "activity.zarr", len(ori), coords={"orientation": ori})
    rates = np.random.default_rng(0).normal(size=(len(ori), 20)).astype(np.float32)
    store.write(0, {"rates": rates}, {"rates": ("trial", "unit")})
    ctx.recording = store
    return suite, modules, ctx


def _titles(fig):
    texts = [fig._suptitle.get_text()] if fig._suptitle is not None else []
    return " | ".join(texts + [ax.get_title() for ax in fig.axes])


def _real_file(tmp_path):
    rng = np.random.default_rng(1)
    stim = np.arange(0, 360, 1.0)
    pref = rng.uniform(0, 180, 50)
    resp = np.cos(np.deg2rad(2 * (stim[:, None] - pref[None]))) + 0.3 * rng.normal(size=(360, 50))
    (tmp_path / "data" / "stringer").mkdir(parents=True)
    np.savez(tmp_path / "data" / "stringer" / STRINGER_FILE, resp=resp.astype(np.float32), stimuli=stim)


@pytest.mark.parametrize("source", ["synthetic", "stringer"])
def test_every_v1_comparison_says_whether_v1_is_synthetic(tmp_path, source):
    if source == "stringer":
        _real_file(tmp_path)
    suite, modules, ctx = _suite(tmp_path, source)
    synthetic = source == "synthetic"
    for name in COMPARED:
        res = suite.analysis(name)(modules, ctx)
        for fname, fig in res.figures.items():
            assert ("SYNTHETIC V1" in _titles(fig)) == synthetic, (name, fname, _titles(fig))
        for tname, table in res.tables.items():
            assert "v1_source" in table, (name, tname)
            assert ((table["v1_source"] == "synthetic") == synthetic).all(), (name, tname)
        assert res.scalars["v1_is_synthetic"] == float(synthetic)
        others = [k for k in res.scalars if k != "v1_is_synthetic"]
        assert others and all(k.startswith("synthetic_v1/") == synthetic for k in others), others


def test_summary_csv_marks_synthetic_v1(run_main, tmp_path):
    rc, err = run_main(*TINY, "--no_train_model", "--analyze", "--only", "rdm_similarity,cka",
                       "--run_name", "summary")
    assert rc == 0, err
    summary = pd.read_csv(tmp_path / "runs" / "summary" / "tables" / "analysis" / "summary.csv")
    flag = summary[summary["quantity"] == "v1_is_synthetic"]
    assert set(flag["analysis"]) == {"rdm_similarity", "cka"} and (flag["value"] == 1.0).all()
    rest = summary[summary["quantity"] != "v1_is_synthetic"]
    assert len(rest) and rest["quantity"].str.startswith("synthetic_v1/").all()


def test_cka_table_has_chance_and_debiased_values(tmp_path):
    from rsa.compare import cka_report

    suite, modules, ctx = _suite(tmp_path, "synthetic")
    table = suite.analysis("cka")(modules, ctx).tables["cka"]
    resp = suite.responses(modules)
    v1 = resp[next(iter(resp))]
    for _, row in table.iterrows():
        ref = cka_report(v1, resp[f"layer {row['layer']}"], n_perm=0)
        assert abs(row["cka"] - ref["cka"]) < 1e-10 and abs(row["cka_debiased"] - ref["cka_debiased"]) < 1e-10
        assert 0 < row["cka_chance"] < 1 and row["cka_chance_std"] > 0 and row["n_stimuli"] == 19


def _nan_marks(fig):
    return sum(t.get_text() == "NaN" for ax in fig.axes for t in ax.texts)


def test_nan_values_are_shown_in_bar_charts():
    nan = float("nan")
    assert _nan_marks(plots.bars_figure({"a": 0.4, "b": nan, "c": nan}, "y", "t")) == 2
    table = pd.DataFrame({"layer": ["pool", "fc"] * 2, "method": ["pearson"] * 2 + ["spearman"] * 2,
                          "value": [0.5, nan, 0.3, 0.2], "ci_low": [0.4, nan, nan, 0.1],
                          "ci_high": [0.6, nan, nan, 0.3]})
    assert _nan_marks(plots.similarity_figure(table, 0.95)) == 1
    likeness = pd.DataFrame({"variable": ["a", "b"], "time": [0, 0], "pearson": [0.5, nan], "cka": [nan, nan]})
    assert _nan_marks(plots.v1_likeness_figure(likeness, ["pearson", "cka"])) == 3
    cka = pd.DataFrame({"layer": ["pool", "fc"], "cka": [0.5, nan], "cka_debiased": [nan, nan],
                        "cka_chance": [0.3, nan]})
    assert _nan_marks(plots.cka_figure(cka, "t")) == 3
    series = pd.DataFrame({"variable": ["a"] * 3, "time": [0, 1, 2], "pearson": [0.1, nan, 0.3]})
    assert "1 NaN" in _titles(plots.v1_likeness_figure(series, ["pearson"]))
