"""The Album queue tab: drop a whole album, restore it overnight, come back to it after a crash.

One :class:`QueueTask` (the GUI's one worker abstraction, run by a ``TaskRunner``) restores one
photo at a time (one device lane); Pause and the main window's hold (``set_held``, while the Restore
tab or a fine-tune uses the device) are that task's pause, honoured between photos. The queue's
state lives in the engine's ``AlbumQueue`` (saved after every change of status), outputs are written
by the same code as the CLI batch, and a failing photo is marked failed with a readable reason while
the rest go on.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import Callable

import platformdirs
from PySide6.QtCore import Qt, QUrl, Signal, Slot
from PySide6.QtGui import QDesktopServices, QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QStackedWidget,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from engine.core.pipeline import RestoreOptions, Restorer
from engine.io.decode import IMAGE_SUFFIXES
from engine.jobs.album_queue import (
    CANCELLED,
    DONE,
    FAILED,
    PENDING,
    RETRYABLE,
    RUNNING,
    SKIPPED,
    AlbumQueue,
    QueueItem,
    expand_paths,
    restore_item,
)
from engine.jobs.batch import (
    BatchConfig,
    PhotoProcessor,
    WriteFailed,
    describe_os_error,
)
from engine.progress import Cancelled, EtaEstimator, Progress, format_seconds
from engine.store.masks import MaskStore

from .queue_model import (
    COL_ERROR,
    COL_NAME,
    COL_PROGRESS,
    COL_SIZE,
    COL_STATUS,
    COL_THUMB,
    ProgressDelegate,
    QueueModel,
    ThumbnailCache,
)
from .workers import CANCELLED as RUN_CANCELLED
from .workers import FAILED as RUN_FAILED
from .workers import Task, TaskRunner, describe_error

PROGRESS_STEPS = 1000
EMIT_INTERVAL_S = 0.1  # progress signals per item are thinned to this pace
DRAINED, HELD = "drained", "held"  # how a run that was not cancelled and did not fail ended


def default_output_dir() -> Path:
    """Outputs never go next to the originals (archive shares may be read-only, and mixing restored
    files into an album folder confuses people): a Heirloom folder in the user's Pictures."""
    return platformdirs.user_pictures_path() / "Heirloom"


def describe_item_error(exc: BaseException, device: object = None) -> str:
    """describe_error, plus the file-system failures only the queue meets (missing photo, full disk)."""
    if isinstance(exc, WriteFailed):
        return f"Could not save the result: {exc}"
    if isinstance(exc, FileNotFoundError):
        return f"The photo is no longer there: {exc.filename or exc}"
    if isinstance(exc, OSError):
        where = f" ({exc.filename})" if exc.filename else ""
        return f"Cannot read the photo{where}: {describe_os_error(exc)}"
    return describe_error(exc, device)  # type: ignore[arg-type]


class QueueTask(Task):
    """Claims pending items one after the other and restores them. Paused, it finishes the current
    photo and ends with ``HELD``; with nothing left to do it ends with ``DRAINED``; Cancel stops the
    current photo and ends it ``cancelled``."""

    item_started = Signal(int)  # item id
    item_progress = Signal(int, float, str)  # item id, fraction, stage
    item_done = Signal(int, str)  # item id, new status

    def __init__(self, queue: AlbumQueue, restorer: Restorer, config: BatchConfig, masks: MaskStore | None,
                 outdir: Path) -> None:
        super().__init__(restorer.device)
        self.queue, self.restorer, self.config, self.masks, self.outdir = queue, restorer, config, masks, outdir
        self._requeue = False
        self._last_emit = 0.0
        self._last_message = ""

    def cancel(self, requeue: bool = False) -> None:
        """Stop the current item now. ``requeue``: it goes back to pending (app closing), else cancelled."""
        self._requeue = requeue
        super().cancel()

    def describe(self, exc: Exception) -> str:
        return describe_item_error(exc, self.device)

    def _report(self, item: QueueItem, fraction: float, message: str) -> None:
        item.progress = fraction  # read by the model; only the status changes are saved
        item_id = item.id
        now = time.monotonic()
        if fraction >= 1.0 or message != self._last_message or now - self._last_emit >= EMIT_INTERVAL_S:
            self._last_emit, self._last_message = now, message
            self.item_progress.emit(item_id, float(fraction), message)

    def work(self, progress: Progress) -> str:
        """Bad weights fail once, before any photo (the items stay pending)."""
        self.restorer.prepare(self.config.options)
        processor = PhotoProcessor(self.config, self.restorer)
        between_photos = progress.ignoring_pause()
        while True:
            between_photos.check()  # Cancel wins over a pause asked for before it
            if progress.paused:
                return HELD
            item = self.queue.claim_next()
            if item is None:
                return DRAINED
            self.item_started.emit(item.id)
            self.item_done.emit(item.id, self._restore(item, processor, progress))

    def _restore(self, item: QueueItem, processor: PhotoProcessor, progress: Progress) -> str:
        """One photo to its end: a pause does not hold it halfway, Cancel stops it; returns its status."""
        try:
            return restore_item(self.queue, item, processor, self.outdir, self.masks,
                                progress.ignoring_pause(partial(self._report, item)))
        except Cancelled:
            if self._requeue:
                self.queue.requeue(item)
                return PENDING
            self.queue.finish(item, CANCELLED, error="Cancelled before it was finished; "
                                                     "Retry failed puts it back in the queue.")
            return CANCELLED
        except Exception as exc:  # one bad photo never stops the album
            self.queue.finish(item, FAILED, error=describe_item_error(exc, self.restorer.device))
            return FAILED


