"""Write ``fast-calibration.json`` for a folder of safetensors weights: the input range of every int8
convolution of ``--precision fast`` (engine.core.fast), over photos that are not the ones the
benchmark evaluates on (bench/bench_fast.py uses old_a, scratched_a and old_c).

    .venv/bin/python scripts/calibrate_fast.py [--weights resources/weights/heirloom-lite-v1]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.core.fast import CALIBRATION_FILE, calibrate, weights_digest  # noqa: E402
from engine.core.translation import NETWORKS, Mode  # noqa: E402
from engine.models.checkpoints import ModelBank, SafetensorsSource  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
PHOTOS = ["real_old/deoldify/*", "clean_train/bsds500/*", "clean_train/sun_hays80/*"]


def load(path: Path, side: int) -> torch.Tensor:
    im = Image.open(path).convert("RGB")
    im.thumbnail((side, side), Image.BICUBIC)
    w, h = (im.width // 4) * 4, (im.height // 4) * 4
    arr = np.asarray(im.crop((0, 0, w, h)), np.float32) / 255.0
    return torch.from_numpy(arr).permute(2, 0, 1)[None] * 2 - 1


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--weights", type=Path, default=ROOT / "resources" / "weights" / "heirloom-lite-v1")
    parser.add_argument("--per-folder", type=int, default=4)
    parser.add_argument("--side", type=int, default=384)
    args = parser.parse_args()
    torch.set_flush_denormal(True)
    photos = [p for pattern in PHOTOS for p in sorted(DATA.glob(pattern))[: args.per_folder]]
    images = [load(p, args.side) for p in photos]
    masks = []
    for image in images:  # a few thin synthetic scratches, for the scratch chain
        mask = torch.zeros_like(image[:, :1])
        mask[..., image.shape[-2] // 3, :] = 1.0
        mask[..., :, image.shape[-1] // 2] = 1.0
        masks.append(mask)
    bank = ModelBank(SafetensorsSource(args.weights), torch.device("cpu"))
    with torch.inference_mode():
        ranges = calibrate(bank, images, masks)
    names = sorted({n for mode in (Mode.QUALITY, Mode.SCRATCH) for n in NETWORKS[mode]})
    card = {"about": "input ranges of the int8 convolutions of --precision fast (scripts/calibrate_fast.py)",
            "photos": [str(p.relative_to(DATA)) for p in photos], "side": args.side,
            "files": weights_digest(args.weights, names),
            "ranges": {k: {c: [round(lo, 6), round(hi, 6)] for c, (lo, hi) in v.items()} for k, v in ranges.items() if v}}
    out = args.weights / CALIBRATION_FILE
    out.write_text(json.dumps(card, indent=1) + "\n", encoding="utf-8")
    print(f"{out}: {sum(len(v) for v in card['ranges'].values())} convolutions from {len(photos)} photos")


if __name__ == "__main__":
    main()
