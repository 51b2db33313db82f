"""Progress reporting and cooperative cancellation, free of any GUI type.

Long work calls ``progress.report(fraction, message)`` and ``progress.check()`` between steps;
``check`` raises ``Cancelled`` once the cancel flag is set. ``sub(start, span)`` maps a sub-task's
0..1 onto a slice of the parent's range, so stages compose without knowing about each other.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Callable

ProgressCallback = Callable[[float, str], None]


class Cancelled(Exception):
    """The user asked to stop; raised at the next cancellation check."""


@dataclass
class Progress:
    callback: ProgressCallback | None = None
    cancel_event: threading.Event = field(default_factory=threading.Event)
    start: float = 0.0
    span: float = 1.0
    _message: str = ""

    def report(self, fraction: float, message: str | None = None) -> None:
        self.check()
        if message is not None:
            self._message = message
        if self.callback is not None:
            self.callback(self.start + self.span * min(max(fraction, 0.0), 1.0), self._message)

    def check(self) -> None:
        if self.cancel_event.is_set():
            raise Cancelled("cancelled by the user")

    def cancel(self) -> None:
        self.cancel_event.set()

    @property
    def cancelled(self) -> bool:
        return self.cancel_event.is_set()

    def sub(self, start: float, span: float) -> "Progress":
        return Progress(self.callback, self.cancel_event, self.start + self.span * start, self.span * span, self._message)


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
