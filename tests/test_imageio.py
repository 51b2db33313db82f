"""Archival reading and writing: every layout we accept, metadata and colour kept, files written atomically."""

from __future__ import annotations

import errno
import io
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageCms, ImageOps

from engine.io import durable as io_durable
from engine.io import metadata as io_metadata
from engine.io.decode import ImageReadError, read_mask, read_photo, read_rgb
from engine.io.durable import stale_temps, write_bytes_atomic
from engine.io.encode import encode, encode_png, encode_tiff, finish

RNG = np.random.default_rng(7)
SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def grey_icc() -> bytes:
    """A minimal, valid ICC v2 grey display profile (gamma 2.2), built here: Pillow can only make RGB ones."""
    def s15(v: float) -> bytes:
        return struct.pack(">i", round(v * 65536))
    text = b"Grey gamma 2.2 (test)\0"
    tags = [(b"desc", b"desc" + b"\0" * 4 + struct.pack(">I", len(text)) + text + b"\0" * 78),
            (b"wtpt", b"XYZ " + b"\0" * 4 + s15(0.9642) + s15(1.0) + s15(0.8249)),
            (b"kTRC", b"curv" + b"\0" * 4 + struct.pack(">IH", 1, 0x0233) + b"\0\0"),
            (b"cprt", b"text" + b"\0" * 4 + b"No copyright, test data\0")]
    offset = 128 + 4 + 12 * len(tags)
    table, body = struct.pack(">I", len(tags)), b""
    for sig, data in tags:
        data += b"\0" * (-len(data) % 4)
        table += sig + struct.pack(">II", offset + len(body), len(data))
        body += data
    header = (struct.pack(">I", offset + len(body)) + b"\0" * 4 + struct.pack(">I", 0x02100000) + b"mntrGRAYXYZ "
              + b"\0" * 12 + b"acsp" + b"\0" * 28 + s15(0.9642) + s15(1.0) + s15(0.8249) + b"\0" * 48)
    return header + table + body


GREY_ICC = grey_icc()


def rgb8(h: int = 24, w: int = 32) -> np.ndarray:
    return RNG.integers(0, 256, (h, w, 3), dtype=np.uint8)


def u16(shape: tuple[int, ...]) -> np.ndarray:
    return RNG.integers(0, 65536, shape, dtype=np.int64).astype(np.uint16)


def exif_block(orientation: int = 1) -> Image.Exif:
    exif = Image.Exif()
    exif[271] = "ScanCo"
    exif[272] = "FilmScan 9000"
    exif[315] = "Family archive"
    if orientation != 1:
        exif[0x0112] = orientation
    exif[0x8769] = {0x9003: "1923:05:01 10:00:00", 0x9286: b"ASCII\x00\x00\x00Grandma at the lake"}
    exif[0x8825] = {1: "N", 2: (52.0, 31.0, 12.0)}
    return exif


def pil_tiff_view(data_or_path) -> dict:
    """What Pillow sees of a TIFF's metadata (used before/after in the round-trip tests)."""
    with Image.open(data_or_path if isinstance(data_or_path, (str, Path)) else io.BytesIO(data_or_path)) as im:
        tags = im.tag_v2
        exif = im.getexif()
        return {"mode": im.mode, "size": im.size, "bits": tags.get(258), "dpi": im.info.get("dpi"),
                "icc": im.info.get("icc_profile"), "make": tags.get(271), "model": tags.get(272),
                "artist": tags.get(315), "description": tags.get(270), "xmp": tags.get(700),
                "exif_ifd": dict(exif.get_ifd(0x8769)), "gps_ifd": dict(exif.get_ifd(0x8825)),
                "orientation": tags.get(274)}


# ------------------------------------------------------------------------------------ reading


def test_the_grey_profile_is_a_real_one():
    profile = ImageCms.ImageCmsProfile(io.BytesIO(GREY_ICC))
    assert profile.profile.xcolor_space.strip() == "GRAY"


