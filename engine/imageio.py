"""Reading and writing photos for archives, in one place.

An archive trusts a tool only if it never harms an original and keeps what the scan carries, so:

* reading decodes the file's own bytes once (the same bytes are hashed for provenance), applies the
  EXIF orientation, keeps 16-bit samples as uint16 (Pillow alone would drop 16-bit colour to 8 bits,
  so those pixels come from OpenCV), keeps alpha apart so it can be re-attached untouched, and
  collects the ICC profile, EXIF, DPI, XMP, text and (TIFF) descriptive/resolution tags;
* writing encodes PNG and TIFF ourselves (any bit depth and channel layout, with every piece of
  metadata, byte-identical for identical pixels on every machine) and JPEG through Pillow;
* every file is written atomically: temporary file in the same folder, fsync, rename.

Pillow's decompression-bomb limit stays on; ``allow_huge`` lifts it for one read.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import os
import re
import secrets
import struct
import threading
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator, NamedTuple

import numpy as np
from PIL import Image, ImageOps, TiffImagePlugin, TiffTags, UnidentifiedImageError

from .durable import fsync_dir, sha256_bytes

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp"}
TIFF_SUFFIXES = {".tif", ".tiff"}
OUTPUT_FORMATS = ("png", "tiff", "jpeg")
TMP_SUFFIX = ".heirloom-tmp"

ORIENTATION = 0x0112
EXIF_IFD, GPS_IFD, INTEROP_IFD = 0x8769, 0x8825, 0xA005
ICC_TAG, XMP_TAG = 34675, 700
# IFD0 tags that describe the photo (not its pixel layout): carried from a TIFF to the restored TIFF.
TIFF_KEPT_TAGS = (269, 270, 271, 272, 282, 283, 285, 296, 305, 306, 315, 316, XMP_TAG, 33432, 33723)
# The subset that also belongs in an EXIF block when the output is PNG or JPEG.
EXIF_IFD0_TAGS = (269, 270, 271, 272, 282, 283, 296, 305, 306, 315, 316, 33432)
PNG_COLOUR_CHUNKS = (b"gAMA", b"cHRM", b"sRGB", b"cICP")
LUMA = (0.299, 0.587, 0.114)  # Rec. 601 (ITU-R 601-2): Pillow's "L" conversion, the official grey conversion


class ImageReadError(Exception):
    """A file could not be read as a photo or mask; the message says why."""


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


# ----------------------------------------------------------------------------------------- reading

_LIMIT_LOCK = threading.Lock()


@contextlib.contextmanager
def _pixel_limit(allow_huge: bool) -> Iterator[None]:
    """Lift Pillow's decompression-bomb limit for one read, only when asked."""
    if not allow_huge:
        yield
        return
    with _LIMIT_LOCK:
        saved = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def _read_bytes(path: Path) -> bytes:
    if not path.exists():
        raise ImageReadError("file not found")
    if path.is_dir():
        raise ImageReadError("is a folder, not an image file")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImageReadError(f"cannot read the file ({exc.strerror or exc})") from None
    if not data:
        raise ImageReadError("empty file (0 bytes)")
    return data


class _Opened(NamedTuple):
    img: Image.Image
    bits: int  # bits per sample in the file
    tiff_orientation: int | None  # taken out before load(), see _keep_tiff_as_stored
    notes: list[str]


def _open(data: bytes, allow_huge: bool = False) -> _Opened:
    """Open and fully decode with Pillow (a damaged file fails here, with a reason)."""
    notes: list[str] = []
    with warnings.catch_warnings(record=True) as caught, _pixel_limit(allow_huge):
        warnings.simplefilter("always", Image.DecompressionBombWarning)
        try:
            img = Image.open(io.BytesIO(data))
        except UnidentifiedImageError:
            raise ImageReadError("not an image file Heirloom can read (unknown or unsupported format, "
                                 "or a damaged header)") from None
        except Image.DecompressionBombError as exc:
            raise ImageReadError(f"too large to open safely: {exc} If you trust this file, run again with "
                                 "--allow-huge.") from None
        except (OSError, SyntaxError, ValueError, struct.error, EOFError) as exc:
            raise ImageReadError(f"damaged or truncated image ({exc})") from None
        bits = _bits_per_sample(img)  # before load(): load() clears the tile list
        tiff_orientation = _keep_tiff_as_stored(img) if img.format == "TIFF" else None
        try:
            img.load()
        except MemoryError:
            raise ImageReadError(f"not enough memory to decode {img.size[0]}x{img.size[1]} pixels") from None
        except (OSError, SyntaxError, ValueError, struct.error, EOFError, IndexError) as exc:
            raise ImageReadError(f"damaged or truncated image ({exc})") from None
    if img.size != img.im.size:  # Pillow announced a TIFF turned by 90 degrees that we kept as stored
        img._size = img.im.size
    for w in caught:
        if issubclass(w.category, Image.DecompressionBombWarning):
            notes.append(f"very large image ({img.size[0]}x{img.size[1]} pixels)")
    return _Opened(img, bits, tiff_orientation, notes)


