"""The Restore tab's list of the faces the last restore found, each with its own on/off switch.

A switch recomposes the photo from the face stage's layers (``FaceReport.compose_into``): no
network runs, so a face the generator got wrong goes back to the global restoration at once, and
Save writes what the view shows. The same toggle is a click on the face's box in the view.
"""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QCheckBox, QGroupBox, QLabel, QVBoxLayout, QWidget

from engine.core.faces.stage import FaceReport

REFINED_TIP = ("Refined by the face network. Untick (or click the face's box in the view) to show this face "
               "as the global restoration left it; Save writes what the view shows.")


class FacePanel(QGroupBox):
    """One checkbox per detected face, plus "Show face boxes"; hidden until a restore ran the face stage."""

    face_toggled = Signal(int, bool)  # face index (from 1), refined on/off
    boxes_toggled = Signal(bool)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Faces", parent)
        self.summary_label = QLabel(self)
        self.summary_label.setWordWrap(True)
        self.boxes_checkbox = QCheckBox("Show face boxes", self)
        self.boxes_checkbox.setChecked(True)
        self.boxes_checkbox.setToolTip("Outline each detected face over the restored side: green = refined, "
                                       "amber dashed = switched off or not refined")
        self.boxes_checkbox.toggled.connect(self.boxes_toggled)
        self.checkboxes: dict[int, QCheckBox] = {}
        self._list = QVBoxLayout()
        self._list.setSpacing(2)
        layout = QVBoxLayout(self)
        layout.addWidget(self.summary_label)
        layout.addLayout(self._list)
        layout.addWidget(self.boxes_checkbox)
        self.setVisible(False)

    def show_faces(self, report: FaceReport | None, enabled: set[int]) -> None:
        """List ``report``'s faces (ticked: in ``enabled``); None hides the panel (no face stage ran)."""
        for box in self.checkboxes.values():
            self._list.removeWidget(box)
            box.deleteLater()
        self.checkboxes = {}
        self.setVisible(report is not None)
        if report is None:
            return
        if report.found == 0:
            self.summary_label.setText("No faces were found in this photo.")
            self.boxes_checkbox.setVisible(False)
            return
        self.boxes_checkbox.setVisible(True)
        found = f"{report.found} face{'s' if report.found != 1 else ''} found, {report.refined} refined."
        hint = " Untick a face, or click its box, to see it without face refinement." if report.refined else ""
        self.summary_label.setText(found + hint)
        for record in report.faces:
            box = QCheckBox(f"Face {record.index}", self)
            if record.refined:
                box.setChecked(record.index in enabled)
                box.setToolTip(REFINED_TIP)
                box.toggled.connect(lambda on, index=record.index: self.face_toggled.emit(index, on))
            else:
                box.setText(f"Face {record.index}: not refined")
                box.setEnabled(False)
                box.setToolTip(f"The face network failed on this face; it keeps the global restoration.\n"
                               f"{record.error or ''}".strip())
            self._list.addWidget(box)
            self.checkboxes[record.index] = box

    def set_enabled_faces(self, enabled: set[int]) -> None:
        """Tick exactly the refined faces in ``enabled`` (after a click on a box in the view)."""
        for index, box in self.checkboxes.items():
            if box.isEnabled():
                box.blockSignals(True)
                box.setChecked(index in enabled)
                box.blockSignals(False)
