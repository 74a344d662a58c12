"""Gabor fields against the closed form and scikit-image's kernel; stimuli against their formula."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage.filters import gabor_kernel

from nrflv.gabor import apply_gabors, gabor_field, gabor_fields, gabor_half_widths


def _formula(x: float, y: float, sigma: float, direction: float, wavelength: float, psi: float,
             gamma: float) -> float:
    """The thesis's g at column offset x, row offset y (down positive), scalar maths."""
    t = math.radians(direction)
    xt = x * math.cos(t) + y * math.sin(t)
    yt = -x * math.sin(t) + y * math.cos(t)
    return math.exp(-0.5 * (xt ** 2 / sigma ** 2 + yt ** 2 * gamma ** 2 / sigma ** 2)) * \
        math.cos(2 * math.pi * xt / wavelength + psi)


CASES = [  # (height, width, cy, cx, sigma, direction, wavelength, psi, gamma, nstds)
    (32, 32, 16, 16, 0.7, 0.0, 3.0, 1.0, 0.5, 3.0),
    (32, 32, 16, 16, 0.7, 37.5, 3.0, 1.0, 0.5, 3.0),
    (20, 24, 3, 21, 1.3, 120.0, 4.0, -0.4, 0.7, 2.0),   # cropped at the top and right borders
    (16, 16, 0, 0, 0.9, 255.0, 2.5, 2.0, 0.3, 3.0),     # cropped at the corner
]


@pytest.mark.parametrize("case", CASES)
def test_field_equals_formula_in_box_and_zero_outside(case):
    h, w, cy, cx, sigma, direction, lam, psi, gamma, nstds = case
    field = gabor_field(h, w, cy, cx, sigma=sigma, direction=direction, wavelength=lam, psi=psi,
                        gamma=gamma, nstds=nstds)
    assert field.shape == (h, w) and field.dtype == torch.float64
    xmax, ymax = (int(v) for v in gabor_half_widths(sigma, direction, gamma, nstds))
    expected = np.zeros((h, w))
    for r in range(h):
        for c in range(w):
            if abs(c - cx) <= xmax and abs(r - cy) <= ymax:
                expected[r, c] = _formula(c - cx, r - cy, sigma, direction, lam, psi, gamma)
    np.testing.assert_allclose(field.numpy(), expected, rtol=0, atol=1e-12)
    outside = expected == 0
    assert outside.any() and (field.numpy()[outside] == 0).all()


@pytest.mark.parametrize("direction", [0.0, 30.0, 45.0, 90.0, 137.0, 200.0])
def test_field_matches_scikit_image_kernel(direction):
    """skimage's gabor_kernel has the same rotation, box and rows-down grid; its real part times
    2 pi sigma_x sigma_y is g with sigma_x = sigma, sigma_y = sigma / gamma, frequency = 1/lambda."""
    sigma, lam, psi, gamma = 0.7, 3.0, 1.0, 0.5
    kernel = gabor_kernel(1 / lam, theta=math.radians(direction), sigma_x=sigma, sigma_y=sigma / gamma,
                          n_stds=3, offset=psi)
    ref = kernel.real * 2 * math.pi * sigma * (sigma / gamma)
    y0, x0 = ref.shape[0] // 2, ref.shape[1] // 2
    field = gabor_field(40, 40, 20, 20, sigma=sigma, direction=direction, wavelength=lam, psi=psi,
                        gamma=gamma)
    np.testing.assert_allclose(field[20 - y0:21 + y0, 20 - x0:21 + x0].numpy(), ref, atol=1e-12)
    assert float(field.abs().sum()) == pytest.approx(float(np.abs(ref).sum()), rel=1e-12)


