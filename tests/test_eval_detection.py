"""The tolerant detection metric and the real-damage reference masks (bench/real_masks)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import DATA, ROOT

from engine.core.metrics import tolerant_precision_recall

MASKS = ROOT / "bench" / "real_masks"


def _line(shift: int = 0) -> np.ndarray:
    mask = np.zeros((40, 60), bool)
    mask[20 + shift, 5:55] = True
    return mask


def test_line_shifted_two_pixels_counts():
    scores = tolerant_precision_recall(_line(2), _line(), 3)
    assert scores == {"precision": 1.0, "recall": 1.0, "f1": 1.0}


def test_line_shifted_five_pixels_does_not():
    scores = tolerant_precision_recall(_line(5), _line(), 3)
    assert scores["precision"] == 0.0 and scores["recall"] == 0.0 and scores["f1"] == 0.0


def test_partial_detection_and_false_alarm():
    pred = np.zeros((40, 60), bool)
    pred[21, 5:30] = True  # half the line, 1 px off
    pred[5, 5:30] = True  # as many pixels far away
    scores = tolerant_precision_recall(pred, _line(), 3)
    assert scores["precision"] == pytest.approx(0.5)
    assert scores["recall"] == pytest.approx(27 / 50)  # 25 covered plus 2 within 3 px of the end


def test_empty_masks():
    empty = np.zeros((10, 10), bool)
    assert tolerant_precision_recall(empty, _line()[:10, :10] | True, 3)["recall"] == 0.0
    assert tolerant_precision_recall(empty, empty, 3)["f1"] == 1.0
    with pytest.raises(ValueError):
        tolerant_precision_recall(empty, np.zeros((5, 5), bool), 3)


def test_manifest_lists_each_mask_once():
    manifest = json.loads((MASKS / "manifest.json").read_text(encoding="utf-8"))["photos"]
    stems = [e["stem"] for e in manifest]
    assert len(stems) == len(set(stems))
    assert {p.name for p in MASKS.glob("*_mask.png")} == {f"{s}_mask.png" for s in stems}
    assert {e["split"] for e in manifest} == {"calib", "test"}
    for entry in manifest:
        assert (MASKS / "edits" / f"{entry['stem']}.json").is_file()


@pytest.mark.skipif(not (DATA / "real_old").is_dir(), reason="../shared/data is not present")
def test_masks_match_their_photos():
    from engine.io.decode import read_mask, read_rgb

    for entry in json.loads((MASKS / "manifest.json").read_text(encoding="utf-8"))["photos"]:
        photo = read_rgb(DATA / entry["path"])
        mask = read_mask(MASKS / f"{entry['stem']}_mask.png")
        assert mask.shape == photo.shape[:2] == (entry["height"], entry["width"]), entry["stem"]
        assert 0 < mask.mean() < 0.25, entry["stem"]
