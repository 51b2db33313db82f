"""The Train tab's third step: which weights to start from, on which device, for how long.

A base that is not installed is said here, next to the choice, before Start could fail on it.
"""

from __future__ import annotations

import re

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtWidgets import (
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QSpinBox,
    QWidget,
)

from engine.device import DeviceInfo
from engine.models.checkpoints import CheckpointError
from engine.store.catalogue import list_weights, resolve_weights
from engine.training.finetune.session import Budget

from .restore_options import fill_device_combo

DEFAULT_MINUTES, DEFAULT_STEPS = 15, 500


def short_weights_problem(exc: Exception) -> str:
    """The engine's weights message without folders and file lists (those are for the details)."""
    text = str(exc).split("; ")[0]
    text = re.sub(r"\s*\(missing: [^)]*\)", "", text)
    text = re.sub(r" are not installed in .+$", " are not installed", text)
    return text[:1].upper() + text[1:]


class TrainOptions(QGroupBox):
    """Base weights (default, official, profiles, the weights in use), device, step or time budget."""

    changed = Signal()  # the base (and whether it is usable) or the budget changed

    def __init__(self, devices: list[DeviceInfo], device: str, parent: QWidget | None = None) -> None:
        super().__init__("3. Training", parent)
        self.problem = ""  # why the chosen base weights cannot be used
        self.base_combo = QComboBox(self)
        self.base_combo.setToolTip("The weights the fine-tune starts from (Models & settings lists them)")
        self.base_combo.currentIndexChanged.connect(self._check_base)
        self.base_note = QLabel(self)
        self.base_note.setWordWrap(True)
        self.base_note.setStyleSheet("QLabel { color: #a35200; }")
        self.base_note.setVisible(False)
        self.device_combo = QComboBox(self)
        self.device_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        fill_device_combo(self.device_combo, devices, device)
        self.budget_spin = QSpinBox(self)
        self.budget_spin.setRange(1, 1_000_000)
        self.budget_spin.setValue(DEFAULT_MINUTES)
        self.budget_unit = QComboBox(self)
        self.budget_unit.addItem("minutes", "minutes")
        self.budget_unit.addItem("steps", "steps")
        self.budget_unit.currentIndexChanged.connect(self._on_unit_changed)
        self.budget_spin.valueChanged.connect(self.changed)
        budget_row = QHBoxLayout()
        budget_row.addWidget(self.budget_spin, 1)
        budget_row.addWidget(self.budget_unit)
        note = QLabel("For the whole run, pauses included; raise it and Resume to train further.", self)
        note.setWordWrap(True)
        note.setStyleSheet("QLabel { color: #555; }")
        form = QFormLayout(self)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        form.addRow("Start from:", self.base_combo)
        form.addRow("", self.base_note)
        form.addRow("Device:", self.device_combo)
        form.addRow("Budget:", budget_row)
        form.addRow("", note)
        self.min_steps = 1  # a step budget below what was trained already would end at once

    # ------------------------------------------------------------------ base weights

    def fill_bases(self, select: str, in_use: str) -> None:
        """The engine's catalogue: default, official, every profile, and the weights in use (also a
        custom folder). A set that cannot be used stays listed; choosing it says why."""
        self.base_combo.blockSignals(True)
        self.base_combo.clear()
        for entry in list_weights(extra=(in_use, select)):
            self.base_combo.addItem(entry.title + (" (in use)" if entry.choice == in_use else ""), entry.choice)
            self.base_combo.setItemData(self.base_combo.count() - 1, entry.choice, Qt.ItemDataRole.ToolTipRole)
        self.base_combo.setCurrentIndex(max(0, self.base_combo.findData(select)))
        self.base_combo.blockSignals(False)
        self._check_base()

    def base(self) -> str:
        return str(self.base_combo.currentData() or "default")

    @Slot()
    def _check_base(self) -> None:
        """Say early when the base weights are not there (Start would fail on them)."""
        self.problem = ""
        try:
            resolve_weights(self.base())
        except CheckpointError as exc:
            self.problem = short_weights_problem(exc) + "."
        self.base_note.setText(f"{self.problem} Choose other weights, or install these in Models & settings."
                               if self.problem else "")
        self.base_note.setVisible(bool(self.problem))
        self.changed.emit()

    # ------------------------------------------------------------------ device and budget

    def device_choice(self) -> str:
        return str(self.device_combo.currentData() or "auto")

    def budget(self) -> Budget:
        value = self.budget_spin.value()
        return Budget(steps=value) if self.budget_unit.currentData() == "steps" else Budget(minutes=value)

    def set_budget(self, budget: Budget) -> None:
        self.budget_unit.blockSignals(True)
        self.budget_unit.setCurrentIndex(self.budget_unit.findData("steps" if budget.steps is not None else "minutes"))
        self.budget_unit.blockSignals(False)
        self.budget_spin.setValue(int(budget.steps if budget.steps is not None else max(1, round(budget.minutes))))

    @Slot()
    def _on_unit_changed(self) -> None:
        steps = self.budget_unit.currentData() == "steps"
        self.budget_spin.setValue(max(self.min_steps, DEFAULT_STEPS) if steps else DEFAULT_MINUTES)
        self.changed.emit()

    def set_locked(self, busy: bool, has_run: bool) -> None:
        """The base is fixed once a run exists; device and budget only while it trains."""
        self.base_combo.setEnabled(not busy and not has_run)
        for widget in (self.device_combo, self.budget_spin, self.budget_unit):
            widget.setEnabled(not busy)
