"""Which rows of the partial non-local attention must be exact: time against difference (issue 18).

    .venv/bin/python bench/attention_rows.py [--weights default] [--size 1024] [--photos N] [--threads 2]
        [--out docs/benchmarks/attention-rows.md]

Real damaged photos of bench/real_masks (../shared/data), resized so the short side is ``--size`` and
centre-cropped to a square, restored in scratch mode with their hand-checked reference mask as the
hole mask (a realistic amount of damage), once per variant, interleaved in one process after a
warm-up:

* ``all``: every row exact (the official computation);
* ``holes``: rows of hole cells exact, the others local (what ``attention_rows: holes`` runs);
* ``holes+reach``: also the rows within the residual blocks' reach of a hole exact.

Reports restoration seconds and the PSNR of each variant's output against ``all`` (at strength 1, so
the whole photo goes through the networks). Prints Markdown; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from functools import partialmethod
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from engine.core import pipeline  # noqa: E402
from engine.core.pipeline import RestoreOptions, Restorer  # noqa: E402
from engine.io.decode import read_mask, read_rgb  # noqa: E402
from engine.models.checkpoints import ModelBank  # noqa: E402
from engine.models.networks.partial_nonlocal import PartialNonLocalBlock  # noqa: E402
from engine.store.catalogue import resolve_weights  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
MASKS = ROOT / "bench" / "real_masks"


def square(photo: np.ndarray, mask: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    scale = size / min(photo.shape[:2])
    photo = cv2.resize(photo, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
    mask = cv2.resize(mask.astype(np.uint8), None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST) > 0
    y0, x0 = (photo.shape[0] - size) // 2, (photo.shape[1] - size) // 2
    return np.clip(photo[y0:y0 + size, x0:x0 + size], 0, 1), mask[y0:y0 + size, x0:x0 + size]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(1.0 / mse)


class Variant:
    """Sets the bank's card choice and the exact reach for one run."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __enter__(self):
        rows = "all" if self.name == "all" else "holes"
        self.saved = pipeline.plan_restore
        original = self.saved

        def plan_with_rows(*args, **kwargs):
            from dataclasses import replace

            return replace(original(*args, **kwargs), attention_rows=rows)

        pipeline.plan_restore = plan_with_rows
        if self.name == "holes+reach":
            self.saved_rows = PartialNonLocalBlock._hole_rows
            PartialNonLocalBlock._hole_rows = partialmethod(self.saved_rows, exact_reach=None)
        return self

    def __exit__(self, *exc) -> None:
        pipeline.plan_restore = self.saved
        if self.name == "holes+reach":
            PartialNonLocalBlock._hole_rows = self.saved_rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default="default")
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--photos", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "attention-rows.md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    manifest = json.loads((MASKS / "manifest.json").read_text(encoding="utf-8"))["photos"][: args.photos]
    bank = ModelBank(resolve_weights(args.weights), torch.device("cpu"))
    restorer = Restorer(bank)
    options = RestoreOptions(scratch=True, faces=False, strength=1.0, tile="off")
    variants = ("all", "holes", "holes+reach")
    lines = [f"Weights {args.weights}, photos resized to {args.size} x {args.size}, scratch mode with the "
             "reference mask, strength 1, untiled; seconds = restoration only.", "",
             "| photo | holes % | " + " | ".join(f"{v} s" for v in variants) + " | holes PSNR dB | holes+reach PSNR dB |",
             "|---|---|" + "---|" * (len(variants) + 2)]
    print("\n".join(lines), flush=True)
    warm = np.full((64, 64, 3), 0.5, np.float32)
    restorer.restore(warm, options, np.eye(64, dtype=bool))
    for entry in manifest:
        raw = read_rgb(DATA / entry["path"])
        photo = raw.astype(np.float32) / (65535.0 if raw.dtype == np.uint16 else 255.0)
        photo, mask = square(photo, read_mask(MASKS / f"{entry['stem']}_mask.png"), args.size)
        outputs, seconds = {}, {}
        for variant in variants:
            with Variant(variant):
                t0 = time.perf_counter()
                outputs[variant] = restorer.restore(photo, options, mask).image
                seconds[variant] = time.perf_counter() - t0
        lines.append(f"| {entry['stem']} | {100 * mask.mean():.1f} | "
                     + " | ".join(f"{seconds[v]:.1f}" for v in variants)
                     + f" | {psnr(outputs['holes'], outputs['all']):.1f} | {psnr(outputs['holes+reach'], outputs['all']):.1f} |")
        print(lines[-1], flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
