"""Engine benchmark: wall time and peak RSS per mode and size, each run in a fresh process.

    .venv/bin/python bench/bench_engine.py [--weights ZIP] [--modes quality,scratch,hr]
        [--sizes 256,512,1024,2048] [--naive] [--threads 2] [--out bench/results/engine.md]

Weights: the recipe-built official zip (built into bench/results/ on first use when ``--weights`` is
not given; needs ../shared/reference). ``--naive`` also runs the scratch mode with the attention
computed in one piece (the official N x N memory behaviour) where it fits in RAM.
Prints a Markdown table; the numbers are for the issue notes, nothing here asserts speed.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def one_run(mode: str, size: int, weights: str, naive: bool, threads: int) -> dict:
    """Runs inside the child process: load weights, restore one synthetic photo, report."""
    import numpy as np
    import torch

    from engine.core.pipeline import RestoreOptions, Restorer
    from engine.device import choose_device
    from engine.models.checkpoints import ModelBank, open_source
    from engine.models.networks import partial_nonlocal

    choose_device("cpu")
    torch.set_num_threads(threads)
    if naive:  # one chunk holding the whole N x N attention, as the official code does
        partial_nonlocal.DEFAULT_ATTENTION_BYTES = 1 << 62
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size] / size
    image = np.stack([0.5 + 0.3 * np.sin(6 * xx + k) * np.cos(5 * yy) for k in range(3)], axis=2)
    image = np.clip(image + rng.normal(0, 0.03, image.shape), 0, 1).astype(np.float32)
    mask = np.zeros((size, size), bool)  # a few scratches: ~2 % of the pixels
    for k in range(6):
        y = int(size * (0.1 + 0.15 * k))
        mask[y:y + max(2, size // 128), size // 8: size - size // 8] = True
    t0 = time.perf_counter()
    restorer = Restorer(ModelBank(open_source(Path(weights)), torch.device("cpu")))
    options = RestoreOptions(scratch=mode == "scratch", hr=mode == "hr", tile="off")
    user_mask = mask if mode != "quality" else None
    restorer.prepare(options, user_mask is not None)
    if naive:
        for m in restorer.bank.get("mapping_scratch").modules():
            if hasattr(m, "attention_bytes"):
                m.attention_bytes = 1 << 62
    t1 = time.perf_counter()
    result = restorer.restore(image, options, user_mask)
    t2 = time.perf_counter()
    assert result.image.shape == image.shape
    return {"mode": mode + (" naive" if naive else ""), "size": size, "load_s": t1 - t0, "restore_s": t2 - t1,
            "detect_s": result.timings.get("detection", 0.0),
            "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}


def ensure_weights(path: Path) -> Path:
    if not path.exists():
        sys.path.insert(0, str(ROOT / "tests"))
        from conftest import write_official_zip

        path.parent.mkdir(parents=True, exist_ok=True)
        write_official_zip(path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--weights", type=Path)
    parser.add_argument("--modes", default="quality,scratch,hr")
    parser.add_argument("--sizes", default="256,512,1024,2048")
    parser.add_argument("--naive", action="store_true")
    parser.add_argument("--naive-max", type=int, default=640, help="largest size tried in naive mode")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "engine.md")
    parser.add_argument("--one", nargs=3, metavar=("MODE", "SIZE", "NAIVE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    weights = args.weights or ROOT / "bench" / "results" / "global_checkpoints_recipe.zip"
    if args.one:
        mode, size, naive = args.one
        print(json.dumps(one_run(mode, int(size), str(weights), naive == "1", args.threads)))
        return
    ensure_weights(weights)
    runs = [(m, int(s), False) for m in args.modes.split(",") for s in args.sizes.split(",")]
    if args.naive:
        runs += [("scratch", int(s), True) for s in args.sizes.split(",") if int(s) <= args.naive_max]
    rows = []
    args.out.parent.mkdir(parents=True, exist_ok=True)
    header = "| mode | size | restore s | detect s | load s | peak RSS GiB |\n|---|---|---|---|---|---|"
    print(header, flush=True)
    for mode, size, naive in runs:
        cmd = [sys.executable, __file__, "--weights", str(weights), "--threads", str(args.threads),
               "--one", mode, str(size), "1" if naive else "0"]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            line = f"| {mode}{' naive' if naive else ''} | {size}² | failed: {proc.stderr.strip().splitlines()[-1][:80]} | | | |"
        else:
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            line = (f"| {r['mode']} | {size}² | {r['restore_s']:.1f} | {r['detect_s']:.1f} | {r['load_s']:.1f} "
                    f"| {r['peak_rss_gib']:.2f} |")
        print(line, flush=True)
        rows.append(line)
        args.out.write_text(header + "\n" + "\n".join(rows) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