def test_every_8_bit_layout_reads_at_its_own_channels(tmp_path):
    grey = RNG.integers(0, 256, (20, 28), dtype=np.uint8)
    alpha = RNG.integers(0, 256, (20, 28), dtype=np.uint8)
    rgb = rgb8(20, 28)
    cases = {
        "l.png": (Image.fromarray(grey), grey, None),
        "la.png": (Image.fromarray(np.dstack([grey, alpha]), "LA"), grey, alpha),
        "rgb.bmp": (Image.fromarray(rgb), rgb, None),
        "rgba.webp": (Image.fromarray(np.dstack([rgb, alpha]), "RGBA"), rgb, alpha),
        "rgba.tif": (Image.fromarray(np.dstack([rgb, alpha]), "RGBA"), rgb, alpha),
    }
    for name, (img, pixels, a) in cases.items():
        img.save(tmp_path / name, **({"lossless": True} if name.endswith(".webp") else {}))
        photo = read_photo(tmp_path / name)
        assert photo.bit_depth == 8 and photo.grayscale == (pixels.ndim == 2), name
        assert np.array_equal(photo.pixels, pixels), name
        assert (photo.alpha is None) == (a is None) and (a is None or np.array_equal(photo.alpha, a)), name


def test_palette_with_transparency_gives_rgb_plus_untouched_alpha(tmp_path):
    pal = Image.new("P", (16, 12))
    pal.putpalette([0, 0, 0, 200, 30, 30, 30, 200, 30] + [0] * (256 * 3 - 9))
    idx = RNG.integers(0, 3, (12, 16), dtype=np.uint8)
    pal.frombytes(idx.tobytes())
    pal.info["transparency"] = 0
    pal.save(tmp_path / "p.png", transparency=0)
    photo = read_photo(tmp_path / "p.png")
    assert photo.mode == "P" and photo.pixels.shape == (12, 16, 3)
    assert np.array_equal(photo.alpha, np.where(idx == 0, 0, 255))


def test_16_bit_png_and_tiff_keep_every_bit(tmp_path):
    rgb16, rgba16, grey16 = u16((18, 22, 3)), u16((18, 22, 4)), u16((18, 22))
    cv2.imwrite(str(tmp_path / "rgb16.png"), rgb16[..., ::-1])
    cv2.imwrite(str(tmp_path / "rgb16.tif"), rgb16[..., ::-1])
    cv2.imwrite(str(tmp_path / "rgba16.tif"), rgba16[..., [2, 1, 0, 3]])
    Image.fromarray(grey16).save(tmp_path / "grey16.tif")
    Image.fromarray(grey16).save(tmp_path / "grey16.png")
    for name, px, alpha in [("rgb16.png", rgb16, None), ("rgb16.tif", rgb16, None),
                            ("rgba16.tif", rgba16[..., :3], rgba16[..., 3]),
                            ("grey16.tif", grey16, None), ("grey16.png", grey16, None)]:
        photo = read_photo(tmp_path / name)
        assert photo.bit_depth == 16 and photo.pixels.dtype == np.uint16, name
        assert np.array_equal(photo.pixels, px), name
        assert (alpha is None and photo.alpha is None) or np.array_equal(photo.alpha, alpha), name


def test_16_bit_grey_with_alpha_png_stays_grey(tmp_path):
    grey, alpha = u16((10, 12)), u16((10, 12))
    (tmp_path / "la16.png").write_bytes(encode_png(grey, alpha))
    photo = read_photo(tmp_path / "la16.png")
    assert photo.mode == "LA;16" and photo.grayscale
    assert np.array_equal(photo.pixels, grey) and np.array_equal(photo.alpha, alpha)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_matches_pillow_and_is_reset(tmp_path, orientation):
    Image.fromarray(rgb8(7, 11)).save(tmp_path / "o.jpg", exif=exif_block(orientation), quality=95)
    with Image.open(tmp_path / "o.jpg") as im:
        expected = np.asarray(ImageOps.exif_transpose(im))
    photo = read_photo(tmp_path / "o.jpg")
    assert photo.orientation == orientation
    assert np.array_equal(photo.pixels, expected)
    exif = Image.Exif()
    exif.load(photo.exif)
    assert exif.get(0x0112, 1) == 1 and exif[271] == "ScanCo"


