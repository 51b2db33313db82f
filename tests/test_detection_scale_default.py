"""The detection scale comes from the weights unless asked: "auto" (the photo's own resolution up to
1536 px short side) for Heirloom's default weights, measured on the real-damage set; official elsewhere."""

from __future__ import annotations

import json

import numpy as np
import pytest

from engine.core import pipeline
from engine.core.detection import (
    AUTO_MAX_SHORT_SIDE,
    detection_short_side,
    parse_detection_scale,
    resolve_detection_scale,
    weights_detection_scale,
)
from engine.core.pipeline import RestoreOptions, damage_mask
from engine.models.checkpoints import ModelBank, SafetensorsSource, WeightSource
from engine.store.paths import DEFAULT_WEIGHTS_DIR


class Bank:
    def __init__(self, source: WeightSource) -> None:
        self.source = source


def test_auto_is_full_up_to_the_cap_and_never_enlarges():
    assert parse_detection_scale(" Auto") == "auto"
    assert detection_short_side("auto", 624, 496) == detection_short_side("full", 624, 496) == 496
    assert detection_short_side("auto", 4000, 6000) == AUTO_MAX_SHORT_SIDE == 1536
    assert detection_short_side("full", 4000, 6000) == 4000  # "full" asked for explicitly stays full
    assert detection_short_side("auto", 100, 300) == 96


def test_the_default_weights_card_asks_for_auto_and_official_weights_keep_256():
    card = json.loads((DEFAULT_WEIGHTS_DIR / "model.json").read_text(encoding="utf-8"))
    assert card["detection_scale"] == "auto"
    assert weights_detection_scale(ModelBank(SafetensorsSource(DEFAULT_WEIGHTS_DIR), "cpu")) == "auto"
    assert weights_detection_scale(Bank(WeightSource())) == "official"
    assert resolve_detection_scale(Bank(WeightSource()), 384) == 384  # asked for: the weights do not matter
    assert RestoreOptions().detection_scale is None  # the weights decide


def test_a_bad_card_scale_says_where_it_came_from(tmp_path):
    (tmp_path / "model.json").write_text(json.dumps({"detection_scale": "huge"}), encoding="utf-8")
    with pytest.raises(ValueError, match="model card's detection_scale"):
        weights_detection_scale(Bank(SafetensorsSource(tmp_path)))


def test_damage_mask_runs_at_the_weights_scale_and_reports_it(monkeypatch):
    seen = []

    def fake(_bank, rgb, short_side, *_args):
        seen.append(short_side)
        return np.zeros(rgb.shape[:2], np.float32)

    monkeypatch.setattr(pipeline, "detect_scratches", fake)
    bank = Bank(SafetensorsSource(DEFAULT_WEIGHTS_DIR))
    policy = damage_mask(bank, np.zeros((400, 600, 3), np.float32), RestoreOptions(scratch=True))
    assert policy.scale == "auto" and seen == [400]
    policy = damage_mask(bank, np.zeros((400, 600, 3), np.float32), RestoreOptions(scratch=True,
                                                                                   detection_scale="official"))
    assert policy.scale == "official" and seen[-1] == 256
