"""Colour drift on real old scans: how far a restore moves each channel's mean, in 8-bit levels.

    nice .venv/bin/python bench/eval_colour.py [--weights default|official|PATH] [--side 512] [--scratch]
        [--limit N] [--images bench/results/colour] [--full-images]

Every photo in ../shared/data/real_old/ and its deoldify/ subfolder (grey ones too) is restored as the
command line restores it by default (``RestoreOptions()``: no scratch detection, the weights' strength),
once with the default settings (the photo's own tone is kept) and once with ``--correct-fading`` (the
networks run once for both; the first ``--check`` photos are also restored with --correct-fading
through the pipeline, and the two must agree).
Per photo: the change of each channel's mean (output written as 8 bits minus the photo, R G B), the
worst channel's absolute change, and a *local* drift (mean over the photo of the worst channel's
absolute difference between the photo and the output, both low-passed with a Gaussian of 3 % of the
short side): a restore can keep the global means and still move colour from one place to another.
Summary: mean, 95th percentile and the worst photos of the worst channel's change, per setting.

``--side`` downscales each photo to at most that long side first (area average; 0 = as it is) to keep
the run affordable on a CPU; the output says so. ``--scratch`` detects scratches too (the Restore tab's
default). ``--images DIR`` writes photo | default | --correct-fading side by side for the old_* and
scratched_* photos (at their own size with ``--full-images``, scratch detection on for those images:
that is where colour can bleed from a repaired hole). Prints Markdown; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.core.pipeline import RestoreOptions, Restorer, as_float_rgb  # noqa: E402
from engine.core.strength import apply_strength  # noqa: E402
from engine.core.tone import tone_for  # noqa: E402
from engine.io.decode import list_images, read_rgb  # noqa: E402
from engine.io.encode import write_png  # noqa: E402
from engine.io.pixels import to_u8  # noqa: E402

REAL_OLD = ROOT.parent / "shared" / "data" / "real_old"
SETTINGS = {"default": False, "--correct-fading": True}  # setting -> RestoreOptions.correct_fading
LOCAL_SIGMA = 0.03  # of the short side: the scale the local drift is judged at


@dataclass
class Drift:
    name: str
    size: tuple[int, int]  # (w, h) restored
    change: np.ndarray  # (3,) output mean - photo mean, 8-bit levels
    local: float  # mean local drift of the worst channel, levels
    strength: float
    tone: str

    @property
    def worst(self) -> float:
        return float(np.abs(self.change).max())


def real_scans(folder: Path = REAL_OLD) -> list[Path]:
    """Every scan: the top folder's, then deoldify/'s."""
    photos = list_images(folder)
    if (folder / "deoldify").is_dir():
        photos += list_images(folder / "deoldify")
    return photos


def downscale(image: np.ndarray, side: int) -> np.ndarray:
    h, w = image.shape[:2]
    scale = side / max(h, w) if side else 1.0
    if scale >= 1:
        return image
    return cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)


def drift(name: str, photo: np.ndarray, restored: np.ndarray, strength: float, tone: str) -> Drift:
    """``photo`` HxWx3 uint8, ``restored`` HxWx3 float [0, 1] (measured as written: 8 bits)."""
    before = photo.astype(np.float32)
    after = to_u8(restored).astype(np.float32)
    change = after.mean((0, 1)) - before.mean((0, 1))
    sigma = max(1.0, LOCAL_SIGMA * min(photo.shape[:2]))
    local = np.abs(cv2.GaussianBlur(after, (0, 0), sigma) - cv2.GaussianBlur(before, (0, 0), sigma)).max(axis=2)
    return Drift(name, (photo.shape[1], photo.shape[0]), change, float(local.mean()), strength, tone)


def summary(rows: list[Drift]) -> dict[str, float]:
    worst = np.array([r.worst for r in rows])
    local = np.array([r.local for r in rows])
    return {"mean": float(worst.mean()), "p95": float(np.percentile(worst, 95)), "max": float(worst.max()),
            "local_mean": float(local.mean()), "local_p95": float(np.percentile(local, 95))}


class TwoTones(Restorer):
    """A restorer that, while it restores with the default settings, also finishes the same network
    output with the --correct-fading tone: the networks run once for both settings (half the time
    of this benchmark on a CPU). ``measure`` checks it against a real second restore (``check``)."""

    def _finish(self, generated, network_input, original, holes, tone, refine_progress, plan, timings):
        # the refinement (if the weights have one) runs once per tone: it sees the toned chain output
        self.corrected = super()._finish(generated.clone(), network_input, original, holes,
                                         tone_for(self.bank.source.output_tone(), True), refine_progress, plan, {})
        return super()._finish(generated, network_input, original, holes, tone, refine_progress, plan, timings)

    def restore_both(self, photo: np.ndarray, options: RestoreOptions, user_mask: np.ndarray | None = None):
        """(default result, --correct-fading image, its tone). Not for weights with a face stage: the
        --correct-fading image is the global restoration's only."""
        result = self.restore(photo, replace(options, correct_fading=False), user_mask=user_mask)
        corrected = self.corrected[0].add(1.0).mul(0.5).clamp(0.0, 1.0).permute(1, 2, 0).contiguous().cpu().numpy()
        corrected = apply_strength(corrected, as_float_rgb(photo), result.mask, result.strength)
        return result, corrected, tone_for(self.bank.source.output_tone(), True)