@pytest.mark.parametrize("orientation", [3, 6, 8])
@pytest.mark.parametrize("layout", ["rgb8-raw", "rgb8-lzw", "grey16", "rgb16", "png-rgb16"])
def test_orientation_is_applied_exactly_once(tmp_path, orientation, layout):
    """Decoders disagree on whether they turn a photo upright (recent Pillow does for TIFF, OpenCV 5
    does for TIFF at any flag); whatever they do, the photo must be turned once."""
    from PIL import TiffTags

    stored = u16((6, 10, 3)) if "rgb16" in layout else u16((6, 10)) if layout == "grey16" else rgb8(6, 10)
    path = tmp_path / ("o.png" if layout.startswith("png") else "o.tif")
    if layout == "rgb16":
        meta = io_metadata.PhotoFile(path, "TIFF", "RGB;16", stored, tiff_tags={0x0112: (TiffTags.SHORT, orientation)})
        path.write_bytes(encode_tiff(stored, None, meta))
    elif layout == "png-rgb16":
        exif = io_metadata.strip_exif_prefix(exif_block(orientation).tobytes())
        path.write_bytes(encode_png(stored, None, io_metadata.PhotoFile(path, "PNG", "RGB;16", stored, exif=exif)))
    else:
        exif = Image.Exif()
        exif[0x0112] = orientation
        Image.fromarray(stored).save(path, exif=exif.tobytes(),
                                     **({"compression": "tiff_lzw"} if layout.endswith("lzw") else {}))
    photo = read_photo(path)
    assert photo.orientation == orientation
    assert np.array_equal(photo.pixels, io_metadata.orient(stored, orientation))


def test_xmp_orientation_is_reset_with_the_exif_one(tmp_path):
    xmp = b'<rdf:Description tiff:Orientation="8" xmlns:tiff="http://ns.adobe.com/tiff/1.0/"/>'
    Image.fromarray(rgb8(7, 11)).save(tmp_path / "o.jpg", exif=exif_block(8), xmp=xmp)
    photo = read_photo(tmp_path / "o.jpg")
    assert photo.pixels.shape[:2] == (11, 7) and b'tiff:Orientation="1"' in photo.xmp


def test_a_colour_profile_that_does_not_fit_is_left_out(tmp_path):
    photo = io_metadata.PhotoFile(Path("g.png"), "PNG", "P", np.zeros((4, 4), np.uint8), icc=SRGB)
    notes: list[str] = []
    with Image.open(io.BytesIO(encode(photo, photo.pixels, None, "png", notes=notes))) as im:
        assert "icc_profile" not in im.info and notes


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")
def test_a_damaged_exif_block_costs_the_metadata_not_the_photo(tmp_path):
    Image.fromarray(rgb8()).save(tmp_path / "ok.jpg")
    data = (tmp_path / "ok.jpg").read_bytes()
    app1 = b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\xff\xff" + b"\x01" * 20  # IFD claims 65535 entries
    (tmp_path / "bad.jpg").write_bytes(data[:2] + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + data[2:])
    photo = read_photo(tmp_path / "bad.jpg")
    assert photo.pixels.shape == (24, 32, 3)
    for fmt in ("png", "tiff", "jpeg"):
        notes: list[str] = []
        with Image.open(io.BytesIO(encode(photo, photo.pixels, None, fmt, notes=notes))) as im:
            assert im.size == (32, 24), fmt


