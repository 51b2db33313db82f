"""Detection benchmark: the damage detector on REAL damaged photos, on synthetic damage and on faces.

    .venv/bin/python bench/eval_detection.py [--weights default|official|PATH] [--scale official|full|N]
        [--threshold 0.4] [--split test|calib|all] [--sweep [--scales official,384,512,full]]
        [--synthetic-limit N] [--no-synthetic] [--no-faces] [--face-limit N] [--protect-faces] [--out bench/results/detection]

(a) Real set: the photos of ``bench/real_masks/manifest.json`` (from ../shared/data) against their
    hand-checked reference masks (``bench/real_masks/<stem>_mask.png``; see bench/real_masks/README.md).
    ``--protect-faces`` scores the mask a restore uses (the mask policy clears eyes and mouths).
    Per photo and mean precision / recall / F1 with a 3 px tolerance
    (``engine.core.metrics.tolerant_precision_recall``), for the calib and the test split separately, and an
    overlay per photo (reference green, detection red, both yellow) in ``--out``.
    ``--sweep``: the same means over thresholds 0.1..0.9 and the ``--scales`` list, to choose the
    default scale and threshold on the calib split (never on test).
(b) Synthetic damage: the held-out photos and damage of bench/eval_quality.py (its ``held_out`` and
    ``engine.degradation.degrade`` with seed 10000 + i), the detector's probability from ``engine.core.pipeline.damage_mask``
    as a restore computes it, scored by ``engine.core.metrics.detection_scores`` (exact pixels, as there).
(c) Faces (false alarms): clean photos of ../shared/data/clean_train/bsds500 where the MTCNN detector
    (engine.core.faces.detect) finds a face (score >= 0.95, eyes >= 12 px apart); the eye and mouth regions
    of ``engine.core.faces.regions`` (eye discs of radius 0.3 x inter-ocular distance, a mouth ellipse through
    the mouth corners, half-height 0.2 x inter-ocular distance: the regions the mask policy protects); reports
    the fraction of those pixels marked as damage without and with face protection (the policy's
    ``protect_faces``, which finds the faces itself), overall and per photo.

Writes ``results.json`` and Markdown (also printed) to ``--out``. Run by hand; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from engine.cli.app import argument_type  # noqa: E402
from engine.core.detection import (  # noqa: E402
    OFFICIAL_THRESHOLD,
    parse_detection_scale,
    scratch_probability,
)
from engine.core.faces.regions import face_regions, protect_faces, protect_probability  # noqa: E402
from engine.core.metrics import detection_scores, tolerant_precision_recall  # noqa: E402
from engine.device import choose_device  # noqa: E402
from engine.io.decode import read_mask, read_rgb  # noqa: E402
from engine.models.checkpoints import ModelBank  # noqa: E402
from engine.store.catalogue import resolve_weights  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
MASKS = ROOT / "bench" / "real_masks"
TOLERANCE_PX = 3.0
THRESHOLDS = [round(0.1 * i, 1) for i in range(1, 10)]


def load_manifest() -> list[dict]:
    return json.loads((MASKS / "manifest.json").read_text(encoding="utf-8"))["photos"]


def overlay(rgb: np.ndarray, ref: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Photo darkened to grey, reference green, detection red, both yellow."""
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    out = np.repeat((grey * 0.6)[..., None], 3, axis=2).astype(np.uint8)
    out[ref & ~pred] = (0, 255, 0)
    out[pred & ~ref] = (255, 0, 0)
    out[pred & ref] = (255, 255, 0)
    return out


def mean_scores(rows: list[dict]) -> dict[str, float]:
    return {k: float(np.mean([r[k] for r in rows])) if rows else float("nan") for k in ("precision", "recall", "f1")}


def real_set(bank: ModelBank, photos: list[dict], scales: list, thresholds: list[float], data: Path,
             out: Path, overlay_scale, overlay_threshold: float, protect: bool = False) -> dict:
    """{scale: {threshold: [per-photo rows]}} over ``photos``; writes overlays at one scale/threshold."""
    table: dict = {str(s): {t: [] for t in thresholds} for s in scales}
    for entry in photos:
        rgb = read_rgb(data / entry["path"])
        ref = read_mask(MASKS / f"{entry['stem']}_mask.png")
        for scale in scales:
            t0 = time.perf_counter()
            prob = scratch_probability(bank, rgb, scale)
            if protect:  # what a restore marks: the mask policy clears eyes and mouths
                prob, _ = protect_probability(prob, rgb)
            seconds = time.perf_counter() - t0
            for t in thresholds:
                pred = prob >= t
                row = {"stem": entry["stem"], "split": entry["split"], "seconds": seconds,
                       "coverage": float(pred.mean()), **tolerant_precision_recall(pred, ref, TOLERANCE_PX)}
                table[str(scale)][t].append(row)
                if scale == overlay_scale and abs(t - overlay_threshold) < 1e-9:
                    cv2.imwrite(str(out / f"overlay_{entry['stem']}_{scale}.png"), overlay(rgb, ref, pred)[..., ::-1])
        print(f"real: {entry['stem']} done", file=sys.stderr, flush=True)
    return table


