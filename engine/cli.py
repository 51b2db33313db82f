"""Command line front end over the same engine the GUI drives.

    python main.py restore INPUT... -o OUTDIR [--scratch | --no-scratch] [--hr]
                   [--mask FILE | --mask-dir DIR] [--weights default|official|PATH]
                   [--device auto|cpu|cuda|cuda:N|mps] [--save-mask] [--overwrite]
    python main.py models                      list weights and whether they validate
    python main.py models import PATH.zip      validate and install the official weights
    python main.py models download official    download (resumable), validate and install them

Exit status: 0 every photo succeeded, 1 any failed (each printed as ``FAILED <path>: <reason>``
while the rest go on), 2 usage errors.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence, TextIO

from . import __version__
from .device import DeviceError, choose_device
from .imageio import ImageReadError, list_images, read_mask, read_rgb, to_u8, write_png
from .models.checkpoints import CheckpointError, ModelBank
from .pipeline import RestoreOptions, Restorer
from .progress import Cancelled, EtaEstimator, Progress, format_seconds

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    pass


class ProgressBar:
    """One self-overwriting stderr line: bar, percent, stage, ETA (plain lines when not a TTY)."""

    def __init__(self, label: str, stream: TextIO = sys.stderr, width: int = 24) -> None:
        self.label, self.stream, self.width = label, stream, width
        self.eta = EtaEstimator()
        self.tty = stream.isatty()
        self._last_percent = -1

    def __call__(self, fraction: float, message: str) -> None:
        percent = int(fraction * 100)
        if not self.tty and percent // 25 == self._last_percent // 25 and percent < 100:
            return
        self._last_percent = percent
        filled = int(self.width * fraction)
        line = (f"{self.label} [{'#' * filled}{'.' * (self.width - filled)}] {percent:3d}% "
                f"{message:<34.34} ETA {format_seconds(self.eta.remaining(fraction))}")
        self.stream.write(("\r" + line) if self.tty else (line + "\n"))
        self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


@dataclass
class Job:
    source: Path
    output: Path
    mask: Path | None


def collect_inputs(inputs: Sequence[str]) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Files and folder contents in order; missing paths become failures, not usage errors."""
    found: list[Path] = []
    failures: list[tuple[Path, str]] = []
    for raw in inputs:
        path = Path(raw)
        if path.is_dir():
            images = list_images(path)
            if not images:
                failures.append((path, "folder holds no image files"))
            found.extend(images)
        elif path.exists():
            found.append(path)
        else:
            failures.append((path, "file not found"))
    return found, failures


def plan_jobs(sources: list[Path], outdir: Path, mask: Path | None, mask_dir: Path | None,
              failures: list[tuple[Path, str]]) -> list[Job]:
    jobs: list[Job] = []
    inputs = {p.resolve() for p in sources}
    taken: dict[Path, Path] = {}
    for src in sources:
        out = outdir / f"{src.stem}.png"
        if out.resolve() in inputs:
            failures.append((src, f"output {out} would overwrite an input photo; choose another output folder"))
            continue
        if out.resolve() in taken:
            failures.append((src, f"output name {out.name} is already used by {taken[out.resolve()]} in this run"))
            continue
        taken[out.resolve()] = src
        job_mask = mask if mask is not None else (mask_dir / f"{src.stem}.png" if mask_dir else None)
        jobs.append(Job(src, out, job_mask))
    return jobs


