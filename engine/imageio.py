"""Reading photos and masks, and writing results atomically (a crash never leaves half a file)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp"}


class ImageReadError(Exception):
    """A file could not be read as a photo or mask; the message says why."""


def _open(path: Path) -> Image.Image:
    if not path.exists():
        raise ImageReadError("file not found")
    if path.is_dir():
        raise ImageReadError("is a folder, not an image file")
    try:
        img = Image.open(path)
        img.load()
    except UnidentifiedImageError:
        raise ImageReadError("not an image file Pillow can read (unknown or unsupported format)") from None
    except Image.DecompressionBombError as exc:
        raise ImageReadError(f"image is too large to open safely ({exc})") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageReadError(f"damaged or truncated image ({exc})") from None
    return img


def read_rgb(path: Path) -> np.ndarray:
    """HxWx3 uint8, EXIF orientation applied."""
    img = ImageOps.exif_transpose(_open(Path(path)))
    return np.asarray(img.convert("RGB"))


def read_mask(path: Path) -> np.ndarray:
    """HxW bool, True = damage (white in the PNG)."""
    img = ImageOps.exif_transpose(_open(Path(path)))
    return np.asarray(img.convert("L")) > 127


def to_u8(image: np.ndarray) -> np.ndarray:
    """float image in [0, 1] -> uint8 with rounding."""
    return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def write_atomic(path: Path, data_writer) -> None:
    """Write via a temporary file in the target folder, fsync, then rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            data_writer(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_png(path: Path, image: np.ndarray) -> None:
    """uint8 HxW or HxWx3 array -> PNG, atomically."""
    pil = Image.fromarray(image)
    write_atomic(path, lambda fh: pil.save(fh, format="PNG"))


def list_images(folder: Path) -> list[Path]:
    """Image files directly inside ``folder``, sorted by name (hidden files skipped)."""
    return sorted(p for p in Path(folder).iterdir()
                  if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))
