"""CordsNet: published checkpoint format, parameter count, Euler fixed points, update order,
and equivalence to a naive transcription of the published forward."""
from __future__ import annotations

import io
import math

import pytest
import torch
import torch.nn.functional as F

from core.config import from_dict
from core.errors import UserError
from cordsnet.config import CordsNetConfig
from cordsnet.model import CordsNet, area_sizes, euler_update, leaky
from tests.cordsnet import dense_matrix

# the original's definitions (cordsnet.py), copied as data
ORIG_CHANNELS = [64, 64, 64, 128, 128, 256, 256, 512, 512]
ORIG_SIZES = [56, 56, 28, 28, 14, 14, 7, 7]
ORIG_SKIP = [64, 128, 256, 512]
R8_IMAGENET_PARAMETERS = 12_475_280


def published_shapes(depth: int = 8, n_channel: int = 3, n_class: int = 1000) -> dict[str, tuple[int, ...]]:
    """Key -> shape of the original ``cordsnet(dataset, depth).state_dict()`` at 224 px."""
    t: dict[str, tuple[int, ...]] = {}

    def wn(name, out, *rest):
        t[f"{name}.parametrizations.weight.original0"] = (out,) + (1,) * len(rest)
        t[f"{name}.parametrizations.weight.original1"] = (out,) + rest

    wn("inp_conv", 64, n_channel, 7, 7)
    wn("inp_skip", 64, 64, 3, 3)
    for i in range(depth):
        wn(f"area_conv.{i}", ORIG_CHANNELS[i + 1], ORIG_CHANNELS[i + 1], 3, 3)
        t[f"conv_bias.{i}"] = (ORIG_CHANNELS[i + 1], ORIG_SIZES[i], ORIG_SIZES[i])
        wn(f"area_area.{i}", ORIG_CHANNELS[i + 1], ORIG_CHANNELS[i], 3, 3)
    for i in range(int(depth / 2 - 1)):
        wn(f"skip_area.{i}", ORIG_SKIP[i + 1], ORIG_SKIP[i], 1, 1)
    wn("out_fc", n_class, ORIG_CHANNELS[depth])
    t["out_fc.bias"] = (n_class,)
    return t


def shapes_of(model) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


@pytest.fixture(scope="module")
def r8():
    torch.manual_seed(0)
    return CordsNet(depth=8)


def test_published_r8_imagenet_keys_and_shapes(r8):
    assert shapes_of(r8) == published_shapes(8)


@pytest.mark.parametrize("depth,channels,classes", [(2, 1, 10), (4, 3, 100), (6, 3, 10)])
def test_shallower_depths_match_the_original(depth, channels, classes):
    assert shapes_of(CordsNet(depth, channels, classes)) == published_shapes(depth, channels, classes)


def test_parameter_count_r8_imagenet(r8):
    n = sum(p.numel() for p in r8.parameters())
    from_table = sum(math.prod(s) for s in published_shapes(8).values())
    print(f"\nCordsNet R8 (ImageNet, 224 px): {n:,} parameters")
    assert n == from_table == R8_IMAGENET_PARAMETERS


def test_published_format_state_dict_round_trips_without_renaming(r8):
    g = torch.Generator().manual_seed(1)
    published = {k: torch.randn(s, generator=g) for k, s in published_shapes(8).items()}
    buf = io.BytesIO()
    torch.save(published, buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=True)
    net = CordsNet(depth=8)
    net.load_state_dict(loaded, strict=True)
    for k, v in net.state_dict().items():
        assert torch.equal(v, published[k]), k
    # the effective weight is g v / |v| per output channel
    g0 = published["area_conv.3.parametrizations.weight.original0"]
    v0 = published["area_conv.3.parametrizations.weight.original1"]
    expect = g0 * v0 / v0.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
    torch.testing.assert_close(net.recurrent_weight(3), expect)
    # and a model's own state dict round-trips the same way
    buf = io.BytesIO()
    torch.save(r8.state_dict(), buf)
    buf.seek(0)
    again = CordsNet(depth=8)
    again.load_state_dict(torch.load(buf, weights_only=True), strict=True)
    assert all(torch.equal(a, b) for a, b in zip(again.state_dict().values(), r8.state_dict().values()))


