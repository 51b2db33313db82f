"""Background work for the GUI: engine calls in a QThread, results back as queued signals.

A :class:`Task` is a QObject moved to its own QThread; it talks to the window only through
signals. The one object shared with the engine is its ``Progress``, whose cancel and pause flags
are thread-safe Events: Cancel stops the engine at its next check while the thread is computing,
Pause holds it there until Resume. A task that may only stop at its own safe points (the album
queue between photos, a fine-tune between steps) hands the engine ``progress.ignoring_pause()`` and
ends at such a point once ``progress.paused``. :class:`TaskRunner` owns one thread at a time and
keeps the Python references alive until the thread has really ended (dropping a running QThread
aborts the process). It is the only place in the GUI that starts a QThread.

:class:`RestorerCache` holds one :class:`Restorer` per (weights, device) for the Restore tab and
the album queue alike, so a network is built once however many photos use it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PySide6.QtCore import QObject, Qt, QThread, Signal, Slot

from engine.core.pipeline import (
    RestoreOptions,
    Restorer,
    RestoreResult,
    detection_probability,
    required_networks,
)
from engine.io.metadata import PhotoFile
from engine.jobs.batch import BatchConfig, PhotoProcessor, WriteFailed, Written
from engine.models.checkpoints import ModelBank
from engine.progress import Cancelled, Progress
from engine.store.catalogue import resolve_weights

from .errors import (  # describe_error: also imported from here (queue tab)
    describe_error,
    error_details,
)

FINISHED, FAILED, CANCELLED = "finished", "failed", "cancelled"


def weights_key(choice: str) -> str:
    """``default`` / ``official`` stay words; a path is made absolute so two spellings share a cache entry."""
    if choice in ("default", "official") or choice.startswith("profile:"):
        return choice
    return str(Path(choice).expanduser().resolve())


class RestorerCache:
    """One Restorer per (weights, device), shared by every tab; safe to use from worker threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: dict[tuple[str, str], Restorer] = {}

    def get(self, weights: str, device: torch.device) -> Restorer:
        """The cached Restorer, or a new one (resolving the weights may raise WeightsNotFound)."""
        key = (weights_key(weights), str(device))
        with self._lock:
            restorer = self._items.get(key)
            if restorer is None:
                restorer = Restorer(ModelBank(resolve_weights(weights), device))
                self._items[key] = restorer
            return restorer

    def clear(self) -> None:
        """Forget every network (after new weights were imported over old ones)."""
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)


class Task(QObject):
    """One piece of background work: exactly one of finished / failed / cancelled is emitted.
    Pause, resume and cancel are the engine Progress's, so they work however deep the engine is."""

    progress = Signal(float, str)  # overall fraction 0..1, stage message
    finished = Signal(object)  # whatever work() returned
    failed = Signal(str, str)  # readable message, copyable details
    cancelled = Signal()
    # True: asked to pause (the work holds at its next check); False: resumed. Emitted in the GUI
    # thread that asked: connect a QObject's slot (PySide queues a plain lambda to the busy worker thread).
    paused = Signal(bool)

    def __init__(self, device: torch.device | None = None) -> None:
        super().__init__()
        self.device = device
        # Created here, in the GUI thread, so a cancel right after start is never lost.
        self._progress = Progress(callback=self._report)

    def cancel(self) -> None:
        """Called from the GUI thread: the engine raises Cancelled at its next check (also when paused)."""
        self._progress.cancel()

    def pause(self) -> bool:
        """Called from the GUI thread; False when there is nothing to pause (already paused or cancelled)."""
        if self._progress.paused or self._progress.cancelled:
            return False
        self._progress.pause()
        self.paused.emit(True)
        return True

    def resume(self) -> bool:
        """Called from the GUI thread; False when the task was not paused."""
        if not self._progress.paused:
            return False
        self._progress.resume()
        self.paused.emit(False)
        return True

    @property
    def is_cancelled(self) -> bool:
        return self._progress.cancelled

    @property
    def is_paused(self) -> bool:
        return self._progress.paused

    def _report(self, fraction: float, message: str) -> None:
        self.progress.emit(float(fraction), message)

    def work(self, progress: Progress) -> object:
        raise NotImplementedError

    def describe(self, exc: Exception) -> str:
        """The readable message for a failure (tasks that are not restores word theirs differently)."""
        return describe_error(exc, self.device)

    @Slot()
    def run(self) -> None:
        """Thread entry point. Every failure reaches the user as a message; none kills the thread."""
        try:
            if self._progress.cancelled:  # before the work began (a pause is the work's to honour)
                raise Cancelled("cancelled before it started")
            result = self.work(self._progress)
        except Cancelled:
            self.cancelled.emit()
        except Exception as exc:
            self.failed.emit(self.describe(exc), error_details(exc))
        else:
            self.finished.emit(result)


