"""The battery's whole-layer and per-unit analyses on synthetic recordings with known answers:
oscillating units by contrast (with the blank before as its own series), per-channel traces and
their autocorrelation, traces around onset, activity maps and their retinotopy, movies, and the
original's rectified transient."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from core.suite import AnalysisSkipped, Animation
from nrflv.battery import activity_maps, oscillations, traces, transients
from nrflv.battery.reading import Experiment
from nrflv.battery.synthetic import synthetic_recording
from nrflv.stimuli import GaborDesign, conditions_table
from tests.nrflv.test_battery import (FS, IMAGE, ONSET, OVERSHOOT_RATIO, PATCH, PROTOCOL, SITES, GAIN, config,
                                      per_trial, record, stimulus_on, transient_trial, trial_rng, with_unit_noise)

OSC_HZ = 38.0
CONTRASTS = (0.0, 1.2, 2.4)


def rising_rhythm_trial(row, t):
    """Every unit: a 38 Hz rhythm during the stimulus whose amplitude is the contrast, riding on
    a rise of 0.5 x contrast (so the units are active), white noise always; nothing before."""
    rng = trial_rng(row, 21)
    on = stimulus_on(t)
    s = row.contrast * (np.cos(2 * np.pi * OSC_HZ * t / FS + rng.uniform(0, 2 * np.pi)) + 0.5) * on
    return {"state": with_unit_noise(np.broadcast_to(s[:, None, None], (len(t), SITES, 4)), rng, 0.3)}


@pytest.fixture(scope="module")
def rhythm_exp(tmp_path_factory) -> Experiment:
    design = GaborDesign(contrast_directions=8, contrasts=CONTRASTS)
    table = conditions_table(["contrast_and_angle"], design, IMAGE, IMAGE)
    return record(tmp_path_factory.mktemp("osc") / "rec.zarr", table, rising_rhythm_trial, channels=4)


def test_oscillating_units_and_their_frequency_power_product_grow_with_contrast(rhythm_exp):
    res = oscillations.run(rhythm_exp, config(lfp_units="all"))
    by = res.tables["oscillations_by_contrast"].set_index("contrast")
    units = res.tables["unit_oscillations"]
    # driven: (nearly) every unit oscillates at 38 Hz during the stimulus, (nearly) none before
    driven = units[units["contrast"] > 0]
    assert driven["oscillating_stimulus"].mean() > 0.95
    assert driven["oscillating_before"].mean() < 0.1
    res_hz = FS / config().oscillation_nperseg
    assert (driven.loc[driven["oscillating_stimulus"], "peak_hz_stimulus"] - OSC_HZ).abs().max() <= res_hz
    # the product grows with contrast (amplitude^2 x f: ~4x from 1.2 to 2.4); the blank stays small
    p12, p24 = by.loc[1.2, "freq_power_product_stimulus"], by.loc[2.4, "freq_power_product_stimulus"]
    assert 3.0 < p24 / p12 < 5.0
    assert by.loc[2.4, "freq_power_product_before"] < 0.05 * p24
    assert by.loc[2.4, "freq_power_product_before_hi"] < by.loc[2.4, "freq_power_product_stimulus_lo"]
    # contrast 0: no unit is active, so no unit enters the summary, and that is said
    assert by.loc[0.0, "units"] < 0.1 * by.loc[2.4, "units"]
    assert by.loc[2.4, "trials"] == 8
    assert res.scalars["freq_power_product_contrast_corr"] > 0.9


def test_channel_traces_autocorrelation_finds_the_rhythms_period(rhythm_exp):
    res = traces.run(rhythm_exp, config(lfp_units="all"))
    rhythm = res.tables["channel_rhythm"]
    assert (rhythm["unit_trials"] > 0).all()
    period = 1000.0 / OSC_HZ
    dt = 1000.0 / FS
    assert (rhythm["period_ms_stimulus"] - period).abs().max() <= dt
    assert (rhythm["side_peak_stimulus"] > 0.5).all()
    assert set(res.figures) >= {"channel_00", "traces_around_onset"}
    onset = res.tables["traces_around_onset"]
    assert set(onset["contrast"]) == set(CONTRASTS)
    # around onset: the mean over trials of random-phase rhythms leaves the rise of 0.5 x contrast
    late = onset[(onset["time_ms"] > 100) & (onset["contrast"] == 2.4)]
    assert late["mean_state"].mean() == pytest.approx(1.2, abs=0.15)
    early = onset[(onset["time_ms"] < 0)]
    assert early["mean_state"].abs().mean() < 0.1


def test_rectified_sum_is_the_originals_transient():
    """One unit rises, one falls: the falling unit is flattened at its baseline mean."""
    t = torch.arange(10, dtype=torch.float64)
    up = torch.where((t >= 4) & (t < 7), 2.0, 0.0)
    down = torch.where((t >= 4) & (t < 7), -3.0, 1.0)
    units = torch.stack([up, down], -1)[None]                     # (1, T, 2)
    baseline = torch.tensor([0, 1, 2, 3, 7, 8, 9])
    out = transients.rectified_sum(units, baseline)
    # down: baseline mean 1, rectified to 1 everywhere; up: baseline mean 0; sum baseline mean 1
    want = up + 1.0 - 1.0
    torch.testing.assert_close(out[0], want)


def test_original_transient_overshoot_matches_the_second_order_truth(tmp_path):
    design = GaborDesign(contrast_directions=8, contrasts=(0.0, 0.8, 1.6, 2.4))
    table = conditions_table(["contrast_and_angle"], design, IMAGE, IMAGE)
    exp = record(tmp_path / "rec.zarr", table, transient_trial, channels=4)
    res = transients.run(exp, config())
    by = res.tables["transients_by_contrast"]
    driven = by[by["contrast"] > 0]
    n_units = 4 * PATCH * PATCH
    np.testing.assert_allclose(driven["original_overshoot"], n_units * GAIN * driven["contrast"] * OVERSHOOT_RATIO,
                               rtol=0.06)
    assert res.scalars["original_overshoot_contrast_corr"] > 0.99
    assert "original_transients" in res.figures and (by["original_trials"] == 8).all()


# ------------------------------------------------------------------ whole-layer maps and movies

LAYER = (4, 16, 16)


def bump_maps(rows: pd.DataFrame, t: np.ndarray, movie_every: int = 0) -> dict[str, np.ndarray]:
    """layer_means with a Gaussian bump at each trial's site (layer grid) in the stimulus phase;
    a window recording of noise; optionally a movie whose frames are the step index."""
    c, h, w = LAYER
    b = len(rows)
    yy, xx = np.mgrid[0:h, 0:w]
    means = np.zeros((b, 4, c, h, w), np.float32)
    for i, row in enumerate(rows.itertuples(index=False)):
        sy, sx = row.site0_y * h // IMAGE, row.site0_x * w // IMAGE
        means[i, 2] = np.exp(-((yy - sy) ** 2 + (xx - sx) ** 2) / 2.0)[None] * (1 + np.arange(c))[:, None, None]
    out = {"state": np.random.default_rng(0).normal(size=(b, len(t), SITES, c, PATCH, PATCH)),
           "layer_means": means}
    if movie_every:
        frames = np.arange(0, PROTOCOL.total, movie_every)
        out["layer_movie"] = np.broadcast_to(frames[None, :, None, None, None].astype(np.float32),
                                             (b, len(frames), c, h, w)).copy()
    return out


def layer_recording(path, movie_every=0) -> Experiment:
    design = GaborDesign(just_angle_directions=8, few_angles_directions=2, few_angles_repeats=2)
    table = conditions_table(["just_angle", "few_angles"], design, IMAGE, IMAGE)
    # move the Gabors off-centre in some trials so the centroid must follow them
    store = synthetic_recording(path, table, PROTOCOL, lambda rows, t: bump_maps(rows, t, movie_every),
                                channels=LAYER[0], layer_hw=LAYER[1:], image_hw=(IMAGE, IMAGE), patch=PATCH,
                                movie_every=movie_every)
    return Experiment(store)


def test_activity_maps_centroid_is_at_the_stimulus_site(tmp_path):
    exp = layer_recording(tmp_path / "rec.zarr")
    res = activity_maps.run(exp, config(map_trials=1))
    per = res.tables["map_per_trial"]
    assert len(per) == len(exp.conditions)
    assert per["centroid_error_px"].max() < 0.05
    assert {"activity_map_just_angle_trial0", "activity_map_few_angles_trial8"} <= set(res.figures)
    assert res.scalars["median_centroid_error_px/just_angle"] < 0.05
    maps = activity_maps.stimulus_maps(exp, exp.table("just_angle"))
    assert maps.shape == (8, *LAYER)
    # channel k carries (k + 1) x the bump: the map is the stimulus phase minus the blank (0)
    np.testing.assert_allclose(maps[:, 3].max((-1, -2)), 4.0, rtol=1e-6)


def test_movies_need_the_whole_layer_over_time(tmp_path):
    exp = layer_recording(tmp_path / "plain.zarr")
    with pytest.raises(AnalysisSkipped, match="record_movie_every"):
        activity_maps.run_movies(exp, config())
    exp = layer_recording(tmp_path / "movie.zarr", movie_every=50)
    res = activity_maps.run_movies(exp, config(movie_trials=1))
    anim = res.figures["movie_just_angle_trial0"]
    assert isinstance(anim, Animation) and len(anim) == -(-PROTOCOL.total // 50)
    assert anim[0].shape[-1] == 3 and 0.0 <= float(np.min(anim[3])) and float(np.max(anim[3])) <= 1.0
    assert res.tables["movies"]["model_ms_per_frame"].iloc[0] == pytest.approx(50 * 70 / 17)


def test_maps_on_a_recording_without_layer_means_are_skipped(rhythm_exp):
    with pytest.raises(AnalysisSkipped, match="layer_means"):
        activity_maps.run(rhythm_exp, config())
