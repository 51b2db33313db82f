"""Background restoration for the GUI.

Loading weights and running the networks take seconds to minutes, so they run in a QObject moved
to a QThread. The worker talks to the window only through signals (queued across threads); the
one shared object is the engine's ``Progress``, whose cancel flag is a thread-safe Event, so the
Cancel button can stop the engine between steps while the worker thread is busy computing.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass

import numpy as np
import torch
from PySide6.QtCore import QObject, Signal, Slot

from engine.imageio import ImageReadError
from engine.models.checkpoints import CheckpointError, ModelBank
from engine.pipeline import RestoreOptions, Restorer
from engine.progress import Cancelled, Progress
from engine.weights import WeightsNotFound, resolve_weights

GUI_WEIGHTS_HINT = ("In the Weights box choose “official” once the official weights are imported, "
                    "or use Browse… to pick global_checkpoints.zip or a weights folder.")


@dataclass(frozen=True)
class RestoreJob:
    """Everything one restore needs, captured in the GUI thread before the worker starts."""

    image: np.ndarray  # HxWx3 uint8
    options: RestoreOptions
    weights: str  # "default", "official" or a path
    device: torch.device
    restorer: Restorer | None = None  # from the window's cache; None = load the weights


def describe_error(exc: BaseException, device: torch.device | None = None) -> str:
    """One readable sentence per failure kind (the user never sees a bare traceback)."""
    if isinstance(exc, WeightsNotFound):
        return f"Weights not found: {exc}. {GUI_WEIGHTS_HINT}"
    if isinstance(exc, CheckpointError):
        return f"Weights problem: {exc}"
    if isinstance(exc, ImageReadError):
        return f"Cannot read the photo: {exc}"
    if isinstance(exc, MemoryError) or "out of memory" in str(exc).lower():
        where = f" on {device}" if device is not None else ""
        return (f"Not enough memory to restore this photo{where}. Try a smaller photo, turn off HR, "
                "or choose the CPU device.")
    if isinstance(exc, ValueError):
        return f"Cannot restore this photo: {exc}"
    return f"Unexpected error ({type(exc).__name__}): {exc}"


class RestoreWorker(QObject):
    """Loads the weights (unless the window had them cached) and restores one photo."""

    progress = Signal(float, str)  # overall fraction 0..1, stage message
    loaded = Signal(object)  # the Restorer, for the window's cache (emitted only after a fresh load)
    ready = Signal()  # weights are ready, restoration starts now (restarts the ETA clock)
    finished = Signal(object)  # RestoreResult
    failed = Signal(str)  # readable message
    cancelled = Signal()

    def __init__(self, job: RestoreJob) -> None:
        super().__init__()
        self.job = job
        # Created here, in the GUI thread, so a cancel right after start is never lost.
        self._progress = Progress(callback=self._report)

    def cancel(self) -> None:
        """Called from the GUI thread: sets the engine's cancel flag; the engine stops at its next check."""
        self._progress.cancel()

    @property
    def is_cancelled(self) -> bool:
        return self._progress.cancelled

    def _report(self, fraction: float, message: str) -> None:
        self.progress.emit(float(fraction), message)

    @Slot()
    def run(self) -> None:
        """Thread entry point: exactly one of finished / failed / cancelled is emitted."""
        job = self.job
        try:
            restorer = job.restorer
            self._progress.report(0.0, "loading weights" if restorer is None else "starting")
            if restorer is None:
                restorer = Restorer(ModelBank(resolve_weights(job.weights), job.device))
                self.loaded.emit(restorer)
            restorer.prepare(job.options)  # builds missing networks now: bad weights fail before the photo
            self._progress.check()
            self.ready.emit()
            result = restorer.restore(job.image, job.options, user_mask=None, progress=self._progress)
        except Cancelled:
            self.cancelled.emit()
        except Exception as exc:  # every failure must reach the user as a message, never kill the thread
            if not isinstance(exc, (CheckpointError, ImageReadError, ValueError)):
                traceback.print_exc()
            self.failed.emit(describe_error(exc, job.device))
        else:
            self.finished.emit(result)
