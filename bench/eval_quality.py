"""Quality benchmark: Heirloom's weights vs the degraded input vs a classical peer, on held-out photos.

    .venv/bin/python bench/eval_quality.py [--weights default|official|PATH] [--limit N] [--side 384]
        [--out bench/results/quality]

Held-out set: the clean photos ``engine.training.data.split_holdout`` never trains on (every tenth
of ../shared/data/clean_train), each downscaled to ``--side`` and damaged with ``engine.degradation.degrade``
(seed = index). Reports PSNR / SSIM of
  (a) the degraded input,
  (b) the classical peer: OpenCV non-local-means denoising, then Telea inpainting given the TRUE mask,
  (c) Heirloom (scratch mode, its own detected mask), and (d) Heirloom given the true mask,
and the detector's precision / recall / F1 / ROC-AUC on the held-out synthetic scratches. Also writes
before/after images for every photo in ../shared/data/real_old/, and reports the colour drift on all
real scans (bench/eval_colour.py: default settings vs --correct-fading; ``--no-colour`` skips it).
Prints Markdown; asserts nothing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.core.metrics import detection_scores, psnr, ssim  # noqa: E402
from engine.core.pipeline import RestoreOptions, Restorer  # noqa: E402
from engine.degradation.degrade import degrade  # noqa: E402
from engine.device import choose_device  # noqa: E402
from engine.io.decode import read_rgb
from engine.io.encode import write_png  # noqa: E402
from engine.io.pixels import to_u8
from engine.models.checkpoints import ModelBank  # noqa: E402
from engine.store.catalogue import resolve_weights  # noqa: E402
from engine.training.data import list_photos, load_small, split_holdout  # noqa: E402

DATA = ROOT.parent / "shared" / "data"


def classical(degraded: np.ndarray, mask: np.ndarray) -> np.ndarray:
    u8 = to_u8(degraded)[..., ::-1]
    den = cv2.fastNlMeansDenoisingColored(u8, None, 7, 7, 7, 21)
    fixed = cv2.inpaint(den, mask.astype(np.uint8) * 255, 3, cv2.INPAINT_TELEA)
    return fixed[..., ::-1].astype(np.float32) / 255.0


def held_out(side: int, limit: int | None) -> list[tuple[str, np.ndarray]]:
    photos = []
    for folder in ("bsds500", "sun_hays80"):
        for path in split_holdout(list_photos(DATA / "clean_train" / folder))[1]:
            img = load_small(path, side)
            if img is not None:
                h, w = (img.shape[0] // 4) * 4, (img.shape[1] // 4) * 4
                photos.append((path.name, img[:h, :w].astype(np.float32) / 255.0))
    return photos[:limit] if limit else photos


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--weights", default="default")
    parser.add_argument("--limit", type=int)
    parser.add_argument("--side", type=int, default=384)
    parser.add_argument("--real", type=int, help="only the first N real old photos (default: all)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "quality")
    parser.add_argument("--no-colour", action="store_true", help="skip the colour drift on the real scans")
    parser.add_argument("--colour-side", type=int, default=512,
                        help="long side the real scans are downscaled to for the colour drift (0: as they are)")
    args = parser.parse_args()
    device = choose_device("auto").device
    restorer = Restorer(ModelBank(resolve_weights(args.weights), device))
    rows = {"degraded": [], "classical (NLM + Telea, true mask)": [], "heirloom": [], "heirloom (true mask)": []}
    probs, truths = [], []
    args.out.mkdir(parents=True, exist_ok=True)
    photos = held_out(args.side, args.limit)
    for i, (name, clean) in enumerate(photos):
        d = degrade(clean, seed=10_000 + i)
        result = restorer.restore(d.degraded, RestoreOptions(scratch=True))
        given = restorer.restore(d.degraded, RestoreOptions(scratch=False), user_mask=d.mask)
        for key, img in (("degraded", d.degraded), ("classical (NLM + Telea, true mask)", classical(d.degraded, d.mask)),
                         ("heirloom", result.image), ("heirloom (true mask)", given.image)):
            rows[key].append((psnr(img, clean), ssim(img, clean)))
        probs.append(result.detected.ravel())
        truths.append(d.mask.ravel())
        if i < 8:
            write_png(args.out / f"heldout_{i:02d}_{Path(name).stem}.png",
                      to_u8(np.concatenate([d.degraded, result.image, clean], axis=1)))
        print(f"{i + 1}/{len(photos)} {name}", file=sys.stderr)
    print(f"Held-out photos: {len(photos)} (long side {args.side}), weights: {args.weights}\n")
    print("| method | PSNR dB | SSIM |\n|---|---|---|")
    for key, values in rows.items():
        arr = np.array(values)
        print(f"| {key} | {arr[:, 0].mean():.2f} | {arr[:, 1].mean():.4f} |")
    scores = detection_scores(np.concatenate(probs), np.concatenate(truths), 0.4)
    print("\nDetector on held-out synthetic damage (threshold 0.4): " +
          ", ".join(f"{k} {v:.3f}" for k, v in scores.items()))
    real = sorted((DATA / "real_old").glob("*.png"))[:args.real]
    for path in real:
        image = read_rgb(path)
        result = restorer.restore(image, RestoreOptions(scratch=True))
        before_after = np.concatenate([image.astype(np.float32) / 255.0, result.image], axis=1)
        write_png(args.out / f"real_{path.stem}.png", to_u8(before_after))
    print(f"\nBefore/after images of {len(real)} real old photos in {args.out}")
    if not args.no_colour:
        from eval_colour import TwoTones, measure, real_scans, report  # bench/, next to this script

        print()
        colour = RestoreOptions()  # as the command line restores by default
        rows = measure(TwoTones(restorer.bank), real_scans(), args.colour_side, colour, log=sys.stderr)
        report(rows, args.colour_side, colour, args.weights)


if __name__ == "__main__":
    main()