def cmd_restore(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from .weights import resolve_weights

    if args.mask and len(args.inputs) != 1:
        raise UsageError("--mask FILE takes exactly one input photo; use --mask-dir for several")
    if args.mask and not Path(args.mask).is_file():
        raise UsageError(f"mask file {args.mask} not found")
    if args.mask_dir and not Path(args.mask_dir).is_dir():
        raise UsageError(f"mask folder {args.mask_dir} not found")
    outdir = Path(args.output)
    if outdir.exists() and not outdir.is_dir():
        raise UsageError(f"output {outdir} exists and is not a folder")
    try:
        choice = choose_device(args.device)
    except DeviceError as exc:
        raise UsageError(str(exc)) from None
    if choice.note:
        print(f"warning: {choice.note}", file=err)

    sources, failures = collect_inputs(args.inputs)
    jobs = plan_jobs(sources, outdir, Path(args.mask) if args.mask else None,
                     Path(args.mask_dir) if args.mask_dir else None, failures)
    for path, reason in failures:
        print(f"FAILED {path}: {reason}", file=out)

    options = RestoreOptions(scratch=args.scratch, hr=args.hr)
    try:
        restorer = Restorer(ModelBank(resolve_weights(args.weights), choice.device))
        if jobs:  # load every network now: bad weights fail once, before any photo
            restorer.prepare(options, has_user_mask=any(j.mask for j in jobs))
    except CheckpointError as exc:
        print(f"error: {exc}", file=err)
        return EXIT_FAILED
    outdir.mkdir(parents=True, exist_ok=True)
    done = skipped = 0
    started = time.perf_counter()
    for i, job in enumerate(jobs, 1):
        if job.output.exists() and not args.overwrite:
            print(f"SKIPPED {job.source}: {job.output} exists (use --overwrite to replace it)", file=out)
            skipped += 1
            continue
        bar = ProgressBar(f"[{i}/{len(jobs)}] {job.source.name[:24]}", err)
        try:
            image = read_rgb(job.source)
            user_mask = None
            if job.mask is not None:
                if not job.mask.is_file():
                    raise ImageReadError(f"mask {job.mask} not found")
                user_mask = read_mask(job.mask)
            result = restorer.restore(image, options, user_mask, Progress(bar))
            write_png(job.output, to_u8(result.image))
            if args.save_mask and result.mask is not None:
                write_png(job.output.with_name(f"{job.source.stem}_mask.png"), result.mask.astype("uint8") * 255)
            bar.close()
            print(f"OK {job.source} -> {job.output} ({result.mode.value}, "
                  f"{sum(result.timings.values()):.1f} s)", file=out)
            done += 1
        except (ImageReadError, ValueError, RuntimeError, OSError, CheckpointError) as exc:
            bar.close()
            failures.append((job.source, str(exc)))
            print(f"FAILED {job.source}: {exc}", file=out)
        except Cancelled:
            bar.close()
            print("cancelled", file=err)
            return EXIT_FAILED
    print(f"done: {done}, failed: {len(failures)}, skipped: {skipped} in {time.perf_counter() - started:.1f} s",
          file=out)
    return EXIT_FAILED if failures else EXIT_OK


def cmd_models(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from .weights import import_official, list_weights

    if args.models_command is None:
        for entry in list_weights():
            status = "OK     " if entry.ok else "MISSING" if entry.detail == "not installed" else "INVALID"
            print(f"{status} {entry.name:<9} {entry.location}  ({entry.detail})", file=out)
        return EXIT_OK
    if args.models_command == "import":
        path = Path(args.path)
        if not path.exists():
            raise UsageError(f"{path} not found")
        try:
            target = import_official(path)
        except CheckpointError as exc:
            print(f"error: {exc}", file=err)
            return EXIT_FAILED
        print(f"imported the official weights into {target}; use --weights official", file=out)
        return EXIT_OK
    if args.models_command == "download":
        return download_official(args, out, err)
    raise UsageError(f"unknown models command {args.models_command}")


def download_official(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from .download import OFFICIAL_RELEASE_URLS, DownloadError, download
    from .weights import import_official, user_data_dir

    url = args.url or OFFICIAL_RELEASE_URLS["global"]
    dest = user_data_dir() / "downloads" / "global_checkpoints.zip"
    dest.parent.mkdir(parents=True, exist_ok=True)
    bar = ProgressBar("download", err)

    def report(done: int, total: int | None) -> None:
        bar(done / total if total else 0.0, f"{done / 2**20:.1f} of {total / 2**20:.1f} MiB" if total
            else f"{done / 2**20:.1f} MiB")

    try:
        download(url, dest, progress=report)
        bar.close()
        target = import_official(dest)
    except (DownloadError, CheckpointError) as exc:
        bar.close()
        print(f"error: {exc}", file=err)
        return EXIT_FAILED
    print(f"downloaded and imported the official weights into {target}; use --weights official", file=out)
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="heirloom", description="Restore old photos (Heirloom).")
    parser.add_argument("--version", action="version", version=f"Heirloom {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    r = sub.add_parser("restore", help="restore photos (files or folders)")
    r.add_argument("inputs", nargs="+", metavar="INPUT", help="photo files or folders of photos")
    r.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="folder for the restored PNGs")
    scratch = r.add_mutually_exclusive_group()
    scratch.add_argument("--scratch", dest="scratch", action="store_true", help="detect and repair scratches")
    scratch.add_argument("--no-scratch", dest="scratch", action="store_false", help="quality restoration only")
    r.add_argument("--hr", action="store_true", help="patch-attention mode for high-resolution scratched photos")
    masks = r.add_mutually_exclusive_group()
    masks.add_argument("--mask", metavar="FILE", help="damage mask PNG (white = damage) for a single photo")
    masks.add_argument("--mask-dir", metavar="DIR", help="folder of masks named <photo stem>.png")
    r.add_argument("--weights", default="default", help="default, official, or an official zip / weights folder")
    r.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    r.add_argument("--save-mask", action="store_true", help="also write <stem>_mask.png with the mask used")
    r.add_argument("--overwrite", action="store_true", help="replace existing outputs (inputs are never replaced)")
    r.set_defaults(func=cmd_restore, scratch=False)

    m = sub.add_parser("models", help="list, import or download weights")
    msub = m.add_subparsers(dest="models_command")
    imp = msub.add_parser("import", help="validate and install the official global_checkpoints.zip")
    imp.add_argument("path", metavar="PATH")
    dl = msub.add_parser("download", help="download the official weights (resumable) and install them")
    dl.add_argument("which", choices=["official"])
    dl.add_argument("--url", help=argparse.SUPPRESS)  # tests and mirrors
    m.set_defaults(func=cmd_models)
    return parser


def main(argv: Sequence[str] | None = None, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help / --version exit 0, bad usage exits 2
        return int(exc.code or 0)
    try:
        return args.func(args, out, err)
    except UsageError as exc:
        print(f"error: {exc}", file=err)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=err)
        return EXIT_FAILED
