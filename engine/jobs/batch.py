"""A restore batch that never loses work.

* The job list is a JSON state file (user data folder, or ``--state FILE``), rewritten atomically
  after each photo. ``--resume`` after a crash or ``kill -9`` skips photos already done (their output
  still holding the recorded sha256) and finishes the rest; temporary files a killed run left behind
  are removed, and outputs are only ever renamed into place complete.
* A bad photo is reported (``FAILED path: reason``) and the batch goes on; a summary ends the run.
* ``--shard K/N`` keeps a deterministic 1/N of the photos (by output name), so array jobs on any
  scheduler split a collection with no coordination between them.
"""

from __future__ import annotations

import errno
import hashlib
import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence, TextIO

import numpy as np
import torch

from engine.core.pipeline import (
    RestoreOptions,
    Restorer,
    RestoreResult,
    required_networks,
)
from engine.io.decode import ImageReadError, list_images, read_mask, read_photo
from engine.io.durable import (
    same_file,
    sha256_bytes,
    sha256_file,
    stale_temps,
    write_bytes_atomic,
)
from engine.io.encode import encode, encode_png, finish, output_format, output_suffix
from engine.io.metadata import PhotoFile
from engine.models.checkpoints import CheckpointError, ModelBank
from engine.progress import Cancelled, Progress
from engine.store import provenance
from engine.store.catalogue import resolve_weights
from engine.store.paths import user_data_dir

PENDING, DONE, FAILED, SKIPPED = "pending", "done", "failed", "skipped"
STATE_VERSION = 1


class BatchError(Exception):
    """The batch cannot start as asked (a usage problem, e.g. a state file from another batch)."""


@dataclass(frozen=True)
class BatchConfig:
    """Everything that decides a batch's work and outputs (and, hashed, which state file it uses)."""

    inputs: tuple[str, ...]
    outdir: Path
    options: RestoreOptions = RestoreOptions()
    mask: Path | None = None
    mask_dir: Path | None = None
    weights: str = "default"
    fmt: str = "auto"
    quality: int = 95
    save_mask: bool = False
    overwrite: bool = False
    allow_huge: bool = False
    resume: bool = False
    state: Path | None = None
    shard: tuple[int, int] = (0, 1)
    argv: tuple[str, ...] = ()

    def settings(self) -> dict[str, Any]:
        """The options as recorded in provenance (and, minus run-only switches, in the batch key)."""
        options = asdict(self.options)
        options["mask_dilation"] = self.options.dilation
        return {"restore": options, "format": self.fmt, "quality": self.quality if self.fmt == "jpeg" else None,
                "save_mask": self.save_mask, "allow_huge": self.allow_huge, "overwrite": self.overwrite,
                "weights": self.weights, "mask": str(self.mask) if self.mask else None,
                "mask_dir": str(self.mask_dir) if self.mask_dir else None, "shard": f"{self.shard[0]}/{self.shard[1]}"}

    def key(self) -> str:
        """Names this batch's default state file: sorted inputs + options + output folder (+ shard)."""
        settings = self.settings()
        settings.pop("overwrite")
        blob = json.dumps({"inputs": sorted(str(Path(p).resolve()) for p in self.inputs),
                           "outdir": str(Path(self.outdir).resolve()), "settings": settings}, sort_keys=True)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:20]

    def state_path(self) -> Path:
        if self.state is not None:
            return Path(self.state)

        return user_data_dir() / "batches" / f"{self.key()}.json"


@dataclass
class Item:
    """One photo of the batch, as persisted in the state file."""

    input: str
    output: str
    format: str
    mask: str | None = None
    status: str = PENDING
    error: str | None = None
    output_sha256: str | None = None
    writing_sha256: str | None = None  # set just before the output is renamed into place
    output_stat: list[int] | None = None  # [size, mtime_ns] when done: spares re-hashing big outputs on resume