class QueueTab(QWidget):
    """Album queue: add photos and folders, restore them one by one in the background, persistently."""

    running_changed = Signal(bool)  # the queue uses (True) or released (False) the device lane
    item_finished = Signal(int)  # row of an item that just ended (done, skipped, failed or cancelled)
    review_requested = Signal(object, object)  # (photo Path, restored output Path): open it to review

    def __init__(self, restorer_factory: Callable[[], Restorer], options_factory: Callable[[], RestoreOptions],
                 masks: MaskStore, state_path: Path | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.restorer_factory, self.options_factory, self.masks = restorer_factory, options_factory, masks
        self.queue, warnings = AlbumQueue.load(state_path)
        if not self.queue.output_dir:
            self.queue.output_dir = str(default_output_dir())
        self.thumbnails = ThumbnailCache(parent=self)
        self.model = QueueModel(self.queue, self.thumbnails, self)
        self.runner = TaskRunner(self)
        self.runner.done.connect(self._on_run_done)
        self._want_run = False  # the user asked for the queue to run (Start), not paused or cancelled
        self._held = False  # the main window lent the device to the Restore tab (or the Train tab)
        self._holder = "the Restore tab"  # who has it, for the status line
        self._stop_reason = ""
        self._stop_message = ""
        self._eta: EtaEstimator | None = None
        self._run_done = 0  # items ended in this run (for the ETA)
        self._current: int | None = None  # id of the item being restored
        self._build_ui()
        self.setAcceptDrops(True)
        self._update_actions()
        self._update_overall()
        if warnings:
            self._set_status(" ".join(warnings), error=True)
        else:
            self._set_status(self._idle_text())

    # ------------------------------------------------------------------ layout

    def _build_ui(self) -> None:
        self.add_files_button = QPushButton("Add files…")
        self.add_folder_button = QPushButton("Add folder…")
        self.start_button = QPushButton("Start")
        self.pause_button = QPushButton("Pause")
        self.cancel_button = QPushButton("Cancel")
        self.retry_button = QPushButton("Retry failed")
        self.remove_button = QPushButton("Remove")
        self.review_button = QPushButton("Review…")
        self.review_button.setToolTip("Open the selected restored photo in the Restore tab: compare it with the "
                                      "original, fix its mask and restore it again (or double-click its row)")
        self.review_button.clicked.connect(self._on_review_clicked)
        self.start_button.setToolTip("Restore the waiting photos, one after the other")
        self.pause_button.setToolTip("Finish the current photo, then hold the queue")
        self.cancel_button.setToolTip("Stop the current photo now and hold the queue")
        self.retry_button.setToolTip("Put failed and cancelled photos back in the queue")
        self.remove_button.setToolTip("Remove the selected photos from the queue (files are not touched)")
        self.add_files_button.clicked.connect(self._choose_files)
        self.add_folder_button.clicked.connect(self._choose_folder)
        self.start_button.clicked.connect(self.start)
        self.pause_button.clicked.connect(self.pause)
        self.cancel_button.clicked.connect(self.cancel)
        self.retry_button.clicked.connect(self.retry_failed)
        self.remove_button.clicked.connect(self.remove_selected)
        buttons = QHBoxLayout()
        for button in (self.add_files_button, self.add_folder_button):
            buttons.addWidget(button)
        buttons.addStretch(1)
        for button in (self.start_button, self.pause_button, self.cancel_button, self.retry_button,
                       self.review_button, self.remove_button):
            buttons.addWidget(button)

        self.table = QTableView()
        self.table.setModel(self.model)
        self.table.setItemDelegateForColumn(COL_PROGRESS, ProgressDelegate(self.table))
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setAlternatingRowColors(True)
        self.table.setShowGrid(False)
        self.table.setStyleSheet("QTableView::item { padding-left: 6px; padding-right: 6px; }")
        self.table.setWordWrap(False)
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setDefaultSectionSize(self.thumbnails.size + 8)
        self.table.setIconSize(self.thumbnails.placeholder.size())
        header = self.table.horizontalHeader()
        header.setHighlightSections(False)
        header.setSectionResizeMode(COL_THUMB, QHeaderView.ResizeMode.Fixed)
        header.resizeSection(COL_THUMB, self.thumbnails.size + 14)
        header.setSectionResizeMode(COL_NAME, QHeaderView.ResizeMode.Interactive)
        header.resizeSection(COL_NAME, 240)
        header.resizeSection(COL_SIZE, 90)
        header.resizeSection(COL_STATUS, 130)
        header.resizeSection(COL_PROGRESS, 130)
        header.setSectionResizeMode(COL_ERROR, QHeaderView.ResizeMode.Stretch)
        self.table.selectionModel().selectionChanged.connect(lambda *_: self._update_actions())
        self.table.doubleClicked.connect(self._on_row_activated)
        self.table.activated.connect(self._on_row_activated)  # Enter on a row, too
        self.model.rowsInserted.connect(lambda *_: self._show_table())
        self.model.modelReset.connect(lambda *_: self._show_table())

        self.empty_label = QLabel("Drop photos or album folders here\n\nor use Add files… / Add folder…")
        self.empty_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty_label.setStyleSheet("QLabel { color: #666; font-size: 15px; border: 2px dashed #aaa;"
                                       " border-radius: 8px; }")
        self.pages = QStackedWidget()
        self.pages.addWidget(self.empty_label)
        self.pages.addWidget(self.table)

        self.output_edit = QLineEdit(self.queue.output_dir or "")
        self.output_edit.setReadOnly(True)
        self.output_edit.setToolTip("Restored photos and their provenance records are written here; "
                                    "originals are never changed")
        self.output_button = QPushButton("Change…")
        self.output_button.clicked.connect(self._choose_output)
        self.open_output_button = QPushButton("Open")
        self.open_output_button.setToolTip("Show the output folder in the file manager")
        self.open_output_button.clicked.connect(self._open_output)
        output_row = QHBoxLayout()
        output_row.addWidget(QLabel("Save restored photos to:"))
        output_row.addWidget(self.output_edit, 1)
        output_row.addWidget(self.output_button)
        output_row.addWidget(self.open_output_button)

        self.overall_bar = QProgressBar()
        self.overall_bar.setRange(0, PROGRESS_STEPS)
        self.overall_bar.setTextVisible(True)
        self.status_label = QLabel()
        self.status_label.setWordWrap(True)
        self.status_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        layout = QVBoxLayout(self)
        layout.addLayout(buttons)
        layout.addWidget(self.pages, 1)
        layout.addLayout(output_row)
        layout.addWidget(self.overall_bar)
        layout.addWidget(self.status_label)
        self._show_table()

    def _show_table(self) -> None:
        self.pages.setCurrentWidget(self.table if self.queue.items else self.empty_label)

    # ------------------------------------------------------------------ public API

    @property
    def is_running(self) -> bool:
        """A worker holds the device lane (restoring, or finishing the current photo)."""
        return self.runner.busy

    @property
    def _task(self) -> QueueTask | None:
        task = self.runner.task
        return task if isinstance(task, QueueTask) else None

    def add_paths(self, paths: list[Path]) -> int:
        """Enqueue photo files and every image in the given folders (recursively); returns how many
        were new. Duplicates and non-image files are ignored (the status line says so)."""
        images, ignored = expand_paths(Path(p) for p in paths)
        outdir = self.output_dir().resolve()
        ours = [p for p in images if p.resolve().is_relative_to(outdir)]  # restored files are not new work
        images = [p for p in images if p not in ours]
        added = self.model.insert(images)
        for item in added:  # start decoding thumbnails now, off the GUI thread
            self.thumbnails.get(item.path)
        parts = [f"Added {len(added)} photo{'s' if len(added) != 1 else ''} to the queue"]
        if len(images) > len(added):
            parts.append(f"{len(images) - len(added)} already queued")
        if ours:
            parts.append(f"{len(ours)} in the output folder left out")
        if ignored:
            parts.append(f"{len(ignored)} not an image" if len(ignored) == 1 else f"{len(ignored)} not images")
        self._set_status(parts[0] + (f" ({', '.join(parts[1:])})" if parts[1:] else "") + ".")
        self._update_actions()
        self._update_overall()
        return len(added)

    def start(self) -> bool:
        """Run the waiting photos. Held by another tab: runs as soon as the device is free."""
        if not any(i.status == PENDING for i in self.queue.items):
            self._set_status("No photos are waiting. Add photos, or use Retry failed.")
            return False
        self._want_run = True
        if self.is_running:  # pausing or held: carry on once the current photo is finished
            self._set_status("The queue continues after the current photo.")
        elif self._held:
            self._set_status(f"Waiting for {self._holder} to finish with the device…")
        else:
            return self._launch()
        self._update_actions()
        return True

    def pause(self) -> None:
        """Finish the current photo, then hold the queue (Start continues it)."""
        self._want_run = False
        if self.runner.pause():
            self._set_status("Pausing after the current photo…")
        elif not self.is_running:
            self._set_status("Paused. Press Start to go on.")
        self._update_actions()

    def cancel(self) -> None:
        """Stop the current photo now (the engine's cancel), mark it cancelled and hold the queue."""
        self._want_run = False
        if self.runner.cancel():
            self._set_status("Cancelling…")
        self._update_actions()

    def retry_failed(self) -> int:
        """Put failed and cancelled photos back in the queue; returns how many."""
        again = self.queue.retry()
        for item in again:
            self.model.refresh(item.id)
        if again:
            self._set_status(f"{len(again)} photo{'s' if len(again) != 1 else ''} back in the queue; press Start.")
        self._update_actions()
        self._update_overall()
        return len(again)

    def remove_selected(self) -> int:
        """Drop the selected rows from the queue (never the photo being restored, never any file)."""
        rows = sorted({index.row() for index in self.table.selectionModel().selectedRows()})
        ids = [self.model.item(r).id for r in rows if self.model.item(r).status != RUNNING]
        gone = self.model.remove(ids) if ids else []
        if gone:
            self._set_status(f"Removed {len(gone)} photo{'s' if len(gone) != 1 else ''} from the queue.")
        self._update_actions()
        self._update_overall()
        return len(gone)

    def reviewable(self, row: int) -> Path | None:
        """The restored file of a finished row (done or already restored), if it is still there."""
        if not 0 <= row < self.model.rowCount():
            return None
        item = self.model.item(row)
        if item.status not in (DONE, SKIPPED) or not item.output or not Path(item.output).is_file():
            return None
        return Path(item.output)

    def open_row(self, row: int) -> bool:
        """Ask the window to open a finished row's photo and result in the compare view."""
        output = self.reviewable(row)
        if output is None:
            item = self.model.item(row) if 0 <= row < self.model.rowCount() else None
            if item is not None:
                self._set_status(f"{item.name} has no restored file to review yet "
                                 f"({'its file is gone' if item.status in (DONE, SKIPPED) else 'not done'}).")
            return False
        self.review_requested.emit(Path(self.model.item(row).path), output)
        return True

    @Slot(object)
    def _on_row_activated(self, index) -> None:
        self.open_row(index.row())

    @Slot()
    def _on_review_clicked(self) -> None:
        rows = self.table.selectionModel().selectedRows()
        if rows:
            self.open_row(rows[0].row())

    def set_output_dir(self, folder: Path) -> None:
        """Where restored photos go (used from the next photo a run starts)."""
        self.queue.set_output_dir(Path(folder))
        self.output_edit.setText(str(folder))

    def output_dir(self) -> Path:
        return Path(self.queue.output_dir or default_output_dir())

    def set_held(self, held: bool, holder: str = "the Restore tab") -> None:
        """``holder`` (the Restore tab, a fine-tune) needs the device (True) or is done with it (False).
        Held, the queue finishes its current photo and waits (running_changed(False) says the device
        is free)."""
        self._held = held
        if held:
            self._holder = holder
            if self.is_running:
                self.runner.pause()
                self._set_status(f"Holding after the current photo: {holder} needs the device.")
        elif self._want_run and not self.is_running:
            self._launch()
        self._update_actions()

    def shutdown(self) -> None:
        """Stop before the app closes: the current photo goes back to pending (as after a crash),
        so the next start picks it up again."""
        self._want_run = False
        task = self._task
        if task is not None:
            task.cancel(requeue=True)
        self.runner.stop()
        self.thumbnails.wait()

    # ------------------------------------------------------------------ running

    def _launch(self) -> bool:
        try:
            options = self.options_factory()
            restorer = self.restorer_factory()
        except Exception as exc:  # e.g. weights not installed: say so, keep the queue as it is
            self._want_run = False
            self._set_status(describe_item_error(exc), error=True)
            self._update_actions()
            return False
        outdir = self.output_dir()
        try:
            outdir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            self._want_run = False
            self._set_status(f"Cannot create the output folder {outdir}: {describe_os_error(exc)}. "
                             "Choose another one.", error=True)
            self._update_actions()
            return False
        self.queue.set_settings(asdict(options))
        source = restorer.bank.source
        config = BatchConfig(inputs=(), outdir=outdir, options=options,
                             weights=str(getattr(source, "label", None) or type(source).__name__),
                             argv=("heirloom", "gui", "album-queue"))
        task = QueueTask(self.queue, restorer, config, self.masks, outdir)
        task.item_started.connect(self._on_item_started)
        task.item_progress.connect(self._on_item_progress)
        task.item_done.connect(self._on_item_done)
        task.finished.connect(self._on_run_finished)
        task.failed.connect(self._on_run_failed)
        self._stop_reason, self._stop_message = "", ""
        self._eta, self._run_done = None, 0
        self._set_status(f"Preparing the restoration on {restorer.device}…")
        self.runner.start(task)
        self._update_actions()
        self.running_changed.emit(True)
        return True

    @Slot(int)
    def _on_item_started(self, item_id: int) -> None:
        self._current = item_id
        if self._eta is None:
            self._eta = EtaEstimator()  # weight loading is not representative of the pace
        self.model.refresh(item_id)
        item = self.queue.get(item_id)
        if item is not None:
            self._set_status(f"Restoring {item.name}…")
        self._update_actions()
        self._update_overall()

    @Slot(int, float, str)
    def _on_item_progress(self, item_id: int, fraction: float, message: str) -> None:
        self.model.refresh(item_id)
        item = self.queue.get(item_id)
        task = self._task
        if item is not None and task is not None and not task.is_cancelled:
            self._set_status(f"Restoring {item.name}: {message} {fraction * 100:.0f}%")
        self._update_overall()

    @Slot(int, str)
    def _on_item_done(self, item_id: int, status: str) -> None:
        self._current = None
        if status != PENDING:
            self._run_done += 1
        self.model.refresh(item_id)
        item = self.queue.get(item_id)
        if item is not None and status == FAILED:
            self._set_status(f"{item.name} failed: {item.error}", error=True)
        self._update_actions()
        self._update_overall()
        if self.queue.save_error:
            self._set_status(f"Warning: {self.queue.save_error}", error=True)
        row = self.model.row_of(item_id)
        if row is not None:
            self.item_finished.emit(row)

    @Slot(object)
    def _on_run_finished(self, reason: str) -> None:
        self._stop_reason = reason

    @Slot(str, str)
    def _on_run_failed(self, message: str, _details: str) -> None:
        self._stop_message = message  # e.g. the weights did not load: the waiting items stay pending

    @Slot(str)
    def _on_run_done(self, outcome: str) -> None:
        """The worker thread has ended (the runner's outcome: finished, failed or cancelled)."""
        self._current = None
        reason = outcome if outcome in (RUN_FAILED, RUN_CANCELLED) else self._stop_reason  # HELD or DRAINED
        if reason == RUN_FAILED:
            self._want_run = False
            self._set_status(self._stop_message, error=True)
        elif reason == RUN_CANCELLED:
            self._want_run = False
            self._set_status("Cancelled. Press Start to go on with the waiting photos.")
        elif reason == HELD and self._held and self._want_run:
            self._set_status(f"Waiting for {self._holder} to finish with the device…")
        elif reason == HELD and not self._want_run:
            waiting = sum(1 for i in self.queue.items if i.status == PENDING)
            self._set_status(f"Paused. {waiting} photo{'s' if waiting != 1 else ''} waiting; press Start to go on.")
        elif reason == DRAINED:
            self._want_run = False
            self._set_status(self._summary())
        self._update_actions()
        self._update_overall()
        self.running_changed.emit(False)
        if self._want_run and not self._held and any(i.status == PENDING for i in self.queue.items):
            self._launch()  # Start was pressed again while the last photo was finishing

    # ------------------------------------------------------------------ display

    def _summary(self) -> str:
        counts = self.queue.counts()
        done = counts[DONE] + counts[SKIPPED]
        text = f"Finished: {done} restored"
        if counts[FAILED]:
            text += f", {counts[FAILED]} failed (hover over the error for details)"
        if counts[CANCELLED]:
            text += f", {counts[CANCELLED]} cancelled"
        return text + f". Restored photos are in {self.output_dir()}."

    def _idle_text(self) -> str:
        if not self.queue.items:
            return "Drop photos or album folders to queue them; Start restores them one by one."
        waiting = sum(1 for i in self.queue.items if i.status == PENDING)
        return f"{len(self.queue.items)} photos in the queue, {waiting} waiting. Press Start to restore them."

    def _set_status(self, text: str, error: bool = False) -> None:
        self.status_label.setText(text)
        self.status_label.setStyleSheet("QLabel { color: #b00020; }" if error else "")

    def _update_actions(self) -> None:
        counts = self.queue.counts()
        task = self._task
        running = task is not None
        stopping = running and (task.is_paused or task.is_cancelled)
        waiting = not running and self._want_run and self._held  # Start was pressed; the device is lent out
        if running:
            self.start_button.setEnabled(counts[PENDING] > 0 and stopping and not self._want_run)
        else:
            self.start_button.setEnabled(counts[PENDING] > 0 and not waiting)
        self.pause_button.setEnabled(running and not stopping or waiting)
        self.cancel_button.setEnabled(running and not (task is not None and task.is_cancelled))
        self.retry_button.setEnabled(any(counts[s] for s in RETRYABLE))
        selected = self.table.selectionModel().selectedRows() if self.table.selectionModel() else []
        self.remove_button.setEnabled(any(self.model.item(i.row()).status != RUNNING for i in selected))
        self.review_button.setEnabled(len(selected) == 1 and self.reviewable(selected[0].row()) is not None)
        self.output_button.setEnabled(not running)

    def _update_overall(self) -> None:
        """'N of M · ETA mm:ss' over the whole queue; the ETA uses this run's pace."""
        counts = self.queue.counts()
        total = len(self.queue.items)
        ended = counts[DONE] + counts[SKIPPED] + counts[FAILED]
        current = self.queue.get(self._current) if self._current is not None else None
        partial_item = current.progress if current is not None else 0.0
        self.overall_bar.setValue(int(round((ended + partial_item) / total * PROGRESS_STEPS)) if total else 0)
        text = f"{ended} of {total}" if total else "No photos in the queue"
        if self.is_running and self._eta is not None:
            todo = self._run_done + counts[PENDING] + counts[RUNNING]
            fraction = (self._run_done + partial_item) / todo if todo else 1.0
            text += f" · ETA {format_seconds(self._eta.remaining(fraction))}"
        self.overall_bar.setFormat(text)

    # ------------------------------------------------------------------ choosing files

    def _choose_files(self) -> None:
        patterns = " ".join(f"*{s}" for s in sorted(IMAGE_SUFFIXES))
        files, _ = QFileDialog.getOpenFileNames(self, "Add photos to the queue", "", f"Photos ({patterns})")
        if files:
            self.add_paths([Path(f) for f in files])

    def _choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Add an album folder (subfolders included)")
        if folder:
            self.add_paths([Path(folder)])

    def _choose_output(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Save restored photos to", str(self.output_dir()))
        if folder:
            self.set_output_dir(Path(folder))

    def _open_output(self) -> None:
        folder = self.output_dir()
        if folder.is_dir():
            QDesktopServices.openUrl(QUrl.fromLocalFile(str(folder)))
        else:
            self._set_status(f"{folder} does not exist yet: it is created when the first photo is restored.")

    # ------------------------------------------------------------------ drag and drop

    @staticmethod
    def _local_paths(event: QDragEnterEvent | QDropEvent) -> list[Path]:
        mime = event.mimeData()
        if not mime.hasUrls():
            return []
        return [Path(url.toLocalFile()) for url in mime.urls() if url.isLocalFile()]

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802 (Qt API)
        if self._local_paths(event):
            event.acceptProposedAction()

    def dragMoveEvent(self, event) -> None:  # noqa: N802 (Qt API)
        if self._local_paths(event):
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802 (Qt API)
        paths = self._local_paths(event)
        if paths:
            self.add_paths(paths)
            event.acceptProposedAction()

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt API)
        self.shutdown()
        super().closeEvent(event)
