"""NRFLV experiments: the protocol's phases, where units are read, the recording through the
command line (stimuli, recording, every analysis) and its exact resume after a crash."""
import numpy as np
import pytest
import torch
import zarr

from nrflv.experiment import Protocol, Recorder, layer_sites, run_protocol, window_index
from tests.nrflv.test_suite import TINY

EXP = ["--just_angle_directions", "6", "--contrast_directions", "2", "--contrast_levels", "0,2.4",
       "--few_angles_directions", "2", "--few_angles_repeats", "2", "--long_bars_directions", "2",
       "--long_bars_repeats", "2", "--pair_directions", "1", "--pair_distances", "2,3", "--pair_repeats", "2",
       "--flank_distance", "3", "--exp_burn_in", "5", "--exp_blank_before", "40", "--exp_stimulus", "40",
       "--exp_blank_after", "20", "--record_batch", "8", "--onset_skip_ms", "20", "--spectrum_nperseg", "16",
       "--spectrogram_nperseg", "16", "--max_lag_ms", "20", "--n_bootstrap", "50",
       "--lfp_units", "all"]   # a 4-update model has no tuned channel: the LFP of every channel


def test_protocol_phases_and_clamped_images():
    p = Protocol(2, 3, 4, 1)
    assert (p.total, p.onset, p.offset) == (10, 5, 9)
    assert p.phase_of_step().tolist() == [0, 0, 1, 1, 1, 2, 2, 2, 2, 3]

    class Sampler:  # records which image is clamped at each step
        momentum = [None, torch.zeros(1, 1, 2, 2)]

        def __init__(self):
            self.seen = []

        def step(self, grads):
            self.seen.append(float(states[0][0, 0, 0, 0]))
            states[1].add_(1.0)

    states = [torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2)]
    images = [torch.full((1, 1, 2, 2), float(k)) for k in (10, 20, 30, 40)]
    rec = Recorder(["state", "momentum"], p.total, 1, 1, None, None, (2, 2), torch.float32, torch.device("cpu"))
    sampler = Sampler()
    out = run_protocol(p, states, images, lambda s: (None, [None, torch.zeros_like(s[1])]), sampler, rec, 1)
    assert sampler.seen == [10, 10, 20, 20, 20, 30, 30, 30, 30, 40]
    # the state at index t is the one before step t: the initial state first
    assert out["state"][0, :, 0, 0, 0, 0].tolist() == list(map(float, range(10)))


def test_layer_means_and_movie_of_the_whole_layer():
    """layer_means: each unit's mean over every step of each phase; layer_movie: every N-th
    step's whole layer -- equal to what a whole-layer recording of every step holds."""
    p = Protocol(3, 5, 7, 4)
    g = torch.Generator().manual_seed(0)
    walk = torch.randn(p.total, 2, 3, 4, 4, generator=g)

    class Sampler:
        momentum = [None, torch.zeros(2, 3, 4, 4)]
        t = 0

        def step(self, grads):
            Sampler.t += 1
            if Sampler.t < p.total:
                states[1].copy_(walk[Sampler.t])

    states = [torch.zeros(2, 1, 4, 4), walk[0].clone()]
    images = [torch.zeros(2, 1, 4, 4)] * 4
    rec = Recorder(["state"], p.total, 2, 3, None, None, (4, 4), torch.float32, torch.device("cpu"),
                   layer_means=True, movie_every=4)
    out = run_protocol(p, states, images, lambda s: (None, [None, torch.zeros_like(s[1])]), Sampler(), rec, 1)
    full = out["state"][:, :, 0]                                          # (B, T, C, H, W)
    phase = p.phase_of_step()
    for k in range(4):
        torch.testing.assert_close(out["layer_means"][:, k], full[:, phase == k].mean(1))
    assert out["layer_movie"].shape == (2, 5, 3, 4, 4)                     # steps 0, 4, 8, 12, 16
    torch.testing.assert_close(out["layer_movie"], full[:, ::4])


def test_windows_around_sites_and_layer_stride():
    y, x = layer_sites(torch.tensor([[16, 20]]), torch.tensor([[16, 3]]), (32, 32), (8, 8))
    assert y.tolist() == [[4, 5]] and x.tolist() == [[4, 0]]
    layer = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    sy, sx = torch.tensor([[4, 2], [1, 6]]), torch.tensor([[4, 5], [1, 1]])
    rows, cols = window_index(sy, sx, 3, (8, 8))
    rec = Recorder(["state"], 1, 2, 3, rows, cols, (8, 8), torch.float32, torch.device("cpu"))
    rec(0, {"state": layer})
    got = rec.buffers["state"][:, 0]                                   # (B, S, C, P, P)
    for b in range(2):
        for s in range(2):
            want = layer[b, :, sy[b, s] - 1:sy[b, s] + 2, sx[b, s] - 1:sx[b, s] + 2]
            assert torch.equal(got[b, s], want)
    with pytest.raises(ValueError, match="leaves the 8x8 layer"):
        window_index(torch.tensor([[0]]), torch.tensor([[4]]), 3, (8, 8))


