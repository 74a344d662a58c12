"""analysis_main.py over a finished run; every stage of main.py end to end on the toy model."""
import pandas as pd

import analysis_main
from core.store import RecordingStore
from tests.conftest import TOY


def test_all_stages_then_analysis_main(run_main, tmp_path, capsys):
    rc, err = run_main("--model", TOY, "--steps", "20", "--run_name", "all", "--viz", "--gen_exp_stim",
                       "--experiment", "--analyze", "--n_trials", "7", "--record_batch", "2")
    assert rc == 0, err
    run = tmp_path / "runs/all"
    stim = RecordingStore.open(run / "recordings/stimuli.zarr")
    act = RecordingStore.open(run / "recordings/activity.zarr")
    assert stim.n_trials == act.n_trials == 7 and act.complete
    assert act.dims("y") == ("trial", "time", "unit") and list(act.coords) == ["level"]
    assert act.attrs["kind"] == "activity" and act.attrs["toy"] is True
    assert (run / "figures/viz/weights.png").exists()
    assert (run / "figures/mean_response/mean_response.png").exists()
    table = pd.read_csv(run / "tables/mean_response/mean_response.csv")
    assert len(table) == 7
    summary = pd.read_csv(run / "tables/analysis/summary.csv")
    assert set(summary["analysis"]) == {"mean_response", "weight_error"}

    (run / "tables/weight_error/weight_error.csv").unlink()
    before = (run / "checkpoints/last.pt").read_bytes()
    assert analysis_main.main(["--run", str(run), "--only", "weight_error"]) == 0
    assert (run / "tables/weight_error/weight_error.csv").exists()
    assert (run / "checkpoints/last.pt").read_bytes() == before
    capsys.readouterr()
    assert analysis_main.main(["--run", str(run), "--list"]) == 0
    assert "mean_response" in capsys.readouterr().out
    assert analysis_main.main(["--run", str(run), "--only", "nope"]) == 2
    assert "--only: unknown nope" in capsys.readouterr().err
    assert analysis_main.main(["--run", str(tmp_path / "missing")]) == 2


def test_analysis_needing_a_recording_without_one(run_main, tmp_path):
    rc, err = run_main("--model", TOY, "--steps", "2", "--run_name", "norec", "--analyze")
    assert rc == 0 and "skipped: analysis 'mean_response' needs a recording" in err
    rc, err = run_main("--model", TOY, "--steps", "2", "--run_name", "norec2", "--analyze",
                       "--only", "mean_response")
    assert rc == 2 and "needs a recording" in err


def test_empty_or_modelless_config_is_refused_by_both_entry_points(run_main, tmp_path, capsys):
    """One validation of a run's config.yaml for analysis_main.py and main.py --resume."""
    import yaml

    rc, err = run_main("--model", TOY, "--steps", "2", "--run_name", "c")
    assert rc == 0, err
    run = tmp_path / "runs/c"
    good = yaml.safe_load((run / "config.yaml").read_text())
    no_model = {k: v for k, v in good.items() if k != "model"}
    for text, words in (("", "is empty"), (yaml.safe_dump(no_model), "has no model: key"),
                        (yaml.safe_dump({"model": TOY}), "has no seed: key")):
        (run / "config.yaml").write_text(text)
        assert analysis_main.main(["--run", str(run)]) == 2
        err = capsys.readouterr().err
        assert words in err and len(err.strip().splitlines()) == 1, err
        rc, err = run_main("--resume", str(run), "--model", TOY)
        assert rc == 2 and words in err, err
    (run / "config.yaml").write_text(yaml.safe_dump({**good, "model": "rsa"}))
    assert analysis_main.main(["--run", str(run)]) == 2
    assert "meta.yaml" in capsys.readouterr().err
