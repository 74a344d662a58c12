"""CPU smoke test of the command line for rsa: two training steps and every stage, offline."""
import pandas as pd

TINY = ["--model", "rsa", "--steps", "2", "--n_train", "20", "--batch_size", "10", "--n_test", "20",
        "--eval_every", "2", "--v1_source", "synthetic", "--synthetic_neurons", "60",
        "--synthetic_stimuli", "19", "--n_bootstrap", "20", "--ridge_neurons", "10", "--ridge_folds", "3",
        "--pca_components", "4", "--n_exp_orientations", "6", "--exp_repeats", "2"]


def test_two_steps_every_stage(run_main, tmp_path):
    rc, err = run_main(*TINY, "--viz", "--gen_exp_stim", "--experiment", "--analyze", "--run_name", "smoke")
    assert rc == 0, err
    run = tmp_path / "runs" / "smoke"
    for rel in ("checkpoints/best.pt", "figures/viz/stimuli.png", "figures/viz/filters.png",
                "tables/training/evaluations.csv", "tables/rdms/rdm_layer_pool.csv", "figures/rdms/rdms.png",
                "tables/rdm_similarity/rdm_similarity.csv", "tables/rdm_rows/rdm_rows.csv",
                "tables/tuning_curves/tuning_curves.csv", "tables/embedding/embedding.csv",
                "tables/cka/cka.csv", "tables/ridge_predictivity/ridge_predictivity.csv",
                "tables/v1_likeness/v1_likeness.csv", "figures/v1_likeness/v1_likeness.png"):
        assert (run / rel).exists(), rel
    likeness = pd.read_csv(run / "tables/v1_likeness/v1_likeness.csv")
    assert set(likeness["variable"]) == {"pool", "fc"}
    assert "synthetic" in (run / "tables/rdms").glob("rdm_V1*").__next__().name


def test_missing_stringer_file_is_one_line(run_main, tmp_path):
    rc, err = run_main(*TINY, "--v1_source", "stringer", "--data_root", str(tmp_path / "nodata"),
                       "--no_train_model", "--analyze", "--run_name", "nofile")
    assert rc == 2, err
    assert "stringer" in err.lower() and "osf.io" in err and "Traceback" not in err
    assert not (tmp_path / "runs" / "nofile").exists()


def test_damaged_or_pickled_compare_recording_is_one_line(run_main, tmp_path):
    """A truncated chunk or a zarr v2 store with a pickled object array: one line, exit 2,
    before a run folder exists and without running the pickle."""
    import json

    import numpy as np

    from core import integrity
    from core.store import RecordingStore

    rec = tmp_path / "activity.zarr"
    s = RecordingStore.create(rec, 8, coords={"orientation": np.arange(8) * 20.0}, chunk_trials=4)
    for start in (0, 4):
        s.write(start, {"fc": np.ones((4, 5), np.float32) * start}, {"fc": ("trial", "unit")})
    chunk = rec / "fc/c/1/0"
    chunk.write_bytes(chunk.read_bytes()[:-2])
    integrity._verified.clear()
    rc, err = run_main(*TINY, "--no_train_model", "--analyze", "--only", "v1_likeness",
                       "--compare_recording", str(rec), "--run_name", "bad")
    assert rc == 2 and "fc/c/1/0" in err and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "runs" / "bad").exists()

    evil = tmp_path / "evil.zarr"
    (evil / "fc").mkdir(parents=True)
    (evil / ".zgroup").write_text(json.dumps({"zarr_format": 2}))
    (evil / "fc" / ".zarray").write_text(json.dumps({
        "zarr_format": 2, "shape": [1], "chunks": [1], "dtype": "|O", "compressor": None,
        "fill_value": 0, "order": "C", "filters": [{"id": "pickle"}]}))
    marker = tmp_path / "ran"
    (evil / "fc" / "0").write_bytes(b"cos\nsystem\n(S'touch " + str(marker).encode() + b"'\ntR.")
    rc, err = run_main(*TINY, "--no_train_model", "--analyze", "--only", "v1_likeness",
                       "--compare_recording", str(evil), "--run_name", "evil")
    assert rc == 2 and "zarr v3" in err and not marker.exists() and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1, err


def test_refusal_after_choosing_best_checkpoint_is_one_line(run_main, tmp_path):
    """'using best checkpoint' is said once the checks pass, never above an error line."""
    rc, err = run_main(*TINY, "--experiment", "--run_name", "b")
    assert rc == 0, err
    rc, err = run_main("--resume", str(tmp_path / "runs/b"), "--no_train_model", "--gen_exp_stim")
    assert rc == 2 and "orphan" in err, err
    assert len(err.strip().splitlines()) == 1, err
    rc, err = run_main("--resume", str(tmp_path / "runs/b"), "--no_train_model", "--experiment")
    assert rc == 0 and "using best checkpoint" in err, err