@pytest.mark.parametrize("size", [224, 32, 28, 21, 9])
def test_area_sizes_follow_the_convolutions(size):
    x = torch.zeros(1, 64, (size + 1) // 2, (size + 1) // 2)
    s = torch.nn.AvgPool2d(3, 2, 1)(x).shape[-1]
    expect = []
    for j, stride in enumerate([1, 1, 2, 1, 2, 1, 2, 1]):
        s = (s + 2 - 3) // stride + 1
        expect.append(s)
    assert area_sizes(size) == expect
    if size == 224:
        assert expect == ORIG_SIZES


def test_recurrent_weight_is_the_effective_conv(r8):
    r = torch.randn(1, 128, 5, 5)
    torch.testing.assert_close(F.conv2d(r, r8.recurrent_weight(2), padding=1), r8.area_conv[2](r))
    torch.testing.assert_close(F.conv2d(r, r8.feedforward_weight(3), padding=1), r8.area_area[3](r))


def small_net(depth: int = 8, size: int = 16, seed: int = 0, **kw) -> CordsNet:
    torch.manual_seed(seed)
    net = CordsNet(depth=depth, input_size=size, **kw)
    with torch.no_grad():
        for b in net.conv_bias:
            b.normal_(0, 0.1)
    return net


def reference_course(net: CordsNet, images, n_blank, n_stim, n_post, deepest_first=True):
    """The published forward transcribed literally: input conv recomputed for every area at
    every step, rates updated in place in the given area order. Returns (B, T, K) logits and
    per-step states."""
    relu, a = F.relu, net.alpha
    rs = [torch.zeros(images.shape[0], *b.shape, dtype=images.dtype) for b in net.conv_bias]

    def rnn(area, r, img):
        inp = net.inp_avgpool(net.inp_conv(img))
        if area == 0:
            x = inp
        if area == 1:
            x = relu(r[0]) + net.inp_skip(inp)
        if area == 2:
            x = relu(r[1]) + relu(r[0])
        if area == 3:
            x = relu(r[2]) + net.skip_area[0](relu(r[1]))
        if area == 4:
            x = relu(r[3]) + relu(r[2])
        if area == 5:
            x = relu(r[4]) + net.skip_area[1](relu(r[3]))
        if area == 6:
            x = relu(r[5]) + relu(r[4])
        if area == 7:
            x = relu(r[6]) + net.skip_area[2](relu(r[5]))
        pre = net.area_conv[area](r[area]) + net.conv_bias[area] + net.area_area[area](x)
        return (1 - a) * r[area] + a * leaky(pre, net.slope)

    order = range(net.depth - 1, -1, -1) if deepest_first else range(net.depth)
    logits, states = [], []
    for img, n in ((images * 0, n_blank), (images, n_stim), (images * 0, n_post)):
        for _ in range(n):
            for j in order:
                rs[j] = rnn(j, rs, img)
            out = net.out_fc(F.adaptive_avg_pool2d(relu(rs[-1]) + relu(rs[-2]), 1).flatten(1))
            logits.append(out)
            states.append([r.clone() for r in rs])
    return torch.stack(logits, 1), states


@torch.no_grad()
@pytest.mark.parametrize("depth,slope", [(8, 0.0), (4, 0.4), (2, 1.0)])
def test_forward_equals_the_naive_published_forward(depth, slope):
    """Input layer once per phase == input conv recomputed per area per step, at every step."""
    net = small_net(depth, slope=slope)
    x = torch.randn(2, 3, 16, 16)
    ref_logits, ref_states = reference_course(net, x, 2, 3, 1)
    out = net(x, blank_steps=2, stimulus_steps=3, post_blank_steps=1, readout="all", record=range(depth))
    close = dict(rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out.logits, ref_logits, **close)
    for j in range(depth):
        torch.testing.assert_close(out.rates[j], torch.stack([s[j] for s in ref_states], 1), **close)
    for s, r in zip(out.spontaneous, ref_states[1]):
        torch.testing.assert_close(s, r, **close)
    # the default readout is the published one: at the end of the image, not after the blank
    image_end = net(x, blank_steps=2, stimulus_steps=3, post_blank_steps=1)
    torch.testing.assert_close(image_end.logits, ref_logits[:, 2 + 3 - 1], **close)
    assert (image_end.logits - ref_logits[:, -1]).abs().max() > 1e-4  # and the test tells them apart
    last = net(x, blank_steps=2, stimulus_steps=3, post_blank_steps=1, readout="course_end")
    torch.testing.assert_close(last.logits, ref_logits[:, -1], **close)
    with pytest.raises(ValueError, match="image_end"):
        net(x, readout="last")


@torch.no_grad()
def test_update_order_is_deepest_first():
    net = small_net(6)
    x = torch.randn(2, 3, 16, 16)
    out = net(x, blank_steps=0, stimulus_steps=3, readout="all")
    deep, _ = reference_course(net, x, 0, 3, 0, deepest_first=True)
    shallow, _ = reference_course(net, x, 0, 3, 0, deepest_first=False)
    torch.testing.assert_close(out.logits, deep, rtol=1e-5, atol=1e-6)
    assert (out.logits - shallow).abs().max() > 1e-3   # the order matters, and this test sees it
    # one step from rest with zero biases: areas reached only through other areas stay silent,
    # as each area reads the lower areas' previous-step (zero) rates
    for b in net.conv_bias:
        b.zero_()
    out = net(x, blank_steps=0, stimulus_steps=1, record=range(6))
    assert out.rates[0].abs().max() > 0 and out.rates[1].abs().max() > 0      # driven by the image
    for j in range(2, 6):
        assert out.rates[j].abs().max() == 0, j
    out = net(x, blank_steps=0, stimulus_steps=2, record=range(6))
    assert out.rates[2][:, 1].abs().max() > 0 and out.rates[3][:, 1].abs().max() > 0
    assert out.rates[4][:, 1].abs().max() == 0


@torch.no_grad()
def test_euler_simulation_of_linear_areas_converges_to_the_closed_form_fixed_point():
    net = small_net(depth=2, size=8, slope=1.0).double()   # areas of 64 x 2 x 2 units
    shape = tuple(net.conv_bias[0].shape)
    for j in range(2):                                      # scale R_j to spectral radius 0.7
        rec = dense_matrix(net.area_conv[j], shape)
        rho = torch.linalg.eigvals(rec).abs().max()
        net.area_conv[j].parametrizations.weight.original0.mul_(0.7 / rho)
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    out = net(x, blank_steps=0, stimulus_steps=400)
    drive = net.input_drive(x)
    eye = torch.eye(math.prod(shape), dtype=torch.float64)

    def fixed_point(j, ff):
        rec = dense_matrix(net.area_conv[j], shape)
        rhs = (net.conv_bias[j] + ff).flatten(1).T
        return torch.linalg.solve(eye - rec, rhs).T.view(-1, *shape)

    r0 = fixed_point(0, drive.feed0)
    r1 = fixed_point(1, net.area_area[1](F.relu(r0) + drive.p_skip))
    torch.testing.assert_close(out.final[0], r0, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(out.final[1], r1, rtol=1e-9, atol=1e-10)


def test_nonlinearity_modes():
    x = torch.linspace(-2, 2, 9)
    assert torch.equal(leaky(x, 0.0), F.relu(x))
    assert torch.equal(leaky(x, 1.0), x)
    torch.testing.assert_close(leaky(x, 0.3), torch.where(x > 0, x, 0.3 * x))
    r = torch.randn(5)
    torch.testing.assert_close(euler_update(r, x[:5], 0.2, 1.0), 0.8 * r + 0.2 * x[:5])
    net = CordsNet(depth=2, input_size=16, slope=0.5)
    assert "slope" not in "".join(net.state_dict())        # not a parameter: checkpoints unchanged


def test_gradients_flow_through_the_stimulus_only():
    net = small_net(depth=2, size=16)
    x = torch.randn(2, 3, 16, 16)
    out = net(x, blank_steps=2, stimulus_steps=3, post_blank_steps=1, readout="all", record=[1])
    assert out.logits.shape == (2, 6, 1000) and out.rates[1].shape == (2, 6, 64, 4, 4)
    assert not out.spontaneous[0].requires_grad
    out.logits[:, -1].sum().backward()
    assert all(p.grad is not None for p in net.parameters())


def test_from_config_and_dataset_shapes():
    cfg = from_dict(CordsNetConfig, {"dataset": "fashion_mnist", "depth": 4, "input_size": 28,
                                     "blank_steps": 5, "stimulus_steps": 7, "post_blank_steps": 0,
                                     "loss_steps": 5, "spont_weight": 0.0})
    net = CordsNet.from_config(cfg)
    assert (net.depth, net.in_channels, net.n_classes) == (4, 1, 10)
    assert (net.blank_steps, net.stimulus_steps, net.alpha) == (5, 7, 0.2)
    assert net.out_fc.weight.shape == (10, 128) and net.conv_bias[3].shape == (128, 4, 4)
    assert cfg.total_steps == 12
    arch = {f.name for f in CordsNetConfig.__dataclass_fields__.values() if f.metadata.get("arch")}
    assert arch == {"depth", "dataset", "input_size"}
    with pytest.raises(UserError, match="depth"):
        from_dict(CordsNetConfig, {"depth": 3})
    with pytest.raises(UserError, match="dataset"):
        from_dict(CordsNetConfig, {"dataset": "svhn"})
    with pytest.raises(ValueError, match="depth"):
        CordsNet(depth=5)
