"""Colour fidelity by default (issue 17): a restore keeps the photo's own tone and colour balance
outside repaired damage unless fading correction is asked for; official weights are never changed."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tiny_weights import make_tiny_weights

from engine.cli.app import build_parser, main
from engine.core.pipeline import RestoreOptions, Restorer
from engine.core.tone import keep_local_colour, tone_for
from engine.models.checkpoints import ModelBank, SafetensorsSource
from engine.models.predictors import RidgeModel, TonePredictor

TOLERANCE = 1.5 / 255  # "within a small tolerance": one and a half 8-bit levels


@pytest.fixture(autouse=True)
def data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("HEIRLOOM_DATA_DIR", str(tmp_path / "userdata"))


def predicted_tone_weights(folder: Path) -> Path:
    """Tiny lite-style weights whose card asks for the "predicted" tone, with a predictor that
    always answers a neutral, brighter, higher-contrast print (a fading correction that recolours)."""
    make_tiny_weights(folder)
    card = json.loads((folder / "model.json").read_text(encoding="utf-8"))
    weights = np.zeros((31, 6), np.float32)
    weights[-1] = [0.55, 0.55, 0.55, 0.22, 0.22, 0.22]  # mean, std per channel (bias only)
    predictor = TonePredictor(RidgeModel(np.zeros(30, np.float32), np.ones(30, np.float32), weights))
    card.update(output_tone="predicted", tone_predictor=predictor.to_json())
    (folder / "model.json").write_text(json.dumps(card), encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def restorer(tmp_path_factory) -> Restorer:
    source = SafetensorsSource(predicted_tone_weights(tmp_path_factory.mktemp("w") / "predicted"))
    return Restorer(ModelBank(source, torch.device("cpu")))


def textured(shape=(72, 88), seed=0) -> np.ndarray:
    """A smooth scene with grain: HxW luminance in [0.15, 0.85]."""
    rng = np.random.default_rng(seed)
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    luma = 0.5 + 0.25 * np.sin(6 * xx + 2 * yy) * np.cos(4 * yy) + 0.03 * rng.standard_normal((h, w))
    return np.clip(luma, 0.15, 0.85).astype(np.float32)


def sepia_photo() -> np.ndarray:
    luma = textured()
    return np.stack([luma * 1.0, luma * 0.82, luma * 0.6], axis=2).clip(0, 1).astype(np.float32)


def grey_photo() -> np.ndarray:
    return np.repeat(textured(seed=1)[..., None], 3, axis=2)


def hole_mask(shape=(72, 88)) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[30:34, 5:80] = True  # a crack
    mask[50:60, 60:70] = True  # a hole
    return mask


def outside_means(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return image[~mask].mean(0)


@pytest.mark.parametrize("make_photo", [sepia_photo, grey_photo], ids=["sepia", "grey"])
@pytest.mark.parametrize("strength", [None, 0.5])
def test_default_restore_keeps_each_channel_mean_outside_the_mask(restorer, make_photo, strength):
    photo, mask = make_photo(), hole_mask()
    result = restorer.restore(photo, RestoreOptions(strength=strength), user_mask=mask)
    assert result.tone == "photo" and result.strength == (1.0 if strength is None else 0.5)
    assert np.abs(outside_means(result.image, mask) - outside_means(photo, mask)).max() <= TOLERANCE
    if make_photo is grey_photo:  # grey stays grey
        assert np.abs(result.image - result.image.mean(2, keepdims=True)).max() < 1e-6
    else:  # sepia stays sepia: the channel ratios of the print, not a neutral grey
        ratios = outside_means(result.image, mask) / outside_means(result.image, mask)[0]
        assert np.allclose(ratios, [1.0, 0.82, 0.6], atol=0.02)
    # ... and the restoration is not the photo: the networks' detail and the filled holes are in it
    assert np.abs(result.image - photo)[~mask].mean() > 0.002
    assert np.abs(result.image - photo)[mask].mean() > 0.02


@pytest.mark.parametrize("make_photo", [sepia_photo, grey_photo], ids=["sepia", "grey"])
def test_correct_fading_gives_the_predicted_tone(restorer, make_photo):
    photo, mask = make_photo(), hole_mask()
    result = restorer.restore(photo, RestoreOptions(correct_fading=True), user_mask=mask)
    assert result.tone == "predicted"
    means = outside_means(result.image, mask)
    assert np.abs(means - outside_means(photo, mask)).max() > 0.03  # the fading correction moves the tone
    assert np.allclose(means, 0.55, atol=0.03)  # towards the predictor's neutral print


def test_local_colour_is_kept_not_only_the_global_means(restorer):
    """A print toned differently in two halves keeps each half's colour (global statistics alone
    would give both halves the same mix)."""
    luma = textured()
    photo = np.stack([luma, luma, luma], axis=2)
    photo[:, :44, 2] *= 0.6  # left half warm
    photo[:, 44:, 0] *= 0.6  # right half cool
    result = restorer.restore(photo, RestoreOptions())
    for half in (np.s_[:, 4:40], np.s_[:, 48:84]):  # away from the seam by a few sigma
        assert np.abs(result.image[half].mean((0, 1)) - photo[half].mean((0, 1))).max() < 3 / 255


def test_tone_choice_official_weights_are_never_changed():
    assert tone_for("model", False) == tone_for("model", True) == "model"
    assert tone_for("predicted", False) == tone_for("match-input", False) == "photo"
    assert tone_for("predicted", True) == "predicted" and tone_for("match-input", True) == "match-input"


def test_official_style_weights_ignore_correct_fading_and_say_so(tmp_path):
    source = SafetensorsSource(make_tiny_weights(tmp_path / "raw", output_tone="model"))
    restorer = Restorer(ModelBank(source, torch.device("cpu")))
    photo = sepia_photo()
    plain = restorer.restore(photo, RestoreOptions())
    asked = restorer.restore(photo, RestoreOptions(correct_fading=True))
    assert plain.tone == asked.tone == "model" and np.array_equal(plain.image, asked.image)
    assert not plain.warnings and any("correct fading changes nothing" in w for w in asked.warnings)


# --- the low-pass itself ---------------------------------------------------------------------------------

def test_keep_local_colour_removes_a_smooth_cast_keeps_detail_and_ignores_holes():
    rng = np.random.default_rng(0)
    h, w = 96, 128
    reference = torch.from_numpy(rng.uniform(-0.5, 0.5, (1, 3, h, w)).astype(np.float32))
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    cast = 0.3 * torch.stack([xx, yy, xx * yy])[None]  # smooth, varies across the photo
    detail = 0.1 * torch.from_numpy(rng.standard_normal((1, 3, h, w)).astype(np.float32))
    output = reference + cast + detail
    valid = torch.ones(1, 1, h, w)
    valid[..., 40:50, 30:90] = 0
    holed = reference.clone()
    holed[..., 40:50, 30:90] = 1.0  # white holes must not pull the colour
    kept = keep_local_colour(output.clone(), holed, valid, sigma=4.0)
    residual = kept - reference - detail
    assert residual[..., 8:-8, 8:-8].abs().mean() < 0.02  # the cast is gone (detail's own low-pass remains)
    assert residual[..., 40:50, 30:90].abs().mean() < 0.03  # inside the hole too, from its surroundings
    # detail survives: the fine-scale part of the output is unchanged
    assert torch.corrcoef(torch.stack([(kept - reference).flatten(), detail.flatten()]))[0, 1] > 0.9


def test_keep_local_colour_at_large_sigma_matches_the_full_resolution_low_pass():
    """The low-pass runs on a copy sigma/2 times smaller (for 24 MP scans): the same field, near enough."""
    from engine.core.tone import _lowpass

    rng = np.random.default_rng(1)
    h, w = 200, 260
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    reference = (0.4 * torch.sin(5 * xx) * torch.cos(3 * yy))[None, None].repeat(1, 3, 1, 1)
    output = reference + torch.from_numpy(rng.standard_normal((1, 3, h, w)).astype(np.float32)) * 0.05 + 0.2 * xx
    valid = torch.ones(1, 1, h, w)
    valid[..., 90:110, :] = 0
    fast = keep_local_colour(output.clone(), reference, valid, sigma=12.0)
    num = _lowpass((reference - output) * valid, 1, 12.0)
    exact = output + num / _lowpass(valid, 1, 12.0).clamp_min(0.1)
    assert (fast - exact)[..., 10:-10, 10:-10].abs().max() < 0.01


# --- the option reaches the command line, the sidecar, and the GUI (tests/gui) --------------------------

def test_the_cli_flag_parses():
    args = build_parser().parse_args(["restore", "p.png", "-o", "out"])
    assert args.correct_fading is False
    args = build_parser().parse_args(["restore", "p.png", "-o", "out", "--correct-fading"])
    assert args.correct_fading is True


def test_correct_fading_is_recorded_in_the_sidecar_and_changes_the_output(tmp_path):
    weights = predicted_tone_weights(tmp_path / "w")
    photo = tmp_path / "sepia.png"
    Image.fromarray((sepia_photo() * 255 + 0.5).astype(np.uint8)).save(photo)
    written = {}
    for name, flags in (("plain", []), ("faded", ["--correct-fading"])):
        out = io.StringIO()
        code = main(["restore", str(photo), "-o", str(tmp_path / name), "--weights", str(weights), *flags],
                    out=out, err=io.StringIO())
        assert code == 0, out.getvalue()
        record = json.loads((tmp_path / name / "sepia.png.heirloom.json").read_text(encoding="utf-8"))
        written[name] = (np.asarray(Image.open(tmp_path / name / "sepia.png"), np.float32), record["options"])
    (plain, plain_options), (faded, faded_options) = written["plain"], written["faded"]
    assert plain_options["restore"]["correct_fading"] is False and plain_options["tone_applied"] == "photo"
    assert faded_options["restore"]["correct_fading"] is True and faded_options["tone_applied"] == "predicted"
    original = np.asarray(Image.open(photo), np.float32)
    assert np.abs(plain.mean((0, 1)) - original.mean((0, 1))).max() <= 1.5
    assert np.abs(faded.mean((0, 1)) - original.mean((0, 1))).max() > 5
