"""Put a refinement run into a complete weights folder (``train export-refine``).

The refinement trains behind the chain of one weights folder (``train refine --weights``), so it
ships into a copy of that folder: its other networks stay as they are, ``refine.safetensors`` (the
run's weight average) and the card change. The restoration strength is fitted again
(``engine.training.strength_fit``), because the strength blends the *refined* restoration with the
photo now, and a restoration that keeps detail wants more of itself than a soft one did.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from engine.training.config import CONFIGS
from engine.training.strength_fit import fit_strength
from engine.training.weights_copy import put_network, read_card, staged_copy, write_card

REFINE = "refine"


def ship_refine(run: Path, weights: Path, dest: Path, strength_photos: list[np.ndarray] | None = None) -> dict:
    """Write ``dest``: a copy of ``weights`` with the run's refinement (and, given photos, the
    strength fitted anew on them). Returns the new card; ``dest`` must not exist."""
    path = Path(run) / "checkpoint.pt"
    if not path.exists():
        raise FileNotFoundError(f"no refinement checkpoint at {path}; train it first (main.py train refine)")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state["stage"] != REFINE:
        raise ValueError(f"{run} is a {state['stage']} run, not a refinement run")
    nets = state["nets"]
    refine = dict(nets.get("R_ema", nets["R"]))
    card = read_card(weights)
    card.setdefault("networks", {})[REFINE] = {"width": CONFIGS[state["config"]].arch.refine_width}
    card.setdefault("steps", {})[REFINE] = int(state["step"])
    card["refine_run"] = {"config": state["config"], "steps": int(state["step"]),
                          "behind": card.get("name", str(weights))}
    with staged_copy(weights, dest, (REFINE,)) as staging:
        put_network(staging, card, REFINE, refine)
        if strength_photos:
            card.update(fit_strength(staging, strength_photos).to_card())
            write_card(staging, card)
    return card
