"""The GUI's one worker abstraction: a Task run by a TaskRunner pauses, resumes and cancels through
the engine's Progress (a paused task really stops reporting; cancel while paused ends it with the
cancelled signal; a paused task does not keep the window from closing), and it is the only place
in the GUI that starts a QThread."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import time

import pytest
from conftest import ROOT
from PySide6.QtCore import QObject, Slot

from engine.progress import Progress
from gui.workers import CANCELLED, FunctionTask, TaskRunner

STEPS = 1000
STEP_S = 0.002  # STEPS x STEP_S: long enough to pause, resume and still see it go on
SETTLE_MS = 300  # longer than one step and the delivery of its queued signal
TIMEOUT_MS = 30_000


def counting(progress: Progress) -> int:
    """Engine-like work: a step, then a progress report (where a pause holds and cancel raises)."""
    for step in range(STEPS):
        time.sleep(STEP_S)
        progress.report((step + 1) / STEPS, str(step))
    return STEPS


class Seen(QObject):
    """What the window sees of a task: the steps reported and the paused signals (slots in the GUI thread)."""

    def __init__(self) -> None:
        super().__init__()
        self.steps: list[int] = []
        self.pauses: list[bool] = []

    @Slot(float, str)
    def on_progress(self, _fraction: float, message: str) -> None:
        self.steps.append(int(message))

    @Slot(bool)
    def on_paused(self, paused: bool) -> None:
        self.pauses.append(paused)


@pytest.fixture
def runner():
    runner = TaskRunner()
    yield runner
    runner.stop()  # a failed test must not drop a running thread


def started(qtbot, runner: TaskRunner) -> tuple[FunctionTask, Seen]:
    """The counting task under way in ``runner``, a few steps in."""
    task, seen = FunctionTask(counting), Seen()
    task.progress.connect(seen.on_progress)
    task.paused.connect(seen.on_paused)
    assert runner.start(task)
    qtbot.waitUntil(lambda: len(seen.steps) >= 5, timeout=TIMEOUT_MS)
    return task, seen


def test_pause_stops_the_progress_and_resume_continues_it(qtbot, runner):
    task, seen = started(qtbot, runner)
    with qtbot.assertNotEmitted(task.finished, wait=0):
        assert runner.pause() and task.is_paused
        assert not runner.pause()  # once is enough
        qtbot.wait(SETTLE_MS)  # the step under way may still report; the next report holds
        held_at = len(seen.steps)
        qtbot.wait(SETTLE_MS)
        assert len(seen.steps) == held_at < STEPS and runner.busy
    assert seen.pauses == [True]

    with qtbot.waitSignal(task.finished, timeout=TIMEOUT_MS) as finished:
        assert runner.resume() and not task.is_paused
    assert seen.pauses == [True, False]
    assert finished.args == [STEPS]
    qtbot.waitUntil(lambda: not runner.busy, timeout=TIMEOUT_MS)
    assert seen.steps == list(range(STEPS))  # went on where it held: no step lost or repeated


def test_cancel_while_paused_ends_with_the_cancelled_signal(qtbot, runner):
    task, seen = started(qtbot, runner)
    assert runner.pause()
    qtbot.wait(SETTLE_MS)
    held_at = len(seen.steps)
    with qtbot.waitSignal(task.cancelled, timeout=TIMEOUT_MS), \
            qtbot.waitSignal(runner.done, timeout=TIMEOUT_MS) as done:
        assert runner.cancel()
    assert done.args == [CANCELLED]
    assert not runner.busy and len(seen.steps) == held_at  # not one more step after the pause


def test_a_paused_task_does_not_keep_the_window_from_closing(qtbot, runner):
    started(qtbot, runner)
    assert runner.pause()
    began = time.monotonic()
    runner.stop()  # what a tab does when the window closes
    assert not runner.busy and time.monotonic() - began < 5.0


def test_only_the_worker_module_starts_threads():
    """The album queue and the Train tab run on Task / TaskRunner, with no thread or pause flag of their own."""
    for path in sorted((ROOT / "gui").glob("*.py")):
        if path.name != "workers.py":
            text = path.read_text(encoding="utf-8")
            assert "QThread(" not in text and "moveToThread" not in text, path
    for name in ("queue_tab.py", "train_worker.py", "train_tab.py"):
        assert "threading.Event" not in (ROOT / "gui" / name).read_text(encoding="utf-8"), name
