"""``--precision fast`` against float32, by hand (asserts nothing): interleaved network time
(fp32 PyTorch, fast, alternating, median of --reps) and PSNR against the fp32 output, per mode and
size, and per real photo both at the network output (strength 1) and on the final restored RGB
(the weights' own strength and tone). Photos are not the calibration photos (scripts/calibrate_fast.py).

    .venv/bin/python bench/bench_fast.py [--sizes 512,1024] [--modes quality,scratch] [--reps 3]
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.core.detection import NO_DETECTION  # noqa: E402
from engine.core.fast import fast_bank, psnr  # noqa: E402
from engine.core.pipeline import Restorer, RestoreOptions  # noqa: E402
from engine.core.translation import Mode, translate  # noqa: E402
from engine.device import choose_device  # noqa: E402
from engine.models.checkpoints import ModelBank  # noqa: E402
from engine.store.catalogue import resolve_weights  # noqa: E402

PHOTOS = [ROOT.parent / "shared" / "data" / "real_old" / n for n in ("old_a.png", "scratched_a.png", "old_c.png")]


def load(path: Path, side: int) -> np.ndarray:
    im = Image.open(path).convert("RGB")
    w, h = im.size
    s = min(w, h)
    im = im.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s)).resize((side, side), Image.BICUBIC)
    return np.asarray(im, np.float32) / 255.0


def scratch_mask(side: int) -> np.ndarray:
    mask = np.zeros((side, side), bool)
    mask[side // 3, :] = mask[:, side // 2] = True
    return mask


def rgb_psnr(a: np.ndarray, b: np.ndarray) -> float:
    return 10 * math.log10(1.0 / max(float(((a - b) ** 2).mean()), 1e-20))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="512,1024")
    parser.add_argument("--modes", default="quality,scratch")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--weights", default="default")
    args = parser.parse_args()
    device = choose_device("cpu").device
    bank = ModelBank(resolve_weights(args.weights), device)
    restorer = Restorer(bank)
    print(f"threads {torch.get_num_threads()}; weights {args.weights}")
    print("| mode | size | fp32 s | fast s | speed-up | PSNR network (3 photos) | PSNR final RGB (3 photos) |")
    print("|---|---|---|---|---|---|---|")
    for mode_name in args.modes.split(","):
        mode = Mode(mode_name)
        t0 = time.perf_counter()
        fast = fast_bank(bank, mode)
        convert_s = time.perf_counter() - t0
        for side in map(int, args.sizes.split(",")):
            mask = scratch_mask(side) if mode.uses_mask else None
            mask_t = torch.from_numpy(mask.astype(np.float32))[None, None] if mask is not None else None
            net_psnr, rgb = [], []
            for photo in PHOTOS:
                x = torch.from_numpy(load(photo, side)).permute(2, 0, 1)[None] * 2 - 1
                if mask is not None:
                    x = x.masked_fill(torch.from_numpy(mask)[None, None], 1.0)
                net_psnr.append(psnr(translate(bank, x, mask_t, mode).generated, translate(fast, x, mask_t, mode).generated))
                outs = []
                for precision in ("fp32", "fast"):
                    options = RestoreOptions(scratch=mode.uses_mask, detection_scale=NO_DETECTION if mode.uses_mask else "official",
                                             precision=precision, faces=False)
                    outs.append(restorer.restore(load(photo, side), options, user_mask=mask).image)
                rgb.append(rgb_psnr(*outs))
            x = torch.from_numpy(load(PHOTOS[0], side)).permute(2, 0, 1)[None] * 2 - 1
            times: dict[str, list[float]] = {"fp32": [], "fast": []}
            for _ in range(args.reps):  # interleaved: the machine is shared
                for name, nets in (("fp32", bank), ("fast", fast)):
                    t0 = time.perf_counter()
                    translate(nets, x, mask_t, mode)
                    times[name].append(time.perf_counter() - t0)
            a, b = statistics.median(times["fp32"]), statistics.median(times["fast"])
            print(f"| {mode.value} | {side}² | {a:.2f} | {b:.2f} | {a / b:.2f}x | "
                  f"{' / '.join(f'{p:.1f}' for p in net_psnr)} | {' / '.join(f'{p:.1f}' for p in rgb)} |", flush=True)
        print(f"({mode.value}: conversion and self-check {convert_s:.0f} s, self-check {fast.self_check_psnr:.1f} dB)")


if __name__ == "__main__":
    main()
