"""Detection overlays to look at: the mask the restore would use (``damage_mask``), red over the photo.

    .venv/bin/python bench/detection_overlays.py [PHOTO...] [--weights default] [--scale official]
        [--threshold 0.4] [--out bench/results/detection/overlays]

Default photos: ../shared/data/real_old/scratched_a.png, scratched_b.png and the app's sample photo
(``engine.jobs.sample``). For each photo and setting it writes ``<stem>_<scale>_<thr>.png`` (face
protection on, as restored by default), ``..._unprotected.png`` (off) and, per face found, a 200 %
crop of the eyes and mouth of both (``..._face<N>.png``: left protected, right unprotected).
Prints the marked fraction and how many marked pixels face protection cleared. Asserts nothing.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.core.detection import OFFICIAL_THRESHOLD, parse_detection_scale  # noqa: E402
from engine.core.faces.regions import find_landmarks  # noqa: E402
from engine.core.pipeline import RestoreOptions, as_float_rgb, damage_mask  # noqa: E402
from engine.device import choose_device  # noqa: E402
from engine.io.decode import read_rgb  # noqa: E402
from engine.jobs.sample import make_sample_photo  # noqa: E402
from engine.models.checkpoints import ModelBank  # noqa: E402
from engine.store.catalogue import resolve_weights  # noqa: E402

DATA = ROOT.parent / "shared" / "data"


def red(rgb: np.ndarray, mask: np.ndarray) -> np.ndarray:
    out = rgb.copy()
    out[mask] = (255, 0, 0)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("photos", nargs="*", type=Path)
    parser.add_argument("--weights", default="default")
    parser.add_argument("--scale", default="official")
    parser.add_argument("--threshold", type=float, default=OFFICIAL_THRESHOLD)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "detection" / "overlays")
    args = parser.parse_args()
    scale = parse_detection_scale(args.scale)
    photos = args.photos or [DATA / "real_old" / "scratched_a.png", DATA / "real_old" / "scratched_b.png",
                             make_sample_photo(Path(tempfile.mkdtemp()))]
    args.out.mkdir(parents=True, exist_ok=True)
    bank = ModelBank(resolve_weights(args.weights), choose_device("cpu").device)
    for path in photos:
        rgb = read_rgb(path)
        tag = f"{path.stem}_{scale}_{args.threshold:g}"
        options = RestoreOptions(scratch=True, detection_scale=scale, threshold=args.threshold)
        on, _, report, _ = damage_mask(bank, as_float_rgb(rgb), options)
        off = damage_mask(bank, as_float_rgb(rgb), RestoreOptions(scratch=True, detection_scale=scale,
                                                                  threshold=args.threshold, protect_faces=False)).holes
        cv2.imwrite(str(args.out / f"{tag}.png"), red(rgb, on)[..., ::-1])
        cv2.imwrite(str(args.out / f"{tag}_unprotected.png"), red(rgb, off)[..., ::-1])
        print(f"{path.name}: {rgb.shape[1]}x{rgb.shape[0]}, marked {100 * off.mean():.2f}% "
              f"({100 * on.mean():.2f}% with face protection: {report.describe()})")
        for n, lm in enumerate(find_landmarks(rgb), 1):
            iod = float(np.linalg.norm(lm[1] - lm[0]))
            x0, y0 = (lm[:, 0].min() - 0.6 * iod), (lm[:, 1].min() - 0.6 * iod)
            x1, y1 = (lm[:, 0].max() + 0.6 * iod), (lm[:, 1].max() + 0.6 * iod)
            x0, y0 = max(0, int(x0)), max(0, int(y0))
            x1, y1 = min(rgb.shape[1], int(x1)), min(rgb.shape[0], int(y1))
            crops = [red(rgb, m)[y0:y1, x0:x1] for m in (on, off)]
            both = np.concatenate([crops[0], np.full((y1 - y0, 4, 3), 255, np.uint8), crops[1]], axis=1)
            both = cv2.resize(both, None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST)
            cv2.imwrite(str(args.out / f"{tag}_face{n}.png"), both[..., ::-1])
            eyes = sum(int(off[max(0, int(y) - 3):int(y) + 4, max(0, int(x) - 3):int(x) + 4].any()) for x, y in lm[:2])
            print(f"  face {n}: eyes {iod:.0f} px apart, {eyes} of 2 pupils marked without protection")


if __name__ == "__main__":
    main()
