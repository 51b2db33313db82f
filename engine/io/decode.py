"""Reading photos for archives: an archive trusts a tool only if it never harms an original and keeps
what the scan carries.

Reading decodes the file's own bytes once (the same bytes are hashed for provenance), applies the EXIF
orientation, keeps 16-bit samples as uint16 (Pillow alone would drop 16-bit colour to 8 bits, so those
pixels come from OpenCV), keeps alpha apart so it can be re-attached untouched, and collects the ICC
profile, EXIF, DPI, XMP, text and (TIFF) descriptive/resolution tags (engine.io.metadata). Writing is
engine.io.encode; atomic files are engine.io.durable.

Pillow's decompression-bomb limit stays on; ``allow_huge`` lifts it for one read."""

from __future__ import annotations

import contextlib
import io
import struct
import threading
import warnings
from pathlib import Path
from typing import Any, Iterator, NamedTuple

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from engine.io.durable import sha256_bytes
from engine.io.metadata import (
    ORIENTATION,
    PNG_COLOUR_CHUNKS,
    TIFF_KEPT_TAGS,
    XMP_TAG,
    PhotoFile,
    as_bytes,
    dpi_pair,
    exif_from_tiff,
    exif_reset_orientation,
    orient,
    png_chunks,
    read_orientation,
    strip_exif_prefix,
    without_orientation,
    xmp_reset_orientation,
)
from engine.io.pixels import rgb8

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp"}


TIFF_SUFFIXES = {".tif", ".tiff"}


class ImageReadError(Exception):
    """A file could not be read as a photo or mask; the message says why."""


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
    arr = cv2.imdecode(np.frombuffer(without_orientation(data), np.uint8), cv2.IMREAD_UNCHANGED)
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
        orientation = read_orientation(img, notes)
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
        exif = exif_from_tiff(img, notes)
        tags = img.tag_v2
        tiff_tags = {tag: (tags.tagtype[tag], tags[tag]) for tag in TIFF_KEPT_TAGS if tag in tags}
    else:
        raw = img.info.get("exif")
        exif = exif_reset_orientation(strip_exif_prefix(raw)) if raw else None
    if img.format == "PNG":
        text = {k: str(v) for k, v in (getattr(img, "text", None) or {}).items() if k != "XML:com.adobe.xmp"}
        png_colour = [(t, body) for t, body in png_chunks(data) if t in PNG_COLOUR_CHUNKS]
    comment = img.info.get("comment")
    if comment:
        text.setdefault("Comment", comment.decode("utf-8", "replace") if isinstance(comment, bytes) else str(comment))
    xmp = as_bytes(img.info.get("xmp"))
    if xmp is None and XMP_TAG in tiff_tags:
        xmp = as_bytes(tiff_tags[XMP_TAG][1])
    if xmp is not None and orientation != 1:
        xmp = xmp_reset_orientation(xmp)
        if XMP_TAG in tiff_tags:
            tiff_tags[XMP_TAG] = (tiff_tags[XMP_TAG][0], xmp)
    return PhotoFile(path=path, format=img.format or "?", mode=mode, pixels=np.ascontiguousarray(pixels),
                     alpha=alpha, icc=icc, exif=exif or None, dpi=dpi_pair(img.info.get("dpi")), xmp=xmp, text=text,
                     tiff_tags=tiff_tags, png_colour=png_colour, pages=pages, orientation=orientation,
                     sha256=sha256 or sha256_bytes(data), warnings=notes)


def read_rgb(path: Path) -> np.ndarray:
    """HxWx3 uint8, EXIF orientation applied (for display: 16-bit photos are reduced to 8 bits)."""
    return rgb8(read_photo(Path(path)).pixels)


def read_mask(path: Path) -> np.ndarray:
    """HxW bool, True = damage (white in the PNG)."""
    img = _open(_read_bytes(Path(path))).img
    return np.asarray(ImageOps.exif_transpose(img).convert("L")) > 127


def list_images(folder: Path) -> list[Path]:
    """Image files directly inside ``folder``, sorted by name (hidden files skipped)."""
    return sorted(p for p in Path(folder).iterdir()
                  if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))
