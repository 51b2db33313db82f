"""Synthetic old-photo damage for training and evaluation (the paper's domain X).

``degrade(clean, seed)`` returns (degraded, clean, mask): deterministic for a given seed.

* Unstructured damage, in random order and strength: Gaussian blur, Gaussian / speckle /
  salt-and-pepper noise, film grain, low resolution (down then up), colour fading (desaturation,
  sepia or colour cast, lifted blacks, lowered contrast), random grayscale; JPEG last, as scans are
  often stored.
* Structured damage with an exact mask: scratches and cracks (random curves, light or dark,
  1-4 px), dust specks, creases, torn or missing corners, irregular holes. Each is drawn as a
  layer with its own opacity and composited with one of the paper's blends (addition,
  lighten-only, screen for light damage; multiply-like darkening for dark damage).
  ``mask`` is exactly the set of pixels the structured layers changed.
* Paper texture: a low-frequency, low-amplitude multiplicative pattern over the whole print.

Images are HxWx3 float32 in [0, 1]; the mask is HxW bool.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Collection

import cv2
import numpy as np

from engine.degradation.overlays import OverlayLibrary
from engine.degradation.realistic import draw_kinds, realistic_structured

Image = np.ndarray
Op = Callable[[Image, np.random.Generator], Image]

# A structured pixel counts as damaged when some channel moved by at least this much (1/255 is
# below what 8-bit storage can show; the detector is trained on what is visible).
DAMAGE_EPS = 1.0 / 255.0


# ----------------------------------------------------------------------------- unstructured

def gaussian_blur(img: Image, rng: np.random.Generator, sigma: float | None = None) -> Image:
    sigma = float(rng.uniform(0.4, 2.0)) if sigma is None else sigma
    return cv2.GaussianBlur(img, (0, 0), sigmaX=sigma, borderType=cv2.BORDER_REFLECT)


def gaussian_noise(img: Image, rng: np.random.Generator, std: float | None = None) -> Image:
    std = float(rng.uniform(0.01, 0.06)) if std is None else std
    return np.clip(img + rng.normal(0, std, img.shape).astype(np.float32), 0, 1)


def speckle_noise(img: Image, rng: np.random.Generator, std: float | None = None) -> Image:
    std = float(rng.uniform(0.03, 0.15)) if std is None else std
    return np.clip(img * (1 + rng.normal(0, std, img.shape).astype(np.float32)), 0, 1)


def salt_and_pepper(img: Image, rng: np.random.Generator, amount: float | None = None) -> Image:
    amount = float(rng.uniform(0.001, 0.01)) if amount is None else amount
    out = img.copy()
    hit = rng.random(img.shape[:2])
    out[hit < amount / 2] = 0.0
    out[hit > 1 - amount / 2] = 1.0
    return out


def film_grain(img: Image, rng: np.random.Generator, strength: float | None = None) -> Image:
    """Luminance grain with a grain size of ~1-2 px, stronger in the mid-tones."""
    strength = float(rng.uniform(0.02, 0.08)) if strength is None else strength
    h, w = img.shape[:2]
    grain = rng.normal(0, 1, (h, w)).astype(np.float32)
    grain = cv2.GaussianBlur(grain, (0, 0), sigmaX=float(rng.uniform(0.5, 1.2)))
    grain /= grain.std() + 1e-6
    luma = img.mean(axis=2, keepdims=True)
    weight = 4 * luma * (1 - luma)
    return np.clip(img + strength * weight * grain[..., None], 0, 1)


def jpeg(img: Image, rng: np.random.Generator, quality: int | None = None) -> Image:
    quality = int(rng.integers(15, 80)) if quality is None else quality
    u8 = (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)
    ok, data = cv2.imencode(".jpg", u8[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return cv2.imdecode(data, cv2.IMREAD_COLOR)[..., ::-1].astype(np.float32) / 255.0


def low_resolution(img: Image, rng: np.random.Generator, factor: float | None = None) -> Image:
    factor = float(rng.uniform(1.5, 4.0)) if factor is None else factor
    h, w = img.shape[:2]
    small = cv2.resize(img, (max(1, round(w / factor)), max(1, round(h / factor))), interpolation=cv2.INTER_AREA)
    up = [cv2.INTER_LINEAR, cv2.INTER_CUBIC, cv2.INTER_NEAREST][int(rng.integers(0, 3))]
    return np.clip(cv2.resize(small, (w, h), interpolation=up), 0, 1)


def saturation(img: Image) -> np.ndarray:
    """Per-pixel HSV saturation."""
    mx, mn = img.max(axis=2), img.min(axis=2)
    return np.where(mx > 1e-6, (mx - mn) / np.maximum(mx, 1e-6), 0.0)


def colour_fading(img: Image, rng: np.random.Generator, amount: float | None = None) -> Image:
    """Desaturate, tint (sepia or a random cast), lift the blacks and lower the contrast."""
    amount = float(rng.uniform(0.3, 0.9)) if amount is None else amount
    grey = img.mean(axis=2, keepdims=True)
    out = img * (1 - amount) + grey * amount
    if rng.random() < 0.6:
        tint = np.array([1.07, 0.95, 0.78], np.float32)  # sepia
    else:
        tint = (1 + rng.uniform(-0.08, 0.08, 3)).astype(np.float32)
    out = out * (1 - amount * 0.5) + out * tint * (amount * 0.5)
    black = float(rng.uniform(0.02, 0.18)) * amount
    contrast = 1 - float(rng.uniform(0.05, 0.35)) * amount
    out = black + (1 - black) * (0.5 + (out - 0.5) * contrast)
    return np.clip(out, 0, 1).astype(np.float32)


def grayscale(img: Image, rng: np.random.Generator) -> Image:
    return np.repeat(img.mean(axis=2, keepdims=True), 3, axis=2)


UNSTRUCTURED: dict[str, tuple[float, Op]] = {  # name -> (probability, operation)
    "blur": (0.5, gaussian_blur),
    "gaussian_noise": (0.35, gaussian_noise),
    "speckle": (0.2, speckle_noise),
    "salt_pepper": (0.15, salt_and_pepper),
    "grain": (0.5, film_grain),
    "low_resolution": (0.35, low_resolution),
    "fading": (0.6, colour_fading),
    "grayscale": (0.3, grayscale),
}


def unstructured(img: Image, rng: np.random.Generator) -> tuple[Image, list[str]]:
    names = [n for n, (p, _) in UNSTRUCTURED.items() if rng.random() < p]
    order = [names[i] for i in rng.permutation(len(names))]
    for name in order:
        img = UNSTRUCTURED[name][1](img, rng).astype(np.float32)
    return img, order


# ----------------------------------------------------------------------------- structured

def _random_curve(rng: np.random.Generator, h: int, w: int, length: float, wiggle: float) -> np.ndarray:
    """Points of a smooth random curve (x, y), int32 for cv2.polylines."""
    steps = max(4, int(length / 6))
    x, y = rng.uniform(0, w), rng.uniform(0, h)
    angle = rng.uniform(0, 2 * np.pi)
    pts = []
    for _ in range(steps):
        pts.append((x, y))
        angle += rng.normal(0, wiggle)
        x += np.cos(angle) * length / steps
        y += np.sin(angle) * length / steps
    return np.round(np.array(pts)).astype(np.int32)


def scratch_layer(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Alpha layer (HxW, 0..1) of thin scratches and branching cracks."""
    alpha = np.zeros((h, w), np.float32)
    for _ in range(int(rng.integers(1, 6))):
        crack = rng.random() < 0.3
        pts = _random_curve(rng, h, w, rng.uniform(0.3, 1.2) * max(h, w), 0.35 if crack else 0.05)
        width = int(rng.integers(1, 5))
        cv2.polylines(alpha, [pts], False, float(rng.uniform(0.5, 1.0)), thickness=width, lineType=cv2.LINE_8)
        if crack:
            for _ in range(int(rng.integers(1, 4))):
                start = pts[int(rng.integers(0, len(pts)))]
                branch = _random_curve(rng, h, w, rng.uniform(0.05, 0.25) * max(h, w), 0.5)
                branch = branch - branch[0] + start
                cv2.polylines(alpha, [branch], False, float(rng.uniform(0.5, 1.0)), thickness=max(1, width - 1))
    return alpha