def test_cmyk_jpeg_becomes_rgb_with_a_warning(tmp_path):
    Image.new("CMYK", (20, 16), (10, 200, 30, 5)).save(tmp_path / "cmyk.jpg")
    photo = read_photo(tmp_path / "cmyk.jpg")
    assert photo.mode == "CMYK" and photo.pixels.shape == (16, 20, 3)
    assert any("CMYK" in w for w in photo.warnings)


def test_multi_page_tiff_reads_the_first_page_with_a_warning(tmp_path):
    pages = [Image.fromarray(rgb8()), Image.fromarray(rgb8())]
    pages[0].save(tmp_path / "pages.tif", save_all=True, append_images=pages[1:])
    photo = read_photo(tmp_path / "pages.tif")
    assert photo.pages == 2 and np.array_equal(photo.pixels, np.asarray(pages[0]))
    assert any("2 pages" in w for w in photo.warnings)


def bomb_png(width: int = 50000, height: int = 50000) -> bytes:
    """A tiny PNG whose header claims a huge image (a decompression bomb's calling card)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


@pytest.mark.parametrize("name,content,needle", [
    ("empty.png", b"", "empty file (0 bytes)"),
    ("notes.jpg", b"these are my notes, not a photo\n", "not an image file"),
    ("bomb.png", bomb_png(), "--allow-huge"),
])
def test_unreadable_files_say_why(tmp_path, name, content, needle):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(ImageReadError) as info:
        read_photo(tmp_path / name)
    assert needle in str(info.value)


def test_truncated_png_and_jpeg_are_refused(tmp_path):
    for name in ("t.png", "t.jpg"):
        Image.fromarray(rgb8(64, 64)).save(tmp_path / name)
        data = (tmp_path / name).read_bytes()
        (tmp_path / name).write_bytes(data[: len(data) // 2])
        with pytest.raises(ImageReadError, match="damaged or truncated"):
            read_photo(tmp_path / name)


def test_the_bomb_limit_stays_on_unless_allow_huge(tmp_path, monkeypatch):
    Image.fromarray(rgb8(32, 32)).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(ImageReadError, match="allow-huge"):
        read_photo(tmp_path / "big.png")
    assert read_photo(tmp_path / "big.png", allow_huge=True).size == (32, 32)
    assert Image.MAX_IMAGE_PIXELS == 100  # the override is for that one read only


def test_read_rgb_and_read_mask_still_serve_the_gui(tmp_path):
    Image.fromarray(u16((6, 8))).save(tmp_path / "g.png")
    assert read_rgb(tmp_path / "g.png").shape == (6, 8, 3) and read_rgb(tmp_path / "g.png").dtype == np.uint8
    mask = np.zeros((6, 8), np.uint8)
    mask[2:4] = 255
    Image.fromarray(mask).save(tmp_path / "m.png")
    assert (read_mask(tmp_path / "m.png") == (mask > 0)).all()


# ------------------------------------------------------------------------------- pixels back


def test_finish_keeps_16_bit_precision_grey_and_alpha():
    grey = u16((9, 7))
    alpha = u16((9, 7))
    photo = io_metadata.PhotoFile(Path("x.png"), "PNG", "LA;16", grey, alpha)
    restored = np.repeat((grey.astype(np.float64) / 65535.0)[..., None], 3, axis=2).astype(np.float32)
    pixels, out_alpha = finish(photo, restored)
    assert pixels.dtype == np.uint16 and pixels.ndim == 2
    assert np.array_equal(pixels, grey)  # no 8-bit detour anywhere
    assert out_alpha is alpha


# ------------------------------------------------------------------------------------ writing


def cv2_rgb(data: bytes) -> np.ndarray:
    back = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if back.ndim == 3:
        back = back[..., [2, 1, 0, 3][: back.shape[2]]]
    return back if back.ndim == 3 else back[..., None]


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_png_and_tiff_encoders_round_trip_every_layout(dtype, channels):
    """Checked with two independent decoders: Pillow where it reads the layout at full depth, OpenCV
    (libpng / libtiff) for 16-bit colour."""
    arr = RNG.integers(0, np.iinfo(dtype).max + 1, (13, 17, channels), dtype=np.int64).astype(dtype)
    colour = arr[..., 0] if channels <= 2 else arr[..., :3]
    alpha = arr[..., -1] if channels in (2, 4) else None
    png, tiff = encode_png(colour, alpha), encode_tiff(colour, alpha)
    grey_alpha_as_rgba = np.dstack([arr[..., 0]] * 3 + [arr[..., 1]]) if channels == 2 else arr
    assert np.array_equal(cv2_rgb(png), grey_alpha_as_rgba)  # libpng expands grey+alpha to RGBA
    pillow_full_depth = dtype == np.uint8 or channels == 1
    if pillow_full_depth:
        for data in (png, tiff):
            with Image.open(io.BytesIO(data)) as im:
                assert np.array_equal(np.asarray(im).reshape(arr.shape).astype(dtype), arr)
    elif channels in (3, 4):
        assert np.array_equal(cv2_rgb(tiff), arr)
    # left: 16-bit grey+alpha TIFF, a valid baseline TIFF that neither Pillow nor OpenCV decodes


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_a_tiff_of_many_strips_round_trips(dtype):
    arr = RNG.integers(0, np.iinfo(dtype).max + 1, (300, 1800, 3), dtype=np.int64).astype(dtype)
    data = encode_tiff(arr)
    with Image.open(io.BytesIO(data)) as im:
        assert len(im.tag_v2[273]) > 1  # several strips
        if dtype == np.uint8:
            assert np.array_equal(np.asarray(im), arr)
    assert np.array_equal(cv2_rgb(data), arr)


def test_the_same_pixels_always_give_the_same_bytes():
    arr = rgb8()
    assert encode_png(arr) == encode_png(arr.copy()) and encode_tiff(arr) == encode_tiff(arr.copy())


def test_jpeg_to_png_keeps_icc_exif_dpi_xmp_and_comment(tmp_path):
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><dc>Grandma</dc></x:xmpmeta>'
    Image.fromarray(rgb8()).save(tmp_path / "s.jpg", icc_profile=SRGB, exif=exif_block(6), dpi=(300, 300),
                                 xmp=xmp, comment=b"Summer 1923")
    photo = read_photo(tmp_path / "s.jpg")
    pixels, alpha = finish(photo, photo.pixels / 255.0)
    for fmt in ("png", "tiff", "jpeg"):
        data = encode(photo, pixels, alpha, fmt, quality=90)
        with Image.open(io.BytesIO(data)) as im:
            assert im.size == (24, 32), fmt  # rotated upright by orientation 6
            assert im.info.get("icc_profile") == SRGB, fmt
            assert tuple(round(v) for v in im.info["dpi"]) == (300, 300), fmt
            exif = im.getexif()
            assert exif[271] == "ScanCo" and exif.get(0x0112, 1) == 1, fmt
            assert exif.get_ifd(0x8769)[0x9003] == "1923:05:01 10:00:00", fmt
            assert exif.get_ifd(0x8825)[1] == "N", fmt
            stored_xmp = im.tag_v2.get(700) if fmt == "tiff" else im.info.get("xmp")
            assert xmp in (stored_xmp if isinstance(stored_xmp, bytes) else stored_xmp.encode()), fmt
            if fmt == "png":
                assert im.text["Comment"] == "Summer 1923"


def test_png_keeps_its_colour_chunks_text_and_dpi(tmp_path):
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("Title", "Wedding, 1931")
    info.add_itxt("Description", "Großmutter und Großvater")
    Image.fromarray(rgb8()).save(tmp_path / "s.png", pnginfo=info, dpi=(600, 600))
    data = (tmp_path / "s.png").read_bytes()
    gama = struct.pack(">I", 4) + b"gAMA" + struct.pack(">I", 45455)
    gama += struct.pack(">I", zlib.crc32(gama[4:]))
    (tmp_path / "s.png").write_bytes(data[:33] + gama + data[33:])  # right after IHDR
    photo = read_photo(tmp_path / "s.png")
    assert photo.dpi == (600.0, 600.0)
    out = encode(photo, photo.pixels, None, "png")
    with Image.open(io.BytesIO(out)) as im:
        assert im.text["Title"] == "Wedding, 1931" and im.text["Description"] == "Großmutter und Großvater"
        assert round(im.info["gamma"], 5) == 0.45455
        assert tuple(round(v) for v in im.info["dpi"]) == (600, 600)


def test_16_bit_tiff_round_trip_keeps_the_metadata(tmp_path):
    """The closing note's example: a 16-bit TIFF with ICC, EXIF, GPS, DPI and descriptive tags."""
    grey = u16((24, 32))
    Image.fromarray(grey).save(tmp_path / "scan.tif", dpi=(1200, 1200), icc_profile=GREY_ICC,
                               exif=exif_block(1).tobytes(), description="Box 12, print 7")
    before = pil_tiff_view(tmp_path / "scan.tif")
    photo = read_photo(tmp_path / "scan.tif")
    pixels, alpha = finish(photo, np.repeat((photo.pixels / 65535.0)[..., None], 3, axis=2))
    after = pil_tiff_view(encode(photo, pixels, alpha, "tiff"))
    for key in ("mode", "size", "bits", "dpi", "icc", "make", "model", "artist", "description", "exif_ifd", "gps_ifd"):
        assert after[key] == before[key], key
    assert before["bits"] == (16,) and before["icc"] == GREY_ICC and before["exif_ifd"] and before["gps_ifd"]


