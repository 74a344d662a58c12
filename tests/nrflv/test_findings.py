"""The findings analysis on synthetic recordings where each finding is injected or absent: it must
say "holds" and "does not hold" correctly, against controls recorded the same way, and report the
detectable effect for the null of synchrony."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from nrflv.battery import findings
from nrflv.measures.aperiodic import peak_over_aperiodic, slope_with_controls
from nrflv.stimuli import GaborDesign, conditions_table
from tests.nrflv.test_battery import (FS, IMAGE, OFFSET, ONSET, SITES, config, record, second_order_step,
                                      stimulus_on, trial_rng, with_unit_noise)

import torch  # noqa: E402

RHYTHM_HZ, LAG_STEPS = 40.0, 3


def model_trial(row, t):
    """During the stimulus: a 40 Hz rhythm of amplitude 0.5 c and an onset overshoot ~ c (a
    second-order step); -p is the state 3 steps earlier; white noise per unit; sites independent."""
    rng = trial_rng(row, 31)
    c = row.contrast
    rhythm = 0.5 * c * np.cos(2 * np.pi * RHYTHM_HZ * t / FS + rng.uniform(0, 2 * np.pi)) * stimulus_on(t)
    step = 0.6 * c * (second_order_step(t - ONSET) - second_order_step(t - OFFSET))
    s = np.stack([rhythm + step + 0.4 * rng.standard_normal(len(t)) for _ in range(SITES)], 1)   # (T, S)
    state = with_unit_noise(np.broadcast_to(s[:, :, None], (len(t), SITES, 4)), rng, 0.3)
    inhib = np.roll(state, LAG_STEPS, axis=0)
    return {"state": state, "momentum": -inhib}


def control_trial(row, t):
    """The untrained control: white noise, and a momentum unrelated to the state."""
    rng = trial_rng(row, 32)
    shape = (len(t), SITES, 4)
    state = with_unit_noise(0.4 * rng.standard_normal(shape), rng, 0.3)
    return {"state": state, "momentum": with_unit_noise(0.4 * rng.standard_normal(shape), rng, 0.3)}


def table():
    design = GaborDesign(contrast_directions=8, contrasts=(0.0, 0.8, 1.6, 2.4), pair_directions=1,
                         pair_distances=(3, 5), pair_repeats=4)
    return conditions_table(["contrast_and_angle", "pairs"], design, IMAGE, IMAGE)


@pytest.fixture(scope="module")
def recordings(tmp_path_factory):
    root = tmp_path_factory.mktemp("findings")
    t = table()
    return record(root / "model.zarr", t, model_trial, channels=4), record(root / "control.zarr", t, control_trial,
                                                                            channels=4)


def test_injected_findings_hold_and_absent_ones_do_not(recordings):
    model, control = recordings
    res = findings.run(model, control, config(), None)
    tab = res.tables["findings"].set_index("finding")
    holds = tab["holds"].to_dict()
    assert holds["oscillatory responses"] == "yes"
    assert abs(tab.loc["oscillatory responses", "frequency_hz"] - RHYTHM_HZ) <= FS / config().spectrum_nperseg
    assert holds["E-I lag"] == "yes"
    lag_ms = LAG_STEPS * 1000.0 / FS
    assert tab.loc["E-I lag", "effect"] == pytest.approx(lag_ms, abs=1.0)
    assert tab.loc["E-I lag", "shuffled_lo"] < lag_ms / 2          # the shift predictor has no lag
    assert holds["contrast-dependent transient overshoot"] == "yes"
    assert holds["peak power rises with contrast"] == "yes"
    assert holds["peak frequency rises with contrast"] == "no"    # the rhythm is 40 Hz at every contrast
    assert holds["no synchrony"] == "yes"                          # the sites are independent
    assert holds["no synchrony (distance)"] == "yes"
    assert tab.loc["no synchrony (distance)", "detectable_effect"] > 0
    assert np.isfinite(tab.loc["no synchrony", "detectable_effect"]) and tab.loc["no synchrony", "detectable_effect"] > 0
    assert set(res.figures) == {"findings"}


def test_nothing_holds_where_the_model_is_its_own_control(recordings):
    _, control = recordings
    res = findings.run(control, control, config(), None)
    tab = res.tables["findings"].set_index("finding")
    for finding in ("oscillatory responses", "E-I lag", "contrast-dependent transient overshoot",
                    "peak frequency rises with contrast", "peak power rises with contrast"):
        assert tab.loc[finding, "holds"] == "no", finding


def test_peak_over_aperiodic_finds_a_peak_on_a_power_law():
    f = torch.linspace(0, 120, 61, dtype=torch.float64)
    background = 10.0 * f.clamp_min(1.0) ** -1.5
    psd = background.clone()
    psd[20] *= 10.0                                      # 40 Hz, ten times the background
    out = peak_over_aperiodic(f, psd)
    assert float(out["peak_hz"]) == 40.0
    assert float(out["excess"]) == pytest.approx(1.0, abs=1e-9)
    assert float(out["exponent"]) == pytest.approx(1.5, abs=1e-9)


def test_slope_with_controls_recovers_a_slope_and_a_null_interval_around_zero():
    rng = np.random.default_rng(0)
    x = np.repeat([0.0, 1.0, 2.0, 3.0], 25)
    y = 0.5 * x + rng.normal(0, 0.3, x.size)
    s = slope_with_controls(x, y, 500, 1)
    assert s["lo"] < 0.5 < s["hi"] and s["null_lo"] < 0 < s["null_hi"] and s["null_hi"] < s["lo"]
    flat = slope_with_controls(x, rng.normal(size=x.size), 500, 2)
    assert flat["lo"] < 0 < flat["hi"]


def test_findings_without_a_control_recording_is_one_line_and_exit_2(run_main, tmp_path):
    from tests.nrflv.test_experiment import EXP
    from tests.nrflv.test_suite import TINY

    rc, err = run_main(*TINY, *EXP, "--steps", "1", "--run_name", "r", "--record_control", "false", "--gen_exp_stim",
                       "--experiment")
    assert rc == 0, err
    rc, err = run_main("--resume", str(tmp_path / "runs/r"), "--analyze", "--only", "findings")
    assert rc == 2 and "control" in err and "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert "findings" in last and "--record_control true" in last


def test_the_experiment_stage_records_the_untrained_control_and_findings_run_on_it(run_main, tmp_path):
    import zarr

    from tests.nrflv.test_experiment import EXP
    from tests.nrflv.test_suite import TINY

    rc, err = run_main(*TINY, *EXP, "--steps", "2", "--run_name", "c", "--record_control", "true", "--gen_exp_stim",
                       "--experiment", "--analyze", "--only", "findings")
    assert rc == 0, err
    run = tmp_path / "runs/c"
    act = zarr.open_group(str(run / "recordings/activity.zarr"), mode="r")
    ctl = zarr.open_group(str(run / "recordings/control.zarr"), mode="r")
    assert ctl["state"].shape == act["state"].shape
    assert "untrained control" in ctl.attrs["weights_source"]
    assert ctl.attrs["weights_sha256"] != act.attrs["weights_sha256"]
    assert ctl.attrs["stimuli_id"] == act.attrs["stimuli_id"]
    tab = pd.read_csv(run / "tables/findings/findings.csv")
    assert len(tab) == 7 and set(tab["holds"]) <= {"yes", "no"}
    assert (run / "figures/findings/findings.png").is_file()
