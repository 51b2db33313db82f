"""Masks the user brushed, kept per photo in the user data directory.

A brushed mask belongs to a photo's *content*, not its path: the store keys masks by the photo's
SHA-256, so a renamed or moved scan keeps its mask, and an edited scan (new content) does not
inherit a mask drawn for other pixels. The originals' folders are never written to (they may be
read-only archive shares). The restore view saves here, the album queue and the detector
fine-tuning read from here.

Each mask records who vouches for it (``origin``): ``brushed`` (a person painted or erased on it),
``accepted`` (a person looked at it and pressed *Accept mask*) or ``detected`` (the detector's output
nobody reviewed). The album queue restores with any of them; fine-tuning learns only from the
first two, so the detector's own false marks never become labels. Masks stored before origins were
recorded count as ``detected`` (nobody can tell any more who made them).

Layout::

    <root>/<sha256>.png    white = damage, same size as the photo
    <root>/index.json      sha256 -> {"path": last known photo path, "name": file name, "origin": ...}

Every method takes the photo as a path (hashed here) or as the ``PhotoFile`` it was decoded into,
whose digest is already known: the Restore view and the album queue pass the ``PhotoFile``, so a
big scan is never hashed again at each brush pause (on the GUI thread) or per queue item.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from engine.io.decode import read_mask
from engine.io.durable import sha256_file, write_bytes_atomic
from engine.io.metadata import PhotoFile
from engine.store.paths import user_data_dir

BRUSHED, ACCEPTED, DETECTED = "brushed", "accepted", "detected"
ORIGINS = (BRUSHED, ACCEPTED, DETECTED)
REVIEWED = (BRUSHED, ACCEPTED)

Photo = str | Path | PhotoFile  # a photo file, or the PhotoFile it was read into (digest known)


def identify(photo: Photo) -> tuple[Path, str]:
    """(path, content sha256) of ``photo``: a ``PhotoFile`` brings its digest, a path is hashed."""
    if isinstance(photo, PhotoFile):
        return Path(photo.path), photo.sha256 or sha256_file(Path(photo.path))
    return Path(photo), sha256_file(Path(photo))


@dataclass(frozen=True)
class BrushedMask:
    photo: Path  # where the photo was last seen
    mask: Path
    origin: str = DETECTED  # brushed | accepted | detected

    @property
    def reviewed(self) -> bool:
        """A person painted or explicitly accepted it: fit to teach the detector."""
        return self.origin in REVIEWED


class MaskStore:
    """Load and save brushed masks for photos; thread-safe enough for one writer (atomic files)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    @classmethod
    def default(cls) -> "MaskStore":

        return cls(user_data_dir() / "masks")

    def _index_path(self) -> Path:
        return self.root / "index.json"

    def _index(self) -> dict[str, dict[str, str]]:
        try:
            data = json.loads(self._index_path().read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _mask_file(self, digest: str) -> Path:
        return self.root / f"{digest}.png"

    def mask_path(self, photo: Photo) -> Path:
        """Where the mask of ``photo`` is (or would be) stored."""
        return self._mask_file(identify(photo)[1])

    def save(self, photo: Photo, mask: np.ndarray, origin: str = BRUSHED) -> Path:
        """Store ``mask`` (HxW, true/nonzero = damage) for ``photo`` with who vouches for it
        (``origin``, see the module docstring); an empty mask deletes it."""
        if origin not in ORIGINS:
            raise ValueError(f"unknown mask origin {origin!r} (one of {', '.join(ORIGINS)})")
        photo, digest = identify(photo)
        target = self._mask_file(digest)
        index = self._index()
        binary = np.asarray(mask).astype(bool)
        self.root.mkdir(parents=True, exist_ok=True)
        if not binary.any():
            target.unlink(missing_ok=True)
            index.pop(digest, None)
        else:
            buffer = io.BytesIO()
            Image.fromarray(binary.astype(np.uint8) * 255, mode="L").save(buffer, format="PNG")
            write_bytes_atomic(target, buffer.getvalue())
            index[digest] = {"path": str(photo.resolve()), "name": photo.name, "origin": origin}
        write_bytes_atomic(self._index_path(), json.dumps(index, indent=1, sort_keys=True).encode("utf-8"))
        return target

    def load(self, photo: Photo, shape: tuple[int, int] | None = None) -> np.ndarray | None:
        """The mask brushed for ``photo`` (HxW bool), or None. A mask whose size no longer matches
        ``shape`` (the photo was cropped or rescaled outside Heirloom) is ignored."""
        path = self.mask_path(photo)
        if not path.is_file():
            return None
        mask = read_mask(path)
        if shape is not None and mask.shape != tuple(shape[:2]):
            return None
        return mask

    def origin(self, photo: Photo) -> str | None:
        """Who vouches for the stored mask of ``photo`` (None: no mask stored)."""
        digest = identify(photo)[1]
        if not self._mask_file(digest).is_file():
            return None
        origin = self._index().get(digest, {}).get("origin")
        return origin if origin in ORIGINS else DETECTED

    def find(self, photo: Photo) -> Path | None:
        path = self.mask_path(photo)
        return path if path.is_file() else None

    def entries(self, reviewed_only: bool = False) -> list[BrushedMask]:
        """Every stored mask whose photo still exists at its last known path; ``reviewed_only``
        keeps those a person painted or accepted (what fine-tuning may learn from)."""
        found = []
        for digest, info in sorted(self._index().items()):
            mask = self._mask_file(digest)
            photo = Path(info.get("path", ""))
            origin = info.get("origin") if info.get("origin") in ORIGINS else DETECTED
            if mask.is_file() and photo.is_file() and (origin in REVIEWED or not reviewed_only):
                found.append(BrushedMask(photo, mask, origin))
        return found

    def counts(self) -> dict[str, int]:
        """How many usable stored masks each origin has (brushed / accepted / detected)."""
        counts = dict.fromkeys(ORIGINS, 0)
        for entry in self.entries():
            counts[entry.origin] += 1
        return counts

    def export_folder(self, dest: Path) -> int:
        """Write the reviewed masks as ``<photo stem>.png`` into ``dest`` (the layout ``finetune
        detector --masks`` reads); returns how many were written."""
        dest.mkdir(parents=True, exist_ok=True)
        count = 0
        for entry in self.entries(reviewed_only=True):
            write_bytes_atomic(dest / f"{entry.photo.stem}.png", entry.mask.read_bytes())
            count += 1
        return count