def _keep_tiff_as_stored(img: Image.Image) -> int | None:
    """Recent Pillow turns a TIFF upright while loading it (not reliably for 16-bit grey); we orient every
    format ourselves, once, so take the orientation out of the EXIF view Pillow consults, and return it."""
    try:
        exif = img.getexif()
        value = exif.get(ORIENTATION)
        if ORIENTATION in exif:
            del exif[ORIENTATION]
    except Exception:  # damaged directory: the later EXIF read reports it
        return None
    return value


def _bits_per_sample(img: Image.Image) -> int:
    if img.mode.startswith("I;16"):
        return 16
    if img.format == "TIFF":
        bps = img.tag_v2.get(258, 8)
        values = bps if isinstance(bps, tuple) else (bps,)
        return int(max(values)) if values else 8
    for tile in getattr(img, "tile", None) or ():
        args = tile.args
        raw = args[0] if isinstance(args, tuple) and args else args
        if isinstance(raw, str) and ";16" in raw:
            return 16
    return 8


def _without_orientation(data: bytes) -> bytes:
    """The file's bytes with the orientation set to 1 (TIFF) or the EXIF chunk left out (PNG)."""
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return _exif_reset_orientation(data)
    if data.startswith(b"\x89PNG"):
        kept = [_png_chunk(t, body) for t, body in _png_chunks(data) if t != b"eXIf"]
        return data[:8] + b"".join(kept)
    return data


def _grey_source(img: Image.Image, data: bytes) -> bool:
    """Whether the file stores grey samples (Pillow shows 16-bit grey+alpha PNGs as RGBA)."""
    if img.format == "PNG" and len(data) > 25:
        return data[25] in (0, 4)  # IHDR colour type: grey, grey + alpha
    if img.format == "TIFF":
        return img.tag_v2.get(262) in (0, 1)
    return img.mode in ("L", "LA", "I;16", "I;16B", "I;16L", "I;16N")


def _decode_16bit_colour(data: bytes, grey: bool, size: tuple[int, int]) -> np.ndarray:
    """16-bit RGB(A) / grey+alpha through OpenCV (Pillow keeps only 8 bits of these).
    Returns HxWxC uint16 with C = 1 (grey), 2 (grey, alpha), 3 (RGB) or 4 (RGBA)."""
    import cv2

    # Decoders differ on whether they apply orientation (OpenCV 5 does for TIFF): hand over the bytes
    # with the orientation neutralised, so the pixels come back as stored and are turned once, by us.
    arr = cv2.imdecode(np.frombuffer(_without_orientation(data), np.uint8), cv2.IMREAD_UNCHANGED)
    if arr is None or arr.shape[1] != size[0] or arr.shape[0] != size[1]:
        raise ImageReadError("damaged 16-bit image (its pixels could not be decoded at full depth)")
    if arr.dtype != np.uint16:
        arr = arr.astype(np.uint16) * 257 if arr.dtype == np.uint8 else arr
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.shape[2] == 3:
        arr = arr[..., ::-1]
    elif arr.shape[2] == 4:
        arr = arr[..., [2, 1, 0, 3]]
    if grey and arr.shape[2] >= 3:  # grey decoded replicated into colour
        arr = arr[..., [0, 3]] if arr.shape[2] == 4 else arr[..., :1]
    return np.ascontiguousarray(arr)


