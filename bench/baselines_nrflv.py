"""The baseline of ``bench/bench_nrflv.py``: the NRFLV sampler step written the way the original
code writes it (``lib/managers.py`` ``sampler_step``, ``lib/utils.py`` ``get_state_optimizers``,
``lib/custom_components/sghmc.py``, ``lib/networks/{models,layers}.py``).

Every state layer requires grad, ``energy.backward()`` fills the states' *and* the parameters'
``.grad``, and one torch.optim-style SGHMC optimiser per layer updates ``state.data``. The
functions take the ``torch`` module as an argument: the bench imports torch only after it has
set its thread count.
"""
from __future__ import annotations

import math

#: the original's README command (thesis run)
HP = dict(sampling_step_size=0.1, momentum_param=0.1, num_burn_in_steps=100, min_sq_sigma=9e-5,
          max_sq_sigma=1e-4, sigma=0.0, scale_grad=1.0)
#: the original's circulant standard deviations by channel count (lib/custom_components/sghmc.py)
ORIGINAL_INV_M_SDS = {32: 0.55, 16: 0.3, 8: 0.1}


def original_inv_mass(num_ch: int):
    """The original's ``inv_M_weights`` (C, C): a Gaussian pdf over channels, centred on channel 0,
    tiny densities zeroed, row ``o`` rolled by ``o`` (computed with scipy as the original does)."""
    import numpy as np
    import scipy.stats as sps

    channels = np.arange(num_ch)
    densities = sps.norm(num_ch // 2, ORIGINAL_INV_M_SDS[num_ch]).pdf(channels)
    densities = np.roll(densities, num_ch // 2)
    densities[densities < 1e-15] = 0.0
    return np.stack([np.roll(densities, ch) for ch in channels])


def make_original_sghmc(torch):
    """The original's per-layer SGHMC optimiser (a ``torch.optim.Optimizer`` reading ``p.grad``)."""
    import torch.nn.functional as F

    class OriginalSGHMC(torch.optim.Optimizer):
        def __init__(self, params, lr, noise, mdecay, num_burn_in_steps, scale_grad, min_sq_sigma,
                     max_sq_sigma, non_diag_inv_mass, generator, draw=None):
            super().__init__(params, dict(lr=lr, scale_grad=float(scale_grad), mdecay=mdecay, noise=noise,
                                          num_burn_in_steps=num_burn_in_steps))
            self.min_sq_sigma, self.max_sq_sigma = min_sq_sigma, max_sq_sigma
            self.generator, self.draw = generator, draw
            self.inv_m = None
            prm = self.param_groups[0]["params"][0]
            if non_diag_inv_mass and prm.shape[1] >= 6:  # the original breaks out below 6 channels
                w = torch.tensor(original_inv_mass(prm.shape[1]))[:, :, None, None]
                self.inv_m = w.to(device=prm.device, dtype=prm.dtype)

        def _mix(self, m):
            return m if self.inv_m is None else F.conv2d(m, self.inv_m)

        @torch.no_grad()
        def step(self, closure=None):
            for group in self.param_groups:
                for prm in group["params"]:
                    if prm.grad is None:
                        continue
                    state = self.state[prm]
                    if len(state) == 0:
                        state["iteration"] = 0
                        state["tau"] = torch.ones_like(prm)
                        state["g"] = torch.ones_like(prm)
                        state["v_hat"] = torch.ones_like(prm)
                        state["momentum"] = torch.zeros_like(prm)
                    state["iteration"] += 1
                    mdecay, noise, lr = group["mdecay"], group["noise"], group["lr"]
                    tau, g, v_hat, momentum = state["tau"], state["g"], state["v_hat"], state["momentum"]
                    gradient = prm.grad.data
                    r_t = 1. / (tau + 1.)
                    minv_t = 1. / torch.sqrt(v_hat)
                    if state["iteration"] <= group["num_burn_in_steps"]:
                        tau.add_(1. - tau * (g * g / v_hat))
                        g.add_(-g * r_t + r_t * gradient)
                        v_hat.add_(-v_hat * r_t + r_t * (gradient ** 2))
                    lr_scaled = lr / math.sqrt(group["scale_grad"])
                    noise_scale = (2. * (lr_scaled ** 2) * mdecay * minv_t
                                   - 2. * (lr_scaled ** 3) * (minv_t ** 2) * noise - lr_scaled ** 4)
                    sigma = torch.sqrt(torch.clamp(noise_scale, min=self.min_sq_sigma, max=self.max_sq_sigma))
                    if self.draw is None:
                        sample_t = torch.normal(mean=0., std=sigma, generator=self.generator)
                    else:
                        sample_t = self.draw(sigma)
                    friction = mdecay * self._mix(momentum)
                    momentum.add_(- (lr ** 2) * minv_t * gradient - friction + sample_t)
                    prm.data.add_(self._mix(momentum))

    return OriginalSGHMC


def original_net(torch, net, arch, i, inps):
    """``pre_quad_out`` of layer i as the original's ContainerFCandDenseCCTBlock: each base conv at
    stride 1 and full size, then nearest resampling (always called) and swish; 1x1 + top conv;
    the FC path; both paths stacked and summed. ``(B, units)``."""
    import torch.nn.functional as F

    b = inps[0].shape[0]
    size = arch.layers[i][1:]
    outs = []
    if net.bases:
        hs = []
        for base, n in zip(net.bases, net.conv_pos):
            x, parts = inps[n], []
            if base.conv is not None:
                c = base.conv  # weight-normed: g v / |v| recomputed at this access
                parts.append(F.conv2d(x, c.weight, c.bias, stride=1, padding=c.padding))
            if base.convT is not None:
                parts.append(base.convT(x))
            y = torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]
            hs.append(F.silu(F.interpolate(y, size=size, mode="nearest")))
        outs.append(net.top(net.mix(torch.cat(hs, dim=1))).view(b, -1))
    if net.fc_pos:
        x = torch.cat([inps[n].view(b, -1) for n in net.fc_pos], dim=1)
        outs.append(net.fc_out(F.silu(net.fc_in(x))))
    return torch.sum(torch.stack(outs), dim=0)


def original_energy(torch, model, arch, states):
    """``(energy, pre_quad_outs, full_energies)`` as the original's ``forward_bp_dynamics``."""
    import torch.nn.functional as F

    b = states[0].shape[0]
    full_sq = [0.5 * (s.view(b, -1) ** 2) for s in states]
    full_lin = [-(bias.view(1, -1) * s.view(b, -1)) for bias, s in zip(model.biases, states)]
    acts = [F.hardtanh(s) for s in states]
    full_quad, pre_quads = [], []
    for i, (s, net) in enumerate(zip(states, model.nets)):
        pre = original_net(torch, net, arch, i, [acts[j] for j in arch.inputs[i]])
        full_quad.append(-(0.5 * torch.mul(pre, s.view(b, -1))))
        pre_quads.append(-pre.view(s.shape))
    energy = sum(t.sum() for t in full_sq) + sum(t.sum() for t in full_lin) + sum(t.sum() for t in full_quad)
    full = [sq + qt + lt for sq, qt, lt in zip(full_sq, full_quad, full_lin)]
    return energy, pre_quads, full


class NoiseFeed:
    """Aligned noise for the check: one N(0, 1) vector per step over the free layers (in order), from
    the generator the toolkit uses; layer k's draw is ``sigma * (its slice)``."""

    def __init__(self, torch, total, generator, device):
        self.buf = torch.empty(total, device=device)
        self.generator, self.off = generator, 0

    def begin(self):
        self.buf.normal_(generator=self.generator)
        self.off = 0

    def __call__(self, sigma):
        n = sigma.numel()
        x = self.buf[self.off:self.off + n].view(sigma.shape)
        self.off += n
        return sigma * x


class OriginalPhase:
    """One phase of the original: states requiring grad, one optimiser per layer, ``energy.backward()``."""

    def __init__(self, torch, model, arch, start, positive, generator, feed=None):
        self.torch, self.model, self.arch, self.positive, self.feed = torch, model, arch, positive, feed
        self.states = [s.clone().detach().requires_grad_(True) for s in start]
        opt = make_original_sghmc(torch)
        self.opts = [opt([s], lr=HP["sampling_step_size"], noise=HP["sigma"], mdecay=HP["momentum_param"],
                         num_burn_in_steps=HP["num_burn_in_steps"], scale_grad=HP["scale_grad"],
                         min_sq_sigma=HP["min_sq_sigma"], max_sq_sigma=HP["max_sq_sigma"],
                         non_diag_inv_mass=True, generator=generator, draw=feed)
                     for s in self.states]

    def step(self):
        energy, _outs, _full = original_energy(self.torch, self.model, self.arch, self.states)
        energy.backward()
        if self.feed is not None:
            self.feed.begin()
        for i, opt in enumerate(self.opts):
            if self.positive and i == 0:
                continue
            opt.step()
        for s in self.states:
            s.grad.detach_()
            s.grad.zero_()
            s.data.clamp_(-1., 1.)

    def block(self, n):
        for _ in range(n):
            self.step()

    def momentum(self, i):
        st = self.opts[i].state.get(self.opts[i].param_groups[0]["params"][0], {})
        return st.get("momentum")
