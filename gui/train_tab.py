"""The Train tab: fine-tuning on the user's own albums arrives in a later version (issue 8).

Until then the tab says so plainly, and counts the masks already brushed in the Restore tab:
those are the labels fine-tuning will learn from, so the work is not lost in the meantime.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QHBoxLayout, QLabel, QVBoxLayout, QWidget

from engine.masks import MaskStore

TEXT_WIDTH = 600


class TrainTab(QWidget):
    """A short, honest placeholder page (recounted each time the tab is shown)."""

    def __init__(self, masks: MaskStore, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.masks = masks
        title = QLabel("Fine-tuning on your own photos", self)
        font = title.font()
        font.setPointSizeF(font.pointSizeF() * 1.4)
        font.setBold(True)
        title.setFont(font)
        self.body = QLabel(self)
        self.body.setWordWrap(True)
        self.body.setTextFormat(Qt.TextFormat.RichText)
        column = QWidget(self)
        column.setFixedWidth(TEXT_WIDTH)  # a fixed width lets the wrapped text take its full height
        inner = QVBoxLayout(column)
        inner.addWidget(title)
        inner.addSpacing(8)
        inner.addWidget(self.body)
        row = QHBoxLayout()
        row.addStretch(1)
        row.addWidget(column)
        row.addStretch(1)
        layout = QVBoxLayout(self)
        layout.addStretch(1)
        layout.addLayout(row)
        layout.addStretch(2)
        self.refresh()

    def refresh(self) -> None:
        try:
            count = len(self.masks.entries())
        except OSError:
            count = 0
        masks = f"{count} brushed mask{'s' if count != 1 else ''}"
        self.body.setText(
            "<p>Teaching Heirloom the damage in <i>your</i> albums comes in a later version. "
            "This version restores with the weights chosen in <b>Models &amp; settings</b>.</p>"
            "<p>Fine-tuning will learn from the scratch masks you correct in the <b>Restore</b> tab, "
            f"so they are kept already: <b>{masks}</b> so far.</p>"
            "<p>Meanwhile, <code>python main.py train --help</code> lists the training commands "
            "of the command line.</p>")
