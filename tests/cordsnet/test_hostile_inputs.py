"""Hostile or out-of-range inputs to CordsNet are one line and exit 2 before the run folder
exists (issue 23, items 9, 10, 12): weights files that are pickles or noise, decompression
bombs and NaN float images in --stimulus_folder, a derived --steps, non-finite gratings; issue 25:
--pretrained files that are not published CordsNet state dicts, a folder with no readable image, a
non-square image when own_image_fit is none."""
import os
import pickle
import struct
import zlib

import numpy as np
import pytest
import torch

from tests.cordsnet.test_suite import TINY

INIT8 = [*TINY, "--depth", "8", "--record_areas", "0"]


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _one_line_refusal(rc, err, run):
    assert rc == 2, err
    assert "Traceback" not in err and "Warning" not in err, err
    assert len(err.strip().splitlines()) == 1, err
    assert not run.exists()


@pytest.mark.parametrize("kind", ["pickle", "random", "not_a_dict"])
def test_resnet18_weights_that_are_not_weights(run_main, tmp_path, kind):
    path, marker = tmp_path / "w.pth", tmp_path / "ran"
    if kind == "pickle":
        path.write_bytes(pickle.dumps(_Evil(marker)))
    elif kind == "random":
        path.write_bytes(np.random.default_rng(0).bytes(4096))
    else:
        torch.save([torch.zeros(3)], path)
    rc, err = run_main(*INIT8, "--resnet18_weights", str(path), "--run_name", "r")
    _one_line_refusal(rc, err, tmp_path / "runs/r")
    assert "--resnet18_weights" in err and not marker.exists()


def _png_header(width, height):
    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def test_decompression_bomb_and_nan_float_image_are_refused(run_main, tmp_path):
    from PIL import Image

    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(folder / "a.png")
    (folder / "bomb.png").write_bytes(_png_header(30000, 30000))
    rc, err = run_main(*TINY, "--stimulus_folder", str(folder), "--experiment", "--run_name", "b")
    _one_line_refusal(rc, err, tmp_path / "runs/b")
    assert "bomb.png" in err and "too large" in err
    (folder / "bomb.png").unlink()
    Image.fromarray(np.full((20, 20), np.nan, np.float32), mode="F").save(folder / "nan.tif")
    rc, err = run_main(*TINY, "--stimulus_folder", str(folder), "--experiment", "--run_name", "n")
    _one_line_refusal(rc, err, tmp_path / "runs/n")
    assert "nan.tif" in err and "NaN" in err


def test_derived_steps_is_refused_naming_the_phase_keys(run_main, tmp_path):
    rc, err = run_main(*TINY, "--steps", "100", "--run_name", "s")
    _one_line_refusal(rc, err, tmp_path / "runs/s")
    assert "--steps" in err and "--finetune_steps" in err


def test_non_finite_gratings_are_refused(run_main, tmp_path):
    rc, err = run_main(*TINY, "--grating_cycles", "1e300", "--no_train_model", "--gen_exp_stim", "--run_name", "g")
    _one_line_refusal(rc, err, tmp_path / "runs/g")
    assert "--grating_cycles" in err


def test_stimulus_set_of_another_geometry_is_refused_in_the_preflight(run_main, tmp_path):
    rc, err = run_main(*TINY, "--no_train_model", "--gen_exp_stim", "--run_name", "px16")
    assert rc == 0, err
    stim = tmp_path / "runs/px16/recordings/stimuli.zarr"
    rc, err = run_main(*TINY, "--input_size", "24", "--stimuli", str(stim), "--experiment", "--run_name", "px24")
    _one_line_refusal(rc, err, tmp_path / "runs/px24")
    assert "(1, 16, 16)" in err and "(1, 24, 24)" in err and "--gen_exp_stim" in err


def test_empty_noise_levels_and_control_characters_in_run_name(run_main, tmp_path):
    rc, err = run_main(*TINY, "--noise_levels", "[]", "--run_name", "e")
    _one_line_refusal(rc, err, tmp_path / "runs/e")
    assert "--noise_levels" in err
    for name in ("a\x07b", "tab\there", "new\nline", "del\x7f"):
        rc, err = run_main(*TINY, "--run_name", name)
        assert rc == 2 and "--run_name: control character" in err, (name, err)
        assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_early_stopping_without_a_selection_metric_is_refused(run_main, tmp_path):
    rc, err = run_main(*TINY, "--early_stop_patience", "3", "--run_name", "es")
    _one_line_refusal(rc, err, tmp_path / "runs/es")
    assert "--early_stop_patience" in err


