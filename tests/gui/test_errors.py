"""Errors in words, and the global hooks: an exception in any thread or slot reaches the user as a
readable message with copyable details, and the app keeps running."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import errno
import sys
import threading

import pytest
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication, QMessageBox

from engine.io.decode import ImageReadError
from engine.store.download import DownloadError
from engine.store.weights import WeightsNotFound
from gui.errors import ErrorBanner, ExceptionHub, describe_error

pytest_plugins = ("gui_fixtures",)
pytestmark = pytest.mark.usefixtures("isolated_app")


@pytest.mark.parametrize("exc, words", [
    (WeightsNotFound("weights path /x does not exist (use default, official, a zip or a folder)"),
     "Weights not found: weights path /x does not exist"),
    (ImageReadError("not an image"), "Cannot read the photo: not an image"),
    (DownloadError("the server answered HTTP 404"), "Download failed: the server answered HTTP 404"),
    (MemoryError(), "Not enough memory"),
    (RuntimeError("CUDA out of memory. Tried to allocate 2 GiB"), "Not enough memory"),
    (OSError(errno.ENOSPC, "No space left on device", "/out/a.png"), "The disk is full (/out/a.png)"),
    (PermissionError(errno.EACCES, "Permission denied", "/ro"), "Permission denied (/ro)"),
    (KeyError("VAE_A"), "Something went wrong inside Heirloom (KeyError: 'VAE_A')"),
])
def test_describe_error_in_words(exc, words):
    assert describe_error(exc).startswith(words) or words in describe_error(exc)


def test_weights_not_found_drops_command_line_advice():
    exc = WeightsNotFound("Heirloom's own default weights are not installed in /w (missing: VAE_A_quality); "
                          "get the official weights with `python main.py models download official`")
    text = describe_error(exc)
    assert text.startswith("Weights not found: Heirloom's own default weights are not installed.")
    assert "python main.py" not in text and "missing:" not in text and "/w" not in text  # in the details
    assert "Models & settings" in text


def test_exception_in_a_thread_and_in_sys_excepthook_reaches_the_gui_thread(qtbot, tmp_path):
    log = tmp_path / "errors.log"
    hub = ExceptionHub(log_path=log)
    previous = (sys.excepthook, threading.excepthook)
    hub.install()
    try:
        assert sys.excepthook != previous[0] and threading.excepthook != previous[1]
        with qtbot.waitSignal(hub.raised, timeout=5000) as blocker:
            thread = threading.Thread(target=lambda: 1 / 0, name="helper")
            thread.start()
            thread.join()
        message, details = blocker.args
        assert "ZeroDivisionError" in message and "Traceback" not in message
        assert "Traceback" in details and "ZeroDivisionError" in details
        assert "in thread helper" in log.read_text(encoding="utf-8")

        try:
            raise ValueError("bad value in a slot")
        except ValueError:
            with qtbot.waitSignal(hub.raised, timeout=5000) as blocker:
                sys.excepthook(*sys.exc_info())
        assert blocker.args[0] == "Cannot restore this photo: bad value in a slot"
    finally:
        hub.uninstall()
    assert (sys.excepthook, threading.excepthook) == previous


def test_an_exception_in_a_slot_shows_a_dialog_with_copyable_details(qtbot, make_window, tmp_path):
    window = make_window()
    hub = ExceptionHub(log_path=tmp_path / "errors.log")
    hub.raised.connect(window.show_unexpected_error)
    hub.install()

    def broken_slot() -> None:
        raise KeyError("missing-thing")

    try:
        with qtbot.waitSignal(hub.raised, timeout=5000):
            QTimer.singleShot(0, broken_slot)
        qtbot.waitUntil(lambda: window._error_box is not None, timeout=5000)
    finally:
        hub.uninstall()
    box = window._error_box
    assert box.isVisible() and not box.isModal()  # the window stays usable
    assert "Something went wrong inside Heirloom (KeyError" in box.text()
    assert "broken_slot" in box.detailedText()
    assert "KeyError" in window.status_label.text()
    copy = next(b for b in box.buttons() if b.text() == "Copy details")
    copy.click()
    assert "broken_slot" in QApplication.clipboard().text()
    assert box.isVisible()  # copying does not close the box
    window.show_unexpected_error("second", "second details")  # a burst extends the same box
    assert "second details" in box.detailedText()
    assert len([w for w in QApplication.topLevelWidgets() if isinstance(w, QMessageBox) and w.isVisible()]) == 1
    box.close()


def test_error_banner(qtbot):
    banner = ErrorBanner()
    qtbot.addWidget(banner)
    banner.show()
    assert banner.text() == ""
    pressed = []
    banner.show_message("Something failed.", "trace", "Fix it…", lambda: pressed.append(1))
    assert banner.text() == "Something failed." and banner.details_button.isVisible()
    banner.action_button.click()
    assert pressed == [1]
    banner.close_button.click()
    assert banner.text() == "" and banner.isHidden()
