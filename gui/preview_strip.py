"""The Train tab's preview strip: a few held-out photos, before | after, refreshed during training.

The worker sends ``engine.training.finetune.tasks.Preview`` objects (float RGB arrays); they are
turned into pixmaps here, in the GUI thread. Only the newest set is kept: the point is to see the
current weights, and the step they were made at is in the caption.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import (
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

THUMB = 132  # longest side of each image, pixels
# What the two images of a pair are, per task (engine.training.finetune.tasks.*.preview).
PAIR_LABELS = {
    "detector": ("your mask (green)", "detector now (red)"),
    "domain": ("scan", "restored now"),
    "mapping": ("damaged copy", "restored now"),
}
EMPTY_TEXT = "Before / after previews of a few held-out photos appear here while training."


def to_pixmap(image: np.ndarray, side: int = THUMB) -> QPixmap:
    """HxWx3 float in [0, 1] (or uint8) -> a pixmap whose longest side is at most ``side``."""
    rgb = image if image.dtype == np.uint8 else (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    rgb = np.ascontiguousarray(rgb[..., :3])
    h, w = rgb.shape[:2]
    qimage = QImage(rgb.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()  # copy: owns its pixels
    if max(h, w) > side:
        qimage = qimage.scaled(side, side, Qt.AspectRatioMode.KeepAspectRatio,
                               Qt.TransformationMode.SmoothTransformation)
    return QPixmap.fromImage(qimage)


class PreviewStrip(QFrame):
    """Pairs side by side, each with the photo's name under it."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.caption = QLabel(EMPTY_TEXT, self)
        self.caption.setWordWrap(True)
        self.row = QHBoxLayout()
        self.row.setSpacing(16)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 6, 8, 6)
        layout.addWidget(self.caption)
        layout.addLayout(self.row)
        layout.addStretch(1)  # small previews sit under the caption, not in the middle
        self.setMinimumHeight(THUMB + 70)
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Fixed)
        self._cells: list[QWidget] = []
        self.step = 0

    @property
    def count(self) -> int:
        """How many before / after pairs are shown."""
        return len(self._cells)

    def clear(self, text: str = EMPTY_TEXT) -> None:
        while self.row.count():  # the cells and the trailing stretch
            item = self.row.takeAt(0)
            if item.widget() is not None:
                item.widget().deleteLater()
        self._cells = []
        self.caption.setText(text)
        self.step = 0

    def show_previews(self, previews: list, step: int, task: str) -> None:
        """Replace the strip with ``previews`` (list of Preview) made at ``step``."""
        self.clear()
        before, after = PAIR_LABELS.get(task, ("before", "after"))
        self.step = step
        if not previews:
            self.caption.setText("No held-out photo to preview (add a few more photos).")
            return
        self.caption.setText(f"Held-out photos at step {step} — left: {before}; right: {after}")
        for preview in previews:
            cell = QWidget(self)
            grid = QGridLayout(cell)
            grid.setContentsMargins(0, 0, 0, 0)
            grid.setHorizontalSpacing(4)
            for column, image in enumerate((preview.before, preview.after)):
                picture = QLabel(cell)
                picture.setPixmap(to_pixmap(image))
                picture.setAlignment(Qt.AlignmentFlag.AlignBottom | Qt.AlignmentFlag.AlignHCenter)
                grid.addWidget(picture, 0, column)
            title = QLabel(preview.title, cell)
            title.setAlignment(Qt.AlignmentFlag.AlignHCenter)
            title.setToolTip(preview.title)
            grid.addWidget(title, 1, 0, 1, 2)
            self.row.addWidget(cell)
            self._cells.append(cell)
        self.row.addStretch(1)
