"""Real damaged photos with reference masks of their damage, as detector training data.

The paper fine-tuned its detector on a few hundred real photos with labelled damage: synthetic
damage alone leaves a gap to real prints (issue #16 measured it). A labelled set is a folder with a
``manifest.json`` (each photo's ``stem``, ``path`` relative to a data root, and ``split``) and a
``<stem>_mask.png`` per photo (white = damage, the photo's own size), the layout of
``bench/real_masks``. Only the ``calib`` split may be trained on: the ``test`` photos are the
held-out benchmark and this loader refuses to return them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.io.decode import read_mask, read_rgb

TRAINABLE_SPLIT = "calib"
DAMAGE_CENTRED_SHARE = 0.5  # crops centred on a damaged pixel: damage is a few % of a real photo


@dataclass
class LabelledPool:
    """Real photos (uint8 RGB, own resolution) and their damage masks (bool, same size)."""

    photos: list[np.ndarray]
    masks: list[np.ndarray]
    stems: list[str]

    @classmethod
    def from_manifest(cls, folder: Path, data_root: Path, split: str = TRAINABLE_SPLIT) -> "LabelledPool":
        if split != TRAINABLE_SPLIT:
            raise ValueError(f"only the {TRAINABLE_SPLIT!r} split may be trained on; {split!r} photos are held out")
        folder = Path(folder)
        manifest = folder / "manifest.json"
        if not manifest.exists():
            raise FileNotFoundError(f"no manifest.json in {folder}; a labelled set needs one (see bench/real_masks)")
        entries = [e for e in json.loads(manifest.read_text(encoding="utf-8"))["photos"] if e["split"] == split]
        photos, masks, stems = [], [], []
        for entry in entries:
            photo_path = Path(data_root) / entry["path"]
            mask_path = folder / f"{entry['stem']}_mask.png"
            if not photo_path.exists() or not mask_path.exists():
                raise FileNotFoundError(f"labelled set {folder}: missing {photo_path if not photo_path.exists() else mask_path}")
            photo, mask = read_rgb(photo_path), read_mask(mask_path)
            if photo.shape[:2] != mask.shape[:2]:
                raise ValueError(f"{mask_path} is {mask.shape[1]}x{mask.shape[0]}, its photo "
                                 f"{photo.shape[1]}x{photo.shape[0]}")
            photos.append(photo)
            masks.append(mask > 0)
            stems.append(entry["stem"])
        if not photos:
            raise ValueError(f"labelled set {folder} has no {split!r} photos")
        return cls(photos, masks, stems)

    def crops(self, rng: np.random.Generator, count: int, size: int) -> tuple[np.ndarray, np.ndarray]:
        """(count, size, size, 3) float32 photos in [0, 1] and (count, size, size) bool masks:
        random photo, random flips; half the crops are centred near a damaged pixel. Photos smaller
        than ``size`` are mirror-padded (mask and photo alike)."""
        images = np.empty((count, size, size, 3), np.float32)
        targets = np.empty((count, size, size), bool)
        for i in range(count):
            index = int(rng.integers(len(self.photos)))
            photo, mask = self.photos[index], self.masks[index]
            h, w = mask.shape
            if h < size or w < size:
                pad = ((0, max(0, size - h)), (0, max(0, size - w)))
                photo = np.pad(photo, pad + ((0, 0),), mode="reflect")
                mask = np.pad(mask, pad, mode="reflect")
                h, w = mask.shape
            damaged = np.flatnonzero(mask)
            if damaged.size and rng.random() < DAMAGE_CENTRED_SHARE:
                cy, cx = divmod(int(damaged[int(rng.integers(damaged.size))]), w)
                y = int(np.clip(cy - rng.integers(size // 4, 3 * size // 4 + 1), 0, h - size))
                x = int(np.clip(cx - rng.integers(size // 4, 3 * size // 4 + 1), 0, w - size))
            else:
                y, x = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
            crop, target = photo[y:y + size, x:x + size], mask[y:y + size, x:x + size]
            if rng.random() < 0.5:
                crop, target = crop[:, ::-1], target[:, ::-1]
            if rng.random() < 0.5:
                crop, target = crop[::-1], target[::-1]
            images[i] = crop.astype(np.float32) / 255.0
            targets[i] = target
        return images, targets
