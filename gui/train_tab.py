"""The Train tab: fine-tune the weights on the user's own photos, watch it learn, keep it as a profile.

Left, the choices (what to teach and from which photos, with counts and warnings; base weights,
device and budget); right, Start / Pause / Resume / Cancel with progress and ETA, a live loss chart,
before/after previews of held-out photos, and *Save as profile*.

One fine-tune at a time lives in the tab's work folder (``train_worker.work_dir``). Pause and
closing the window stop after the current step with a checkpoint; the next time the tab opens it
finds the run (``load_job``) with its chart and offers Resume, or Save as it is.

Saving scores the held-out photos first (:mod:`engine.training.verdict`): a fine-tune that made the
headline score worse is *not* saved unless the person presses *Save anyway* after reading why, so
the better weights (the base) stay in use by default; a held-out set too small to judge is said too. While it trains,
the device is the fine-tune's: ``running_changed`` lets the main window hold the album queue and
the Restore tab, and ``set_device_reserved`` tells this tab when they have it.
"""

from __future__ import annotations

import dataclasses
import shutil

import torch
from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtWidgets import (
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from engine.device import DeviceError, DeviceInfo, choose_device, list_devices
from engine.progress import EtaEstimator, format_seconds
from engine.store.catalogue import weights_title
from engine.store.masks import MaskStore
from engine.store.profiles import PREFIX as PROFILE_PREFIX
from engine.store.profiles import Profile, ProfileError, profiles_dir, validate_name
from engine.training.finetune.session import (
    DataSummary,
    FinetuneJob,
    FinetuneSession,
    FinetuneSettings,
    load_job,
)
from engine.training.finetune.tasks import DetectorTask, DomainTask, MappingTask
from engine.training.metrics_log import read_metrics
from engine.training.verdict import Verdict, judge

from .errors import ErrorBanner
from .loss_chart import LossChart
from .preview_strip import PreviewStrip
from .settings import Settings
from .train_data_panel import DataPanel
from .train_options import TrainOptions
from .train_worker import (
    PREVIEW_COUNT,
    PREVIEW_EVERY,
    PREVIEW_SECONDS,
    ProfileTask,
    TrainTask,
    describe_training_error,
    work_dir,
)
from .workers import CANCELLED, FAILED, TaskRunner

PROGRESS_STEPS = 1000
LEFT_WIDTH = 430
LOSS_KEYS = {cls.name: cls.loss_keys for cls in (DetectorTask, DomainTask, MappingTask)}
WARN_STYLE = "QLabel { color: #a35200; }"
ERROR_STYLE = "QLabel { color: #b00020; }"
NO_RUN, RUNNING, PAUSED, DONE = "none", "running", "paused", "finished"


class SaveOutcome:
    """What a save attempt did: the profile (None when a worse result was kept back) and the verdict."""

    def __init__(self, verdict: Verdict, profile: Profile | None = None) -> None:
        self.verdict, self.profile = verdict, profile


def duration(seconds: float) -> str:
    """“42 s”, “12:05”, “1:02:03”: training time as the status line says it."""
    return f"{seconds:.0f} s" if seconds < 59.5 else format_seconds(seconds)


class TrainTab(QWidget):
    """Choose, train (in a worker), watch, save as a profile."""

    running_changed = Signal(bool)  # the tab uses the device (training or saving) / released it
    run_done = Signal(str)  # "finished" / "paused" / "cancelled" / "failed", once the thread has ended
    stepped = Signal(int)  # a training step's metrics are shown (its number)
    profile_saved = Signal(str)  # the new profile's weights choice, "profile:NAME"
    status_message = Signal(str)

    def __init__(self, settings: Settings, masks: MaskStore, devices: list[DeviceInfo] | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.settings, self.masks = settings, masks
        self.devices = devices if devices is not None else list_devices()
        # Optimisation settings of new runs (tests use small crops); a reopened run keeps its own.
        self.finetune_settings = FinetuneSettings()
        self.preview_every, self.preview_seconds, self.preview_count = PREVIEW_EVERY, PREVIEW_SECONDS, PREVIEW_COUNT
        self.session: FinetuneSession | None = None
        self.job: FinetuneJob | None = None  # the run in the work folder (None: no run yet)
        self.run_state = NO_RUN  # none | running | paused | finished | cancelled | failed
        self.step, self.seconds = 0, 0.0
        self.saved_as = ""  # the profile this run was last saved as (since its last step)
        self._reserved = ""  # why the device is not ours (the Restore tab or the queue has it)
        self._job_kind = ""  # "train" or "save" while the runner works
        self.held_out: int | None = None  # photos held out of this run (from its data summary)
        self._eta: EtaEstimator | None = None
        self._eta_start = 0.0
        self.runner = TaskRunner(self)
        self.runner.busy_changed.connect(self._on_busy_changed)
        self.runner.done.connect(self._on_runner_done)
        self._build()
        self.options.fill_bases(self.settings.weights, self.settings.weights)
        self._restore_previous()
        self._update_actions()

    # ------------------------------------------------------------------ construction

    def _build(self) -> None:
        self.data_panel = DataPanel(self.masks, self)
        self.data_panel.changed.connect(self._update_actions)
        self.data_panel.checked.connect(self._update_actions)
        left = QWidget(self)
        left_box = QVBoxLayout(left)
        left_box.setContentsMargins(0, 0, 6, 0)
        left_box.addWidget(self.data_panel)
        self.options = TrainOptions(self.devices, self.settings.device, self)
        self.options.changed.connect(self._update_actions)
        left_box.addWidget(self.options)
        left_box.addStretch(1)
        scroll = QScrollArea(self)
        scroll.setWidget(left)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setFixedWidth(LEFT_WIDTH)

        self.start_button = self._button("Start", "Start a new fine-tune with the choices on the left", self.start)
        self.start_button.setStyleSheet("QPushButton { font-weight: bold; padding: 4px 18px; }")
        self.pause_button = self._button("Pause", "Stop after the current step and keep a checkpoint", self.pause)
        self.resume_button = self._button("Resume", "Continue from the checkpoint (also after closing Heirloom)",
                                          self.resume)
        self.cancel_button = self._button("Cancel", "Stop now (what was trained is kept until New fine-tune)",
                                          self.cancel)
        self.new_button = self._button("New fine-tune…", "Discard this run to choose another task, photos or base",
                                       self._on_new_clicked)
        self.progress_bar = QProgressBar(self)
        self.progress_bar.setRange(0, PROGRESS_STEPS)
        self.progress_bar.setValue(0)
        self.progress_bar.setTextVisible(True)
        self.progress_bar.setFormat("")
        controls = QHBoxLayout()
        for button in (self.start_button, self.pause_button, self.resume_button, self.cancel_button):
            controls.addWidget(button)
        controls.addWidget(self.progress_bar, 1)
        controls.addWidget(self.new_button)

        self.status_label = QLabel(self)
        self.status_label.setWordWrap(True)
        # Two lines always: a wrapped label in this layout would otherwise get the height of one.
        self.status_label.setMinimumHeight(2 * self.status_label.fontMetrics().lineSpacing() + 4)
        self.status_label.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
        self.error_label = ErrorBanner(self)
        self.chart = LossChart(self)
        self.previews = PreviewStrip(self)

        right = QVBoxLayout()
        right.addLayout(controls)
        right.addWidget(self.status_label)
        right.addWidget(self.error_label)
        right.addWidget(self.chart, 1)
        right.addWidget(self.previews)
        right.addWidget(self._build_save_group())

        layout = QHBoxLayout(self)
        layout.setContentsMargins(8, 8, 8, 8)
        layout.addWidget(scroll)
        layout.addLayout(right, 1)

    def _button(self, text: str, tip: str, slot) -> QPushButton:
        button = QPushButton(text, self)
        button.setToolTip(tip)
        button.clicked.connect(slot)
        return button

    def _build_save_group(self) -> QGroupBox:
        group = QGroupBox("Keep the result", self)
        self.name_edit = QLineEdit(group)
        self.name_edit.setPlaceholderText("profile name, e.g. aunt-ruth-album")
        self.name_edit.setMaxLength(64)
        self.name_edit.returnPressed.connect(self._on_save_clicked)
        self.save_button = QPushButton("Save as profile", group)
        self.save_button.setToolTip("Keep the weights as they are now as a named profile, to restore with")
        self.save_button.clicked.connect(self._on_save_clicked)
        self.use_button = QPushButton("Restore with it", group)
        self.use_button.setToolTip("Use the saved profile for the Restore tab and the album queue")
        self.use_button.clicked.connect(self.use_saved_profile)
        self.use_button.setVisible(False)
        self.keep_worse_button = QPushButton("Save anyway", group)
        self.keep_worse_button.setToolTip("Save the fine-tuned weights although they scored worse than the base")
        self.keep_worse_button.clicked.connect(self._on_keep_worse_clicked)
        self.keep_worse_button.setVisible(False)
        self.save_message = QLabel(group)
        self.save_message.setWordWrap(True)
        self.save_message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        row = QHBoxLayout()
        row.addWidget(QLabel("Save as:", group))
        row.addWidget(self.name_edit, 1)
        row.addWidget(self.save_button)
        row.addWidget(self.use_button)
        row.addWidget(self.keep_worse_button)
        box = QVBoxLayout(group)
        box.addLayout(row)
        box.addWidget(self.save_message)
        return group

    # ------------------------------------------------------------------ state

    @property
    def busy(self) -> bool:
        return self.runner.busy

    @property
    def training(self) -> bool:
        return self.busy and self._job_kind == "train"

    @property
    def pausing(self) -> bool:
        task = self.runner.task
        return isinstance(task, TrainTask) and task.is_paused

    @property
    def has_run(self) -> bool:
        return self.job is not None

    def can_resume(self) -> bool:
        """A stopped run whose budget (as set now) is not spent yet."""
        if not self.has_run or self.busy or self.run_state == RUNNING or self._reserved:
            return False
        return not self.options.budget().reached(self.step, self.seconds)

    def can_save(self) -> bool:
        return self.has_run and not self.busy and self.run_state in (PAUSED, DONE) and self.step > 0

    def set_device_reserved(self, reason: str) -> None:
        """The Restore tab or the album queue is using the device: no training starts meanwhile."""
        self._reserved = reason
        self._update_actions()

    def _update_actions(self) -> None:
        busy, training = self.busy, self.training
        free = not busy and not self._reserved
        task = self.runner.task
        stopping = training and task is not None and (task.is_cancelled or self.pausing)
        self.start_button.setEnabled(free and not self.has_run and self.data_panel.usable and not self.options.problem)
        self.pause_button.setEnabled(training and not stopping)
        self.resume_button.setEnabled(free and self.can_resume())
        self.cancel_button.setEnabled(training and task is not None and not task.is_cancelled)
        self.new_button.setEnabled(not busy and self.has_run)
        self.save_button.setEnabled(self.can_save())
        self.name_edit.setEnabled(self.can_save())
        self.data_panel.set_locked(busy or self.has_run)
        self.options.set_locked(busy, self.has_run)
        self.options.min_steps = self.step + 1
        reason = self._reserved or ("A fine-tune is already here: Resume it, or New fine-tune to discard it"
                                    if self.has_run else self.data_panel.problem or self.options.problem)
        self.start_button.setToolTip(reason or "Start a new fine-tune with the choices on the left")
        self.resume_button.setToolTip(self._reserved or "Continue from the checkpoint (also after closing Heirloom)")

    def _set_status(self, text: str) -> None:
        self.status_label.setText(text)
        self.status_message.emit(text)

    def _describe_state(self) -> str:
        """What the run is at, and what can be done next."""
        if not self.has_run:
            return "Choose what to teach and the photos, then Start. Training can be paused and resumed any time."
        where = f"step {self.step}" + (f" of {self.job.budget.steps}" if self.job.budget.steps is not None else "")
        trained = f"{duration(self.seconds)} of training"
        if self.run_state == DONE:
            return (f"Finished: {where}, {trained}. Save it as a profile below; raise the budget and Resume to "
                    "train further.")
        if self.run_state == PAUSED:
            return (f"Paused at {where} ({trained}); the checkpoint is kept. Resume continues, also after "
                    "closing Heirloom; Save keeps the weights as they are now.")
        if self.run_state == CANCELLED:
            return (f"Cancelled at {where}. Its checkpoint is kept: Resume continues it, New fine-tune "
                    "discards it.")
        if self.run_state == FAILED:
            return f"Stopped by an error at {where}. Resume tries again from the last checkpoint."
        return f"Training on {self.session.device if self.session else '?'}: {where}, {trained} so far."

    # ------------------------------------------------------------------ a run from an earlier session

    def _restore_previous(self) -> None:
        """Find the run left in the work folder (closed while training, or never saved)."""
        work = work_dir()
        job = load_job(work)
        if job is None or not (work / "checkpoint.pt").is_file():
            self._set_status(self._describe_state())
            return
        history = read_metrics(work)
        self.job, self.finetune_settings = job, job.settings
        self.step = int(history[-1]["step"]) if history else 0
        self.seconds = float(history[-1].get("seconds", 0.0)) if history else 0.0
        self.data_panel.set_data(job.data)
        self.options.fill_bases(job.base, self.settings.weights)
        self.options.set_budget(job.budget)
        self.chart.set_keys(LOSS_KEYS.get(job.task, ()))
        self.chart.add_history(history)
        self.run_state = DONE if job.budget.reached(self.step, self.seconds) else PAUSED
        self._show_progress_at_rest()
        self._set_status("Found the fine-tune from last time. " + self._describe_state())

    def _show_progress_at_rest(self) -> None:
        fraction = self.job.budget.fraction(self.step, self.seconds) if self.job else 0.0
        self.progress_bar.setValue(int(round(fraction * PROGRESS_STEPS)))
        self.progress_bar.setFormat(f"{self.run_state.capitalize()} — step {self.step} — {fraction * 100:.0f}%"
                                    if self.has_run else "")

    # ------------------------------------------------------------------ actions

    def _device(self) -> torch.device | None:
        """The chosen device, or None after saying why it cannot be used."""
        try:
            choice = choose_device(self.options.device_choice())
        except DeviceError as exc:
            self.error_label.show_message(f"Device problem: {exc}.")
            return None
        if choice.note:
            self._set_status(choice.note)
        return choice.device

    @Slot()
    def start(self) -> bool:
        """Start a new fine-tune in the work folder (any older checkpoint there was discarded)."""
        if self.busy or self.has_run or self._reserved:
            self.error_label.show_message(self._reserved or "A fine-tune is already here: Resume it, or choose "
                                                            "New fine-tune to discard it first.")
            return False
        data, missing = self.data_panel.data()
        if data is None or not self.data_panel.usable:
            self.error_label.show_message(missing or self.data_panel.problem or
                                          ("Still checking the photos…" if self.data_panel.checking
                                           else "There is nothing to train on in these folders."))
            return False
        device = self._device()
        if device is None:
            return False
        work = work_dir()
        shutil.rmtree(work, ignore_errors=True)  # no run is shown, so whatever is left there is stale
        job = FinetuneJob(data, work, self.options.base(), self.options.budget(), self.finetune_settings)
        self.job, self.session = job, FinetuneSession(job, device, self.masks)
        self.step, self.seconds, self.saved_as = 0, 0.0, ""
        self.chart.set_keys(LOSS_KEYS.get(job.task, ()))
        self.previews.clear()
        self.save_message.clear()
        self.use_button.setVisible(False)
        self.keep_worse_button.setVisible(False)
        return self._launch(resume=False)

    @Slot()
    def resume(self) -> bool:
        """Continue the run from its checkpoint with the budget and device chosen now."""
        if not self.can_resume():
            return False
        device = self._device()
        if device is None:
            return False
        job = dataclasses.replace(self.job, budget=self.options.budget())
        self.job = job
        session = self.session
        if session is None or session.device != device or self.run_state == FAILED:
            session = FinetuneSession(job, device, self.masks)  # loads the checkpoint when it runs
        else:
            session.job = job  # same networks in memory; the budget is the only change
        self.session = session
        return self._launch(resume=True)

    def _launch(self, resume: bool) -> bool:
        task = TrainTask(self.session, resume, self.preview_every, self.preview_seconds, self.preview_count)
        task.progress.connect(self._on_progress)
        task.prepared.connect(self._on_prepared)
        task.metrics.connect(self._on_metrics)
        task.previews.connect(self._on_previews)
        task.finished.connect(self._on_train_finished)
        task.failed.connect(self._on_failed)
        task.cancelled.connect(self._on_cancelled)
        self.error_label.clear()
        self._eta, self._eta_start = None, 0.0
        self._job_kind = "train"
        self.run_state = RUNNING
        self.progress_bar.setFormat("Preparing…")
        self._set_status(f"Preparing: loading the photos and the base weights on {self.session.device}…")
        if not self.runner.start(task):
            self._job_kind = ""
            return False
        return True

    @Slot()
    def pause(self) -> None:
        if self.training and self.runner.pause():  # False: already pausing or cancelling
            self._set_status("Pausing after the current step…")
            self._update_actions()

    @Slot()
    def cancel(self) -> None:
        if self.training and self.runner.cancel():
            self._set_status("Cancelling…")
            self._update_actions()

    def discard(self, confirm: bool = True) -> bool:
        """Forget the run (its checkpoint and chart) to start another; asks first unless told not to."""
        if self.busy or not self.has_run:
            return False
        if confirm:
            unsaved = "" if self.saved_as else " It has not been saved as a profile."
            answer = QMessageBox.question(self, "New fine-tune",
                                          f"Discard the current fine-tune ({self.step} steps)?{unsaved}")
            if answer != QMessageBox.StandardButton.Yes:
                return False
        shutil.rmtree(work_dir(), ignore_errors=True)
        self.job, self.session, self.run_state = None, None, NO_RUN
        self.step, self.seconds, self.saved_as = 0, 0.0, ""
        self.chart.set_keys(())
        self.previews.clear()
        self.save_message.clear()
        self.use_button.setVisible(False)
        self.keep_worse_button.setVisible(False)
        self.error_label.clear()
        self._show_progress_at_rest()
        self._set_status(self._describe_state())
        self._update_actions()
        self.data_panel.refresh()
        return True

    # ------------------------------------------------------------------ worker signals

    @Slot(float, str)
    def _on_progress(self, fraction: float, message: str) -> None:
        if self._eta is None:  # loading and scoring say what they do; the bar moves with the steps
            self.progress_bar.setFormat(message.capitalize() + "…")
            return
        self.progress_bar.setValue(int(round(fraction * PROGRESS_STEPS)))
        span = 1.0 - self._eta_start
        done = (fraction - self._eta_start) / span if span > 0 else 1.0
        eta = format_seconds(self._eta.remaining(done))
        self.progress_bar.setFormat(f"{message} — {fraction * 100:.0f}% — ETA {eta}")

    @Slot(object)
    def _on_prepared(self, summary: DataSummary) -> None:
        self.held_out = summary.counts.get("held_out")
        self.data_panel.show_loaded(summary)

    @Slot(object)
    def _on_metrics(self, metrics: dict) -> None:
        if self._eta is None:  # the pace of this run is measured from its first step
            self._eta, self._eta_start = EtaEstimator(), float(metrics["fraction"])
            self.status_message.emit(f"Training on {self.session.device}…")
        self.step, self.seconds = int(metrics["step"]), float(metrics["seconds"])
        self.saved_as = ""
        self.chart.add(self.step, metrics)
        self.stepped.emit(self.step)
        if not self.pausing and not (self.runner.task is not None and self.runner.task.is_cancelled):
            self.status_label.setText(self._describe_state())

    @Slot(object)
    def _on_previews(self, previews: list) -> None:
        self.previews.show_previews(previews, self.step, self.job.task if self.job else "")

    @Slot(object)
    def _on_train_finished(self, state: str) -> None:
        self.run_state = DONE if state == "finished" else PAUSED

    @Slot(str, str)
    def _on_failed(self, message: str, details: str) -> None:
        self.run_state = FAILED
        self.error_label.show_message(message, details)

    @Slot()
    def _on_cancelled(self) -> None:
        self.run_state = CANCELLED

    @Slot(bool)
    def _on_busy_changed(self, busy: bool) -> None:
        self._update_actions()
        self.running_changed.emit(busy)

    @Slot(str)
    def _on_runner_done(self, outcome: str) -> None:
        kind, self._job_kind = self._job_kind, ""
        if kind == "train":
            if outcome == CANCELLED:
                self.run_state = CANCELLED
            elif outcome == FAILED:
                self.run_state = FAILED
            if self.run_state in (CANCELLED, FAILED) and not (work_dir() / "checkpoint.pt").is_file():
                self._forget_empty_run()
            self._show_progress_at_rest()
            if self.has_run:
                self._set_status(self._describe_state())
            self._update_actions()
            self.run_done.emit(self.run_state if self.has_run else outcome)
        else:
            self._update_actions()

    def _forget_empty_run(self) -> None:
        """Stopped before its first step: there is nothing to resume, so the choices unlock again."""
        shutil.rmtree(work_dir(), ignore_errors=True)
        self.job, self.session, self.run_state = None, None, NO_RUN
        self.chart.set_keys(())
        self._set_status("Stopped before the first step; nothing was trained. " + self._describe_state())

    # ------------------------------------------------------------------ profiles

    # No-argument slots: PySide would pass a button's clicked(bool) on as ``name`` / ``confirm``.
    @Slot()
    def _on_save_clicked(self) -> None:
        self.save_profile()

    @Slot()
    def _on_new_clicked(self) -> None:
        self.discard()

    @Slot()
    def _on_keep_worse_clicked(self) -> None:
        self.save_profile(force=True)

    def save_profile(self, name: str | None = None, force: bool = False) -> bool:
        """Save the weights as they are now as profile ``name`` (the name field when None). Scored
        first: weights worse than the base are kept back unless ``force`` (*Save anyway*)."""
        name = (self.name_edit.text() if name is None else name).strip()
        if name != self.name_edit.text():
            self.name_edit.setText(name)
        if not self.can_save():
            return False
        try:
            validate_name(name)
        except ProfileError as exc:
            self._save_error(describe_training_error(exc))
            return False
        if (profiles_dir() / name).exists():
            self._save_error(f"A profile named “{name}” already exists. Choose another name, or delete the old "
                             f"one first (python main.py profiles delete \"{name}\").")
            return False
        session = self.session
        if session is None or session.step == 0:  # a run from an earlier session: load its checkpoint
            device = self._device()
            if device is None:
                return False
            session = self.session = FinetuneSession(self.job, device, self.masks)

        held_out = self.held_out

        def work(progress) -> SaveOutcome:
            if session.step == 0:
                progress.report(0.0, "loading the checkpoint")
                session.reload(progress)
            progress.report(0.0, "scoring the held-out photos")
            after = session.evaluate()
            verdict = judge(session.before, after, held_out)
            if verdict.worse and not force:
                return SaveOutcome(verdict)  # the base stays the better choice; nothing written
            progress.report(0.0, "saving")
            return SaveOutcome(verdict, session.save_profile(name, after=after))

        task = ProfileTask(work, session.device)
        task.finished.connect(self._on_saved)
        task.failed.connect(self._on_save_failed)
        self._job_kind = "save"
        self.save_message.setStyleSheet("")
        self.save_message.setText(f"Scoring and saving “{name}”…")
        self.keep_worse_button.setVisible(False)
        return self.runner.start(task)

    def _save_error(self, text: str) -> None:
        self.save_message.setStyleSheet("QLabel { color: #b00020; }")
        self.save_message.setText(text)
        self.use_button.setVisible(False)

    @Slot(object)
    def _on_saved(self, outcome: SaveOutcome) -> None:
        verdict, profile = outcome.verdict, outcome.profile
        caveats = "".join(f" ⚠ Note: {w}." for w in verdict.warnings)
        if profile is None:  # worse than the base: kept back
            self.save_message.setStyleSheet(ERROR_STYLE)
            self.save_message.setText(f"⚠ Not saved: this fine-tune made the result worse ({verdict.change()}). "
                                      "The base weights score better, so they stay in use. Train with more or "
                                      "better-checked masks, or Save anyway if you know better." + caveats)
            self.keep_worse_button.setVisible(True)
            self.use_button.setVisible(False)
            self.status_message.emit("Fine-tune not saved: it scored worse than the base weights.")
            return
        self.keep_worse_button.setVisible(False)
        self.saved_as = PROFILE_PREFIX + profile.name
        score = f"; {verdict.change()}" if verdict.change() else ""
        text = f"Saved profile “{profile.name}” ({profile.card.get('steps', self.step)} steps{score})."
        if verdict.worse:
            text = f"⚠ {text} It scored WORSE than the base weights; the base stays selected unless you choose it."
        self.save_message.setStyleSheet(ERROR_STYLE if verdict.worse else WARN_STYLE if caveats else "")
        self.save_message.setText(f"{text} It is listed in Models & settings.{caveats}")
        self.use_button.setVisible(True)
        self.options.fill_bases(self.options.base(), self.settings.weights)
        self.profile_saved.emit(self.saved_as)
        self.status_message.emit(f"Profile “{profile.name}” saved.")

    @Slot(str, str)
    def _on_save_failed(self, message: str, _details: str) -> None:
        self._save_error(message)

    @Slot()
    def use_saved_profile(self) -> None:
        """Restore with the profile just saved (the Restore tab and the album queue)."""
        if self.saved_as:
            self.settings.weights = self.saved_as
            self.status_message.emit(f"Restoring with {weights_title(self.saved_as)} from now on.")

    # ------------------------------------------------------------------ tab life

    def refresh(self) -> None:
        """The tab is shown: profiles and brushed masks may have changed elsewhere."""
        if not self.busy and not self.has_run:
            self.options.fill_bases(self.options.base(), self.settings.weights)
            self.data_panel.refresh()

    def shutdown(self) -> None:
        """The window closes: a fine-tune pauses after its step with a checkpoint (resumable next
        time); a save finishes; nothing is lost."""
        task = self.runner.task
        if isinstance(task, TrainTask):
            if task.session.state == "running":
                task.pause()  # stops at the next step boundary, checkpoint written
            else:
                task.cancel()  # still loading or scoring: nothing trained yet, nothing to keep
        self.runner.wait()
        self.data_panel.shutdown()
