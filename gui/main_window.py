"""Heirloom's main window (first version): open a photo, restore it in the background, compare, save.

Every action has a plain method (``load_image``, ``start_restore``, ``cancel_restore``,
``save_result``) so tests and later features can drive the window without dialogs; menus and
buttons only add the file dialogs around them. Errors never open modal boxes: they go to the
red ``error_label`` above the controls and to the status bar, so the window stays usable.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PySide6.QtCore import QSize, Qt, QThread, Signal, Slot
from PySide6.QtGui import (QAction, QDragEnterEvent, QDropEvent, QImage, QKeySequence, QPixmap,
                           QResizeEvent)
from PySide6.QtWidgets import (QCheckBox, QComboBox, QFileDialog, QFrame, QHBoxLayout, QLabel,
                               QMainWindow, QMenu, QProgressBar, QPushButton, QSizePolicy,
                               QToolButton, QVBoxLayout, QWidget)

from engine.device import DeviceError, choose_device
from engine.imageio import IMAGE_SUFFIXES, ImageReadError, read_rgb, to_u8, write_png
from engine.models.checkpoints import CheckpointError
from engine.pipeline import RestoreOptions, RestoreResult, Restorer
from engine.progress import EtaEstimator, format_seconds
from engine.weights import resolve_weights

from .workers import RestoreJob, RestoreWorker, describe_error

DEVICES = ("auto", "cpu", "cuda", "mps")
WEIGHT_CHOICES = ("default", "official")
PROGRESS_STEPS = 1000


def array_to_pixmap(image: np.ndarray) -> QPixmap:
    """HxWx3 uint8 -> QPixmap (QImage copies the buffer, so the array may be freed afterwards)."""
    rgb = np.ascontiguousarray(image[..., :3], dtype=np.uint8)
    h, w = rgb.shape[:2]
    qimage = QImage(rgb.data, w, h, 3 * w, QImage.Format.Format_RGB888)
    return QPixmap.fromImage(qimage.copy())


def open_shortcut_text() -> str:
    """The platform's Open shortcut as users see it (Ctrl+O here, ⌘O on macOS)."""
    text = QKeySequence(QKeySequence.StandardKey.Open).toString(QKeySequence.SequenceFormat.NativeText)
    return text or "Ctrl+O"


class ImageView(QLabel):
    """Shows one photo scaled to fit (re-scaled on resize), or a hint when there is none."""

    def __init__(self, hint: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.hint = hint
        self.source_pixmap: QPixmap | None = None
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        # Ignored: the label must not grow to the pixmap's size, or resizing would feed back into itself.
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Ignored)
        self.setMinimumSize(320, 240)
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setStyleSheet("ImageView { background: #2b2b2b; color: #b0b0b0; font-size: 16px; }")
        self.set_image(None)

    def set_image(self, pixmap: QPixmap | None) -> None:
        self.source_pixmap = pixmap
        if pixmap is None:
            self.clear()
            self.setText(self.hint)
        else:
            self._rescale()

    def sizeHint(self) -> QSize:  # noqa: N802 (Qt API)
        return QSize(720, 540)

    def resizeEvent(self, event: QResizeEvent) -> None:  # noqa: N802 (Qt API)
        super().resizeEvent(event)
        if self.source_pixmap is not None:
            self._rescale()

    def _rescale(self) -> None:
        assert self.source_pixmap is not None
        ratio = self.devicePixelRatioF()
        target = self.contentsRect().size() * ratio
        if target.width() < 1 or target.height() < 1:
            return
        # Small photos are enlarged to fit too, but with nearest-neighbour so the pixels stay honest.
        upscale = (self.source_pixmap.width() < target.width() and self.source_pixmap.height() < target.height())
        mode = Qt.TransformationMode.FastTransformation if upscale else Qt.TransformationMode.SmoothTransformation
        scaled = self.source_pixmap.scaled(target, Qt.AspectRatioMode.KeepAspectRatio, mode)
        scaled.setDevicePixelRatio(ratio)
        self.setPixmap(scaled)


