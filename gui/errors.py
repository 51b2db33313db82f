"""Errors in words, and a safety net for the ones nobody expected.

* :func:`describe_error` turns an exception into one or two sentences a photo archivist can act on;
  the traceback goes into the *details* (copyable), never into the main message.
* :class:`ExceptionHub` replaces ``sys.excepthook`` and ``threading.excepthook``: an exception
  escaping a slot, a timer or any thread is printed, appended to a log file in the user data folder
  and sent (queued into the GUI thread) to whoever shows it: the main window opens a non-blocking
  dialog with copyable details. Without the hook PySide prints and carries on, and a user without
  a terminal would never know anything went wrong.
* :class:`ErrorBanner` is the red line a tab shows for an error in its own work, with *Details…*.
"""

from __future__ import annotations

import datetime
import errno
import re
import sys
import threading
import traceback
from pathlib import Path
from types import TracebackType
from typing import Callable

from PySide6.QtCore import QObject, Qt, Signal, Slot
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QPushButton,
    QSizePolicy,
    QWidget,
)

from engine.core.faces.stage import FacesUnavailable
from engine.device import DeviceError
from engine.io.decode import ImageReadError
from engine.models.checkpoints import CheckpointError
from engine.store.download import DownloadError
from engine.store.paths import user_data_dir
from engine.store.weights import WeightsNotFound

GUI_WEIGHTS_HINT = ("Open the Models & settings tab to download or import the official weights, "
                    "or to choose a weights file or folder.")
LOG_NAME = "errors.log"


def describe_error(exc: BaseException, device: object | None = None) -> str:
    """One readable message per failure kind (the user never sees a bare traceback)."""
    if isinstance(exc, WeightsNotFound):
        # The engine's message ends with command-line advice (after "; "); the app gives its own.
        # The list of missing files stays in the details.
        what = re.sub(r"\s*\(missing: [^)]*\)", "", str(exc).split("; ")[0])
        what = re.sub(r" are not installed in .+$", " are not installed", what)  # the folder: details
        return f"Weights not found: {what}. {GUI_WEIGHTS_HINT}"
    if isinstance(exc, FacesUnavailable):
        return (f"Face refinement is not available: {exc}. Set “Refine faces” to Auto or Off, "
                "or use weights that include the face networks.")
    if isinstance(exc, CheckpointError):
        return f"Weights problem: {exc}. {GUI_WEIGHTS_HINT}"
    if isinstance(exc, ImageReadError):
        return f"Cannot read the photo: {exc}"
    if isinstance(exc, DownloadError):
        return f"Download failed: {exc}"
    if isinstance(exc, DeviceError):
        return f"Device problem: {exc}. Choose another device in the Models & settings tab."
    if isinstance(exc, MemoryError) or "out of memory" in str(exc).lower():
        where = f" on {device}" if device is not None else ""
        return (f"Not enough memory to restore this photo{where}. Try a smaller tile size, turn off HR, "
                "or choose the CPU device.")
    if isinstance(exc, OSError):
        name = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        if exc.errno == errno.ENOSPC:
            return f"The disk is full{name}. Free some space and try again."
        if isinstance(exc, PermissionError):
            return f"Permission denied{name}. Choose a folder you can write to."
        if isinstance(exc, FileNotFoundError):
            return f"File or folder not found{name}."
        return f"File problem{name}: {exc.strerror or exc}"
    if isinstance(exc, ValueError):
        return f"Cannot restore this photo: {exc}"
    text = str(exc) or "no further information"
    return f"Something went wrong inside Heirloom ({type(exc).__name__}: {text}). The details can be copied for a bug report."


def error_details(exc: BaseException) -> str:
    """The full traceback, for the copyable details."""
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)).rstrip()


def show_details_dialog(parent: QWidget | None, message: str, details: str,
                        title: str = "Heirloom — error") -> QMessageBox:
    """A non-blocking message box: the message in words, the details selectable and copyable."""
    box = QMessageBox(QMessageBox.Icon.Warning, title, message, QMessageBox.StandardButton.Close, parent)
    box.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    if details:
        box.setDetailedText(details)
    copy = box.addButton("Copy details", QMessageBox.ButtonRole.ActionRole)
    copy.clicked.disconnect()  # an action button would close the box; copying should not
    copy.clicked.connect(lambda: QGuiApplication.clipboard().setText(f"{message}\n\n{details}".strip()))
    box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    box.setModal(False)
    box.show()
    return box


