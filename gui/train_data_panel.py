"""The Train tab's first two steps: what to teach, and from which photos (with counts and warnings).

Counting reads folder listings and image headers (``inspect_data``): instant for a local folder,
slow for a network share of thousands of scans, so it runs in a worker and the panel says
"Checking…" meanwhile. Edits during a check queue one more check, never a pile of them.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtWidgets import (
    QButtonGroup,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QRadioButton,
    QSizePolicy,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from engine.store.masks import MaskStore
from engine.training.finetune.session import (
    DataSummary,
    DetectorData,
    DomainData,
    MappingData,
    TaskData,
    inspect_data,
)

from .errors import describe_error
from .workers import FunctionTask, TaskRunner

TASKS: dict[str, tuple[str, str]] = {
    "detector": ("Teach the detector",
                 "Learns to find damage like yours from scratch masks you marked (painted or accepted in the "
                 "Restore tab, or mask files); the detector's own unreviewed masks are never used."),
    "domain": ("Adapt to my scans",
               "Tunes the encoder to your scanner, paper and chemistry from a folder of your old scans."),
    "mapping": ("Learn from my clean photos",
                "Learns restoration from your undamaged photos, damaged synthetically for practice."),
}
# The count that must not be zero to train, per task (keys of DataSummary.counts).
MAIN_COUNT = {"detector": "labelled", "domain": "scan_photos", "mapping": "clean_photos"}
COUNT_WORDS = {
    "labelled": "labelled photos", "held_out": "held out to score the result", "photos": "photos",
    "masks": "masks", "unlabelled": "photos without a mask", "scan_photos": "scans", "clean_photos": "clean photos",
    "brushed": "brushed", "accepted": "accepted", "detected_only": "detected-only (not used)",
}
WARN_COLOUR = "#a35200"
ERROR_COLOUR = "#b00020"


def describe_summary(summary: DataSummary) -> str:
    """Counts, then warnings and notes, as rich text for the summary label."""
    counts = " · ".join(f"<b>{value}</b> {COUNT_WORDS.get(key, key.replace('_', ' '))}"
                        for key, value in summary.counts.items())
    lines = [counts] if counts else []
    lines += [f"<span style='color:{WARN_COLOUR}'>⚠ {escape(w)}</span>" for w in summary.warnings]
    lines += [f"<span style='color:gray'>{escape(n)}</span>" for n in summary.notes]
    return "<br>".join(lines)


def reviewed_masks_text(counts: dict[str, int]) -> str:
    """The radio button's label: what will be learned from, and what will not (and why)."""
    return (f"The masks I reviewed in the Restore tab\n({counts['brushed']} brushed, {counts['accepted']} accepted, "
            f"{counts['detected']} detected-only (not used))")


def escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class CheckTask(FunctionTask):
    """``inspect_data`` in a worker; a folder that is not there is said plainly."""

    def describe(self, exc: Exception) -> str:
        if isinstance(exc, ValueError):
            text = str(exc)
            return text[:1].upper() + text[1:] + "."
        return describe_error(exc)


class FolderField(QWidget):
    """A folder path you can type or browse to; ``changed`` fires when editing ends or on Browse."""

    changed = Signal()

    def __init__(self, title: str, placeholder: str = "", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.title = title
        self.edit = QLineEdit(self)
        self.edit.setPlaceholderText(placeholder)
        self.edit.setClearButtonEnabled(True)
        self.button = QPushButton("Browse…", self)
        self.button.clicked.connect(self._browse)
        self.edit.editingFinished.connect(self._on_edited)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.edit, 1)
        layout.addWidget(self.button)
        self._last = ""

    def path(self) -> Path | None:
        text = self.edit.text().strip()
        return Path(text).expanduser() if text else None

    def set_path(self, path: Path | None) -> None:
        self.edit.setText(str(path) if path else "")
        self._on_edited()

    @Slot()
    def _on_edited(self) -> None:
        if self.edit.text() != self._last:  # editingFinished also fires on focus loss without a change
            self._last = self.edit.text()
            self.changed.emit()

    @Slot()
    def _browse(self) -> None:
        start = str(self.path() or "")
        folder = QFileDialog.getExistingDirectory(self, self.title, start)
        if folder:
            self.set_path(Path(folder))


