"""precision: bf16 for CordsNet: the forward's rates stay float32, the loss, its gradients and the
accuracies over a whole tiny training pipeline follow fp32 within stated tolerances."""
import pandas as pd
import torch

from cordsnet.model import CordsNet
from cordsnet.pipeline import course_loss

from tests.cordsnet.test_suite import TINY

#: bf16 (8-bit mantissa) products inside the convs, 20 Euler steps: the loss within 2 %
#: (measured 0.002 %), each gradient within 5 % of its norm (measured <= 2.9 %)
LOSS_RTOL, GRAD_RTOL = 2e-2, 5e-2


def test_bf16_course_loss_and_gradients_follow_fp32():
    torch.manual_seed(0)
    net = CordsNet(2, 1, 10, 16)
    with torch.no_grad():
        for b in net.conv_bias:
            b.normal_(0, 0.05)
    images = torch.randn(8, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    labels = torch.arange(8) % 10
    kw = dict(blank_steps=5, stimulus_steps=10, post_blank_steps=5, loss_steps=4, spont_steps=2, spont_weight=1e-3)
    out = {}
    for prec in ("fp32", "bf16"):
        net.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=prec == "bf16"):
            res = course_loss(net, images, labels, **kw)
            rates = net.simulate(net.rest_state(2), images[:2], 3)[0]
        res.loss.float().backward()
        out[prec] = (float(res.loss.detach()), {n: p.grad.clone() for n, p in net.named_parameters()}, rates)
    (la, ga, ra), (lb, gb, rb) = out["fp32"], out["bf16"]
    assert all(r.dtype == torch.float32 for r in rb)          # the state stays float32
    assert 0 < abs(la - lb) / abs(la) < LOSS_RTOL              # it did run in bfloat16, close to fp32
    assert max(float((ga[k] - gb[k]).norm() / ga[k].norm()) for k in ga if ga[k].norm() > 0) < GRAD_RTOL


def test_bf16_pipeline_trains_to_fp32s_accuracies(run_main, tmp_path):
    """The whole pipeline (CNN long enough to learn the digits), evaluated on the whole test set
    at the end of the CNN phase and at the end of training."""
    evals = {}
    for prec in ("fp32", "bf16"):
        rc, err = run_main(*TINY, "--precision", prec, "--run_name", prec, "--cnn_steps", "40", "--cnn_lr", "0.05",
                           "--eval_every", "40", "--n_eval", "128", "--finetune_steps", "17")
        assert rc == 0, err
        evals[prec] = pd.read_csv(tmp_path / f"runs/{prec}/tables/training/evaluations.csv")
    a, b = evals["fp32"], evals["bf16"]
    # every phase ends with the whole test set (360 digits): the CNN at 40, the RNN at the end (68)
    assert list(a["step"]) == list(b["step"]) == [40, 44, 47, 51, 68]
    cnn = [float(d.loc[d["step"] == 40, "cnn_test_accuracy_full"].iloc[0]) for d in (a, b)]
    rnn = [float(d.loc[d["step"] == 68, "test_accuracy_full"].iloc[0]) for d in (a, b)]
    print("cnn", cnn, "rnn", rnn)
    assert cnn[0] > 0.5                                                    # it learnt something
    assert abs(cnn[0] - cnn[1]) <= 6 / 360 + 1e-9
    assert abs(rnn[0] - rnn[1]) <= 8 / 360 + 1e-9
