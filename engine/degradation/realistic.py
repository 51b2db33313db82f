"""Damage that looks like what real old prints show, for training and judging the detector.

The classic synthesis (``engine.degradation.degrade``) draws a few smooth curves, ellipses and polygons; a
detector trained on it misses real damage (issue #16). Real prints show:

* crack networks in the emulsion (craquelure): jagged, branching, cell-like, many per photo,
  1-4 px, showing the cream paper base or darker, dirty emulsion;
* emulsion flaking along the cracks: small irregular chips down to the paper base;
* tears and missing areas, from an edge or inside, showing the paper base with a fibrous rim;
* folds: a long straight line with an abraded band of specks either side;
* foxing: small brown spots;
* (large soft stains are left out: they are tone damage for the restoration networks, not holes
  to inpaint, and a detector taught to mark them marks whole regions);
* dust, dirt, lint, hair and fine scratches: taken from real shapes (``engine.degradation.overlays``)
  when that training library is present, drawn procedurally otherwise.

Every layer is an alpha (coverage) map with a fill (paper base, light, dark, brown) and one of the
paper's blends; the mask is exactly where the composited damage changed the photo visibly.
"""

from __future__ import annotations

from typing import Callable, Collection

import cv2
import numpy as np

from engine.degradation.overlays import (
    FIBRE_CLASSES,
    SCRATCH_CLASSES,
    SPECK_CLASSES,
    OverlayLibrary,
)

Image = np.ndarray
# A pixel counts as damaged when some channel moved by at least this much: about what a person
# sees at 100 %; fainter changes are undone, so the detector is never taught invisible damage.
VISIBLE_EPS = 4.0 / 255.0
# Overlay coverage below this is the overlay's anti-aliasing fringe, not damage.
MIN_OVERLAY_ALPHA = 0.12


# ----------------------------------------------------------------------------- geometry

def jagged_path(rng: np.random.Generator, start: np.ndarray, angle: float, length: float,
                step: float = 3.0, persistence: float = 0.25, jitter: float = 0.6) -> np.ndarray:
    """A crack's path: a walk with a slowly turning direction and small sideways jitter, so it
    looks broken rather than drawn (real cracks are not smooth curves). Nx2 float32 (x, y)."""
    n = max(2, int(length / step))
    turns = np.cumsum(rng.normal(0, persistence, n))
    directions = angle + turns
    moves = np.stack([np.cos(directions), np.sin(directions)], axis=1) * step
    pts = start + np.concatenate([np.zeros((1, 2)), np.cumsum(moves, axis=0)])[:n]
    normal = np.stack([-np.sin(directions), np.cos(directions)], axis=1)
    pts = pts + normal * rng.normal(0, jitter, (n, 1))
    return pts.astype(np.float32)


def draw_path(alpha: np.ndarray, pts: np.ndarray, width: float, value: float, taper: bool = True) -> None:
    """Draw a path into ``alpha`` (max-composited), optionally thinning towards its end."""
    n = len(pts)
    ipts = np.round(pts).astype(np.int32)
    for i in range(n - 1):
        w = width * (1.0 - 0.7 * i / n) if taper else width
        cv2.line(alpha, tuple(map(int, ipts[i])), tuple(map(int, ipts[i + 1])), float(value),
                 thickness=max(1, int(round(w))), lineType=cv2.LINE_AA)