def synthetic(bank: ModelBank, scale, threshold: float, limit: int | None) -> dict[str, float]:
    from eval_quality import (
        held_out,  # the quality benchmark's held-out photos (same list, same order)
    )

    from engine.core.pipeline import RestoreOptions, damage_mask
    from engine.degradation.degrade import degrade

    probs, truths = [], []
    for i, (_, clean) in enumerate(held_out(384, limit)):
        d = degrade(clean, seed=10_000 + i)  # the seeds eval_quality.py uses
        detected = damage_mask(bank, d.degraded, RestoreOptions(scratch=True, detection_scale=scale)).detected
        probs.append(detected.ravel())
        truths.append(d.mask.ravel())
    scores = detection_scores(np.concatenate(probs), np.concatenate(truths), threshold)
    return {**scores, "photos": len(probs)}


def face_photos(folder: Path, cache: Path, limit: int | None) -> list[dict]:
    """[{name, landmarks: [[...5x2]...]}] for photos with a confident face; cached in ``cache``."""
    if cache.exists():
        found = json.loads(cache.read_text(encoding="utf-8"))
    else:
        from engine.core.faces.detect import detect_faces

        found = []
        for path in sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png")):
            faces = [f for f in detect_faces(read_rgb(path)) if f.score >= 0.95
                     and np.linalg.norm(f.landmarks[1] - f.landmarks[0]) >= 12]
            if faces:
                found.append({"name": path.name, "landmarks": [f.landmarks.tolist() for f in faces]})
        cache.write_text(json.dumps(found), encoding="utf-8")
    return found[:limit] if limit else found


def faces(bank: ModelBank, scale, threshold: float, limit: int | None, out: Path) -> dict:
    """Eye+mouth false alarms on clean photos with faces, without and with face protection (the mask
    policy's step, ``engine.core.faces.regions.protect_faces``, which finds the faces again itself on
    a downscaled copy: what a restore does, not the benchmark's own landmarks)."""
    folder = DATA / "clean_train" / "bsds500"
    rows, flagged, flagged_protected, total = [], 0, 0, 0
    for item in face_photos(folder, out / "faces_bsds500.json", limit):
        rgb = read_rgb(folder / item["name"])
        region = face_regions(rgb.shape[:2], [np.asarray(lm) for lm in item["landmarks"]])
        pred = scratch_probability(bank, rgb, scale) >= threshold
        protected, report = protect_faces(pred, rgb)
        hit, hit_protected = int((pred & region).sum()), int((protected & region).sum())
        rows.append({"name": item["name"], "faces": len(item["landmarks"]), "region_px": int(region.sum()),
                     "fraction": hit / max(int(region.sum()), 1),
                     "fraction_protected": hit_protected / max(int(region.sum()), 1),
                     "protection": report.describe()})
        flagged, flagged_protected = flagged + hit, flagged_protected + hit_protected
        total += int(region.sum())
    return {"fraction": flagged / max(total, 1), "fraction_protected": flagged_protected / max(total, 1),
            "photos": len(rows), "photos_any": sum(r["fraction"] > 0 for r in rows),
            "photos_any_protected": sum(r["fraction_protected"] > 0 for r in rows), "per_photo": rows}