@pytest.mark.parametrize("direction, xmax, ymax", [
    (0.0, 3, 5),     # ceil(3 * 0.7) = 3 across, ceil(3 * 1.4) = 5 along the (vertical) bars
    (90.0, 5, 3),
    (45.0, 3, 3),    # max(2.1, 4.2) / sqrt(2) = 2.97
    (30.0, 3, 4),    # x: max(2.1 cos, 4.2 sin) = max(1.82, 2.1); y: max(1.05, 3.64)
    (180.0, 3, 5),
])
def test_box_half_widths(direction, xmax, ymax):
    hx, hy = gabor_half_widths(0.7, direction, 0.5, 3.0)
    assert (int(hx), int(hy)) == (xmax, ymax)
    field = gabor_field(32, 32, 16, 16, direction=direction)
    rows, cols = torch.nonzero(field, as_tuple=True)
    assert (int(cols.min()), int(cols.max())) == (16 - xmax, 16 + xmax)
    assert (int(rows.min()), int(rows.max())) == (16 - ymax, 16 + ymax)


def test_half_widths_are_at_least_one_and_batch():
    hx, hy = gabor_half_widths(0.1, torch.tensor([0.0, 90.0]), 1.0, 1.0)
    assert hx.tolist() == [1, 1] and hy.tolist() == [1, 1]


def test_vertical_bars_vary_only_along_x():
    """theta = 0 with gamma -> 0: every column is constant and the row profile is the 1-D Gabor."""
    field = gabor_field(24, 24, 12, 12, direction=0.0, gamma=1e-7)
    assert torch.count_nonzero(field[:, 12]) == 24          # the box spans every row
    assert float((field - field[12:13]).abs().max()) < 1e-9
    x = torch.arange(24, dtype=torch.float64) - 12
    profile = torch.exp(-0.5 * x ** 2 / 0.7 ** 2) * torch.cos(2 * math.pi * x / 3.0 + 1.0)
    profile[x.abs() > 3] = 0
    torch.testing.assert_close(field[12], profile, rtol=0, atol=1e-12)


def test_horizontal_bars_at_90_degrees_vary_only_along_y():
    field = gabor_field(24, 24, 12, 12, direction=90.0, gamma=1e-7)
    assert float((field - field[:, 12:13]).abs().max()) < 1e-9
    assert float((field[:, 12] - field[:, 12].flip(0)).abs().max()) > 0.1  # carrier along y, not x


@pytest.mark.parametrize("direction, step", [(45.0, (1, -1)), (135.0, (-1, -1)), (-45.0, (1, 1))])
def test_bars_run_along_minus_sin_cos(direction, step):
    """Along (x, y) = (-sin theta, cos theta) (rows down) a long-bar Gabor is constant; across it, not."""
    field = gabor_field(31, 31, 15, 15, direction=direction, gamma=1e-7, psi=0.0)
    dy, dx = step
    along = torch.stack([field[15 + k * dy, 15 + k * dx] for k in range(-8, 9)])
    assert float((along - along[8]).abs().max()) < 1e-9 and float(along[8]) == pytest.approx(1.0)
    across = torch.stack([field[15 + k * dx, 15 - k * dy] for k in range(-2, 3)])
    assert float((across - across[2]).abs().max()) > 0.1


def test_batched_fields_equal_single_fields():
    dirs = torch.tensor([0.0, 33.0, 250.0])
    cy, cx = torch.tensor([5.0, 10.0, 14.0]), torch.tensor([3.0, 10.0, 0.0])
    gammas = torch.tensor([0.5, 0.01, 1.0])
    batch = gabor_fields(16, 16, cy, cx, dirs, gamma=gammas)
    assert batch.shape == (3, 16, 16)
    for i in range(3):
        one = gabor_field(16, 16, int(cy[i]), int(cx[i]), direction=float(dirs[i]), gamma=float(gammas[i]))
        torch.testing.assert_close(batch[i], one, rtol=0, atol=0)


