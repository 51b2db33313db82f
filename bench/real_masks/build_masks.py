"""Rebuild the real-damage reference masks from the photos and the per-photo edit files.

    .venv/bin/python bench/real_masks/build_masks.py [--only STEM ...] [--review DIR] [--data ../shared/data]

For every photo in ``manifest.json`` this reads ``edits/<stem>.json`` and
  1. finds candidates on the grey photo (ITU-R 601 luma, 0..255): white top-hat (thin bright lines,
     specks) and black-hat (thin dark lines, specks) with an elliptical kernel of ``kernel`` px;
     a pixel is a candidate when its top-/black-hat response exceeds both ``bright`` / ``dark``
     grey levels and ``texture`` x the local texture (std of the median-filtered photo over a
     ``4*kernel`` window: busy hair, grass or fabric need a stronger response than a smooth sky);
     candidates inside the ``auto_regions`` (if given; else the whole photo) survive, connected
     components smaller than ``min_area`` px are dropped;
  2. applies the hand edits in order: ``add`` / ``erase`` (polygon or rectangle), ``line`` (polyline
     of ``width`` px), ``add_dark`` / ``add_bright`` (pixels of a polygon or rectangle darker /
     brighter than ``thr`` grey levels: an emulsion blob, a paper tear);
  3. writes ``<stem>_mask.png`` (white = damage, 1-bit PNG, the photo's own size).

The app's detector is deliberately NOT a candidate source here: it was used while the masks were
drawn, as a hint of where to look, but the masks must not change when the weights change.
``--review DIR`` also writes side-by-side review images (photo | red mask overlay).
Needs only numpy, OpenCV and Pillow (and engine.io to read photos exactly as the app does).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))

from engine.io.decode import read_rgb  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
LUMA = (0.299, 0.587, 0.114)


def grey_of(rgb: np.ndarray) -> np.ndarray:
    return rgb[..., 0] * LUMA[0] + rgb[..., 1] * LUMA[1] + rgb[..., 2] * LUMA[2]


def candidates(grey: np.ndarray, params: dict) -> np.ndarray:
    """Thin bright / dark structure that stands out from its neighbourhood (bool HxW)."""
    k = int(params.get("kernel", 9)) | 1
    g = grey.astype(np.float32)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
    tophat = cv2.morphologyEx(g, cv2.MORPH_TOPHAT, kernel)
    blackhat = cv2.morphologyEx(g, cv2.MORPH_BLACKHAT, kernel)
    base = cv2.medianBlur(np.clip(g, 0, 255).astype(np.uint8), k).astype(np.float32)
    win = (4 * k) | 1
    mean = cv2.blur(base, (win, win))
    texture = np.sqrt(np.maximum(cv2.blur(base * base, (win, win)) - mean * mean, 0.0))
    alpha = float(params.get("texture", 1.5))
    out = np.zeros(g.shape, bool)
    if params.get("bright") is not None:
        out |= (tophat > float(params["bright"])) & (tophat > alpha * texture)
    if params.get("dark") is not None:
        out |= (blackhat > float(params["dark"])) & (blackhat > alpha * texture)
    return out


def _region(shape: tuple[int, int], edit: dict) -> np.ndarray:
    r = np.zeros(shape, np.uint8)
    if "rect" in edit:
        x0, y0, x1, y1 = (int(v) for v in edit["rect"])
        r[max(y0, 0):max(y1, 0), max(x0, 0):max(x1, 0)] = 1
    if "poly" in edit:
        cv2.fillPoly(r, [np.asarray(edit["poly"], np.int32).reshape(-1, 1, 2)], 1)
    return r.astype(bool)


def drop_small(mask: np.ndarray, min_area: int) -> np.ndarray:
    if min_area <= 1 or not mask.any():
        return mask
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    keep = stats[:, cv2.CC_STAT_AREA] >= min_area
    keep[0] = False
    return keep[labels]


def build_mask(rgb: np.ndarray, spec: dict) -> np.ndarray:
    grey = grey_of(rgb.astype(np.float32))
    h, w = grey.shape
    auto = spec.get("auto")
    mask = candidates(grey, auto) if auto else np.zeros((h, w), bool)
    if auto and auto.get("regions"):
        allowed = np.zeros((h, w), bool)
        for region in auto["regions"]:
            allowed |= _region((h, w), region)
        mask &= allowed
    if auto:
        mask = drop_small(mask, int(auto.get("min_area", 4)))
        if auto.get("grow", 0):
            mask = cv2.dilate(mask.astype(np.uint8), np.ones((3, 3), np.uint8),
                              iterations=int(auto["grow"])).astype(bool)
    for edit in spec.get("edits", []):
        op = edit["op"]
        if op == "add":
            mask |= _region((h, w), edit)
        elif op == "erase":
            mask &= ~_region((h, w), edit)
        elif op == "line":
            canvas = np.zeros((h, w), np.uint8)
            cv2.polylines(canvas, [np.asarray(edit["pts"], np.int32).reshape(-1, 1, 2)], False, 1,
                          thickness=int(edit.get("width", 2)))
            mask |= canvas.astype(bool)
        elif op in ("add_dark", "add_bright"):
            region = _region((h, w), edit)
            sel = grey < float(edit["thr"]) if op == "add_dark" else grey > float(edit["thr"])
            mask |= region & drop_small(sel & region, int(edit.get("min_area", 1)))
        else:
            raise ValueError(f"unknown edit op {op!r}")
    return mask


def write_mask(path: Path, mask: np.ndarray) -> None:
    Image.fromarray(mask.astype(np.uint8) * 255).convert("1").save(path, optimize=True)


def review_image(rgb: np.ndarray, mask: np.ndarray) -> np.ndarray:
    over = rgb.copy()
    over[mask] = (0.35 * over[mask] + 0.65 * np.array([255, 0, 0])).astype(np.uint8)
    return np.concatenate([rgb, over], axis=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--only", nargs="*")
    parser.add_argument("--review", type=Path)
    args = parser.parse_args()
    manifest = json.loads((HERE / "manifest.json").read_text(encoding="utf-8"))
    for entry in manifest["photos"]:
        stem = entry["stem"]
        if args.only and stem not in args.only:
            continue
        rgb = read_rgb(args.data / entry["path"])
        spec = json.loads((HERE / "edits" / f"{stem}.json").read_text(encoding="utf-8"))
        mask = build_mask(rgb, spec)
        if list(mask.shape) != [entry["height"], entry["width"]]:
            raise SystemExit(f"{stem}: photo is {mask.shape}, manifest says {entry['height']}x{entry['width']}")
        write_mask(HERE / f"{stem}_mask.png", mask)
        if args.review:
            args.review.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(args.review / f"{stem}.png"), review_image(rgb, mask)[..., ::-1])
        print(f"{stem}: {mask.mean() * 100:.2f}% damage", flush=True)


if __name__ == "__main__":
    main()
