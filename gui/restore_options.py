"""The Restore tab's option controls, bound both ways to :class:`gui.settings.Settings`.

Device and tile size also appear in the Models & settings tab; both views edit the same setting
and follow each other through ``Settings.changed``, so there is one truth, not two copies.
"""

from __future__ import annotations

import dataclasses

from PySide6.QtCore import Signal, Slot
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QGroupBox,
    QLabel,
    QSpinBox,
    QWidget,
)

from engine.core.faces.stage import FacesUnavailable, face_network, require_detector
from engine.core.pipeline import RestoreOptions
from engine.core.plan import MIN_TILE, Tile, parse_tile
from engine.device import DeviceInfo, list_devices
from engine.models.checkpoints import CheckpointError
from engine.models.registry import BY_NAME
from engine.store.catalogue import resolve_weights

from .settings import Settings

# RestoreOptions.faces arrives with face refinement; until then the control explains itself.
FACES_SUPPORTED = "faces" in {f.name for f in dataclasses.fields(RestoreOptions)}
FACE_VALUES: dict[str, bool | None] = {"auto": None, "on": True, "off": False}
TILE_CHOICES = ("auto", "off", "512", "1024", "2048")
TILE_TIP = (f"auto: process in tiles only when the photo does not fit in memory; off: never; or a tile size "
            f"in pixels (at least {MIN_TILE})")
FACES_TIP = "Sharpen faces with the face network. Auto: when faces are found."
FADING_TIP = ("Off (default): the restored photo keeps its own tone and colour balance outside repaired "
              "damage: grey stays grey, sepia stays sepia.\nOn: the weights estimate the photo's unfaded "
              "tone and recolour it towards that (may shift the colours of a toned or hand-coloured print).\n"
              "The official weights always set the tone themselves.")


def faces_unavailable(weights: str, hr: bool) -> tuple[str, str] | None:
    """Why face refinement cannot run with these weights, as (short note, details), or None when it
    can: the control says so instead of letting "Refine faces" silently do nothing."""
    try:
        source = resolve_weights(weights)
    except CheckpointError:
        return None  # no usable weights at all: the tab's red banner already says what to do
    if not source.has(BY_NAME[face_network(hr)]):
        mode = " for HR mode" if hr else ""
        note = f"Not available: the chosen weights have no face model{mode}."
        return note, (f"{note}\nChosen: {source.label}.\nImport the official face weights "
                      f"(face_checkpoints.zip{', with FaceSR_512' if hr else ''}) and choose the official "
                      "weights in Models & settings.")
    try:
        require_detector()
    except FacesUnavailable as exc:
        return "Not available: the face detector's files are missing.", str(exc)
    return None


def format_bytes(count: int | None) -> str:
    return "?" if count is None else f"{count / 2**30:.1f} GB"


def device_label(info: DeviceInfo) -> str:
    """“CPU (8 cores) — 15.6 GB, 9.2 GB free”: what the device is and how much memory it has."""
    memory = format_bytes(info.total_bytes)
    if info.free_bytes is not None:
        memory += f", {format_bytes(info.free_bytes)} free"
    return f"{info.description} — {memory}"


def fill_device_combo(combo: QComboBox, devices: list[DeviceInfo], current: str) -> None:
    """``auto`` first, then every device found; an unknown saved choice stays visible, marked."""
    combo.blockSignals(True)
    combo.clear()
    combo.addItem("Automatic (best available)", "auto")
    for info in devices:
        combo.addItem(f"{info.name}: {device_label(info)}", info.name)
    if combo.findData(current) < 0:
        combo.addItem(f"{current} (not found on this computer)", current)
    combo.setCurrentIndex(combo.findData(current))
    combo.blockSignals(False)


def fill_tile_combo(combo: QComboBox, current: Tile) -> None:
    combo.blockSignals(True)
    if combo.count() == 0:
        combo.addItems(TILE_CHOICES)
    combo.setCurrentText(str(current))
    combo.blockSignals(False)


def commit_tile_combo(combo: QComboBox, settings: Settings) -> None:
    """The typed tile size (engine.core.plan.parse_tile) becomes the setting; text the parser refuses
    puts the combo back to the last valid value."""
    try:
        settings.tile = parse_tile(combo.currentText())
    except ValueError:
        fill_tile_combo(combo, settings.tile)