def _all_grey(rgb: np.ndarray) -> bool:
    return bool((rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all())


def _cmyk_to_rgb(img: Image.Image, icc: bytes | None, notes: list[str]) -> tuple[Image.Image, bytes | None]:
    """CMYK -> sRGB through the file's own profile when it has one (then the output carries sRGB)."""
    if icc:
        try:
            from PIL import ImageCms

            srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
            rgb = ImageCms.profileToProfile(img, ImageCms.ImageCmsProfile(io.BytesIO(icc)), srgb, outputMode="RGB")
            notes.append("CMYK photo converted to RGB through its colour profile; the output is sRGB")
            return rgb, srgb.tobytes()
        except Exception as exc:  # ImageCms missing or a profile it cannot use: fall back, say so
            notes.append(f"CMYK colour profile could not be used ({exc}); converted without it")
    else:
        notes.append("CMYK photo converted to RGB without a colour profile (colours are approximate)")
    return img.convert("RGB"), None


def _pixels(img: Image.Image, bits: int, data: bytes, icc: bytes | None, notes: list[str]
            ) -> tuple[np.ndarray, np.ndarray | None, str, bytes | None]:
    """(pixels, alpha, mode description, icc) from an opened image, at the file's bit depth.
    A mode description ending in ";16" means the pixels were decoded from the file's bytes as stored
    (not through Pillow, so no orientation has been applied to them)."""
    mode = img.mode
    if bits == 16 and mode in ("RGB", "RGBA", "RGBX", "LA"):
        arr = _decode_16bit_colour(data, _grey_source(img, data), img.size)
        desc = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[arr.shape[2]] + ";16"
        colour = arr[..., 0] if arr.shape[2] <= 2 else arr[..., :3]
        alpha = arr[..., -1] if arr.shape[2] in (2, 4) else None
        return np.ascontiguousarray(colour), None if alpha is None else np.ascontiguousarray(alpha), desc, icc
    if bits > 8 and mode in ("RGB", "RGBA", "CMYK", "LA"):
        raise ImageReadError(f"{bits}-bit {mode} images are not supported")
    if mode.startswith("I;16"):
        return np.asarray(img).astype(np.uint16), None, mode, icc
    if mode == "I":
        arr = np.asarray(img)
        if arr.size and (arr.min() < 0 or arr.max() > 65535):
            raise ImageReadError("32-bit integer images are not supported")
        return arr.astype(np.uint16), None, mode, icc
    if mode == "F":
        raise ImageReadError("32-bit floating-point images are not supported")
    transparent = "transparency" in img.info
    if mode == "1":
        return np.asarray(img.convert("L")), None, mode, icc
    if mode == "L" and not transparent:
        return np.asarray(img), None, mode, icc
    if mode in ("L", "LA", "La"):
        la = np.asarray(img.convert("LA"))
        return np.ascontiguousarray(la[..., 0]), np.ascontiguousarray(la[..., 1]), mode, icc
    if mode == "CMYK":
        img, icc = _cmyk_to_rgb(img, icc, notes)
        return np.asarray(img), None, mode, icc
    if mode in ("P", "PA"):
        rgba = np.asarray(img.convert("RGBA" if (mode == "PA" or transparent) else "RGB"))
        rgb, alpha = (rgba[..., :3], rgba[..., 3]) if rgba.shape[2] == 4 else (rgba, None)
        if _all_grey(rgb):
            rgb = rgb[..., 0]
        return np.ascontiguousarray(rgb), None if alpha is None else np.ascontiguousarray(alpha), mode, icc
    if mode in ("RGBA", "RGBa") or (mode == "RGB" and transparent):
        rgba = np.asarray(img.convert("RGBA"))
        return np.ascontiguousarray(rgba[..., :3]), np.ascontiguousarray(rgba[..., 3]), mode, icc
    if mode not in ("RGB", "RGBX"):
        notes.append(f"{mode} photo converted to RGB")
    return np.asarray(img.convert("RGB")), None, mode, icc


def orient(arr: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation (1-8) to HxW[xC] pixels, as a viewer would show them."""
    ops: dict[int, Callable[[np.ndarray], np.ndarray]] = {
        2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
        5: lambda a: a.swapaxes(0, 1), 6: lambda a: np.rot90(a, -1),
        7: lambda a: a[::-1, ::-1].swapaxes(0, 1), 8: lambda a: np.rot90(a, 1),
    }
    op = ops.get(orientation)
    return np.ascontiguousarray(op(arr)) if op else arr


def _exif_reset_orientation(blob: bytes) -> bytes:
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


def _xmp_reset_orientation(xmp: bytes) -> bytes:
    """XMP can repeat the orientation (tiff:Orientation); once the pixels are upright it must say 1."""
    xmp = re.sub(rb'tiff:Orientation="\d"', b'tiff:Orientation="1"', xmp)
    return re.sub(rb"<tiff:Orientation>\d</tiff:Orientation>", b"<tiff:Orientation>1</tiff:Orientation>", xmp)


def _strip_exif_prefix(blob: bytes) -> bytes:
    return re.sub(b"^(Exif\x00\x00)+", b"", blob)


def _exif_with_subifds(exif: Image.Exif) -> tuple[dict[int, Any], dict[int, Any]]:
    """The EXIF and GPS sub-directories as dicts ready to be written (interop nested as a dict)."""
    exif_ifd = dict(exif.get_ifd(EXIF_IFD))
    if INTEROP_IFD in exif_ifd:
        interop = exif.get_ifd(INTEROP_IFD)
        if interop:
            exif_ifd[INTEROP_IFD] = dict(interop)
        else:
            del exif_ifd[INTEROP_IFD]
    return exif_ifd, dict(exif.get_ifd(GPS_IFD))


def _orientation(img: Image.Image, notes: list[str]) -> int:
    try:
        value = img.getexif().get(ORIENTATION, 1)
    except Exception as exc:  # a damaged EXIF block must not cost the photo
        notes.append(f"EXIF could not be read ({exc}); the photo is taken as upright")
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _exif_from_tiff(img: Image.Image, notes: list[str]) -> bytes | None:
    """A TIFF keeps EXIF as IFD0 tags plus an EXIF sub-directory: gather them into one EXIF block
    (None when the TIFF has nothing beyond its layout and resolution)."""
    try:
        return _gather_tiff_exif(img)
    except Exception as exc:  # damaged sub-directories: keep the photo, say what was lost
        notes.append(f"EXIF could not be read ({exc}); not kept")
        return None


def _gather_tiff_exif(img: Image.Image) -> bytes | None:
    src = img.getexif()
    exif_ifd, gps_ifd = _exif_with_subifds(src)
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
    return _strip_exif_prefix(out.tobytes())


def _png_chunks(data: bytes) -> Iterator[tuple[bytes, bytes]]:
    pos = 8
    while pos + 8 <= len(data):
        length, ctype = struct.unpack(">I4s", data[pos:pos + 8])
        yield ctype, data[pos + 8:pos + 8 + length]
        if ctype == b"IEND":
            return
        pos += 12 + length


def _dpi(value: Any) -> tuple[float, float] | None:
    """(x, y) dots per inch; values within 0.05 of a whole number are snapped to it, because a PNG
    stores dots per metre and 600 dpi comes back as 599.9988."""
    try:
        x, y = (float(v) for v in value)
    except (TypeError, ValueError):
        return None
    if not (x > 0 and y > 0):
        return None
    return tuple(float(round(v)) if abs(v - round(v)) < 0.05 else v for v in (x, y))  # type: ignore[return-value]


def _as_bytes(value: Any) -> bytes | None:
    if not value:
        return None
    return value.encode("utf-8") if isinstance(value, str) else bytes(value)


def read_photo(path: Path, allow_huge: bool = False, sha256: str | None = None) -> PhotoFile:
    """Decode a photo file for restoration, with its metadata; raises ImageReadError saying why not.
    ``sha256``: the file's digest when the caller has just computed it (the album queue hashes a photo
    before deciding whether to decode it at all), so the same bytes are not hashed twice."""
    path = Path(path)
    data = _read_bytes(path)
    img, bits, tiff_orientation, notes = _open(data, allow_huge)
    icc = img.info.get("icc_profile") or None
    pixels, alpha, mode, icc = _pixels(img, bits, data, icc, notes)
    if img.format == "TIFF":
        orientation = tiff_orientation if isinstance(tiff_orientation, int) and 1 <= tiff_orientation <= 8 else 1
    else:
        orientation = _orientation(img, notes)
    pixels = orient(pixels, orientation)
    alpha = orient(alpha, orientation) if alpha is not None else None
    pages = int(getattr(img, "n_frames", 1) or 1)
    if pages > 1:
        notes.append(f"the file holds {pages} pages/frames; only the first was restored")

    text: dict[str, str] = {}
    exif: bytes | None
    tiff_tags: dict[int, tuple[int, Any]] = {}
    png_colour: list[tuple[bytes, bytes]] = []
    if img.format == "TIFF":
        exif = _exif_from_tiff(img, notes)
        tags = img.tag_v2
        tiff_tags = {tag: (tags.tagtype[tag], tags[tag]) for tag in TIFF_KEPT_TAGS if tag in tags}
    else:
        raw = img.info.get("exif")
        exif = _exif_reset_orientation(_strip_exif_prefix(raw)) if raw else None
    if img.format == "PNG":
        text = {k: str(v) for k, v in (getattr(img, "text", None) or {}).items() if k != "XML:com.adobe.xmp"}
        png_colour = [(t, body) for t, body in _png_chunks(data) if t in PNG_COLOUR_CHUNKS]
    comment = img.info.get("comment")
    if comment:
        text.setdefault("Comment", comment.decode("utf-8", "replace") if isinstance(comment, bytes) else str(comment))
    xmp = _as_bytes(img.info.get("xmp"))
    if xmp is None and XMP_TAG in tiff_tags:
        xmp = _as_bytes(tiff_tags[XMP_TAG][1])
    if xmp is not None and orientation != 1:
        xmp = _xmp_reset_orientation(xmp)
        if XMP_TAG in tiff_tags:
            tiff_tags[XMP_TAG] = (tiff_tags[XMP_TAG][0], xmp)
    return PhotoFile(path=path, format=img.format or "?", mode=mode, pixels=np.ascontiguousarray(pixels),
                     alpha=alpha, icc=icc, exif=exif or None, dpi=_dpi(img.info.get("dpi")), xmp=xmp, text=text,
                     tiff_tags=tiff_tags, png_colour=png_colour, pages=pages, orientation=orientation,
                     sha256=sha256 or sha256_bytes(data), warnings=notes)


def read_rgb(path: Path) -> np.ndarray:
    """HxWx3 uint8, EXIF orientation applied (for display: 16-bit photos are reduced to 8 bits)."""
    return rgb8(read_photo(Path(path)).pixels)


def rgb8(pixels: np.ndarray) -> np.ndarray:
    """A decoded photo's pixels (HxW or HxWx3, uint8 or uint16) -> HxWx3 uint8 for display."""
    px = pixels
    if px.dtype == np.uint16:
        px = ((px.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    return np.repeat(px[..., None], 3, axis=2) if px.ndim == 2 else px


def read_mask(path: Path) -> np.ndarray:
    """HxW bool, True = damage (white in the PNG)."""
    img = _open(_read_bytes(Path(path))).img
    return np.asarray(ImageOps.exif_transpose(img).convert("L")) > 127


# ---------------------------------------------------------------------------------- pixels back

def to_u8(image: np.ndarray) -> np.ndarray:
    """float image in [0, 1] -> uint8 with rounding: floor(255 v + 0.5) in the image's own precision,
    as torchvision's ``save_image`` writes the official stage-1 PNG. The one rule for every 8-bit
    copy (saved photos, the view, the face stage's input), so they never disagree by a level."""
    return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def to_u16(image: np.ndarray) -> np.ndarray:
    """float image in [0, 1] -> uint16 with rounding."""
    return (np.clip(image, 0.0, 1.0) * 65535.0 + 0.5).astype(np.uint16)


def finish(photo: PhotoFile, restored: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """The restored HxWx3 float image at the photo's own depth and channels, alpha re-attached as read.
    Grayscale photos come back grayscale (luminance of the network's RGB)."""
    img = np.asarray(restored, dtype=np.float32)
    if photo.grayscale:
        img = img[..., 0] * LUMA[0] + img[..., 1] * LUMA[1] + img[..., 2] * LUMA[2]
    out = to_u16(img) if photo.bit_depth == 16 else to_u8(img)
    return out, photo.alpha


def output_suffix(source: Path, fmt: str) -> str:
    if fmt == "tiff":
        return source.suffix.lower() if source.suffix.lower() in TIFF_SUFFIXES else ".tif"
    return ".jpg" if fmt == "jpeg" else ".png"


def output_format(source: Path, requested: str = "auto") -> str:
    """The format a restored photo is written in: TIFF stays TIFF, everything else becomes PNG
    (lossless) unless a format is asked for."""
    if requested != "auto":
        return requested
    return "tiff" if source.suffix.lower() in TIFF_SUFFIXES else "png"


# ---------------------------------------------------------------------------------------- writing

def _stack(pixels: np.ndarray, alpha: np.ndarray | None) -> np.ndarray:
    arr = pixels if pixels.ndim == 3 else pixels[..., None]
    if alpha is not None:
        arr = np.concatenate([arr, alpha.astype(arr.dtype)[..., None]], axis=2)
    if arr.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"cannot write {arr.dtype} pixels; expected uint8 or uint16")
    return np.ascontiguousarray(arr)


def _png_chunk(ctype: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + ctype + body + struct.pack(">I", zlib.crc32(ctype + body) & 0xFFFFFFFF)


def _png_filtered_rows(rows: np.ndarray, bpp: int) -> Iterator[bytes]:
    """Scanlines with the PNG filter that minimises the sum of absolute differences, per row."""
    height, width = rows.shape
    step = max(1, (4 << 20) // max(width, 1))
    prev = np.zeros(width, np.int16)
    for start in range(0, height, step):
        x = rows[start:start + step].astype(np.int16)
        b = np.vstack([prev[None], x[:-1]])
        a = np.zeros_like(x)
        c = np.zeros_like(x)
        a[:, bpp:] = x[:, :-bpp]
        c[:, bpp:] = b[:, :-bpp]
        p = a + b - c
        pa, pb, pc = np.abs(p - a), np.abs(p - b), np.abs(p - c)
        paeth = np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))
        cand = (np.stack([x, x - a, x - b, x - ((a + b) >> 1), x - paeth]) & 0xFF).astype(np.uint8)
        cost = np.abs(cand.view(np.int8).astype(np.int32)).sum(axis=2)
        choice = cost.argmin(axis=0)
        chosen = cand[choice, np.arange(x.shape[0])]
        yield np.hstack([choice[:, None].astype(np.uint8), chosen]).tobytes()
        prev = x[-1]


def _png_text_chunk(key: str, value: str) -> bytes:
    keyword = key.encode("latin-1", "replace")[:79] or b"Comment"
    try:
        return _png_chunk(b"tEXt", keyword + b"\0" + value.encode("latin-1"))
    except UnicodeEncodeError:
        return _png_chunk(b"iTXt", keyword + b"\0\0\0\0\0" + value.encode("utf-8"))


def encode_png(pixels: np.ndarray, alpha: np.ndarray | None = None, meta: PhotoFile | None = None) -> bytes:
    """PNG of grey / grey+alpha / RGB / RGBA at 8 or 16 bits, with the photo's ICC profile (or its
    sRGB/gamma chunks), DPI, EXIF, XMP and text."""
    arr = _stack(pixels, alpha)
    height, width, channels = arr.shape
    depth = arr.dtype.itemsize * 8
    colour_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    out = [b"\x89PNG\r\n\x1a\n",
           _png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, colour_type, 0, 0, 0))]
    if meta is not None:
        if meta.icc:
            out.append(_png_chunk(b"iCCP", b"ICC Profile\0\0" + zlib.compress(meta.icc)))
        out += [_png_chunk(t, body) for t, body in meta.png_colour if not (meta.icc and t == b"sRGB")]
        if meta.dpi:
            ppm = [max(1, round(d / 0.0254)) for d in meta.dpi]
            out.append(_png_chunk(b"pHYs", struct.pack(">IIB", ppm[0], ppm[1], 1)))
        if meta.exif:
            out.append(_png_chunk(b"eXIf", meta.exif))
        if meta.xmp:
            out.append(_png_chunk(b"iTXt", b"XML:com.adobe.xmp\0\0\0\0\0" + meta.xmp))
        out += [_png_text_chunk(k, v) for k, v in meta.text.items()]
    rows = (arr.astype(">u2").view(np.uint8) if depth == 16 else arr).reshape(height, -1)
    comp = zlib.compressobj(6)
    idat = b"".join(comp.compress(block) for block in _png_filtered_rows(rows, channels * depth // 8))
    idat += comp.flush()
    out += [_png_chunk(b"IDAT", idat[i:i + (1 << 20)]) for i in range(0, max(len(idat), 1), 1 << 20)]
    out.append(_png_chunk(b"IEND", b""))
    return b"".join(out)


def _rational(value: float) -> TiffImagePlugin.IFDRational:
    return TiffImagePlugin.IFDRational(round(value * 10000), 10000)


def encode_tiff(pixels: np.ndarray, alpha: np.ndarray | None = None, meta: PhotoFile | None = None,
                notes: list[str] | None = None) -> bytes:
    """Baseline TIFF (deflate + horizontal predictor) at 8 or 16 bits per sample, grey or RGB, with
    unassociated alpha, the source TIFF's descriptive and resolution tags (or DPI), ICC profile, XMP
    and EXIF/GPS sub-directories."""
    arr = _stack(pixels, alpha)
    height, width, channels = arr.shape
    bits = arr.dtype.itemsize * 8
    diff = arr.copy()
    diff[:, 1:] -= arr[:, :-1]  # TIFF predictor 2, wrapping like the unsigned samples do
    rows = diff.astype("<u2" if bits == 16 else np.uint8).reshape(height, -1).view(np.uint8)
    per_strip = min(height, max(1, (1 << 20) // max(rows.shape[1], 1)))
    strips = [zlib.compress(rows[y:y + per_strip].tobytes(), 6) for y in range(0, height, per_strip)]
    offsets, at = [], 0
    for s in strips:
        offsets.append(at)
        at += len(s)

    grey = channels - (alpha is not None) == 1
    layout: list[tuple[int, int, Any]] = [
        (256, TiffTags.LONG, width), (257, TiffTags.LONG, height), (258, TiffTags.SHORT, (bits,) * channels),
        (259, TiffTags.SHORT, 8),  # Adobe deflate
        (262, TiffTags.SHORT, 1 if grey else 2),
        (273, TiffTags.LONG, tuple(offsets)),  # relative: tobytes() shifts them past the directory
        (277, TiffTags.SHORT, channels), (278, TiffTags.LONG, per_strip),
        (279, TiffTags.LONG, tuple(len(s) for s in strips)), (284, TiffTags.SHORT, 1),
        (317, TiffTags.SHORT, 2),  # horizontal predictor
        (339, TiffTags.SHORT, (1,) * channels)]
    if alpha is not None:
        layout.append((338, TiffTags.SHORT, (2,)))  # unassociated alpha
    try:
        directory = _tiff_directory(layout, _tiff_metadata(meta) if meta is not None else [])
    except Exception as exc:  # a source tag Pillow cannot serialise: keep the pixels, say what was lost
        if notes is not None:
            notes.append(f"TIFF metadata could not be written back ({exc}); written without it")
        directory = _tiff_directory(layout, [])
    return b"II*\x00" + struct.pack("<I", 8) + directory + b"".join(strips)


def _tiff_metadata(meta: PhotoFile) -> list[tuple[int, int | None, Any]]:
    """(tag, type or None to let Pillow choose, value) for everything but the pixel layout."""
    tags: list[tuple[int, int | None, Any]] = []
    exif = Image.Exif()
    if meta.exif:
        exif.load(meta.exif)
    if meta.tiff_tags:
        tags += [(tag, typ, value) for tag, (typ, value) in meta.tiff_tags.items()]
    else:
        tags += [(tag, None, exif[tag]) for tag in EXIF_IFD0_TAGS if tag in exif and tag not in (282, 283, 296)]
    present = {t for t, _, _ in tags}
    if 282 not in present and meta.dpi:
        tags += [(282, TiffTags.RATIONAL, _rational(meta.dpi[0])), (283, TiffTags.RATIONAL, _rational(meta.dpi[1])),
                 (296, TiffTags.SHORT, 2)]
    if meta.icc:
        tags.append((ICC_TAG, TiffTags.UNDEFINED, meta.icc))
    if meta.xmp and XMP_TAG not in present:
        tags.append((XMP_TAG, TiffTags.BYTE, meta.xmp))
    if meta.exif:
        exif_ifd, gps_ifd = _exif_with_subifds(exif)
        if exif_ifd:
            tags.append((EXIF_IFD, TiffTags.LONG, exif_ifd))
        if gps_ifd:
            tags.append((GPS_IFD, TiffTags.LONG, gps_ifd))
    return tags


def _tiff_directory(layout: list[tuple[int, int, Any]], extra: list[tuple[int, int | None, Any]]) -> bytes:
    """IFD0 (with any EXIF/GPS sub-directories) serialised for a file whose directory starts at 8;
    Pillow's serialiser places the strips right after it."""
    ifd = TiffImagePlugin.ImageFileDirectory_v2(prefix=b"II")
    for tag, typ, value in [*extra, *layout]:
        ifd[tag] = value
        if typ is not None:
            ifd.tagtype[tag] = typ
    return ifd.tobytes(8)


def encode_jpeg(pixels: np.ndarray, meta: PhotoFile | None, quality: int, notes: list[str]) -> bytes:
    """8-bit JPEG (4:4:4) with the photo's ICC profile, EXIF, DPI, XMP and comment."""
    if pixels.dtype == np.uint16:
        notes.append("JPEG holds 8 bits per sample: the 16-bit result was reduced to 8 bits")
        pixels = ((pixels.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    kwargs: dict[str, Any] = {"quality": int(quality), "subsampling": 0}
    optional: dict[str, Any] = {}
    if meta is not None:
        if meta.alpha is not None:
            notes.append("JPEG cannot hold transparency: the alpha channel was not written")
        optional = {"icc_profile": meta.icc, "exif": b"Exif\x00\x00" + meta.exif if meta.exif else None,
                    "dpi": tuple(round(d) for d in meta.dpi) if meta.dpi else None, "xmp": meta.xmp,
                    "comment": meta.text["Comment"].encode("utf-8") if "Comment" in meta.text else None}
        optional = {k: v for k, v in optional.items() if v}
    image = Image.fromarray(pixels)
    while True:
        buf = io.BytesIO()
        try:
            image.save(buf, format="JPEG", **kwargs, **optional)
            return buf.getvalue()
        except ValueError as exc:  # e.g. EXIF or XMP above a JPEG segment's 64 KB: drop the largest, say so
            if not optional:
                raise
            largest = max(optional, key=lambda k: len(optional[k]) if isinstance(optional[k], bytes) else 0)
            notes.append(f"{largest} not written: {exc}")
            del optional[largest]


def _icc_fits(icc: bytes, grey: bool) -> bool:
    """An ICC profile names its colour space at bytes 16-20; writers must not pair RGB with grey."""
    space = icc[16:20]
    return space not in (b"RGB ", b"GRAY") or space == (b"GRAY" if grey else b"RGB ")


def encode(meta: PhotoFile, pixels: np.ndarray, alpha: np.ndarray | None, fmt: str, quality: int = 95,
           notes: list[str] | None = None) -> bytes:
    """Restored pixels -> file bytes in ``fmt`` (png, tiff or jpeg) with ``meta``'s metadata."""
    notes = notes if notes is not None else []
    if meta.icc and not _icc_fits(meta.icc, pixels.ndim == 2):
        notes.append("the colour profile does not describe this photo's channels (grey vs colour); not written")
        meta = dataclasses.replace(meta, icc=None)
    if fmt == "png":
        return encode_png(pixels, alpha, meta)
    if fmt == "tiff":
        return encode_tiff(pixels, alpha, meta, notes)
    if fmt == "jpeg":
        return encode_jpeg(pixels, meta, quality, notes)
    raise ValueError(f"unknown output format {fmt!r}; use one of {', '.join(OUTPUT_FORMATS)}")


# --------------------------------------------------------------------------------- atomic files

def _temp_prefix(path: Path) -> str:
    """Temporary files are named after their target, so a later run can find and remove its own."""
    digest = hashlib.sha1(path.name.encode("utf-8", "surrogateescape")).hexdigest()[:8]
    return f".{path.name[:40]}.{digest}."


def _create_temp(path: Path) -> tuple[Path, int]:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        tmp = path.parent / f"{_temp_prefix(path)}{secrets.token_hex(4)}{TMP_SUFFIX}"
        try:
            return tmp, os.open(tmp, flags, 0o666)  # 0o666 & ~umask, like any new file
        except FileExistsError:
            continue
    raise OSError(f"could not create a temporary file next to {path}")


def write_atomic(path: Path, data_writer: Callable[[BinaryIO], None]) -> None:
    """Write via a temporary file in the target folder, fsync, then rename over ``path``: a crash or a
    full disk leaves either the old file or the complete new one, never half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp, fd = _create_temp(path)
    try:
        with os.fdopen(fd, "wb") as fh:
            data_writer(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_dir(path.parent)


def _write_data(fh: BinaryIO, data: bytes) -> None:
    view = memoryview(data)
    for start in range(0, len(view), 1 << 20):
        fh.write(view[start:start + (1 << 20)])


def write_bytes_atomic(path: Path, data: bytes) -> None:
    write_atomic(path, lambda fh: _write_data(fh, data))


def stale_temps(folder: Path, targets: set[str]) -> list[Path]:
    """Temporary files a killed run left in ``folder`` for the file names in ``targets`` (ours only:
    matched by name, so another job's files in the same folder are left alone). One folder scan."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    prefixes = {_temp_prefix(folder / name) for name in targets}
    cut = 8 + len(TMP_SUFFIX)  # random part + suffix
    return [p for p in folder.iterdir() if p.name.endswith(TMP_SUFFIX) and p.name[:-cut] in prefixes]


def write_png(path: Path, image: np.ndarray) -> None:
    """uint8/uint16 HxW or HxWx3(4) array -> PNG, atomically."""
    write_bytes_atomic(path, encode_png(np.asarray(image)))


def list_images(folder: Path) -> list[Path]:
    """Image files directly inside ``folder``, sorted by name (hidden files skipped)."""
    return sorted(p for p in Path(folder).iterdir()
                  if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))