class FunctionTask(Task):
    """A task around a plain function of the Progress (imports, downloads, listings)."""

    def __init__(self, fn: Callable[[Progress], object], device: torch.device | None = None) -> None:
        super().__init__(device)
        self.fn = fn

    def work(self, progress: Progress) -> object:
        return self.fn(progress)


@dataclass(frozen=True)
class DetectJob:
    image: np.ndarray  # HxWx3 (uint8 or uint16) or HxW
    weights: str
    device: torch.device
    scale: str | int | None = None  # None: the weights' own detection scale
    protect_faces: bool = True  # clear what is detected on eyes and mouths (engine.core.faces.regions)


class DetectTask(Task):
    """Runs the scratch detector once; returns the HxW probability map (thresholded in the GUI)."""

    def __init__(self, job: DetectJob, restorers: RestorerCache) -> None:
        super().__init__(job.device)
        self.job, self.restorers = job, restorers

    def work(self, progress: Progress) -> np.ndarray:
        progress.report(0.0, "loading the detector")
        restorer = self.restorers.get(self.job.weights, self.job.device)
        restorer.bank.get("detector")
        # the engine's mask policy for a view that re-thresholds: eyes and mouths of faces are not damage
        return detection_probability(restorer.bank, as_rgb(self.job.image), self.job.scale,
                                     self.job.protect_faces, progress)[0]


@dataclass(frozen=True)
class RestoreJob:
    """Everything one restore needs, captured in the GUI thread before the worker starts."""

    image: np.ndarray  # HxW or HxWx3, uint8 / uint16 (the photo at its own depth)
    # The engine's one mask policy (engine.core.pipeline.damage_mask) applies them: detection with the
    # panel's threshold and dilation when they ask for it, or (detection off) ``user_mask`` as it is.
    options: RestoreOptions
    weights: str  # "default", "official" or a path
    device: torch.device
    user_mask: np.ndarray | None = None  # HxW bool: the reviewed mask, or the brushed strokes


@dataclass(frozen=True)
class RestoreOutcome:
    result: RestoreResult  # result.detected: the detector's map when this run detected
    job: RestoreJob  # what made it (Save records its options and weights)


class RestoreTask(Task):
    """Loads the weights (once per cache entry) and restores one photo (detecting if the options say so)."""

    ready = Signal()  # weights are loaded; restoration starts now (restarts the ETA clock)

    def __init__(self, job: RestoreJob, restorers: RestorerCache) -> None:
        super().__init__(job.device)
        self.job, self.restorers = job, restorers

    def work(self, progress: Progress) -> RestoreOutcome:
        job = self.job
        progress.report(0.0, "loading weights")
        restorer = self.restorers.get(job.weights, job.device)
        has_mask = job.user_mask is not None
        for name in required_networks(job.options, has_mask):  # one by one: Cancel is heard between networks
            progress.check()
            restorer.bank.get(name)
        restorer.prepare(job.options, has_user_mask=has_mask)  # the rest (faces): bad weights fail now
        progress.check()
        self.ready.emit()
        result = restorer.restore(job.image, job.options, user_mask=job.user_mask, progress=progress)
        return RestoreOutcome(result, job)


RESTORE_TAB_COMMAND = ("heirloom", "gui", "restore-tab")  # the sidecar's "command" for a Save… from the tab


@dataclass(frozen=True)
class SaveJob:
    """One Save… of the Restore tab, captured in the GUI thread."""

    photo: PhotoFile  # the original as read (depth, metadata, path: never written to)
    restored: RestoreOutcome
    image: np.ndarray  # what the view shows as "after" (faces switched off included)
    out: Path
    fmt: str  # png, tiff or jpeg
    quality: int = 95  # JPEG quality


