"""What a scan carries besides pixels (orientation, ICC, EXIF, XMP, DPI, text, TIFF tags): read once, kept on the PhotoFile, written back by the encoders."""

from __future__ import annotations

import re
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
from PIL import Image

ORIENTATION = 0x0112


EXIF_IFD, GPS_IFD, INTEROP_IFD = 0x8769, 0x8825, 0xA005


ICC_TAG, XMP_TAG = 34675, 700


# IFD0 tags that describe the photo (not its pixel layout): carried from a TIFF to the restored TIFF.
TIFF_KEPT_TAGS = (269, 270, 271, 272, 282, 283, 285, 296, 305, 306, 315, 316, XMP_TAG, 33432, 33723)


# The subset that also belongs in an EXIF block when the output is PNG or JPEG.
EXIF_IFD0_TAGS = (269, 270, 271, 272, 282, 283, 296, 305, 306, 315, 316, 33432)


PNG_COLOUR_CHUNKS = (b"gAMA", b"cHRM", b"sRGB", b"cICP")


@dataclass
class PhotoFile:
    """A decoded photo with everything needed to write its restored version back faithfully.

    ``pixels`` is upright (EXIF orientation applied), HxW for grayscale or HxWx3 for colour, uint8 or
    uint16. ``alpha`` (same dtype) is kept apart and re-attached untouched. ``exif`` is a TIFF-structured
    EXIF block without the ``Exif\\0\\0`` prefix, its orientation reset to 1 because the pixels are upright.
    """

    path: Path
    format: str  # Pillow's name: PNG, JPEG, TIFF, BMP, WEBP, ...
    mode: str  # the file's layout as opened, e.g. "RGB", "I;16", "P", "CMYK", "RGB;16"
    pixels: np.ndarray
    alpha: np.ndarray | None = None
    icc: bytes | None = None
    exif: bytes | None = None
    dpi: tuple[float, float] | None = None
    xmp: bytes | None = None
    text: dict[str, str] = field(default_factory=dict)
    tiff_tags: dict[int, tuple[int, Any]] = field(default_factory=dict)  # tag -> (TIFF type, value)
    png_colour: list[tuple[bytes, bytes]] = field(default_factory=list)  # raw gAMA/cHRM/sRGB/cICP chunks
    pages: int = 1
    orientation: int = 1
    sha256: str = ""
    warnings: list[str] = field(default_factory=list)

    @property
    def bit_depth(self) -> int:
        return 16 if self.pixels.dtype == np.uint16 else 8

    @property
    def grayscale(self) -> bool:
        return self.pixels.ndim == 2

    @property
    def size(self) -> tuple[int, int]:
        return int(self.pixels.shape[1]), int(self.pixels.shape[0])

    def describe(self) -> dict[str, Any]:
        """What the provenance record says about the input."""
        return {"format": self.format, "mode": self.mode, "bit_depth": self.bit_depth,
                "width": self.size[0], "height": self.size[1], "grayscale": self.grayscale,
                "alpha": self.alpha is not None, "pages": self.pages, "exif_orientation": self.orientation,
                "icc_profile": bool(self.icc), "exif": bool(self.exif), "dpi": list(self.dpi) if self.dpi else None}


def without_orientation(data: bytes) -> bytes:
    """The file's bytes with the orientation set to 1 (TIFF) or the EXIF chunk left out (PNG)."""
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return exif_reset_orientation(data)
    if data.startswith(b"\x89PNG"):
        kept = [png_chunk(t, body) for t, body in png_chunks(data) if t != b"eXIf"]
        return data[:8] + b"".join(kept)
    return data


