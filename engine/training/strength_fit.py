"""Choosing the default restoration strength of exported weights (engine.strength), at export.

The exported weights restore training photos (never the benchmark's held-out slice) with fresh
synthetic damage in scratch mode at full strength; the strength on a 0.1 grid whose blend of
restoration and damaged photo scores the best mean PSNR goes into the card as
``default_strength``, with the whole curve for the record.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..degrade import degrade
from ..metrics import psnr
from ..models.checkpoints import ModelBank, SafetensorsSource
from ..pipeline import RestoreOptions, Restorer
from ..strength import apply_strength

GRID = tuple(round(s, 1) for s in np.arange(0.0, 1.01, 0.1))
SEED = 2_000_000  # damage seeds apart from the tone fit's and the benchmark's


def fit_strength(weights: Path, photos: list[np.ndarray]) -> tuple[float, dict[str, float]]:
    """(best strength, mean PSNR per strength) of the weights in ``weights`` on ``photos``."""
    restorer = Restorer(ModelBank(SafetensorsSource(weights), torch.device("cpu")))
    scores = np.zeros(len(GRID))
    for i, clean in enumerate(photos):
        damaged = degrade(clean, seed=SEED + i).degraded
        result = restorer.restore(damaged, RestoreOptions(scratch=True, strength=1.0, faces=False))
        scores += [psnr(apply_strength(result.image.copy(), damaged, result.mask, s), clean) for s in GRID]
    scores /= max(len(photos), 1)
    return float(GRID[int(np.argmax(scores))]), {f"{s:.1f}": round(float(v), 3) for s, v in zip(GRID, scores)}