class OptionsPanel(QGroupBox):
    """Scratch mode, HR, fading correction, faces, strength, device and tile size; ``options()`` turns
    them into RestoreOptions (the Restore tab's and the album queue's: one path)."""

    changed = Signal()

    def __init__(self, settings: Settings, devices: list[DeviceInfo] | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__("Restoration", parent)
        self.settings = settings
        self.devices = devices if devices is not None else list_devices()

        self.scratch_combo = QComboBox(self)
        self.scratch_combo.addItem("Auto-detect", "auto")
        self.scratch_combo.addItem("Off", "off")
        self.scratch_combo.setToolTip("Auto-detect: find scratches and tears and fill them in.\n"
                                      "Off: no automatic detection. A mask you brushed or detected "
                                      "explicitly is always repaired.")
        self.hr_checkbox = QCheckBox("High-resolution mode (HR)", self)
        self.hr_checkbox.setToolTip("Patch-attention restoration for large scratched scans (slower; "
                                    "needs weights with the HR network, e.g. the official ones)")
        self.fading_checkbox = QCheckBox("Correct fading", self)
        self.fading_checkbox.setToolTip(FADING_TIP)
        self.faces_combo = QComboBox(self)
        for text, value in (("Auto", "auto"), ("On", "on"), ("Off", "off")):
            self.faces_combo.addItem(text, value)
        self.faces_note = QLabel(self)  # why faces are unavailable, when they are
        self.faces_note.setWordWrap(True)
        self.faces_note.setStyleSheet("color: palette(mid); font-size: small;")
        self.faces_note.setVisible(False)
        self.faces_unavailable: str | None = None  # why faces cannot run (the details), or None
        if FACES_SUPPORTED:
            self.faces_combo.setToolTip(FACES_TIP)
        else:
            self.faces_combo.setEnabled(False)
            self.faces_combo.setToolTip("Face refinement is not available in this version of the engine")
        self.device_combo = QComboBox(self)
        self.device_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.device_combo.setMinimumContentsLength(12)
        self.device_combo.setToolTip("Where the networks run. Automatic picks a CUDA or Apple GPU when "
                                     "there is one, else the CPU.")
        self.tile_combo = QComboBox(self)
        self.tile_combo.setEditable(True)
        self.tile_combo.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
        self.tile_combo.setToolTip(TILE_TIP)

        self.strength_spin = QSpinBox(self)
        self.strength_spin.setRange(-1, 100)  # -1 shows as "Weights' default"
        self.strength_spin.setSingleStep(10)
        self.strength_spin.setSuffix(" %")
        self.strength_spin.setSpecialValueText("Weights' default")
        self.strength_spin.setToolTip("How much of the restoration to apply outside the repaired scratches: "
                                      "100 % = all of it, 0 % = only the scratches. Lower keeps more of "
                                      "the original detail and grain. The default comes with the weights "
                                      "(official: 100 %; Heirloom's own: chosen per photo from how "
                                      "noisy, blurred and faded it looks).")

        form = QFormLayout(self)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        form.addRow("Repair scratches:", self.scratch_combo)
        form.addRow("", self.hr_checkbox)
        form.addRow("", self.fading_checkbox)
        form.addRow("Refine faces:", self.faces_combo)
        form.addRow("", self.faces_note)
        form.addRow("Strength:", self.strength_spin)
        form.addRow("Device:", self.device_combo)
        form.addRow("Tile size:", self.tile_combo)

        self._writing = False
        self._unlocked = True
        self._load_from_settings()
        self.scratch_combo.currentIndexChanged.connect(self._on_widget_changed)
        self.hr_checkbox.toggled.connect(self._on_widget_changed)
        self.hr_checkbox.toggled.connect(self.refresh_faces)
        self.fading_checkbox.toggled.connect(self._on_widget_changed)
        self.faces_combo.currentIndexChanged.connect(self._on_widget_changed)
        self.device_combo.currentIndexChanged.connect(self._on_widget_changed)
        self.tile_combo.currentIndexChanged.connect(self._on_widget_changed)
        self.strength_spin.valueChanged.connect(self._on_widget_changed)
        self.tile_combo.lineEdit().editingFinished.connect(self._on_widget_changed)
        settings.changed.connect(self._on_setting_changed)

    # ------------------------------------------------------------------ two-way binding

    def _load_from_settings(self) -> None:
        s = self.settings
        for combo, value in ((self.scratch_combo, s.scratch_mode), (self.faces_combo, s.faces)):
            combo.blockSignals(True)
            combo.setCurrentIndex(max(0, combo.findData(value)))
            combo.blockSignals(False)
        self.hr_checkbox.blockSignals(True)
        self.hr_checkbox.setChecked(s.hr)
        self.hr_checkbox.blockSignals(False)
        self.fading_checkbox.blockSignals(True)
        self.fading_checkbox.setChecked(s.correct_fading)
        self.fading_checkbox.blockSignals(False)
        self.strength_spin.blockSignals(True)
        self.strength_spin.setValue(-1 if s.strength is None else s.strength)
        self.strength_spin.blockSignals(False)
        if self.device_combo.currentData() != s.device:
            fill_device_combo(self.device_combo, self.devices, s.device)
        fill_tile_combo(self.tile_combo, s.tile)
        self.refresh_faces()

    @Slot()
    def refresh_faces(self) -> None:
        """Enable "Refine faces" only when the chosen weights (and HR mode) have a face model, else
        say why, next to it and in its tooltip."""
        if not FACES_SUPPORTED:
            return
        why = faces_unavailable(self.settings.weights, self.hr_checkbox.isChecked())
        note, self.faces_unavailable = why if why is not None else ("", None)
        self.faces_combo.setEnabled(why is None and self._unlocked)
        self.faces_combo.setToolTip(self.faces_unavailable or FACES_TIP)
        self.faces_note.setText(note)
        self.faces_note.setToolTip(self.faces_unavailable or "")
        self.faces_note.setVisible(why is not None)

    @Slot()
    def _on_widget_changed(self) -> None:
        s = self.settings
        self._writing = True  # our own writes must not reload the widgets half-way through
        try:
            s.scratch_mode = self.scratch_combo.currentData()
            s.hr = self.hr_checkbox.isChecked()
            s.correct_fading = self.fading_checkbox.isChecked()
            s.faces = self.faces_combo.currentData()
            s.strength = None if self.strength_spin.value() < 0 else self.strength_spin.value()
            s.device = self.device_combo.currentData() or "auto"
            commit_tile_combo(self.tile_combo, s)
        finally:
            self._writing = False
        self.changed.emit()

    @Slot(str)
    def _on_setting_changed(self, key: str) -> None:
        if key == "engine/weights":
            self.refresh_faces()
        if not self._writing and key.startswith(("engine/", "restore/")):
            self._load_from_settings()
            self.changed.emit()

    # ------------------------------------------------------------------ values

    @property
    def scratch_auto(self) -> bool:
        return self.scratch_combo.currentData() == "auto"

    @property
    def hr(self) -> bool:
        return self.hr_checkbox.isChecked()

    def options(self, threshold: float, dilation: int) -> RestoreOptions:
        """The options as shown, with the mask panel's threshold and dilation."""
        kwargs: dict[str, object] = {}
        if FACES_SUPPORTED:  # unavailable: automatic, so the engine records why no face was refined
            kwargs["faces"] = None if self.faces_unavailable else FACE_VALUES[self.faces_combo.currentData()]
        return RestoreOptions(scratch=self.scratch_auto, hr=self.hr, threshold=threshold, mask_dilation=dilation,
                              tile=self.settings.tile, max_memory_gb=self.settings.max_memory_gb,
                              precision=self.settings.precision,
                              strength=None if self.strength_spin.value() < 0 else self.strength_spin.value() / 100,
                              correct_fading=self.fading_checkbox.isChecked(), **kwargs)

    def set_locked(self, locked: bool) -> None:
        """No option changes while a job runs (the running job would not see them anyway)."""
        self._unlocked = not locked
        for widget in (self.scratch_combo, self.hr_checkbox, self.fading_checkbox, self.strength_spin,
                       self.device_combo, self.tile_combo):
            widget.setEnabled(not locked)
        self.faces_combo.setEnabled(FACES_SUPPORTED and not locked and self.faces_unavailable is None)
