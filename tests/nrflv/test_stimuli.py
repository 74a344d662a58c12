"""The thesis's stimulus sets: trial counts and levels, pair geometry, sites, rendering, the sheet."""
from __future__ import annotations

import dataclasses
import time

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from nrflv.gabor import gabor_field
from nrflv.stimuli import (COLUMNS, STIMULUS_SETS, GaborDesign, conditions, conditions_table,
                           contact_sheet, render)
from core.gratings import wrap_orientation as rsa_wrap_orientation

DESIGN = GaborDesign()


def _background(channels: int = 3, size: int = 32, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return 0.25 + 0.5 * torch.rand(channels, size, size, generator=g)


def _bar_axis(direction):
    """(row, col) unit vector along the bars: (x, y) = (-sin, cos) with rows down."""
    t = np.deg2rad(np.asarray(direction, dtype=float))
    return np.cos(t), -np.sin(t)


@pytest.mark.parametrize("name", STIMULUS_SETS)
def test_every_set_has_128_trials_centred_on_32x32(name):
    table = conditions(name, DESIGN, 32, 32)
    assert list(table.columns) == list(COLUMNS)
    assert len(table) == 128
    assert (table["stimulus_set"] == name).all()
    assert (table["pos_y"] == 16).all() and (table["pos_x"] == 16).all()
    assert (table["site0_y"] == 16).all() and (table["site0_x"] == 16).all()
    for y, x in (("site1_y", "site1_x"), ("pos_y", "pos_x")):
        assert table[y].between(0, 31).all() and table[x].between(0, 31).all()
    assert ((table["direction"] >= 0) & (table["direction"] < 360)).all()


def test_just_angle_levels():
    table = conditions("just_angle", DESIGN, 32, 32)
    np.testing.assert_allclose(table["direction"], np.arange(128) * 360 / 128)
    assert (table["contrast"] == 2.4).all() and (table["gamma"] == 0.5).all() and (table["weight"] == 1).all()
    assert (table["relation"] == "single").all() and (table["collinear"] == -1).all()
    assert table["direction2"].isna().all() and table["displacement"].isna().all()
    assert (table["pos2_y"] == -1).all() and (table["pos2_x"] == -1).all() and (table["distance"] == 0).all()


def test_contrast_and_angle_is_contrast_major():
    table = conditions("contrast_and_angle", DESIGN, 32, 32)
    contrasts = (0.0, 0.4, 0.8, 1.2, 1.6, 2.0, 2.4, 2.8)
    np.testing.assert_allclose(table["contrast"], np.repeat(contrasts, 16))
    np.testing.assert_allclose(table["direction"], np.tile(np.arange(16) * 22.5, 8))
    assert table.groupby(["contrast", "direction"]).size().eq(1).all()


@pytest.mark.parametrize("name, gamma", [("few_angles", 0.5), ("long_bars", 0.01)])
def test_few_angles_and_long_bars_are_direction_major(name, gamma):
    table = conditions(name, DESIGN, 32, 32)
    np.testing.assert_allclose(table["direction"], np.repeat(np.arange(8) * 45.0, 16))
    np.testing.assert_array_equal(table["repeat"], np.tile(np.arange(16), 8))
    assert (table["gamma"] == gamma).all() and (table["contrast"] == 2.4).all()


def test_pairs_levels_and_order():
    table = conditions("pairs", DESIGN, 32, 32)
    np.testing.assert_allclose(table["displacement"], np.repeat([0.0, 90.0, 180.0, 270.0], 32))
    np.testing.assert_allclose(table["distance"], np.tile(np.repeat([3.0, 5.0, 7.0, 10.0], 8), 4))
    assert list(table["relation"][:8]) == ["collinear"] * 4 + ["orthogonal"] * 4
    np.testing.assert_array_equal(table["repeat"], np.tile(np.arange(4), 32))
    assert (table["weight"] == 2.0).all() and (table["contrast"] == 2.4).all()
    assert (table["collinear"] == (table["relation"] == "collinear").astype(int)).all()
    np.testing.assert_allclose(table["direction"], (table["displacement"] + 90) % 360)
    # the second Gabor sits at the listed distance, and site 1 is its centre
    offset = np.stack([table["pos2_y"] - 16, table["pos2_x"] - 16], 1)
    np.testing.assert_allclose(np.hypot(*offset.T), table["distance"])
    assert (table["site1_y"] == table["pos2_y"]).all() and (table["site1_x"] == table["pos2_x"]).all()
    # displacement 90 moves DOWN (rows grow downwards), 0 moves right
    row = table[(table["displacement"] == 90) & (table["distance"] == 7)].iloc[0]
    assert (row["pos2_y"], row["pos2_x"]) == (23, 16)
    row = table[(table["displacement"] == 0) & (table["distance"] == 7)].iloc[0]
    assert (row["pos2_y"], row["pos2_x"]) == (16, 23)


def test_pair_geometry_collinear_and_orthogonal():
    table = conditions("pairs", DESIGN, 32, 32)
    disp = np.stack([table["pos2_y"] - table["pos_y"], table["pos2_x"] - table["pos_x"]], 1).astype(float)
    disp /= np.linalg.norm(disp, axis=1, keepdims=True)
    axis1 = np.stack(_bar_axis(table["direction"]), 1)
    axis2 = np.stack(_bar_axis(table["direction2"]), 1)
    cross = lambda a, b: a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]  # noqa: E731
    col = (table["relation"] == "collinear").to_numpy()
    np.testing.assert_allclose(cross(disp, axis1), 0, atol=1e-12)          # static Gabor's bars along delta
    np.testing.assert_allclose(cross(disp[col], axis2[col]), 0, atol=1e-12)  # collinear: both along it
    np.testing.assert_allclose((axis1 * axis2)[~col].sum(1), 0, atol=1e-12)  # orthogonal: perpendicular bars
    np.testing.assert_allclose(np.abs((disp * axis2)[~col].sum(1)), 0, atol=1e-12)