def dust_layer(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    alpha = np.zeros((h, w), np.float32)
    for _ in range(int(rng.integers(5, 60))):
        centre = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        axes = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
        cv2.ellipse(alpha, centre, axes, float(rng.uniform(0, 180)), 0, 360, float(rng.uniform(0.6, 1.0)), -1)
    return alpha


def crease_layer(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A fold: a long, nearly straight band, brighter in the middle."""
    alpha = np.zeros((h, w), np.float32)
    pts = _random_curve(rng, h, w, 1.5 * max(h, w), 0.02)
    cv2.polylines(alpha, [pts], False, 0.5, thickness=int(rng.integers(3, 8)))
    cv2.polylines(alpha, [pts], False, 0.9, thickness=int(rng.integers(1, 3)))
    return alpha


def corner_layer(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A torn or missing corner: an irregular polygon cut from one corner."""
    alpha = np.zeros((h, w), np.float32)
    size = rng.uniform(0.08, 0.25) * min(h, w)
    cx, cy = [(0, 0), (w - 1, 0), (0, h - 1), (w - 1, h - 1)][int(rng.integers(0, 4))]
    n = int(rng.integers(4, 9))
    angles = np.linspace(0, np.pi / 2, n)
    radii = size * rng.uniform(0.6, 1.3, n)
    sx, sy = (1 if cx == 0 else -1), (1 if cy == 0 else -1)
    pts = [(cx, cy)] + [(cx + sx * r * np.cos(a), cy + sy * r * np.sin(a)) for r, a in zip(radii, angles)]
    cv2.fillPoly(alpha, [np.round(np.array(pts)).astype(np.int32)], 1.0)
    return alpha


def hole_layer(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    alpha = np.zeros((h, w), np.float32)
    for _ in range(int(rng.integers(1, 3))):
        c = np.array([rng.uniform(0, w), rng.uniform(0, h)])
        n = int(rng.integers(6, 12))
        angles = np.sort(rng.uniform(0, 2 * np.pi, n))
        radii = rng.uniform(0.02, 0.08) * min(h, w) * rng.uniform(0.5, 1.5, n)
        pts = c + np.stack([np.cos(angles) * radii, np.sin(angles) * radii], axis=1)
        cv2.fillPoly(alpha, [np.round(pts).astype(np.int32)], 1.0)
    return alpha


STRUCTURED: dict[str, tuple[float, Callable[[np.random.Generator, int, int], np.ndarray]]] = {
    "scratches": (0.9, scratch_layer),
    "dust": (0.5, dust_layer),
    "crease": (0.2, crease_layer),
    "corner": (0.1, corner_layer),
    "holes": (0.15, hole_layer),
}


def blend(base: Image, colour: np.ndarray, alpha: np.ndarray, mode: str) -> Image:
    """Composite a flat-coloured damage layer onto ``base`` with coverage ``alpha`` (HxW)."""
    a = alpha[..., None]
    if mode == "add":
        top = np.clip(base + colour, 0, 1)
    elif mode == "lighten":
        top = np.maximum(base, colour)
    elif mode == "screen":
        top = 1 - (1 - base) * (1 - colour)
    elif mode == "darken":
        top = np.minimum(base, colour)
    else:
        raise ValueError(mode)
    return base * (1 - a) + top * a


def structured(img: Image, rng: np.random.Generator, kinds: list[str] | None = None,
               allowed: Collection[str] | None = None) -> tuple[Image, np.ndarray, list[str]]:
    """Draw structured damage; the mask is exactly where it changed the image. When ``kinds`` is None
    each kind is drawn with its own probability: of all kinds (possibly none), or, given ``allowed``,
    of those only and at least one."""
    h, w = img.shape[:2]
    if kinds is None and allowed is not None:
        kinds = draw_kinds(rng, STRUCTURED, allowed)
    elif kinds is None:
        kinds = [n for n, (p, _) in STRUCTURED.items() if rng.random() < p]
    out = img.copy()
    for kind in kinds:
        alpha = STRUCTURED[kind][1](rng, h, w) * float(rng.uniform(0.6, 1.0))
        light = kind in ("corner", "holes", "crease") or rng.random() < 0.7
        if light:
            colour = np.full(3, rng.uniform(0.8, 1.0), np.float32) * (1 - rng.uniform(0, 0.05, 3)).astype(np.float32)
            mode = ["add", "lighten", "screen"][int(rng.integers(0, 3))]
        else:
            colour = np.full(3, rng.uniform(0.0, 0.25), np.float32)
            mode = "darken"
        out = blend(out, colour, alpha, mode).astype(np.float32)
    mask = np.abs(out - img).max(axis=2) >= DAMAGE_EPS
    out = np.where(mask[..., None], out, img)  # sub-visible changes are not damage: undo them exactly
    return out, mask, kinds


def paper_texture(img: Image, rng: np.random.Generator, strength: float | None = None) -> Image:
    strength = float(rng.uniform(0.02, 0.07)) if strength is None else strength
    h, w = img.shape[:2]
    noise = rng.normal(0, 1, (max(2, h // 16), max(2, w // 16))).astype(np.float32)
    noise = cv2.resize(noise, (w, h), interpolation=cv2.INTER_CUBIC)
    fibres = cv2.GaussianBlur(rng.normal(0, 1, (h, w)).astype(np.float32), (0, 0), 0.8)
    pattern = noise / (noise.std() + 1e-6) + 0.3 * fibres / (fibres.std() + 1e-6)
    return np.clip(img * (1 + strength * pattern[..., None]), 0, 1)


@dataclass(frozen=True)
class Degradation:
    degraded: Image
    clean: Image
    mask: np.ndarray
    steps: tuple[str, ...]


DAMAGE_STYLES = ("classic", "realistic")
# Damage families, to judge a restoration on one sort of damage at a time (bench/eval_quality.py):
# "unstructured" is the unstructured damage alone (noise, blur, fading, JPEG...: no mask); the two
# structured families draw only their own kinds of each style (plus the same unstructured damage):
# "scratches" thin or small damage (scratches, cracks, craquelure, hair, dust, folds, foxing; realistic
# cracks may still lose small chips of emulsion along them, as in the default draw), "holes" missing
# areas (tears, flaked-off emulsion, holes, torn corners).
DAMAGE_FAMILIES: dict[str, dict[str, tuple[str, ...]]] = {
    "classic": {"scratches": ("scratches", "dust", "crease"), "holes": ("corner", "holes")},
    "realistic": {"scratches": ("cracks", "craquelure", "scratches", "fibres", "dust", "fold", "foxing"),
                  "holes": ("tear", "flaking")},
}
FAMILIES = ("unstructured", "scratches", "holes")


def degrade(clean: Image, seed: int, structured_damage: bool = True, jpeg_probability: float = 0.4,
            damage: str = "classic", overlays: OverlayLibrary | None = None,
            family: str | None = None) -> Degradation:
    """Make an old-looking photo from ``clean``; the same seed (and overlay library) always gives the
    same damage. ``damage="realistic"`` draws what real prints show (``engine.degradation.realistic``:
    crack networks, flaking, tears, folds, foxing, real dust and hair shapes from ``overlays``);
    ``"classic"`` the earlier curves and ellipses, kept so earlier benchmarks stay comparable.
    ``family`` (one of ``FAMILIES``) limits the structured damage to one family of ``DAMAGE_FAMILIES``
    (at least one of its kinds), or to none ("unstructured"); None draws every kind, as always. The
    unstructured damage of a seed is the same whatever the family (JPEG, drawn last, may differ)."""
    if damage not in DAMAGE_STYLES:
        raise ValueError(f"damage must be one of {DAMAGE_STYLES}, not {damage!r}")
    if family is not None and family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES} or None, not {family!r}")
    allowed = DAMAGE_FAMILIES[damage].get(family) if family is not None else None
    rng = np.random.default_rng(seed)
    img = np.ascontiguousarray(clean, dtype=np.float32)
    img, steps = unstructured(img, rng)
    if rng.random() < 0.5:
        img = paper_texture(img, rng)
        steps.append("paper")
    mask = np.zeros(img.shape[:2], bool)
    if structured_damage and family != "unstructured":
        if damage == "realistic":
            img, mask, kinds = realistic_structured(img, rng, overlays, allowed=allowed)
        else:
            img, mask, kinds = structured(img, rng, allowed=allowed)
        steps += kinds
    if rng.random() < jpeg_probability:
        img = jpeg(img, rng)
        steps.append("jpeg")
    return Degradation(img.astype(np.float32), np.asarray(clean, np.float32), mask, tuple(steps))
