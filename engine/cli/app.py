"""Command line front end over the same engine the GUI drives.

    python main.py restore INPUT... -o OUTDIR [--scratch | --no-scratch] [--hr] [--faces | --no-faces]
                   [--mask FILE | --mask-dir DIR] [--weights default|official|profile:NAME|PATH]
                   [--device auto|cpu|cuda|cuda:N|mps] [--correct-fading] [--save-mask] [--overwrite]
                   [--format auto|png|tiff|jpeg [--quality N]] [--allow-huge]
                   [--resume] [--state FILE] [--shard K/N] [--no-face-protection]
    python main.py detect INPUT... -o OUTDIR [--weights ...] [--device ...] [--detect-scale ...]
                   [--threshold P] [--dilation N] [--no-face-protection] [--overwrite] [--allow-huge]
                                               damage masks only: <stem>_mask.png (+ sidecar) per photo
    python main.py models                      list weights and whether they validate
    python main.py models import PATH.zip      validate and install global_checkpoints.zip or face_checkpoints.zip
    python main.py models download official    download (resumable), validate and install both
    python main.py models download faces       only the face weights (face_checkpoints.zip)
    python main.py finetune detector|domain|mapping ... --profile NAME   (engine.cli.finetune)
    python main.py profiles [list | delete NAME | export NAME FILE | import FILE]
    python main.py sample [-o DIR]              write a damaged sample photo to try Heirloom on

Exit status: 0 every photo succeeded, 1 any failed (each printed as ``FAILED <path>: <reason>``
while the rest go on), 2 usage errors.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Callable, Sequence, TextIO, TypeVar

from engine import __version__
from engine.cli.common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, ProgressBar, UsageError
from engine.cli.finetune import add_parsers as add_finetune_parsers
from engine.cli.train import add_parser as add_train_parser
from engine.core.detection import OFFICIAL_THRESHOLD, parse_detection_scale
from engine.core.pipeline import RestoreOptions
from engine.core.plan import parse_tile
from engine.device import DeviceError, choose_device, keep_large_buffers_mapped
from engine.jobs.batch import BatchConfig, BatchError, parse_shard
from engine.jobs.batch import run as run_batch
from engine.jobs.detect_batch import DetectConfig, load_bank
from engine.jobs.detect_batch import run as run_detect
from engine.jobs.sample import SampleUnavailable, make_sample_photo
from engine.models.checkpoints import CheckpointError
from engine.progress import Cancelled, Progress
from engine.store.catalogue import checked_weights
from engine.store.download import OFFICIAL_RELEASE_URLS, DownloadError, fetch_official
from engine.store.weights import ImportedWeights, import_official


def cmd_restore(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    if args.mask and len(args.inputs) != 1:
        raise UsageError("--mask FILE takes exactly one input photo; use --mask-dir for several")
    if args.mask and not Path(args.mask).is_file():
        raise UsageError(f"mask file {args.mask} not found")
    if args.mask_dir and not Path(args.mask_dir).is_dir():
        raise UsageError(f"mask folder {args.mask_dir} not found")
    if args.quality is not None and args.format != "jpeg":
        raise UsageError("--quality applies only to --format jpeg")
    if args.quality is not None and not 1 <= args.quality <= 100:
        raise UsageError("--quality must be between 1 and 100")
    outdir = Path(args.output)
    if outdir.exists() and not outdir.is_dir():
        raise UsageError(f"output {outdir} exists and is not a folder")
    if args.state and Path(args.state).is_dir():
        raise UsageError(f"--state {args.state} is a folder; give a file name")
    try:
        shard = parse_shard(args.shard) if args.shard else (0, 1)
        choice = choose_device(args.device)
    except (BatchError, DeviceError) as exc:
        raise UsageError(str(exc)) from None
    if choice.note:
        print(f"warning: {choice.note}", file=err)
    config = BatchConfig(
        inputs=tuple(args.inputs), outdir=outdir,
        options=RestoreOptions(scratch=args.scratch, hr=args.hr, tile=args.tile, max_memory_gb=args.max_memory,
                               detection_scale=args.detect_scale, precision=args.precision, faces=args.faces,
                               strength=args.strength, protect_faces=args.face_protection,
                               correct_fading=args.correct_fading),
        mask=Path(args.mask) if args.mask else None, mask_dir=Path(args.mask_dir) if args.mask_dir else None,
        weights=args.weights, fmt=args.format, quality=args.quality if args.quality is not None else 95,
        save_mask=args.save_mask, overwrite=args.overwrite, allow_huge=args.allow_huge, resume=args.resume,
        state=Path(args.state) if args.state else None, shard=shard, argv=tuple(args.argv))
    try:
        return run_batch(config, out, err, device=choice.device, make_bar=lambda label: ProgressBar(label, err))
    except BatchError as exc:
        raise UsageError(str(exc)) from None


def cmd_detect(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    outdir = Path(args.output)
    if outdir.exists() and not outdir.is_dir():
        raise UsageError(f"output {outdir} exists and is not a folder")
    try:
        choice = choose_device(args.device)
    except DeviceError as exc:
        raise UsageError(str(exc)) from None
    if choice.note:
        print(f"warning: {choice.note}", file=err)
    options = RestoreOptions(scratch=True, threshold=args.threshold, mask_dilation=args.dilation,
                             detection_scale=args.detect_scale, protect_faces=args.face_protection)
    config = DetectConfig(tuple(args.inputs), outdir, options, args.weights, args.overwrite, args.allow_huge,
                          tuple(args.argv))
    started = time.perf_counter()
    try:
        bank = load_bank(args.weights, choice.device)
        summary = run_detect(config, bank, out, make_bar=lambda label: ProgressBar(label, err))
    except CheckpointError as exc:
        print(f"error: {exc}", file=err)
        return EXIT_FAILED
    except Cancelled:
        print("cancelled", file=err)
        return EXIT_FAILED
    except OSError as exc:
        print(f"error: {exc}", file=err)
        return EXIT_FAILED
    print(f"done: {summary.done}, failed: {summary.failed}, skipped: {summary.skipped} "
          f"in {time.perf_counter() - started:.1f} s", file=out)
    return EXIT_FAILED if summary.failed else EXIT_OK


def cmd_models(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    if args.models_command is None:
        for entry in checked_weights():
            status = "OK     " if entry.ok else "MISSING" if not entry.installed else "INVALID"
            print(f"{status} {entry.choice:<9} {entry.location}  ({entry.detail})", file=out)
        return EXIT_OK
    if args.models_command == "import":
        path = Path(args.path)
        if not path.exists():
            raise UsageError(f"{path} not found")
        try:
            imported = import_official(path)
        except CheckpointError as exc:
            print(f"error: {exc}", file=err)
            return EXIT_FAILED
        print(f"imported the official {imported.describe()} into {imported.folder}; use --weights official",
              file=out)
        return EXIT_OK
    if args.models_command == "download":
        return download_official(args, out, err)
    raise UsageError(f"unknown models command {args.models_command}")


def download_official(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """``official``: every official archive (engine.store.download.fetch_official); ``faces``: only
    face_checkpoints.zip. Each is installed as soon as it is complete, so a failed face download
    keeps the global weights."""
    archives = tuple(OFFICIAL_RELEASE_URLS) if args.which == "official" else ("face",)
    urls = {archive: url for archive, url in (("global", args.url), ("face", args.face_url)) if url}
    bar = ProgressBar("download", err, message_width=46)
    installed: list[ImportedWeights] = []

    def report_installed(imported: ImportedWeights) -> None:
        bar.close()
        installed.append(imported)
        print(f"downloaded and imported the official {imported.describe()} into {imported.folder}; "
              "use --weights official", file=out)

    try:
        fetch_official(Progress(bar), archives, urls, on_imported=report_installed)
    except (DownloadError, CheckpointError) as exc:
        bar.close()
        print(f"error: {exc}", file=err)
        if installed:
            print(f"the {' and '.join(i.describe() for i in installed)} are installed; get the face weights "
                  "later with `python main.py models download faces`", file=err)
        return EXIT_FAILED
    bar.close()
    return EXIT_OK


def cmd_sample(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    try:
        path = make_sample_photo(Path(args.output) if args.output else None, overwrite=args.output is not None)
    except (SampleUnavailable, OSError) as exc:
        print(f"error: {exc}", file=err)
        return EXIT_FAILED
    print(path, file=out)
    return EXIT_OK


def parse_strength(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"strength must be a number from 0 to 1, not {text!r}")
    return value


Parsed = TypeVar("Parsed")


def argument_type(parse: Callable[[str], Parsed]) -> Callable[[str], Parsed]:
    """An engine parser as an argparse ``type``: its ValueError becomes an ArgumentTypeError, whose
    message argparse prints (a plain ValueError would only say "invalid value")."""
    def convert(text: str) -> Parsed:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    return convert


def parse_threshold(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"threshold must be a probability between 0 and 1, not {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="heirloom", description="Restore old photos (Heirloom).")
    parser.add_argument("--version", action="version", version=f"Heirloom {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    r = sub.add_parser("restore", help="restore photos (files or folders)")
    r.add_argument("inputs", nargs="+", metavar="INPUT", help="photo files or folders of photos")
    r.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="folder for the restored photos")
    scratch = r.add_mutually_exclusive_group()
    scratch.add_argument("--scratch", dest="scratch", action="store_true", help="detect and repair scratches")
    scratch.add_argument("--no-scratch", dest="scratch", action="store_false", help="quality restoration only")
    r.add_argument("--hr", action="store_true", help="patch-attention mode for high-resolution scratched photos")
    faces = r.add_mutually_exclusive_group()
    faces.add_argument("--faces", dest="faces", action="store_true",
                       help="refine every face (needs the official face weights); default: on when the weights "
                            "have them")
    faces.add_argument("--no-faces", dest="faces", action="store_false", help="do not refine faces")
    masks = r.add_mutually_exclusive_group()
    masks.add_argument("--mask", metavar="FILE", help="damage mask PNG (white = damage) for a single photo")
    masks.add_argument("--mask-dir", metavar="DIR", help="folder of masks named <photo stem>.png")
    r.add_argument("--weights", default="default",
                   help="default, official, profile:NAME (a fine-tuned profile), or an official zip / weights folder")
    r.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    r.add_argument("--save-mask", action="store_true", help="also write <stem>_mask.png with the mask used")
    r.add_argument("--overwrite", action="store_true", help="replace existing outputs (inputs are never replaced)")
    r.add_argument("--format", choices=["auto", "png", "tiff", "jpeg"], default="auto",
                   help="output format; auto: TIFF stays TIFF, everything else becomes PNG")
    r.add_argument("--quality", type=int, metavar="N", help="JPEG quality 1-100 with --format jpeg (default 95)")
    r.add_argument("--allow-huge", action="store_true",
                   help="open images above Pillow's decompression-bomb limit (only files you trust)")
    r.add_argument("--resume", action="store_true",
                   help="continue an interrupted batch: skip photos already done, finish the rest")
    r.add_argument("--state", metavar="FILE", help="batch state file (default: in the user data folder)")
    r.add_argument("--shard", metavar="K/N", help="process only shard K of N (K from 0), e.g. for array jobs")
    r.add_argument("--tile", type=argument_type(parse_tile), default="auto", metavar="auto|off|N",
                   help="tile size in pixels; auto (default) tiles only when the photo does not fit in memory")
    r.add_argument("--max-memory", type=float, metavar="GB", help="memory budget; on the CPU for the whole process, photo included "
                   "(default: a share of what is free)")
    r.add_argument("--precision", choices=["fp32", "bf16", "fp16", "auto", "fast"], default="fp32",
                   help="fp32 (exact, default); bf16/fp16 are faster where the hardware supports them natively; "
                        "fast: int8 convolutions on CPUs (needs OpenVINO; checked against fp32 at start, "
                        "fp32 if it disagrees)")
    r.add_argument("--strength", type=parse_strength, metavar="S",
                   help="how much of the restoration to apply outside repaired scratches, 0-1 "
                        "(default: the weights' own; 1 for the official weights)")
    r.add_argument("--detect-scale", type=argument_type(parse_detection_scale), default=None,
                   metavar="official|full|auto|N",
                   help="resolution the scratch detector sees: official (256 px short side), full, auto (full up to "
                        "1536 px) or N px; default: the weights' own (auto for Heirloom's, official for the official)")
    r.add_argument("--no-face-protection", dest="face_protection", action="store_false",
                   help="keep what the detector marks on eyes and mouths (by default it is cleared there: the "
                        "detector takes pupils and teeth for damage; brushed masks are never cleared)")
    r.add_argument("--correct-fading", action="store_true",
                   help="correct faded colours (the weights' estimate of the unfaded tone); default: keep the "
                        "photo's own tone and colour balance (grey stays grey, sepia stays sepia). "
                        "No effect with the official weights, which set the tone themselves")
    r.set_defaults(func=cmd_restore, scratch=False, faces=None, face_protection=True)

    d = sub.add_parser("detect", help="write damage masks only (<stem>_mask.png), to review before restoring "
                                      "with restore --mask-dir")
    d.add_argument("inputs", nargs="+", metavar="INPUT", help="photo files or folders of photos")
    d.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="folder for the masks")
    d.add_argument("--weights", default="default", help="default, official, profile:NAME or a weights folder")
    d.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    d.add_argument("--detect-scale", type=argument_type(parse_detection_scale), default=None,
                   metavar="official|full|auto|N",
                   help="resolution the scratch detector sees: official (256 px short side), full, auto (full up to "
                        "1536 px) or N px; default: the weights' own (auto for Heirloom's, official for the official)")
    d.add_argument("--threshold", type=parse_threshold, default=OFFICIAL_THRESHOLD, metavar="P",
                   help=f"detector probability that counts as damage (default {OFFICIAL_THRESHOLD})")
    d.add_argument("--dilation", type=int, choices=range(0, 11), default=None, metavar="N",
                   help="grow the mask by N pixels (default 0)")
    d.add_argument("--no-face-protection", dest="face_protection", action="store_false",
                   help="keep what the detector marks on eyes and mouths (by default it is cleared there: the "
                        "detector takes pupils and teeth for damage; brushed masks are never cleared)")
    d.add_argument("--overwrite", action="store_true", help="replace existing masks (they may hold your corrections)")
    d.add_argument("--allow-huge", action="store_true", help="read photos above the decompression-bomb limit")
    d.set_defaults(func=cmd_detect, face_protection=True)

    m = sub.add_parser("models", help="list, import or download weights")
    msub = m.add_subparsers(dest="models_command")
    imp = msub.add_parser("import", help="validate and install the official global_checkpoints.zip "
                                         "or face_checkpoints.zip")
    imp.add_argument("path", metavar="PATH")
    dl = msub.add_parser("download", help="download the official weights (resumable) and install them")
    dl.add_argument("which", choices=["official", "faces"], help="official: global and face weights; faces: face only")
    dl.add_argument("--url", help=argparse.SUPPRESS)  # tests and mirrors: global_checkpoints.zip
    dl.add_argument("--face-url", help=argparse.SUPPRESS)  # tests and mirrors: face_checkpoints.zip
    m.set_defaults(func=cmd_models)

    s = sub.add_parser("sample", help="write a damaged sample photo (made from a scikit-image photograph)")
    s.add_argument("-o", "--output", metavar="DIR", help="folder to write it to (default: the user data folder)")
    s.set_defaults(func=cmd_sample)

    add_train_parser(sub)
    add_finetune_parsers(sub)  # finetune ... and profiles ...
    return parser


def main(argv: Sequence[str] | None = None, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help / --version exit 0, bad usage exits 2
        return int(exc.code or 0)
    args.argv = [str(a) for a in argv]
    keep_large_buffers_mapped()  # a batch's restores reuse their buffers instead of faulting them in again
    try:
        return args.func(args, out, err)
    except UsageError as exc:
        print(f"error: {exc}", file=err)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=err)
        return EXIT_FAILED