def random_blob(rng: np.random.Generator, h: int, w: int, coverage: float) -> np.ndarray:
    """A smooth random region covering about ``coverage`` of the image (where damage clusters)."""
    grid = rng.normal(0, 1, (max(2, h // 48), max(2, w // 48))).astype(np.float32)
    field = cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)
    return field >= np.quantile(field, 1.0 - coverage)


# ----------------------------------------------------------------------------- layers (alpha maps)

def branching_cracks(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """1-6 long cracks, each branching twice over (the cracks of a bent or broken print)."""
    alpha = np.zeros((h, w), np.float32)
    side = max(h, w)

    def grow(start: np.ndarray, angle: float, length: float, width: float, depth: int) -> None:
        pts = jagged_path(rng, start, angle, length, step=max(2.0, side / 150), persistence=float(rng.uniform(0.08, 0.3)))
        draw_path(alpha, pts, width, float(rng.uniform(0.75, 1.0)))
        if depth == 0:
            return
        for _ in range(int(rng.integers(0, 4))):
            at = pts[int(rng.integers(0, len(pts)))]
            grow(at, angle + float(rng.choice([-1, 1]) * rng.uniform(0.35, 1.3)), length * float(rng.uniform(0.15, 0.5)),
                 max(1.0, width * 0.7), depth - 1)

    for _ in range(int(rng.integers(1, 7))):
        start = np.array([rng.uniform(0, w), rng.uniform(0, h)], np.float32)
        grow(start, float(rng.uniform(0, 2 * np.pi)), float(rng.uniform(0.2, 1.0)) * side,
             float(rng.uniform(1.0, 3.5)), 2)
    return alpha


def craquelure(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A network of cells (Voronoi edges of random seeds), only some edges cracked, in one or more
    patches of the print: the fine crazing of dried emulsion."""
    alpha = np.zeros((h, w), np.float32)
    cell = float(rng.uniform(10, 45))
    region = random_blob(rng, h, w, float(rng.uniform(0.15, 0.8)))
    count = int(np.clip(h * w / cell**2, 8, 2000))
    subdiv = cv2.Subdiv2D((-2, -2, w + 4, h + 4))
    for x, y in zip(rng.uniform(0, w, count), rng.uniform(0, h, count)):
        subdiv.insert((float(x), float(y)))
    keep = float(rng.uniform(0.25, 0.75))
    width = float(rng.uniform(1.0, 1.6))
    facets, _ = subdiv.getVoronoiFacetList([])
    for facet in facets:
        poly = np.asarray(facet, np.float32)
        for a, b in zip(poly, np.roll(poly, -1, axis=0)):
            mid = (a + b) / 2
            mx, my = int(mid[0]), int(mid[1])
            if not (0 <= mx < w and 0 <= my < h) or not region[my, mx] or rng.random() > keep:
                continue
            length = float(np.linalg.norm(b - a))
            if length < 2:
                continue
            angle = float(np.arctan2(b[1] - a[1], b[0] - a[0]))
            pts = jagged_path(rng, a, angle, length, step=2.0, persistence=0.05, jitter=0.5)
            draw_path(alpha, pts, width, float(rng.uniform(0.6, 1.0)), taper=False)
    return alpha


def flakes_along(rng: np.random.Generator, cracks: np.ndarray, amount: float,
                 radius: tuple[float, float] = (0.8, 3.5)) -> np.ndarray:
    """Chips of emulsion lost along cracks: irregular small polygons centred on crack pixels, of a
    mean radius drawn from ``radius`` (px)."""
    alpha = np.zeros_like(cracks)
    ys, xs = np.nonzero(cracks > 0.5)
    if len(ys) == 0:
        return alpha
    for i in rng.choice(len(ys), size=min(len(ys), max(1, int(len(ys) * amount))), replace=False):
        n = int(rng.integers(4, 8))
        angles = np.sort(rng.uniform(0, 2 * np.pi, n))
        radii = rng.uniform(*radius) * rng.uniform(0.5, 1.3, n)
        pts = np.stack([xs[i] + np.cos(angles) * radii, ys[i] + np.sin(angles) * radii], axis=1)
        cv2.fillPoly(alpha, [np.round(pts).astype(np.int32)], 1.0, lineType=cv2.LINE_AA)
    return alpha


def tear(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A missing piece from an edge or corner, or a long gap inside, with a jagged outline."""
    alpha = np.zeros((h, w), np.float32)
    side = min(h, w)
    if rng.random() < 0.6:  # from an edge: a jagged bite
        edge = int(rng.integers(4))
        along = rng.uniform(0, 1)
        depth = rng.uniform(0.04, 0.25) * side
        span = rng.uniform(0.1, 0.5) * max(h, w)
        n = int(rng.integers(12, 30))
        t = np.linspace(-0.5, 0.5, n)
        reach = depth * (1 - (2 * t) ** 2) * rng.uniform(0.6, 1.2, n) + rng.normal(0, 1.5, n)
        if edge in (0, 1):  # top / bottom
            x = along * w + t * span
            y = reach if edge == 0 else h - 1 - reach
        else:
            y = along * h + t * span
            x = reach if edge == 2 else w - 1 - reach
        pts = np.stack([x, y], axis=1)
        cv2.fillPoly(alpha, [np.round(pts).astype(np.int32)], 1.0, lineType=cv2.LINE_AA)
    else:  # inside: a crack that opened into a gap
        start = np.array([rng.uniform(0, w), rng.uniform(0, h)], np.float32)
        pts = jagged_path(rng, start, float(rng.uniform(0, 2 * np.pi)), float(rng.uniform(0.2, 0.7)) * max(h, w),
                          step=3.0, persistence=0.15, jitter=0.8)
        widths = np.abs(np.sin(np.linspace(0, np.pi, len(pts)))) * rng.uniform(2, 0.05 * side + 3)
        for p, q, wd in zip(pts[:-1], pts[1:], widths):
            cv2.line(alpha, tuple(map(int, np.round(p))), tuple(map(int, np.round(q))), 1.0,
                     thickness=max(1, int(wd)), lineType=cv2.LINE_AA)
    return alpha


def fold(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A fold: a nearly straight crease line and an abraded band of specks either side of it."""
    alpha = np.zeros((h, w), np.float32)
    angle = float(rng.uniform(0, np.pi))
    centre = np.array([rng.uniform(0, w), rng.uniform(0, h)], np.float32)
    length = 1.5 * max(h, w)
    start = centre - length / 2 * np.array([np.cos(angle), np.sin(angle)], np.float32)
    pts = jagged_path(rng, start, angle, length, step=4.0, persistence=0.01, jitter=0.4)
    line = np.zeros_like(alpha)
    draw_path(line, pts, float(rng.uniform(1, 2.5)), 1.0, taper=False)
    band_width = float(rng.uniform(3, 14))
    distance = cv2.distanceTransform((line < 0.5).astype(np.uint8), cv2.DIST_L2, 3)
    density = np.clip(1 - distance / band_width, 0, 1) * float(rng.uniform(0.2, 0.6))
    specks = (rng.random((h, w)) < density * 0.5).astype(np.float32)
    specks = cv2.dilate(specks, np.ones((2, 2), np.uint8)) * rng.uniform(0.5, 1.0)
    return np.maximum(line * float(rng.uniform(0.7, 1.0)), specks.astype(np.float32))


def foxing(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Small rust-brown spots with soft edges, scattered or clustered."""
    alpha = np.zeros((h, w), np.float32)
    cluster = rng.random() < 0.5
    cx, cy = rng.uniform(0, w), rng.uniform(0, h)
    for _ in range(int(rng.integers(3, 40))):
        if cluster:
            x, y = cx + rng.normal(0, 0.1 * w), cy + rng.normal(0, 0.1 * h)
        else:
            x, y = rng.uniform(0, w), rng.uniform(0, h)
        r = float(rng.uniform(1, 6))
        cv2.circle(alpha, (int(x), int(y)), int(round(r)), float(rng.uniform(0.4, 0.9)), -1, lineType=cv2.LINE_AA)
    return cv2.GaussianBlur(alpha, (0, 0), 0.8)


def specks(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Procedural dust: a power-law of speck sizes (many tiny, few large), irregular shapes."""
    alpha = np.zeros((h, w), np.float32)
    for _ in range(int(rng.integers(10, 120))):
        r = float(np.clip(rng.pareto(2.5) + 0.5, 0.5, 6))
        n = int(rng.integers(4, 8))
        angles = np.sort(rng.uniform(0, 2 * np.pi, n))
        radii = r * rng.uniform(0.5, 1.3, n)
        x, y = rng.uniform(0, w), rng.uniform(0, h)
        pts = np.stack([x + np.cos(angles) * radii, y + np.sin(angles) * radii], axis=1)
        cv2.fillPoly(alpha, [np.round(pts).astype(np.int32)], float(rng.uniform(0.6, 1.0)), lineType=cv2.LINE_AA)
    return alpha


def hairs(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Procedural hair and lint: thin, gently curling fibres."""
    alpha = np.zeros((h, w), np.float32)
    for _ in range(int(rng.integers(1, 6))):
        start = np.array([rng.uniform(0, w), rng.uniform(0, h)], np.float32)
        pts = jagged_path(rng, start, float(rng.uniform(0, 2 * np.pi)), float(rng.uniform(0.05, 0.4)) * max(h, w),
                          step=2.0, persistence=float(rng.uniform(0.02, 0.15)), jitter=0.1)
        draw_path(alpha, pts, float(rng.uniform(1, 1.8)), float(rng.uniform(0.6, 1.0)), taper=False)
    return alpha


# ----------------------------------------------------------------------------- fills and blends

def paper_base(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """The print's paper under the emulsion: cream to white, with a faint fibre texture."""
    red = rng.uniform(0.86, 1.0)
    green = red - rng.uniform(0.0, 0.06)
    tone = np.array([red, green, green - rng.uniform(0.0, 0.14)], np.float32)
    if rng.random() < 0.3:
        tone[:] = tone.mean()
    fibres = cv2.GaussianBlur(rng.normal(0, 1, (h, w)).astype(np.float32), (0, 0), 0.7)
    fibres /= fibres.std() + 1e-6
    return np.clip(tone * (1 + 0.025 * fibres[..., None]), 0, 1)


def composite(base: Image, alpha: np.ndarray, fill: str, rng: np.random.Generator) -> Image:
    """Composite one damage layer: ``paper`` shows the base (normal blend), ``light`` brightens
    (screen / lighten / add), ``dark`` darkens (dirty emulsion, dirt), ``brown`` tints (foxing)."""
    h, w = alpha.shape
    a = alpha[..., None]
    if fill == "paper":
        top = paper_base(rng, h, w)
    elif fill == "light":
        colour = np.float32(rng.uniform(0.75, 1.0))
        mode = int(rng.integers(3))
        if mode == 0:
            top = 1 - (1 - base) * (1 - colour)
        elif mode == 1:
            top = np.maximum(base, colour)
        else:
            top = np.clip(base + colour * 0.8, 0, 1)
    elif fill == "dark":
        top = np.minimum(base, np.float32(rng.uniform(0.02, 0.3))) * np.float32(rng.uniform(0.7, 1.0))
    elif fill == "brown":
        tint = np.array([0.78, 0.55, 0.32], np.float32) * np.float32(rng.uniform(0.8, 1.1))
        top = base * tint
    else:
        raise ValueError(fill)
    return (base * (1 - a) + top * a).astype(np.float32)


def _overlay(rng: np.random.Generator, library: OverlayLibrary | None, classes: tuple[str, ...], h: int, w: int,
             scale: tuple[float, float]) -> np.ndarray | None:
    if library is None:
        return None
    alpha = None
    for _ in range(int(rng.integers(1, 4))):  # one to three overlays, each placed once
        one = library.alpha(rng, classes, h, w, float(rng.uniform(*scale)))
        if one is None:
            return None
        alpha = one if alpha is None else np.maximum(alpha, one)
    return np.where(alpha >= MIN_OVERLAY_ALPHA, alpha, 0).astype(np.float32)


Layer = Callable[[np.random.Generator, int, int, "OverlayLibrary | None"], list[tuple[np.ndarray, str]]]


def _cracks(rng, h, w, library):  # type: ignore[no-untyped-def]
    alpha = branching_cracks(rng, h, w)
    return _with_flakes(rng, alpha)


def _craquelure(rng, h, w, library):  # type: ignore[no-untyped-def]
    return _with_flakes(rng, craquelure(rng, h, w))


def _with_flakes(rng: np.random.Generator, alpha: np.ndarray) -> list[tuple[np.ndarray, str]]:
    fill = "paper" if rng.random() < 0.65 else ("light" if rng.random() < 0.7 else "dark")
    layers = [(alpha, fill)]
    if rng.random() < 0.5:
        layers.append((flakes_along(rng, alpha, float(rng.uniform(0.003, 0.02))), "paper"))
    return layers


def _tear(rng, h, w, library):  # type: ignore[no-untyped-def]
    return [(tear(rng, h, w), "paper")]


def _fold(rng, h, w, library):  # type: ignore[no-untyped-def]
    return [(fold(rng, h, w), "paper" if rng.random() < 0.5 else "light")]


def _foxing(rng, h, w, library):  # type: ignore[no-untyped-def]
    return [(foxing(rng, h, w), "brown")]


def _dust(rng, h, w, library):  # type: ignore[no-untyped-def]
    fill = "light" if rng.random() < 0.7 else "dark"
    alpha = _overlay(rng, library, SPECK_CLASSES, h, w, (0.3, 1.2)) if rng.random() < 0.6 else None
    if alpha is None and library is not None and library.outlines and rng.random() < 0.5:
        alpha = library.stamp_outlines(rng, h, w, int(rng.integers(5, 60)), float(rng.uniform(0.1, 0.5)))
    return [(alpha if alpha is not None else specks(rng, h, w), fill)]


def _fibres(rng, h, w, library):  # type: ignore[no-untyped-def]
    fill = "light" if rng.random() < 0.6 else "dark"
    alpha = _overlay(rng, library, FIBRE_CLASSES, h, w, (0.3, 1.0))
    return [(alpha if alpha is not None else hairs(rng, h, w), fill)]


def _scratches(rng, h, w, library):  # type: ignore[no-untyped-def]
    alpha = _overlay(rng, library, SCRATCH_CLASSES, h, w, (0.4, 1.5))
    if alpha is None:
        alpha = hairs(rng, h, w)
    return [(alpha, "light" if rng.random() < 0.75 else "dark")]


def _flaking(rng, h, w, library):  # type: ignore[no-untyped-def]
    """Emulsion flaked off in patches: larger chips down to the paper base along a network of fine
    cracks that is itself not drawn (missing areas, not lines)."""
    guide = craquelure(rng, h, w)
    return [(flakes_along(rng, guide, float(rng.uniform(0.01, 0.04)), radius=(2.0, 7.0)), "paper")]


REALISTIC: dict[str, tuple[float, Layer]] = {  # name -> (probability, layer maker)
    "cracks": (0.45, _cracks),
    "craquelure": (0.35, _craquelure),
    "tear": (0.15, _tear),
    "fold": (0.15, _fold),
    "foxing": (0.15, _foxing),
    "dust": (0.55, _dust),
    "fibres": (0.3, _fibres),
    "scratches": (0.35, _scratches),
}


# Kinds drawn only when asked for, by name (``kinds``) or among ``allowed``: never in the default draw,
# so every seed keeps the damage it always had.
NAMED_ONLY: dict[str, tuple[float, Layer]] = {
    "flaking": (0.5, _flaking),
}
LAYERS: dict[str, tuple[float, Layer]] = {**REALISTIC, **NAMED_ONLY}


def draw_kinds(rng: np.random.Generator, table: dict[str, tuple[float, object]],
               allowed: "Collection[str] | None") -> list[str]:
    """Each kind of ``table`` (only those in ``allowed`` when given) with its own probability, at least
    one. With ``allowed`` None it is exactly the default draw (same random numbers)."""
    if allowed is not None:
        unknown = set(allowed) - set(table)
        if unknown or not allowed:
            raise ValueError(f"unknown damage kinds {sorted(unknown)}; known: {list(table)}")
        table = {n: v for n, v in table.items() if n in allowed}
    kinds = [n for n, (p, _) in table.items() if rng.random() < p]
    if not kinds:
        kinds = [list(table)[int(rng.integers(len(table)))]]
    return kinds


def realistic_structured(img: Image, rng: np.random.Generator, library: OverlayLibrary | None = None,
                         kinds: list[str] | None = None, allowed: "Collection[str] | None" = None
                         ) -> tuple[Image, np.ndarray, list[str]]:
    """Draw realistic structured damage; returns (damaged, mask, kinds). When ``kinds`` is None, at
    least one kind is drawn: of ``REALISTIC`` (the default draw), or of ``allowed`` (which may name
    ``NAMED_ONLY`` kinds too), each with its own probability. Each layer is softened a little, as a
    scanner's optics would."""
    h, w = img.shape[:2]
    if kinds is None:
        kinds = draw_kinds(rng, REALISTIC if allowed is None else LAYERS, allowed)
    out = img.copy()
    for kind in kinds:
        for alpha, fill in LAYERS[kind][1](rng, h, w, library):
            if rng.random() < 0.5:
                alpha = cv2.GaussianBlur(alpha, (0, 0), float(rng.uniform(0.3, 0.7)))
            out = composite(out, np.clip(alpha, 0, 1) * float(rng.uniform(0.7, 1.0)), fill, rng)
    mask = np.abs(out - img).max(axis=2) >= VISIBLE_EPS
    out = np.where(mask[..., None], out, img)  # invisible changes are not damage: undo them exactly
    return out.astype(np.float32), mask, kinds
