"""Values that used to pass validation and fail later (issue 23, items 8 and 9): cross-key
constraints, list choices, derived keys given a value, and lag windows longer than the
recorded stimulus."""
import pytest

from core import config as C
from core.errors import UserError
from core.suite import AnalysisSkipped
from nrflv.config import NRFLVConfig


@pytest.mark.parametrize("values, words", [
    ({"min_sq_sigma": 1}, "--min_sq_sigma"),
    ({"max_sq_sigma": [1e-4, 1e-6, 1e-4], "min_sq_sigma": 1e-5, "architecture": "nrflv_quick"}, "--min_sq_sigma"),
    ({"record_variables": "foo"}, "--record_variables: expected one of state, momentum"),
    ({"record_variables": "state,foo"}, "--record_variables"),
    ({"ckpt_every": 1}, "set --model_save_interval instead"),
    ({"log_every": 1}, "set --scalar_logging_interval instead"),
    ({"image_every": 3}, "set --img_logging_interval instead"),
])
def test_refused_with_one_line(values, words):
    with pytest.raises(UserError, match=words) as exc:
        C.from_dict(NRFLVConfig, values)
    assert "\n" not in str(exc.value)


def test_derived_key_with_its_computed_value_and_own_interval_keys_are_fine():
    cfg = C.from_dict(NRFLVConfig, {"ckpt_every": 7, "model_save_interval": 7, "scalar_logging_interval": 3})
    assert (cfg.ckpt_every, cfg.log_every) == (7, 3)
    assert C.from_dict(NRFLVConfig, {"record_variables": "state,grad"}).record_variables == ["state", "grad"]


@pytest.mark.parametrize("stimulus, max_lag_ms", [(60, 100.0), (300, 1e9)])
def test_ei_lag_and_synchrony_windows_longer_than_the_stimulus_are_skipped(tmp_path, stimulus, max_lag_ms):
    import tests.nrflv.test_battery as tb
    from nrflv.battery import ei_lag, synchrony
    from nrflv.experiment import Protocol
    from nrflv.stimuli import GaborDesign, conditions_table

    proto = Protocol(20, 300, stimulus, 100)
    old = tb.STEPS
    tb.STEPS = proto.total
    try:
        table = conditions_table(["contrast_and_angle"], GaborDesign(contrast_directions=2, contrasts=(0.0, 2.4)),
                                 32, 32)
        exp = tb.record(tmp_path / "r.zarr", table, tb.ei_trial_maker((1, 2), None), channels=2, protocol=proto)
    finally:
        tb.STEPS = old
    for fn in (ei_lag.run, lambda e, c: synchrony.run(e, c, None)):
        with pytest.raises(AnalysisSkipped, match="lower max_lag_ms"):
            fn(exp, tb.config(max_lag_ms=max_lag_ms))


def test_a_thesis_size_stimulus_set_is_refused_for_the_quick_model(run_main, tmp_path):
    """A Gabor set of another image size is refused by the preflight, before a run folder exists."""
    import numpy as np

    from core.store import RecordingStore
    from tests.nrflv.test_suite import TINY

    n = 4
    stim = RecordingStore.create(tmp_path / "stimuli.zarr", n, attrs={"kind": "stimuli", "model": "nrflv"},
                                 chunk_trials=n)
    img = ("trial", "channel", "height", "width")
    stim.write(0, {"stimulus": np.zeros((n, 3, 32, 32), np.float32), "burn_in": np.zeros((n, 3, 32, 32), np.float32),
                   "blank": np.zeros((n, 3, 32, 32), np.float32), "site_y": np.zeros((n, 2), np.int64),
                   "site_x": np.zeros((n, 2), np.int64)},
               {"stimulus": img, "burn_in": img, "blank": img, "site_y": ("trial", "site"), "site_x": ("trial", "site")})
    rc, err = run_main(*TINY, "--no_train_model", "--stimuli", str(tmp_path / "stimuli.zarr"), "--experiment",
                       "--run_name", "geo")
    assert rc == 2 and "another geometry" in err and "Traceback" not in err, err
    assert not (tmp_path / "runs/geo").exists()
