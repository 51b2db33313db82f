"""Restoration strength: holes always repaired, the rest blended; the weights' card sets the default."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.cli import main as cli_main
from engine.models.checkpoints import CheckpointError, ModelBank, SafetensorsSource
from engine.pipeline import RestoreOptions, Restorer
from engine.strength import apply_strength
from tiny_weights import make_tiny_weights


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
    err = io.StringIO()
    assert cli_main(["restore", str(photo), "-o", str(tmp_path / "o"), "--weights", str(weights),
                     "--strength", "0.3"], out=io.StringIO(), err=err) == 0, err.getvalue()
    record = json.loads((tmp_path / "o" / "p.png.heirloom.json").read_text())
    assert record["options"]["restore"]["strength"] == 0.3 and record["options"]["strength_applied"] == 0.3
    assert cli_main(["restore", str(photo), "-o", str(tmp_path / "o2"), "--strength", "2"], out=io.StringIO(),
                    err=io.StringIO()) != 0
    assert "strength must be a number from 0 to 1" in capsys.readouterr().err and not (tmp_path / "o2").exists()
