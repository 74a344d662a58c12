"""Analysis helpers against hand-computed answers."""
import math

import numpy as np
import pytest
import torch
from scipy import stats

from snn_dales.analysis import (abs_error_degrees, confusion_matrix, inhibitory_input_ablation, mean_ci,
                                single_unit_ablations, tuning_curves)
from snn_dales.dale import dale_sign_mask
from snn_dales.model import DaleSNN


def test_mean_ci_is_student_t():
    x = np.array([80.0, 82.0, 84.0, 86.0])
    m, h, n = mean_ci(x)
    assert m == 83.0 and n == 4
    assert h == pytest.approx(stats.t.ppf(0.975, 3) * x.std(ddof=1) / 2)


def test_abs_error_and_confusion():
    ipd = torch.tensor([-80.0, 0.0, 10.0]) * math.pi / 180
    est = torch.tensor([0, 6, 6])
    err = abs_error_degrees(ipd, est, 12)
    torch.testing.assert_close(err, torch.tensor([2.5, 7.5, 2.5]), rtol=0, atol=1e-4)
    cm = confusion_matrix(torch.tensor([0, 0, 1, 2]), torch.tensor([0, 1, 1, 2]), 3)
    assert cm[:, 0].tolist() == [0.5, 0.5, 0.0] and cm[1, 1] == 1 and cm[2, 2] == 1


def test_ablations_zero_the_right_weights_and_match_a_silenced_unit():
    g = torch.Generator().manual_seed(0)
    model = DaleSNN(dale_sign_mask(200, 0.5, "random", g)[None], dale_sign_mask(30, 0.5, "random", g)[None],
                    12, generator=g)
    w1, w2 = model.effective_weights()
    a1 = inhibitory_input_ablation(w1, model.sign1)
    assert (a1[0][model.sign1[0] < 0] == 0).all() and (a1[0][model.sign1[0] > 0] == w1[0][model.sign1[0] > 0]).all()
    u1, u2 = single_unit_ablations(w1[0], w2[0])
    assert u2.shape == (30, 30, 12) and (u2[4, 4] == 0).all() and torch.equal(u2[4, 5], w2[0, 5])
    # copy k of the batched ablation = the network with unit k's output removed by hand
    x = torch.rand(8, 100, 200) < 0.25
    logits, _ = model(x, (u1, u2))
    w2k = w2.clone()
    w2k[0, 7] = 0
    ref, _ = model(x, (w1, w2k))
    torch.testing.assert_close(logits[7], ref[0])


def test_tuning_curves_average_per_bin():
    ipd = torch.tensor([-1.5, -1.4, 0.1, 1.5])
    rates = torch.tensor([[1.0, 0.0], [3.0, 2.0], [5.0, 4.0], [7.0, 6.0]])
    centres, curves = tuning_curves(rates, ipd, 3)
    assert curves[0].tolist() == [2.0, 1.0] and curves[1].tolist() == [5.0, 4.0] and curves[2].tolist() == [7.0, 6.0]
    assert centres.tolist() == pytest.approx([-60.0, 0.0, 60.0], abs=1e-4)
