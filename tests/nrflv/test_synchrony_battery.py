"""The synchrony analysis on synthetic recordings with known answers: synchrony that exists only
during the stimulus (the before-stimulus comparison), a known phase lag between centre and
flank (experiment 2's phase test), amplitude falling with the difference of preferred directions
(experiment 1) and linearly with distance along a long bar (experiment 3, a whole-layer
recording)."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from nrflv.battery import synchrony
from nrflv.stimuli import GaborDesign, conditions_table, wrap_orientation
from tests.nrflv.test_battery import (FS, GAMMA_HZ, IMAGE, PATCH, RHYTHM_SD_HZ, SITES, config, narrowband, record,
                                      stimulus_on, trial_rng)

NOISE = 0.7
RHO = 1.0 / (1.0 + NOISE ** 2)              # zero-lag correlation of two units sharing the rhythm
QUARTER = 0.25 / GAMMA_HZ                   # a quarter period (s): a 90-degree lag at 40 Hz


def delayed(x: np.ndarray, seconds: float) -> np.ndarray:
    """``x (T,)`` delayed by ``seconds`` (a phase ramp on the FFT; circular at the ends)."""
    f = np.fft.rfftfreq(len(x), 1.0 / FS)
    return np.fft.irfft(np.fft.rfft(x) * np.exp(-2j * np.pi * f * seconds), n=len(x))


def units(signal: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``(T, S, C)`` -> every unit of each window the same signal plus its own white noise."""
    return signal[..., None, None] + NOISE * rng.standard_normal(signal.shape + (PATCH, PATCH))


# ----------------------------------------------- before vs during, and experiment 2's phase

CHANNELS = 3


def onset_sync_trial(row, t):
    """During the stimulus every channel at site 0 carries one 40 Hz rhythm (new each trial); the
    flank (site 1) carries it 90 degrees later for collinear pairs, at zero lag for orthogonal
    ones and long bars. In the blank before, every unit has its own independent rhythm."""
    rng = trial_rng(row, 11)
    n = len(t)
    g = narrowband(rng, n, GAMMA_HZ, RHYTHM_SD_HZ)
    flank = delayed(g, QUARTER) if row.relation == "collinear" else g
    own = lambda: narrowband(rng, n, GAMMA_HZ, RHYTHM_SD_HZ)  # noqa: E731
    on = stimulus_on(t)[:, None]
    site0 = np.where(on, g[:, None], np.stack([own() for _ in range(CHANNELS)], 1))
    site1 = np.where(on, flank[:, None], np.stack([own() for _ in range(CHANNELS)], 1))
    return {"state": units(np.stack([site0, site1], 1), rng)}


DESIGN = GaborDesign(few_angles_directions=2, few_angles_repeats=6, pair_directions=2, pair_distances=(3, 5),
                     pair_repeats=4)


@pytest.fixture(scope="module")
def onset_run(tmp_path_factory):
    table = conditions_table(["few_angles", "pairs"], DESIGN, IMAGE, IMAGE)
    exp = record(tmp_path_factory.mktemp("onset") / "rec.zarr", table, onset_sync_trial, channels=CHANNELS)
    return synchrony.run(exp, config(), None)


def test_synchrony_only_during_the_stimulus_shows_in_the_change_from_before(onset_run):
    groups = onset_run.tables["synchrony_groups"]
    ch = groups[groups["comparison"] == "channels"]
    assert ch["trials"].tolist() == [12] and ch["pairs_per_trial"].tolist() == [3]
    assert ch["xcorr_zero_lag"].iloc[0] == pytest.approx(RHO, abs=0.1)
    assert abs(ch["before_xcorr_zero_lag"].iloc[0]) < 0.05 and abs(ch["before_plv"].iloc[0]) < 0.1
    assert ch["change_xcorr_zero_lag"].iloc[0] == pytest.approx(RHO, abs=0.1)
    assert ch["change_xcorr_zero_lag_lo"].iloc[0] > 0.4 and bool(ch["changed"].iloc[0])
    orth = groups[(groups["comparison"] == "centre_flank") & (groups["relation"] == "orthogonal")]
    assert (orth["change_xcorr_zero_lag_lo"] > 0.3).all() and (orth["trials"] == 8).all()
    # nothing shared before the stimulus: 2.5% one-sided tests in 5 null groups, at most one positive
    assert int(groups["synchronous_before"].sum()) <= 1
    assert onset_run.scalars["fraction_groups_synchronous_before"] <= 0.2
    assert "synchrony" in onset_run.figures