class DataPanel(QWidget):
    """Task choice (three radio buttons, one line each) and the folders that task reads."""

    changed = Signal()  # task or folders changed (before the new counts are known)
    checked = Signal()  # new counts and warnings are shown (``summary`` / ``problem``)

    def __init__(self, masks: MaskStore, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.masks = masks
        self.summary: DataSummary | None = None
        self.problem = ""  # why the data cannot be used (a folder missing, ...), when it cannot
        self._runner = TaskRunner(self)
        self._runner.done.connect(self._on_check_done)
        self._again = False
        self._locked = False
        self._build()
        self.refresh()

    # ------------------------------------------------------------------ construction

    def _build(self) -> None:
        task_group = QGroupBox("1. What to teach", self)
        self.task_buttons = QButtonGroup(self)
        self.task_radios: dict[str, QRadioButton] = {}
        task_box = QVBoxLayout(task_group)
        for key, (title, explanation) in TASKS.items():
            radio = QRadioButton(title, task_group)
            note = QLabel(explanation, task_group)
            note.setWordWrap(True)
            note.setIndent(22)
            note.setStyleSheet("QLabel { color: #555; }")
            self.task_buttons.addButton(radio)
            self.task_radios[key] = radio
            task_box.addWidget(radio)
            task_box.addWidget(note)
        self.task_radios["detector"].setChecked(True)
        self.task_buttons.buttonClicked.connect(self._on_task_clicked)

        data_group = QGroupBox("2. Your photos", self)
        self.pages = QStackedWidget(data_group)
        self.pages.addWidget(self._detector_page())
        self.pages.addWidget(self._domain_page())
        self.pages.addWidget(self._mapping_page())
        self.summary_label = QLabel(data_group)
        self.summary_label.setWordWrap(True)
        self.summary_label.setTextFormat(Qt.TextFormat.RichText)
        self.summary_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        data_box = QVBoxLayout(data_group)
        data_box.addWidget(self.pages)
        data_box.addWidget(self.summary_label)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(task_group)
        layout.addWidget(data_group)

    def _form(self) -> tuple[QWidget, QFormLayout]:
        page = QWidget(self)
        form = QFormLayout(page)
        form.setContentsMargins(0, 0, 0, 0)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        return page, form

    def _field(self, title: str, placeholder: str = "") -> FolderField:
        field = FolderField(title, placeholder, self)
        field.changed.connect(self._on_data_changed)
        return field

    def _detector_page(self) -> QWidget:
        page, form = self._form()
        self.mask_buttons = QButtonGroup(page)
        self.brushed_radio = QRadioButton(reviewed_masks_text({"brushed": 0, "accepted": 0, "detected": 0}), page)
        self.folder_radio = QRadioButton("A folder of mask files (white = damage)", page)
        self.folder_radio.setToolTip("One PNG per photo, named like the photo (photo.jpg -> photo.png); "
                                     "white marks damage")
        for radio in (self.brushed_radio, self.folder_radio):
            self.mask_buttons.addButton(radio)
        self.brushed_radio.setChecked(True)
        self.mask_buttons.buttonClicked.connect(self._on_mask_source_clicked)
        self.images_field = self._field("Folder of your photos")
        self.masks_field = self._field("Folder of masks", "<photo name>.png, white = damage")
        form.addRow(self.brushed_radio)
        form.addRow(self.folder_radio)
        form.addRow("Photos:", self.images_field)
        form.addRow("Masks:", self.masks_field)
        self._detector_form = form
        return page

    def _domain_page(self) -> QWidget:
        page, form = self._form()
        self.scans_field = self._field("Folder of your old scans")
        self.domain_clean_field = self._field("Folder of clean photos", "optional: scikit-image's sample photos")
        form.addRow("Old scans:", self.scans_field)
        form.addRow("Clean photos:", self.domain_clean_field)
        return page

    def _mapping_page(self) -> QWidget:
        page, form = self._form()
        self.clean_field = self._field("Folder of your clean photos")
        form.addRow("Clean photos:", self.clean_field)
        return page

    # ------------------------------------------------------------------ values

    def task(self) -> str:
        return next(key for key, radio in self.task_radios.items() if radio.isChecked())

    def set_task(self, task: str) -> None:
        self.task_radios[task].setChecked(True)
        self._show_page()
        self._on_data_changed()

    def data(self) -> tuple[TaskData | None, str]:
        """The task's data, or None and what is missing."""
        task = self.task()
        if task == "detector":
            if self.brushed_radio.isChecked():
                return DetectorData(self.images_field.path(), None), ""
            if self.images_field.path() is None or self.masks_field.path() is None:
                return None, "Choose the folder of photos and the folder of their masks."
            return DetectorData(self.images_field.path(), self.masks_field.path()), ""
        if task == "domain":
            if self.scans_field.path() is None:
                return None, "Choose the folder of your old scans."
            return DomainData(self.scans_field.path(), self.domain_clean_field.path()), ""
        if self.clean_field.path() is None:
            return None, "Choose the folder of your clean photos."
        return MappingData(self.clean_field.path()), ""

    def set_data(self, data: TaskData) -> None:
        """Show a job's task and folders (a run reopened from an earlier session)."""
        self.task_radios[data.task].setChecked(True)
        if isinstance(data, DetectorData):
            (self.folder_radio if data.masks is not None else self.brushed_radio).setChecked(True)
            self.images_field.edit.setText(str(data.images or ""))
            self.masks_field.edit.setText(str(data.masks or ""))
        elif isinstance(data, DomainData):
            self.scans_field.edit.setText(str(data.scans))
            self.domain_clean_field.edit.setText(str(data.clean or ""))
        else:
            self.clean_field.edit.setText(str(data.clean))
        self._show_page()
        self._sync_mask_widgets()
        self._on_data_changed()

    @property
    def usable(self) -> bool:
        """The last check found something to train on."""
        if self.summary is None or self.problem or self.checking:
            return False
        return self.summary.counts.get(MAIN_COUNT[self.task()], 0) > 0

    @property
    def checking(self) -> bool:
        return self._runner.busy

    def set_locked(self, locked: bool) -> None:
        """A run exists: its task and folders are fixed (New fine-tune unlocks them)."""
        if locked == self._locked:
            return
        self._locked = locked
        widgets = [*self.task_radios.values(), self.brushed_radio, self.folder_radio, self.images_field,
                   self.masks_field, self.scans_field, self.domain_clean_field, self.clean_field]
        for widget in widgets:
            widget.setEnabled(not locked)
        self._sync_mask_widgets()

    def mask_counts(self) -> dict[str, int]:
        """Stored masks by origin: brushed, accepted, detected (only the first two are learned from)."""
        try:
            return self.masks.counts()
        except OSError:
            return {"brushed": 0, "accepted": 0, "detected": 0}

    def brushed_count(self) -> int:
        """Masks fine-tuning may learn from: painted or explicitly accepted by a person."""
        counts = self.mask_counts()
        return counts["brushed"] + counts["accepted"]

    # ------------------------------------------------------------------ checking

    def refresh(self) -> None:
        """Recount the stored masks by origin and check the folders again."""
        self.brushed_radio.setText(reviewed_masks_text(self.mask_counts()))
        self._show_page()
        self._sync_mask_widgets()
        self._on_data_changed()

    @Slot()
    def _on_task_clicked(self) -> None:
        self._show_page()
        self._on_data_changed()

    @Slot()
    def _on_mask_source_clicked(self) -> None:
        self._sync_mask_widgets()
        self._on_data_changed()

    def _sync_mask_widgets(self) -> None:
        """Brushed masks: the photo folder only narrows them down, and there is no mask folder."""
        brushed = self.brushed_radio.isChecked()
        self.masks_field.setEnabled(not brushed and not self._locked)
        label = self._detector_form.labelForField(self.images_field)
        if isinstance(label, QLabel):
            label.setText("Only photos in:" if brushed else "Photos:")
        self.images_field.edit.setPlaceholderText("optional: any folder" if brushed else "your photos")

    def _show_page(self) -> None:
        """Show the task's page, as tall as that page (a stack is as tall as its tallest page)."""
        index = list(TASKS).index(self.task())
        for i in range(self.pages.count()):
            policy = QSizePolicy.Policy.Preferred if i == index else QSizePolicy.Policy.Ignored
            self.pages.widget(i).setSizePolicy(policy, policy)
        self.pages.setCurrentIndex(index)
        self.pages.adjustSize()

    @Slot()
    def _on_data_changed(self) -> None:
        self.changed.emit()
        if self._runner.busy:
            self._again = True
            return
        data, missing = self.data()
        self.summary = None
        if data is None:
            self.problem = missing
            self.summary_label.setText(f"<span style='color:{WARN_COLOUR}'>{escape(missing)}</span>")
            self.checked.emit()
            return
        self.problem = ""
        self.summary_label.setText("Checking the photos…")
        masks = self.masks
        task = CheckTask(lambda _progress: inspect_data(data, masks))
        task.finished.connect(self._on_summary)
        task.failed.connect(self._on_failed)
        self._runner.start(task)

    @Slot(object)
    def _on_summary(self, summary: DataSummary) -> None:
        self.summary, self.problem = summary, ""
        self.summary_label.setText(describe_summary(summary))

    @Slot(str, str)
    def _on_failed(self, message: str, _details: str) -> None:
        self.summary = None
        self.problem = message
        self.summary_label.setText(f"<span style='color:{ERROR_COLOUR}'>{escape(self.problem)}</span>")

    def show_loaded(self, summary: DataSummary) -> None:
        """What the fine-tune actually loaded (photos it could not read are counted out)."""
        self.summary = summary
        self.summary_label.setText(describe_summary(summary))

    @Slot(str)
    def _on_check_done(self, _outcome: str) -> None:
        if self._again:
            self._again = False
            self._on_data_changed()
            return
        self.checked.emit()

    def shutdown(self) -> None:
        self._runner.stop()
