"""NRFLV through the command line: training (positive and negative phases, replay buffer),
visualisation, exact resume with the buffer, and the thesis preset at its real size."""
import pytest
import torch

from core.checkpoint import load_checkpoint

TINY = ["--config", "configs/nrflv_quick.yaml", "--steps", "4", "--batch_size", "6", "--n_images", "64",
        "--num_it_pos", "3", "--num_it_neg", "3", "--num_burn_in_steps", "2", "--buffer_size", "10",
        "--model_save_interval", "2", "--img_logging_interval", "2", "--num_viz_samples", "3",
        "--num_it_viz", "6", "--viz_img_logging_step_interval", "3"]


def test_train_visualise_and_resume_exactly(run_main, tmp_path, monkeypatch):
    rc, err = run_main(*TINY, "--run_name", "full", "--viz")
    assert rc == 0, err
    run = tmp_path / "runs/full"
    for name in ("standard", "standard_final_samples", "state_maps", "channels_energy_layer1",
                 "channels_energy_layer2"):
        assert (run / f"figures/viz/{name}.png").is_file()
    from PIL import Image
    with Image.open(run / "figures/viz/standard_strip.gif") as gif:  # frames at steps 0, 3, 6
        assert gif.n_frames == 3
    ckpt = load_checkpoint(run / "checkpoints/last.pt")
    manifest = ckpt["suite_state"]["replay"]
    assert ckpt["step"] == 4 and manifest["total_pushed"] == 24  # 4 updates x 6 chains
    assert list(ckpt["modules"]) == ["energy", "initter"]
    assert set(ckpt["optimizer"]) == {"adam", "sgd"}

    # killed after step 3 (checkpoint at 2), resumed: the same weights and buffer
    from nrflv import suite as nrflv_suite

    real = nrflv_suite.NRFLVSuite.negative_phase
    calls = {"n": 0}

    def dying(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt("killed")
        return real(self, *a, **k)
    monkeypatch.setattr(nrflv_suite.NRFLVSuite, "negative_phase", dying)
    with pytest.raises(KeyboardInterrupt):
        run_main(*TINY, "--run_name", "cut")
    assert load_checkpoint(tmp_path / "runs/cut/checkpoints/last.pt")["step"] == 2
    monkeypatch.setattr(nrflv_suite.NRFLVSuite, "negative_phase", real)
    rc, err = run_main("--resume", str(tmp_path / "runs/cut"))
    assert rc == 0, err
    a, b = ckpt, load_checkpoint(tmp_path / "runs/cut/checkpoints/last.pt")
    for mod in a["modules"]:
        for k, v in a["modules"][mod].items():
            torch.testing.assert_close(v, b["modules"][mod][k], rtol=0, atol=0, msg=f"{mod} {k}")
    assert b["suite_state"]["replay"]["total_pushed"] == 24


def test_thesis_preset_at_real_size_runs_one_update(run_main, tmp_path):
    rc, err = run_main("--config", "configs/nrflv_thesis.yaml", "--dataset", "natural_patches",
                       "--n_images", "32", "--steps", "1", "--batch_size", "2", "--num_it_pos", "2",
                       "--num_it_neg", "2", "--num_burn_in_steps", "1", "--run_name", "thesis")
    assert rc == 0, err
    ckpt = load_checkpoint(tmp_path / "runs/thesis/checkpoints/last.pt")
    n = sum(v.numel() for v in ckpt["modules"]["energy"].values())
    assert n == 1_026_717
    # the thesis needs CIFAR-10: a missing data set is one line before anything is written
    rc, err = run_main("--config", "configs/nrflv_thesis.yaml", "--data_root", str(tmp_path / "none"),
                       "--run_name", "x")
    assert rc == 2 and "data set 'cifar10' not found" in err and not (tmp_path / "runs/x").exists()


def test_channels_last_gives_the_same_training(run_main, tmp_path):
    """The memory format is a speed setting only: the same weights after two updates."""
    for fmt in ("true", "false"):
        rc, err = run_main(*TINY, "--steps", "2", "--channels_last", fmt, "--run_name", fmt)
        assert rc == 0, err
    a = load_checkpoint(tmp_path / "runs/true/checkpoints/last.pt")["modules"]
    b = load_checkpoint(tmp_path / "runs/false/checkpoints/last.pt")["modules"]
    for mod in a:
        for k, v in a[mod].items():
            torch.testing.assert_close(v, b[mod][k], rtol=1e-5, atol=1e-6, msg=f"{mod} {k}")