def test_phase_test_recovers_a_90_degree_lag_and_a_zero_lag(onset_run):
    ph = onset_run.tables["synchrony_phase"]
    cf = ph[(ph["comparison"] == "centre_flank") & (ph["period"] == "during")]
    col, orth = cf[cf["relation"] == "collinear"], cf[cf["relation"] == "orthogonal"]
    assert sorted(col["distance"]) == [3, 5] and (cf["trials"] == 8).all() and (cf["pairs_per_trial"] == 3).all()
    # the flank lags the centre by a quarter period: +90 degrees, not zero; the V-test (towards 0) does not reject
    np.testing.assert_allclose(col["phase_lag_deg"], 90.0, atol=15.0)
    assert not col["zero_in_interval"].any() and (col["rayleigh_p"] < 1e-3).all() and (col["v_test_p"] > 0.05).all()
    np.testing.assert_allclose(orth["phase_lag_deg"], 0.0, atol=10.0)
    assert orth["zero_in_interval"].all() and (orth["v_test_p"] < 1e-3).all()
    # before the stimulus the phases are uniform: nothing rejects at 1% in these 4 groups
    before = ph[(ph["comparison"] == "centre_flank") & (ph["period"] == "before")]
    assert len(before) == 4 and (before["v_test_p"] > 0.01).all()
    assert onset_run.scalars["exp2_fraction_groups_zero_lag_in_interval"] == 0.5
    slopes = onset_run.tables["synchrony_slopes"]
    s = slopes[(slopes["experiment"] == 2) & (slopes["group"] == "orthogonal") & (slopes["period"] == "during")]
    assert s["n_resampled"].tolist() == [16] and s.iloc[0]["lo"] < 0 < s.iloc[0]["hi"]   # no trend with distance
    assert "exp2_phase_and_distance" in onset_run.figures


# ------------------------------------------------------------------------------ experiment 1

RING = 8                                    # channel c prefers direction 45 c degrees
RING_SD_HZ = 15.0                           # a broad band: many independent samples per window
KERNEL = np.exp(1.5 * np.cos(2 * np.pi * np.arange(RING) / RING))


def ring_trial(row, t):
    """Channel c = sum_k K(c - k) z_k of independent rhythms z_k (k on the ring) plus noise: the
    correlation of two channels falls with their ring distance, i.e. with the difference of the
    preferences below."""
    rng = trial_rng(row, 12)
    z = np.stack([narrowband(rng, len(t), GAMMA_HZ, RING_SD_HZ) for _ in range(RING)], 1)     # (T, K)
    mix = np.stack([np.roll(KERNEL, c) for c in range(RING)])                                  # (C, K)
    s = z @ mix.T / np.sqrt((KERNEL ** 2).sum())                                               # unit variance
    return {"state": units(np.repeat(s[:, None], SITES, 1), rng)}