def measure(restorer: TwoTones, photos: list[Path], side: int, options: RestoreOptions, check: int = 3,
            log=None, jsonl: Path | None = None) -> dict[str, list[Drift]]:
    """Restore every photo with each of ``SETTINGS``; the drift of each. The first ``check`` photos
    are also restored with --correct-fading through the pipeline, which must give the same image."""
    rows: dict[str, list[Drift]] = {setting: [] for setting in SETTINGS}
    for i, path in enumerate(photos):
        photo = downscale(read_rgb(path), side)
        name = path.relative_to(REAL_OLD).as_posix() if path.is_relative_to(REAL_OLD) else path.name
        result, corrected, tone = restorer.restore_both(photo, options)
        if i < check:
            real = Restorer.restore(restorer, photo, replace(options, correct_fading=True)).image
            gap = float(np.abs(real - corrected).max())
            assert gap < 1e-5, f"{name}: the shortcut differs from a --correct-fading restore by {gap}"
        rows["default"].append(drift(name, photo, result.image, result.strength, result.tone))
        rows["--correct-fading"].append(drift(name, photo, corrected, result.strength, tone))
        if jsonl is not None:  # one line per photo as it is done: partial runs and shards can be reported
            with open(jsonl, "a", encoding="utf-8") as f:
                f.write(json.dumps({setting: asdict(values[-1]) | {"change": values[-1].change.tolist()}
                                    for setting, values in rows.items()}) + "\n")
        if log is not None:
            d, c = rows["default"][-1], rows["--correct-fading"][-1]
            print(f"{i + 1}/{len(photos)} {name}: default {d.worst:.2f}, correct fading {c.worst:.2f}", file=log,
                  flush=True)
    return rows


def read_jsonl(paths: list[Path]) -> dict[str, list[Drift]]:
    """The rows ``measure`` wrote with ``jsonl`` (several shards), in photo order."""
    lines = [json.loads(line) for path in paths for line in Path(path).read_text(encoding="utf-8").splitlines()]
    lines.sort(key=lambda line: line["default"]["name"])
    return {setting: [Drift(**(line[setting] | {"change": np.array(line[setting]["change"]),
                                                 "size": tuple(line[setting]["size"])})) for line in lines]
            for setting in SETTINGS}


