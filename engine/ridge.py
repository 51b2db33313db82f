"""A ridge regression small enough to live in a model card (a few hundred numbers of JSON).

Why: some choices that the lite networks cannot make for themselves (the clean photo's global
tone, how much of the restoration a photo needs) are predicted from robust statistics of the
damaged photo. They are fitted at export on training photos with synthetic damage
(``engine.training``) and applied at restore time, with nothing but NumPy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


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
