"""V1 data: the Stringer-file loader (on a file of the same layout) and the synthetic population."""
import numpy as np
import pytest
import torch

from core.errors import DatasetUnavailable
from rsa.v1data import STRINGER_FILE, load_stringer_v1, nearest_stimuli, synthetic_v1


def test_missing_file_says_where_and_how(tmp_path):
    with pytest.raises(DatasetUnavailable) as err:
        load_stringer_v1(tmp_path)
    msg = str(err.value)
    assert str(tmp_path / "stringer" / STRINGER_FILE) in msg and "osf.io/683xc" in msg
    assert "synthetic" in msg


def test_loader_keeps_first_half_centres_and_bins(tmp_path):
    stim = np.arange(0, 360, 1.0)
    resp = np.stack([stim, -stim, np.ones_like(stim)], axis=1)  # (360, 3)
    (tmp_path / "stringer").mkdir()
    np.savez(tmp_path / "stringer" / STRINGER_FILE, resp=resp, stimuli=stim)
    v1 = load_stringer_v1(tmp_path)
    assert v1.resp.shape == (181, 3) and v1.resp.dtype == torch.float32
    assert v1.ori.min() == -90 and v1.ori.max() == 90
    torch.testing.assert_close(v1.resp[:, 0], v1.ori + 90)
    binned = load_stringer_v1(tmp_path, bin_width=10)
    # bins [0,10), [10,20), ... averaged: orientation 4.5 - 90 and response = mean of 0..9
    assert binned.ori[0].item() == pytest.approx(-85.5)
    assert binned.resp[0, 0].item() == pytest.approx(4.5)
    assert binned.resp.shape[0] == 18


def test_synthetic_population_is_tuned_and_zscored():
    ori = torch.linspace(-90, 90, 181)
    v1 = synthetic_v1(ori, 3000, seed=1)
    assert v1.resp.shape == (181, 3000) and v1.source == "synthetic"
    torch.testing.assert_close(v1.resp.mean(0), torch.zeros(3000), atol=1e-5, rtol=0)
    torch.testing.assert_close(v1.resp.std(0), torch.ones(3000), atol=1e-4, rtol=0)
    # population-vector decoding of orientation (doubled angle) from the noisy responses
    clean = synthetic_v1(ori, 3000, seed=1, fano=0, gain_noise=0, additive_noise=0, zscore=False).resp
    pref = ori[clean.argmax(0)]
    angle = torch.deg2rad(2 * pref)
    decoded = torch.rad2deg(torch.atan2(v1.resp @ torch.sin(angle), v1.resp @ torch.cos(angle))) / 2
    err = torch.remainder(decoded - ori + 90, 180) - 90
    assert err.abs().median() < 5.0
    # neighbouring orientations are more similar than orthogonal ones
    c = torch.corrcoef(v1.resp)
    assert c[90, 91] > 0.3 and c[90, 91] > c[90, 120] > c[90, 0]


def test_same_population_for_any_orientations_and_noise_levels():
    a = synthetic_v1(torch.tensor([-30.0, 0.0, 45.0]), 50, seed=3, fano=0, gain_noise=0,
                     additive_noise=0, zscore=False).resp
    b = synthetic_v1(torch.tensor([45.0, 10.0]), 50, seed=3, fano=0, gain_noise=0,
                     additive_noise=0, zscore=False).resp
    torch.testing.assert_close(a[2], b[0])
    noisy = synthetic_v1(torch.tensor([45.0]), 50, seed=3, zscore=False, trials_averaged=1000).resp
    assert torch.corrcoef(torch.stack([noisy[0], a[2]]))[0, 1] > 0.95


def test_nearest_stimuli_wraps_at_90_degrees():
    idx = nearest_stimuli(torch.tensor([-89.0, 0.0, 60.0]), torch.tensor([89.5, 2.0, 50.0]))
    assert idx.tolist() == [0, 1, 2]