def parse_shard(text: str) -> tuple[int, int]:
    """``K/N`` with 0 <= K < N (0-based, like SLURM array ids and Kubernetes completion indexes)."""
    try:
        k, n = (int(part) for part in text.split("/"))
    except ValueError:
        raise BatchError(f"--shard expects K/N, e.g. 0/4 (got {text!r})") from None
    if n < 1 or not 0 <= k < n:
        raise BatchError(f"--shard {text}: need N >= 1 and 0 <= K < N (K counts from 0)")
    return k, n


def shard_of(key: str, count: int) -> int:
    """Deterministic shard of a name: the same on every machine, whatever else is in the batch."""
    return int.from_bytes(hashlib.sha256(key.encode("utf-8", "surrogateescape")).digest()[:8], "big") % count


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


def mask_in_folder(folder: Path, photo: Path) -> Path:
    """A photo's mask in a ``--mask-dir``: ``<stem>.png``, or ``<stem>_mask.png`` as ``detect`` and
    ``--save-mask`` write it (so detected, then reviewed masks go straight back in)."""
    plain = Path(folder) / f"{photo.stem}.png"
    detected = Path(folder) / f"{photo.stem}_mask.png"
    return detected if not plain.exists() and detected.exists() else plain


def plan(config: BatchConfig) -> tuple[list[Item], list[tuple[Path, str]]]:
    """This shard's items and failures. Every shard plans the whole list the same way, so a name
    clash or an output that would overwrite an input is reported once, by the shard that owns it."""
    sources, failures = collect_inputs(config.inputs)
    outdir = Path(config.outdir)
    masks = {src: config.mask if config.mask else (mask_in_folder(config.mask_dir, src) if config.mask_dir else None)
             for src in sources}
    protected = {p.resolve() for p in sources} | {m.resolve() for m in masks.values() if m is not None}
    owned: list[tuple[str, Item | tuple[Path, str]]] = [(str(p), (p, r)) for p, r in failures]
    taken: dict[Path, Path] = {}
    for src in sources:
        fmt = output_format(src, config.fmt)
        out = outdir / output_name(src, fmt)
        written = [out, provenance.sidecar_path(out)]
        if config.save_mask:
            written.append(outdir / f"{src.stem}_mask.png")
        clash = next((w for w in written if w.resolve() in protected), None)
        if clash is not None:
            owned.append((out.name, (src, f"output {clash} would overwrite an input photo or mask; "
                                          "choose another output folder")))
            continue
        used = next((w for w in written if w.resolve() in taken), None)
        if used is not None:
            owned.append((out.name, (src, f"output name {used.name} is already used by {taken[used.resolve()]} "
                                          "in this run")))
            continue
        taken.update({w.resolve(): src for w in written})
        mask = masks[src]
        owned.append((out.name, Item(str(src), str(out), fmt, str(mask) if mask else None)))
    k, n = config.shard
    mine = [entry for key, entry in owned if shard_of(key, n) == k]
    return [e for e in mine if isinstance(e, Item)], [e for e in mine if not isinstance(e, Item)]