def _save_published(path, depth=2, change=None):
    from cordsnet.model import CordsNet

    state = CordsNet(depth, 1, 10, 16).state_dict()
    if change:
        change(state)
    torch.save(state, path)


def _nan_weight(state):
    state[next(k for k, v in state.items() if v.is_floating_point())][0] = float("nan")


PRETRAINED_BAD = {
    "pickle": ("safely", None),
    "random": ("safely", None),
    "list": ("holds a list", lambda p: torch.save([torch.zeros(3)], p)),
    "int_keys": ("keys must be parameter names", lambda p: torch.save({0: torch.zeros(3)}, p)),
    "not_tensors": ("not a state dict of tensors",
                    lambda p: _save_published(p, change=lambda s: s.update({next(iter(s)): [1.0, 2.0]}))),
    "other_model": ("does not fit CordsNet R2", lambda p: torch.save({"fc.weight": torch.zeros(10, 4)}, p)),
    "integer_weights": ("non-floating-point", lambda p: _save_published(
        p, change=lambda s: s.update({k: v.long() for k, v in list(s.items())[:2]}))),
    "nan": ("NaN or infinite", lambda p: _save_published(p, change=_nan_weight)),
    "modules_not_a_dict": ("does not fit", lambda p: torch.save({"modules": torch.zeros(2)}, p)),
}


@pytest.mark.parametrize("kind", list(PRETRAINED_BAD))
def test_pretrained_file_that_is_not_a_published_state_dict(run_main, tmp_path, kind):
    path, marker = tmp_path / "w.pth", tmp_path / "ran"
    want, write = PRETRAINED_BAD[kind]
    if kind == "pickle":
        path.write_bytes(pickle.dumps(_Evil(marker)))
    elif kind == "random":
        path.write_bytes(np.random.default_rng(0).bytes(4096))
    else:
        write(path)
    rc, err = run_main(*TINY, "--pretrained", str(path), "--no_train_model", "--analyze", "--only", "spectra",
                       "--run_name", "p")
    _one_line_refusal(rc, err, tmp_path / "runs/p")
    assert "--pretrained" in err and want in err and not marker.exists(), err


def test_stimulus_folder_without_a_readable_image(run_main, tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    (folder / "notes.txt").write_text("no image here")
    (folder / "looks_like.png").mkdir()                  # a folder named like an image
    rc, err = run_main(*TINY, "--no_train_model", "--stimulus_folder", str(folder), "--experiment", "--run_name", "e")
    _one_line_refusal(rc, err, tmp_path / "runs/e")
    assert "no image files" in err
    (folder / "empty.jpg").write_bytes(b"")
    rc, err = run_main(*TINY, "--no_train_model", "--stimulus_folder", str(folder), "--experiment", "--run_name", "z")
    _one_line_refusal(rc, err, tmp_path / "runs/z")
    assert "cannot read" in err and "empty.jpg" in err


def test_non_square_image_is_refused_when_neither_cropping_nor_padding(run_main, tmp_path):
    from PIL import Image

    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(folder / "a_square.png")
    Image.fromarray(np.zeros((20, 30), np.uint8)).save(folder / "b_wide.png")
    argv = [*TINY, "--no_train_model", "--stimulus_folder", str(folder), "--experiment"]
    rc, err = run_main(*argv, "--own_image_fit", "none", "--run_name", "n")
    _one_line_refusal(rc, err, tmp_path / "runs/n")
    assert "b_wide.png" in err and "30 x 20" in err and "own_image_fit" in err
    rc, err = run_main(*argv, "--own_image_fit", "sideways", "--run_name", "s")
    _one_line_refusal(rc, err, tmp_path / "runs/s")
    assert "--own_image_fit" in err
    rc, err = run_main(*argv, "--own_image_fit", "pad", "--run_name", "p")
    assert rc == 0, err
