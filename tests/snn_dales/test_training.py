"""Learning: above chance after a short run, Dale's law kept, batched networks = separate ones."""
import math

import pytest
import torch

from snn_dales.dale import dale_sign_mask, sign_violations
from snn_dales.model import DaleSNN, nll_loss
from snn_dales.stimulus import IPDTask
from snn_dales.train import BatchSource, DataSpec, accuracy_per_model, train_networks, validation_set

TASK = IPDTask()


def _model(n_models, ratio=0.5, seed=0, assignment="random"):
    g = torch.Generator().manual_seed(seed)
    s1 = torch.stack([dale_sign_mask(200, ratio, assignment, g) for _ in range(n_models)])
    s2 = torch.stack([dale_sign_mask(30, ratio, assignment, g) for _ in range(n_models)])
    return DaleSNN(s1, s2, 12, generator=g)


def test_short_run_learns_well_above_chance_and_keeps_dale_signs():
    torch.manual_seed(0)
    model = _model(1)
    val = validation_set(TASK, 512, "per_sample", 1, "cpu")
    spec = DataSpec(batch_size=64, batches_per_epoch=25, phase_offset="per_sample")
    hist = train_networks(model, TASK, spec, val, epochs=4, seed=2)
    test = validation_set(TASK, 1024, "per_sample", 3, "cpu")
    acc = accuracy_per_model(model, *test).item()
    assert acc > 0.35, acc            # chance is 1/12 = 8.3%
    assert hist.best_val_acc[0] == max(a[0] for a in hist.val_acc)
    w1, w2 = model.effective_weights()
    assert sign_violations(w1, model.sign1) == 0 and sign_violations(w2, model.sign2) == 0
    # every outgoing weight of an inhibitory unit is <= 0, of an excitatory unit >= 0
    assert (w1[0][model.sign1[0] < 0] <= 0).all() and (w1[0][model.sign1[0] > 0] >= 0).all()


def test_batched_training_equals_separate_networks():
    """Two networks trained together follow the trajectories they follow alone."""
    both = _model(2, seed=5)
    singles = []
    for k in range(2):
        m = DaleSNN(both.sign1[k:k + 1], both.sign2[k:k + 1], 12)
        with torch.no_grad():
            m.w1.copy_(both.w1[k:k + 1])
            m.w2.copy_(both.w2[k:k + 1])
        singles.append(m)
    source = BatchSource(TASK, DataSpec(batch_size=32), torch.Generator().manual_seed(0))
    opts = [torch.optim.Adam(m.parameters(), lr=0.01) for m in (both, *singles)]
    for step in range(3):
        x, y = source.batch(step, torch.Generator().manual_seed(step))
        for m, opt in zip((both, *singles), opts):
            opt.zero_grad()
            nll_loss(m(x)[0], y).backward()
            opt.step()
    for k in range(2):
        torch.testing.assert_close(both.w1[k], singles[k].w1[0], rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(both.w2[k], singles[k].w2[0], rtol=1e-4, atol=1e-5)


def test_fixed_training_set_is_reused_each_epoch():
    spec = DataSpec(batch_size=8, batches_per_epoch=4, train_set="fixed", phase_offset="per_dataset")
    src = BatchSource(TASK, spec, torch.Generator().manual_seed(0))
    seen = [src.batch(s, torch.Generator().manual_seed(s), torch.Generator().manual_seed(s // 4))[1]
            for s in range(8)]
    epoch0, epoch1 = torch.cat(seen[:4]).sort().values, torch.cat(seen[4:]).sort().values
    assert torch.equal(epoch0, epoch1)  # same 32 samples, another order
    again = src.batch(5, torch.Generator().manual_seed(5), torch.Generator().manual_seed(1))
    assert torch.equal(again[0], src.batch(5, torch.Generator().manual_seed(5), torch.Generator().manual_seed(1))[0])


def test_all_inhibitory_network_is_silent_at_chance():
    model = _model(1, ratio=1.0)
    test = validation_set(TASK, 256, "per_sample", 3, "cpu")
    logits, s = model(test[0])
    assert s.sum() == 0  # only inhibitory input: no hidden spike, the readout is constant
    assert accuracy_per_model(model, *test).item() == pytest.approx((test[1] == 0).float().mean().item())
