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
training photos. It is used when the user leaves the strength to the weights."""

from __future__ import annotations

import numpy as np


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