def ring_truth() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs (i < j of the tuned channels 0..6), their preference difference and true correlation."""
    mix = np.stack([np.roll(KERNEL, c) for c in range(RING)]) / np.sqrt((KERNEL ** 2).sum())
    i, j = np.triu_indices(RING - 1, 1)
    d = np.remainder(45.0 * (i - j), 360.0)
    return np.minimum(d, 360.0 - d), (mix[i] * mix[j]).sum(1) / (1 + NOISE ** 2), np.stack([i, j], 1)


PREFS = pd.DataFrame({"channel": np.arange(RING), "pref_direction": 45.0 * np.arange(RING),
                      "pref_orientation": wrap_orientation(45.0 * np.arange(RING)),
                      "tuned": np.arange(RING) < RING - 1})


@pytest.fixture(scope="module")
def ring_run(tmp_path_factory):
    table = conditions_table(["few_angles"], GaborDesign(few_angles_directions=4, few_angles_repeats=5), IMAGE, IMAGE)
    exp = record(tmp_path_factory.mktemp("ring") / "rec.zarr", table, ring_trial, channels=RING)
    return synchrony.run(exp, config(), PREFS)


def test_experiment1_amplitude_falls_with_the_difference_of_preferred_directions(ring_run):
    diff, rho, _ = ring_truth()
    slopes = ring_run.tables["synchrony_slopes"].set_index(["experiment", "period", "group", "measure"])
    un = slopes.loc[(1, "during", "unaligned", "xcorr_zero_lag")]
    # the least-squares slope of the true correlations over the 21 pairs of tuned channels
    # (the aligned pairs (0, 4) and (2, 6) leave half their trials: a small weight change)
    # (a one-second window underestimates the correlation of far pairs a little: a sample correlation's
    # mean is not the ratio of the mean covariance to the mean variances when the window's power of
    # each z_k fluctuates; the broad band keeps that within 10%)
    truth = np.polyfit(diff, rho, 1)[0]
    assert un["slope"] == pytest.approx(truth, rel=0.15) and un["hi"] < 0
    assert un["n_resampled"] == 20 and un["pairs"] == 21
    assert np.isnan(slopes.loc[(1, "during", "aligned", "xcorr_zero_lag"), "slope"])   # one difference: 180
    fit = slopes.loc[(1, "during", "unaligned", "fit_amplitude")]
    assert fit["hi"] < 0 and fit["n_resampled"] >= 18
    before = slopes.loc[(1, "before", "unaligned", "xcorr_zero_lag")]      # the ring holds in the blank too
    assert before["hi"] < 0
    pairs = ring_run.tables["exp1_pairs"]
    assert 7 not in set(pairs["channel_a"]) | set(pairs["channel_b"])       # the untuned channel is left out
    aligned = pairs[(pairs["group"] == "aligned") & (pairs["period"] == "during")]
    # both channels prefer the trial's orientation: (0, 4) under 0/180 degrees, (2, 6) under 90/270
    assert sorted(zip(aligned["channel_a"], aligned["channel_b"])) == [(0, 4), (2, 6)]
    assert (aligned["trials"] == 10).all() and (aligned["pref_difference_deg"] == 180).all()
    un_pairs = pairs[(pairs["group"] == "unaligned") & (pairs["period"] == "during")].set_index(["channel_a",
                                                                                                  "channel_b"])
    for (a, b), r, d in zip(ring_truth()[2], rho, diff):
        assert un_pairs.loc[(a, b), "xcorr_zero_lag"] == pytest.approx(r, abs=0.12)
        assert un_pairs.loc[(a, b), "pref_difference_deg"] == d
    bins = ring_run.tables["exp1_preference_difference"]
    assert {"trials", "pairs", "values"} <= set(bins.columns)
    assert "exp1_preference_difference" in ring_run.figures
    assert ring_run.scalars["exp1_slope_per_deg/unaligned"] == un["slope"]


def test_experiment1_without_preferences_is_a_stated_reason_not_a_crash(onset_run):
    notes = onset_run.tables["synchrony_notes"]
    assert notes["part"].iloc[0].startswith("experiment 1") and "just_angle" in notes["reason"].iloc[0]
    assert "exp1_pairs" not in onset_run.tables


# ------------------------------------------------------------------------------ experiment 3

LAYER = 16
DECAY = 0.08                                # correlation with the centre: 0.8 - 0.08 d


def bar_trial(row, t):
    """Whole layer: the centre unit carries the rhythm g; a unit at Euclidean distance r from it
    (during the stimulus) rho(r) g + sqrt(1 - rho^2) e with rho = max(0, 0.8 - DECAY r) and its
    own rhythm e; before the stimulus every unit has its own rhythm."""
    rng = trial_rng(row, 13)
    n = len(t)
    cy, cx = row.site0_y * LAYER // IMAGE, row.site0_x * LAYER // IMAGE
    yy, xx = np.mgrid[:LAYER, :LAYER]
    rho = np.clip(0.8 - DECAY * np.hypot(yy - cy, xx - cx), 0, None)
    rho[cy, cx] = 1.0
    g = narrowband(rng, n, GAMMA_HZ, RING_SD_HZ)
    f = np.fft.rfftfreq(n, 1.0 / FS)
    gain = np.exp(-(f - GAMMA_HZ) ** 2 / (4 * RING_SD_HZ ** 2))
    own = np.fft.irfft(np.fft.rfft(rng.standard_normal((2, LAYER, LAYER, n)), axis=-1) * gain, n=n, axis=-1)
    own = own / own.std(-1, keepdims=True)                                    # (C, H, W, T)
    on = stimulus_on(t)
    during = rho[..., None] * g + np.sqrt(1 - rho[..., None] ** 2) * own
    x = np.where(on, during, own).transpose(3, 0, 1, 2)                       # (T, C, H, W)
    return {"state": x[:, None]}


@pytest.fixture(scope="module")
def bar_run(tmp_path_factory):
    table = conditions_table(["long_bars"], GaborDesign(long_bars_directions=4, long_bars_repeats=4), IMAGE, IMAGE)
    exp = record(tmp_path_factory.mktemp("bar") / "rec.zarr", table, bar_trial, channels=2, units="all",
                 layer_hw=(LAYER, LAYER))
    return synchrony.run(exp, config(), None)


def test_experiment3_profile_along_the_bar_falls_linearly_with_distance(bar_run):
    prof = bar_run.tables["exp3_distance_profile"]
    during, before = prof[prof["period"] == "during"], prof[prof["period"] == "before"]
    # the centre at layer (8, 8): every trial reaches 8 units along its (vertical or horizontal) bar
    assert during["distance"].tolist() == list(range(1, 9))
    np.testing.assert_allclose(during["xcorr_zero_lag"], 0.8 - DECAY * during["distance"], atol=0.06)
    assert (during["trials"] == 16).all() and during["pair_values"].iloc[0] == 16 * 2 * 2   # trials x channels x sides
    assert during["pair_values"].iloc[-1] == 16 * 2                                        # one side reaches 8
    assert before["xcorr_zero_lag"].abs().max() < 0.05
    slopes = bar_run.tables["synchrony_slopes"].set_index(["experiment", "period", "measure"])
    s = slopes.loc[(3, "during", "xcorr_zero_lag")]
    assert s["slope"] == pytest.approx(-DECAY, abs=0.01) and s["lo"] < -DECAY < s["hi"]
    assert s["n_resampled"] == 16 and s["pairs"] == 2 * 8 * 2 and s["values"] == 16 * 8
    b = slopes.loc[(3, "before", "xcorr_zero_lag")]
    assert b["lo"] < 0 < b["hi"] and abs(b["slope"]) < 0.01
    assert slopes.loc[(3, "during", "fit_amplitude"), "slope"] < 0
    # without few_angles, pairs and a second site the other comparisons are skipped with reasons
    parts = bar_run.tables["synchrony_notes"]["part"].tolist()
    assert parts == ["channels", "centre_flank", "long_bars"]
    assert "exp3_along_bar" in bar_run.figures and bar_run.scalars["exp3_slope_per_unit/during"] == s["slope"]


def test_experiment3_on_a_window_recording_is_skipped_with_the_reason(onset_run):
    notes = onset_run.tables["synchrony_notes"].set_index("part")["reason"]
    assert "needs record_units: all" in notes["along_bar_profile"]
    assert "exp3_distance_profile" not in onset_run.tables


def test_points_of_a_whole_layer_recording_are_the_units_asked_for(tmp_path):
    from core.suite import AnalysisSkipped
    from tests.nrflv.test_battery import LAYER as READ_LAYER, READ_PROTOCOL, layer_value, patch_trial, whole_layer_trial

    table = conditions_table(["few_angles"], GaborDesign(few_angles_directions=4, few_angles_repeats=2), IMAGE, IMAGE)
    kw = dict(channels=3, protocol=READ_PROTOCOL, layer_hw=(READ_LAYER, READ_LAYER))
    whole = record(tmp_path / "all.zarr", table, whole_layer_trial, units="all", **kw)
    rng = np.random.default_rng(0)
    rows, cols = rng.integers(0, READ_LAYER, (2, len(table), 5))
    sub = table.iloc[1::2].reset_index(drop=True)                     # not every trial: an orthogonal read
    got = np.concatenate([b.values.numpy() for b in whole.points("state", sub, rows[1::2], cols[1::2], block=3)])
    t = np.arange(READ_PROTOCOL.total)
    truth = layer_value(sub["trial"].to_numpy()[:, None, None, None], t[None, :, None, None],
                        np.arange(3)[None, None, :, None], rows[1::2, None, None, :], cols[1::2, None, None, :])
    np.testing.assert_array_equal(got, truth)                         # (N, T, C, K)
    patch = record(tmp_path / "patch.zarr", table, patch_trial, units="patch", **kw)
    with pytest.raises(AnalysisSkipped, match="needs record_units: all"):
        next(patch.points("state", table, rows, cols))
