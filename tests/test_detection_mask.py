"""engine.core.detection's split of detection into an expensive probability map and a cheap mask rule,
so the GUI can re-threshold as a slider moves and still match what Restorer.restore does."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

import engine.core.detection as detection
from engine.core.detection import mask_from_probability, scratch_probability
from engine.models.checkpoints import ModelBank, WeightSource
from engine.models.registry import BY_NAME, NetworkSpec


class RandomDetector(WeightSource):
    """A randomly initialised detector, built once (only the wiring is tested here)."""

    label = "random detector"

    def __init__(self) -> None:
        torch.manual_seed(0)
        self.state = BY_NAME["detector"].build().state_dict()

    def has(self, spec: NetworkSpec) -> bool:
        return spec.name == "detector"

    def state_dict(self, spec: NetworkSpec) -> dict[str, torch.Tensor]:
        return self.state


def test_mask_rule_is_the_pipelines():
    rng = np.random.default_rng(0)
    prob = rng.random((30, 41)).astype(np.float32)
    assert np.array_equal(mask_from_probability(prob, 0.7, 0), prob >= 0.7)
    expected = cv2.dilate((prob >= 0.9).astype(np.uint8), np.ones((3, 3), np.uint8), iterations=2).astype(bool)
    assert np.array_equal(mask_from_probability(prob, 0.9, 2), expected)
    assert not mask_from_probability(prob, 2.0, 3).any()  # above every probability: nothing, even dilated


def test_probability_map_from_any_pixel_depth(monkeypatch):
    monkeypatch.setattr(detection, "OFFICIAL_SHORT_SIDE", 64)  # small: a random U-Net on a test photo
    bank = ModelBank(RandomDetector(), torch.device("cpu"))
    rng = np.random.default_rng(1)
    u8 = rng.integers(0, 256, (40, 52, 3), dtype=np.uint8)
    prob = scratch_probability(bank, u8)
    assert prob.shape == (40, 52) and prob.dtype == np.float32 and 0.0 <= prob.min() <= prob.max() <= 1.0
    u16 = u8.astype(np.uint16) * 257  # a 16-bit scan of the same picture (floats take the same path)
    assert np.allclose(scratch_probability(bank, u16), prob, atol=1e-6)
    with pytest.raises(ValueError, match="HxWx3"):
        scratch_probability(bank, u8[..., 0])
