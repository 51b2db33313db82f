"""``python main.py detect INPUT... -o DIR``: damage masks for a whole album, nothing restored.

An archivist detects first, reviews and brushes the masks (any paint program, or the Restore tab),
then restores with ``restore --mask-dir DIR``. Each photo gives ``<stem>_mask.png`` (white =
damage, exactly the photo's size and orientation) and ``<stem>_mask.png.heirloom.json`` (input
sha256, weights, threshold, scale, coverage). Masks are written atomically; a photo that cannot be
read is reported and the rest go on; existing masks are kept unless ``--overwrite`` (they may hold
a person's corrections).
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, TextIO

import numpy as np

from engine.core.pipeline import RestoreOptions, as_float_rgb, damage_mask
from engine.io.decode import ImageReadError, read_photo
from engine.io.durable import sha256_bytes
from engine.io.encode import encode_png
from engine.jobs.batch import (
    WriteFailed,
    collect_inputs,
    describe_os_error,
    write_output,
)
from engine.models.checkpoints import CheckpointError, ModelBank
from engine.progress import Cancelled, Progress
from engine.store import provenance
from engine.store.catalogue import resolve_weights

MASK_SUFFIX = "_mask.png"


def mask_name(photo: Path) -> str:
    """The mask file a photo gets (and ``restore --mask-dir`` looks for)."""
    return f"{photo.stem}{MASK_SUFFIX}"


@dataclass(frozen=True)
class DetectConfig:
    inputs: tuple[str, ...]
    outdir: Path
    options: RestoreOptions = field(default_factory=lambda: RestoreOptions(scratch=True))
    weights: str = "default"
    overwrite: bool = False
    allow_huge: bool = False
    argv: tuple[str, ...] = ()


@dataclass
class DetectSummary:
    done: int = 0
    failed: int = 0
    skipped: int = 0


def plan(config: DetectConfig) -> tuple[list[tuple[Path, Path]], list[tuple[Path, str]]]:
    """(photo, mask path) pairs and failures; a mask that would overwrite an input, or two photos
    wanting the same mask name, are failures, never silent overwrites."""
    sources, failures = collect_inputs(config.inputs)
    protected = {p.resolve() for p in sources}
    taken: dict[Path, Path] = {}
    pairs = []
    for src in sources:
        out = Path(config.outdir) / mask_name(src)
        if out.resolve() in protected:
            failures.append((src, f"mask {out} would overwrite an input photo; choose another output folder"))
        elif out.resolve() in taken:
            failures.append((src, f"mask name {out.name} is already used by {taken[out.resolve()]} in this run"))
        else:
            taken[out.resolve()] = src
            pairs.append((src, out))
    return pairs, failures


def detect_one(bank: ModelBank, config: DetectConfig, src: Path, out: Path, hashes: provenance.WeightHashes,
               progress: Progress) -> float:
    """Detect one photo's damage and write its mask and sidecar; returns the marked fraction."""
    t0 = time.perf_counter()
    photo = read_photo(src, config.allow_huge)
    policy = damage_mask(bank, as_float_rgb(photo.pixels), config.options, progress=progress)
    mask, protection = policy.holes, policy.face_protection
    data = encode_png(mask.astype(np.uint8) * 255)
    write_output(out, data)
    options = asdict(config.options)
    record = {
        "schema": "heirloom-mask/1",
        "input": {"path": str(src.resolve()), "sha256": photo.sha256, **photo.describe()},
        "mask": {"path": str(out.resolve()), "sha256": sha256_bytes(data), "coverage": float(mask.mean()),
                 "source": "detected", "reviewed": False},
        "detection": {"threshold": options["threshold"], "scale": policy.scale,
                      "scale_asked": options["detection_scale"],
                      "dilation": config.options.dilation,
                      "face_protection": protection.describe() if protection is not None else None},
        "weights": {"choice": config.weights, "label": getattr(bank.source, "label", None),
                    "files": hashes.describe(["detector"]), "card": hashes.card()},
        "device": provenance.device_info(bank.device),
        "seconds": round(time.perf_counter() - t0, 3),
        "command": list(config.argv),
        "environment": provenance.environment(),
        "warnings": list(photo.warnings),
    }
    try:
        provenance.write_sidecar(out, record)
    except OSError as exc:
        raise WriteFailed(f"cannot write {provenance.sidecar_path(out)}: {describe_os_error(exc)}") from None
    return float(mask.mean())


def run(config: DetectConfig, bank: ModelBank, out: TextIO | None = None,
        make_bar: Callable[[str], Any] | None = None) -> DetectSummary:
    """Detect every photo; prints ``OK``/``FAILED``/``SKIPPED`` lines and a summary like ``restore``."""
    out = out or sys.stdout
    summary = DetectSummary()
    pairs, failures = plan(config)
    for path, reason in failures:
        summary.failed += 1
        print(f"FAILED {path}: {reason}", file=out)
    if not pairs:
        return summary
    bank.get("detector")  # bad weights fail once, before any photo
    Path(config.outdir).mkdir(parents=True, exist_ok=True)
    hashes = provenance.WeightHashes(bank.source)
    for index, (src, mask_path) in enumerate(pairs, 1):
        if mask_path.exists() and not config.overwrite:
            summary.skipped += 1
            print(f"SKIPPED {src}: {mask_path} exists (it may hold your corrections; --overwrite replaces it)",
                  file=out)
            continue
        bar = make_bar(f"[{index}/{len(pairs)}] {src.name[:24]}") if make_bar else None
        try:
            coverage = detect_one(bank, config, src, mask_path, hashes, Progress(bar))
        except Cancelled:
            raise
        except (ImageReadError, WriteFailed, ValueError, RuntimeError, OSError, MemoryError) as exc:
            summary.failed += 1
            reason = describe_os_error(exc) if isinstance(exc, OSError) else str(exc) or type(exc).__name__
            print(f"FAILED {src}: {reason}", file=out)
            continue
        except Exception as exc:  # one odd file must not end an album: report it and go on
            summary.failed += 1
            print(f"FAILED {src}: unexpected error {type(exc).__name__}: {exc}", file=out)
            continue
        finally:
            if bar is not None:
                bar.close()
        summary.done += 1
        print(f"OK {src} -> {mask_path} ({100 * coverage:.2f} % marked)", file=out)
    return summary


def load_bank(weights: str, device: Any) -> ModelBank:
    return ModelBank(resolve_weights(weights), device)


__all__ = ["DetectConfig", "DetectSummary", "MASK_SUFFIX", "mask_name", "plan", "run", "load_bank",
           "CheckpointError"]
