"""nrflv architectures and nets: the thesis preset against the original's tables and parameter
counts, validation of bad tables, shapes of f_i and of the initialiser, the strided-conv shortcut."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from nrflv.architecture import (PRESETS, Architecture, ArchitectureError, get_architecture,
                                nrflv_quick, nrflv_thesis)
from nrflv.energy import NRFEnergy, uniform_states
from nrflv.nets import BaseConv, FFInit, QuadraticNet, _stride_for


# The original's NRFLV_CIFAR_4SL_small_densebackw_wideSL1base (main.py), copied as data.
ORIG_STATE_SIZES = [[128, 3, 32, 32], [128, 32, 32, 32], [128, 32, 8, 8], [128, 5, 5, 5]]
ORIG_ARCH_DICT = {
    "num_ch_base": 32, "growth_rate": 8, "num_ch_initter": 32, "spec_norm_reg": False,
    "mod_connect_dict": {0: [1, 2, 3], 1: [0, 1, 2], 2: [1, 2, 3], 3: [2, 3]},
    "mod_cct_status_dict": {0: [1, 1, 3], 1: [1, 1, 1], 2: [1, 1, 3], 3: [3, 3]},
    "mod_num_lyr_dict": {0: 0, 1: 0, 2: 0, 3: 0},
    "base_kern_pad_dict": {0: [[7, 3], [7, 3], []], 1: [[7, 3], [11, 5], [7, 3]],
                           2: [[7, 3], [7, 3], []], 3: [[], []]},
    "main_kern_dict": {0: 7, 1: 7, 2: 7, 3: 0},
}
# the structural figures (computed from the original's definitions, weight-norm g included)
THESIS_NET_PARAMS = [315_075, 232_288, 294_016, 147_325]
THESIS_BIAS_PARAMS = 38_013
THESIS_LATENT_UNITS = 34_941
THESIS_ENERGY_PARAMS = 1_026_717     # "about 1.03 M"
THESIS_FF_INIT_PARAMS = 898_597      # "about 0.90 M"


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_thesis_preset_is_the_originals_table():
    a = nrflv_thesis()
    assert Architecture.from_original(ORIG_STATE_SIZES, ORIG_ARCH_DICT) == a
    assert get_architecture("NRFLV_CIFAR_4SL_small_densebackw_wideSL1base") == a
    assert a.layers == ((3, 32, 32), (32, 32, 32), (32, 8, 8), (5, 5, 5))
    assert a.kernels[1] == (7, 11, 7) and a.paddings[1] == (3, 5, 3)
    assert a.n_units == THESIS_BIAS_PARAMS and a.n_latent_units == THESIS_LATENT_UNITS


def test_thesis_parameter_counts_exact():
    a = nrflv_thesis()
    counts = NRFEnergy(a).parameter_counts()
    assert counts["biases"] == THESIS_BIAS_PARAMS
    assert counts["nets"] == THESIS_NET_PARAMS
    assert counts["total"] == THESIS_ENERGY_PARAMS
    assert n_params(FFInit(a)) == THESIS_FF_INIT_PARAMS


def test_weight_norm_only_on_base_convs_and_fc_in():
    net = QuadraticNet(nrflv_thesis(), 0)
    names = [n for n, _ in net.named_parameters()]
    g = [n for n in names if n.endswith("original0")]
    assert g == ["bases.0.conv.parametrizations.weight.original0",
                 "bases.1.conv.parametrizations.weight.original0",
                 "fc_in.parametrizations.weight.original0"]
    # the unnormalised model is smaller by exactly the g vectors
    assert n_params(QuadraticNet(nrflv_thesis(), 0, weight_norm=False)) == THESIS_NET_PARAMS[0] - 32 - 32 - 64


@pytest.mark.parametrize("preset", ["nrflv_thesis", "nrflv_quick"])
def test_presets_roundtrip_through_plain_data(preset):
    a = get_architecture(preset)
    d = a.to_dict()
    assert Architecture(**d) == a
    # YAML/JSON style: string layer keys, lists everywhere
    d2 = dict(d, inputs={str(i): v for i, v in enumerate(d["inputs"])})
    assert Architecture(**d2) == a


@pytest.mark.parametrize("preset", ["nrflv_thesis", "nrflv_quick"])
def test_drive_and_init_shapes(preset):
    torch.manual_seed(0)
    a = get_architecture(preset)
    energy = NRFEnergy(a)
    states = uniform_states(a, 2)
    drives = energy.drives(states)
    assert [tuple(f.shape) for f in drives] == a.state_shapes(2)
    outs = FFInit(a)(states[0])
    assert [tuple(o.shape) for o in outs] == a.state_shapes(2)[1:]


def test_quick_preset_is_small_with_conv_split_and_fc_paths():
    a = nrflv_quick()
    assert {k for ks in a.kinds for k in ks} == {"conv", "conv+convT", "fc"}
    assert NRFEnergy(a).parameter_counts()["total"] < 100_000
    assert n_params(FFInit(a)) < 200_000


def test_unknown_preset_lists_valid_names():
    with pytest.raises(ArchitectureError, match="nrflv_thesis") as e:
        get_architecture("nrflv_huge")
    assert isinstance(e.value, ValueError)
    assert set(PRESETS) >= {"nrflv_thesis", "nrflv_quick"}


GOOD = dict(layers=[[1, 8, 8], [4, 8, 8]], inputs={0: [1], 1: [0, 1]},
            kinds={0: ["conv"], 1: ["conv", "fc"]})


@pytest.mark.parametrize("change, message", [
    (dict(layers=[[1, 8, 8]]), "at least one latent layer"),
    (dict(layers=[[1, 8, 8], [4, 8]]), "layer 1 must be 3 positive integers"),
    (dict(layers=[[1, 8, 8], [4, 0, 8]]), "layer 1 must be 3 positive integers"),
    (dict(inputs={0: [1]}), "one entry per layer 0..1"),
    (dict(inputs=[[1], [0, 1], [0]]), "entries for 3 layers but there are 2"),
    (dict(inputs={0: [], 1: [0, 1]}), "layer 0 needs a non-empty list"),
    (dict(inputs={0: [7], 1: [0, 1]}), "input 7 does not exist"),
    (dict(inputs={0: [1, 1], 1: [0, 1]}, kinds={0: ["conv", "conv"], 1: ["conv", "fc"]}), "twice"),
    (dict(kinds={0: ["conv"], 1: ["conv"]}), "layer 1 has 2 inputs"),
    (dict(kinds={0: ["deconv"], 1: ["conv", "fc"]}), "'deconv' is not one of conv, convT, conv\\+convT, fc"),
    (dict(kernels={0: [7], 1: [7, 3]}), "input 1 is fc and takes no kernel"),
    (dict(kernels={0: [0], 1: [7, None]}), "kernel must be a positive integer"),
    (dict(paddings={0: [-1], 1: [3, None]}), "padding must be an integer >= 0"),
    (dict(kernels={0: [11], 1: [7, None]}, paddings={0: [0], 1: [3, None]}), "empty output"),
    (dict(kinds={0: ["conv+convT"], 1: ["conv", "fc"]}, paddings={0: [1], 1: [3, None]}), "size-preserving"),
    (dict(top_kernels=4), "odd positive kernel"),
    (dict(base_channels=0), "base_channels: must be a positive integer"),
    (dict(inputs="0,1"), "expected a list"),
])
def test_bad_tables_raise_clear_value_errors(change, message):
    with pytest.raises(ValueError, match=message):
        Architecture(**{**GOOD, **change})


def test_good_table_defaults():
    a = Architecture(**GOOD)
    assert a.kernels == ((7,), (7, None)) and a.paddings == ((3,), (3, None))
    assert a.top_kernels == (7, 7)


def test_ff_init_refuses_image_too_small_to_step_down():
    a = Architecture(layers=[[1, 5, 5], [2, 2, 2]], inputs={0: [1], 1: [0]}, kinds={0: ["fc"], 1: ["fc"]})
    with pytest.raises(ValueError, match="too small"):
        FFInit(a)


@pytest.mark.parametrize("src, dst, k, p", [(32, 8, 7, 3), (16, 4, 5, 2), (12, 3, 3, 1), (10, 5, 7, 3),
                                            (9, 3, 3, 1), (10, 4, 7, 3), (8, 8, 7, 3)])
def test_strided_conv_equals_conv_then_nearest(src, dst, k, p):
    torch.manual_seed(1)
    stride = _stride_for("conv", (src, src), k, p, (dst, dst))
    full = BaseConv("conv", 3, 4, k, p).double()
    fast = BaseConv("conv", 3, 4, k, p, stride=stride).double()
    fast.load_state_dict(full.state_dict())
    x = torch.randn(2, 3, src, src, dtype=torch.float64)
    want = F.interpolate(full(x), size=(dst, dst), mode="nearest")
    got = fast(x)
    if got.shape[-2:] != (dst, dst):
        got = F.interpolate(got, size=(dst, dst), mode="nearest")
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
    assert (stride != (1, 1)) == (src != dst and (src + 2 * p - k + 1) % dst == 0)


def test_conv_convT_split_halves():
    b = BaseConv("conv+convT", 3, 5, 7, 3)
    assert b.conv.out_channels == 3 and b.convT.out_channels == 2
    assert b(torch.zeros(1, 3, 6, 6)).shape == (1, 5, 6, 6)
    with pytest.raises(ValueError, match="conv, convT or conv\\+convT"):
        BaseConv("fc", 3, 4, 7, 3)
