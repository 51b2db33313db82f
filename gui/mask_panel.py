"""Scratch-mask controls for the Restore tab: detector overlay, threshold, dilation and the brush.

One mask is shown and used: the canvas's. The detector contributes ``probability >= threshold``
grown by ``dilation``; the user's strokes add (paint) or remove (erase) pixels on top. When the
threshold or dilation moves, the detector's part is recomputed from the stored probability map and
the strokes are kept: pixels painted outside the old detection stay painted, detected pixels the
user erased stay erased (:func:`rethreshold`). A detection or a threshold/dilation change is one
undo macro on the canvas's own stack (the canvas's mask edit plus a command that swaps the
detection and slider values), so Ctrl+Z walks back through strokes and slider moves in order and
the sliders follow. The sliders apply on release (not while dragging): a preview that bypassed the
undo stack would have to reset the canvas's history.

The panel also says who vouches for the mask (``origin``, see :mod:`engine.store.masks`): a stroke makes it
*brushed*, a new detection makes it *detected* again, and *Accept mask* marks a detected mask that a
person looked at and found right. Only brushed and accepted masks teach the detector (Train tab).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtGui import QKeySequence, QUndoCommand
from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QFileDialog,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QSlider,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from engine.core.detection import OFFICIAL_THRESHOLD, mask_from_probability
from engine.store.masks import ACCEPTED, BRUSHED, DETECTED

from .canvas import PhotoCanvas
from .paths import same_file

MAX_DILATION = 10
BRUSH_MIN, BRUSH_MAX = 1, 400
BRUSH_STEP = 1.25  # [ and ] scale the brush by this factor
DEFAULT_OPACITY = 0.5
ORIGIN_TEXT = {
    BRUSHED: "Reviewed: brushed by you (used to teach the detector)",
    ACCEPTED: "Reviewed: accepted by you (used to teach the detector)",
    DETECTED: "Not reviewed: the detector's guess. Correct it with the brush or press Accept mask; "
              "until then it is not used to teach the detector",
}


@dataclass(frozen=True)
class DetectorParams:
    """The detector's part of the mask: its probability map and the slider values applied to it."""

    probability: np.ndarray | None
    threshold: float
    dilation: int

    def detected(self) -> np.ndarray | None:
        if self.probability is None:
            return None
        return mask_from_probability(self.probability, self.threshold, self.dilation)


def rethreshold(mask: np.ndarray | None, old_detected: np.ndarray | None, new_detected: np.ndarray) -> np.ndarray:
    """The mask after the detector's part changed from ``old_detected`` to ``new_detected``,
    keeping the user's edits: painted = mask outside the old detection, erased = old detection
    missing from the mask."""
    current = np.zeros_like(new_detected) if mask is None else mask.astype(bool)
    if old_detected is None:
        return new_detected | current
    painted = current & ~old_detected
    erased = old_detected & ~current
    return (new_detected & ~erased) | painted


class ParamsCommand(QUndoCommand):
    """Swaps the detection and slider values; lives in one macro with the canvas's mask edit."""

    def __init__(self, panel: "MaskPanel", old: DetectorParams, new: DetectorParams) -> None:
        super().__init__("detector settings")
        self.panel, self.old, self.new = panel, old, new

    def redo(self) -> None:
        self.panel.apply_params(self.new)

    def undo(self) -> None:
        self.panel.apply_params(self.old)


def labelled_slider(minimum: int, maximum: int, value: int, tip: str) -> tuple[QSlider, QLabel]:
    slider = QSlider(Qt.Orientation.Horizontal)
    slider.setRange(minimum, maximum)
    slider.setValue(value)
    slider.setToolTip(tip)
    label = QLabel()
    label.setMinimumWidth(label.fontMetrics().horizontalAdvance("100 px") + 4)
    label.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
    return slider, label


