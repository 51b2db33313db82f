"""Writing restored photos: PNG and TIFF encoded here (any bit depth and channel layout, all metadata, byte-identical on every machine), JPEG through Pillow; output naming and format."""

from __future__ import annotations

import dataclasses
import io
import struct
import zlib
from pathlib import Path
from typing import Any, Iterator

import numpy as np
from PIL import Image, TiffImagePlugin, TiffTags

from engine.io.decode import TIFF_SUFFIXES
from engine.io.durable import write_bytes_atomic
from engine.io.metadata import (
    EXIF_IFD,
    EXIF_IFD0_TAGS,
    GPS_IFD,
    ICC_TAG,
    XMP_TAG,
    PhotoFile,
    exif_with_subifds,
    png_chunk,
)
from engine.io.pixels import LUMA, to_u8, to_u16

OUTPUT_FORMATS = ("png", "tiff", "jpeg")


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


def _stack(pixels: np.ndarray, alpha: np.ndarray | None) -> np.ndarray:
    arr = pixels if pixels.ndim == 3 else pixels[..., None]
    if alpha is not None:
        arr = np.concatenate([arr, alpha.astype(arr.dtype)[..., None]], axis=2)
    if arr.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"cannot write {arr.dtype} pixels; expected uint8 or uint16")
    return np.ascontiguousarray(arr)


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
        return png_chunk(b"tEXt", keyword + b"\0" + value.encode("latin-1"))
    except UnicodeEncodeError:
        return png_chunk(b"iTXt", keyword + b"\0\0\0\0\0" + value.encode("utf-8"))


def encode_png(pixels: np.ndarray, alpha: np.ndarray | None = None, meta: PhotoFile | None = None) -> bytes:
    """PNG of grey / grey+alpha / RGB / RGBA at 8 or 16 bits, with the photo's ICC profile (or its
    sRGB/gamma chunks), DPI, EXIF, XMP and text."""
    arr = _stack(pixels, alpha)
    height, width, channels = arr.shape
    depth = arr.dtype.itemsize * 8
    colour_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    out = [b"\x89PNG\r\n\x1a\n",
           png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, colour_type, 0, 0, 0))]
    if meta is not None:
        if meta.icc:
            out.append(png_chunk(b"iCCP", b"ICC Profile\0\0" + zlib.compress(meta.icc)))
        out += [png_chunk(t, body) for t, body in meta.png_colour if not (meta.icc and t == b"sRGB")]
        if meta.dpi:
            ppm = [max(1, round(d / 0.0254)) for d in meta.dpi]
            out.append(png_chunk(b"pHYs", struct.pack(">IIB", ppm[0], ppm[1], 1)))
        if meta.exif:
            out.append(png_chunk(b"eXIf", meta.exif))
        if meta.xmp:
            out.append(png_chunk(b"iTXt", b"XML:com.adobe.xmp\0\0\0\0\0" + meta.xmp))
        out += [_png_text_chunk(k, v) for k, v in meta.text.items()]
    rows = (arr.astype(">u2").view(np.uint8) if depth == 16 else arr).reshape(height, -1)
    comp = zlib.compressobj(6)
    idat = b"".join(comp.compress(block) for block in _png_filtered_rows(rows, channels * depth // 8))
    idat += comp.flush()
    out += [png_chunk(b"IDAT", idat[i:i + (1 << 20)]) for i in range(0, max(len(idat), 1), 1 << 20)]
    out.append(png_chunk(b"IEND", b""))
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
        exif_ifd, gps_ifd = exif_with_subifds(exif)
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


def write_png(path: Path, image: np.ndarray) -> None:
    """uint8/uint16 HxW or HxWx3(4) array -> PNG, atomically."""
    write_bytes_atomic(path, encode_png(np.asarray(image)))
