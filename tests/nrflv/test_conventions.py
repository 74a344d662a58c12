"""The original's conventions: images in [0, 1], --clip_grad as a state-gradient norm clip inside
the sampler (off in the thesis command) beside the always-on element-wise Adam clip, and the
thesis preset's keys with the original's values."""
import pytest
import torch
import yaml

from nrflv.sghmc import SGHMC, clip_by_total_norm


def test_clip_by_total_norm_equals_torchs_clip_grad_norm():
    g = torch.Generator().manual_seed(0)
    grads = [torch.randn(4, 3, 5, 5, generator=g), torch.randn(4, 2, 2, 2, generator=g)]
    for max_norm in (0.01, 1.0, 1e3):
        ours = clip_by_total_norm(grads, max_norm)
        ref = [x.clone().requires_grad_() for x in grads]
        for r, x in zip(ref, grads):
            r.grad = x.clone()
        torch.nn.utils.clip_grad_norm_(ref, max_norm, norm_type=2)
        for a, r in zip(ours, ref):
            torch.testing.assert_close(a, r.grad, rtol=1e-6, atol=0)
    assert torch.equal(grads[0], torch.randn(4, 3, 5, 5, generator=torch.Generator().manual_seed(0)))  # untouched


def test_sampler_clips_the_state_gradient_before_its_step():
    """A clipped sampler moves as an unclipped one given the clipped gradient."""
    def make(clip):
        states = [torch.zeros(3, 8, 4, 4)]
        return states, SGHMC(states, generator=torch.Generator().manual_seed(1), num_burn_in_steps=2,
                             clip_grad_norm=clip)
    grad = torch.randn(3, 8, 4, 4, generator=torch.Generator().manual_seed(2)) * 10
    s1, a = make(0.01)
    s2, b = make(None)
    for _ in range(4):
        a.step([grad])
        b.step(clip_by_total_norm([grad], 0.01))
    assert torch.equal(s1[0], s2[0])
    s3, c = make(None)
    for _ in range(4):
        c.step([grad])
    assert not torch.allclose(s3[0], s1[0])
    with pytest.raises(ValueError, match="clip_grad_norm"):
        make(0.0)


def test_thesis_preset_has_the_original_commands_values():
    cfg = yaml.safe_load(open("configs/nrflv_thesis.yaml"))
    assert cfg["clip_grad"] is False and cfg["clip_state_grad_norm"] == 0.01   # --clip_grad not given
    assert cfg["adam_grad_clip"] is True                                       # always on there
    assert cfg["image_range"] == [0.0, 1.0]                                    # ToTensor()


def test_images_enter_the_model_in_image_range(tmp_path):
    from core.config import from_dict, load_preset, validate
    from nrflv.architecture import get_architecture
    from nrflv.config import NRFLVConfig
    from nrflv.suite import NRFLVSuite

    def suite(rng):
        values = {k: v for k, v in load_preset("configs/nrflv_quick.yaml").items() if k != "model"}
        cfg = from_dict(NRFLVConfig, {**values, "n_images": 32, "image_range": rng})
        validate(cfg)
        s = NRFLVSuite.__new__(NRFLVSuite)
        s.cfg, s.device, s.arch = cfg, torch.device("cpu"), get_architecture(cfg.architecture)
        return s

    unit, sym = suite([0.0, 1.0]), suite([-1.0, 1.0])
    a, b = unit._images, sym._images
    assert a.min() >= 0 and a.max() <= 1 and b.min() < 0
    torch.testing.assert_close(b, a * 2 - 1)
    # the blank (mean training image) is the same picture either way, in [0, 1]
    torch.testing.assert_close(unit.background, sym.background)
    assert unit.from_model_range(unit.to_model_range(torch.tensor([0.0, 0.5, 1.0]))).tolist() == [0.0, 0.5, 1.0]


def test_image_range_must_be_increasing(run_main):
    rc, err = run_main("--config", "configs/nrflv_quick.yaml", "--image_range", "1,0", "--steps", "0")
    assert rc == 2 and "--image_range" in err


def test_medium_preset_keeps_the_thesis_inverse_mass_and_runs(run_main, tmp_path):
    from nrflv.architecture import get_architecture
    from nrflv.sghmc import inverse_mass_kernel

    arch = get_architecture("nrflv_medium")
    assert [c for c, _, _ in arch.layers[1:]] == [32, 32]
    assert abs(float(inverse_mass_kernel(32)[0].sum()) - 1.0051) < 1e-4
    rc, err = run_main("--config", "configs/nrflv_medium.yaml", "--n_images", "32", "--steps", "1", "--batch_size", "2",
                       "--num_it_pos", "2", "--num_it_neg", "2", "--num_burn_in_steps", "1", "--run_name", "m")
    assert rc == 0, err