def test_collinear_second_gabor_continues_the_bar_through_the_first_centre():
    """Closed form: at the first Gabor's centre, a collinear partner at distance d lies on its own
    bar (x_t = 0), so g2 = exp(-0.5 d^2 gamma^2 / sigma^2) (psi = 0); an orthogonal partner has
    the centre across its bars (y_t = 0, |x_t| = d): g2 = exp(-0.5 d^2 / sigma^2) cos(2 pi d / lambda)
    inside its box (half-width 3 px across the bars), 0 beyond."""
    gamma = 0.2
    design = dataclasses.replace(DESIGN, gamma=gamma, psi=0.0)
    table = conditions("pairs", design, 32, 32)
    table = table[table["repeat"] == 0]
    for _, row in table.iterrows():
        g2 = gabor_field(32, 32, row["pos2_y"], row["pos2_x"], direction=row["direction2"], gamma=gamma,
                         psi=0.0)
        at_first = float(g2[row["pos_y"], row["pos_x"]])
        if row["relation"] == "collinear":
            expected = np.exp(-0.5 * row["distance"] ** 2 * gamma ** 2 / design.sigma ** 2)
            assert at_first == pytest.approx(expected, rel=1e-9, abs=1e-12)
        else:
            d = row["distance"]
            expected = np.exp(-0.5 * d ** 2 / design.sigma ** 2) * np.cos(2 * np.pi * d / design.wavelength)
            assert at_first == pytest.approx(expected if d <= 3 else 0.0, rel=1e-9, abs=1e-15)


def test_flank_site_lies_on_the_bars_axis():
    table = conditions("just_angle", DESIGN, 32, 32)
    ay, ax = _bar_axis(table["direction"])
    np.testing.assert_array_equal(table["site1_y"], 16 + np.rint(5 * ay))
    np.testing.assert_array_equal(table["site1_x"], 16 + np.rint(5 * ax))
    by_direction = table.set_index("direction")
    assert tuple(by_direction.loc[0.0, ["site1_y", "site1_x"]]) == (21, 16)    # vertical bars: below
    assert tuple(by_direction.loc[90.0, ["site1_y", "site1_x"]]) == (16, 11)   # horizontal bars: left
    flank = np.hypot(table["site1_y"] - 16, table["site1_x"] - 16)
    assert (np.abs(flank - 5) <= 0.75).all()


def test_orientation_agrees_with_rsa_wrap():
    table = conditions_table(STIMULUS_SETS, DESIGN, 32, 32)
    ref = rsa_wrap_orientation(torch.tensor(table["direction"].to_numpy())).numpy()
    np.testing.assert_allclose(table["orientation"], ref, atol=1e-12)
    assert ((table["orientation"] >= -90) & (table["orientation"] < 90)).all()


def test_too_small_image_fails_with_a_clear_message():
    with pytest.raises(ValueError, match=r"'pairs'.*\(row 8, col 18\).*distance 10.*16x16"):
        conditions("pairs", DESIGN, 16, 16)
    conditions("pairs", dataclasses.replace(DESIGN, pair_distances=(3, 5, 7)), 16, 16)  # fits
    with pytest.raises(ValueError, match=r"'just_angle'.*site 1.*8x8"):
        conditions("just_angle", DESIGN, 8, 8)


