"""Fitting the tone predictor (engine.models.predictors.TonePredictor) at export, like the detector calibration.

Pairs are *training* photos (never the held-out slice the benchmark scores), each damaged several
times with ``engine.degradation.degrade``; the predictor learns the clean photo's per-channel mean and spread
from the damaged photo's statistics. Closed form (ridge regression): seconds, no extra stage.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from engine.degradation.degrade import degrade
from engine.models.predictors import TonePredictor, tone_features
from engine.training.data import list_photos, load_small, split_holdout

SEED = 1_000_000  # damage seeds far from the benchmark's (10 000 + index)


def tone_targets(clean: np.ndarray) -> np.ndarray:
    return np.concatenate([clean.mean(axis=(0, 1)), clean.std(axis=(0, 1))]).astype(np.float32)


def fit_tone_predictor(photos: list[np.ndarray], rounds: int = 3, ridge: float = 1.0) -> TonePredictor:
    """Fit on ``rounds`` synthetic damages of every clean photo (HxWx3 [0, 1])."""
    features, targets = [], []
    for r in range(rounds):
        for i, clean in enumerate(photos):
            damaged = degrade(clean, seed=SEED + r * 100_000 + i).degraded
            features.append(tone_features(damaged))
            targets.append(tone_targets(clean))
    return TonePredictor.fit(np.stack(features), np.stack(targets), ridge)


def training_photos(folders: list[Path], side: int = 384) -> list[np.ndarray]:
    """Every training (not held-out) photo of ``folders``, downscaled to ``side``."""
    paths = [p for folder in folders for p in split_holdout(list_photos(Path(folder)))[0]]
    photos = [load_small(p, side) for p in paths]
    return [p.astype(np.float32) / 255.0 for p in photos if p is not None]
