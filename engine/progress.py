"""Progress reporting, cooperative cancellation and pause, free of any GUI type.

Long work calls ``progress.report(fraction, message)`` and ``progress.check()`` between steps;
``check`` raises ``Cancelled`` once the cancel flag is set, and while the run is paused it holds
the calling thread until ``resume`` (or ``cancel``), so every loop that reports progress pauses
without knowing about it. ``sub(start, span)`` maps a sub-task's 0..1 onto a slice of the parent's
range, so stages compose without knowing about each other; they share the cancel and pause flags.
Work that may only stop at its own safe points (a whole photo, a training step with its
checkpoint) gives the engine ``ignoring_pause()`` and reads ``paused`` at those points instead.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Callable

ProgressCallback = Callable[[float, str], None]
PAUSE_POLL_S = 0.05  # while paused, how often the held thread looks at the pause flag (Cancel wakes it at once)


class Cancelled(Exception):
    """The user asked to stop; raised at the next cancellation check."""


def _running() -> threading.Event:
    """A run starts unpaused."""
    event = threading.Event()
    event.set()
    return event


@dataclass
class Progress:
    callback: ProgressCallback | None = None
    cancel_event: threading.Event = field(default_factory=threading.Event)
    start: float = 0.0
    span: float = 1.0
    _message: str = ""
    run_event: threading.Event = field(default_factory=_running)  # set while the work may run; pause() clears it

    def report(self, fraction: float, message: str | None = None) -> None:
        self.check()
        if message is not None:
            self._message = message
        if self.callback is not None:
            self.callback(self.start + self.span * min(max(fraction, 0.0), 1.0), self._message)

    def check(self) -> None:
        """Hold here while paused (until resumed or cancelled); raise Cancelled once cancelled."""
        while not self.run_event.is_set():
            if self.cancel_event.wait(PAUSE_POLL_S):
                break
        if self.cancel_event.is_set():
            raise Cancelled("cancelled by the user")

    def cancel(self) -> None:
        """Thread-safe; a paused run wakes up and raises Cancelled."""
        self.cancel_event.set()

    @property
    def cancelled(self) -> bool:
        return self.cancel_event.is_set()

    def pause(self) -> None:
        """Thread-safe: the work holds at its next check (or stops at its next safe point)."""
        self.run_event.clear()

    def resume(self) -> None:
        self.run_event.set()

    @property
    def paused(self) -> bool:
        return not self.run_event.is_set()

    def sub(self, start: float, span: float) -> "Progress":
        return Progress(self.callback, self.cancel_event, self.start + self.span * start, self.span * span,
                        self._message, self.run_event)

    def ignoring_pause(self, callback: ProgressCallback | None = None) -> "Progress":
        """The same cancel flag (and callback, unless another is given) but never held by ``pause``:
        for work that must not stop halfway (a photo being written, a training step before its
        checkpoint) and instead reads ``paused`` of this Progress at its own safe points."""
        return Progress(callback or self.callback, self.cancel_event, self.start, self.span, self._message)


class EtaEstimator:
    """Remaining time from the rate of progress so far (None until there is something to go on)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.t0 = clock()

    def remaining(self, fraction: float) -> float | None:
        elapsed = self.clock() - self.t0
        if fraction <= 0.01 or elapsed <= 0:
            return None
        return elapsed * (1.0 - fraction) / fraction


def format_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "--:--"
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"
