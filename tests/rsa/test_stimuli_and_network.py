"""Gratings, the tutorial networks, the activation extractor, and tilt learning."""
import math

import numpy as np
import pytest
import torch
from torch import nn

from core.errors import UserError
from rsa.activations import layer_activations
from rsa.cnn import TiltNet, tutorial_filters
from core.gratings import TUTORIAL_SPATIAL_FREQ, grating_images, tilt_labels, wrap_orientation


def test_grating_geometry():
    img = grating_images(torch.tensor([0.0, 90.0]), waveform="sine")
    assert img.shape == (2, 48, 64)
    assert torch.allclose(img[0], img[0][:1].expand(48, -1))        # 0 deg: vertical bars
    assert torch.allclose(img[1], img[1][:, :1].expand(-1, 64), atol=1e-4)  # 90 deg: horizontal bars
    # any orientation: the closed form, evaluated independently in numpy
    theta, f, ph = 30.0, 0.07, 40.0
    g = grating_images(torch.tensor([theta], dtype=torch.float64), height=20, width=30, waveform="sine",
                       spatial_freq=f, phase=ph, contrast=0.8)[0].numpy()
    yy, xx = np.mgrid[0:20, 0:30]
    t = np.deg2rad(theta)
    ref = 0.5 + 0.4 * np.cos(2 * np.pi * f * (xx * np.cos(t) + yy * np.sin(t)) + np.deg2rad(ph))
    np.testing.assert_allclose(g, ref, atol=1e-12)
    # spatial period along x at 0 deg equals 1/f
    row = grating_images(torch.tensor([0.0]), width=64, waveform="sine")[0, 0].numpy()
    spec = np.abs(np.fft.rfft(row - row.mean(), n=4096))
    assert abs(np.argmax(spec) / 4096 - TUTORIAL_SPATIAL_FREQ) < 1e-3


def test_tilt_direction_and_contrast():
    # for theta > 0 the bars run from top-right to bottom-left ("tilted right"): going down a
    # row, the same phase is found further left
    g = grating_images(torch.tensor([20.0]), height=100, width=100, waveform="sine")[0].numpy()
    shift = np.argmax([np.corrcoef(g[50, 30:70], g[60, 30 + s:70 + s])[0, 1] for s in range(-8, 9)]) - 8
    assert shift < 0
    sq = grating_images(torch.tensor([10.0]), contrast=0.5)
    assert set(np.unique(sq.numpy()).round(6)) == {0.25, 0.75}
    assert tilt_labels(torch.tensor([-10.0, 0.0, 5.0])).tolist() == [0.0, 0.0, 1.0]
    assert wrap_orientation(torch.tensor([95.0, -95.0, 180.0])).tolist() == [-85.0, 85.0, 0.0]


def test_tutorial_filters():
    f = tutorial_filters(6, 7)
    assert f.shape == (6, 1, 7, 7)
    assert torch.allclose(f[0], -f[1])
    assert torch.allclose(f.abs().amax(dim=(1, 2, 3)), torch.ones(6))
    assert f[0, 0, 3, 3] == f[0].max()  # on-centre
    # Gabors at 0 and 90 degrees are transposes of each other
    torch.testing.assert_close(f[2, 0], f[4, 0].T, atol=1e-6, rtol=0)


@pytest.mark.parametrize("arch,layers", [("cnn", {"conv": 6 * 48 * 64, "pool": 6 * 6 * 8, "fc": 10}),
                                         ("conv_fc", {"conv": 6 * 48 * 64, "fc": 10}),
                                         ("fc", {"fc": 10, "out": 1})])
def test_networks_and_activations(arch, layers):
    torch.manual_seed(0)
    net = TiltNet(arch)
    x = grating_images(torch.linspace(-80, 80, 9))
    p = net(x)
    assert p.shape == (9, 1) and ((p > 0) & (p < 1)).all()
    acts = layer_activations(net, x, list(layers), batch_size=4)
    assert {k: v.shape[1] for k, v in acts.items()} == layers
    assert all(v.shape[0] == 9 and not v.requires_grad for v in acts.values())
    # the hooked fc output is the pre-ReLU linear layer, computed by hand
    h = x
    if arch != "fc":
        h = torch.relu(net.conv(h.unsqueeze(1)))
        if arch == "cnn":
            h = net.pool(h)
    with torch.no_grad():
        torch.testing.assert_close(acts["fc"], net.fc(h.flatten(1)))


def test_activation_extractor_on_any_module():
    net = nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Sequential(nn.Linear(7, 3)))
    x = torch.randn(10, 5)
    acts = layer_activations(net, x, ["1", "2.0"], batch_size=3)
    with torch.no_grad():
        torch.testing.assert_close(acts["1"], torch.tanh(net[0](x)))
        torch.testing.assert_close(acts["2.0"], net(x))
    with pytest.raises(UserError, match="unknown layer"):
        layer_activations(net, x, ["nope"])
    assert net.training  # mode restored


def test_suite_trains_cnn_to_discriminate_tilt():
    """The tutorial's recipe (1,000 gratings, batches of 100, SGD lr 5e-4 momentum 0.99,
    25 epochs) must reach > 95% on held-out gratings."""
    from core.runtime import derive_seed, generator
    from core.suite import Phase, RunContext, StepContext
    from rsa.suite import RSASuite

    torch.set_num_threads(1)
    suite = RSASuite(RunContext(cfg=RSASuite.Config(seed=12), device=torch.device("cpu")))
    modules = suite.build()
    opt = suite.make_optimizer(modules, Phase("train", 250))
    for step in range(250):
        seed = derive_seed(12, "step", step, 0)
        sctx = StepContext(step, "train", step, 0, 1, torch.device("cpu"), generator(seed))
        loss, _ = suite.loss(modules, suite.training_batch(sctx), sctx)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        metrics = suite.evaluate(modules, sctx)
    assert metrics["accuracy"] > 0.95, metrics
