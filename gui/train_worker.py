"""The Train tab's background work: a fine-tune in a worker thread, and what it needs around it.

:class:`TrainTask` drives ``FinetuneSession.run`` (a generator) in a worker thread and sends each
step's metrics and, now and then, before/after previews (numpy arrays) to the GUI as queued signals.
The GUI only ever calls the task's ``pause`` and ``cancel`` across threads (the engine Progress's
thread-safe flags); a pause ends the run after the current step, with a checkpoint. The tab's
fine-tune lives in one work folder of the user data directory, so a run stopped by closing the app
is found and resumed next time.
"""

from __future__ import annotations

import time
from pathlib import Path

from PySide6.QtCore import Signal

from engine.progress import Progress
from engine.store.profiles import ProfileError
from engine.store.weights import WeightsNotFound
from engine.training.finetune.session import FinetuneSession, default_work_dir

from .errors import describe_error
from .workers import FunctionTask, Task

WORK_NAME = "train-tab"  # the Train tab's work folder: <user data>/finetune/train-tab
PREVIEW_EVERY = 50  # steps between previews ...
PREVIEW_SECONDS = 30.0  # ... or seconds, whichever comes first (a step may take seconds on a CPU)
PREVIEW_COUNT = 3


def work_dir() -> Path:
    """Where the tab's fine-tune keeps its checkpoint (looked up each time: tests move the data dir)."""
    return default_work_dir(WORK_NAME)


def describe_training_error(exc: BaseException, device: object | None = None) -> str:
    """Failures of a fine-tune or a profile save in words (describe_error speaks of restoring)."""
    if isinstance(exc, ProfileError) and not isinstance(exc, WeightsNotFound):  # a name taken or not allowed
        text = str(exc)
        return text[:1].upper() + text[1:] + "."
    if isinstance(exc, MemoryError) or "out of memory" in str(exc).lower():
        where = f" on {device}" if device is not None else ""
        return f"Not enough memory to train{where}. Choose the CPU, or close other programs and resume."
    if isinstance(exc, (ValueError, FileExistsError)):
        return f"Cannot train: {exc}."
    return describe_error(exc, device)


class TrainTask(Task):
    """Prepares the session (loads photos, builds networks), then trains until the budget is spent,
    the user pauses (a checkpoint, then ``finished`` with the state) or cancels (``cancelled``).
    A pause is honoured between steps, not inside one: the run ends so the device is free again."""

    prepared = Signal(object)  # DataSummary of what was actually loaded
    metrics = Signal(object)  # one step's metrics dict (step, seconds, fraction and the losses)
    previews = Signal(object)  # list[Preview]: before / after images of held-out photos

    def __init__(self, session: FinetuneSession, resume: bool, preview_every: int = PREVIEW_EVERY,
                 preview_seconds: float = PREVIEW_SECONDS, preview_count: int = PREVIEW_COUNT) -> None:
        super().__init__(session.device)
        self.session, self.resume = session, resume
        self.preview_every, self.preview_seconds, self.preview_count = preview_every, preview_seconds, preview_count

    def describe(self, exc: Exception) -> str:
        return describe_training_error(exc, self.device)

    def work(self, progress: Progress) -> str:
        session = self.session
        steps = progress.ignoring_pause()  # never held mid-step: a pause is asked of the session below
        session.prepare(steps)
        self.prepared.emit(session.summary)
        shown_step, shown_at = -1, 0.0
        for metrics in session.run(resume=self.resume, progress=steps):
            self.metrics.emit(metrics)
            if progress.paused:  # also a pause asked for while preparing, which the session forgets
                session.pause()  # the run ends before its next step, with a checkpoint
            step = int(metrics["step"])
            due = shown_step < 0 or step - shown_step >= self.preview_every
            if due or time.monotonic() - shown_at >= self.preview_seconds:
                self._preview()
                shown_step, shown_at = step, time.monotonic()
        if session.step != shown_step and session.step > 0:
            self._preview()  # how it ends (finished or paused)
        return session.state

    def _preview(self) -> None:
        """Between steps, in this thread: the session's networks are not used concurrently."""
        self.previews.emit(self.session.preview(self.preview_count))


class ProfileTask(FunctionTask):
    """Saving a profile (scores the held-out photos, writes the weights) with training's wording."""

    def describe(self, exc: Exception) -> str:
        return describe_training_error(exc, self.device)
