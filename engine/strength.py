"""Restoration strength: how much of the restored photo to apply outside the repaired damage.

Why: a restoration that removes grain and fading also softens detail, and how far to go is a
matter of taste and of the weights. Holes (the scratch mask) are always taken from the
restoration, since the photo has nothing there; everywhere else the result is
``strength * restored + (1 - strength) * original``. Official weights default to 1 (the paper's
output); our lite weights' card sets the strength that scored best on training photos
(``engine.training.strength_fit``), because at their size they blur more than they repair.

How much a photo gains from the restoration depends on how damaged it is: a noisy, blurred,
faded print wants nearly all of it, a clean print with a few scratches nearly none (measured on
held-out photos, the best strength ranges from 0 to 1). So the card can also carry a
``StrengthPredictor``: a ridge regression from a few measures of visible damage (noise, blur,
impulse noise, contrast, colour) and the tone statistics to the strength that scored best on
training photos. It is used when the user leaves the strength to the weights.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .ridge import RidgeModel
from .tone import FEATURE_SIDE, tone_features


def apply_strength(restored: np.ndarray, original: np.ndarray, holes: np.ndarray | None,
                   strength: float) -> np.ndarray:
    """HxWx3 float32 arrays in [0, 1]; ``holes`` HxW bool or None. Blends *into* ``restored`` and
    returns it (one temporary instead of four: a 24 MP photo is 288 MB per copy)."""
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"strength must be between 0 and 1, got {strength}")
    if strength == 1.0:
        return restored
    kept = None if holes is None else restored[holes]
    restored *= strength
    restored += (1.0 - strength) * original
    if holes is not None:
        restored[holes] = kept
    return restored


DAMAGE_FEATURES = 8


def damage_features(rgb: np.ndarray) -> np.ndarray:
    """Measures of visible unstructured damage of an HxWx3 [0, 1] photo at ``FEATURE_SIDE`` px:
    noise (robust sigma of a high-pass and its log, mean high-pass), sharpness (mean gradient and
    how much of it survives a blur), impulse noise (pixels far from their 3x3 median), contrast and
    colourfulness (8 numbers)."""
    h, w = rgb.shape[:2]
    scale = FEATURE_SIDE / max(h, w)
    if scale < 1:
        rgb = cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    rgb = np.asarray(rgb, np.float32)
    luma = rgb.mean(axis=2)
    high = luma - cv2.GaussianBlur(luma, (0, 0), 1.0)
    noise = float(np.median(np.abs(high)) / 0.6745)
    gradient = _mean_gradient(luma)
    blurred = _mean_gradient(cv2.GaussianBlur(luma, (0, 0), 1.5))
    median = cv2.medianBlur(np.round(luma * 255).astype(np.uint8), 3).astype(np.float32) / 255.0
    impulses = float((np.abs(luma - median) > 0.25).mean())
    contrast = float(np.percentile(luma, 99) - np.percentile(luma, 1))
    colour = float((rgb.max(axis=2) - rgb.min(axis=2)).mean())
    return np.asarray([noise, np.log(noise + 1e-4), float(np.abs(high).mean()), gradient,
                       blurred / (gradient + 1e-6), impulses, contrast, colour], np.float32)


def _mean_gradient(luma: np.ndarray) -> float:
    gx, gy = cv2.Sobel(luma, cv2.CV_32F, 1, 0), cv2.Sobel(luma, cv2.CV_32F, 0, 1)
    return float(np.sqrt(gx * gx + gy * gy).mean())


def strength_features(rgb: np.ndarray) -> np.ndarray:
    """What the strength predictor sees: ``damage_features`` then ``tone_features`` (38 numbers)."""
    return np.concatenate([damage_features(rgb), tone_features(rgb)])


STRENGTH_STEP = 0.05  # predictions are rounded to this, so provenance shows a readable number


@dataclass(frozen=True)
class StrengthPredictor:
    """Ridge map from ``strength_features`` of the damaged photo to its best strength."""

    model: RidgeModel

    @classmethod
    def fit(cls, features: np.ndarray, best: np.ndarray, ridge: float = 10.0) -> "StrengthPredictor":
        return cls(RidgeModel.fit(features, np.asarray(best, np.float64)[:, None], ridge))

    def predict(self, rgb: np.ndarray) -> float:
        return self.from_features(strength_features(rgb))

    def from_features(self, features: np.ndarray) -> float:
        """The strength for ``strength_features`` already computed: in [0, 1], on the 0.05 grid."""
        value = float(self.model.predict(features)[0])
        return round(round(min(max(value, 0.0), 1.0) / STRENGTH_STEP) * STRENGTH_STEP, 2)

    def to_json(self) -> dict:
        return {"features": "engine.strength.strength_features", **self.model.to_json()}

    @classmethod
    def from_json(cls, data: dict) -> "StrengthPredictor":
        return cls(RidgeModel.from_json(data, features=DAMAGE_FEATURES + 30, targets=1))
