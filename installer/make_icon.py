"""Draw Heirloom's application icon with Pillow and write every format the installers need.

    python installer/make_icon.py            writes resources/icons/heirloom.{png,ico,icns} and heirloom-<N>.png

The design: a tilted photo print with a white border on a deep teal tile; the left half of the print
is faded sepia crossed by scratches, the right half the same scene restored in colour. Drawn at
4x and downsampled, so edges are smooth at every size. Deterministic: re-running gives the same files.
"""

from __future__ import annotations

import sys
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "resources" / "icons"
MASTER = 1024
SS = 4  # supersampling factor
PNG_SIZES = (16, 24, 32, 48, 64, 128, 256, 512)
ICO_SIZES = [(s, s) for s in (16, 24, 32, 48, 64, 128, 256)]


def scene(size: int, restored: bool) -> Image.Image:
    """The photo's content: sky, sun, two hills, a small house."""
    img = Image.new("RGB", (size, size))
    d = ImageDraw.Draw(img)
    for y in range(size):  # sky gradient
        t = y / size
        top, bottom = ((70, 135, 200), (200, 225, 240)) if restored else ((120, 105, 85), (205, 190, 160))
        d.line([(0, y), (size, y)], fill=tuple(int(a + (b - a) * t) for a, b in zip(top, bottom)))
    sun = (250, 205, 90) if restored else (235, 220, 185)
    d.ellipse([size * 0.62, size * 0.14, size * 0.84, size * 0.36], fill=sun)
    far = (70, 140, 90) if restored else (135, 120, 95)
    near = (45, 105, 60) if restored else (105, 90, 70)
    d.polygon([(0, size * 0.70), (size * 0.35, size * 0.48), (size * 0.75, size * 0.66), (size, size * 0.58),
               (size, size), (0, size)], fill=far)
    d.polygon([(0, size * 0.85), (size * 0.45, size * 0.70), (size, size * 0.82), (size, size), (0, size)], fill=near)
    wall = (235, 225, 210) if restored else (200, 185, 160)
    roof = (180, 60, 45) if restored else (120, 95, 75)
    d.rectangle([size * 0.20, size * 0.58, size * 0.36, size * 0.72], fill=wall)
    d.polygon([(size * 0.18, size * 0.59), (size * 0.28, size * 0.49), (size * 0.38, size * 0.59)], fill=roof)
    return img


def scratches(img: Image.Image) -> None:
    d = ImageDraw.Draw(img)
    s = img.width
    light = (245, 238, 222)
    w = max(2, s // 90)
    d.line([(s * 0.10, 0), (s * 0.16, s * 0.30), (s * 0.12, s * 0.55), (s * 0.22, s * 0.80), (s * 0.20, s)],
           fill=light, width=w, joint="curve")
    d.line([(s * 0.42, s * 0.05), (s * 0.34, s * 0.28)], fill=light, width=max(1, w // 2))
    for x, y in ((0.12, 0.30), (0.40, 0.80), (0.25, 0.18), (0.08, 0.88)):
        r = s * 0.012
        d.ellipse([s * x - r, s * y - r, s * x + r, s * y + r], fill=light)


def master() -> Image.Image:
    size = MASTER * SS
    icon = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    tile = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    margin, radius = size * 0.06, size * 0.20
    ImageDraw.Draw(tile).rounded_rectangle([margin, margin, size - margin, size - margin], radius=radius,
                                           fill=(22, 78, 88, 255))
    icon.alpha_composite(tile)

    photo_size = int(size * 0.56)
    old, new = scene(photo_size, restored=False), scene(photo_size, restored=True)
    scratches(old)
    half = Image.new("L", (photo_size, photo_size), 0)
    ImageDraw.Draw(half).rectangle([photo_size // 2, 0, photo_size, photo_size], fill=255)
    photo = Image.composite(new, old, half)
    ImageDraw.Draw(photo).line([(photo_size // 2, 0), (photo_size // 2, photo_size)], fill=(255, 255, 255),
                               width=max(2, photo_size // 120))

    border = int(size * 0.035)
    print_ = Image.new("RGBA", (photo_size + 2 * border, photo_size + 2 * border + border), (250, 247, 240, 255))
    print_.paste(photo, (border, border))
    print_ = print_.rotate(-8, resample=Image.Resampling.BICUBIC, expand=True)

    shadow = Image.new("RGBA", print_.size, (0, 0, 0, 0))
    shadow.putalpha(print_.getchannel("A").point(lambda a: a * 0.45))
    shadow = shadow.filter(ImageFilter.GaussianBlur(size * 0.015))
    x, y = (size - print_.width) // 2, (size - print_.height) // 2
    icon.alpha_composite(shadow, (x + int(size * 0.012), y + int(size * 0.02)))
    icon.alpha_composite(print_, (x, y))
    return icon.resize((MASTER, MASTER), Image.Resampling.LANCZOS)


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    big = master()
    big.save(OUT / "heirloom.png")  # 1024 px: .desktop, README, macOS
    for s in PNG_SIZES:
        big.resize((s, s), Image.Resampling.LANCZOS).save(OUT / f"heirloom-{s}.png")
    big.save(OUT / "heirloom.ico", sizes=ICO_SIZES)
    big.save(OUT / "heirloom.icns")
    for path in sorted(OUT.iterdir()):
        print(f"{path.relative_to(ROOT)}  {path.stat().st_size:,} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