@pytest.mark.parametrize("c", [0.2, 2.4])
def test_pair_stimulus_is_background_times_two_gabors_clipped(c):
    g = torch.Generator().manual_seed(0)
    background = 0.3 + 0.2 * torch.rand(3, 24, 24, generator=g, dtype=torch.float64)
    g1 = gabor_field(24, 24, 12, 12, direction=90.0)
    g2 = gabor_field(24, 24, 12, 17, direction=90.0)
    assert bool(((g1 != 0) & (g2 != 0)).any())            # the boxes overlap: the Gabors add there
    image = apply_gabors(background, torch.stack([g1, g2]), [c, c], weight=2.0)
    raw = background * (1 + 2 * c * g1 + 2 * c * g2)
    torch.testing.assert_close(image, raw.clamp(0, 1), rtol=0, atol=1e-15)
    clipped = bool((raw > 1).any() or (raw < 0).any())
    assert clipped == (c > 1)                               # the thesis's contrast 2.4 saturates


def test_clipping_to_image_range():
    background = torch.full((1, 16, 16), 0.5, dtype=torch.float64)
    field = gabor_field(16, 16, 8, 8)
    image = apply_gabors(background, field[None], [4.0])
    raw = 0.5 * (1 + 4.0 * field)
    assert float(raw.max()) > 1 and float(raw.min()) < 0     # would overflow both ends
    assert float(image.max()) == 1.0 and float(image.min()) == 0.0
    torch.testing.assert_close(image[0], raw.clamp(0, 1), rtol=0, atol=0)
    narrow = apply_gabors(background, field[None], [4.0], lo=0.3, hi=0.6)
    assert float(narrow.min()) == 0.3 and float(narrow.max()) == 0.6


def test_apply_gabors_batches_over_trials_with_weights():
    g = torch.Generator().manual_seed(1)
    background = torch.rand(2, 12, 12, generator=g, dtype=torch.float64)
    fields = gabor_fields(12, 12, torch.tensor([[6.0, 6.0], [4.0, 8.0]]), 6.0,
                          torch.tensor([[0.0, 90.0], [45.0, 45.0]]))
    contrasts = torch.tensor([[1.0, 0.0], [0.5, 0.7]], dtype=torch.float64)
    weight = torch.tensor([1.0, 2.0], dtype=torch.float64)
    batch = apply_gabors(background, fields, contrasts, weight=weight)
    assert batch.shape == (2, 2, 12, 12)
    for i in range(2):
        one = apply_gabors(background, fields[i], contrasts[i], weight=float(weight[i]))
        torch.testing.assert_close(batch[i], one, rtol=0, atol=1e-15)


def test_zero_contrast_returns_background():
    background = torch.rand(3, 10, 10, generator=torch.Generator().manual_seed(2))
    image = apply_gabors(background, gabor_field(10, 10, 5, 5)[None], torch.tensor([0.0]))
    torch.testing.assert_close(image.float(), background, rtol=0, atol=0)


@pytest.mark.parametrize("kwargs, match", [
    (dict(centre_y=16), "centre_y"),
    (dict(centre_x=-1), "centre_x"),
    (dict(centre_y=2.5), "integer"),
    (dict(sigma=0.0), "sigma"),
    (dict(gamma=-1.0), "gamma"),
    (dict(wavelength=0.0), "wavelength"),
])
def test_field_validation(kwargs, match):
    args = dict(height=16, width=16, centre_y=8, centre_x=8) | kwargs
    with pytest.raises(ValueError, match=match):
        gabor_field(**args)


def test_apply_validation():
    bg = torch.zeros(3, 8, 8)
    with pytest.raises(ValueError, match="pixels"):
        apply_gabors(bg, torch.zeros(1, 9, 8), torch.ones(1))
    with pytest.raises(ValueError, match="contrasts"):
        apply_gabors(bg, torch.zeros(2, 8, 8), torch.ones(3))
    with pytest.raises(ValueError, match="lo < hi"):
        apply_gabors(bg, torch.zeros(1, 8, 8), torch.ones(1), lo=1.0, hi=0.0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_fields_follow_the_device_of_their_inputs():
    dirs = torch.tensor([0.0, 60.0], device="cuda")
    on_gpu = gabor_fields(16, 16, 8, 8, dirs)
    assert on_gpu.device.type == "cuda"
    torch.testing.assert_close(on_gpu.cpu(), gabor_fields(16, 16, 8, 8, dirs.cpu()))