class SaveTask(Task):
    """Encodes and writes a restored photo with its provenance sidecar, off the GUI thread, through
    the engine's one save path (the CLI and the album queue write theirs the same way)."""

    def __init__(self, job: SaveJob, restorers: RestorerCache) -> None:
        super().__init__(job.restored.job.device)
        self.job, self.restorers = job, restorers

    def work(self, progress: Progress) -> Written:
        job, restore = self.job, self.job.restored.job
        progress.report(0.0, "saving")
        config = BatchConfig(inputs=(str(job.photo.path),), outdir=job.out.parent, options=restore.options,
                             weights=restore.weights, fmt=job.fmt, quality=job.quality, overwrite=True,
                             argv=RESTORE_TAB_COMMAND)
        processor = PhotoProcessor(config, self.restorers.get(restore.weights, restore.device))
        return processor.save(job.photo, job.restored.result, job.out, job.fmt, image=job.image)

    def describe(self, exc: Exception) -> str:
        reason = str(exc) if isinstance(exc, (WriteFailed, ValueError)) else describe_error(exc, self.device)
        return f"Could not save {self.job.out}: {reason}"


def as_rgb(image: np.ndarray) -> np.ndarray:
    """HxW grey -> HxWx3 (the detector wants three channels; the values are unchanged)."""
    return np.repeat(image[..., None], 3, axis=2) if image.ndim == 2 else image


class TaskRunner(QObject):
    """Runs one Task at a time in its own QThread. ``done(outcome)`` fires once the thread has
    fully stopped, with "finished", "failed" or "cancelled"."""

    busy_changed = Signal(bool)
    done = Signal(str)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._thread: QThread | None = None
        self.task: Task | None = None
        self._outcome = ""

    @property
    def busy(self) -> bool:
        return self._thread is not None

    def start(self, task: Task) -> bool:
        """Start ``task`` (connect its signals first). False if another task is still running."""
        if self.busy:
            return False
        thread = QThread()
        task.moveToThread(thread)
        thread.started.connect(task.run)
        task.finished.connect(self._on_finished)
        task.failed.connect(self._on_failed)
        task.cancelled.connect(self._on_cancelled)
        for signal in (task.finished, task.failed, task.cancelled):
            # Direct: quit from the worker thread itself, so the thread ends even while the GUI is busy.
            signal.connect(thread.quit, Qt.ConnectionType.DirectConnection)
        thread.finished.connect(self._on_thread_finished)
        self._thread, self.task, self._outcome = thread, task, ""
        thread.start()
        self.busy_changed.emit(True)
        return True

    def cancel(self) -> bool:
        """Ask the running task to stop; True if there was one to ask."""
        if self.task is None or self.task.is_cancelled:
            return False
        self.task.cancel()
        return True

    def pause(self) -> bool:
        """Pause the running task; True if there was one that was not paused (or cancelled) yet."""
        return self.task is not None and self.task.pause()

    def resume(self) -> bool:
        """Let a paused task go on; True if there was one to resume."""
        return self.task is not None and self.task.resume()

    def wait(self) -> None:
        """Wait for a task that was asked to stop its own way (a fine-tune pausing at its next step):
        like ``stop`` without cancelling. Its queued signals still arrive afterwards."""
        if self._thread is not None:
            self._thread.wait()
            self._thread, self.task = None, None

    def stop(self) -> None:
        """Cancel and wait for the thread (window closing): nothing may outlive its owner."""
        if self._thread is not None:
            self.cancel()
            self._thread.quit()
            self._thread.wait()
            self._thread, self.task = None, None

    @Slot(object)
    def _on_finished(self, _result: object) -> None:
        self._outcome = FINISHED

    @Slot(str, str)
    def _on_failed(self, _message: str, _details: str) -> None:
        self._outcome = FAILED

    @Slot()
    def _on_cancelled(self) -> None:
        self._outcome = CANCELLED

    @Slot()
    def _on_thread_finished(self) -> None:
        thread = self._thread
        if thread is not None:
            thread.wait()  # 'finished' is emitted just before the thread really ends
        self._thread, self.task = None, None
        self.busy_changed.emit(False)
        self.done.emit(self._outcome or FAILED)
