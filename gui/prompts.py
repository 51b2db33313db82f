"""Questions that must be answered before work is lost (Save / Discard / Cancel).

Kept in one small module, as plain functions, so that tests replace :func:`ask_unsaved` (a modal
box would block a test forever) and screenshots grab the box that :func:`unsaved_box` builds.
"""

from __future__ import annotations

from PySide6.QtWidgets import QMessageBox, QWidget

SAVE, DISCARD, CANCEL = "save", "discard", "cancel"


def unsaved_box(parent: QWidget | None, title: str, text: str, details: str = "") -> QMessageBox:
    """The Save / Discard / Cancel box, not shown yet (Save is the default, Esc cancels)."""
    box = QMessageBox(QMessageBox.Icon.Warning, title, text,
                      QMessageBox.StandardButton.Save | QMessageBox.StandardButton.Discard
                      | QMessageBox.StandardButton.Cancel, parent)
    box.setDefaultButton(QMessageBox.StandardButton.Save)
    box.setEscapeButton(QMessageBox.StandardButton.Cancel)
    if details:
        box.setInformativeText(details)
    return box


def ask_unsaved(parent: QWidget | None, title: str, text: str, details: str = "") -> str:
    """Ask and wait: SAVE, DISCARD or CANCEL (closing the box cancels)."""
    answer = unsaved_box(parent, title, text, details).exec()
    if answer == QMessageBox.StandardButton.Save:
        return SAVE
    if answer == QMessageBox.StandardButton.Discard:
        return DISCARD
    return CANCEL