class MainWindow(QMainWindow):
    """Open -> options -> Restore (background thread) -> Before/After -> Save."""

    # Emitted once the worker thread has fully stopped, with "finished", "failed" or "cancelled".
    restore_done = Signal(str)

    def __init__(self) -> None:
        super().__init__()
        self.setWindowTitle("Heirloom")
        self.setAcceptDrops(True)
        self.image_path: Path | None = None
        self.image: np.ndarray | None = None
        self.result: RestoreResult | None = None
        self._original_pixmap: QPixmap | None = None
        self._result_pixmap: QPixmap | None = None
        self._restorers: dict[tuple[str, str], Restorer] = {}
        self._thread: QThread | None = None
        self._worker: RestoreWorker | None = None
        self._job_key: tuple[str, str] | None = None
        self._outcome = ""
        self._eta = EtaEstimator()
        self._build_menu()
        self._build_ui()
        self._update_device_label()
        self._check_weights()
        self._update_actions()
        self.resize(1000, 760)

    # ----------------------------------------------------------------- construction

    def _build_menu(self) -> None:
        file_menu = self.menuBar().addMenu("&File")
        self.open_action = QAction("&Open…", self, shortcut=QKeySequence.StandardKey.Open,
                                   statusTip="Open a photo to restore")
        self.open_action.triggered.connect(self.open_dialog)
        self.save_action = QAction("&Save result…", self, shortcut=QKeySequence.StandardKey.Save,
                                   statusTip="Save the restored photo as PNG")
        self.save_action.triggered.connect(self.save_dialog)
        self.quit_action = QAction("&Quit", self, shortcut=QKeySequence.StandardKey.Quit)
        self.quit_action.triggered.connect(self.close)
        file_menu.addAction(self.open_action)
        file_menu.addAction(self.save_action)
        file_menu.addSeparator()
        file_menu.addAction(self.quit_action)

    def _build_ui(self) -> None:
        central = QWidget(self)
        layout = QVBoxLayout(central)

        options = QHBoxLayout()
        self.scratch_checkbox = QCheckBox("Repair scratches", central)
        self.scratch_checkbox.setToolTip("Detect scratches and tears and fill them in")
        self.hr_checkbox = QCheckBox("High resolution (HR)", central)
        self.hr_checkbox.setToolTip("Patch-attention restoration for large scans (includes scratch repair; slower)")
        self.weights_combo = QComboBox(central)
        self.weights_combo.setEditable(True)
        self.weights_combo.addItems(WEIGHT_CHOICES)
        self.weights_combo.setCurrentText("default")
        self.weights_combo.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
        self.weights_combo.setMinimumContentsLength(18)
        self.weights_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.weights_combo.setToolTip("default, official, or the path of global_checkpoints.zip / a weights folder")
        self.weights_edit = self.weights_combo.lineEdit()
        self.weights_edit.editingFinished.connect(self._check_weights)
        self.weights_combo.activated.connect(self._on_weights_activated)
        self.browse_button = QToolButton(central)
        self.browse_button.setText("Browse…")
        self.browse_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        self.browse_button.setStyleSheet("QToolButton::menu-indicator { image: none; width: 0px; }")
        self.browse_button.setToolTip("Pick global_checkpoints.zip or a folder of weights")
        browse_menu = QMenu(self.browse_button)
        browse_menu.addAction("Weights zip file…", self._browse_weights_zip)
        browse_menu.addAction("Weights folder…", self._browse_weights_folder)
        self.browse_button.setMenu(browse_menu)
        self.device_combo = QComboBox(central)
        self.device_combo.addItems(DEVICES)
        self.device_combo.setToolTip("auto picks a CUDA or Apple GPU when there is one, else the CPU")
        self.device_combo.currentTextChanged.connect(self._on_device_changed)
        options.addWidget(self.scratch_checkbox)
        options.addWidget(self.hr_checkbox)
        options.addSpacing(16)
        options.addWidget(QLabel("Weights:", central))
        options.addWidget(self.weights_combo, 1)
        options.addWidget(self.browse_button)
        options.addSpacing(16)
        options.addWidget(QLabel("Device:", central))
        options.addWidget(self.device_combo)
        layout.addLayout(options)

        self.caption_label = QLabel(central)
        self.caption_label.setStyleSheet("color: #555555;")
        layout.addWidget(self.caption_label)
        self.image_view = ImageView(f"Drop a photo here or press {open_shortcut_text()}", central)
        layout.addWidget(self.image_view, 1)

        self.error_label = QLabel(central)
        self.error_label.setWordWrap(True)
        self.error_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.error_label.setStyleSheet("QLabel { color: #b00020; background: #fdecee; border: 1px solid #f3b7bf;"
                                       " border-radius: 4px; padding: 6px; }")
        self.error_label.setVisible(False)
        layout.addWidget(self.error_label)

        controls = QHBoxLayout()
        self.compare_button = QPushButton("Show before", central)
        self.compare_button.setCheckable(True)
        metrics = self.compare_button.fontMetrics()
        self.compare_button.setMinimumWidth(max(metrics.horizontalAdvance(t) for t in ("Show before", "Show after")) + 24)
        self.compare_button.setToolTip("Switch the view between the original (before) and the restored photo (after)")
        self.compare_button.toggled.connect(self._on_compare_toggled)
        self.progress_bar = QProgressBar(central)
        self.progress_bar.setRange(0, PROGRESS_STEPS)
        self.progress_bar.setValue(0)
        self.progress_bar.setTextVisible(True)
        self.restore_button = QPushButton("Restore", central)
        self.restore_button.setDefault(True)
        self.restore_button.clicked.connect(self._on_restore_clicked)
        self.cancel_button = QPushButton("Cancel", central)
        self.cancel_button.clicked.connect(self._on_cancel_clicked)
        controls.addWidget(self.compare_button)
        controls.addWidget(self.progress_bar, 1)
        controls.addWidget(self.restore_button)
        controls.addWidget(self.cancel_button)
        layout.addLayout(controls)
        self.setCentralWidget(central)

        # Parented explicitly: Qt owns every widget, so nothing is deleted twice at shutdown.
        self.status_label = QLabel("Open a photo to begin.", self.statusBar())
        self.device_label = QLabel(self.statusBar())
        self.statusBar().addWidget(self.status_label, 1)
        self.statusBar().addPermanentWidget(self.device_label)

    # Signal handlers are bound methods, not lambdas: a lambda holding ``self`` keeps the window
    # alive in a reference cycle until interpreter shutdown, where PySide's cleanup then crashes.

    @Slot(int)
    def _on_weights_activated(self, _index: int) -> None:
        self._check_weights()

    @Slot(str)
    def _on_device_changed(self, _text: str) -> None:
        self._update_device_label()

    @Slot(bool)
    def _on_compare_toggled(self, _checked: bool) -> None:
        self._show_current()

    @Slot()
    def _on_restore_clicked(self) -> None:
        self.start_restore()

    @Slot()
    def _on_cancel_clicked(self) -> None:
        self.cancel_restore()

    # ----------------------------------------------------------------- state helpers

    @property
    def busy(self) -> bool:
        return self._thread is not None

    def _update_actions(self) -> None:
        """Enable exactly what makes sense now (one restore at a time; save needs a result)."""
        busy = self.busy
        self.restore_button.setEnabled(not busy and self.image is not None)
        self.cancel_button.setEnabled(busy)
        self.save_action.setEnabled(not busy and self.result is not None)
        self.open_action.setEnabled(not busy)
        self.compare_button.setEnabled(self.result is not None)
        for widget in (self.scratch_checkbox, self.hr_checkbox, self.weights_combo, self.browse_button,
                       self.device_combo):
            widget.setEnabled(not busy)

    def set_status(self, text: str) -> None:
        self.status_label.setText(text)

    def show_error(self, message: str) -> None:
        """Errors go to the visible red label and the status bar; no modal dialog blocks the window."""
        self.error_label.setText(message)
        self.error_label.setVisible(True)
        first = message.split(". ")[0]
        self.set_status(first if len(first) <= 120 else first[:117] + "…")

    def clear_error(self) -> None:
        self.error_label.clear()
        self.error_label.setVisible(False)

    def _update_device_label(self) -> None:
        try:
            choice = choose_device(self.device_combo.currentText())
        except DeviceError as exc:
            self.device_label.setText("Device: ?")
            self.device_label.setToolTip(str(exc))
            return
        text = f"Device: {choice.device}"
        if choice.note:
            text += " ⚠"
        self.device_label.setText(text)
        self.device_label.setToolTip(choice.note or f"Restoration runs on {choice.device}")

    def _check_weights(self) -> None:
        """Cheap up-front check (files exist) so missing weights are explained before any Restore."""
        if self.busy:
            return
        try:
            resolve_weights(self.weights_combo.currentText().strip() or "default")
        except CheckpointError as exc:
            self.show_error(describe_error(exc))
        else:
            self.clear_error()

    def _weights_key(self, choice: str) -> str:
        if choice in WEIGHT_CHOICES:
            return choice
        return str(Path(choice).expanduser().resolve())

    # ----------------------------------------------------------------- view

    def _show_current(self) -> None:
        """Before/After: the result when there is one (unless 'before' is pressed), else the original."""
        before = self.compare_button.isChecked() or self._result_pixmap is None
        self.compare_button.setText("Show after" if self.compare_button.isChecked() else "Show before")
        if self._original_pixmap is None:
            self.image_view.set_image(None)
            self.caption_label.setText("")
            return
        assert self.image is not None and self.image_path is not None
        h, w = self.image.shape[:2]
        if before:
            self.image_view.set_image(self._original_pixmap)
            label = "Before (original)" if self._result_pixmap is not None else "Original"
        else:
            self.image_view.set_image(self._result_pixmap)
            label = f"After (restored, {self.result.mode.value} mode)" if self.result else "After"
        self.caption_label.setText(f"{label} — {self.image_path.name}, {w}×{h}")

    # ----------------------------------------------------------------- open

    def open_dialog(self) -> None:
        patterns = " ".join(f"*{s}" for s in sorted(IMAGE_SUFFIXES))
        start = str(self.image_path.parent) if self.image_path else ""
        path, _ = QFileDialog.getOpenFileName(self, "Open photo", start,
                                              f"Images ({patterns});;All files (*)")
        if path:
            self.load_image(Path(path))

    def load_image(self, path: str | os.PathLike[str]) -> bool:
        """Read a photo and show it; a previous result is dropped. Returns False (with a message) on failure."""
        path = Path(path)
        if self.busy:
            self.show_error("A restore is running; cancel it or wait before opening another photo.")
            return False
        try:
            image = read_rgb(path)
        except ImageReadError as exc:
            self.show_error(f"Cannot open {path.name}: {exc}")
            return False
        except OSError as exc:
            self.show_error(f"Cannot open {path.name}: {exc.strerror or exc}")
            return False
        self.image_path, self.image = path, image
        self.result, self._result_pixmap = None, None
        self._original_pixmap = array_to_pixmap(image)
        self.compare_button.setChecked(False)
        self.progress_bar.setValue(0)
        self._check_weights()
        self._show_current()
        self.set_status(f"Opened {path.name} ({image.shape[1]}×{image.shape[0]}). Choose options and press Restore.")
        self._update_actions()
        return True

    @staticmethod
    def _dropped_file(event: QDragEnterEvent | QDropEvent) -> Path | None:
        mime = event.mimeData()
        if not mime.hasUrls():
            return None
        files = [Path(u.toLocalFile()) for u in mime.urls() if u.isLocalFile()]
        if len(files) != 1 or files[0].suffix.lower() not in IMAGE_SUFFIXES:
            return None
        return files[0]

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802 (Qt API)
        if not self.busy and self._dropped_file(event) is not None:
            event.acceptProposedAction()
        else:
            event.ignore()

    def dragMoveEvent(self, event) -> None:  # noqa: N802 (Qt API)
        if not self.busy and self._dropped_file(event) is not None:
            event.acceptProposedAction()
        else:
            event.ignore()

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802 (Qt API)
        path = self._dropped_file(event)
        if path is None:
            event.ignore()
            return
        event.acceptProposedAction()
        self.load_image(path)

    # ----------------------------------------------------------------- restore

    def _browse_weights_zip(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Choose weights zip", "", "Zip files (*.zip);;All files (*)")
        if path:
            self.weights_combo.setCurrentText(path)
            self._check_weights()

    def _browse_weights_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Choose weights folder")
        if path:
            self.weights_combo.setCurrentText(path)
            self._check_weights()

    def options(self) -> RestoreOptions:
        return RestoreOptions(scratch=self.scratch_checkbox.isChecked(), hr=self.hr_checkbox.isChecked())

    def start_restore(self) -> bool:
        """Start restoring the open photo in a worker thread. Returns False if it could not start."""
        if self.busy:
            return False
        if self.image is None:
            self.show_error("Open a photo first (File > Open or drop one on the window).")
            return False
        self.clear_error()
        try:
            choice = choose_device(self.device_combo.currentText())
        except DeviceError as exc:
            self.show_error(str(exc))
            return False
        self._update_device_label()
        weights = self.weights_combo.currentText().strip() or "default"
        self._job_key = (self._weights_key(weights), str(choice.device))
        job = RestoreJob(self.image, self.options(), weights, choice.device, self._restorers.get(self._job_key))

        thread = QThread()
        worker = RestoreWorker(job)
        worker.moveToThread(thread)
        thread.started.connect(worker.run)
        worker.progress.connect(self._on_progress)
        worker.loaded.connect(self._on_loaded)
        worker.ready.connect(self._on_ready)
        worker.finished.connect(self._on_finished)
        worker.failed.connect(self._on_failed)
        worker.cancelled.connect(self._on_cancelled)
        for signal in (worker.finished, worker.failed, worker.cancelled):
            # Direct: quit from the worker thread itself, so the thread ends even while the GUI is blocked.
            signal.connect(thread.quit, Qt.ConnectionType.DirectConnection)
        thread.finished.connect(self._on_thread_finished)
        # Both stay referenced until the thread has stopped: dropping a running QThread aborts the process.
        self._thread, self._worker = thread, worker
        self._outcome = ""
        self._eta = EtaEstimator()
        self.progress_bar.setValue(0)
        note = f" ({choice.note})" if choice.note else ""
        self.set_status(f"Preparing on {choice.device}{note}…")
        self._update_actions()
        thread.start()
        return True

    def cancel_restore(self) -> None:
        """Ask the engine to stop; it raises Cancelled at its next check and the worker reports back."""
        if self._worker is not None and not self._worker.is_cancelled:
            self._worker.cancel()
            self.cancel_button.setEnabled(False)
            self.set_status("Cancelling…")

    @Slot(float, str)
    def _on_progress(self, fraction: float, message: str) -> None:
        if self._worker is None or self._worker.is_cancelled:
            return
        self.progress_bar.setValue(int(round(fraction * PROGRESS_STEPS)))
        eta = format_seconds(self._eta.remaining(fraction))
        self.set_status(f"Restoring: {message} — {fraction * 100:.0f}% — ETA {eta}")

    @Slot(object)
    def _on_loaded(self, restorer: Restorer) -> None:
        if self._job_key is not None:
            self._restorers[self._job_key] = restorer

    @Slot()
    def _on_ready(self) -> None:
        self._eta = EtaEstimator()  # loading weights is not representative of the restore's pace

    @Slot(object)
    def _on_finished(self, result: RestoreResult) -> None:
        self._outcome = "finished"
        self.result = result
        self._result_pixmap = array_to_pixmap(to_u8(result.image))
        self.compare_button.setChecked(False)
        self._show_current()
        self.progress_bar.setValue(PROGRESS_STEPS)
        total = sum(result.timings.values())
        self.set_status(f"Restored in {total:.1f} s ({result.mode.value} mode). "
                        "Use Show before to compare, File > Save result to keep it.")

    @Slot(str)
    def _on_failed(self, message: str) -> None:
        self._outcome = "failed"
        self.progress_bar.setValue(0)
        self.show_error(message)

    @Slot()
    def _on_cancelled(self) -> None:
        self._outcome = "cancelled"
        self.progress_bar.setValue(0)
        self.set_status("Cancelled. The photo is unchanged; press Restore to try again.")

    @Slot()
    def _on_thread_finished(self) -> None:
        thread = self._thread
        if thread is not None:
            thread.wait()  # 'finished' is emitted just before the thread really ends
        self._thread, self._worker = None, None
        self._update_actions()
        self.restore_done.emit(self._outcome or "failed")

    # ----------------------------------------------------------------- save

    def default_save_path(self) -> Path | None:
        if self.image_path is None:
            return None
        return self.image_path.with_name(f"{self.image_path.stem}_restored.png")

    def save_dialog(self) -> None:
        if self.result is None:
            return
        default = self.default_save_path()
        path, _ = QFileDialog.getSaveFileName(self, "Save restored photo", str(default or ""),
                                              "PNG image (*.png)")
        if path:
            self.save_result(Path(path))

    def _is_original(self, path: Path) -> bool:
        if self.image_path is None:
            return False
        try:
            if path.exists() and self.image_path.exists():
                return os.path.samefile(path, self.image_path)
        except OSError:
            pass
        return path.resolve() == self.image_path.resolve()

    def save_result(self, path: str | os.PathLike[str]) -> bool:
        """Write the result as PNG (atomically). The original photo is never overwritten."""
        if self.result is None:
            self.show_error("There is no restored photo to save yet.")
            return False
        path = Path(path).expanduser()
        if path.suffix.lower() != ".png":
            # The file is always PNG; keep its name honest.
            known = path.suffix.lower() in IMAGE_SUFFIXES
            path = path.with_suffix(".png") if known else path.with_name(path.name + ".png")
        if self._is_original(path):
            self.show_error(f"Not saved: {path.name} is the original photo, which Heirloom never overwrites. "
                            "Choose another file name.")
            return False
        try:
            write_png(path, to_u8(self.result.image))
        except (OSError, ValueError) as exc:
            self.show_error(f"Could not save {path}: {exc}")
            return False
        self.clear_error()
        self.set_status(f"Saved {path}")
        return True

    # ----------------------------------------------------------------- closing

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt API)
        """Stop a running restore before the window (and the thread objects) go away."""
        if self._thread is not None:
            self.cancel_restore()
            self._thread.quit()
            self._thread.wait()
            self._thread, self._worker = None, None
        super().closeEvent(event)
