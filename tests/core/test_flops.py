"""Conv / linear FLOPs from shapes: a hand count, and torch's own FlopCounterMode as the reference
over whole models (the NRFLV energy's forward and state gradient, a CordsNet step)."""
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from core.flops import ConvFlopCounter, conv2d_flops, conv_transpose2d_flops, linear_flops


def test_hand_counts():
    # 3x3 conv, 4 -> 8 channels, one 5x5 output: 8 * 25 outputs x 4 * 9 multiply-adds x 2
    assert conv2d_flops((1, 8, 5, 5), (8, 4, 3, 3)) == 2 * 8 * 25 * 36
    assert conv_transpose2d_flops((2, 4, 3, 3), (4, 6, 2, 2)) == 2 * 2 * 4 * 9 * 6 * 4
    assert linear_flops((7, 10), (3, 10)) == 2 * 7 * 10 * 3


def torch_count(fn):
    with FlopCounterMode(display=False) as m:
        fn()
    return m.get_total_flops()


def test_counts_equal_torchs_flop_counter_on_the_nrflv_energy_and_its_state_gradient():
    from nrflv.architecture import get_architecture
    from nrflv.energy import NRFEnergy, uniform_states

    arch = get_architecture("nrflv_quick")
    energy = NRFEnergy(arch).requires_grad_(False)
    states = uniform_states(arch, 3, torch.Generator().manual_seed(0))
    with ConvFlopCounter() as c:
        energy(states)
    assert c.forward > 0 and c.input_gradient == 0 and c.forward == torch_count(lambda: energy(states))
    wrt = [1, 2]  # a positive phase: the image is fixed, so the convs that read only it need no backward
    with ConvFlopCounter() as c:
        energy.grad(states, wrt=wrt)
    assert 0 < c.input_gradient < c.forward
    assert c.forward + c.input_gradient == torch_count(lambda: energy.grad(states, wrt=wrt))


def test_counts_equal_torchs_flop_counter_on_a_cordsnet_step_and_a_transposed_conv():
    from cordsnet.model import CordsNet

    net = CordsNet(2, 3, 10, 32)
    rates = net.rest_state(2)
    with torch.no_grad():
        w = net.weights()
        drive = net.input_drive(torch.randn(2, 3, 32, 32), w)
        with ConvFlopCounter() as c:
            net.step(rates, drive, w)
        assert c.forward == torch_count(lambda: net.step(rates, drive, w)) > 0
    x, wt = torch.randn(2, 4, 5, 5), torch.randn(4, 6, 3, 3)
    with ConvFlopCounter() as c:
        F.conv_transpose2d(x, wt, padding=1)
    assert c.forward == torch_count(lambda: F.conv_transpose2d(x, wt, padding=1))
