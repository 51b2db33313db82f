"""The Restore tab: one photo, its damage mask, a restore in the background, compare, save.

Every action is a plain method (``load_image``, ``start_detect``, ``start_restore``,
``cancel``, ``save_result``) so tests and the main window drive the tab without dialogs; buttons
only add the file dialogs around them. Errors never open modal boxes: they go to the red banner
above the buttons (with copyable details) and to the status bar.

What is repaired is what the view shows: when Detect has run (or a previous restore detected),
the canvas mask, with the user's strokes, is passed to the engine as ``user_mask`` with detection
switched off (``NO_DETECTION``: no detector runs, in HR mode neither); in auto-detect mode without a
detection yet, the engine's one mask policy detects with the panel's threshold and dilation and adds
the strokes (never grown), and the view adopts the mask the engine used.

Save… writes through the engine's one save path (``PhotoProcessor.save``: atomic, never over the
original, with the same provenance sidecar as the CLI and the album queue) in a background task.

Nothing is thrown away silently: a restored photo not saved yet is asked about (Save / Discard /
Cancel, :mod:`gui.prompts`) before another photo opens or the window closes. The mask itself is
kept in the MaskStore as it is edited, with who vouches for it (brushed, accepted or detected).
A finished album-queue item opens here with its result (``open_result``): compare, fix the mask,
Restore again and Save over the queue's output.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
from PySide6.QtCore import QEvent, QEventLoop, QObject, Qt, QTimer, Signal, Slot
from PySide6.QtWidgets import (
    QFileDialog,
    QFrame,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from engine.core.pipeline import NO_DETECTION, RestoreResult
from engine.core.translation import Mode
from engine.device import DeviceError, DeviceInfo, choose_device
from engine.io.decode import IMAGE_SUFFIXES, ImageReadError, read_photo
from engine.io.encode import output_format, output_suffix
from engine.io.metadata import PhotoFile
from engine.io.pixels import rgb8, to_u8
from engine.jobs.batch import WouldOverwriteOriginal, Written, refuse_original
from engine.models.checkpoints import CheckpointError
from engine.progress import EtaEstimator, format_seconds
from engine.store.catalogue import resolve_weights
from engine.store.masks import DETECTED, MaskStore
from engine.store.provenance import sidecar_path

from . import prompts
from .canvas import FaceBox, PhotoCanvas
from .errors import GUI_WEIGHTS_HINT, ErrorBanner, describe_error
from .face_panel import FacePanel
from .mask_panel import MaskPanel
from .restore_options import OptionsPanel
from .settings import Settings
from .workers import (
    FINISHED,
    DetectJob,
    DetectTask,
    RestoreJob,
    RestoreOutcome,
    RestorerCache,
    RestoreTask,
    SaveJob,
    SaveTask,
    TaskRunner,
)

PROGRESS_STEPS = 1000
SAVE_FORMATS = {".png": "png", ".tif": "tiff", ".tiff": "tiff", ".jpg": "jpeg", ".jpeg": "jpeg"}
SAVE_FILTERS = {"png": "PNG image (*.png)", "tiff": "TIFF image (*.tif *.tiff)", "jpeg": "JPEG image (*.jpg *.jpeg)"}
JPEG_QUALITY = 95
MASK_SAVE_DELAY_MS = 600
HR_DILATION = 3  # the official HR mode grows detected scratches by 3 pixels
ZOOM_STEP = 1.25
DIFF_GAIN = 4.0  # "what changed": a change of 1/4 of the range shows at full strength


def difference_map(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """What the restoration changed, as an image: the photo in dim grey, changed pixels in warm
    colours by how much (red = a little, yellow-white = a lot). Both HxWx3 uint8, same size."""
    change = np.abs(after.astype(np.int16) - before.astype(np.int16)).max(axis=2).astype(np.float32) / 255.0
    amount = np.clip(change * DIFF_GAIN, 0.0, 1.0)[..., None]
    grey = before.astype(np.float32).mean(axis=2, keepdims=True) * 0.35
    heat = np.concatenate([np.full_like(amount, 255.0), 255.0 * np.clip(amount * 1.6 - 0.3, 0, 1),
                           255.0 * np.clip(amount * 2.0 - 1.0, 0, 1)], axis=2)
    return (grey * (1 - amount) + heat * amount + 0.5).astype(np.uint8)


def save_path_with_format(path: Path) -> tuple[Path, str]:
    """Chosen file name -> (name to write, format): .png/.tif/.jpg keep theirs; any other image
    suffix becomes .png (the file must say what it holds); no suffix gets .png added."""
    suffix = path.suffix.lower()
    if suffix in SAVE_FORMATS:
        return path, SAVE_FORMATS[suffix]
    if suffix in IMAGE_SUFFIXES:
        return path.with_suffix(".png"), "png"
    return path.with_name(path.name + ".png"), "png"


class RestoreTab(QWidget):
    """Open -> (detect, brush) -> Restore in the background -> compare -> Save."""

    restore_done = Signal(str)  # "finished" / "failed" / "cancelled", once the thread has stopped
    detect_done = Signal(str)
    save_done = Signal(str)  # "finished" / "failed" / "cancelled", once the save's thread has stopped
    busy_changed = Signal(bool)
    status_message = Signal(str)
    image_opened = Signal(object)  # Path of a photo that opened successfully
    models_requested = Signal()  # the user wants the Models & settings tab (to fix the weights)

    def __init__(self, settings: Settings, restorers: RestorerCache, masks: MaskStore,
                 devices: list[DeviceInfo] | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.settings, self.restorers, self.masks = settings, restorers, masks
        self.image_path: Path | None = None
        self.photo: PhotoFile | None = None
        self.image: np.ndarray | None = None  # HxWx3 uint8, what the view shows as "before"
        self.result = None  # RestoreResult of the last finished restore
        self.restored: RestoreOutcome | None = None  # that restore with its job (None: a queue result shown)
        self.faces_on: set[int] = set()  # the refined faces shown refined (the rest are toggled off)
        # A working copy of result.image that face toggles recompose in place (None until the first
        # toggle), and the uint8 "after" the canvas shows: a toggle refreshes only the faces' regions.
        self.composed: np.ndarray | None = None
        self._after_u8: np.ndarray | None = None
        self.last_status = ""
        self._reserved_reason = ""  # why the device is not ours right now (the album queue runs)
        self._job_kind = ""
        self._weights_problem = False
        self._mask_dirty = False  # strokes not yet in the MaskStore
        self.result_saved = False  # the current result was written to a file (nothing to lose)
        self.review_output: Path | None = None  # the album-queue output this photo was opened with
        self._saving_to: Path | None = None  # the file the running save writes
        self._eta = EtaEstimator()
        self.runner = TaskRunner(self)
        self.runner.busy_changed.connect(self._on_busy_changed)
        self.runner.done.connect(self._on_runner_done)
        self._mask_timer = QTimer(self)
        self._mask_timer.setSingleShot(True)
        self._mask_timer.setInterval(MASK_SAVE_DELAY_MS)
        self._mask_timer.timeout.connect(self.store_mask)
        self._build(devices)
        self.check_weights()
        self._update_actions()
        settings.changed.connect(self._on_setting_changed)

    # ------------------------------------------------------------------ construction

    def _build(self, devices: list[DeviceInfo] | None) -> None:
        self.canvas = PhotoCanvas(self)
        self.canvas.mask_changed.connect(self._on_mask_changed)
        self.canvas.zoom_changed.connect(self._on_zoom_changed)
        self.canvas.face_clicked.connect(self.toggle_face)
        # First run: no photo at hand? One click makes an aged copy of a photo shipped with the app.
        self.sample_button = QPushButton("Try a sample photo", self.canvas.viewport())
        self.sample_button.setToolTip("Open an old-looking photo that Heirloom makes from a picture it ships with")
        self.sample_button.setCursor(Qt.CursorShape.PointingHandCursor)
        self.sample_button.clicked.connect(self.open_sample)
        self.canvas.viewport().installEventFilter(self)
        self.options_panel = OptionsPanel(self.settings, devices, self)
        self.options_panel.hr_checkbox.toggled.connect(self._on_hr_toggled)
        self.face_panel = FacePanel(self)
        self.face_panel.face_toggled.connect(self.set_face_enabled)
        self.face_panel.boxes_toggled.connect(self.canvas.set_faces_visible)
        self.mask_panel = MaskPanel(self.canvas, self)
        self.mask_panel.detect_requested.connect(self.start_detect)
        self.mask_panel.error.connect(self.show_error)
        self.mask_panel.message.connect(self.set_status)
        self.mask_panel.origin_changed.connect(self._on_origin_changed)

        self.caption_label = QLabel(self)
        self.caption_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.zoom_label = QLabel("", self)
        self.zoom_label.setMinimumWidth(self.zoom_label.fontMetrics().horizontalAdvance("Zoom 1600%") + 6)
        self.zoom_label.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        self.fit_button = self._tool_button("Fit", "Fit the photo in the view (Ctrl+0)", self.zoom_fit)
        self.actual_button = self._tool_button("100%", "One photo pixel per screen pixel (Ctrl+1)", self.zoom_100)
        caption_row = QHBoxLayout()
        caption_row.addWidget(self.caption_label, 1)
        caption_row.addWidget(self.zoom_label)
        caption_row.addWidget(self.fit_button)
        caption_row.addWidget(self.actual_button)

        self.error_label = ErrorBanner(self)

        self.compare_button = QPushButton("Compare", self)
        self.compare_button.setCheckable(True)
        self.compare_button.setChecked(True)
        self.compare_button.setToolTip("Before | after split view: drag the line across the photo")
        self.compare_button.toggled.connect(self._on_compare_toggled)
        self.original_button = QPushButton("Show original", self)
        self.original_button.setCheckable(True)
        self.original_button.setToolTip("Show the original photo alone (O); press again to compare")
        self.original_button.toggled.connect(self._on_original_toggled)
        self.diff_button = QPushButton("What changed", self)
        self.diff_button.setCheckable(True)
        self.diff_button.setToolTip("Show where the restoration changed the photo (D): dim grey = untouched, "
                                    "red to yellow = changed a little to a lot")
        self.diff_button.toggled.connect(self._on_diff_toggled)
        self.progress_bar = QProgressBar(self)
        self.progress_bar.setRange(0, PROGRESS_STEPS)
        self.progress_bar.setValue(0)
        self.progress_bar.setTextVisible(True)
        self.progress_bar.setFormat("")
        self.restore_button = QPushButton("Restore", self)
        self.restore_button.setDefault(True)
        self.restore_button.setToolTip("Restore the photo with the options on the right")
        self.restore_button.setStyleSheet("QPushButton { font-weight: bold; padding: 4px 18px; }")
        self.restore_button.clicked.connect(self.start_restore)
        self.cancel_button = QPushButton("Cancel", self)
        self.cancel_button.setToolTip("Stop the running detection or restore")
        self.cancel_button.clicked.connect(self.cancel)
        self.save_button = QPushButton("Save…", self)
        self.save_button.setToolTip("Save the restored photo (PNG, TIFF or JPEG); the original is never replaced")
        self.save_button.clicked.connect(self.save_dialog)
        for button in (self.compare_button, self.original_button, self.diff_button):
            # A pressed toggle must look pressed, and its label must fit in both states: the checked
            # style's padding is wider than the native button's, so reserve that width up front.
            button.setStyleSheet("QPushButton:checked { background: palette(highlight); "
                                 "color: palette(highlighted-text); border: 1px solid palette(dark); "
                                 "border-radius: 3px; padding: 4px 10px; }")
            button.setMinimumWidth(button.fontMetrics().horizontalAdvance(button.text()) + 2 * 10 + 2 + 12)
        bottom = QHBoxLayout()
        bottom.addWidget(self.compare_button)
        bottom.addWidget(self.original_button)
        bottom.addWidget(self.diff_button)
        bottom.addWidget(self.progress_bar, 1)
        bottom.addWidget(self.restore_button)
        bottom.addWidget(self.cancel_button)
        bottom.addWidget(self.save_button)

        left = QVBoxLayout()
        left.addLayout(caption_row)
        left.addWidget(self.canvas, 1)
        left.addWidget(self.error_label)
        left.addLayout(bottom)

        side = QWidget(self)
        side_layout = QVBoxLayout(side)
        side_layout.setContentsMargins(0, 0, 4, 0)
        side_layout.addWidget(self.options_panel)
        side_layout.addWidget(self.face_panel)
        side_layout.addWidget(self.mask_panel)
        side_layout.addStretch(1)
        self.side_scroll = QScrollArea(self)
        self.side_scroll.setWidget(side)
        self.side_scroll.setWidgetResizable(True)
        self.side_scroll.setFrameShape(QFrame.Shape.NoFrame)
        self.side_scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.side_scroll.setFixedWidth(max(300, side.sizeHint().width() + 16))

        layout = QHBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addLayout(left, 1)
        layout.addWidget(self.side_scroll)

    def _place_sample_button(self) -> None:
        """Centred just below the canvas's "Drop a photo here" hint."""
        view = self.canvas.viewport().rect()
        self.sample_button.adjustSize()
        size = self.sample_button.size()
        self.sample_button.move((view.width() - size.width()) // 2, view.height() // 2 + 24)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt API)
        if watched is self.canvas.viewport() and event.type() == QEvent.Type.Resize:
            self._place_sample_button()
        return super().eventFilter(watched, event)

    def _tool_button(self, text: str, tip: str, slot) -> QToolButton:
        button = QToolButton(self)
        button.setText(text)
        button.setToolTip(tip)
        button.clicked.connect(slot)
        return button

    # ------------------------------------------------------------------ state

    @property
    def busy(self) -> bool:
        return self.runner.busy

    def _update_actions(self) -> None:
        """Enable exactly what makes sense now (one job at a time; save needs a result)."""
        busy, has_image, has_result = self.busy, self.image is not None, self.result is not None
        free = not busy and not self._reserved_reason
        self.restore_button.setEnabled(free and has_image)
        self.cancel_button.setEnabled(busy and self.runner.task is not None and not self.runner.task.is_cancelled)
        self.save_button.setEnabled(not busy and has_result)
        self.compare_button.setEnabled(has_result)
        self.original_button.setEnabled(has_result)
        self.diff_button.setEnabled(has_result)
        self.fit_button.setEnabled(has_image)
        self.actual_button.setEnabled(has_image)
        self.sample_button.setVisible(not has_image)
        self._place_sample_button()
        self.options_panel.set_locked(busy)
        self.face_panel.setEnabled(not busy)  # a save in progress writes the faces as they are
        self.mask_panel.set_editable(not busy, has_image)
        self.mask_panel.detect_button.setEnabled(free and has_image)
        tip = self._reserved_reason or "Restore the photo with the options on the right"
        self.restore_button.setToolTip(tip)

    def set_status(self, text: str) -> None:
        self.last_status = text
        self.status_message.emit(text)

    @Slot(str, str)
    def show_error(self, message: str, details: str = "") -> None:
        """Errors go to the red banner and the status bar; no modal dialog blocks the window.
        A weights problem gets a button to the tab that fixes it."""
        if GUI_WEIGHTS_HINT in message:
            self.error_label.show_message(message, details, "Models && settings…", self.models_requested.emit)
        else:
            self.error_label.show_message(message, details)
        first = message.split(". ")[0]
        self.set_status(first if len(first) <= 120 else first[:117] + "…")

    def clear_error(self) -> None:
        self.error_label.clear()
        self._weights_problem = False

    def check_weights(self) -> bool:
        """Cheap check (files exist) so missing weights are explained before any Restore."""
        try:
            resolve_weights(self.settings.weights)
        except CheckpointError as exc:
            self.show_error(describe_error(exc), str(exc))
            self._weights_problem = True
            return False
        if self._weights_problem:
            self.clear_error()
        return True

    def set_device_reserved(self, reason: str) -> None:
        """Another part of the app (the album queue) is using the device: no new jobs here."""
        self._reserved_reason = reason
        self._update_actions()

    @Slot(str)
    def _on_setting_changed(self, key: str) -> None:
        if key == "engine/weights" and not self.busy:
            self.check_weights()

    @Slot(bool)
    def _on_busy_changed(self, busy: bool) -> None:
        self._update_actions()
        self.busy_changed.emit(busy)

    @Slot(bool)
    def _on_hr_toggled(self, hr: bool) -> None:
        """HR's official dilation is 3 pixels, the scratch mode's 0: follow it unless the user chose."""
        if self.mask_panel.dilation == (0 if hr else HR_DILATION):
            self.mask_panel.set_params(self.mask_panel.threshold, HR_DILATION if hr else 0)

    # Slots without arguments: a button's clicked(bool) must not reach the canvas as an anchor point.
    @Slot()
    def zoom_fit(self) -> None:
        self.canvas.zoom_fit()

    @Slot()
    def zoom_100(self) -> None:
        self.canvas.zoom_100()

    @Slot()
    def zoom_in(self) -> None:
        self.canvas.zoom_by(ZOOM_STEP)

    @Slot()
    def zoom_out(self) -> None:
        self.canvas.zoom_by(1 / ZOOM_STEP)

    @Slot(float)
    def _on_zoom_changed(self, zoom: float) -> None:
        self.zoom_label.setText(f"Zoom {zoom * 100:.0f}%")

    @Slot(bool)
    def _on_compare_toggled(self, on: bool) -> None:
        self.canvas.set_compare(on)
        self._update_caption()

    @Slot(bool)
    def _on_original_toggled(self, on: bool) -> None:
        self.canvas.show_before_only(on)
        self._update_caption()

    @Slot(bool)
    def _on_diff_toggled(self, _on: bool) -> None:
        self._show_after()
        self._update_caption()

    def _show_after(self) -> None:
        """The canvas's "after" side: the result, or where it differs from the photo."""
        if self._after_u8 is None or self.image is None:
            self.canvas.set_after(None)
        elif self.diff_button.isChecked():
            self.canvas.set_after(difference_map(self.image, self._after_u8))
        else:
            self.canvas.set_after(self._after_u8)

    def _update_caption(self) -> None:
        if self.image is None or self.image_path is None:
            self.caption_label.setText("")
            return
        h, w = self.image.shape[:2]
        text = f"{self.image_path.name} — {w}×{h}"
        if self.result is None:
            text += " — original"
        elif self.original_button.isChecked():
            text += " — Before (original)"
        elif self.diff_button.isChecked():
            text += " — Before | What changed (red to yellow: changed a little to a lot)"
        elif self.compare_button.isChecked():
            text += f" — Before | After ({self.result.mode.value} mode): drag the line to compare"
        else:
            text += f" — After (restored, {self.result.mode.value} mode)"
        self.caption_label.setText(text)

    # ------------------------------------------------------------------ open

    def open_dialog(self) -> None:
        patterns = " ".join(f"*{s}" for s in sorted(IMAGE_SUFFIXES))
        start = self.image_path.parent if self.image_path else self.settings.last_open_folder
        if not self.confirm_discard("Open another photo"):
            return
        path, _ = QFileDialog.getOpenFileName(self, "Open photo", str(start or ""), f"Images ({patterns});;All files (*)")
        if path:
            self.load_image(Path(path))

    # ------------------------------------------------------------------ unsaved work

    def has_unsaved_work(self) -> bool:
        """A restored photo that was not written to any file yet (the mask is kept anyway)."""
        return self.result is not None and not self.result_saved

    def unsaved_question(self, action: str) -> tuple[str, str, str]:
        """Title, text and details of the Save / Discard / Cancel box."""
        name = self.image_path.name if self.image_path is not None else "this photo"
        return (f"{action} — unsaved restoration", f"The restoration of {name} has not been saved.",
                "Save it before going on? Discard throws the restored photo away (the mask is kept for this "
                "photo either way).")

    def confirm_discard(self, action: str = "Continue") -> bool:
        """Before the current work goes away: True to go on (saved, discarded or nothing to lose),
        False when the person cancelled. Pending strokes are stored in the MaskStore first."""
        self.store_mask()
        self.wait_for_save()  # a save under way decides whether anything is left to lose
        if not self.has_unsaved_work() or self.image_path is None:
            return True
        answer = prompts.ask_unsaved(self.window(), *self.unsaved_question(action))
        if answer == prompts.CANCEL:
            return False
        if answer == prompts.SAVE:
            return self.save_dialog(wait=True)
        return True

    def load_image(self, path: str | Path) -> bool:
        """Read a photo and show it with its stored mask; a previous result is dropped.
        Returns False (with a message) on failure, leaving the current photo open."""
        path = Path(path)
        if self.busy:
            self.show_error("A job is running; cancel it or wait before opening another photo.")
            return False
        try:
            photo = read_photo(path)
        except ImageReadError as exc:
            self.show_error(f"Cannot open {path.name}: {exc}")
            return False
        except OSError as exc:
            self.show_error(f"Cannot open {path.name}: {exc.strerror or exc}")
            return False
        self.store_mask()  # the previous photo's pending strokes
        self.image_path, self.photo, self.image = path, photo, rgb8(photo.pixels)
        self.result, self.restored, self.result_saved, self.review_output = None, None, False, None
        self.faces_on, self.composed, self._after_u8 = set(), None, None
        self.face_panel.show_faces(None, set())
        self.clear_error()
        stored = self._stored_mask()
        self.canvas.set_before(self.image)  # also drops the old result, mask and undo history
        self.mask_panel.original = path
        self.mask_panel.reset(stored, self._stored_origin() if stored is not None else None)
        self.diff_button.setChecked(False)
        self._mask_timer.stop()
        self._mask_dirty = False
        self.original_button.setChecked(False)
        self.compare_button.setChecked(True)
        self.canvas.show_before_only(False)
        self.canvas.set_compare(True)
        self.progress_bar.setValue(0)
        self.progress_bar.setFormat("Ready")
        self.check_weights()
        self._update_caption()
        self._update_actions()
        self.settings.last_open_folder = path.parent
        h, w = self.image.shape[:2]
        note = f" Its stored mask ({self.mask_panel.origin}) was restored." if stored is not None else ""
        self.set_status(f"Opened {path.name} ({w}×{h}).{note} Detect scratches or brush them, then press Restore.")
        self.image_opened.emit(path)
        return True

    def open_result(self, photo: Path, output: Path) -> bool:
        """Open an album-queue item to review it: the photo with its stored mask, its restored file
        as the "after" side of the compare view. Restore again (e.g. after fixing the mask) and
        Save… suggests the queue's output file, so the corrected result replaces the old one."""
        if not self.load_image(photo):
            return False
        try:
            restored = rgb8(read_photo(Path(output)).pixels)
        except (ImageReadError, OSError) as exc:
            self.show_error(f"Opened {Path(photo).name}, but its restored file {Path(output).name} cannot be read: "
                            f"{describe_error(exc) if isinstance(exc, OSError) else exc}")
            return True
        if restored.shape != self.image.shape:
            self.show_error(f"Opened {Path(photo).name}, but {Path(output).name} is not the same size as the photo, "
                            "so it cannot be compared.")
            return True
        self.result = RestoreResult(restored.astype(np.float32) / 255.0, self._queue_mode(Path(output)))
        self.result_saved, self.review_output = True, Path(output)  # it is the queue's file already
        self._after_u8 = restored
        self._show_after()
        self.mask_panel.overlay_checkbox.setChecked(False)
        self.compare_button.setChecked(True)
        self.canvas.set_compare(True)
        self.progress_bar.setFormat("Album queue result")
        self._update_caption()
        self._update_actions()
        self.set_status(f"Reviewing {Path(photo).name} from the album queue: drag the line to compare. To fix it, "
                        f"correct the mask (Show mask, M), press Restore, then Save… to replace {Path(output).name}.")
        return True

    def _queue_mode(self, output: Path) -> Mode:
        """The mode the queue used, from the output's provenance sidecar (scratch if unknown)."""
        try:
            record = json.loads(sidecar_path(output).read_text(encoding="utf-8"))
            return Mode(record["options"]["mode"])
        except (OSError, ValueError, KeyError, TypeError):
            return Mode.SCRATCH

    @Slot()
    def open_sample(self) -> bool:
        """Make the damaged sample photo in the user data folder (first time only) and open it."""
        from engine.jobs.sample import SampleUnavailable, make_sample_photo
        if not self.confirm_discard("Open the sample photo"):
            return False

        try:
            path = make_sample_photo()
        except (SampleUnavailable, OSError) as exc:
            self.show_error(f"Could not make the sample photo: {exc}")
            return False
        return self.load_image(path)

    # ------------------------------------------------------------------ masks

    def _stored_mask(self) -> np.ndarray | None:
        assert self.photo is not None and self.image is not None
        try:
            return self.masks.load(self.photo, self.image.shape[:2])  # the PhotoFile: no re-hash
        except (OSError, ImageReadError):
            return None

    def _stored_origin(self) -> str:
        assert self.photo is not None
        try:
            return self.masks.origin(self.photo) or DETECTED
        except OSError:
            return DETECTED

    @Slot(str)
    def _on_origin_changed(self, _origin: str) -> None:
        """Accepted or brushed: the store must know at once (the Train tab counts it)."""
        if self.image_path is not None:
            self._mask_dirty = True
            self.store_mask()

    @Slot()
    def _on_mask_changed(self) -> None:
        if self.image_path is not None:
            self._mask_dirty = True
            self._mask_timer.start()

    @Slot()
    def store_mask(self) -> None:
        """Save the view's mask for this photo in the MaskStore (the album queue uses it)."""
        self._mask_timer.stop()
        if self.image_path is None or not self._mask_dirty:
            return
        self._mask_dirty = False
        mask = self.canvas.mask()
        try:
            self.masks.save(self.photo, mask if mask is not None else np.zeros(self.image.shape[:2], bool),
                            self.mask_panel.origin)
        except OSError as exc:
            self.set_status(f"Could not keep the mask for {self.image_path.name}: {exc.strerror or exc}")

    # ------------------------------------------------------------------ background jobs

    def _device(self):
        try:
            choice = choose_device(self.settings.device)
        except DeviceError as exc:
            self.show_error(describe_error(exc))
            return None
        if choice.note:
            self.set_status(choice.note)
        return choice.device

    def _can_start(self) -> bool:
        if self.busy:
            return False
        if self.image is None:
            self.show_error("Open a photo first (File > Open, or drop one on the window).")
            return False
        if self._reserved_reason:
            self.show_error(self._reserved_reason)
            return False
        return True

    def _start(self, kind: str, task) -> bool:
        task.progress.connect(self._on_progress)
        task.failed.connect(self._on_failed)
        task.cancelled.connect(self._on_cancelled)
        self._job_kind = kind
        self._eta = EtaEstimator()
        self.progress_bar.setValue(0)
        self.progress_bar.setFormat("Starting…")
        self.clear_error()
        return self.runner.start(task)

    def start_detect(self) -> bool:
        """Run the detector in the background; its mask appears as an overlay."""
        if not self._can_start():
            return False
        device = self._device()
        if device is None:
            return False
        task = DetectTask(DetectJob(self.photo.pixels, self.settings.weights, device,
                                    self.options_panel.options(self.mask_panel.threshold, 0).detection_scale),
                          self.restorers)
        task.finished.connect(self._on_detected)
        self.set_status(f"Detecting scratches on {device}…")
        return self._start("detect", task)

    def restore_job(self, device) -> RestoreJob:
        """The job for the current view: see the module docstring for which mask is used."""
        panel = self.mask_panel
        options = self.options_panel.options(panel.threshold, panel.dilation)
        if panel.has_detection or not self.options_panel.scratch_auto:
            options = dataclasses.replace(options, detection_scale=NO_DETECTION)  # the view's mask is final
        mask = self.canvas.mask()
        user_mask = mask.copy() if mask is not None and mask.any() else None
        return RestoreJob(self.photo.pixels, options, self.settings.weights, device, user_mask)

    def start_restore(self) -> bool:
        """Start restoring the open photo in a worker thread. Returns False if it could not start."""
        if not self._can_start():
            return False
        device = self._device()
        if device is None:
            return False
        self.store_mask()
        task = RestoreTask(self.restore_job(device), self.restorers)
        task.ready.connect(self._on_ready)
        task.finished.connect(self._on_restored)
        self.set_status(f"Preparing on {device}…")
        return self._start("restore", task)

    @Slot()
    def cancel(self) -> None:
        """Ask the engine to stop; it raises Cancelled at its next check and the worker reports back."""
        if self.runner.cancel():
            self.cancel_button.setEnabled(False)
            self.progress_bar.setFormat("Cancelling…")
            self.set_status("Cancelling…")

    @Slot(float, str)
    def _on_progress(self, fraction: float, message: str) -> None:
        task = self.runner.task
        if task is None or task.is_cancelled:
            return
        self.progress_bar.setValue(int(round(fraction * PROGRESS_STEPS)))
        eta = format_seconds(self._eta.remaining(fraction))
        message = message or "working"
        self.progress_bar.setFormat(f"{message[:1].upper()}{message[1:]} — {fraction * 100:.0f}% — ETA {eta}")

    @Slot()
    def _on_ready(self) -> None:
        self._eta = EtaEstimator()  # loading weights is not representative of the restore's pace

    @Slot(object)
    def _on_detected(self, probability: np.ndarray) -> None:
        self.mask_panel.adopt_detection(probability)
        self.progress_bar.setValue(PROGRESS_STEPS)
        self.progress_bar.setFormat("Detection done")
        mask = self.canvas.mask()
        share = float(mask.mean() * 100) if mask is not None else 0.0
        self.set_status(f"Scratch mask covers {share:.1f}% of the photo. Adjust the threshold, paint or erase, "
                        "then press Restore.")

    @Slot(object)
    def _on_restored(self, outcome: RestoreOutcome) -> None:
        result = outcome.result
        self.result, self.restored = result, outcome
        if result.detected is not None:  # this restore detected: the view shows the mask it used
            self.mask_panel.adopt_detection(result.detected, result.mask, "Detect scratches (restore)")
        self._after_u8 = to_u8(result.image)
        self.result_saved = False
        self._show_after()
        self.faces_on = result.faces.refined_indices if result.faces is not None else set()
        self.composed = None
        self._show_faces()
        self.mask_panel.overlay_checkbox.setChecked(False)  # the result, unobscured ("Show mask" brings it back)
        self.original_button.setChecked(False)
        self.compare_button.setChecked(True)
        self.canvas.set_compare(True)
        self.progress_bar.setValue(PROGRESS_STEPS)
        total = sum(result.timings.values())
        self.progress_bar.setFormat(f"Done in {total:.1f} s")
        self._update_caption()
        faces = ""
        if result.faces is not None and result.faces.found:
            found, refined = result.faces.found, result.faces.refined
            faces = (f" {refined} of {found} face{'s' if found != 1 else ''} refined"
                     f"{': click a box to switch a face off' if refined else ''}.")
        notes = "".join(f" Note: {warning}." for warning in result.warnings)  # e.g. a face that failed
        strength = f", strength {round(result.strength * 100)} %"  # chosen per photo unless set
        self.set_status(f"Restored in {total:.1f} s ({result.mode.value} mode{strength}).{faces}{notes} Drag the "
                        "line to compare, Save… to keep it.")

    # ------------------------------------------------------------------ faces

    @property
    def result_image(self) -> np.ndarray | None:
        """What the view shows as "after" and Save writes: the result with the faces switched on."""
        if self.result is None:
            return None
        return self.composed if self.composed is not None else self.result.image

    def _show_faces(self) -> None:
        """Boxes on the canvas and the list, from the last result and ``faces_on``."""
        report = self.result.faces if self.result is not None else None
        boxes = []
        for record in report.faces if report is not None else []:
            state = "failed" if not record.refined else "on" if record.index in self.faces_on else "off"
            boxes.append(FaceBox(record.index, tuple(float(v) for v in record.box), state))
        self.canvas.set_faces(boxes)
        self.face_panel.show_faces(report, self.faces_on)

    @Slot(int)
    def toggle_face(self, index: int) -> None:
        """A click on a face's box: refined <-> as the global restoration left it."""
        self.set_face_enabled(index, index not in self.faces_on)

    @Slot(int, bool)
    def set_face_enabled(self, index: int, on: bool) -> None:
        """Switch one refined face on or off: the faces' regions are recomposed from the face stage's
        layers (no network runs), so the view and Save follow at once, even on a big scan."""
        report = self.result.faces if self.result is not None else None
        if self.busy or report is None or index not in report.refined_indices or (index in self.faces_on) == on:
            return
        self.faces_on = self.faces_on | {index} if on else self.faces_on - {index}
        if self.composed is None:
            self.composed = self.result.image.copy()
        for y0, y1, x0, x1 in report.compose_into(self.composed, self.faces_on):
            self._after_u8[y0:y1, x0:x1] = to_u8(self.composed[y0:y1, x0:x1])
        self.result_saved = False  # what Save would write changed
        self._show_after()
        self.canvas.set_faces([FaceBox(f.index, f.box, "on" if f.index in self.faces_on else "off")
                               if f.state != "failed" else f for f in self.canvas.faces()])
        self.face_panel.set_enabled_faces(self.faces_on)
        self.set_status(f"Face {index} {'refined' if on else 'switched off: shown as the global restoration left it'}."
                        " Save… writes what the view shows.")

    @Slot(str, str)
    def _on_failed(self, message: str, details: str) -> None:
        self.progress_bar.setValue(0)
        self.progress_bar.setFormat("Failed")
        self.show_error(message, details)

    @Slot()
    def _on_cancelled(self) -> None:
        self.progress_bar.setValue(0)
        self.progress_bar.setFormat("Cancelled")
        self.set_status("Cancelled. The photo is unchanged; press Restore to try again.")

    @Slot(str)
    def _on_runner_done(self, outcome: str) -> None:
        kind, self._job_kind = self._job_kind, ""
        self._update_actions()
        if outcome == FINISHED:
            self.store_mask()
        {"restore": self.restore_done, "save": self.save_done}.get(kind, self.detect_done).emit(outcome)

    # ------------------------------------------------------------------ save

    def default_save_path(self) -> Path | None:
        """The queue's output when reviewing a queue item; else the output folder setting's choice
        (none set: next to the original, as that setting says)."""
        if self.image_path is None:
            return None
        if self.review_output is not None:
            return self.review_output
        folder = self.settings.output_folder or self.image_path.parent
        suffix = output_suffix(self.image_path, output_format(self.image_path))
        return folder / f"{self.image_path.stem}_restored{suffix}"

    def save_dialog(self, wait: bool = False) -> bool:
        """Ask where to save (starting at ``default_save_path``) and start saving there; True when
        the save started (``wait``: when the file was written)."""
        if self.result is None:
            return False
        default = self.default_save_path()
        fmt = SAVE_FORMATS.get(default.suffix.lower(), "png") if default else "png"
        filters = [SAVE_FILTERS[fmt]] + [f for k, f in SAVE_FILTERS.items() if k != fmt]
        path, chosen = QFileDialog.getSaveFileName(self, "Save restored photo", str(default or ""), ";;".join(filters))
        if not path:
            return False
        path = Path(path)
        if not path.suffix:  # the dialog's filter says which format was meant
            fmt = next((k for k, f in SAVE_FILTERS.items() if f == chosen), "png")
            path = path.with_name(path.name + {"png": ".png", "tiff": ".tif", "jpeg": ".jpg"}[fmt])
        return self.save_result(path, wait)

    def save_result(self, path: str | Path, wait: bool = False) -> bool:
        """Save what the view shows as "after" (PNG, TIFF or JPEG by suffix, the photo's depth and
        metadata kept) with its provenance sidecar, in the background: the engine encodes and writes
        atomically, never over the original. True when the save started (``wait``: when the file
        was written; the window stays live meanwhile)."""
        if self.result is None or self.photo is None or self.image_path is None:
            self.show_error("There is no restored photo to save yet.")
            return False
        if self.busy:
            self.show_error("Wait for the running job to end, then save.")
            return False
        if self.restored is None:  # reviewing a queue result: its file and record exist already
            self.show_error(f"Nothing new to save: this is the album queue's restoration, already saved as "
                            f"{self.review_output.name if self.review_output else 'its output'}. "
                            "Restore again (e.g. after fixing the mask) to save a new version.")
            return False
        path, fmt = save_path_with_format(Path(path).expanduser())
        try:
            refuse_original(path, self.image_path)
        except WouldOverwriteOriginal as exc:
            self.show_error(f"Not saved: {exc}.")
            return False
        task = SaveTask(SaveJob(self.photo, self.restored, self.result_image, path, fmt, JPEG_QUALITY), self.restorers)
        task.finished.connect(self._on_saved)
        self._saving_to = path
        self.set_status(f"Saving {path.name}…")
        if not self._start("save", task):
            return False
        return self.wait_for_save() if wait else True

    def wait_for_save(self) -> bool:
        """Let a running save finish (events keep flowing, so the window stays live); True when the
        current result is saved."""
        if self._job_kind == "save":
            loop = QEventLoop()
            self.save_done.connect(loop.quit)
            loop.exec()
            self.save_done.disconnect(loop.quit)
        return self.result_saved

    @Slot(object)
    def _on_saved(self, written: Written) -> None:
        path = self._saving_to
        self.settings.last_save_folder = path.parent
        self.result_saved = True
        self.progress_bar.setValue(PROGRESS_STEPS)
        self.progress_bar.setFormat("Saved")
        known = set(self.photo.warnings) | set(self.result.warnings)
        extra = "; ".join(note for note in written.notes if note not in known)  # e.g. what the format cannot hold
        self.set_status(f"Saved {path} and its provenance record" + (f" ({extra})" if extra else ""))

    # ------------------------------------------------------------------ closing

    def shutdown(self) -> None:
        """Stop a running job and keep pending strokes before the window goes away."""
        self.runner.stop()
        self.store_mask()
