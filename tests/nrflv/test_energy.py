"""nrflv energy: E(s) against the written formula (independent functional transcription), grad_s E
against autograd and finite differences, zero weights, per-unit energies, devices, real size."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from nrflv.architecture import Architecture, nrflv_quick, nrflv_thesis
from nrflv.energy import NRFEnergy, uniform_states


# Small model with every kind, self-connections, integer down-sampling (8 -> 4: the strided
# shortcut), up-sampling (3 -> 8) and a non-integer resampling (8 -> 3).
SMALL = Architecture(
    layers=[(2, 8, 8), (4, 8, 8), (3, 4, 4), (2, 3, 3)],
    inputs={0: [1, 2, 3], 1: [0, 1, 2, 3], 2: [1, 2, 3], 3: [1, 2, 3]},
    kinds={0: ["conv", "convT", "fc"], 1: ["conv", "conv+convT", "conv", "conv"],
           2: ["conv", "conv+convT", "fc"], 3: ["conv", "fc", "fc"]},
    kernels={0: [5, 3, None], 1: [3, 5, 3, 3], 2: [3, 3, None], 3: [3, None, None]},
    top_kernels=[3, 5, 3, 3], base_channels=4, fc_hidden=6, init_channels=4)


def random_model(arch=SMALL, seed=0, dtype=torch.float64):
    torch.manual_seed(seed)
    model = NRFEnergy(arch).to(dtype)
    with torch.no_grad():
        for b in model.biases:
            b.normal_(0, 0.5)
    return model


def states_for(arch, batch=3, seed=1, scale=0.9, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return [s * scale for s in uniform_states(arch, batch, generator=g, dtype=dtype)]


def wn_weight(module):
    """``g v / ||v||`` over all dims but 0, from the raw parametrisation tensors."""
    p = module.parametrizations.weight
    g, v = p.original0, p.original1
    return g * v / v.flatten(1).norm(dim=1).view(-1, *([1] * (v.dim() - 1)))


def written_energy(model, states):
    """E(s) transcribed from the docstring with functional ops (stride 1, explicit resampling)."""
    arch = model.arch
    x = [s.clamp(-1, 1) for s in states]
    silu = lambda t: t * torch.sigmoid(t)  # noqa: E731
    total = 0
    for i, (c, h, w) in enumerate(arch.layers):
        net = model.nets[i]
        f = torch.zeros_like(states[i])
        conv = [cn for cn in arch.connections(i) if cn[1] != "fc"]
        if conv:
            hs = []
            for (j, kind, k, p), base in zip(conv, net.bases):
                parts = []
                if base.conv is not None:
                    parts.append(F.conv2d(x[j], wn_weight(base.conv), base.conv.bias, padding=p))
                if base.convT is not None:
                    parts.append(F.conv_transpose2d(x[j], wn_weight(base.convT), base.convT.bias, padding=p))
                y = torch.cat(parts, 1)
                y = y[:, :, (torch.arange(h) * y.shape[2]) // h][:, :, :, (torch.arange(w) * y.shape[3]) // w]
                hs.append(silu(y))
            y = F.conv2d(torch.cat(hs, 1), net.mix.weight, net.mix.bias)
            f = f + F.conv2d(y, net.top.weight, net.top.bias, padding=arch.top_kernels[i] // 2)
        fc = [j for j, kind, _, _ in arch.connections(i) if kind == "fc"]
        if fc:
            z = torch.cat([x[j].reshape(len(x[j]), -1) for j in fc], 1)
            z = silu(z @ wn_weight(net.fc_in).T + net.fc_in.bias)
            f = f + (z @ net.fc_out.weight.T + net.fc_out.bias).reshape(-1, c, h, w)
        s, b = states[i], model.biases[i]
        total = total + (0.5 * s ** 2).sum() - (b * s).sum() - 0.5 * (s * f).sum()
    return total


def test_energy_and_grad_match_the_written_formula():
    model = random_model()
    states = states_for(SMALL, scale=1.3)  # some units beyond the hardtanh's range
    leaves = [s.clone().requires_grad_(True) for s in states]
    want = written_energy(model, leaves)
    want_grads = torch.autograd.grad(want, leaves)
    energy, grads = model.energy_and_grad(states)
    torch.testing.assert_close(energy, want.detach(), rtol=1e-12, atol=1e-10)
    for g, wg in zip(grads, want_grads):
        torch.testing.assert_close(g, wg, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(model(states), want.detach(), rtol=1e-12, atol=1e-10)


def test_grad_matches_finite_differences_float64():
    model = random_model(seed=3)
    states = states_for(SMALL, seed=4, scale=0.8)  # inside (-1, 1): away from the hardtanh's kinks
    grads = model.grad(states)
    g = torch.Generator().manual_seed(5)
    for _ in range(3):
        v = [torch.randn(s.shape, generator=g, dtype=s.dtype) for s in states]
        h = 1e-6
        with torch.no_grad():
            e_plus = model([s + h * d for s, d in zip(states, v)])
            e_minus = model([s - h * d for s, d in zip(states, v)])
        fd = (e_plus - e_minus) / (2 * h)
        analytic = sum((gi * d).sum() for gi, d in zip(grads, v))
        torch.testing.assert_close(fd, analytic, rtol=1e-6, atol=1e-6)


def test_zero_weights_give_quadratic_minus_bias_exactly():
    model = random_model()
    with torch.no_grad():
        for name, p in model.nets.named_parameters():
            if not name.endswith("original1"):  # zero g (so every normed weight), plain weights, biases
                p.zero_()
    states = states_for(SMALL, scale=1.5)
    want = sum((0.5 * s * s - b * s).sum() for s, b in zip(states, model.biases))
    assert torch.equal(model(states), want)
    _, grads = model.energy_and_grad(states)
    for g, s, b in zip(grads, states, model.biases):
        torch.testing.assert_close(g, s - b.detach().expand_as(s), rtol=0, atol=1e-15)


def test_unit_energies_sum_to_total_and_have_layer_shapes():
    model = random_model(seed=7)
    states = states_for(SMALL, seed=8, scale=1.2)
    with torch.no_grad():
        units = model.unit_energies(states)
        drives = model.drives(states)
        assert [tuple(u.shape) for u in units] == SMALL.state_shapes(3)
        for u, s, b, f in zip(units, states, model.biases, drives):
            torch.testing.assert_close(u, 0.5 * s * s - b * s - 0.5 * s * f)
        total = model(states)
        torch.testing.assert_close(sum(u.sum() for u in units), total)
        per_sample = model.sample_energies(states)
        assert per_sample.shape == (3,)
        torch.testing.assert_close(per_sample.sum(), total)
        torch.testing.assert_close(per_sample[1], model([s[1:2] for s in states]))


def test_drives_read_only_the_connected_layers():
    model = random_model(seed=2)
    states = states_for(SMALL, seed=2)
    base = model.drives(states)
    for k in range(SMALL.n_layers):
        moved = [s + (0.05 if j == k else 0.0) for j, s in enumerate(states)]
        new = model.drives(moved)
        for i in range(SMALL.n_layers):
            changed = not torch.allclose(new[i], base[i], rtol=0, atol=1e-12)
            assert changed == (k in SMALL.inputs[i]), (i, k)


def test_grad_touches_no_parameter_and_no_input_state():
    model = random_model()
    states = states_for(SMALL)
    assert all(p.requires_grad for p in model.parameters())
    with torch.no_grad():  # the sampler's context: grad must still work
        energy, grads = model.energy_and_grad(states, wrt=[1, 2, 3])
    assert all(p.grad is None for p in model.parameters())
    assert not any(s.requires_grad for s in states) and not energy.requires_grad
    assert grads[0] is None and all(not g.requires_grad for g in grads[1:])
    full = model.grad(states)
    for g, f in zip(grads[1:], full[1:]):
        torch.testing.assert_close(g, f)
    with pytest.raises(ValueError, match="wrt must list layers 0..3"):
        model.grad(states, wrt=[4])


def test_bad_states_raise():
    model = random_model()
    states = states_for(SMALL)
    with pytest.raises(ValueError, match="expected 4 state tensors"):
        model(states[:3])
    with pytest.raises(ValueError, match="state 2 must have shape \\(batch=3, 3, 4, 4\\)"):
        model(states[:2] + [states[2][:, :2]] + states[3:])


def test_energy_on_the_device_and_dtype_of_the_states():
    model = random_model(arch=nrflv_quick(), dtype=torch.float32)
    states = states_for(nrflv_quick(), batch=2, dtype=torch.float32)
    energy, grads = model.energy_and_grad(states)
    assert energy.device == states[0].device and energy.dtype == torch.float32 and energy.dim() == 0
    assert all(g.device == s.device and g.dtype == s.dtype for g, s in zip(grads, states))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA")
def test_energy_on_cuda():
    dev = torch.device("cuda")
    cpu_model = random_model(arch=nrflv_quick())
    model = random_model(arch=nrflv_quick()).to(dev)
    states = states_for(nrflv_quick(), batch=2)
    energy, grads = model.energy_and_grad([s.to(dev) for s in states])
    assert energy.device.type == "cuda" and all(g.device.type == "cuda" for g in grads)
    want, want_grads = cpu_model.energy_and_grad(states)
    torch.testing.assert_close(energy.cpu(), want)
    for g, w in zip(grads, want_grads):
        torch.testing.assert_close(g.cpu(), w)


def test_thesis_preset_real_size_energy_and_grad_batch_2():
    torch.manual_seed(0)
    a = nrflv_thesis()
    model = NRFEnergy(a)
    states = uniform_states(a, 2)
    energy, grads = model.energy_and_grad(states)
    assert torch.isfinite(energy)
    assert [tuple(g.shape) for g in grads] == a.state_shapes(2)
    assert all(torch.isfinite(g).all() for g in grads)
    with torch.no_grad():
        torch.testing.assert_close(energy, model(states))
    # zero nets at start would give dE/ds = s - b = s; the nets make it differ
    assert not torch.allclose(grads[1], states[1])


def test_channel_energy_gradient_is_that_channels_energy_only():
    """channels_energy's gradient equals autograd of 0.5 * the picked channel's energy, chain by
    chain, and falls back to the total gradient on lower layers it does not reach."""
    from nrflv.architecture import nrflv_quick
    from nrflv.energy import NRFEnergy, uniform_states
    from nrflv.viz import channel_energy_grad

    torch.manual_seed(0)
    arch = nrflv_quick()
    energy = NRFEnergy(arch).double()
    g = torch.Generator().manual_seed(1)
    states = [s.double() for s in uniform_states(arch, 3, g)]
    channel = torch.tensor([0, 2, 5])
    grads = channel_energy_grad(energy, states, 1, channel)
    for b in range(3):
        leaves = [s.detach().clone().requires_grad_(True) for s in states]
        e = 0.5 * energy.unit_energies(leaves)[1][b, channel[b]].sum()
        want = torch.autograd.grad(e, leaves)
        for i in (1, 2):
            torch.testing.assert_close(grads[i][b], want[i][b])
    # layer 0 (the image) is read by layer 1's net, so the feature reaches it too
    assert bool(grads[0].any())
    # layer 2's net does not read the image: there the image follows the total energy
    top = channel_energy_grad(energy, states, 2, torch.tensor([0, 1, 2]))
    torch.testing.assert_close(top[0], energy.grad(states)[0])
