"""Real-world damage shapes for training: overlays whose alpha is the damage, and outlines of real
dust, dirt and hair drawn on film scans (``shared/data/damage_overlays``, FilmDamageSimulator, MIT).

They are training data and never ship with the app, so everything here is optional: without a
library the realistic damage (``engine.degradation.realistic``) falls back to its procedural shapes.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

# Overlay classes, grouped by how they are composited (light specks vs fibres vs soft stains).
SPECK_CLASSES = ("dirt", "dots", "spots", "sprinkles", "smut")
FIBRE_CLASSES = ("hair", "hair-short", "lint")
SCRATCH_CLASSES = ("scratches",)
STAIN_CLASSES = ("stain",)
OVERLAY_SIDE = 400  # every overlay is 400x400
SCAN_LONG_SIDE = 5000  # the outlined film scans are about 5000 x 3400 px
ENV_VAR = "HEIRLOOM_DAMAGE_OVERLAYS"


def default_folder() -> Path | None:
    """``$HEIRLOOM_DAMAGE_OVERLAYS``, else ``shared/data/damage_overlays`` beside the repository."""
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env)
    guess = Path(__file__).resolve().parents[3] / "shared" / "data" / "damage_overlays"
    return guess if guess.is_dir() else None


@lru_cache(maxsize=768)
def _read_alpha(path: str) -> np.ndarray:
    """Alpha channel of one overlay, uint8 HxW (cached: a training run reuses them)."""
    img = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if img is None or img.ndim != 3 or img.shape[2] != 4:
        raise ValueError(f"{path}: not an RGBA overlay")
    return np.ascontiguousarray(img[..., 3])


@dataclass
class OverlayLibrary:
    """Paths of the overlays per class and the outlines of real artefacts (centred polygons)."""

    overlays: dict[str, list[str]]
    outlines: list[tuple[str, np.ndarray]] = field(default_factory=list)  # (label, Nx2 float32)

    @classmethod
    def from_folder(cls, folder: Path) -> "OverlayLibrary":
        folder = Path(folder)
        synthetic = folder / "synthetic"
        overlays = {d.name: sorted(str(p) for p in d.glob("*.png")) for d in sorted(synthetic.iterdir()) if d.is_dir()} \
            if synthetic.is_dir() else {}
        overlays = {k: v for k, v in overlays.items() if v}
        outlines: list[tuple[str, np.ndarray]] = []
        for path in sorted((folder / "scans").glob("*.json")):
            for entry in json.loads(path.read_text()).values():
                pts = np.array([(p["x"], p["y"]) for p in entry.get("points", [])], np.float32)
                if len(pts) >= 3:
                    outlines.append((entry.get("label", {}).get("name", "Dust"), pts - pts.mean(axis=0)))
        if not overlays and not outlines:
            raise ValueError(f"no damage overlays or outlines in {folder}")
        return cls(overlays, outlines)

    @classmethod
    def default(cls) -> "OverlayLibrary | None":
        folder = default_folder()
        return _cached_library(str(folder)) if folder is not None else None

    def classes(self, wanted: tuple[str, ...]) -> list[str]:
        return [c for c in wanted if c in self.overlays]

    def alpha(self, rng: np.random.Generator, classes: tuple[str, ...], h: int, w: int,
              scale: float) -> np.ndarray | None:
        """One overlay of a random class in ``classes``: flipped, rotated by a multiple of 90 degrees,
        scaled by ``scale`` and placed once at a random offset (cropped when larger than HxW; never
        tiled, which would repeat the same shapes in a visible grid); float32 coverage in [0, 1]."""
        names = self.classes(classes)
        if not names:
            return None
        paths = self.overlays[names[int(rng.integers(len(names)))]]
        alpha = _read_alpha(paths[int(rng.integers(len(paths)))])
        alpha = np.rot90(alpha, int(rng.integers(4)))
        if rng.random() < 0.5:
            alpha = alpha[:, ::-1]
        side = max(8, int(round(OVERLAY_SIDE * scale)))
        alpha = cv2.resize(np.ascontiguousarray(alpha), (side, side), interpolation=cv2.INTER_AREA if side < OVERLAY_SIDE
                           else cv2.INTER_LINEAR)
        canvas = np.zeros((h + 2 * side, w + 2 * side), np.uint8)
        y, x = int(rng.integers(0, h + side)), int(rng.integers(0, w + side))
        canvas[y:y + side, x:x + side] = alpha
        return canvas[side:side + h, side:side + w].astype(np.float32) / 255.0

    def stamp_outlines(self, rng: np.random.Generator, h: int, w: int, count: int, scale: float) -> np.ndarray:
        """Rasterise ``count`` real dust / dirt / hair outlines at random places, scaled from the
        5000 px film scans by ``scale``; float32 HxW in {0, 1}."""
        alpha = np.zeros((h, w), np.float32)
        if not self.outlines:
            return alpha
        for _ in range(count):
            _, pts = self.outlines[int(rng.integers(len(self.outlines)))]
            angle = rng.uniform(0, 2 * np.pi)
            rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]], np.float32)
            placed = pts @ rot.T * scale + np.array([rng.uniform(0, w), rng.uniform(0, h)], np.float32)
            poly = np.round(placed).astype(np.int32)
            cv2.fillPoly(alpha, [poly], 1.0)
            cv2.polylines(alpha, [poly], True, 1.0, thickness=1)  # thin hairs survive the scaling
        return alpha


@lru_cache(maxsize=4)
def _cached_library(folder: str) -> OverlayLibrary | None:
    try:
        return OverlayLibrary.from_folder(Path(folder))
    except (OSError, ValueError):
        return None
