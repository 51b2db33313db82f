"""What every command of the command line shares: exit codes, usage errors, the progress bar and
graceful stop on signals (so a training run killed by a job scheduler still writes its checkpoint)."""

from __future__ import annotations

import signal
import sys
import threading
from typing import TextIO

from engine.progress import EtaEstimator, format_seconds

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    pass


class ProgressBar:
    """One self-overwriting stderr line: bar, percent, stage, ETA (plain lines when not a TTY)."""

    def __init__(self, label: str, stream: TextIO = sys.stderr, width: int = 24, message_width: int = 34) -> None:
        self.label, self.stream, self.width, self.message_width = label, stream, width, message_width
        self.eta = EtaEstimator()
        self.tty = stream.isatty()
        self._last_percent = -1

    def __call__(self, fraction: float, message: str) -> None:
        percent = int(fraction * 100)
        if not self.tty and percent // 25 == self._last_percent // 25 and percent < 100:
            return
        self._last_percent = percent
        filled = int(self.width * fraction)
        room = self.message_width
        line = (f"{self.label} [{'#' * filled}{'.' * (self.width - filled)}] {percent:3d}% "
                f"{message:<{room}.{room}} ETA {format_seconds(self.eta.remaining(fraction))}")
        self.stream.write(("\r" + line) if self.tty else (line + "\n"))
        self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def stop_gracefully_on_signals() -> None:
    """SIGTERM (and SIGINT, which background jobs inherit as ignored) stop training through
    KeyboardInterrupt, so the loop writes its checkpoint before exiting: nothing learned is lost."""
    if threading.current_thread() is not threading.main_thread():
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGINT, interrupt)
