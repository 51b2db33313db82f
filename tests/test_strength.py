"""Restoration strength: holes always repaired, the rest blended; the weights' card sets the default."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_weights import make_tiny_weights

from engine.cli.app import main as cli_main
from engine.core.pipeline import RestoreOptions, Restorer
from engine.core.strength import apply_strength
from engine.models.checkpoints import CheckpointError, ModelBank, SafetensorsSource


def test_holes_come_from_the_restoration_and_the_rest_is_blended() -> None:
    rng = np.random.default_rng(0)
    restored, original = rng.random((8, 9, 3)).astype(np.float32), rng.random((8, 9, 3)).astype(np.float32)
    holes = np.zeros((8, 9), bool)
    holes[2:4, 3:7] = True
    out = apply_strength(restored.copy(), original, holes, 0.25)
    assert np.array_equal(out[holes], restored[holes])
    assert np.allclose(out[~holes], 0.25 * restored[~holes] + 0.75 * original[~holes])
    assert apply_strength(restored, original, None, 1.0) is restored
    with pytest.raises(ValueError):
        apply_strength(restored, original, holes, 1.5)


def set_card(folder: Path, **entries) -> Path:
    card = json.loads((folder / "model.json").read_text())
    card.update(entries)
    (folder / "model.json").write_text(json.dumps(card))
    return folder


def test_the_card_default_applies_unless_the_user_chooses(tmp_path: Path) -> None:
    weights = set_card(make_tiny_weights(tmp_path / "w"), default_strength=0.0)
    restorer = Restorer(ModelBank(SafetensorsSource(weights), torch.device("cpu")))
    photo = np.random.default_rng(1).random((32, 40, 3)).astype(np.float32)
    mask = np.zeros((32, 40), bool)
    mask[10:14, 5:30] = True
    by_card = restorer.restore(photo, RestoreOptions(), user_mask=mask)
    assert by_card.strength == 0.0 and np.allclose(by_card.image[~mask], photo[~mask], atol=1e-6)
    assert not np.allclose(by_card.image[mask], photo[mask], atol=0.02)  # the holes were repaired
    full = restorer.restore(photo, RestoreOptions(strength=1.0), user_mask=mask)
    assert full.strength == 1.0 and not np.allclose(full.image[~mask], photo[~mask], atol=0.02)
    assert np.allclose(full.image[mask], by_card.image[mask], atol=1e-6)

    with pytest.raises(CheckpointError, match="default_strength"):
        SafetensorsSource(set_card(weights, default_strength=3)).default_strength()


def test_cli_takes_a_strength_and_records_it(tmp_path: Path, capsys) -> None:
    from PIL import Image

    weights = make_tiny_weights(tmp_path / "w")
    photo = tmp_path / "p.png"
    Image.fromarray(np.full((24, 28, 3), 100, np.uint8)).save(photo)
    err, out = io.StringIO(), io.StringIO()
    assert cli_main(["restore", str(photo), "-o", str(tmp_path / "o"), "--weights", str(weights),
                     "--strength", "0.3"], out=out, err=err) == 0, err.getvalue()
    assert "strength 0.30" in out.getvalue()
    record = json.loads((tmp_path / "o" / "p.png.heirloom.json").read_text())
    assert record["options"]["restore"]["strength"] == 0.3 and record["options"]["strength_applied"] == 0.3
    assert cli_main(["restore", str(photo), "-o", str(tmp_path / "o2"), "--strength", "2"], out=io.StringIO(),
                    err=io.StringIO()) != 0
    assert "strength must be a number from 0 to 1" in capsys.readouterr().err and not (tmp_path / "o2").exists()


def test_damage_features_see_noise_blur_and_impulses() -> None:
    from engine.models.predictors import damage_features

    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:200, 0:300] / 300
    smooth = np.repeat((0.5 + 0.3 * np.sin(6 * xx) * np.cos(5 * yy))[..., None], 3, axis=2).astype(np.float32)
    textured = np.repeat((0.5 + 0.3 * np.sin(250 * xx) * np.cos(200 * yy))[..., None], 3, axis=2).astype(np.float32)
    noisy = np.clip(smooth + rng.normal(0, 0.08, smooth.shape), 0, 1).astype(np.float32)
    import cv2

    blurred = cv2.GaussianBlur(textured, (0, 0), 2.0)
    peppered = smooth.copy()
    peppered[rng.random(smooth.shape[:2]) < 0.05] = 1.0
    f_clean, f_noisy, f_pepper = (damage_features(x) for x in (smooth, noisy, peppered))
    f_sharp, f_blur = damage_features(textured), damage_features(blurred)
    assert f_noisy[0] > 5 * f_clean[0]  # robust noise sigma
    assert f_blur[3] < 0.6 * f_sharp[3]  # less gradient after a blur
    assert f_pepper[5] > 0.02 > f_clean[5]  # impulse share


def test_a_card_strength_predictor_sets_the_strength_per_photo(tmp_path: Path) -> None:
    """A predictor fitted so that noisy photos get strength 1 and clean ones 0 is what the
    pipeline applies when the user leaves the strength to the weights; an explicit one wins."""
    from engine.models.predictors import StrengthPredictor, strength_features

    rng = np.random.default_rng(4)
    yy, xx = np.mgrid[0:48, 0:64] / 64
    base = np.stack([0.5 + 0.2 * np.sin(9 * xx), 0.5 + 0.2 * np.cos(7 * yy), 0.4 + 0.3 * xx], axis=2)
    photos = [np.clip(base + rng.normal(0, sigma, base.shape), 0, 1).astype(np.float32)
              for sigma in np.linspace(0.0, 0.15, 16)]
    best = np.linspace(0.0, 1.0, 16)
    predictor = StrengthPredictor.fit(np.stack([strength_features(p) for p in photos]), best, ridge=0.1)
    weights = set_card(make_tiny_weights(tmp_path / "w"), default_strength=0.5,
                       strength_predictor=json.loads(json.dumps(predictor.to_json())))
    restorer = Restorer(ModelBank(SafetensorsSource(weights), torch.device("cpu")))
    clean_photo, noisy_photo = photos[0], photos[-1]
    low, high = restorer.restore(clean_photo, RestoreOptions()), restorer.restore(noisy_photo, RestoreOptions())
    assert low.strength <= 0.2 and high.strength >= 0.8, (low.strength, high.strength)
    assert round(high.strength / 0.05, 6).is_integer()
    assert restorer.restore(noisy_photo, RestoreOptions(strength=0.3)).strength == 0.3
    with pytest.raises(CheckpointError, match="strength_predictor"):
        SafetensorsSource(set_card(weights, strength_predictor={"weights": [1.0]})).strength_predictor()
