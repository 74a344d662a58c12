"""A stimulus set with NaN or infinite values is refused where it is made (issue 23, item 10)."""
import torch

from tests.conftest import TOY
from tests.toy_suite import ToySuite


def test_non_finite_stimulus_set_is_refused_before_it_is_written(run_main, tmp_path, monkeypatch):
    real = ToySuite.stimulus_set

    def nan_set(self, ctx):
        stim = real(self, ctx)
        stim.inputs["x"].values[3, 0, 0] = float("nan")
        return stim

    monkeypatch.setattr(ToySuite, "stimulus_set", nan_set)
    rc, err = run_main("--model", TOY, "--no_train_model", "--gen_exp_stim", "--run_name", "n")
    assert rc == 2 and "'x' has 1 NaN or infinite value" in err and "Traceback" not in err, err
    assert not (tmp_path / "runs/n/recordings/stimuli.zarr").exists()
    assert torch  # noqa
