"""The album queue's state: which photos wait, which are done, where their outputs went.

The GUI's album queue runs overnight, so the state must survive a crash, a ``kill -9`` or a power
cut: it is one JSON file (``user_data_dir()/queue.json`` by default), rewritten atomically after
every change of status. On load, a photo that was *running* when the app died goes back to
*pending*; *done* photos are never redone. A corrupt file is kept as a backup and the queue starts
empty, so a bad file never stops the app from opening.

Outputs are written by the same ``engine.jobs.batch.PhotoProcessor`` the CLI batch uses (atomic writes,
provenance sidecars); an existing file in the output folder is never replaced unless it is our own
half-finished write, and a photo whose restoration is already there (its sidecar names the same
input sha256) is skipped.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import threading
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Iterable

from engine.io.decode import IMAGE_SUFFIXES, list_images, read_photo
from engine.io.durable import sha256_file, write_bytes_atomic
from engine.io.encode import output_format
from engine.jobs.batch import (
    PhotoProcessor,
    Written,
    describe_os_error,
    interrupted_write,
    output_name,
    recorded_output_intact,
    sidecar_vouches,
)
from engine.progress import Progress
from engine.store.masks import MaskStore
from engine.store.paths import user_data_dir

PENDING, RUNNING, DONE, FAILED, CANCELLED, SKIPPED = "pending", "running", "done", "failed", "cancelled", "skipped"
STATUSES = (PENDING, RUNNING, DONE, FAILED, CANCELLED, SKIPPED)
FINISHED = (DONE, SKIPPED)  # never run again
RETRYABLE = (FAILED, CANCELLED)
QUEUE_VERSION = 1


def default_state_path() -> Path:

    return user_data_dir() / "queue.json"


@dataclass
class QueueItem:
    """One photo in the queue (everything here is persisted)."""

    id: int
    path: str
    size: int
    status: str = PENDING
    progress: float = 0.0  # 0..1 of the current or last run
    error: str | None = None  # readable reason when failed (or a note when skipped)
    output: str | None = None
    added: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    input_sha256: str | None = None
    output_sha256: str | None = None
    output_stat: list[int] | None = None
    writing_sha256: str | None = None  # bytes being renamed into ``output``: ours to finish after a crash

    @property
    def name(self) -> str:
        return Path(self.path).name

    @classmethod
    def from_dict(cls, data: Any) -> "QueueItem":
        """Strict enough that a damaged entry is noticed (ValueError), lenient about extra keys."""
        if not isinstance(data, dict):
            raise ValueError("an item is not an object")
        known = {f.name for f in fields(cls)}
        item = cls(**{k: v for k, v in data.items() if k in known})
        if not isinstance(item.id, int) or not isinstance(item.path, str) or not isinstance(item.size, int):
            raise ValueError(f"item {data!r} lacks an id, path or size")
        if item.status not in STATUSES:
            raise ValueError(f"item {item.path} has an unknown status {item.status!r}")
        item.progress = float(item.progress or 0.0)
        return item


def expand_paths(paths: Iterable[Path]) -> tuple[list[Path], list[Path]]:
    """Image files among ``paths``, folders searched recursively (hidden ones skipped), in a stable
    order. Returns (images, ignored): ignored are files that are not images or do not exist."""
    images: list[Path] = []
    ignored: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            for folder, subdirs, _ in os.walk(path):
                subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
                try:
                    images.extend(list_images(Path(folder)))
                except OSError:
                    ignored.append(Path(folder))
        elif path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
            images.append(path)
        else:
            ignored.append(path)
    return images, ignored


class AlbumQueue:
    """The queue's items, output folder and restore settings, saved atomically on every status change.

    Every method takes the lock: the GUI thread adds and removes while the worker thread claims and
    finishes items."""

    def __init__(self, path: Path | None = None, items: list[QueueItem] | None = None,
                 output_dir: str | None = None, settings: dict[str, Any] | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self.items: list[QueueItem] = list(items or [])
        self.output_dir = output_dir
        self.settings: dict[str, Any] = dict(settings or {})
        self.save_error: str | None = None  # last failure to save, for the GUI to show once
        self._lock = threading.RLock()
        self._ids = itertools.count(max((i.id for i in self.items), default=0) + 1)

    # ------------------------------------------------------------------ persistence

    @classmethod
    def load(cls, path: Path | None = None) -> tuple["AlbumQueue", list[str]]:
        """The saved queue (empty when there is none) and warnings for the user. Never raises for a
        bad file: it is copied to ``<name>.corrupt-<time>`` and the queue starts empty."""
        path = Path(path) if path is not None else default_state_path()
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return cls(path), []  # first run: nothing to restore, nothing to warn about
        except OSError as exc:
            return cls(path), [f"The saved album queue {path} cannot be read ({describe_os_error(exc)}); "
                               "starting with an empty queue."]
        try:
            data = json.loads(raw.decode("utf-8"))
            if not isinstance(data, dict) or data.get("version") != QUEUE_VERSION or not isinstance(
                    data.get("items"), list):
                raise ValueError("not a Heirloom album queue file")
            items = [QueueItem.from_dict(entry) for entry in data["items"]]
            if len({i.id for i in items}) != len(items):
                raise ValueError("two items share an id")
            output_dir = data.get("output_dir")
            settings = data.get("settings") or {}
            if not (output_dir is None or isinstance(output_dir, str)) or not isinstance(settings, dict):
                raise ValueError("bad output folder or settings")
        except (ValueError, TypeError) as exc:
            backup = cls._backup(path)
            where = f" (kept as {backup.name})" if backup else ""
            return cls(path), [f"The saved album queue was damaged and could not be read{where}: {exc}. "
                               "Starting with an empty queue."]
        for item in items:
            if item.status == RUNNING:  # the app died mid-photo: do it again
                item.status, item.progress, item.started = PENDING, 0.0, None
        return cls(path, items, output_dir, settings), []

    @staticmethod
    def _backup(path: Path) -> Path | None:
        backup = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}")
        try:
            shutil.copy2(path, backup)
        except OSError:
            return None
        return backup

    def to_dict(self) -> dict[str, Any]:
        with self._lock:
            return {"version": QUEUE_VERSION, "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    "output_dir": self.output_dir, "settings": dict(self.settings),
                    "items": [asdict(item) for item in self.items]}

    def save(self) -> bool:
        """Write the state atomically; a failure is kept in ``save_error`` (the queue goes on)."""
        if self.path is None:
            return True
        with self._lock:
            body = json.dumps(self.to_dict(), indent=1, ensure_ascii=False).encode("utf-8")
            try:
                write_bytes_atomic(self.path, body)
            except OSError as exc:
                self.save_error = f"cannot save the album queue to {self.path}: {describe_os_error(exc)}"
                return False
            self.save_error = None
            return True

    # ------------------------------------------------------------------ changes from the GUI

    def unknown(self, photos: Iterable[Path]) -> list[Path]:
        """``photos`` minus those already queued and minus repeats, in order."""
        with self._lock:
            known = {self._key(i.path) for i in self.items}
            fresh = []
            for photo in photos:
                key = self._key(photo)
                if key not in known:
                    known.add(key)
                    fresh.append(Path(photo))
            return fresh

    def add(self, photos: Iterable[Path]) -> list[QueueItem]:
        """Enqueue photos not already in the queue (same resolved path); returns the new items."""
        with self._lock:
            known = {self._key(i.path) for i in self.items}
            added = []
            for photo in photos:
                key = self._key(photo)
                if key in known:
                    continue
                known.add(key)
                try:
                    size = Path(photo).stat().st_size
                except OSError:
                    size = 0
                item = QueueItem(next(self._ids), str(Path(key)), size)
                self.items.append(item)
                added.append(item)
            if added:
                self.save()
            return added

    @staticmethod
    def _key(path: str | Path) -> str:
        try:
            return str(Path(path).resolve())
        except OSError:
            return str(Path(path).absolute())

    def remove(self, ids: Iterable[int]) -> list[int]:
        """Drop items (never the running one); returns the ids removed."""
        wanted = set(ids)
        with self._lock:
            gone = [i.id for i in self.items if i.id in wanted and i.status != RUNNING]
            self.items = [i for i in self.items if i.id not in gone]
            if gone:
                self.save()
            return gone

    def retry(self) -> list[QueueItem]:
        """Failed and cancelled items go back to pending."""
        with self._lock:
            again = [i for i in self.items if i.status in RETRYABLE]
            for item in again:
                item.status, item.error, item.progress, item.finished = PENDING, None, 0.0, None
            if again:
                self.save()
            return again

    def set_output_dir(self, folder: Path) -> None:
        with self._lock:
            self.output_dir = str(folder)
            self.save()

    def set_settings(self, settings: dict[str, Any]) -> None:
        with self._lock:
            self.settings = dict(settings)
            self.save()

    # ------------------------------------------------------------------ changes from the worker

    def get(self, item_id: int) -> QueueItem | None:
        with self._lock:
            return next((i for i in self.items if i.id == item_id), None)

    def claim_next(self) -> QueueItem | None:
        """The first pending item, now marked running (saved), or None when nothing waits."""
        with self._lock:
            item = next((i for i in self.items if i.status == PENDING), None)
            if item is not None:
                item.status, item.progress, item.error = RUNNING, 0.0, None
                item.started, item.finished = time.time(), None
                self.save()
            return item

    def mark_writing(self, item: QueueItem, output: Path, digest: str) -> None:
        """Record the bytes about to be renamed into ``output`` (saved before the rename)."""
        with self._lock:
            item.output, item.writing_sha256 = str(output), digest
            self.save()

    def finish(self, item: QueueItem, status: str, *, error: str | None = None, output: Path | None = None,
               written: Written | None = None) -> None:
        with self._lock:
            item.status, item.error, item.finished = status, error, time.time()
            if status in FINISHED:
                item.progress = 1.0
            if output is not None:
                item.output = str(output)
            if written is not None:
                item.output_sha256, item.output_stat = written.sha256, written.stat
            self.save()

    def requeue(self, item: QueueItem) -> None:
        """An item interrupted by closing the app: pending again, as after a crash."""
        with self._lock:
            item.status, item.progress, item.started = PENDING, 0.0, None
            self.save()

    def counts(self) -> dict[str, int]:
        with self._lock:
            found = dict.fromkeys(STATUSES, 0)
            for item in self.items:
                found[item.status] += 1
            return found


def choose_output(item: QueueItem, outdir: Path, fmt: str, input_sha256: str) -> tuple[Path, bool]:
    """Where ``item``'s output goes: (path, False) to write it, or (path, True) when the output
    folder already holds its restoration. Existing files are never taken over: the name gets
    `` (2)``, `` (3)``… unless the file there is this item's own unfinished write."""
    src = Path(item.path)
    if item.output and interrupted_write(Path(item.output), item.writing_sha256):
        return Path(item.output), False
    for n in itertools.count(1):
        out = outdir / output_name(src, fmt, "" if n == 1 else f" ({n})")
        if not out.exists():
            return out, False
        if str(out) == item.output and recorded_output_intact(out, item.output_sha256, item.output_stat):
            return out, True
        if sidecar_vouches(out, input_sha256):
            return out, True
    raise AssertionError("unreachable")


def restore_item(queue: AlbumQueue, item: QueueItem, processor: PhotoProcessor, outdir: Path,
                 masks: MaskStore | None, progress: Progress) -> str:
    """Restore one claimed item into ``outdir`` and mark it done or skipped; returns the status.
    Failures raise (the caller turns them into a readable message and marks the item failed)."""
    src = Path(item.path)
    item.input_sha256 = sha256_file(src)  # the one hash of this photo: passed on, never recomputed
    fmt = output_format(src, processor.config.fmt)
    out, already = choose_output(item, outdir, fmt, item.input_sha256)
    if already:
        queue.finish(item, SKIPPED, error=f"already restored as {out}", output=out)
        return SKIPPED
    progress.report(0.0, "reading")
    photo = read_photo(src, processor.config.allow_huge, sha256=item.input_sha256)
    user_mask = masks.load(photo, photo.pixels.shape[:2]) if masks is not None else None
    mask_file = masks.mask_path(photo) if user_mask is not None and masks is not None else None
    written = processor.process(photo, out, fmt, user_mask=user_mask, mask_file=mask_file, progress=progress,
                                before_write=lambda digest: queue.mark_writing(item, out, digest))
    queue.finish(item, DONE, output=out, written=written)
    return DONE
