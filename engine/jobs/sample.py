"""A damaged sample photo to try Heirloom on, with nothing downloaded.

The clean picture is one of the photographs that ship inside scikit-image (a required dependency,
bundled by the installer): NASA's portrait of astronaut Eileen Collins (public domain). It is aged
with ``engine.degradation.degrade`` (fading, grain, paper texture, scratches, a crease, small holes) using a
fixed seed, so every user gets the same sample, and written once into the user data folder.
"""

from __future__ import annotations

import importlib.util
import io
from pathlib import Path

import numpy as np
from PIL import Image

from engine.degradation.degrade import degrade
from engine.io.durable import write_bytes_atomic
from engine.store.paths import user_data_dir

SOURCE_NAME = "astronaut.png"
SEED = 5  # grayscale, faded, grainy, scratched and creased: reads as an old print
SAMPLE_NAME = "sample-astronaut-damaged.png"


class SampleUnavailable(FileNotFoundError):
    """scikit-image's sample photographs are not installed."""


def skimage_data_dir() -> Path | None:
    """scikit-image's ``data/`` folder, located without importing the package (None if absent)."""
    try:
        spec = importlib.util.find_spec("skimage")
    except (ImportError, ValueError):
        return None
    for location in (spec.submodule_search_locations or []) if spec is not None else []:
        folder = Path(location) / "data"
        if (folder / SOURCE_NAME).is_file():
            return folder
    return None


def samples_dir() -> Path:
    return user_data_dir() / "samples"


def make_sample_photo(folder: Path | None = None, overwrite: bool = False) -> Path:
    """The damaged sample photo in ``folder`` (default: the user data folder's ``samples``), made
    on first use; returns its path. Raises SampleUnavailable without scikit-image's data."""
    folder = Path(folder) if folder is not None else samples_dir()
    path = folder / SAMPLE_NAME
    if path.is_file() and not overwrite:
        return path
    source = skimage_data_dir()
    if source is None:
        raise SampleUnavailable(f"the sample photograph {SOURCE_NAME} (part of scikit-image) is not installed")
    with Image.open(source / SOURCE_NAME) as img:
        clean = np.asarray(img.convert("RGB"), np.float32) / 255.0
    aged = degrade(clean, SEED).degraded
    buffer = io.BytesIO()
    Image.fromarray((np.clip(aged, 0, 1) * 255 + 0.5).astype(np.uint8)).save(buffer, "PNG")
    folder.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(path, buffer.getvalue())
    return path
