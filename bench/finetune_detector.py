"""Does *Teach the detector* help? Held-out precision / recall / F1 before and after a fine-tune.

    .venv/bin/python bench/finetune_detector.py [--minutes 1] [--limit 40] [--side 640]
        [--base default|official|profile:NAME|PATH | --detector-run training-runs/lite/detector]
        [--threads N] [--out bench/results/finetune_detector]

Data: real old scans from ../shared/data/real_old/ (downscaled to ``--side``), each given damage in an
"archive style" that ``engine.degradation.degrade`` does not draw - long, nearly vertical film scratches running
most of the frame, and brown foxing spots - composited with an exact mask (every pixel the damage
changed). That stands in for masks an archivist brushed on their own collection: a damage style the
detector has not been trained on, on real old photos. The fine-tune holds out one photo in five (the
same rule as the app) and scores the held-out photos exactly as a restore would (detector at the
official 256 px scale, threshold 0.4). Run by hand; asserts nothing; prints Markdown.

``--detector-run`` uses the detector of a training run's checkpoint (e.g. while the default weights
are still training).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.io.encode import write_png  # noqa: E402
from engine.io.pixels import to_u8
from engine.progress import Progress  # noqa: E402
from engine.training.config import CONFIGS  # noqa: E402
from engine.training.data import list_photos, load_small  # noqa: E402
from engine.training.finetune.session import (  # noqa: E402
    Budget,
    DetectorData,
    FinetuneJob,
    FinetuneSession,
)
from engine.training.loop import export_weights  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "real_old"


def archive_damage(img: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """HxWx3 float [0,1] -> (damaged, mask): film scratches and foxing, exact mask."""
    h, w = img.shape[:2]
    out = img.copy()
    for _ in range(int(rng.integers(1, 5))):  # long vertical scratches, light (emulsion gone) or dark
        x0 = rng.uniform(0.05, 0.95) * w
        drift = rng.uniform(-0.04, 0.04) * w
        y0, y1 = int(rng.uniform(0, 0.3) * h), int(rng.uniform(0.7, 1.0) * h)
        layer = np.zeros((h, w), np.float32)
        pts = np.array([[x0 + drift * t + rng.normal(0, 0.6), y0 + (y1 - y0) * t] for t in np.linspace(0, 1, 24)])
        cv2.polylines(layer, [pts.astype(np.int32)], False, 1.0, int(rng.integers(1, 3)), cv2.LINE_AA)
        tone = rng.uniform(0.85, 1.0) if rng.random() < 0.7 else rng.uniform(0.05, 0.2)
        alpha = layer[..., None] * rng.uniform(0.6, 0.95)
        out = out * (1 - alpha) + tone * alpha
    for _ in range(int(rng.integers(3, 12))):  # foxing: soft brown spots with a darker rim
        cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(1.5, 0.012 * max(h, w) + 2)
        yy, xx = np.ogrid[:h, :w]
        d = np.sqrt((yy - cy) ** 2 + ((xx - cx) * rng.uniform(0.7, 1.3)) ** 2) / r
        alpha = (np.clip(1.2 - d, 0, 1) * rng.uniform(0.3, 0.7)).astype(np.float32)[..., None]
        out = out * (1 - alpha) + np.array([0.55, 0.38, 0.2], np.float32) * alpha
    out = np.clip(out, 0, 1).astype(np.float32)
    mask = np.abs(out - img).max(axis=2) >= 1 / 255
    return np.where(mask[..., None], out, img), mask


def make_dataset(folder: Path, limit: int, side: int, seed: int) -> int:
    paths = list_photos(DATA)[:limit]
    rng = np.random.default_rng(seed)
    for p in paths:
        img = load_small(p, side)
        if img is None:
            continue
        damaged, mask = archive_damage(img.astype(np.float32) / 255.0, rng)
        write_png(folder / "images" / f"{p.stem}.png", to_u8(damaged))
        write_png(folder / "masks" / f"{p.stem}.png", mask.astype(np.uint8) * 255)
    return len(paths)


def detector_weights(run: Path, dest: Path) -> Path:
    """A weights folder holding only the detector of a training run (lite shapes)."""
    state = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=True)
    config = CONFIGS[state["config"]]
    kwargs = config.arch.network_kwargs()["detector"]
    export_weights({"detector": state["nets"]["U"]}, dest, {"name": f"{run.name}@{state['step']}",
                                                           "networks": {"detector": kwargs},
                                                           "output_tone": config.output_tone})
    return dest


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=1.0)
    ap.add_argument("--limit", type=int, default=40)
    ap.add_argument("--side", type=int, default=640)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--base", default="default")
    ap.add_argument("--detector-run", type=Path)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "finetune_detector")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="heirloom-ft-bench-") as tmp:
        tmp = Path(tmp)
        count = make_dataset(tmp, args.limit, args.side, args.seed)
        base = str(detector_weights(args.detector_run, tmp / "base")) if args.detector_run else args.base
        job = FinetuneJob(DetectorData(tmp / "images", tmp / "masks"), tmp / "work", base, Budget(minutes=args.minutes))
        session = FinetuneSession(job, torch.device("cpu"))
        t0 = time.perf_counter()
        summary = session.prepare()
        losses = []
        for metrics in session.run(progress=Progress()):
            losses.append(metrics["focal"])
        after = session.evaluate()
        wall = time.perf_counter() - t0
        args.out.mkdir(parents=True, exist_ok=True)
        for i, pv in enumerate(session.preview(3)):
            write_png(args.out / f"preview_{i}.png", to_u8(np.concatenate([pv.before, pv.after], axis=1)))
    before = session.before
    rows = [("before", before), ("after", after)]
    print(f"## Detector fine-tune on real old scans with archive-style damage\n")
    print(f"- photos: {count} from {DATA} at {args.side} px (labelled {summary.counts.get('labelled')}, held out "
          f"{summary.counts.get('held_out')}); base: {args.detector_run or args.base}")
    print(f"- fine-tune: {session.step} steps in {session.seconds:.0f} s of training ({wall:.0f} s wall, "
          f"{args.threads} thread(s)); focal loss {np.mean(losses[:10]):.4f} (first 10) -> "
          f"{np.mean(losses[-10:]):.4f} (last 10)\n")
    print("| weights | precision | recall | F1 | ROC-AUC |\n|---|---|---|---|---|")
    for label, m in rows:
        print(f"| {label} | {m['precision']:.3f} | {m['recall']:.3f} | {m['f1']:.3f} | {m['auc']:.3f} |")
    (args.out / "scores.json").write_text(json.dumps({"before": before, "after": after, "steps": session.step,
                                                       "seconds": session.seconds}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
