"""Training data: clean photos (domain Y), real old scans (domain R), synthetic old photos (X).

Photos are decoded once, downscaled to ``cache_side`` and kept in memory; each training step draws
its batch from a seed derived from (stage seed, step), so a resumed run sees exactly the batches
an uninterrupted run would have seen.
A fixed slice of the clean photos (every tenth by sorted name) is held out for evaluation and is
never trained on.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from engine.degradation.degrade import degrade
from engine.degradation.overlays import OverlayLibrary
from engine.io.decode import IMAGE_SUFFIXES

HOLDOUT_EVERY = 10


def list_photos(folder: Path) -> list[Path]:
    return sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def split_holdout(paths: list[Path]) -> tuple[list[Path], list[Path]]:
    """(train, held out): every HOLDOUT_EVERY-th photo by sorted name is held out."""
    train = [p for i, p in enumerate(paths) if i % HOLDOUT_EVERY != HOLDOUT_EVERY - 1]
    held = [p for i, p in enumerate(paths) if i % HOLDOUT_EVERY == HOLDOUT_EVERY - 1]
    return train, held


def load_small(path: Path, side: int) -> np.ndarray | None:
    """RGB uint8 with the long side at most ``side``; None for unreadable files."""
    try:
        with Image.open(path) as img:
            img = ImageOps.exif_transpose(img).convert("RGB")
            img.thumbnail((side, side), Image.Resampling.LANCZOS)
            return np.asarray(img)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):  # broken files are skipped
        return None


@dataclass
class PhotoPool:
    photos: list[np.ndarray]

    @classmethod
    def from_folders(cls, folders: list[Path], side: int, min_side: int, holdout: bool = True) -> "PhotoPool":
        photos = []
        for folder in folders:
            paths = list_photos(folder)
            if holdout:
                paths = split_holdout(paths)[0]
            for p in paths:
                img = load_small(p, side)
                if img is not None and min(img.shape[:2]) >= min_side:
                    photos.append(img)
        if not photos:
            raise ValueError(f"no usable photos (at least {min_side} px) in {', '.join(map(str, folders))}")
        return cls(photos)

    def crops(self, rng: np.random.Generator, count: int, size: int,
              around: list[tuple[int, float, float]] | None = None, around_share: float = 0.0) -> np.ndarray:
        """(count, size, size, 3) float32 in [0, 1]: random crops, random flips. With ``around``
        (photo index, x, y) points, a share ``around_share`` of the crops contains one of them
        (e.g. faces, so the detector sees eyes and mouths as the undamaged things they are)."""
        out = np.empty((count, size, size, 3), np.float32)
        for i in range(count):
            if around and rng.random() < around_share:
                index, px, py = around[int(rng.integers(len(around)))]
            else:
                index, px, py = int(rng.integers(len(self.photos))), None, None
            img = self.photos[index]
            h, w = img.shape[:2]
            if px is None:
                y, x = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
            else:
                y = int(np.clip(py - rng.integers(size // 4, 3 * size // 4 + 1), 0, h - size))
                x = int(np.clip(px - rng.integers(size // 4, 3 * size // 4 + 1), 0, w - size))
            crop = img[y:y + size, x:x + size]
            if rng.random() < 0.5:
                crop = crop[:, ::-1]
            out[i] = crop.astype(np.float32) / 255.0
        return out


def step_rng(seed: int, stage: str, step: int) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(stage.encode()), step])


def synthetic_batch(clean: np.ndarray, rng: np.random.Generator, structured: bool, realistic: float = 0.0,
                    overlays: OverlayLibrary | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Degrade each clean crop: returns (degraded (B,H,W,3), masks (B,H,W) bool). A share
    ``realistic`` of the crops gets the realistic damage (``engine.degradation.realistic``) instead of
    the classic one."""
    degraded, masks = [], []
    for img in clean:
        style = "realistic" if realistic > 0 and rng.random() < realistic else "classic"
        d = degrade(img, int(rng.integers(2**31)), structured_damage=structured and rng.random() < 0.8,
                    damage=style, overlays=overlays)
        degraded.append(d.degraded)
        masks.append(d.mask)
    return np.stack(degraded), np.stack(masks)
