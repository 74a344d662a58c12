"""The equivalent CNN: batch-norm folding is exact, the folded model's keys are the original's,
the linear RNN with R = I - A^-1 has the CNN's pre-activation as its fixed point, and the
ResNet-18 mapping puts every ResNet weight where it belongs."""
from __future__ import annotations

import math

import pytest
import torch
import torchvision

from cordsnet.cnn import CordsCNN, FoldedCNN, fold_batchnorm, resnet18_to_cnn
from cordsnet.model import CordsNet, euler_update
from tests.cordsnet import dense_matrix

WN = ".parametrizations.weight.original"


def randomise_batchnorm(net: torch.nn.Module, seed: int = 0) -> None:
    """Non-trivial affine parameters and running statistics in every BatchNorm2d."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                n = m.num_features
                m.weight.copy_(0.5 + torch.rand(n, generator=g))
                m.bias.copy_(0.3 * torch.randn(n, generator=g))
                m.running_mean.copy_(0.3 * torch.randn(n, generator=g))
                m.running_var.copy_(0.5 + 1.5 * torch.rand(n, generator=g))


@torch.no_grad()
@pytest.mark.parametrize("depth,channels,size", [(8, 3, 32), (2, 1, 20)])
def test_batchnorm_folding_leaves_logits_unchanged(depth, channels, size):
    torch.manual_seed(0)
    cnn = CordsCNN(depth, channels, 10, size).double()
    randomise_batchnorm(cnn)
    cnn.eval()
    folded = fold_batchnorm(cnn)
    x = torch.randn(3, channels, size, size, dtype=torch.float64)
    logits, acts = cnn(x, return_areas=True)
    logits_f, acts_f = folded(x, return_areas=True)
    assert (logits - logits_f).abs().max() < 1e-5 * max(1.0, logits.abs().max().item())
    for a, b in zip(acts, acts_f):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)
    # biases carried through zero-padded layers are maps, not constants: the borders differ
    b0 = folded.area_bias[0]
    assert (b0[:, 2:-1, 2:-1].std(dim=(1, 2)) < 1e-12).all()      # interior: constant per channel
    assert (b0 - b0[:, 1:2, 1:2]).abs().max() > 1e-3                # border: not
    # v has unit norm per output channel, g carries the scale
    v = folded.area_area[0].parametrizations.weight.original1
    torch.testing.assert_close(v.flatten(1).norm(dim=1), torch.ones(v.shape[0], dtype=v.dtype))


def original_shapes_cnn(depth: int, folded: bool) -> set[str]:
    """Keys of the original's step1cordsnetfolded / step1cordsnet (less its unused area_bias)."""
    convs = ["inp_conv", "inp_skip", "out_fc"]
    convs += [f"{n}.{i}" for n in ("area_conv", "area_area") for i in range(depth)]
    convs += [f"skip_area.{i}" for i in range(depth // 2 - 1)]
    keys = {f"{c}{WN}{k}" for c in convs for k in "01"} | {"out_fc.bias"}
    if folded:
        return keys | {f"{n}.{i}" for n in ("area_bias", "conv_bias") for i in range(depth)}
    bns = ["inp_norm"] + [f"{n}.{i}" for n in ("area_norm", "area_nrm2") for i in range(depth)]
    bns += [f"skip_norm.{i}" for i in range(depth // 2 - 1)]
    return keys | {f"{b}.{k}" for b in bns for k in ("weight", "bias", "running_mean", "running_var",
                                                         "num_batches_tracked")}


@pytest.mark.parametrize("depth", [4, 8])
def test_cnn_keys_are_the_originals(depth):
    assert set(FoldedCNN(depth, input_size=32).state_dict()) == original_shapes_cnn(depth, True)
    assert set(CordsCNN(depth, input_size=32).state_dict()) == original_shapes_cnn(depth, False)


@torch.no_grad()
def test_folded_weights_load_into_cordsnet():
    folded = FoldedCNN(4, 3, 10, 32)
    sd = {k: v for k, v in folded.state_dict().items() if not k.startswith("area_bias")}
    net = CordsNet(4, 3, 10, 32)
    net.load_state_dict(sd, strict=True)
    torch.testing.assert_close(net.recurrent_weight(2), folded.area_conv[2].weight)


@torch.no_grad()
def test_linear_rnn_with_exact_inverse_has_the_cnn_preactivation_as_fixed_point():
    """Stage 2's target: with R = I - A^-1 and c = b1 + A^-1 b2 the linear area's fixed point
    (I - R)^-1 (W a + c) is the CNN's pre-activation A (W a + b1) + b2; Euler reaches it."""
    torch.manual_seed(0)
    cnn = FoldedCNN(2, 3, 10, input_size=8).double()               # areas of 64 x 2 x 2 units
    shape = tuple(cnn.area_bias[0].shape)
    n = math.prod(shape)
    with torch.no_grad():
        k = 0.05 * torch.randn(64, 64, 3, 3, dtype=torch.float64)
        k[:, :, 1, 1] += torch.eye(64, dtype=torch.float64)         # A = I + small: invertible
        wn = cnn.area_conv[0].parametrizations.weight
        wn.original1.copy_(k)
        wn.original0.copy_(k.flatten(1).norm(dim=1).view(-1, 1, 1, 1))
        cnn.area_bias[0].normal_(0, 0.5)
        cnn.conv_bias[0].normal_(0, 0.5)
        x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
        p, p_skip = cnn.input_layer(x)
        ff = cnn.feedforward(0, [], p, p_skip)                        # W a    (2, 64, 2, 2)
        target = cnn.pre_activation(0, ff)                            # A (W a + b1) + b2

        a_mat = dense_matrix(cnn.area_conv[0], shape)
        torch.testing.assert_close(a_mat @ ff[0].flatten(), cnn.area_conv[0](ff)[0].flatten())
        a_inv = torch.linalg.inv(a_mat)
        rec = torch.eye(n, dtype=torch.float64) - a_inv               # R = I - A^-1
        c = cnn.area_bias[0].flatten() + a_inv @ cnn.conv_bias[0].flatten()
        drive = ff.flatten(1)
        exact = torch.linalg.solve(torch.eye(n, dtype=torch.float64) - rec, (drive + c).T).T
        torch.testing.assert_close(exact, target.flatten(1), rtol=1e-9, atol=1e-9)

        lam = torch.linalg.eigvals(rec)
        assert (torch.abs(1 - 0.2 + 0.2 * lam) < 1).all()              # Euler-stable at alpha = 0.2
        r = torch.zeros_like(drive)
        for _ in range(300):
            r = euler_update(r, r @ rec.T + c + drive, 0.2, slope=1.0)
        torch.testing.assert_close(r, target.flatten(1), rtol=1e-8, atol=1e-8)


@torch.no_grad()
def test_resnet18_weights_map_block_by_block():
    torch.manual_seed(0)
    resnet = torchvision.models.resnet18(weights=None)
    randomise_batchnorm(resnet, seed=1)
    rsd = resnet.state_dict()
    cnn = CordsCNN(8, 3, 1000, input_size=32)
    missing, unexpected = cnn.load_state_dict(resnet18_to_cnn(rsd), strict=False)
    assert not unexpected
    assert sorted(missing) == [f"inp_skip{WN}0", f"inp_skip{WN}1"]
    pairs = [(cnn.inp_conv, "conv1"), (cnn.out_fc, "fc")]
    for b in range(8):
        blk = f"layer{b // 2 + 1}.{b % 2}"
        pairs += [(cnn.area_area[b], f"{blk}.conv1"), (cnn.area_conv[b], f"{blk}.conv2")]
        assert torch.equal(cnn.area_nrm2[b].running_var, rsd[f"{blk}.bn2.running_var"])
        assert torch.equal(cnn.area_norm[b].weight, rsd[f"{blk}.bn1.weight"])
    for i in range(3):
        pairs.append((cnn.skip_area[i], f"layer{i + 2}.0.downsample.0"))
        assert torch.equal(cnn.skip_norm[i].running_mean, rsd[f"layer{i + 2}.0.downsample.1.running_mean"])
    for module, name in pairs:
        torch.testing.assert_close(module.weight, rsd[f"{name}.weight"], rtol=1e-6, atol=1e-7)
    assert torch.equal(cnn.out_fc.bias, rsd["fc.bias"])
    assert cnn.eval()(torch.randn(1, 3, 32, 32)).shape == (1, 1000)
    # grey inputs and 10 classes: the input conv and readout stay as initialised
    mapped = resnet18_to_cnn(rsd, in_channels=1, n_classes=10)
    missing, unexpected = CordsCNN(8, 1, 10, 32).load_state_dict(mapped, strict=False)
    assert not unexpected
    assert {k.split(".")[0] for k in missing} == {"inp_conv", "inp_skip", "out_fc"}
    assert "inp_norm.weight" in mapped
