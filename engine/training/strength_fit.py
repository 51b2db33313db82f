"""Choosing the restoration strength of exported weights (engine.core.strength), at export.

The exported weights restore training photos (never the benchmark's held-out slice) with fresh
synthetic damage in scratch mode at full strength. Two things go into the card:

* ``default_strength``: the strength on a 0.1 grid whose blend of restoration and damaged photo
  scores the best mean PSNR (with the whole curve for the record), for callers without a predictor;
* ``strength_predictor``: a ridge regression from ``engine.models.predictors.strength_features`` of each
  damaged photo to the strength (0.05 grid) that scored best on that photo.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from engine.core.metrics import psnr
from engine.core.pipeline import RestoreOptions, Restorer
from engine.degradation.degrade import degrade
from engine.models.checkpoints import ModelBank, SafetensorsSource
from engine.models.predictors import STRENGTH_STEP, StrengthPredictor, strength_features

GRID = tuple(round(s, 2) for s in np.arange(0.0, 1.0 + STRENGTH_STEP / 2, STRENGTH_STEP))  # the predictor's grid
SEED = 2_000_000  # damage seeds apart from the tone fit's and the benchmark's


@dataclass
class StrengthFit:
    default: float  # best fixed strength (0.1 grid)
    curve: dict[str, float]  # mean PSNR per fixed strength (0.1 grid)
    predictor: StrengthPredictor
    samples: int
    psnr: dict[str, float] = field(default_factory=dict)  # in-sample: best fixed / predicted / per-photo best

    def to_card(self) -> dict:
        return {"default_strength": self.default, "strength_fit_psnr": self.curve,
                "strength_predictor": self.predictor.to_json(),
                "strength_fit": {"samples": self.samples, **self.psnr}}


def fit_strength(weights: Path, photos: list[np.ndarray], rounds: int = 2, ridge: float = 10.0) -> StrengthFit:
    """Fit both strengths of the weights in ``weights`` on ``rounds`` damages of every photo."""
    restorer = Restorer(ModelBank(SafetensorsSource(weights), torch.device("cpu")))
    features, scores = [], []
    for r in range(rounds):
        for i, clean in enumerate(photos):
            damaged = degrade(clean, seed=SEED + r * 100_000 + i).degraded
            # correct_fading: the strength was fitted (and the shipped predictor exported) with the card's
            # own tone; keeping that makes re-exports comparable. Whether the photo-tone default wants
            # another fit is open (issue 17).
            result = restorer.restore(damaged, RestoreOptions(scratch=True, strength=1.0, faces=False,
                                                              correct_fading=True))
            holes = result.mask[..., None]
            scores.append([psnr(np.where(holes, result.image, s * result.image + (1 - s) * damaged), clean)
                           for s in GRID])
            features.append(strength_features(damaged))
    table = np.asarray(scores)  # (samples, grid)
    mean = table.mean(0)
    tenths = [k for k, s in enumerate(GRID) if round(s * 10) == s * 10]
    chosen = max(tenths, key=lambda k: mean[k])
    best = np.asarray(GRID)[table.argmax(1)]
    predictor = StrengthPredictor.fit(np.stack(features), best, ridge)
    predicted = [GRID.index(predictor.from_features(f)) for f in features]
    return StrengthFit(
        default=float(GRID[chosen]), curve={f"{GRID[k]:.1f}": round(float(mean[k]), 3) for k in tenths},
        predictor=predictor, samples=len(features),
        psnr={"fixed": round(float(mean[chosen]), 3),
              "predicted": round(float(np.mean([row[k] for row, k in zip(table, predicted)])), 3),
              "per_photo_best": round(float(table.max(1).mean()), 3)})