def orient(arr: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation (1-8) to HxW[xC] pixels, as a viewer would show them."""
    ops: dict[int, Callable[[np.ndarray], np.ndarray]] = {
        2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
        5: lambda a: a.swapaxes(0, 1), 6: lambda a: np.rot90(a, -1),
        7: lambda a: a[::-1, ::-1].swapaxes(0, 1), 8: lambda a: np.rot90(a, 1),
    }
    op = ops.get(orientation)
    return np.ascontiguousarray(op(arr)) if op else arr


def exif_reset_orientation(blob: bytes) -> bytes:
    """Set IFD0's orientation to 1 in place, leaving every other byte (maker notes too) alone."""
    try:
        endian = {b"II": "<", b"MM": ">"}[blob[:2]]
        (ifd,) = struct.unpack(endian + "I", blob[4:8])
        (count,) = struct.unpack(endian + "H", blob[ifd:ifd + 2])
        for i in range(count):
            at = ifd + 2 + 12 * i
            tag, typ, n = struct.unpack(endian + "HHI", blob[at:at + 8])
            if tag == ORIENTATION and typ == 3 and n == 1:
                out = bytearray(blob)
                out[at + 8:at + 10] = struct.pack(endian + "H", 1)
                return bytes(out)
    except (KeyError, struct.error):
        pass
    return blob


def xmp_reset_orientation(xmp: bytes) -> bytes:
    """XMP can repeat the orientation (tiff:Orientation); once the pixels are upright it must say 1."""
    xmp = re.sub(rb'tiff:Orientation="\d"', b'tiff:Orientation="1"', xmp)
    return re.sub(rb"<tiff:Orientation>\d</tiff:Orientation>", b"<tiff:Orientation>1</tiff:Orientation>", xmp)


def strip_exif_prefix(blob: bytes) -> bytes:
    return re.sub(b"^(Exif\x00\x00)+", b"", blob)


def exif_with_subifds(exif: Image.Exif) -> tuple[dict[int, Any], dict[int, Any]]:
    """The EXIF and GPS sub-directories as dicts ready to be written (interop nested as a dict)."""
    exif_ifd = dict(exif.get_ifd(EXIF_IFD))
    if INTEROP_IFD in exif_ifd:
        interop = exif.get_ifd(INTEROP_IFD)
        if interop:
            exif_ifd[INTEROP_IFD] = dict(interop)
        else:
            del exif_ifd[INTEROP_IFD]
    return exif_ifd, dict(exif.get_ifd(GPS_IFD))


def read_orientation(img: Image.Image, notes: list[str]) -> int:
    try:
        value = img.getexif().get(ORIENTATION, 1)
    except Exception as exc:  # a damaged EXIF block must not cost the photo
        notes.append(f"EXIF could not be read ({exc}); the photo is taken as upright")
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def exif_from_tiff(img: Image.Image, notes: list[str]) -> bytes | None:
    """A TIFF keeps EXIF as IFD0 tags plus an EXIF sub-directory: gather them into one EXIF block
    (None when the TIFF has nothing beyond its layout and resolution)."""
    try:
        return _gather_tiff_exif(img)
    except Exception as exc:  # damaged sub-directories: keep the photo, say what was lost
        notes.append(f"EXIF could not be read ({exc}); not kept")
        return None


def _gather_tiff_exif(img: Image.Image) -> bytes | None:
    src = img.getexif()
    exif_ifd, gps_ifd = exif_with_subifds(src)
    descriptive = [t for t in EXIF_IFD0_TAGS if t in src and t not in (282, 283, 296)]
    if not descriptive and not exif_ifd and not gps_ifd:
        return None
    out = Image.Exif()
    for tag in EXIF_IFD0_TAGS:
        if tag in src:
            out[tag] = src[tag]
    if exif_ifd:
        out[EXIF_IFD] = exif_ifd
    if gps_ifd:
        out[GPS_IFD] = gps_ifd
    return strip_exif_prefix(out.tobytes())


def png_chunks(data: bytes) -> Iterator[tuple[bytes, bytes]]:
    pos = 8
    while pos + 8 <= len(data):
        length, ctype = struct.unpack(">I4s", data[pos:pos + 8])
        yield ctype, data[pos + 8:pos + 8 + length]
        if ctype == b"IEND":
            return
        pos += 12 + length


def dpi_pair(value: Any) -> tuple[float, float] | None:
    """(x, y) dots per inch; values within 0.05 of a whole number are snapped to it, because a PNG
    stores dots per metre and 600 dpi comes back as 599.9988."""
    try:
        x, y = (float(v) for v in value)
    except (TypeError, ValueError):
        return None
    if not (x > 0 and y > 0):
        return None
    return tuple(float(round(v)) if abs(v - round(v)) < 0.05 else v for v in (x, y))  # type: ignore[return-value]


def as_bytes(value: Any) -> bytes | None:
    if not value:
        return None
    return value.encode("utf-8") if isinstance(value, str) else bytes(value)


def png_chunk(ctype: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + ctype + body + struct.pack(">I", zlib.crc32(ctype + body) & 0xFFFFFFFF)
