"""Tiling benchmark (issue: large scans).

    .venv/bin/python bench/bench_tiling.py large [--weights ZIP_OR_DIR] [--size 6000x4000] [--max-memory 3]
    .venv/bin/python bench/bench_tiling.py compare [--weights ...] [--side 1024] [--tiles 256,384,512] [--mode quality]

``large``: a real old photo from ../shared/data/real_old upscaled to 6000 x 4000, scratch mode on the
CPU, in a fresh process: wall time and peak RSS. ``compare``: tiled vs untiled at 1024 x 1024 for
several tile sizes: max / mean absolute difference in 8-bit levels and the seam score (mean
absolute gradient across tile borders / elsewhere; 1.0 = invisible). Prints Markdown; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DEFAULT_WEIGHTS = ROOT / "bench" / "results" / "global_checkpoints_recipe.zip"
SOURCE = ROOT.parent / "shared" / "data" / "real_old" / "scratched_a.png"


def restorer_for(weights: Path):
    import torch

    from engine.core.pipeline import Restorer
    from engine.device import choose_device
    from engine.models.checkpoints import ModelBank, open_source

    choose_device("cpu")
    return Restorer(ModelBank(open_source(weights), torch.device("cpu")))


def scan(size: tuple[int, int]) -> np.ndarray:
    from PIL import Image

    with Image.open(SOURCE) as img:
        return np.asarray(img.convert("RGB").resize(size, Image.Resampling.BICUBIC))


def large(args: argparse.Namespace) -> None:
    if not args.child:
        cmd = [sys.executable, __file__, "large", "--weights", str(args.weights), "--size", args.size,
               "--max-memory", str(args.max_memory), "--child"]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        print(proc.stdout.strip() or proc.stderr.strip()[-2000:])
        return
    from engine.core.pipeline import RestoreOptions

    w, h = (int(v) for v in args.size.split("x"))
    image = scan((w, h))
    restorer = restorer_for(args.weights)
    t0 = time.perf_counter()
    result = restorer.restore(image, RestoreOptions(scratch=True, max_memory_gb=args.max_memory))
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(json.dumps({"size": args.size, "seconds": round(seconds, 1), "peak_rss_gib": round(peak, 2),
                      "tiling": result.tiling, "mask_fraction": float(result.mask.mean())}))


def compare(args: argparse.Namespace) -> None:
    from engine.core.metrics import seam_score
    from engine.core.pipeline import RestoreOptions
    from engine.core.tiling import plan_tiles

    image = scan((args.side, args.side))
    restorer = restorer_for(args.weights)
    scratch = args.mode == "scratch"
    t0 = time.perf_counter()
    ref = restorer.restore(image, RestoreOptions(scratch=scratch, tile="off"))
    print(f"mode {args.mode}, {args.side}x{args.side}, untiled {time.perf_counter() - t0:.1f} s\n")
    print("| tile | max diff (8-bit) | mean diff (8-bit) | seam score tiled | seam score untiled | seconds |")
    print("|---|---|---|---|---|---|")
    for tile in (int(t) for t in args.tiles.split(",")):
        t0 = time.perf_counter()
        out = restorer.restore(image, RestoreOptions(scratch=scratch, tile=tile))
        seconds = time.perf_counter() - t0
        diff = np.abs(out.image - ref.image) * 255
        tiles = plan_tiles(args.side, args.side, tile, 48, 4)
        rows = sorted({t.core[0] for t in tiles} - {0})
        cols = sorted({t.core[2] for t in tiles} - {0})
        print(f"| {tile} | {diff.max():.2f} | {diff.mean():.3f} | {seam_score(out.image, rows, cols):.3f} "
              f"| {seam_score(ref.image, rows, cols):.3f} | {seconds:.1f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("what", choices=["large", "compare"])
    parser.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS)
    parser.add_argument("--size", default="6000x4000")
    parser.add_argument("--max-memory", type=float, default=3.0)
    parser.add_argument("--side", type=int, default=1024)
    parser.add_argument("--tiles", default="256,384,512")
    parser.add_argument("--mode", choices=["quality", "scratch"], default="quality")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    (large if args.what == "large" else compare)(args)


if __name__ == "__main__":
    main()
