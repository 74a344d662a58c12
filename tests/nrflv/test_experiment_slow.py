"""The quick preset's experiment shows what the thesis reports that follows from the sampler's
dynamics alone: an oscillation (a spectral peak) during the stimulus, and the "inhibitory"
population (-momentum) lagging the "excitatory" one (the state). A few minutes on 2 cores."""
import pandas as pd
import pytest


@pytest.mark.slow
def test_quick_preset_oscillates_and_inhibition_lags(run_main, tmp_path):
    rc, err = run_main("--config", "configs/nrflv_quick.yaml", "--stimulus_sets", "contrast_and_angle",
                       "--gen_exp_stim", "--experiment", "--analyze", "--only", "spectra,ei_lag",
                       "--run_name", "quick")
    assert rc == 0, err
    tables = tmp_path / "runs/quick/tables"
    peak = pd.read_csv(tables / "spectra/peak_by_contrast.csv")
    spectra = pd.read_csv(tables / "spectra/spectra_by_contrast.csv")
    top = spectra[spectra["contrast"] == spectra["contrast"].max()]
    f_peak = top.loc[top["lfp_psd_stimulus"].idxmax(), "frequency_hz"]
    assert f_peak > 0                                                  # not a DC / 1/f spectrum
    assert top["lfp_psd_stimulus"].max() > 3 * top["lfp_psd_stimulus"].median()
    assert peak["peak_hz"].iloc[-1] > 0
    lag = pd.read_csv(tables / "ei_lag/ei_lag_per_channel.csv")
    assert (lag["lag_ms_lo"] > 0).mean() >= 0.9                      # -momentum lags the state


@pytest.mark.slow
def test_medium_preset_shortened_through_its_findings(run_main, tmp_path):
    """configs/nrflv_medium.yaml, shortened (20 updates of 20 + 20 sampler steps, two of the five
    sets): training, the recording with its untrained control and the findings table. The lag of
    -momentum behind the state is there in both models (it is the sampler's); the table says
    whether each finding holds against its controls."""
    rc, err = run_main("--config", "configs/nrflv_medium.yaml", "--steps", "20", "--num_it_pos", "20",
                       "--num_it_neg", "20", "--stimulus_sets", "contrast_and_angle,pairs", "--gen_exp_stim",
                       "--experiment", "--analyze", "--only", "findings", "--lfp_units", "all", "--run_name", "medium")
    assert rc == 0, err
    tab = pd.read_csv(tmp_path / "runs/medium/tables/findings/findings.csv").set_index("finding")
    assert len(tab) == 7 and set(tab["holds"]) <= {"yes", "no"}
    assert tab.loc["E-I lag", "effect_lo"] > 0 and tab.loc["E-I lag", "untrained_lo"] > 0
    assert (tmp_path / "runs/medium/recordings/control.zarr").is_dir()
