"""Pixel value conventions shared by every reader, writer and network: 8/16-bit conversion with one rounding rule, and the one luma weighting."""

from __future__ import annotations

import numpy as np

LUMA = (0.299, 0.587, 0.114)  # Rec. 601 (ITU-R 601-2): Pillow's "L" conversion, the official grey conversion


def rgb8(pixels: np.ndarray) -> np.ndarray:
    """A decoded photo's pixels (HxW or HxWx3, uint8 or uint16) -> HxWx3 uint8 for display."""
    px = pixels
    if px.dtype == np.uint16:
        px = ((px.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    return np.repeat(px[..., None], 3, axis=2) if px.ndim == 2 else px


def to_u8(image: np.ndarray) -> np.ndarray:
    """float image in [0, 1] -> uint8 with rounding: floor(255 v + 0.5) in the image's own precision,
    as torchvision's ``save_image`` writes the official stage-1 PNG. The one rule for every 8-bit
    copy (saved photos, the view, the face stage's input), so they never disagree by a level."""
    return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def to_u16(image: np.ndarray) -> np.ndarray:
    """float image in [0, 1] -> uint16 with rounding."""
    return (np.clip(image, 0.0, 1.0) * 65535.0 + 0.5).astype(np.uint16)
