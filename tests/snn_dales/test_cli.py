"""CPU smoke test of the command line for snn_dales: two training steps and every stage."""
import yaml

TINY = ["--model", "snn_dales", "--steps", "2", "--batch_size", "8", "--batches_per_epoch", "2",
        "--eval_every", "2", "--val_batches", "1", "--test_batches", "1", "--test_sets", "2",
        "--exp_trials", "6", "--record_batch", "4", "--sweep_ratios", "[0.0,1.0]", "--sweep_seeds", "2",
        "--sweep_epochs", "1", "--sweep_batches_per_epoch", "1", "--duration_steps", "30",
        "--tuning_bins", "4"]


def test_two_steps_every_stage(run_main, tmp_path):
    rc, err = run_main(*TINY, "--viz", "--gen_exp_stim", "--experiment", "--analyze", "--run_name", "smoke")
    assert rc == 0, err
    run = tmp_path / "runs" / "smoke"
    for rel in ("checkpoints/last.pt", "checkpoints/best.pt", "config.yaml",
                "figures/viz/stimulus.png", "figures/viz/weights.png", "figures/viz/hidden.png",
                "figures/accuracy/confusion_histograms.png", "tables/accuracy/accuracy_summary.csv",
                "tables/accuracy/test_sets.csv", "tables/weight_signs/weight_signs.csv",
                "figures/weight_signs/weight_sign_maps.png", "tables/ablation/input_ablation.csv",
                "tables/ablation/unit_ablation.csv", "tables/tuning/unit_rates.csv",
                "figures/tuning/tuning.png", "tables/ie_sweep/ie_sweep.csv", "figures/ie_sweep/ie_sweep.png",
                "tables/inhibition_site/inhibition_site.csv", "recordings/activity.zarr",
                "tables/analysis/summary.csv"):
        assert (run / rel).exists(), rel
    assert yaml.safe_load((run / "config.yaml").read_text())["model"] == "snn_dales"


def test_resume_and_bad_value(run_main, tmp_path):
    rc, err = run_main(*TINY, "--run_name", "r1")
    assert rc == 0, err
    rc, err = run_main("--resume", str(tmp_path / "runs" / "r1"))
    assert rc == 0 and "already complete" in err
    rc, err = run_main("--model", "snn_dales", "--phase_offset", "per_batch")
    assert rc == 2 and "--phase_offset: expected one of per_sample, per_dataset" in err