class ExceptionHub(QObject):
    """Global hooks for uncaught exceptions in any thread; ``raised(message, details)`` is delivered
    in the GUI thread. ``install`` / ``uninstall`` keep the previous hooks so tests can undo it."""

    raised = Signal(str, str)

    def __init__(self, log_path: Path | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.log_path = log_path
        self._previous: tuple[Callable, Callable] | None = None

    def install(self) -> None:
        if self._previous is None:
            self._previous = (sys.excepthook, threading.excepthook)
            sys.excepthook = self._sys_hook
            threading.excepthook = self._thread_hook

    def uninstall(self) -> None:
        if self._previous is not None:
            sys.excepthook, threading.excepthook = self._previous
            self._previous = None

    def _sys_hook(self, exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        if issubclass(exc_type, KeyboardInterrupt):
            sys.__excepthook__(exc_type, exc, tb)
            return
        self.report(exc.with_traceback(tb) if tb is not None and exc.__traceback__ is None else exc)

    def _thread_hook(self, args: threading.ExceptHookArgs) -> None:
        if args.exc_value is None or issubclass(args.exc_type, SystemExit):
            return
        where = f" in thread {args.thread.name}" if args.thread is not None else ""
        self.report(args.exc_value, where)

    def report(self, exc: BaseException, where: str = "") -> None:
        """Print, log and announce one exception (safe to call from any thread)."""
        details = error_details(exc)
        try:
            print(f"Heirloom: unexpected error{where}:\n{details}", file=sys.stderr)
        except Exception:  # a closed stderr must not turn one error into two
            pass
        self._log(details, where)
        self.raised.emit(describe_error(exc), details)

    def _log(self, details: str, where: str) -> None:
        path = self.log_path if self.log_path is not None else user_data_dir() / LOG_NAME
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            stamp = datetime.datetime.now().isoformat(timespec="seconds")
            with open(path, "a", encoding="utf-8") as fh:
                fh.write(f"--- {stamp}{where}\n{details}\n")
        except OSError:
            pass


class ErrorBanner(QFrame):
    """A red, selectable message line with a *Details…* button (hidden while there is no error)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("ErrorBanner")
        self.setStyleSheet("#ErrorBanner { background: #fdecee; border: 1px solid #f3b7bf; border-radius: 4px; }"
                           " #ErrorBanner QLabel { color: #9b0018; }")
        self.details = ""
        self.label = QLabel(self)
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.label.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        self.details_button = QPushButton("Details…", self)
        self.details_button.setToolTip("Show the technical details, which you can copy into a bug report")
        self.details_button.clicked.connect(self._show_details)
        self.close_button = QPushButton("Dismiss", self)
        self.close_button.clicked.connect(self.clear)
        self.action_button = QPushButton(self)  # the way forward, when there is one ("Models & settings…")
        self.action_button.clicked.connect(self._on_action)
        self._action: Callable[[], None] | None = None
        layout = QHBoxLayout(self)
        layout.setContentsMargins(8, 4, 4, 4)
        layout.addWidget(self.label, 1)
        layout.addWidget(self.action_button, 0, Qt.AlignmentFlag.AlignTop)
        layout.addWidget(self.details_button, 0, Qt.AlignmentFlag.AlignTop)
        layout.addWidget(self.close_button, 0, Qt.AlignmentFlag.AlignTop)
        self.setVisible(False)

    def show_message(self, message: str, details: str = "", action_text: str = "",
                     action: Callable[[], None] | None = None) -> None:
        self.label.setText(message)
        self.details = details
        self.details_button.setVisible(bool(details))
        self._action = action
        self.action_button.setText(action_text)
        self.action_button.setVisible(action is not None)
        self.setVisible(True)

    @Slot()
    def _on_action(self) -> None:
        if self._action is not None:
            self._action()

    def text(self) -> str:
        return self.label.text() if not self.isHidden() else ""

    @Slot()
    def clear(self) -> None:
        self.label.clear()
        self.details = ""
        self.setVisible(False)

    @Slot()
    def _show_details(self) -> None:
        show_details_dialog(self.window(), self.label.text(), self.details)
