"""Every family's main job on CUDA, at a small size: training, the recording and the analyses run on
the GPU, the run's meta names the GPU, and the checkpoint trained there is loaded and analysed on the
CPU (run with ``pytest -m gpu`` on a GPU machine; ``bash bench/gpu_device_run.sh tests`` there).

``GPU_FAMILIES_DEVICE=cpu pytest -m gpu tests/core/test_gpu_families.py`` runs the same on the CPU,
to check the test itself where no GPU is at hand (about 1 min)."""
import os

import pytest
import torch
import yaml

from core.checkpoint import load_checkpoint

DEVICE = os.environ.get("GPU_FAMILIES_DEVICE", "cuda")
pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(DEVICE == "cuda" and not torch.cuda.is_available(), reason="needs CUDA")]

#: each family's quick preset made small, and the stages its quickstart runs (README)
STAGES = ["--gen_exp_stim", "--experiment", "--analyze"]
CASES = {
    "nrflv": ["--config", "configs/nrflv_quick.yaml", "--steps", "3", "--batch_size", "4", "--n_images", "32",
              "--num_it_pos", "3", "--num_it_neg", "3", "--num_burn_in_steps", "2", "--buffer_size", "8",
              "--model_save_interval", "1", "--img_logging_interval", "0", "--stimulus_sets", "contrast_and_angle",
              "--exp_burn_in", "5", "--exp_blank_before", "40", "--exp_stimulus", "40", "--exp_blank_after", "20",
              "--record_control", "false", *STAGES],
    "cordsnet": ["--config", "configs/cordsnet_quick.yaml", "--input_size", "16", "--blank_steps", "3",
                 "--stimulus_steps", "4", "--post_blank_steps", "3", "--loss_steps", "2", "--spont_steps", "1",
                 "--cnn_steps", "4", "--cnn_warmup", "1", "--inversion_steps", "3", "--linear_steps", "2",
                 "--anneal_steps", "2", "--anneal_levels", "2", "--finetune_steps", "2", "--batch_size", "8",
                 "--n_eval", "16", "--eval_every", "5", *STAGES],
    "snn_dales": ["--config", "configs/snn_dales_quick.yaml", "--steps", "4", "--batch_size", "8",
                  "--batches_per_epoch", "2", "--eval_every", "2", "--val_batches", "1", "--test_batches", "1",
                  "--duration_steps", "30", *STAGES],
    "rsa": ["--config", "configs/rsa_quick.yaml", "--steps", "4", "--n_train", "40", "--batch_size", "10",
            "--n_test", "20", "--v1_source", "synthetic", "--eval_every", "2", *STAGES],
    "dsn": ["--config", "configs/dsn_quick.yaml", "--couplings", "2", "--hidden", "[8]", "--n", "64",
            "--init_steps", "20", "--iters_per_epoch", "3", "--epochs", "2", "--norm_batches", "3",
            "--test_samples", "128", "--n_boot", "100", "--init_cache", "off", "--analyze"],
}


@pytest.mark.parametrize("family", CASES)
def test_family_trains_records_and_analyses_on_the_gpu_and_loads_on_the_cpu(run_main, tmp_path, family):
    rc, err = run_main(*CASES[family], "--device", DEVICE, "--run_name", "g")
    assert rc == 0, err
    run = tmp_path / "runs/g"
    meta = yaml.safe_load((run / "meta.yaml").read_text())
    assert meta["device"].startswith(DEVICE)
    if DEVICE == "cuda":
        assert meta["cuda_device_name"]
    ckpt = load_checkpoint(run / "checkpoints/last.pt")  # CUDA tensors come back on the CPU
    tensors = [v for m in ckpt["modules"].values() for v in m.values() if isinstance(v, torch.Tensor)]
    assert tensors and all(t.device.type == "cpu" and torch.isfinite(t.float()).all() for t in tensors)
    assert any(run.glob("tables/**/*.csv")), "no analysis table written"
    # the weights and the recording made on the GPU, analysed on the CPU
    import analysis_main

    assert analysis_main.main(["--run", str(run), "--device", "cpu"]) == 0
