"""Where the time of a restore goes: per stage, per layer type, achieved GFLOP/s against this machine's peak.

    .venv/bin/python bench/profile_restore.py [--size 1024] [--threads 2] [--weights-sets default,official]
        [--modes quality,scratch] [--photo PATH] [--out docs/benchmarks/profile.md]

Each (weights, mode) runs in a fresh process: one warm-up restore at 256 px (loads weights, first-call
allocations), then one profiled restore of a --size x --size photo (a real old scan from ../shared, resized
and cropped, unless --photo is given; scratch mode uses the detector, as a user's restore does).
The peak is measured in the same run: a 2048^3 fp32 matmul and a 64->64 3x3 convolution at 512^2,
best of 5. Layer types come from the PyTorch profiler's operator table (self CPU time; FLOPs where the
profiler counts them: convolutions and matrix products). Prints Markdown; nothing here asserts speed.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

DEFAULT_PHOTO = ROOT.parent / "shared" / "data" / "real_old" / "scratched_a.png"

# operator name fragments -> layer type (first match wins)
CATEGORIES = (
    ("convolution", ("conv", "mkldnn_convolution", "slow_conv")),
    ("matmul (attention, linear)", ("bmm", "addmm", "::mm", "matmul", "baddbmm", "linear")),
    ("softmax", ("softmax",)),
    ("normalisation", ("instance_norm", "batch_norm", "layer_norm", "group_norm", "var_mean", "::var", "::std")),
    ("padding / resampling", ("pad", "upsample", "interpolate", "grid_sampler", "avg_pool", "max_pool")),
    ("copies / layout", ("copy_", "contiguous", "clone", "cat", "to_copy", "permute", "empty", "zeros", "fill_")),
)


def category(op: str) -> str:
    for name, fragments in CATEGORIES:
        if any(f in op for f in fragments):
            return name
    return "element-wise / other"


def measure_peak(threads: int) -> dict[str, float]:
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    conv = torch.nn.Conv2d(64, 64, 3, padding=1)
    x = torch.randn(1, 64, 512, 512)
    best_mm = best_conv = float("inf")
    with torch.inference_mode():
        for _ in range(6):
            t0 = time.perf_counter()
            a @ b
            best_mm = min(best_mm, time.perf_counter() - t0)
            t0 = time.perf_counter()
            conv(x)
            best_conv = min(best_conv, time.perf_counter() - t0)
    conv_flop = 2 * 64 * 64 * 9 * 512 * 512
    return {"matmul_gflops": 2 * 2048**3 / best_mm / 1e9, "conv_gflops": conv_flop / best_conv / 1e9}


def load_photo(path: Path, size: int):
    import cv2
    import numpy as np

    from engine.io.decode import read_rgb

    rgb = read_rgb(path).astype(np.float32)
    if rgb.max() > 1.0:
        rgb /= 65535.0 if rgb.max() > 255 else 255.0
    h, w = rgb.shape[:2]
    scale = size / min(h, w)
    rgb = cv2.resize(rgb, (max(size, round(w * scale)), max(size, round(h * scale))), interpolation=cv2.INTER_AREA)
    top, left = (rgb.shape[0] - size) // 2, (rgb.shape[1] - size) // 2
    return np.ascontiguousarray(rgb[top:top + size, left:left + size])


def one_run(weights: str, mode: str, size: int, threads: int, photo: Path) -> dict:
    """In the child process: warm up, then one profiled restore."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    from engine.core.pipeline import RestoreOptions, Restorer
    from engine.device import choose_device
    from engine.models.checkpoints import ModelBank
    from engine.store.catalogue import resolve_weights

    choose_device("cpu")
    torch.set_num_threads(threads)
    restorer = Restorer(ModelBank(resolve_weights(weights), torch.device("cpu")))
    options = RestoreOptions(scratch=mode == "scratch", faces=False)
    image = load_photo(photo, size)
    restorer.restore(load_photo(photo, 256), options)  # warm-up: weights, allocator, first-call paths
    t0 = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU], with_flops=True) as prof:
        result = restorer.restore(image, options)
    total = time.perf_counter() - t0
    by_type: dict[str, list[float]] = {}
    for event in prof.key_averages():
        row = by_type.setdefault(category(event.key), [0.0, 0.0])
        row[0] += event.self_cpu_time_total / 1e6
        row[1] += float(event.flops or 0)
    # a second, unprofiled run: the profiler's own overhead is not the user's time
    t0 = time.perf_counter()
    result = restorer.restore(image, options)
    plain = time.perf_counter() - t0
    return {"weights": weights, "mode": mode, "size": size, "profiled_s": total, "plain_s": plain,
            "stages": result.timings, "by_type": by_type,
            "mask_percent": 0.0 if result.mask is None else 100.0 * float(result.mask.mean())}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--weights-sets", default="default,official")
    parser.add_argument("--modes", default="quality,scratch")
    parser.add_argument("--photo", type=Path, default=DEFAULT_PHOTO)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--one", nargs=2, metavar=("WEIGHTS", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one_run(args.one[0], args.one[1], args.size, args.threads, args.photo)))
        return
    peak = measure_peak(args.threads)
    lines = [f"Machine peak ({args.threads} threads, fp32): matmul {peak['matmul_gflops']:.0f} GFLOP/s, "
             f"3x3 conv {peak['conv_gflops']:.0f} GFLOP/s. Photo: {args.photo.name} at {args.size}x{args.size}.", ""]
    print(lines[0], flush=True)
    for weights in args.weights_sets.split(","):
        if weights == "official":
            from bench_engine import ensure_weights

            weights = str(ensure_weights(ROOT / "bench" / "results" / "global_checkpoints_recipe.zip"))
        for mode in args.modes.split(","):
            cmd = [sys.executable, __file__, "--size", str(args.size), "--threads", str(args.threads),
                   "--photo", str(args.photo), "--one", weights, mode]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            name = "official (recipe)" if weights.endswith(".zip") else weights
            if proc.returncode != 0:
                lines += [f"### {name}, {mode}: failed", "", proc.stderr.strip()[-800:], ""]
                print("\n".join(lines[-4:]), flush=True)
                continue
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            flops = sum(f for _, f in r["by_type"].values())
            block = [f"### {name}, {mode} mode, {args.size}x{args.size}: {r['plain_s']:.1f} s "
                     f"(profiled {r['profiled_s']:.1f} s; mask {r['mask_percent']:.1f} %)", "",
                     "stages: " + ", ".join(f"{k} {v:.2f} s" for k, v in r["stages"].items()), "",
                     "| layer type | self CPU s | share | GFLOP | GFLOP/s | % of peak |", "|---|---|---|---|---|---|"]
            busy = sum(t for t, _ in r["by_type"].values()) or 1.0
            for kind, (seconds, fl) in sorted(r["by_type"].items(), key=lambda kv: -kv[1][0]):
                ref = peak["conv_gflops"] if kind == "convolution" else peak["matmul_gflops"]
                rate = fl / seconds / 1e9 if seconds and fl else 0.0
                block.append(f"| {kind} | {seconds:.2f} | {100 * seconds / busy:.0f} % | {fl / 1e9:.1f} | "
                             f"{rate:.0f} | {100 * rate / ref:.0f} % |" if fl else
                             f"| {kind} | {seconds:.2f} | {100 * seconds / busy:.0f} % | – | – | – |")
            whole = flops / r["plain_s"] / 1e9
            block += ["", f"whole restore: {flops / 1e9:.0f} GFLOP counted, {whole:.0f} GFLOP/s = "
                          f"{100 * whole / peak['matmul_gflops']:.0f} % of the matmul peak", ""]
            lines += block
            print("\n".join(block), flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