class MaskPanel(QWidget):
    """Detect button, overlay/threshold/dilation sliders and brush tools acting on one canvas."""

    detect_requested = Signal()
    params_changed = Signal()  # threshold or dilation moved (the options follow them)
    origin_changed = Signal(str)  # who vouches for the mask changed (the tab stores it with the mask)
    error = Signal(str, str)
    message = Signal(str)

    def __init__(self, canvas: PhotoCanvas, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.canvas = canvas
        # What the canvas's detector part was computed with (the sliders may be mid-drag).
        self._params = DetectorParams(None, OFFICIAL_THRESHOLD, 0)
        self._tool = "pan"  # the user's tool, restored after a job locked editing
        self._editable = False
        self._can_undo = self._can_redo = False
        self.last_folder: Path | None = None
        self.original: Path | None = None  # the open photo: a mask is never saved over it
        self.origin = DETECTED  # brushed | accepted | detected: who vouches for the mask
        self._build_detector_group()
        self._build_brush_group()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.detector_group)
        layout.addWidget(self.brush_group)
        self._update_labels()
        self.set_tool("pan")
        canvas.mask_changed.connect(self.update_coverage)
        canvas.stroked.connect(self._on_stroked)
        self.update_coverage()

    # ------------------------------------------------------------------ construction

    def _build_detector_group(self) -> None:
        group = QGroupBox("Scratch mask", self)
        self.detect_button = QPushButton("Detect scratches", group)
        self.detect_button.setToolTip("Run the scratch detector and show what it finds as a red overlay "
                                      "you can correct with the brush")
        self.detect_button.clicked.connect(self.detect_requested)
        self.overlay_checkbox = QCheckBox("Show mask", group)
        self.overlay_checkbox.setChecked(True)
        self.overlay_checkbox.setToolTip("Show the damage mask over the photo (M)")
        self.overlay_checkbox.setShortcut(QKeySequence("M"))
        self.overlay_checkbox.toggled.connect(self.canvas.set_overlay_visible)
        self.opacity_slider, self.opacity_value = labelled_slider(
            0, 100, int(DEFAULT_OPACITY * 100), "How strongly the mask is tinted over the photo")
        self.opacity_slider.valueChanged.connect(self._on_opacity)
        self.threshold_slider, self.threshold_value = labelled_slider(
            1, 99, int(round(OFFICIAL_THRESHOLD * 100)),
            "Detector confidence that counts as damage: lower finds more (and more false alarms)")
        self.dilation_slider, self.dilation_value = labelled_slider(
            0, MAX_DILATION, 0, "Grow the detected scratches by this many pixels (covers their soft edges)")
        for slider in (self.threshold_slider, self.dilation_slider):
            slider.setTracking(False)  # valueChanged on release: one undo step per change
            slider.valueChanged.connect(self._on_params_changed)
            slider.sliderMoved.connect(self._update_labels)
        grid = QGridLayout(group)
        grid.addWidget(self.detect_button, 0, 0, 1, 3)
        grid.addWidget(self.overlay_checkbox, 1, 0, 1, 3)
        for row, (name, slider, value) in enumerate((("Opacity", self.opacity_slider, self.opacity_value),
                                                     ("Threshold", self.threshold_slider, self.threshold_value),
                                                     ("Dilation", self.dilation_slider, self.dilation_value)), 2):
            grid.addWidget(QLabel(name, group), row, 0)
            grid.addWidget(slider, row, 1)
            grid.addWidget(value, row, 2)
        self.coverage_label = QLabel(group)
        self.coverage_label.setToolTip("How much of the photo the mask marks as damage; it follows the "
                                       "threshold, dilation and your strokes")
        self.review_label = QLabel(group)
        self.review_label.setWordWrap(True)
        self.accept_button = QPushButton("Accept mask", group)
        self.accept_button.setToolTip("I checked this mask and it marks the damage right: it may teach the "
                                      "detector (Train tab)")
        self.accept_button.clicked.connect(self.accept_mask)
        grid.addWidget(self.coverage_label, 5, 0, 1, 3)
        grid.addWidget(self.review_label, 6, 0, 1, 2)
        grid.addWidget(self.accept_button, 6, 2)
        grid.setColumnStretch(1, 1)
        self.detector_group = group
        self.canvas.set_overlay_visible(True)
        self.canvas.set_overlay_opacity(DEFAULT_OPACITY)

    def _build_brush_group(self) -> None:
        group = QGroupBox("Brush", self)
        self.tool_buttons: dict[str, QToolButton] = {}
        self.tool_group = QButtonGroup(group)
        tools = QHBoxLayout()
        for tool, text, key, tip in (("pan", "Pan", "H", "Drag to move around the photo (H)"),
                                     ("paint", "Paint", "B", "Mark damage the detector missed (B)"),
                                     ("erase", "Erase", "E", "Remove marks that are not damage (E)")):
            button = QToolButton(group)
            button.setText(text)
            button.setCheckable(True)
            button.setShortcut(QKeySequence(key))
            button.setToolTip(tip)
            button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
            button.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
            self.tool_group.addButton(button)
            self.tool_buttons[tool] = button
            tools.addWidget(button)
        self.tool_group.setExclusive(True)
        self.tool_group.buttonClicked.connect(self._on_tool_clicked)
        self.brush_slider, self.brush_value = labelled_slider(
            BRUSH_MIN, BRUSH_MAX, max(BRUSH_MIN, min(BRUSH_MAX, self.canvas.brush_size())),
            "Brush diameter in photo pixels ([ smaller, ] bigger)")
        self.brush_slider.valueChanged.connect(self._on_brush_size)
        stack = self.canvas.undo_stack
        self.undo_button = QPushButton("Undo", group)
        self.undo_button.setToolTip("Undo the last stroke, detection or slider change (Ctrl+Z)")
        self.undo_button.clicked.connect(stack.undo)
        self.redo_button = QPushButton("Redo", group)
        self.redo_button.setToolTip("Redo (Ctrl+Shift+Z)")
        self.redo_button.clicked.connect(stack.redo)
        # The flags come with the signals: the stack may be mid-destruction when it sends them.
        stack.canUndoChanged.connect(self._on_can_undo)
        stack.canRedoChanged.connect(self._on_can_redo)
        self.clear_button = QPushButton("Clear", group)
        self.clear_button.setToolTip("Remove the whole mask (undoable)")
        self.clear_button.clicked.connect(self.canvas.clear_mask)
        self.load_button = QPushButton("Load mask…", group)
        self.load_button.setToolTip("Load a mask PNG (white = damage) of the photo's size")
        self.load_button.clicked.connect(self.load_mask_dialog)
        self.save_button = QPushButton("Save mask…", group)
        self.save_button.setToolTip("Save the mask as a PNG (white = damage)")
        self.save_button.clicked.connect(self.save_mask_dialog)

        grid = QGridLayout(group)
        grid.addLayout(tools, 0, 0, 1, 3)
        grid.addWidget(QLabel("Size", group), 1, 0)
        grid.addWidget(self.brush_slider, 1, 1)
        grid.addWidget(self.brush_value, 1, 2)
        edits = QHBoxLayout()
        for widget in (self.undo_button, self.redo_button, self.clear_button):
            edits.addWidget(widget)
        grid.addLayout(edits, 2, 0, 1, 3)
        files = QHBoxLayout()
        files.addWidget(self.load_button)
        files.addWidget(self.save_button)
        grid.addLayout(files, 3, 0, 1, 3)
        grid.setColumnStretch(1, 1)
        self.brush_group = group

    # ------------------------------------------------------------------ values

    @property
    def threshold(self) -> float:
        return self.threshold_slider.value() / 100.0

    @property
    def dilation(self) -> int:
        return self.dilation_slider.value()

    @property
    def probability(self) -> np.ndarray | None:
        return self._params.probability

    @property
    def has_detection(self) -> bool:
        return self._params.probability is not None

    @Slot()
    def _update_labels(self) -> None:
        self.threshold_value.setText(f"{self.threshold_slider.sliderPosition() / 100:.2f}")
        self.dilation_value.setText(f"{self.dilation_slider.sliderPosition()} px")
        self.opacity_value.setText(f"{self.opacity_slider.value()} %")
        self.brush_value.setText(f"{self.brush_slider.value()} px")

    # ------------------------------------------------------------------ photo and detection

    def reset(self, mask: np.ndarray | None = None, origin: str | None = None) -> None:
        """A new photo: forget the detection and the undo history, show ``mask`` (e.g. stored) and
        who vouched for it (``origin``; a stored mask without one counts as detected)."""
        self._params = DetectorParams(None, self.threshold, self.dilation)
        self.canvas.set_mask(mask, undoable=False)  # also empties the canvas's undo history
        self.set_origin(origin or DETECTED, notify=False)

    # ------------------------------------------------------------------ review

    def set_origin(self, origin: str, notify: bool = True) -> None:
        """Who vouches for the mask now; ``notify`` tells the tab to store it."""
        changed = origin != self.origin
        self.origin = origin
        self._update_review()
        if changed and notify:
            self.origin_changed.emit(origin)

    @Slot()
    def accept_mask(self) -> None:
        """The person checked the mask: it may now teach the detector."""
        if self.canvas.mask_coverage() > 0 and self.origin == DETECTED:
            self.set_origin(ACCEPTED)
            self.message.emit("Mask accepted: the Train tab may learn from it.")

    @Slot()
    def _on_stroked(self) -> None:
        self.set_origin(BRUSHED)

    def _update_review(self) -> None:
        has_mask = self.canvas.mask_coverage() > 0
        self.review_label.setText(ORIGIN_TEXT[self.origin] if has_mask else "")
        self.review_label.setStyleSheet("" if self.origin != DETECTED else "QLabel { color: #a35200; }")
        self.accept_button.setEnabled(self._editable and has_mask and self.origin == DETECTED)

    @Slot()
    def update_coverage(self) -> None:
        """The coverage line follows every mask change (threshold, dilation, strokes, undo)."""
        share = self.canvas.mask_coverage() * 100
        self.coverage_label.setText(f"Mask covers {share:.1f} % of the photo" if self.canvas.has_photo() else "")
        self._update_review()

    def _change(self, text: str, params: DetectorParams, mask: np.ndarray) -> None:
        """One undo step: new detection/slider values and the mask that goes with them."""
        stack = self.canvas.undo_stack
        stack.beginMacro(text)
        stack.push(ParamsCommand(self, self._params, params))
        self.canvas.set_mask(mask, undoable=True)
        stack.endMacro()

    def adopt_detection(self, probability: np.ndarray, mask: np.ndarray | None = None,
                        text: str = "Detect scratches") -> None:
        """Show a detection as one undoable step. Strokes painted outside the previous detection
        are kept (erasures are not: a new detection is a fresh look); ``mask`` overrides the
        result (a restore reports the exact mask it used)."""
        params = DetectorParams(probability, self.threshold, self.dilation)
        if mask is None:
            new_detected = params.detected()
            old_detected = self._params.detected()
            current = self.canvas.mask()
            current = np.zeros_like(new_detected) if current is None else current
            mask = new_detected | (current if old_detected is None else current & ~old_detected)
        self._change(text, params, mask)
        self.overlay_checkbox.setChecked(True)
        self.set_origin(DETECTED)  # a fresh look by the detector: nobody has reviewed it yet

    def apply_params(self, params: DetectorParams) -> None:
        """Make ``params`` current and move the sliders to them (undo/redo)."""
        self._params = params
        for slider, value in ((self.threshold_slider, int(round(params.threshold * 100))),
                              (self.dilation_slider, params.dilation)):
            slider.blockSignals(True)
            slider.setValue(value)
            slider.blockSignals(False)
        self._update_labels()
        self.params_changed.emit()

    # ------------------------------------------------------------------ sliders

    @Slot()
    def _on_params_changed(self) -> None:
        """A slider was released or stepped: recompute the detector's part, keep the strokes."""
        self._update_labels()
        params = DetectorParams(self._params.probability, self.threshold, self.dilation)
        if params.probability is None:
            self._params = params
        else:
            new_mask = rethreshold(self.canvas.mask(), self._params.detected(), params.detected())
            self._change("Change threshold or dilation", params, new_mask)
            if self.origin == ACCEPTED:  # what was accepted is not what is shown any more
                self.set_origin(DETECTED)
        self.params_changed.emit()

    def set_params(self, threshold: float, dilation: int) -> None:
        """Programmatic slider change (e.g. HR switches the official dilation)."""
        self.threshold_slider.setValue(int(round(threshold * 100)))
        self.dilation_slider.setValue(dilation)

    # ------------------------------------------------------------------ brush

    def set_tool(self, tool: str, remember: bool = True) -> None:
        if remember:
            self._tool = tool
        self.tool_buttons[tool].setChecked(True)
        self.canvas.set_tool(tool)
        if tool != "pan" and remember:
            self.overlay_checkbox.setChecked(True)  # painting blind would be confusing

    @Slot(object)
    def _on_tool_clicked(self, button: QToolButton) -> None:
        for tool, candidate in self.tool_buttons.items():
            if candidate is button:
                self.set_tool(tool)

    @Slot(int)
    def _on_brush_size(self, size: int) -> None:
        self.canvas.set_brush_size(size)
        self._update_labels()

    def grow_brush(self) -> None:
        value = self.brush_slider.value()
        self.brush_slider.setValue(min(BRUSH_MAX, max(value + 1, int(round(value * BRUSH_STEP)))))

    def shrink_brush(self) -> None:
        value = self.brush_slider.value()
        self.brush_slider.setValue(max(BRUSH_MIN, min(value - 1, int(round(value / BRUSH_STEP)))))

    @Slot(bool)
    def _on_can_undo(self, can: bool) -> None:
        self._can_undo = can
        self._update_history_buttons()

    @Slot(bool)
    def _on_can_redo(self, can: bool) -> None:
        self._can_redo = can
        self._update_history_buttons()

    def _update_history_buttons(self) -> None:
        self.undo_button.setEnabled(self._editable and self._can_undo)
        self.redo_button.setEnabled(self._editable and self._can_redo)

    @Slot(int)
    def _on_opacity(self, value: int) -> None:
        self.canvas.set_overlay_opacity(value / 100.0)
        self._update_labels()

    def set_editable(self, editable: bool, has_image: bool) -> None:
        """Mask editing needs a photo and no running job (a finished restore adopts its mask)."""
        on = editable and has_image
        self._editable = on
        for widget in (self.detect_button, self.threshold_slider, self.dilation_slider, self.clear_button,
                       self.load_button, *self.tool_buttons.values()):
            widget.setEnabled(on)
        self._update_history_buttons()
        self._update_review()
        self.save_button.setEnabled(has_image)
        self.set_tool(self._tool if on else "pan", remember=False)

    # ------------------------------------------------------------------ files

    def load_mask_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Load mask", str(self.last_folder or ""),
                                              "PNG images (*.png);;All files (*)")
        if path:
            self.load_mask(Path(path))

    def load_mask(self, path: Path) -> bool:
        try:
            self.canvas.load_mask(path)
        except Exception as exc:  # wrong size, not an image, unreadable: say so, keep the current mask
            self.error.emit(f"Could not load the mask {path.name}: {exc}", "")
            return False
        self.last_folder = path.parent
        self.overlay_checkbox.setChecked(True)
        self.set_origin(BRUSHED)  # a mask file the person made and chose
        self.message.emit(f"Loaded the mask {path.name}")
        return True

    def save_mask_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save mask", str(self.last_folder or ""), "PNG image (*.png)")
        if path:
            self.save_mask(Path(path) if Path(path).suffix.lower() == ".png" else Path(path + ".png"))

    def save_mask(self, path: Path) -> bool:
        if self.original is not None and same_file(path, self.original):
            self.error.emit(f"Not saved: {path.name} is the original photo, which Heirloom never overwrites.", "")
            return False
        try:
            self.canvas.save_mask(path)
        except Exception as exc:
            self.error.emit(f"Could not save the mask to {path}: {exc}", "")
            return False
        self.last_folder = path.parent
        self.message.emit(f"Saved the mask to {path}")
        return True