def test_unknown_set_lists_valid_names():
    with pytest.raises(ValueError, match="just_angle, contrast_and_angle, few_angles, long_bars, pairs"):
        conditions("gratings", DESIGN, 32, 32)


def test_design_validation():
    with pytest.raises(ValueError, match="sigma"):
        GaborDesign(sigma=0.0)
    with pytest.raises(ValueError, match="pair_repeats"):
        GaborDesign(pair_repeats=0)


def test_conditions_table_concatenates_in_order():
    names = ("pairs", "just_angle")
    table = conditions_table(names, DESIGN, 32, 32)
    assert len(table) == 256 and list(table["trial"]) == list(range(256))
    assert list(table["stimulus_set"][[0, 127, 128, 255]]) == ["pairs", "pairs", "just_angle", "just_angle"]
    single = conditions("just_angle", DESIGN, 32, 32)
    np.testing.assert_allclose(table["direction"][128:], single["direction"])


def test_render_zero_contrast_is_background():
    background = _background()
    table = conditions("contrast_and_angle", DESIGN, 32, 32)
    images = render(table, background, DESIGN)
    zero = (table["contrast"] == 0).to_numpy().copy()
    assert zero.sum() == 16
    assert torch.equal(images[torch.from_numpy(zero)], background.expand(16, -1, -1, -1))
    assert not torch.equal(images[~torch.from_numpy(zero)][0], background)


def test_render_equals_formula_for_single_and_pair_trials():
    background = _background(seed=3)
    table = conditions_table(("long_bars", "pairs"), DESIGN, 32, 32)
    images = render(table, background, DESIGN)
    assert images.shape == (256, 3, 32, 32) and images.dtype == torch.float32
    bg = background.double()
    for i in (0, 17, 100, 128, 133, 200, 255):
        row = table.iloc[i]
        g = row["contrast"] * gabor_field(32, 32, row["pos_y"], row["pos_x"], direction=row["direction"],
                                          gamma=row["gamma"])
        if row["relation"] != "single":
            g = g + row["contrast"] * gabor_field(32, 32, row["pos2_y"], row["pos2_x"],
                                                  direction=row["direction2"], gamma=row["gamma"])
        expected = (bg * (1 + row["weight"] * g)).clamp(0, 1).float()
        torch.testing.assert_close(images[i], expected, rtol=0, atol=1e-6)
    assert float(images.min()) == 0.0 and float(images.max()) == 1.0     # contrast 2.4 saturates


def test_render_grey_background_and_validation():
    table = conditions("few_angles", DESIGN, 32, 32)
    images = render(table, torch.full((1, 32, 32), 0.5), DESIGN)
    assert images.shape == (128, 1, 32, 32)
    # few_angles repeats are identical images
    assert torch.equal(images[0], images[15]) and not torch.equal(images[0], images[16])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        render(table, torch.full((1, 32, 32), 1.5), DESIGN)
    with pytest.raises(ValueError, match="centre"):
        render(table, torch.full((1, 8, 8), 0.5), DESIGN)


def test_render_is_fast():
    table = conditions_table(STIMULUS_SETS, DESIGN, 32, 32)
    background = _background()
    render(table.iloc[:8], background, DESIGN)  # warm up
    start = time.perf_counter()
    images = render(table, background, DESIGN)
    elapsed = time.perf_counter() - start
    assert images.shape == (640, 3, 32, 32)
    assert elapsed < 2.0, f"render of 640 trials took {elapsed:.2f} s"


@pytest.mark.parametrize("channels", [1, 3])
def test_contact_sheet(channels):
    table = conditions_table(("pairs", "just_angle"), DESIGN, 32, 32)
    images = render(table, _background(channels), DESIGN)
    fig = contact_sheet(images, table, max_images=10)
    assert isinstance(fig, Figure)
    shown = [ax for ax in fig.axes if ax.images]
    assert len(shown) == 10
    titles = [ax.get_title() for ax in shown]
    assert titles[0].startswith("pairs") and "d=3" in titles[0] and "col" in titles[0]
    assert "90" in titles[0] and "c=2.4" in titles[0]
    np.testing.assert_allclose(np.asarray(shown[3].images[0].get_array()).squeeze(),
                               images[3].permute(1, 2, 0).squeeze().numpy())
    with pytest.raises(ValueError, match="rows"):
        contact_sheet(images, table.iloc[:5])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_render_runs_on_the_background_device():
    table = conditions_table(("just_angle", "pairs"), DESIGN, 32, 32)
    background = _background()
    on_gpu = render(table, background.cuda(), DESIGN)
    assert on_gpu.device.type == "cuda"
    torch.testing.assert_close(on_gpu.cpu(), render(table, background, DESIGN), rtol=0, atol=1e-6)
