"""The training pipeline's pieces against closed forms and dense references."""
import math

import pytest
import torch
import torch.nn.functional as F

from cordsnet import data as D
from cordsnet import pipeline as P
from cordsnet.cnn import CordsCNN, fold_batchnorm
from cordsnet.model import CordsNet
from tests.cordsnet import dense_matrix


def test_anneal_schedule_is_the_published_one():
    # 20 epochs of max(0, 0.95 - 0.05 e): 0.95, 0.90, ..., 0.05, 0.0
    steps = 200
    got = [P.anneal_slope(k, steps, 0.95, 20) for k in range(0, steps, 10)]
    assert got == pytest.approx([max(0.0, 0.95 - 0.05 * e) for e in range(20)], abs=1e-12)
    assert P.anneal_slope(steps - 1, steps, 0.95, 20) == 0.0


def test_cnn_schedule_three_stages_with_warmup():
    lr = [P.cnn_learning_rate(k, 300, 0.1, 10) for k in range(300)]
    assert lr[0] == pytest.approx(0.1 / 3) and lr[10] == pytest.approx(0.1)
    assert lr[5] == pytest.approx(0.1 * (1 / 3 + 2 / 3 * 0.5))
    assert lr[100] == pytest.approx(0.01 / 3) and lr[150] == pytest.approx(0.01)
    assert lr[299] == pytest.approx(0.001)


def test_ramp_is_logspace():
    w = P.ramp(30)
    assert w[0] == pytest.approx(1e-3) and w[-1] == pytest.approx(1.0)
    assert torch.allclose(w[1:] / w[:-1], torch.full((29,), 10 ** (3 / 29)), rtol=1e-5)


def _folded_pair(seed=0, size=16):
    torch.manual_seed(seed)
    cnn = CordsCNN(2, 1, 10, size).double()
    for m in cnn.modules():  # non-trivial batch-norm statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    folded = fold_batchnorm(cnn.eval())
    rnn = CordsNet(2, 1, 10, size).double()
    copied = P.carry_folded_weights(rnn, folded)
    return cnn, folded, rnn, copied


def test_carried_weights_are_all_but_recurrence_and_biases():
    _, folded, rnn, copied = _folded_pair()
    assert not any(k.startswith(("area_conv.", "conv_bias.")) for k in copied)
    fs, rs = folded.state_dict(), rnn.state_dict()
    for k in copied:
        assert torch.equal(fs[k], rs[k]), k
    assert {k for k in rs if k not in copied} == {k for k in rs if k.startswith(("area_conv.", "conv_bias."))}


def test_inversion_loss_is_the_truncated_neumann_series():
    """err = mean(target - (I + R + R^2 + R^3)(Wa + c))^2 with dense matrices, area by area."""
    _, folded, rnn, _ = _folded_pair(seed=1, size=12)
    torch.manual_seed(2)
    with torch.no_grad():
        for b in rnn.conv_bias:
            b.normal_(0, 0.1)
    x = torch.randn(3, 1, 12, 12, dtype=torch.float64)
    out = P.inversion_loss(rnn, folded, x, penalty=10.0)
    # the same from dense operators and the CNN's teacher-forced activations
    with torch.no_grad():
        _, acts = folded(x, return_areas=True)
        p, p_skip = folded.input_layer(x)
        for j in range(2):
            ff = folded.feedforward(j, acts, p, p_skip)
            target = folded.pre_activation(j, ff)
            shape = ff.shape[1:]
            R = dense_matrix(lambda v: F.conv2d(v, rnn.recurrent_weight(j), padding=1), shape)
            n = R.shape[0]
            neumann = torch.eye(n, dtype=R.dtype) + R + R @ R + R @ R @ R
            src = (ff + rnn.conv_bias[j]).reshape(3, n)
            s = src @ neumann.T
            err = ((target.reshape(3, n) - s) ** 2).mean()
            tail = ((src @ torch.linalg.matrix_power(R, 3).T) ** 2).mean()
            assert out.error[j] == pytest.approx(float(err), rel=1e-10)
            assert out.penalty[j] == pytest.approx(float(tail), rel=1e-10)
    assert float(out.loss.detach()) == pytest.approx(float(out.error.mean() + 10 * out.penalty.mean()), rel=1e-12)