def test_experiment_end_to_end_and_exact_resume(run_main, tmp_path, monkeypatch, capsys):
    rc, err = run_main(*TINY, *EXP, "--run_name", "full", "--gen_exp_stim", "--experiment", "--analyze")
    assert rc == 0, err
    run = tmp_path / "runs/full"
    for name in ("active_units/fraction_active", "orientation_tuning/polar_tuning", "spectra/lfp_spectra",
                 "spectra/peak_vs_contrast", "spectra/spectrograms", "ei_lag/ei_lag", "transients/transients",
                 "synchrony/synchrony", "summary/summary", "stimuli/contact_sheet_pairs",
                 "oscillations/oscillations_by_contrast", "traces/traces_around_onset",
                 "transients/original_transients", "activity_maps/retinotopy_long_bars_trial14",
                 "activity_maps/activity_map_just_angle_trial0"):
        assert (run / f"figures/{name}.png").is_file(), name
    for name in ("stimuli/conditions", "spectra/peak_by_contrast", "ei_lag/ei_lag_per_channel",
                 "synchrony/synchrony_groups", "transients/transients_by_contrast", "analysis/summary",
                 "summary/headlines", "orientation_tuning/channel_tuning", "active_units/active_channels",
                 "oscillations/unit_oscillations", "traces/channel_rhythm", "activity_maps/map_per_trial"):
        assert (run / f"tables/{name}.csv").is_file(), name
    act = zarr.open_group(str(run / "recordings/activity.zarr"), mode="r")
    assert act["state"].shape == (26, 105, 2, 16, 3, 3) and act["state"].dtype == np.float16
    assert act["layer_means"].shape == (26, 4, 16, 16, 16) and act["layer_means"].dtype == np.float32
    assert act.attrs["onset_step"] == 45 and abs(act.attrs["ms_per_step"] - 70 / 17) < 1e-12

    # a second run, killed in its second recorded block, then resumed: the same recording
    from nrflv import suite as nrflv_suite

    real = nrflv_suite.NRFLVSuite.record
    calls = {"n": 0}

    def dying(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt("killed")
        return real(self, *a, **k)
    monkeypatch.setattr(nrflv_suite.NRFLVSuite, "record", dying)
    with pytest.raises(KeyboardInterrupt):
        run_main(*TINY, *EXP, "--run_name", "cut", "--gen_exp_stim", "--experiment")
    monkeypatch.setattr(nrflv_suite.NRFLVSuite, "record", real)
    rc, err = run_main("--resume", str(tmp_path / "runs/cut"), "--experiment")
    assert rc == 0, err
    cut = zarr.open_group(str(tmp_path / "runs/cut/recordings/activity.zarr"), mode="r")
    for var in ("state", "momentum"):
        np.testing.assert_array_equal(act[var][...], cut[var][...])

    # issue 23: a lag window longer than the stimulus, and a deleted chunk: one line, exit 2
    import analysis_main
    from core import integrity

    capsys.readouterr()
    rc = analysis_main.main(["--run", str(run), "--only", "ei_lag", "--set", "max_lag_ms=1e9"])
    err = capsys.readouterr().err
    assert rc == 2 and "lower max_lag_ms" in err and "Traceback" not in err, err
    (run / "recordings/activity.zarr/state/c/1/0/0/0/0/0").unlink()
    integrity._verified.clear()
    rc, err = run_main("--resume", str(run), "--no_train_model", "--experiment")
    assert rc == 2 and "state/c/1/0/0/0/0/0" in err and "is missing" in err, err
    assert analysis_main.main(["--run", str(run), "--only", "ei_lag"]) == 2
    err = capsys.readouterr().err
    assert "state/c/1/0/0/0/0/0" in err and len(err.strip().splitlines()) == 1, err


def test_stimuli_that_do_not_fit_are_refused_before_anything_is_written(run_main, tmp_path):
    rc, err = run_main(*TINY, "--gen_exp_stim", "--pair_distances", "3,10", "--run_name", "bad")
    assert rc == 2 and "outside the 16x16 image" in err
    assert not (tmp_path / "runs/bad").exists()
    rc, err = run_main(*TINY, *EXP, "--experiment", "--record_patch", "11", "--run_name", "bad2")
    assert rc == 2 and "record_patch" in err
    assert not (tmp_path / "runs/bad2").exists()


def test_thesis_presets_record_at_their_real_size(run_main, tmp_path):
    """The pairs set at the thesis size (32x32 image, distances up to 10 px, SL1 32x32x32): every
    window fits, and the recording has the thesis layout."""
    rc, err = run_main("--config", "configs/nrflv_thesis_pairs.yaml", "--dataset", "natural_patches",
                       "--n_images", "32", "--no_train_model", "--gen_exp_stim", "--experiment",
                       "--pair_repeats", "1", "--record_batch", "32", "--exp_burn_in", "1", "--exp_blank_before", "2",
                       "--exp_stimulus", "2", "--exp_blank_after", "1", "--run_name", "thesis")
    assert rc == 0, err
    act = zarr.open_group(str(tmp_path / "runs/thesis/recordings/activity.zarr"), mode="r")
    assert act["state"].shape == (32, 6, 2, 32, 3, 3)
    assert sorted(set(act["coords/distance"][...])) == [3, 5, 7, 10]
