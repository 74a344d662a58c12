"""CUDA paths of the managers (run with `pytest -m gpu` on a machine with a GPU)."""
import pytest
import torch
import yaml

from core.checkpoint import load_checkpoint
from tests.conftest import TOY

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


def test_train_record_analyse_on_cuda_and_load_on_cpu(run_main, tmp_path):
    rc, err = run_main("--model", TOY, "--device", "cuda", "--steps", "20", "--run_name", "g",
                       "--eval_every", "10", "--experiment", "--analyze")
    assert rc == 0, err
    run = tmp_path / "runs/g"
    meta = yaml.safe_load((run / "meta.yaml").read_text())
    assert meta["device"].startswith("cuda") and meta["cuda_device_name"]
    ckpt = load_checkpoint(run / "checkpoints/last.pt")  # CUDA tensors come back on the CPU
    assert ckpt["modules"]["net"]["weight"].device.type == "cpu"
    rc, err = run_main("--model", TOY, "--device", "cpu", "--no_train_model", "--load_model", str(run),
                       "--analyze", "--only", "weight_error", "--run_name", "c")
    assert rc == 0, err