def test_inversion_fit_brings_the_linear_fixed_point_to_the_cnn():
    """A few hundred Adam steps on phase 2's loss move the linear RNN's true fixed point
    (I - R)^-1 (Wa + c) towards the CNN pre-activation on held-out images."""
    _, folded, rnn, _ = _folded_pair(seed=3, size=8)
    with torch.no_grad():
        for m in rnn.area_conv:
            m.parametrizations.weight.original0.mul_(0.1)
    train = torch.randn(32, 1, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    test = torch.randn(8, 1, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(5))

    def fixed_point_error():
        with torch.no_grad():
            _, acts = folded(test, return_areas=True)
            p, p_skip = folded.input_layer(test)
            errs = []
            for j in range(2):
                ff = folded.feedforward(j, acts, p, p_skip)
                target = folded.pre_activation(j, ff)
                n = ff[0].numel()
                R = dense_matrix(lambda v: F.conv2d(v, rnn.recurrent_weight(j), padding=1), ff.shape[1:])
                r = torch.linalg.solve(torch.eye(n, dtype=R.dtype) - R, (ff + rnn.conv_bias[j]).reshape(-1, n).T).T
                errs.append(float(((r - target.reshape(-1, n)) ** 2).mean() / (target ** 2).mean()))
            return errs

    before = fixed_point_error()
    params = [p for n, p in rnn.named_parameters() if n.startswith(("area_conv.", "conv_bias."))]
    opt = torch.optim.Adam(params, lr=3e-3)
    for _ in range(300):
        loss = P.inversion_loss(rnn, folded, train).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = fixed_point_error()
    assert all(a < 0.5 * b for a, b in zip(after, before)), (before, after)


def test_course_loss_weights_and_spontaneous_term():
    torch.manual_seed(0)
    rnn = CordsNet(2, 1, 10, 16, blank_steps=3, stimulus_steps=5, post_blank_steps=4).double()
    x = torch.randn(4, 1, 16, 16, dtype=torch.float64)
    y = torch.tensor([1, 2, 3, 4])
    out = P.course_loss(rnn, x, y, blank_steps=3, stimulus_steps=5, post_blank_steps=4, loss_steps=3,
                        spont_steps=2, spont_weight=0.5)
    traj = rnn(x, readout="all", record=(0, 1))
    ce = torch.stack([F.cross_entropy(traj.logits[:, t], y) for t in (5, 6, 7)])
    task = (ce * torch.logspace(-3, 0, 3, dtype=torch.float64)).mean()
    spont = sum(((traj.rates[a][:, t] - traj.spontaneous[a]) ** 2).mean() for a in (0, 1) for t in (10, 11)) / 4
    assert float(out.task.detach()) == pytest.approx(float(task.detach()), rel=1e-10)
    assert float(out.spontaneous.detach()) == pytest.approx(float(spont.detach()), rel=1e-10)
    assert float(out.loss.detach()) == pytest.approx(float((task + 0.5 * spont).detach()), rel=1e-10)


def test_mixing_gives_consistent_soft_labels():
    """Each sample is mixed with its neighbour in the batch (torchvision's roll by one), never
    with itself, also in a batch of two (the published per-GPU batch of phases 4-5); the soft
    labels are exactly lam y + (1 - lam) y_rolled."""
    g = torch.Generator().manual_seed(0)
    kinds = set()
    for b in (2, 3, 4):
        x = torch.arange(b * 8 * 8, dtype=torch.float32).reshape(b, 1, 8, 8)
        y = torch.arange(b)
        rolled = torch.tensor([b - 1, *range(b - 1)])  # sample i pairs with i - 1, the first with the last
        for _ in range(40):
            mixed, soft, info = D.mix_batch(x, y, 5, g)
            kinds.add(info["kind"])
            lam, pair = info["lam"], info["pair"]
            assert torch.equal(pair, rolled) and not (pair == torch.arange(b)).any()
            if info["kind"] == "mixup":
                assert torch.equal(mixed, lam * x + (1 - lam) * x[rolled])
            else:  # lam is the fraction of pixels kept from the image itself; the rest is the partner's
                kept = (mixed == x).float().mean(dim=(1, 2, 3))
                assert torch.allclose(kept, torch.full_like(kept, lam), atol=1e-6)
                assert torch.equal(mixed[mixed != x], x[rolled][mixed != x])
            expect = lam * F.one_hot(y, 5).float() + (1 - lam) * F.one_hot(y[rolled], 5).float()
            assert torch.equal(soft, expect)
            assert torch.allclose(soft.sum(1), torch.ones(b))
    assert kinds == {"mixup", "cutmix"}
    one, soft, info = D.mix_batch(x[:1], y[:1], 5, g)  # nothing to pair with: unmixed
    assert torch.equal(one, x[:1]) and torch.equal(soft, F.one_hot(y[:1], 5).float())


def test_step_batches_are_pure_functions_of_the_step():
    a = list(D.StepBatches(100, 8, seed=3, start=0, stop=20))
    b = list(D.StepBatches(100, 8, seed=3, start=12, stop=20))
    assert a[12:] == b
    assert len({k[1] for batch in a[:12] for k in batch}) == 96  # an epoch is a permutation


def test_seeded_samples_repeat_their_augmentation():
    from torchvision.transforms import v2

    base = torch.utils.data.TensorDataset(torch.rand(5, 1, 12, 12), torch.arange(5))
    ds = D.SeededSamples(base, v2.RandomAffine(degrees=30))
    assert torch.equal(ds[(7, 2)][0], ds[(7, 2)][0])
    assert not torch.equal(ds[(7, 2)][0], ds[(8, 2)][0])


def test_published_transforms_shapes():
    from PIL import Image
    import numpy as np

    img = Image.fromarray((np.random.default_rng(0).random((40, 50, 3)) * 255).astype("uint8"))
    for name in ("imagenet", "cifar10"):
        for train in (True, False):
            out = D.image_transform(name, 32, train)(img)
            assert out.shape == (3, 32, 32)
    grey = Image.fromarray((np.random.default_rng(0).random((28, 28)) * 255).astype("uint8"))
    for name in ("mnist", "fashion_mnist"):
        assert D.image_transform(name, 32, True)(grey).shape == (1, 32, 32)
    x, _ = D.embedded_digits(16, train=True)  # normalised by its own statistics
    assert math.isclose(float(x.mean()), 0.0, abs_tol=1e-5) and math.isclose(float(x.std()), 1.0, rel_tol=1e-4)
