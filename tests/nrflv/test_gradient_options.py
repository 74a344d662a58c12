"""The sampler's gradient options (nrflv.gradient): fp32 is the energy's own gradient bit for bit;
bf16 and torch.compile stay within stated tolerances of fp32 (gradients, trajectories, energies);
cuda_graphs is refused off CUDA; the options train through main.py."""
import pytest
import torch

from nrflv.architecture import get_architecture
from nrflv.energy import NRFEnergy, uniform_states
from nrflv.gradient import StateGradient
from nrflv.sghmc import SGHMC

#: bf16 (8-bit mantissa) inside the energy: gradient relative error per layer (measured <= 1.3e-3)
BF16_GRAD_RTOL = 5e-3
#: after 50 SGHMC steps from one state with the same noise: max |state difference| (measured 8e-4)
#: and per-chain energy relative difference (measured 3e-5)
BF16_STATE_ATOL, BF16_ENERGY_RTOL = 5e-3, 5e-4


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    arch = get_architecture("nrflv_quick")
    energy = NRFEnergy(arch)
    with torch.no_grad():  # nonzero biases: every term of E counts
        for b in energy.biases:
            b.normal_(0, 0.01)
    states = uniform_states(arch, 4, torch.Generator().manual_seed(1))
    return energy, states


def rel(a, b):
    return float((a - b).norm() / b.norm())


def test_fp32_is_the_energys_own_gradient_and_leaves_parameters_alone(model):
    energy, states = model
    e_ref, g_ref = energy.energy_and_grad(states, wrt=[1, 2])
    e, g = StateGradient(energy).energy_and_grad(states, wrt=[1, 2])
    assert g[0] is None and torch.equal(e, e_ref)
    for a, b in zip(g[1:], g_ref[1:]):
        assert a.dtype == torch.float32 and torch.equal(a, b)
    assert all(p.requires_grad and p.grad is None for p in energy.parameters())


def test_bf16_gradient_is_float32_within_tolerance(model):
    energy, states = model
    e_ref, g_ref = energy.energy_and_grad(states)
    e, g = StateGradient(energy, "bf16").energy_and_grad(states)
    assert e.dtype == torch.float32 and all(x.dtype == torch.float32 for x in g)
    assert abs(float(e - e_ref)) / abs(float(e_ref)) < BF16_ENERGY_RTOL
    assert max(rel(a, b) for a, b in zip(g, g_ref)) < BF16_GRAD_RTOL
    assert not all(torch.equal(a, b) for a, b in zip(g, g_ref))  # it did run in bfloat16


def trajectory(energy, states, grad, steps=50):
    s = [x.clone() for x in states]
    sampler = SGHMC(s, generator=torch.Generator().manual_seed(3), non_diag_inv_mass=True, num_burn_in_steps=10)
    sampler.run(grad, steps)
    return s, energy.sample_energies(s).detach()


def test_bf16_sampler_trajectory_and_energies_follow_fp32(model):
    energy, states = model
    a, ea = trajectory(energy, states, StateGradient(energy).grad)
    b, eb = trajectory(energy, states, StateGradient(energy, "bf16").grad)
    assert max(float((x - y).abs().max()) for x, y in zip(a, b)) < BF16_STATE_ATOL
    assert float(((ea - eb).abs() / ea.abs()).max()) < BF16_ENERGY_RTOL
    moved = max(float((x - y).abs().max()) for x, y in zip(a, states))
    assert moved > 100 * BF16_STATE_ATOL  # the chains did move far more than they differ


@pytest.mark.slow  # torch.compile on a CPU: about a minute of compiling
def test_compiled_gradient_and_trajectory_equal_eager(model):
    energy, states = model
    sg = StateGradient(energy, compile="on")
    e_ref, g_ref = energy.energy_and_grad(states, wrt=[1, 2])
    e, g = sg.energy_and_grad(states, wrt=[1, 2])
    assert g[0] is None and abs(float(e - e_ref)) / abs(float(e_ref)) < 1e-6
    assert max(rel(a, b) for a, b in zip(g[1:], g_ref[1:])) < 1e-5
    a, ea = trajectory(energy, states, StateGradient(energy).grad, steps=10)
    b, eb = trajectory(energy, states, sg.grad, steps=10)
    assert max(float((x - y).abs().max()) for x, y in zip(a, b)) < 1e-5
    assert float(((ea - eb).abs() / ea.abs()).max()) < 1e-6


def test_unknown_options_are_refused(model):
    energy, _ = model
    with pytest.raises(ValueError, match="precision"):
        StateGradient(energy, "fp16")
    with pytest.raises(ValueError, match="compile"):
        StateGradient(energy, compile="yes")


TINY = ["--config", "configs/nrflv_quick.yaml", "--steps", "2", "--batch_size", "4", "--n_images", "32",
        "--num_it_pos", "3", "--num_it_neg", "3", "--num_burn_in_steps", "2", "--buffer_size", "8",
        "--model_save_interval", "2", "--img_logging_interval", "0"]


def test_cuda_graphs_refused_on_the_cpu_before_anything_is_written(run_main, tmp_path):
    rc, err = run_main(*TINY, "--device", "cpu", "--compile", "cuda_graphs", "--run_name", "g")
    assert rc == 2 and "--compile cuda_graphs needs a CUDA device" in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "runs/g").exists()


def test_bf16_training_follows_fp32(run_main, tmp_path):
    from core.checkpoint import load_checkpoint

    for prec in ("fp32", "bf16"):
        rc, err = run_main(*TINY, "--precision", prec, "--run_name", prec)
        assert rc == 0, err
    a, b = (load_checkpoint(tmp_path / f"runs/{p}/checkpoints/last.pt")["modules"]["energy"] for p in ("fp32", "bf16"))
    d = torch.cat([(a[k] - b[k]).abs().flatten() for k in a])
    # Adam at beta1 = 0 steps each element by about lr = 5e-4 times the sign of its gradient: bf16
    # rounding flips that sign only where a gradient is almost 0 (measured: 0.01 % of the 76,755
    # elements differ by more than 1e-4, the median by 4e-8)
    assert 0 < float(d.median()) < 1e-6
    assert float((d > 1e-4).float().mean()) < 1e-2 and float(d.max()) < 1e-2


# On CUDA float32 convolutions run on TF32 tensor cores (PyTorch's default), and a compiled graph
# may pick other kernels than eager: after 30 steps the states may differ by TF32 rounding. These
# tolerances are not yet measured on a GPU (no GPU was at hand when they were written).
@pytest.mark.gpu  # run with -m gpu on a CUDA machine
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA")
@pytest.mark.parametrize("precision,compile,tol", [("bf16", "off", 2e-2), ("fp32", "on", 5e-3),
                                                    ("fp32", "cuda_graphs", 5e-3)])
def test_options_on_cuda_follow_fp32(model, precision, compile, tol):
    energy, states = model
    dev = torch.device("cuda")
    energy = NRFEnergy(energy.arch).to(dev).eval()
    energy.load_state_dict(model[0].state_dict())
    states = [s.to(dev) for s in states]

    def run(sg):
        s = [x.clone() for x in states]
        sampler = SGHMC(s, generator=torch.Generator(device=dev).manual_seed(3), non_diag_inv_mass=True,
                        num_burn_in_steps=10)
        sampler.run(sg.grad, 30)
        return s
    a, b = run(StateGradient(energy)), run(StateGradient(energy, precision, compile))
    assert max(float((x - y).abs().max()) for x, y in zip(a, b)) < tol
