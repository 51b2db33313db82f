"""Speed benchmark (issue 18): Heirloom against a plain PyTorch fp32 run of the same networks, and the
default weights' time at 1 MP and 24 MP.

    .venv/bin/python bench/bench_speed.py [--official ZIP] [--sizes 512,1024] [--modes quality,scratch,hr]
        [--repeats 2] [--threads 2] [--skip-24mp] [--out docs/benchmarks/speed.md]

(a) Official weights (the recipe-built zip of bench/bench_engine.py unless ``--official``), per mode and
    size, each run in a fresh process, interleaved: the *reference* is a plain PyTorch fp32 run of our
    networks as the official code runs them (one untiled pass, the partial non-local attention in one
    piece with the official op sequence, glibc's allocator as it comes); *Heirloom* is a restore as the
    app runs it (its plan, chunked fused attention, allocator tuning). Both restore the same photo
    ``--repeats`` times after loading; the best time counts (a batch restores many photos in one
    process). The ratio is Heirloom / reference; the output difference is their largest pixel
    difference (both fp32 exact). The reference's attention needs 3 x 4 x N^2 bytes (N = pixels / 16):
    scratch mode is measured up to 512 px, where it fits.
(b) ``--precision fast`` with the default weights (what it is calibrated for): time ratio and PSNR
    against their exact fp32 output per mode and size (strength 1, the fixed scratch mask).
(c) Default weights, scratch mode with detection, as a user's restore: a real old photo resized to
    1024 x 1024 (1 MP) and to 6000 x 4000 (24 MP, ``--max-memory 4``): time and peak memory.

Prints Markdown and writes it to ``--out``; asserts nothing (speed targets live here, not in tests).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

PHOTO = ROOT.parent / "shared" / "data" / "real_old" / "scratched_a.png"


def load_photo(height: int, width: int):
    """The real old photo, resized to cover ``height`` x ``width`` and centre-cropped (float32 RGB)."""
    import cv2
    import numpy as np

    from engine.io.decode import read_rgb

    image = read_rgb(PHOTO)
    image = image.astype(np.float32) / (65535.0 if image.dtype == np.uint16 else 255.0)
    scale = max(height / image.shape[0], width / image.shape[1])
    image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
    y0, x0 = (image.shape[0] - height) // 2, (image.shape[1] - width) // 2
    return np.clip(image[y0:y0 + height, x0:x0 + width], 0, 1)


def scratch_lines(height: int, width: int):
    """A fixed hole mask (~2 % of the pixels: six horizontal scratches) for modes with a mask."""
    import numpy as np

    mask = np.zeros((height, width), bool)
    for k in range(6):
        y = int(height * (0.1 + 0.15 * k))
        mask[y:y + max(2, height // 128), width // 8: width - width // 8] = True
    return mask


def plain_reference() -> None:
    """Make the partial non-local block compute its attention as the official code does: one
    piece, softmax, mask, L1 renormalisation (no chunks, no fusion)."""
    from engine.models.networks import partial_nonlocal

    def whole(theta, phi, g, valid, max_bytes=0, step_hook=None):
        return partial_nonlocal._official_rows(theta @ phi, valid, g)

    partial_nonlocal.partial_attention = whole


def one_run(job: dict) -> dict:
    """Runs inside a fresh child process."""
    import numpy as np
    import torch

    from engine.core.pipeline import RestoreOptions, Restorer
    from engine.device import choose_device, keep_large_buffers_mapped
    from engine.models.checkpoints import ModelBank
    from engine.store.catalogue import resolve_weights

    choose_device("cpu")
    torch.set_num_threads(job["threads"])
    variant, mode = job["variant"], job["mode"]
    if variant == "reference":
        plain_reference()
    else:
        keep_large_buffers_mapped()
    height, width = job["height"], job["width"]
    image = load_photo(height, width)
    detect = job.get("detect", False)
    user_mask = None if mode == "quality" or detect else scratch_lines(height, width)
    options = RestoreOptions(scratch=mode == "scratch", hr=mode == "hr", faces=False, strength=1.0,
                             tile="off" if variant == "reference" else "auto",
                             precision="fast" if variant == "fast" else "fp32",
                             max_memory_gb=job.get("max_memory"))
    restorer = Restorer(ModelBank(resolve_weights(job["weights"]), torch.device("cpu")))
    restorer.prepare(options, user_mask is not None)
    times, result = [], None
    for _ in range(job["repeats"]):
        t0 = time.perf_counter()
        result = restorer.restore(image, options, user_mask)
        times.append(time.perf_counter() - t0)
    if job.get("save"):
        np.save(job["save"], result.image)
    return {"seconds": min(times), "all_seconds": times, "detect_s": result.timings.get("detection", 0.0),
            "tiling": result.tiling, "warnings": result.warnings,
            "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}


def run_child(job: dict) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--one", json.dumps(job)], capture_output=True, text=True)
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["no output"])[-1][:160]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def psnr(a, b) -> float:
    import numpy as np

    mse = float(np.mean((a.astype(np.float64) - b) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(1.0 / mse)


def compare_official(args, out: list[str], scratch_dir: Path) -> None:
    import numpy as np

    out += ["## Official weights: Heirloom vs the plain PyTorch fp32 reference", "",
            "| mode | size | reference s | Heirloom s | ratio | largest difference | peak RSS GiB ref / ours |",
            "|---|---|---|---|---|---|---|"]
    print("\n".join(out[-4:]), flush=True)
    for mode in args.modes.split(","):
        for size in map(int, args.sizes.split(",")):
            base = {"weights": str(args.official), "mode": mode, "height": size, "width": size,
                    "threads": args.threads, "repeats": args.repeats}
            files = {v: scratch_dir / f"{mode}-{size}-{v}.npy" for v in ("reference", "heirloom")}
            ref = {}
            if mode == "quality" or size <= args.reference_max:
                ref = run_child({**base, "variant": "reference", "save": str(files["reference"])})
            ours = run_child({**base, "variant": "heirloom", "save": str(files["heirloom"])})
            cells = [mode, f"{size}²"]
            cells.append(f"{ref['seconds']:.1f}" if "seconds" in ref else ref.get("error", "too large to run"))
            cells.append(f"{ours['seconds']:.1f}" if "seconds" in ours else ours.get("error", ""))
            if "seconds" in ref and "seconds" in ours:
                diff = np.abs(np.load(files["reference"]) - np.load(files["heirloom"])).max()
                cells += [f"{ours['seconds'] / ref['seconds']:.2f}", f"{diff:.1e}",
                          f"{ref['peak_rss_gib']:.2f} / {ours['peak_rss_gib']:.2f}"]
            else:
                cells += ["–", "–", f"– / {ours.get('peak_rss_gib', 0):.2f}"]
            out.append("| " + " | ".join(cells) + " |")
            print(out[-1], flush=True)


def compare_fast(args, out: list[str], scratch_dir: Path) -> None:
    """``--precision fast`` against exact fp32, default weights (the ones it is calibrated for)."""
    import numpy as np

    out += ["", "## Fast precision vs exact fp32 (default weights, strength 1, fixed scratch mask)", "",
            "| mode | size | fp32 s | fast s | speed-up | PSNR vs fp32 dB | precision used |",
            "|---|---|---|---|---|---|---|"]
    print("\n".join(out[-4:]), flush=True)
    for mode in args.modes.split(","):
        if mode == "hr":
            continue  # fast precision does not cover HR (it falls back to fp32)
        for size in map(int, args.sizes.split(",")):
            base = {"weights": "default", "mode": mode, "height": size, "width": size,
                    "threads": args.threads, "repeats": args.repeats}
            exact = run_child({**base, "variant": "heirloom", "save": str(scratch_dir / "exact.npy")})
            fast = run_child({**base, "variant": "fast", "save": str(scratch_dir / "fast.npy")})
            if "seconds" not in exact or "seconds" not in fast:
                out.append(f"| {mode} | {size}² | {exact.get('error', '')} | {fast.get('error', '')} | | | |")
            else:
                value = psnr(np.load(scratch_dir / "fast.npy"), np.load(scratch_dir / "exact.npy"))
                out.append(f"| {mode} | {size}² | {exact['seconds']:.1f} | {fast['seconds']:.1f} | "
                           f"{exact['seconds'] / fast['seconds']:.2f}x | {value:.1f} | {fast['tiling'].get('precision')} |")
            print(out[-1], flush=True)


def default_weights(args, out: list[str]) -> None:
    out += ["", "## Default weights, scratch mode with detection (a real old photo, resized)", "",
            "| photo | memory limit | restore s (best of runs) | detection s | attention rows | tile | peak RSS GiB |",
            "|---|---|---|---|---|---|---|"]
    print("\n".join(out[-4:]), flush=True)
    jobs = [("1024 x 1024 (1 MP)", 1024, 1024, None, args.repeats)]
    if not args.skip_24mp:
        jobs.append(("6000 x 4000 (24 MP)", 4000, 6000, 4.0, 1))
    for label, height, width, limit, repeats in jobs:
        r = run_child({"weights": "default", "mode": "scratch", "height": height, "width": width, "detect": True,
                       "threads": args.threads, "repeats": repeats, "variant": "heirloom", "max_memory": limit})
        if "error" in r:
            out.append(f"| {label} | {limit or 'auto'} | failed: {r['error']} | | | | |")
        else:
            out.append(f"| {label} | {f'{limit:g} GB' if limit else 'auto'} | {r['seconds']:.1f} "
                       f"({', '.join(f'{t:.1f}' for t in r['all_seconds'])}) | {r['detect_s']:.2f} "
                       f"| {r['tiling'].get('attention_rows')} | {r['tiling'].get('tile')} | {r['peak_rss_gib']:.2f} |")
        print(out[-1], flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--official", type=Path, default=ROOT / "bench" / "results" / "global_checkpoints_recipe.zip")
    parser.add_argument("--modes", default="quality,scratch,hr")
    parser.add_argument("--sizes", default="512,1024")
    parser.add_argument("--reference-max", type=int, default=512, help="largest size the one-piece attention runs at")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-official", action="store_true")
    parser.add_argument("--skip-fast", action="store_true")
    parser.add_argument("--skip-24mp", action="store_true")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "speed.md")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one_run(json.loads(args.one))))
        return
    out = [f"Machine: {args.threads} threads; photo {PHOTO.name}; {time.strftime('%Y-%m-%d %H:%M')}", ""]
    with tempfile.TemporaryDirectory() as scratch_dir:
        if not args.skip_official:
            from bench_engine import ensure_weights

            ensure_weights(args.official)
            compare_official(args, out, Path(scratch_dir))
        if not args.skip_fast:
            compare_fast(args, out, Path(scratch_dir))
        default_weights(args, out)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(out) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
