"""The engine's Progress: pause holds a worker thread at its next check, resume lets it go on,
cancel ends it even while paused; sub-progress shares the flags, ``ignoring_pause`` only the cancel."""

from __future__ import annotations

import threading
import time

import pytest

from engine.progress import Cancelled, Progress

STEPS = 100_000
SETTLE_S = 0.2  # longer than any single step of the loops below
TIMEOUT_S = 10.0


class CountingLoop:
    """A long engine-like loop in a worker thread that reports progress after every step."""

    def __init__(self, progress: Progress) -> None:
        self.progress, self.steps, self.outcome = progress, 0, ""
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            for step in range(STEPS):
                self.steps = step + 1
                self.progress.report(step / STEPS, "working")
                time.sleep(0.0005)
            self.outcome = "finished"
        except Cancelled:
            self.outcome = "cancelled"

    def wait_for_steps(self, at_least: int) -> None:
        deadline = time.monotonic() + TIMEOUT_S
        while self.steps < at_least:
            assert time.monotonic() < deadline, f"the loop is stuck at step {self.steps}"
            time.sleep(0.005)

    def is_held(self) -> bool:
        """The loop does not advance over a span longer than any of its steps."""
        before = self.steps
        time.sleep(SETTLE_S)
        return self.steps == before


def test_pause_holds_the_loop_and_resume_continues_it():
    progress = Progress()
    loop = CountingLoop(progress)
    loop.wait_for_steps(5)
    progress.pause()
    assert progress.paused
    time.sleep(SETTLE_S)  # the step under way ends; the next report holds
    assert loop.is_held() and loop.thread.is_alive()
    progress.resume()
    assert not progress.paused
    loop.wait_for_steps(loop.steps + 5)
    progress.cancel()
    loop.thread.join(TIMEOUT_S)
    assert loop.outcome == "cancelled"


def test_cancel_while_paused_wakes_the_loop_with_cancelled():
    progress = Progress()
    loop = CountingLoop(progress)
    loop.wait_for_steps(5)
    progress.pause()
    time.sleep(SETTLE_S)
    assert loop.is_held()
    progress.cancel()
    loop.thread.join(TIMEOUT_S)
    assert not loop.thread.is_alive() and loop.outcome == "cancelled"


def test_a_sub_progress_is_paused_with_its_parent():
    parent = Progress()
    loop = CountingLoop(parent.sub(0.5, 0.5))
    loop.wait_for_steps(5)
    parent.pause()
    time.sleep(SETTLE_S)
    assert loop.is_held()
    parent.resume()
    loop.wait_for_steps(loop.steps + 5)
    parent.cancel()
    loop.thread.join(TIMEOUT_S)
    assert loop.outcome == "cancelled"


def test_ignoring_pause_keeps_running_but_still_hears_cancel():
    reports: list[float] = []
    progress = Progress(callback=lambda fraction, _message: reports.append(fraction))
    progress.pause()
    steps = progress.ignoring_pause()
    steps.report(0.5, "one photo")  # returns at once although the run is paused
    assert reports == [0.5] and progress.paused and not steps.paused
    progress.cancel()
    with pytest.raises(Cancelled):
        steps.check()


def test_an_unpaused_check_does_not_wait():
    progress = Progress()
    started = time.perf_counter()
    for _ in range(1000):
        progress.check()
    assert time.perf_counter() - started < 0.5
