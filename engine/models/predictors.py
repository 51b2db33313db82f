"""Small learned predictors that ship inside a weights card: the output tone and the per-photo restoration strength (ridge regressions on photo statistics)."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

ANCHORED_TONES = ("match-input", "predicted")  # weights trained blind to global tone


FEATURE_SIDE = 256  # statistics are taken at this long side: the same for a thumbnail or a 40 MP scan


PERCENTILES = (1, 5, 25, 50, 75, 95, 99)


# A photo whose channels differ by at most this on average is grey. Not "never differ": a black and
# white scan saved as JPEG carries a little chroma noise (measured on the real scans in
# ../shared/data: grey ones 0.0005-0.0044, the faintest toned print 0.0078), and the predictor
# would otherwise give it a colour photo's channel balance, i.e. a cast it never had.
MONOCHROME_SPREAD = 0.005


def tone_features(rgb: np.ndarray) -> np.ndarray:
    """What the predictor sees of an HxWx3 [0, 1] photo: per-channel percentiles, mean and
    spread, and three colour measures (30 numbers)."""
    h, w = rgb.shape[:2]
    scale = FEATURE_SIDE / max(h, w)
    if scale < 1:
        rgb = cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    rgb = rgb.astype(np.float32)
    features: list[float] = []
    for c in range(3):
        channel = rgb[..., c]
        features += [*np.percentile(channel, PERCENTILES), float(channel.mean()), float(channel.std())]
    grey = rgb.mean(axis=2)
    features += [float((rgb.max(axis=2) - rgb.min(axis=2)).mean()), float((rgb[..., 0] - rgb[..., 2]).mean()),
                 float((rgb[..., 1] - grey).mean())]
    return np.asarray(features, np.float32)


def is_monochrome(rgb: np.ndarray) -> bool:
    """Mean channel spread over a regular sample of at most about a million pixels (the whole of a
    24 MP scan took 1.9 s per call; the sample's mean is the same to well within the threshold)."""
    step = max(1, int((rgb.shape[0] * rgb.shape[1] / 1e6) ** 0.5))
    sample = rgb[::step, ::step]
    return float((sample.max(axis=2) - sample.min(axis=2)).mean()) <= MONOCHROME_SPREAD


@dataclass(frozen=True)
class TonePredictor:
    """Ridge map from ``tone_features`` to the clean photo's per-channel mean and standard
    deviation (in [0, 1] units)."""

    model: RidgeModel

    @classmethod
    def fit(cls, features: np.ndarray, targets: np.ndarray, ridge: float = 1.0) -> "TonePredictor":
        """``targets`` (N, 6): means then stds; ``features`` (N, 30)."""
        return cls(RidgeModel.fit(features, targets, ridge))

    def predict(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Estimated clean per-channel (mean, std) of the damaged photo ``rgb``. A grey photo
        stays grey: colour it never had is not invented (the three channels get one tone)."""
        out = self.model.predict(tone_features(rgb))
        mean, std = np.clip(out[:3], 0.0, 1.0), np.clip(out[3:], 0.01, 0.5)
        if is_monochrome(rgb):
            mean, std = np.full(3, mean.mean(), np.float32), np.full(3, std.mean(), np.float32)
        return mean.astype(np.float32), std.astype(np.float32)

    def to_json(self) -> dict:
        return {"features": "engine.models.predictors.tone_features", **self.model.to_json()}

    @classmethod
    def from_json(cls, data: dict) -> "TonePredictor":
        return cls(RidgeModel.from_json(data, features=30, targets=6))

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
        return {"features": "engine.models.predictors.strength_features", **self.model.to_json()}

    @classmethod
    def from_json(cls, data: dict) -> "StrengthPredictor":
        return cls(RidgeModel.from_json(data, features=DAMAGE_FEATURES + 30, targets=1))







@dataclass(frozen=True)
class RidgeModel:
    """Linear map from standardised features to targets."""

    feature_mean: np.ndarray  # (F,)
    feature_std: np.ndarray  # (F,)
    weights: np.ndarray  # (F + 1, T): the last row is the bias

    @classmethod
    def fit(cls, features: np.ndarray, targets: np.ndarray, ridge: float = 1.0) -> "RidgeModel":
        """Least squares of ``targets`` (N, T) on ``features`` (N, F) with an L2 penalty ``ridge``
        on the standardised weights (not on the bias)."""
        features = np.asarray(features, np.float64)
        mean, std = features.mean(0), features.std(0) + 1e-6
        design = np.c_[(features - mean) / std, np.ones(len(features))]
        penalty = ridge * np.eye(design.shape[1])
        penalty[-1, -1] = 0.0
        weights = np.linalg.solve(design.T @ design + penalty, design.T @ np.asarray(targets, np.float64))
        return cls(mean.astype(np.float32), std.astype(np.float32), np.atleast_2d(weights.T).T.astype(np.float32))

    def predict(self, features: np.ndarray) -> np.ndarray:
        """(F,) features -> (T,) targets."""
        z = (np.asarray(features, np.float32) - self.feature_mean) / self.feature_std
        return np.r_[z, 1.0].astype(np.float32) @ self.weights

    def to_json(self) -> dict:
        return {"feature_mean": self.feature_mean.round(6).tolist(), "feature_std": self.feature_std.round(6).tolist(),
                "weights": self.weights.round(6).tolist()}

    @classmethod
    def from_json(cls, data: dict, features: int, targets: int) -> "RidgeModel":
        """Raises ValueError unless the shapes are (features,), (features,), (features + 1, targets)."""
        mean, std = np.asarray(data["feature_mean"], np.float32), np.asarray(data["feature_std"], np.float32)
        weights = np.asarray(data["weights"], np.float32)
        expected = ((features,), (features,), (features + 1, targets))
        if (mean.shape, std.shape, weights.shape) != expected:
            raise ValueError(f"shapes {mean.shape}, {std.shape}, {weights.shape}; expected "
                             + ", ".join(map(str, expected)))
        return cls(mean, std, weights)