def fmt(v: float) -> str:
    return f"{v:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--weights", default="default")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--scale", type=argument_type(parse_detection_scale), default="official",
                        help="detection short side: official (256), full or N px")
    parser.add_argument("--threshold", type=float, default=OFFICIAL_THRESHOLD)
    parser.add_argument("--split", choices=["test", "calib", "all"], default="all")
    parser.add_argument("--sweep", action="store_true", help="thresholds 0.1..0.9 over --scales")
    parser.add_argument("--scales", default="official,384,512,full")
    parser.add_argument("--synthetic-limit", type=int, help="only the first N held-out synthetic photos")
    parser.add_argument("--no-synthetic", action="store_true")
    parser.add_argument("--face-limit", type=int, help="only the first N photos with faces")
    parser.add_argument("--no-faces", action="store_true")
    parser.add_argument("--protect-faces", action="store_true",
                        help="real set: score what a restore marks (eyes and mouths cleared by the mask policy)")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "detection")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    bank = ModelBank(resolve_weights(args.weights), choose_device(args.device).device)
    photos = [p for p in load_manifest() if args.split == "all" or p["split"] == args.split]
    scales = [parse_detection_scale(s) for s in args.scales.split(",")] if args.sweep else [args.scale]
    if args.scale not in scales:
        scales.insert(0, args.scale)
    thresholds = sorted(set(THRESHOLDS + [args.threshold])) if args.sweep else [args.threshold]
    table = real_set(bank, photos, scales, thresholds, args.data, args.out, args.scale, args.threshold,
                     args.protect_faces)

    lines = [f"# Detection benchmark: weights {args.weights}, scale {args.scale}, threshold {args.threshold}"
             + (", eyes and mouths cleared (--protect-faces)" if args.protect_faces else ""),
             "", f"Real damaged photos: {len(photos)} (split {args.split}), tolerance {TOLERANCE_PX:g} px", "",
             "| photo | split | precision | recall | F1 | marked % |", "|---|---|---|---|---|---|"]
    rows = table[str(args.scale)][args.threshold]
    for r in rows:
        lines.append(f"| {r['stem']} | {r['split']} | {fmt(r['precision'])} | {fmt(r['recall'])} | {fmt(r['f1'])} "
                     f"| {100 * r['coverage']:.2f} |")
    summary: dict = {"weights": args.weights, "scale": str(args.scale), "threshold": args.threshold, "real": {}}
    for split in ("calib", "test"):
        sel = [r for r in rows if r["split"] == split]
        if sel:
            m = mean_scores(sel)
            summary["real"][split] = m
            lines.append(f"| **mean {split}** ({len(sel)}) | | {fmt(m['precision'])} | {fmt(m['recall'])} "
                         f"| {fmt(m['f1'])} | |")
    if args.sweep:
        summary["sweep"] = {}
        for split in ("calib", "test"):
            if not any(r["split"] == split for r in rows):
                continue
            lines += ["", f"Sweep, {split} split, mean F1 (precision / recall):", "",
                      "| scale | " + " | ".join(str(t) for t in thresholds) + " |",
                      "|---|" + "---|" * len(thresholds)]
            for scale in scales:
                cells = []
                for t in thresholds:
                    m = mean_scores([r for r in table[str(scale)][t] if r["split"] == split])
                    summary["sweep"].setdefault(split, {}).setdefault(str(scale), {})[str(t)] = m
                    cells.append(f"{m['f1']:.3f} ({m['precision']:.2f}/{m['recall']:.2f})")
                lines.append(f"| {scale} | " + " | ".join(cells) + " |")
    if not args.no_synthetic:
        syn = synthetic(bank, args.scale, args.threshold, args.synthetic_limit)
        summary["synthetic"] = syn
        lines += ["", f"Synthetic held-out damage ({syn['photos']} photos, exact pixels, as bench/eval_quality.py): "
                  + ", ".join(f"{k} {syn[k]:.3f}" for k in ("precision", "recall", "f1", "auc"))]
    if not args.no_faces:
        fc = faces(bank, args.scale, args.threshold, args.face_limit, args.out)
        summary["faces"] = fc
        worst = sorted(fc["per_photo"], key=lambda r: -r["fraction"])[:5]
        lines += ["", f"Faces (false alarms): {100 * fc['fraction']:.2f}% of eye+mouth pixels marked as damage "
                  f"without face protection, {100 * fc['fraction_protected']:.2f}% with it (the default), "
                  f"over {fc['photos']} clean bsds500 photos with faces ({fc['photos_any']} / "
                  f"{fc['photos_any_protected']} with any marked); worst without: "
                  + ", ".join(f"{r['name']} {100 * r['fraction']:.1f}% (with: {100 * r['fraction_protected']:.1f}%)"
                              for r in worst)]
    summary["per_photo"] = rows
    summary["all_rows"] = {scale: {str(t): r for t, r in by_t.items()} for scale, by_t in table.items()}
    tag = f"{Path(args.weights).name}_{args.scale}_{args.threshold:g}_{args.split}" + ("_sweep" if args.sweep else "")
    (args.out / f"results_{tag}.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
    (args.out / f"results_{tag}.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