def test_16_bit_rgb_tiff_with_alpha_round_trip(tmp_path):
    rgb, alpha = u16((10, 14, 3)), u16((10, 14))
    meta = io_metadata.PhotoFile(Path("x.tif"), "TIFF", "RGBA;16", rgb, alpha, icc=SRGB, dpi=(2400.0, 2400.0),
                             exif=io_metadata.strip_exif_prefix(exif_block(1).tobytes()))
    (tmp_path / "in.tif").write_bytes(encode_tiff(rgb, alpha, meta))
    photo = read_photo(tmp_path / "in.tif")
    assert photo.bit_depth == 16 and np.array_equal(photo.pixels, rgb) and np.array_equal(photo.alpha, alpha)
    assert photo.icc == SRGB and photo.dpi == (2400.0, 2400.0)
    view = pil_tiff_view(tmp_path / "in.tif")
    assert view["bits"] == (16, 16, 16, 16) and view["make"] == "ScanCo"
    assert view["exif_ifd"][0x9003] == "1923:05:01 10:00:00"


# ------------------------------------------------------------------------------- atomic files


def test_a_full_disk_leaves_the_old_file_and_no_partial_file(tmp_path, monkeypatch):
    target = tmp_path / "out.png"
    target.write_bytes(b"previous complete file")

    def half_then_full(fh, data):
        fh.write(data[: len(data) // 2])
        fh.flush()
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(io_durable, "_write_data", half_then_full)
    with pytest.raises(OSError) as info:
        write_bytes_atomic(target, b"x" * 10_000)
    assert info.value.errno == errno.ENOSPC
    assert target.read_bytes() == b"previous complete file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]


def test_stale_temporary_files_are_found_by_name_only(tmp_path):
    ours = tmp_path / f"{io_durable._temp_prefix(tmp_path / 'a.png')}0123abcd{io_durable.TMP_SUFFIX}"
    other = tmp_path / f"{io_durable._temp_prefix(tmp_path / 'b.png')}0123abcd{io_durable.TMP_SUFFIX}"
    ours.write_bytes(b"half")
    other.write_bytes(b"half")
    assert stale_temps(tmp_path, {"a.png"}) == [ours]


def test_new_files_get_ordinary_permissions(tmp_path):
    import os

    write_bytes_atomic(tmp_path / "f.png", b"data")
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "f.png").stat().st_mode & 0o777 == 0o666 & ~umask