def report(rows: dict[str, list[Drift]], side: int, options: RestoreOptions, weights: str, out=sys.stdout) -> None:
    count = len(next(iter(rows.values())))
    scaled = f"downscaled to at most {side} px on the long side" if side else "at their own size"
    detection = "scratch detection on" if options.scratch else "no scratch detection (the command line's default)"
    print(f"### Colour drift on {count} real scans ({scaled}; weights {weights}; {detection}; the weights' "
          "strength)\n", file=out)
    print("Change of each channel's mean, output (8 bits) minus photo, in levels of 255; *worst* = the largest "
          f"absolute change of the three; *local* = mean worst-channel difference after a Gaussian low-pass of "
          f"{LOCAL_SIGMA:.0%} of the short side.\n", file=out)
    print("| setting | worst channel: mean | p95 | max | local: mean | local p95 |\n|---|---|---|---|---|---|", file=out)
    for setting, values in rows.items():
        s = summary(values)
        print(f"| {setting} | {s['mean']:.2f} | {s['p95']:.2f} | {s['max']:.2f} | {s['local_mean']:.2f} | "
              f"{s['local_p95']:.2f} |", file=out)
    for setting, values in rows.items():
        worst = sorted(values, key=lambda r: -r.worst)[:5]
        print(f"\nWorst photos, {setting}: " + ", ".join(f"{r.name} ({r.worst:.1f})" for r in worst), file=out)
    print("\n| photo | size | strength | default: dR dG dB | local | --correct-fading: dR dG dB | local |\n"
          "|---|---|---|---|---|---|---|", file=out)
    for d, c in zip(rows["default"], rows["--correct-fading"]):
        print(f"| {d.name} | {d.size[0]}x{d.size[1]} | {d.strength:.2f} | "
              f"{' '.join(f'{v:+.2f}' for v in d.change)} | {d.local:.2f} | "
              f"{' '.join(f'{v:+.2f}' for v in c.change)} | {c.local:.2f} |", file=out)


def write_images(restorer: Restorer, photos: list[Path], folder: Path, side: int) -> list[Path]:
    """photo | default | --correct-fading for the old_* and scratched_* scans (scratch detection on)."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for path in photos:
        if not path.name.startswith(("old_", "scratched_")):
            continue
        photo = downscale(read_rgb(path), side)
        options = RestoreOptions(scratch=True)
        default = restorer.restore(photo, options)
        corrected = restorer.restore(photo, replace(options, correct_fading=True))
        gap = np.ones((photo.shape[0], 8, 3), np.float32)
        side_by_side = np.concatenate([as_float_rgb(photo), gap, default.image, gap, corrected.image], axis=1)
        out = folder / f"{path.stem}.png"
        write_png(out, to_u8(side_by_side))
        if default.mask is not None and default.mask.any():
            write_png(folder / f"{path.stem}_mask.png", to_u8(default.mask.astype(np.float32)))
        written.append(out)
    return written


def main(argv: list[str] | None = None) -> None:
    import torch

    from engine.device import choose_device
    from engine.models.checkpoints import ModelBank
    from engine.store.catalogue import resolve_weights

    parser = argparse.ArgumentParser()
    parser.add_argument("--weights", default="default")
    parser.add_argument("--side", type=int, default=512, help="downscale to this long side first (0: as they are)")
    parser.add_argument("--scratch", action="store_true", help="detect scratches too (the Restore tab's default)")
    parser.add_argument("--limit", type=int, help="only the first N scans")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the machine may be shared)")
    parser.add_argument("--images", type=Path, help="write before/after images of old_* and scratched_* here")
    parser.add_argument("--check", type=int, default=3,
                        help="restore the first N also through the pipeline with --correct-fading, to check the "
                             "shortcut that runs the networks once for both settings")
    parser.add_argument("--shard", default="0/1", metavar="K/N", help="only every N-th scan from the K-th")
    parser.add_argument("--jsonl", type=Path, help="append each photo's drift here as it is measured")
    parser.add_argument("--report", type=Path, nargs="+", metavar="JSONL",
                        help="only print the report of these --jsonl files (shards merged)")
    parser.add_argument("--full-images", action="store_true", help="images at the photos' own size")
    args = parser.parse_args(argv)
    options = RestoreOptions(scratch=args.scratch)
    if args.report:
        report(read_jsonl(args.report), args.side, options, args.weights)
        return
    torch.set_num_threads(args.threads)
    restorer = TwoTones(ModelBank(resolve_weights(args.weights), choose_device("auto").device))
    k, n = (int(v) for v in args.shard.split("/"))
    photos = real_scans()[:args.limit][k::n]
    started = time.perf_counter()
    if args.images:
        written = write_images(restorer, photos, args.images, 0 if args.full_images else args.side)
        print(f"Before/after (photo | default | --correct-fading, scratch detection on) of {len(written)} "
              f"scans in {args.images}\n", flush=True)
    rows = measure(restorer, photos, args.side, options, args.check if k == 0 else 0, sys.stderr, args.jsonl)
    report(rows, args.side, options, args.weights)
    print(f"\n({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
