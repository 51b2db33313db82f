"""The Models & settings tab: which weights restore photos, getting the official ones, device and memory.

Which weight sets exist and what they hold comes from the engine's catalogue (engine.store.catalogue),
the same list ``python main.py models`` prints; this tab only lays it out. Checking weights means
reading every file (hundreds of megabytes for the official set), so the listing runs in a worker
like imports and downloads (engine.store.download.fetch_official, the CLI's download too); the tab never
blocks the window. Every choice here is a :class:`gui.settings.Settings` property, shared with the
Restore tab and the status bar.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Mapping

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtWidgets import (
    QButtonGroup,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QRadioButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from engine.device import PRECISION_LABELS, DeviceInfo, describe_runtime, list_devices
from engine.progress import EtaEstimator, Progress, format_seconds
from engine.store.catalogue import (
    WeightsEntry,
    checked_weights,
    forget_checks,
    weights_title,
)
from engine.store.download import OFFICIAL_RELEASE_URLS, fetch_official
from engine.store.weights import (
    DEFAULT,
    OFFICIAL,
    PROFILE,
    PROFILE_PREFIX,
    ImportedWeights,
    choice_kind,
    import_official,
)

from .errors import ErrorBanner
from .restore_options import (
    TILE_TIP,
    commit_tile_combo,
    device_label,
    fill_device_combo,
    fill_tile_combo,
)
from .settings import Settings
from .workers import FINISHED, FunctionTask, RestorerCache, TaskRunner

PROGRESS_STEPS = 1000


class ModelsTab(QWidget):
    """Weights in use, the weight sets found, import / download, device, tile, memory, save folder."""

    refreshed = Signal()  # the weights table was rebuilt
    job_done = Signal(str, str)  # ("import" | "download", "finished" | "failed" | "cancelled")
    status_message = Signal(str)

    def __init__(self, settings: Settings, restorers: RestorerCache, download_urls: Mapping[str, str] | None = None,
                 devices: list[DeviceInfo] | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.settings, self.restorers = settings, restorers
        self.download_urls = {**OFFICIAL_RELEASE_URLS, **(download_urls or {})}  # archive -> address
        self.devices = devices if devices is not None else list_devices()
        self.rows: list[WeightsEntry] = []
        self._installed_by_job: list[ImportedWeights] = []  # archives the running download installed so far
        self._list_runner = TaskRunner(self)
        self._list_runner.done.connect(self._on_list_done)
        self._refresh_again = False
        self._job_runner = TaskRunner(self)
        self._job_runner.done.connect(self._on_job_done)
        self._job_kind = ""
        self._eta = EtaEstimator()
        self._build()
        self._set_job_widgets(False)
        self._load_from_settings()
        settings.changed.connect(self._on_setting_changed)
        self.refresh()

    # ------------------------------------------------------------------ construction

    def _build(self) -> None:
        layout = QHBoxLayout(self)
        layout.setContentsMargins(10, 10, 10, 10)
        left, right = QVBoxLayout(), QVBoxLayout()
        left.addWidget(self._build_weights_group())
        left.addWidget(self._build_official_group())
        left.addStretch(1)
        right.addWidget(self._build_device_group())
        right.addWidget(self._build_saving_group())
        right.addStretch(1)
        layout.addLayout(left, 3)
        layout.addLayout(right, 2)

    def _build_weights_group(self) -> QGroupBox:
        group = QGroupBox("Weights used for restoring", self)
        self.weights_buttons = QButtonGroup(group)
        self.default_radio = QRadioButton("Heirloom default (ships with the app)", group)
        self.official_radio = QRadioButton("Official weights (imported or downloaded below)", group)
        self.profile_radio = QRadioButton("Fine-tuned profile:", group)
        self.profile_combo = QComboBox(group)
        self.profile_combo.setToolTip("Weights fine-tuned on your own photos (python main.py finetune …)")
        self.custom_radio = QRadioButton("Weights file or folder:", group)
        for button in (self.default_radio, self.official_radio, self.profile_radio, self.custom_radio):
            self.weights_buttons.addButton(button)
        self.custom_edit = QLineEdit(group)
        self.custom_edit.setPlaceholderText("global_checkpoints.zip, its unzipped folder, or a folder of .safetensors")
        self.browse_zip_button = QPushButton("Zip…", group)
        self.browse_zip_button.setToolTip("Choose an official global_checkpoints.zip")
        self.browse_folder_button = QPushButton("Folder…", group)
        self.browse_folder_button.setToolTip("Choose a folder of weights")
        self.weights_status = QLabel(group)
        self.weights_status.setWordWrap(True)
        self.weights_status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        self.table = QTableWidget(0, 4, group)
        self.table.setHorizontalHeaderLabels(["Weights", "Status", "Can do", "Location"])
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
        self.table.setWordWrap(False)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(3, QHeaderView.ResizeMode.Stretch)
        self.table.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        self.table.itemDoubleClicked.connect(self.use_selected)
        self.use_button = QPushButton("Use selected", group)
        self.use_button.setToolTip("Restore with the weights selected in the list (or double-click a row)")
        self.use_button.clicked.connect(self.use_selected)
        self.refresh_button = QPushButton("Check again", group)
        self.refresh_button.setToolTip("Read and check every weights file again")
        self.refresh_button.clicked.connect(self.check_again)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(self.use_button)
        buttons.addWidget(self.refresh_button)

        grid = QGridLayout(group)
        grid.addWidget(self.default_radio, 0, 0, 1, 4)
        grid.addWidget(self.official_radio, 1, 0, 1, 4)
        grid.addWidget(self.profile_radio, 2, 0)
        grid.addWidget(self.profile_combo, 2, 1, 1, 3)
        grid.addWidget(self.custom_radio, 3, 0)
        grid.addWidget(self.custom_edit, 3, 1)
        grid.addWidget(self.browse_zip_button, 3, 2)
        grid.addWidget(self.browse_folder_button, 3, 3)
        grid.addWidget(self.weights_status, 4, 0, 1, 4)
        grid.addWidget(self.table, 5, 0, 1, 4)
        grid.addLayout(buttons, 6, 0, 1, 4)
        grid.setColumnStretch(1, 1)
        self.profile_combo.activated.connect(self._on_profile_chosen)

        self.weights_buttons.buttonClicked.connect(self._on_weights_widget_changed)
        self.custom_edit.editingFinished.connect(self._on_custom_edited)
        self.browse_zip_button.clicked.connect(self._browse_zip)
        self.browse_folder_button.clicked.connect(self._browse_folder)
        return group

    def _build_official_group(self) -> QGroupBox:
        group = QGroupBox("Get the official weights", self)
        intro = QLabel("The weights published with Microsoft's “Bringing Old Photos Back to Life” restore "
                       "scratches and large scans (HR) and refine faces. Download them (two large files; an "
                       "interrupted download resumes), or import global_checkpoints.zip and "
                       "face_checkpoints.zip you already have.", group)
        intro.setWordWrap(True)
        self.download_button = QPushButton("Download official weights", group)
        self.download_button.setToolTip("\n".join(self.download_urls.values()))
        self.download_button.clicked.connect(self.start_download)
        self.import_button = QPushButton("Import official zip…", group)
        self.import_button.clicked.connect(self.import_dialog)
        self.cancel_button = QPushButton("Cancel", group)
        self.cancel_button.clicked.connect(self.cancel)
        self.progress_bar = QProgressBar(group)
        self.progress_bar.setRange(0, PROGRESS_STEPS)
        self.progress_bar.setValue(0)
        self.progress_bar.setTextVisible(True)
        self.progress_bar.setFormat("")
        self.error_label = ErrorBanner(group)
        self.job_status = QLabel(group)
        self.job_status.setWordWrap(True)
        buttons = QHBoxLayout()
        buttons.addWidget(self.download_button)
        buttons.addWidget(self.import_button)
        buttons.addStretch(1)
        row = QHBoxLayout()
        row.addWidget(self.progress_bar, 1)
        row.addWidget(self.cancel_button)
        box = QVBoxLayout(group)
        box.addWidget(intro)
        box.addLayout(buttons)
        box.addLayout(row)
        box.addWidget(self.job_status)
        box.addWidget(self.error_label)
        return group

    def _build_device_group(self) -> QGroupBox:
        group = QGroupBox("Device and memory", self)
        self.device_combo = QComboBox(group)
        self.device_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.device_combo.setMinimumContentsLength(20)
        self.device_combo.setToolTip("Where the networks run; memory is the total and what is free now")
        self.tile_combo = QComboBox(group)
        self.tile_combo.setEditable(True)
        self.tile_combo.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
        self.tile_combo.setToolTip(TILE_TIP)
        self.memory_spin = QDoubleSpinBox(group)
        self.memory_spin.setRange(0.0, 1024.0)
        self.memory_spin.setDecimals(1)
        self.memory_spin.setSingleStep(0.5)
        self.memory_spin.setSuffix(" GB")
        self.memory_spin.setSpecialValueText("Automatic")
        self.memory_spin.setToolTip("Most memory Heirloom may use while restoring (on the CPU: the whole app, "
                                    "photo included; large photos are then restored in smaller tiles). "
                                    "Automatic: a safe share of what is free.")
        self.precision_combo = QComboBox(group)
        for value, label in PRECISION_LABELS.items():
            self.precision_combo.addItem(label, value)
        self.precision_combo.setToolTip("How the networks compute. Exact float32 gives the reference result; "
                                        "reduced precisions are faster only where the hardware computes them.")
        self.runtime_label = QLabel(group)
        self.runtime_label.setWordWrap(True)
        self.runtime_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        found = QLabel("Found on this computer:<br>" + "<br>".join(
            f"<b>{d.name}</b>: {device_label(d)}" for d in self.devices), group)
        found.setWordWrap(True)
        form = QFormLayout(group)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        form.addRow("Device:", self.device_combo)
        form.addRow("", found)
        form.addRow("Tile size:", self.tile_combo)
        form.addRow("Memory limit:", self.memory_spin)
        form.addRow("Precision:", self.precision_combo)
        form.addRow("In use:", self.runtime_label)
        self.device_combo.currentIndexChanged.connect(self._on_device_widget)
        self.precision_combo.currentIndexChanged.connect(self._on_precision_widget)
        self.tile_combo.currentIndexChanged.connect(self._on_tile_widget)
        self.tile_combo.lineEdit().editingFinished.connect(self._on_tile_widget)
        self.memory_spin.valueChanged.connect(self._on_memory_widget)
        return group

    def _build_saving_group(self) -> QGroupBox:
        group = QGroupBox("Saving from the Restore tab", self)
        self.output_edit = QLineEdit(group)
        self.output_edit.setReadOnly(True)
        self.output_edit.setPlaceholderText("Next to the original photo")
        self.output_button = QPushButton("Choose…", group)
        self.output_button.clicked.connect(self._browse_output)
        self.output_reset_button = QPushButton("Next to original", group)
        self.output_reset_button.clicked.connect(self._reset_output)
        note = QLabel("Restored photos are saved as new files; an original is never replaced. "
                      "The album queue has its own output folder, in its tab.", group)
        note.setWordWrap(True)
        grid = QGridLayout(group)
        grid.addWidget(QLabel("Suggest saving in:", group), 0, 0, 1, 3)
        grid.addWidget(self.output_edit, 1, 0, 1, 3)
        grid.addWidget(self.output_button, 2, 1)
        grid.addWidget(self.output_reset_button, 2, 2)
        grid.addWidget(note, 3, 0, 1, 3)
        grid.setColumnStretch(0, 1)
        return group

    # ------------------------------------------------------------------ settings binding

    def _load_from_settings(self) -> None:
        s = self.settings
        choice = s.weights
        radio = {DEFAULT: self.default_radio, OFFICIAL: self.official_radio,
                 PROFILE: self.profile_radio}.get(choice_kind(choice), self.custom_radio)
        if radio is self.profile_radio:
            self._fill_profiles()
        radio.setChecked(True)
        if radio is self.custom_radio:
            self.custom_edit.setText(choice)
        if self.device_combo.currentData() != s.device:
            fill_device_combo(self.device_combo, self.devices, s.device)
        fill_tile_combo(self.tile_combo, s.tile)
        self.memory_spin.blockSignals(True)
        self.memory_spin.setValue(s.max_memory_gb or 0.0)
        self.memory_spin.blockSignals(False)
        self.precision_combo.blockSignals(True)
        self.precision_combo.setCurrentIndex(max(0, self.precision_combo.findData(s.precision)))
        self.precision_combo.blockSignals(False)
        self.runtime_label.setText(describe_runtime(s.device, s.precision))
        self.output_edit.setText(str(s.output_folder) if s.output_folder else "")
        self._update_weights_status()

    @Slot(str)
    def _on_setting_changed(self, key: str) -> None:
        self._load_from_settings()
        if key == "engine/weights":
            self.refresh()

    def set_weights(self, choice: str) -> None:
        """Use ``choice`` (default / official / a path) from now on."""
        self.settings.weights = choice

    def _fill_profiles(self) -> None:
        """The profile combo lists the profiles found (and the chosen one, even if it is gone)."""
        names = [r.choice for r in self.rows if r.kind == PROFILE]
        if choice_kind(self.settings.weights) == PROFILE and self.settings.weights not in names:
            names.append(self.settings.weights)  # before the listing that will hold it has come back
        self.profile_combo.blockSignals(True)
        self.profile_combo.clear()
        for choice in names:
            self.profile_combo.addItem(choice.removeprefix(PROFILE_PREFIX), choice)
        if self.settings.weights in names:
            self.profile_combo.setCurrentIndex(names.index(self.settings.weights))
        self.profile_combo.blockSignals(False)
        self.profile_radio.setEnabled(bool(names))
        self.profile_combo.setEnabled(bool(names))
        if not names:
            self.profile_combo.addItem("none yet: fine-tuning makes them")

    @Slot()
    def _on_profile_chosen(self) -> None:
        if self.profile_combo.currentData():
            self.profile_radio.setChecked(True)
            self.set_weights(self.profile_combo.currentData())

    @Slot()
    def use_selected(self) -> None:
        """Use the weight set of the selected table row."""
        row = self.table.currentRow()
        if 0 <= row < len(self.rows):
            self.set_weights(self.rows[row].choice)

    @Slot()
    def _on_weights_widget_changed(self) -> None:
        if self.default_radio.isChecked():
            self.set_weights(DEFAULT)
        elif self.official_radio.isChecked():
            self.set_weights(OFFICIAL)
        elif self.profile_radio.isChecked():
            self._on_profile_chosen()
        elif self.custom_edit.text().strip():
            self.set_weights(self.custom_edit.text().strip())
        else:
            self.custom_edit.setFocus()

    @Slot()
    def _on_custom_edited(self) -> None:
        if self.custom_edit.text().strip():
            self.custom_radio.setChecked(True)
            self.set_weights(self.custom_edit.text().strip())

    def _browse_zip(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Choose weights zip", "", "Zip files (*.zip);;All files (*)")
        if path:
            self.custom_edit.setText(path)
            self._on_custom_edited()

    def _browse_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Choose weights folder")
        if path:
            self.custom_edit.setText(path)
            self._on_custom_edited()

    @Slot()
    def _on_precision_widget(self) -> None:
        self.settings.precision = self.precision_combo.currentData() or "fp32"

    def _on_device_widget(self) -> None:
        self.settings.device = self.device_combo.currentData() or "auto"

    @Slot()
    def _on_tile_widget(self) -> None:
        commit_tile_combo(self.tile_combo, self.settings)

    @Slot(float)
    def _on_memory_widget(self, value: float) -> None:
        self.settings.max_memory_gb = value or None

    def _browse_output(self) -> None:
        start = str(self.settings.output_folder or self.settings.last_save_folder or "")
        path = QFileDialog.getExistingDirectory(self, "Save restored photos to", start)
        if path:
            self.settings.output_folder = Path(path)

    def _reset_output(self) -> None:
        self.settings.output_folder = None

    # ------------------------------------------------------------------ weights listing

    def refresh(self) -> None:
        """List every weight set in the background, checking those whose files changed (the table
        fills in when done)."""
        if self._list_runner.busy:
            self._refresh_again = True
            return
        in_use = self.settings.weights
        task = FunctionTask(lambda _progress: checked_weights(extra=(in_use,)))
        task.finished.connect(self._on_rows)
        task.failed.connect(self._on_list_failed)
        self.refresh_button.setEnabled(False)
        self.weights_status.setText("Checking the weights…")
        self._list_runner.start(task)

    @Slot()
    def check_again(self) -> None:
        """Read and check every weights file again, changed or not (“Check again”)."""
        forget_checks()
        self.refresh()

    @property
    def refreshing(self) -> bool:
        return self._list_runner.busy

    @Slot(object)
    def _on_rows(self, rows: list[WeightsEntry]) -> None:
        self.rows = rows
        self.table.setRowCount(len(rows))
        in_use = self.settings.weights
        for r, row in enumerate(rows):
            title = row.title + ("  ✓ in use" if row.choice == in_use else "")
            for c, text in enumerate((title, row.status, row.contents, str(row.location))):
                item = QTableWidgetItem(text)
                item.setToolTip(row.detail if c in (1, 2) else text)
                self.table.setItem(r, c, item)
        self._fit_table()
        self._fill_profiles()
        self._update_weights_status()

    def _fit_table(self) -> None:
        """As tall as its rows (three at most are listed), so the groups below stay in view."""
        height = self.table.horizontalHeader().height() + 2 * self.table.frameWidth()
        height += sum(self.table.rowHeight(r) for r in range(self.table.rowCount()))
        self.table.setFixedHeight(max(height, self.table.horizontalHeader().height() + 60))

    @Slot(str, str)
    def _on_list_failed(self, message: str, _details: str) -> None:
        self.weights_status.setText(message)

    @Slot(str)
    def _on_list_done(self, _outcome: str) -> None:
        self.refresh_button.setEnabled(True)
        if self._refresh_again:
            self._refresh_again = False
            self.refresh()
        else:
            self.refreshed.emit()

    def _update_weights_status(self) -> None:
        choice = self.settings.weights
        row = next((r for r in self.rows if r.choice == choice), None)
        name = weights_title(choice)
        if row is None:
            text = f"In use: {name}."
        elif row.ok:
            text = f"In use: {name} — complete; can do {row.contents}."
        elif not row.installed:
            text = (f"In use: {name} — not installed. Download or import the official weights below, "
                    "or choose another set.")
        else:
            text = f"In use: {name} — has a problem: {row.detail}"
        self.weights_status.setText(text)

    # ------------------------------------------------------------------ import / download

    @property
    def busy(self) -> bool:
        return self._job_runner.busy

    def _set_job_widgets(self, running: bool) -> None:
        """The progress bar and Cancel are shown only while an import or download runs."""
        self.download_button.setEnabled(not running)
        self.import_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)
        self.progress_bar.setVisible(running)
        self.cancel_button.setVisible(running)

    def import_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Import official weights", "",
                                              "Official zips (*.zip);;All files (*)")
        if path:
            self.start_import(Path(path))

    def start_import(self, archive: Path) -> bool:
        """Validate and install an official zip in the background."""
        task = FunctionTask(partial(ModelsTab._import, archive))
        self.progress_bar.setRange(0, 0)  # busy indicator: validation reports no fractions
        return self._start_job("import", task, f"Checking and importing {archive.name}…")

    @staticmethod
    def _import(archive: Path, progress: Progress) -> ImportedWeights:
        progress.report(0.0, "checking")
        return import_official(archive)

    def start_download(self) -> bool:
        """Download (resuming partial downloads) and install every official archive, global and face
        weights, through the engine's one download path."""
        urls, installed = dict(self.download_urls), []
        task = FunctionTask(lambda progress: fetch_official(progress, urls=urls, on_imported=installed.append))
        self.progress_bar.setRange(0, PROGRESS_STEPS)
        if not self._start_job("download", task, "Connecting…"):
            return False
        self._installed_by_job = installed  # appended to by the worker, read here once it has ended
        return True

    def _start_job(self, kind: str, task: FunctionTask, text: str) -> bool:
        if self.busy:
            return False
        task.progress.connect(self._on_job_progress)
        task.finished.connect(self._on_job_finished)
        task.failed.connect(self._on_job_failed)
        task.cancelled.connect(self._on_job_cancelled)
        self._job_kind = kind
        self._installed_by_job = []
        self._eta = EtaEstimator()
        self.error_label.clear()
        self.progress_bar.setValue(0)
        self.progress_bar.setFormat(text)
        self.job_status.setText(text)
        self._set_job_widgets(True)
        return self._job_runner.start(task)

    @Slot()
    def cancel(self) -> None:
        if self._job_runner.cancel():
            self.cancel_button.setEnabled(False)
            self.job_status.setText("Cancelling…")

    @Slot(float, str)
    def _on_job_progress(self, fraction: float, message: str) -> None:
        if self.progress_bar.maximum() == 0:
            self.job_status.setText(message.capitalize() + "…")
            return
        self.progress_bar.setValue(int(round(fraction * PROGRESS_STEPS)))
        eta = format_seconds(self._eta.remaining(fraction))
        self.progress_bar.setFormat(f"{message} — {fraction * 100:.0f}% — ETA {eta}")
        self.job_status.setText(message[:1].upper() + message[1:])

    @Slot(object)
    def _on_job_finished(self, imported: ImportedWeights) -> None:
        self.restorers.clear()  # networks built from older files must not be reused
        self.progress_bar.setRange(0, PROGRESS_STEPS)
        self.progress_bar.setValue(PROGRESS_STEPS)
        self.progress_bar.setFormat("Installed")
        if self.settings.weights != OFFICIAL:
            current = next((r for r in self.rows if r.choice == self.settings.weights), None)
            if current is None or not current.ok:
                self.settings.weights = OFFICIAL  # what the user evidently wants to use
        in_use = self.settings.weights == OFFICIAL
        self.job_status.setText(f"The official {imported.describe()} are installed in {imported.folder} and "
                                f"{'are in use' if in_use else 'can be chosen above'}.")
        self.status_message.emit("Official weights installed.")

    def _installed_before_stop(self) -> str:
        """What a download that failed or was cancelled had installed already (“” when nothing)."""
        if not self._installed_by_job:
            return ""
        return f"the official {' and '.join(i.describe() for i in self._installed_by_job)} were installed"

    @Slot(str, str)
    def _on_job_failed(self, message: str, details: str) -> None:
        self.progress_bar.setRange(0, PROGRESS_STEPS)
        self.progress_bar.setValue(0)
        self.progress_bar.setFormat("Failed")
        kept = self._installed_before_stop()
        self.job_status.setText(f"{kept[:1].upper()}{kept[1:]} before the download stopped." if kept else "")
        self.error_label.show_message(message, details)

    @Slot()
    def _on_job_cancelled(self) -> None:
        self.progress_bar.setRange(0, PROGRESS_STEPS)
        self.progress_bar.setFormat("Cancelled")
        what = "Download" if self._job_kind == "download" else "Import"
        kept = self._installed_before_stop()
        installed = f"{kept}, nothing more" if kept else "nothing was installed"
        more = " Download again to resume where it stopped." if self._job_kind == "download" else ""
        self.job_status.setText(f"{what} cancelled; {installed}.{more}")

    @Slot(str)
    def _on_job_done(self, outcome: str) -> None:
        kind, self._job_kind = self._job_kind, ""
        installed_some, self._installed_by_job = bool(self._installed_by_job), []
        self._set_job_widgets(False)
        if installed_some and outcome != FINISHED:
            self.restorers.clear()  # as after a finished one: networks built from older files must go
        if outcome == FINISHED or installed_some:
            self.refresh()
        self.job_done.emit(kind, outcome)

    def shutdown(self) -> None:
        self._job_runner.stop()
        self._list_runner.stop()