class BatchState:
    """The persisted job list; every save is atomic, so a crash leaves the previous or the new list."""

    def __init__(self, path: Path, key: str, items: list[Item], err: TextIO) -> None:
        self.path, self.key, self.items, self.err = path, key, items, err
        self._warned = False

    @staticmethod
    def _load(path: Path) -> dict[str, Any] | None:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise BatchError(f"state file {path} cannot be read ({exc}); remove it or choose another --state") from None
        valid = isinstance(data, dict) and data.get("version") == STATE_VERSION and isinstance(data.get("items"), list)
        if not valid:
            raise BatchError(f"{path} is not a Heirloom batch state file")
        return data

    @classmethod
    def open(cls, config: BatchConfig, items: list[Item], err: TextIO) -> "BatchState":
        """A fresh state, or with ``resume`` the saved one merged into today's plan (by output path).
        Nothing is written yet: a batch that cannot start leaves the saved state as it was."""
        path, key = config.state_path(), config.key()
        state = cls(path, key, items, err)
        if config.resume:
            saved = cls._load(path)
            if saved is not None:
                if saved.get("key") != key:
                    raise BatchError(f"state file {path} belongs to another batch (different inputs, options or "
                                     "output folder); run without --resume to start afresh, or use another --state")
                known = {(s.get("input"), s.get("output")): s for s in saved["items"] if isinstance(s, dict)}
                for item in items:
                    old = known.get((item.input, item.output))
                    if old:
                        for name in ("status", "error", "output_sha256", "writing_sha256", "output_stat"):
                            setattr(item, name, old.get(name))
                        item.status = item.status if item.status in (PENDING, DONE, FAILED, SKIPPED) else PENDING
        return state

    def save(self) -> None:
        body = {"version": STATE_VERSION, "key": self.key, "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "items": [asdict(item) for item in self.items]}
        try:
            write_bytes_atomic(self.path, json.dumps(body, indent=1, ensure_ascii=False).encode("utf-8"))
        except OSError as exc:
            if not self._warned:
                print(f"warning: cannot save the batch state {self.path} ({describe_os_error(exc)}); "
                      "--resume will not know about this run's progress", file=self.err)
                self._warned = True


def describe_os_error(exc: OSError) -> str:
    reasons = {errno.ENOSPC: "disk full (no space left on device)", errno.EDQUOT: "disk quota exceeded",
               errno.EACCES: "permission denied", errno.EPERM: "permission denied",
               errno.EROFS: "read-only file system", errno.ENAMETOOLONG: "file name too long"}
    return reasons.get(exc.errno, exc.strerror or str(exc))


class WriteFailed(Exception):
    """An output could not be written; nothing partial was left behind."""


class WouldOverwriteOriginal(WriteFailed):
    """The output path is the photo being restored: Heirloom never writes over an original."""


def refuse_original(out: Path, original: Path) -> None:
    """Raise :class:`WouldOverwriteOriginal` when ``out`` names the original photo (any spelling)."""
    if same_file(out, original):
        raise WouldOverwriteOriginal(f"{Path(out).name} is the original photo, which Heirloom never overwrites; "
                                     "choose another file name")


def recorded_output_intact(out: Path, output_sha256: str | None, output_stat: list[int] | None) -> bool:
    """The output a state file recorded as done is still there, unchanged (size and time spare
    re-hashing a large output; otherwise its sha256 must match)."""
    if not output_sha256 or not out.is_file():
        return False
    stat = out.stat()
    return output_stat == [stat.st_size, stat.st_mtime_ns] or sha256_file(out) == output_sha256


def interrupted_write(out: Path, writing_sha256: str | None) -> bool:
    """``out`` holds exactly the bytes a killed run was renaming into place: ours to finish."""
    return bool(writing_sha256) and out.is_file() and sha256_file(out) == writing_sha256


def sidecar_vouches(out: Path, input_sha256: str) -> bool:
    """``out`` is a restoration of the photo whose content hashes to ``input_sha256``: its
    provenance sidecar says so and the output still holds the bytes the sidecar recorded."""
    try:
        record = json.loads(provenance.sidecar_path(out).read_text(encoding="utf-8"))
        recorded_in, recorded_out = record["input"]["sha256"], record["output"]["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return recorded_in == input_sha256 and out.is_file() and sha256_file(out) == recorded_out


def output_name(src: Path, fmt: str, suffix: str = "") -> str:
    """The restored file's name: the photo's stem (plus ``suffix``) and the format's extension."""
    return f"{src.stem}{suffix}{output_suffix(src, fmt)}"


def write_output(path: Path, data: bytes) -> None:
    try:
        write_bytes_atomic(path, data)
    except OSError as exc:
        raise WriteFailed(f"cannot write {path}: {describe_os_error(exc)}") from None


def faces_record(options: RestoreOptions, result: Any) -> dict[str, Any]:
    """The sidecar's ``faces`` entry: what the face stage did, or why it did not run."""
    if result.faces is not None:
        return result.faces.describe()
    skipped = [w for w in result.warnings if w.startswith("faces were not refined")]
    reason = ("off (--no-faces)" if options.faces is False else skipped[0] if skipped
              else "off: the weights have no face generator")
    return {"ran": False, "reason": reason}


def face_protection_record(result: Any) -> dict[str, Any] | None:
    """The sidecar's ``mask.face_protection``: whether detected damage was cleared on eyes and mouths
    (engine.core.faces.regions), how much, or why not ("off", "nothing detected", "unavailable: ...");
    None when no detector ran (a brushed or reviewed mask is never cleared)."""
    protection = getattr(result, "face_protection", None)
    return None if protection is None else protection.describe()


@dataclass(frozen=True)
class Written:
    """One finished photo: what was written and what the user should hear about it."""

    sha256: str
    stat: list[int]  # [size, mtime_ns] of the output
    mode: str
    seconds: float
    notes: list[str]
    faces: tuple[int, int] | None = None  # (refined, found) when the face stage ran
    strength: float = 1.0  # the restoration strength applied (per photo unless the user set one)


class PhotoProcessor:
    """Restores one decoded photo into an output file and its provenance sidecar. The CLI batch, the
    GUI album queue and the Restore tab's Save… all write through :meth:`save`, so every output is
    encoded, written atomically and recorded the same way whichever front end made it."""

    def __init__(self, config: BatchConfig, restorer: Restorer) -> None:
        self.config, self.restorer = config, restorer
        self.hashes = provenance.WeightHashes(restorer.bank.source)
        self.env = provenance.environment()

    def process(self, photo: PhotoFile, out: Path, fmt: str, *, user_mask: np.ndarray | None = None,
                mask_file: Path | None = None, progress: Progress | None = None,
                before_write: Callable[[str], None] | None = None, read_seconds: float = 0.0) -> Written:
        """Restore ``photo`` with the config's options, then :meth:`save` it to ``out``."""
        started = time.perf_counter() - read_seconds
        result = self.restorer.restore(photo.pixels, self.config.options, user_mask, progress or Progress())
        return self.save(photo, result, out, fmt, mask_file=mask_file, before_write=before_write,
                         read_seconds=read_seconds, started=started)

    def save(self, photo: PhotoFile, result: RestoreResult, out: Path, fmt: str, *, image: np.ndarray | None = None,
             mask_file: Path | None = None, before_write: Callable[[str], None] | None = None,
             read_seconds: float = 0.0, started: float | None = None) -> Written:
        """Write a restored photo: encoded at the photo's own depth with its metadata, atomically, never
        over the original, then its provenance sidecar. ``image`` replaces ``result.image`` when what
        is saved differs from the restoration (faces switched off in the Restore tab); ``mask_file``
        is the file the user's mask came from; ``before_write(sha256)`` runs just before the rename,
        so a caller can persist which bytes it is writing (crash recovery); ``started``: when the
        work on this photo began (``perf_counter``; default now), for the recorded total time."""
        cfg, src = self.config, Path(photo.path)
        refuse_original(out, src)
        started = time.perf_counter() if started is None else started
        timings: dict[str, float] = {"read": read_seconds, **result.timings}
        t0 = time.perf_counter()
        notes = list(photo.warnings) + list(result.warnings)
        pixels, alpha = finish(photo, result.image if image is None else image)
        data = encode(photo, pixels, alpha, fmt, cfg.quality, notes)
        digest = sha256_bytes(data)
        mask_out = out.with_name(f"{src.stem}_mask.png") if cfg.save_mask and result.mask is not None else None
        mask_data = encode_png(result.mask.astype(np.uint8) * 255) if mask_out is not None else None
        timings["encode"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        if before_write is not None:
            before_write(digest)
        write_output(out, data)
        if mask_out is not None:
            write_output(mask_out, mask_data)
        timings["write"] = time.perf_counter() - t0
        timings["total"] = time.perf_counter() - started
        record = self._record(photo, out, fmt, result, digest, mask_file, mask_out, timings, notes)
        try:
            provenance.write_sidecar(out, record)
        except OSError as exc:
            raise WriteFailed(f"cannot write {provenance.sidecar_path(out)}: {describe_os_error(exc)}") from None
        stat = out.stat()
        faces = (result.faces.refined, result.faces.found) if result.faces is not None else None
        return Written(digest, [stat.st_size, stat.st_mtime_ns], result.mode.value,
                       sum(result.timings.values()), notes, faces, result.strength)

    def _record(self, photo: PhotoFile, out: Path, fmt: str, result: RestoreResult, digest: str,
                mask_file: Path | None, mask_out: Path | None, timings: dict[str, float],
                notes: list[str]) -> dict[str, Any]:
        """The provenance sidecar's content for one finished photo."""
        cfg = self.config
        brushed, from_file = result.brushed, mask_file is not None
        source = self.restorer.bank.source
        networks = required_networks(cfg.options, brushed)
        if result.refined:
            networks.append("refine")
        if result.faces is not None and result.faces.refined:
            networks.append(result.faces.network)
        return provenance.build_record(
            input_path=Path(photo.path), input_sha256=photo.sha256, input_info=photo.describe(),
            output_path=out, output_sha256=digest, output_format=fmt,
            weights={"choice": cfg.weights, "label": getattr(source, "label", None),
                     "files": self.hashes.describe(networks),
                     "card": self.hashes.card()},
            options={**cfg.settings(), "mode": result.mode.value, "strength_applied": result.strength,
                     "detection_scale_applied": getattr(result, "detection_scale", None),
                     "tone_applied": result.tone},
            device=provenance.device_info(self.restorer.device),
            mask={"source": provenance.mask_source(cfg.options.detect, brushed),
                  "file": str(Path(mask_file).resolve()) if from_file else None,
                  "file_sha256": sha256_file(Path(mask_file)) if from_file else None,
                  "saved": str(mask_out.resolve()) if mask_out is not None else None,
                  "face_protection": face_protection_record(result)},
            timings=timings, warnings=notes, command=list(cfg.argv), environment_info=self.env,
            tile=result.tiling or None, faces=faces_record(cfg.options, result))


ProgressFactory = Callable[[str], Any]


@dataclass
class Batch:
    """Runs one planned batch with one restorer."""

    config: BatchConfig
    restorer: Restorer
    state: BatchState
    out: TextIO
    err: TextIO
    make_bar: ProgressFactory | None = None
    counts: dict[str, int] = field(default_factory=lambda: {DONE: 0, FAILED: 0, SKIPPED: 0})

    def __post_init__(self) -> None:
        self.photos = PhotoProcessor(self.config, self.restorer)

    def _skip_reason(self, item: Item) -> str | None:
        out = Path(item.output)
        if not out.exists():
            return None
        if self.config.resume and item.status == DONE and recorded_output_intact(out, item.output_sha256,
                                                                                  item.output_stat):
            return f"already restored in an earlier run ({out})"
        if interrupted_write(out, item.writing_sha256):
            return None  # our own output from an interrupted run: finish the item (same bytes again)
        if not self.config.overwrite:
            return f"{out} exists (use --overwrite to replace it)"
        return None

    def process(self, item: Item, index: int, total: int) -> None:
        src, out = Path(item.input), Path(item.output)
        t_start = time.perf_counter()
        photo = read_photo(src, self.config.allow_huge)
        user_mask = None
        if item.mask is not None:
            if not Path(item.mask).is_file():
                raise ImageReadError(f"mask {item.mask} not found")
            user_mask = read_mask(Path(item.mask))
        read_seconds = time.perf_counter() - t_start

        def before_write(digest: str) -> None:
            item.writing_sha256 = digest
            self.state.save()

        bar = self.make_bar(f"[{index}/{total}] {src.name[:24]}") if self.make_bar else None
        try:
            written = self.photos.process(photo, out, item.format, user_mask=user_mask,
                                          mask_file=Path(item.mask) if item.mask else None,
                                          progress=Progress(bar), before_write=before_write,
                                          read_seconds=read_seconds)
        finally:
            if bar is not None:
                bar.close()
        item.status, item.error, item.output_sha256 = DONE, None, written.sha256
        item.output_stat = written.stat
        for note in written.notes:
            print(f"warning: {src}: {note}", file=self.err)
        faces = f", faces refined: {written.faces[0]} of {written.faces[1]}" if written.faces is not None else ""
        print(f"OK {src} -> {out} ({written.mode}, strength {written.strength:.2f}, {written.seconds:.1f} s{faces})",
              file=self.out)

    def _failed(self, item: Item, message: str) -> None:
        item.status, item.error = FAILED, message
        self.counts[FAILED] += 1
        print(f"FAILED {item.input}: {message}", file=self.out)

    def run(self) -> None:
        total = len(self.state.items)
        for index, item in enumerate(self.state.items, 1):
            reason = self._skip_reason(item)
            if reason is not None:
                self.counts[SKIPPED] += 1
                print(f"SKIPPED {item.input}: {reason}", file=self.out)
                if item.status not in (DONE, SKIPPED):  # a resumed 100k batch must not rewrite its state 100k times
                    item.status = SKIPPED
                    self.state.save()
                continue
            try:
                self.process(item, index, total)
                self.counts[DONE] += 1
            except Cancelled:
                raise
            except (ImageReadError, WriteFailed, ValueError, RuntimeError, OSError, CheckpointError,
                    MemoryError) as exc:
                reason = describe_os_error(exc) if isinstance(exc, OSError) else str(exc) or type(exc).__name__
                self._failed(item, reason)
            except Exception as exc:  # one odd file must not end a 100k-photo batch: report it and go on
                self._failed(item, f"unexpected error {type(exc).__name__}: {exc}")
            self.state.save()


def build_restorer(config: BatchConfig, device: Any = None) -> Restorer:
    return Restorer(ModelBank(resolve_weights(config.weights), device or torch.device("cpu")))


def run(config: BatchConfig, out: TextIO | None = None, err: TextIO | None = None, *, device: Any = None,
        restorer: Restorer | None = None, make_bar: ProgressFactory | None = None) -> int:
    """Plan, restore and summarise one batch; returns the exit status (0 all good, 1 any failure)."""
    out, err = out or sys.stdout, err or sys.stderr
    started = time.perf_counter()
    items, failures = plan(config)
    state = BatchState.open(config, items, err)
    for path, reason in failures:
        print(f"FAILED {path}: {reason}", file=out)
    try:
        restorer = restorer or build_restorer(config, device)
        if items:  # load every network now: bad weights fail once, before any photo
            restorer.prepare(config.options, has_user_mask=any(i.mask for i in items))
    except CheckpointError as exc:
        print(f"error: {exc}", file=err)
        return 1
    outdir = Path(config.outdir)
    try:
        outdir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        print(f"error: cannot create the output folder {outdir}: {describe_os_error(exc)}", file=err)
        return 1
    state.save()
    done_before = sum(1 for i in items if i.status == DONE)
    if config.resume:
        print(f"resuming: {done_before} of {len(items)} photo(s) already done (state {state.path})", file=err)
    names = {Path(i.output).name for i in items} | {Path(i.output).name + provenance.SIDECAR_SUFFIX for i in items}
    if config.save_mask:
        names |= {f"{Path(i.input).stem}_mask.png" for i in items}
    leftovers = stale_temps(outdir, names) + stale_temps(state.path.parent, {state.path.name})
    for leftover in leftovers:  # a killed run's half-written files: never kept
        leftover.unlink(missing_ok=True)
    batch = Batch(config, restorer, state, out, err, make_bar)
    try:
        batch.run()
    except Cancelled:
        print("cancelled", file=err)
        return 1
    failed = batch.counts[FAILED] + len(failures)
    print(f"done: {batch.counts[DONE]}, failed: {failed}, skipped: {batch.counts[SKIPPED]} "
          f"in {time.perf_counter() - started:.1f} s", file=out)
    return 1 if failed else 0
