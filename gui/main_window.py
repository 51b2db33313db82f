"""Heirloom's main window: the four tabs, menus and shortcuts, drops, recent files, status bar.

The window only wires things together. The tabs do the work; :class:`gui.settings.Settings` holds
every choice; one :class:`gui.workers.RestorerCache` serves the Restore tab and the album queue.
The device is one lane: while the Restore tab runs a job the queue is held, while the queue runs
the Restore tab waits (its buttons say why), and while a fine-tune trains in the Train tab both
wait; the Train tab does not start while either of them has the device.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import shiboken6
from PySide6.QtCore import Slot
from PySide6.QtGui import (
    QAction,
    QCloseEvent,
    QDragEnterEvent,
    QDropEvent,
    QKeySequence,
)
from PySide6.QtWidgets import (
    QFileDialog,
    QLabel,
    QMainWindow,
    QMenu,
    QMessageBox,
    QTabWidget,
    QWidget,
)

from engine.core.pipeline import RestoreOptions, Restorer
from engine.device import DeviceError, DeviceInfo, choose_device, list_devices
from engine.io.decode import IMAGE_SUFFIXES
from engine.models.checkpoints import CheckpointError
from engine.store.catalogue import resolve_weights, weights_title
from engine.store.masks import MaskStore

from .errors import show_details_dialog
from .models_tab import ModelsTab
from .queue_tab import QueueTab
from .restore_tab import RestoreTab
from .settings import Settings
from .train_tab import TrainTab
from .workers import RestorerCache

TAB_KEYS = ("restore", "queue", "train", "models")
DEFAULT_SIZE = (1320, 820)
QUEUE_BUSY = "The album queue is using the device. Pause it in the Album queue tab to restore here."
TRAIN_BUSY = "A fine-tune is using the device. Pause it in the Train tab to restore here."
QUEUE_BUSY_TRAIN = "The album queue is using the device. Pause it in the Album queue tab to train."
RESTORE_BUSY_TRAIN = "The Restore tab is using the device; training can start when it is done."


def unique_keys(first: str, standard: QKeySequence.StandardKey) -> list[QKeySequence]:
    """``first`` plus the platform's own keys for ``standard``, each once. A key listed twice on
    one action is an "ambiguous shortcut overload" and Qt then triggers nothing (Ctrl+Shift+Z is the
    first Redo key on some desktops); some platforms bind no key at all (Quit on a bare X11 session)."""
    keys: dict[str, QKeySequence] = {}
    for key in [QKeySequence(first), *QKeySequence.keyBindings(standard)]:
        text = key.toString(QKeySequence.SequenceFormat.PortableText)
        if text and text not in keys:
            keys[text] = key
    return list(keys.values())


class MainWindow(QMainWindow):
    """Tabs: Restore, Album queue, Train, Models & settings."""

    def __init__(self, settings: Settings | None = None, masks: MaskStore | None = None,
                 queue_state: Path | None = None, download_urls: Mapping[str, str] | None = None,
                 devices: list[DeviceInfo] | None = None, restorers: RestorerCache | None = None) -> None:
        super().__init__()
        self.setWindowTitle("Heirloom")
        self.setAcceptDrops(True)
        self.settings = settings if settings is not None else Settings()
        self.masks = masks if masks is not None else MaskStore.default()
        self.restorers = restorers if restorers is not None else RestorerCache()
        devices = devices if devices is not None else list_devices()
        self._error_box: QMessageBox | None = None
        self._queue_running = False  # who has the device, as their signals said
        self._restoring = False
        self._training = False
        self._queue_held = False

        self.restore_tab = RestoreTab(self.settings, self.restorers, self.masks, devices, self)
        self.queue_tab = QueueTab(self.queue_restorer, self.queue_options, self.masks, queue_state, self)
        self.train_tab = TrainTab(self.settings, self.masks, devices, self)
        self.models_tab = ModelsTab(self.settings, self.restorers, download_urls, devices, self)
        self.tabs = QTabWidget(self)
        self.tabs.setDocumentMode(True)
        for widget, title in ((self.restore_tab, "Restore"), (self.queue_tab, "Album queue"),
                              (self.train_tab, "Train"), (self.models_tab, "Models && settings")):
            self.tabs.addTab(widget, title)
        self.setCentralWidget(self.tabs)

        self.status_label = QLabel("Open a photo to begin, or drop photos and folders on the window.", self)
        self.weights_label = QLabel(self)
        self.device_label = QLabel(self)
        self.statusBar().addWidget(self.status_label, 1)
        self.statusBar().addPermanentWidget(self.weights_label)
        self.statusBar().addPermanentWidget(self.device_label)

        self._build_menus()
        self._connect()
        self._update_engine_labels()
        self._rebuild_recent_menu()
        self._sync_actions()
        if not self.settings.window_geometry or not self.restoreGeometry(self.settings.window_geometry):
            self._default_size()

    # ------------------------------------------------------------------ construction

    def _default_size(self) -> None:
        """First start: large, but inside the screen's free area (1366 x 768 laptops included)."""
        screen = self.screen().availableGeometry() if self.screen() is not None else None
        width, height = DEFAULT_SIZE
        if screen is not None:
            width, height = min(width, int(screen.width() * 0.95)), min(height, int(screen.height() * 0.92))
        self.resize(width, height)

    def _action(self, text: str, slot, shortcut: QKeySequence | str | list | None = None, tip: str = "",
                checkable: bool = False) -> QAction:
        action = QAction(text, self)
        if isinstance(shortcut, list):
            action.setShortcuts([QKeySequence(s) for s in shortcut])
        elif shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
        if tip:
            action.setStatusTip(tip)
        action.setCheckable(checkable)
        action.triggered.connect(slot)
        return action

    def _build_menus(self) -> None:
        tab = self.restore_tab
        self.open_action = self._action("&Open photo…", tab.open_dialog, QKeySequence.StandardKey.Open,
                                        "Open a photo in the Restore tab")
        file_menu = self.menuBar().addMenu("&File")
        self.recent_menu = QMenu("Open &recent", self)
        self.save_action = self._action("&Save result…", tab.save_dialog, QKeySequence.StandardKey.Save,
                                        "Save the restored photo as a new file")
        self.add_files_action = self._action("Add photos to album &queue…", self.add_files_dialog,
                                             tip="Queue photos to restore in the background")
        self.add_folder_action = self._action("Add &folder to album queue…", self.add_folder_dialog,
                                              tip="Queue every photo in a folder")
        self.load_mask_action = self._action("&Load mask…", tab.mask_panel.load_mask_dialog)
        self.save_mask_action = self._action("Save &mask…", tab.mask_panel.save_mask_dialog)
        self.quit_action = self._action("&Quit", self.close, unique_keys("Ctrl+Q", QKeySequence.StandardKey.Quit))
        file_menu.addAction(self.open_action)
        file_menu.addMenu(self.recent_menu)
        file_menu.addAction(self.save_action)
        file_menu.addSeparator()
        file_menu.addAction(self.add_files_action)
        file_menu.addAction(self.add_folder_action)
        file_menu.addSeparator()
        file_menu.addAction(self.load_mask_action)
        file_menu.addAction(self.save_mask_action)
        file_menu.addSeparator()
        file_menu.addAction(self.quit_action)

        stack = tab.canvas.undo_stack
        self.undo_action = self._action("&Undo", stack.undo, QKeySequence.StandardKey.Undo)
        self.redo_action = self._action("&Redo", stack.redo,
                                        unique_keys("Ctrl+Shift+Z", QKeySequence.StandardKey.Redo))
        self.clear_mask_action = self._action("&Clear mask", tab.canvas.clear_mask, tip="Remove the whole mask")
        self.detect_action = self._action("&Detect scratches", tab.start_detect, "Ctrl+D")
        self.restore_action = self._action("&Restore", tab.start_restore, "Ctrl+R")
        self.cancel_action = self._action("&Cancel", tab.cancel, "Ctrl+.")
        edit_menu = self.menuBar().addMenu("&Edit")
        for action in (self.undo_action, self.redo_action, self.clear_mask_action, None,
                       self.detect_action, self.restore_action, self.cancel_action):
            edit_menu.addSeparator() if action is None else edit_menu.addAction(action)

        self.zoom_in_action = self._action("Zoom &in", tab.zoom_in, [QKeySequence.StandardKey.ZoomIn, "Ctrl+="])
        self.zoom_out_action = self._action("Zoom &out", tab.zoom_out, QKeySequence.StandardKey.ZoomOut)
        self.zoom_fit_action = self._action("&Fit to window", tab.zoom_fit, "Ctrl+0")
        self.zoom_100_action = self._action("&Actual pixels (100%)", tab.zoom_100, "Ctrl+1")
        self.original_action = self._action("Show &original", tab.original_button.toggle, "O")
        self.diff_action = self._action("Show &what changed", tab.diff_button.toggle, "D")
        self.compare_action = self._action("&Compare before | after", tab.compare_button.toggle, "C")
        self.brush_smaller_action = self._action("Brush &smaller", tab.mask_panel.shrink_brush, "[")
        self.brush_bigger_action = self._action("Brush &bigger", tab.mask_panel.grow_brush, "]")
        view_menu = self.menuBar().addMenu("&View")
        for action in (self.zoom_in_action, self.zoom_out_action, self.zoom_fit_action, self.zoom_100_action,
                       None, self.original_action, self.compare_action, self.diff_action, None,
                       self.brush_smaller_action, self.brush_bigger_action):
            view_menu.addSeparator() if action is None else view_menu.addAction(action)
        view_menu.addSeparator()
        for index, key in enumerate(("Restore", "Album queue", "Train", "Models && settings")):
            action = self._action(key, self._on_tab_action, f"Alt+{index + 1}")
            action.setData(index)
            view_menu.addAction(action)

        help_menu = self.menuBar().addMenu("&Help")
        help_menu.addAction(self._action("&Keyboard shortcuts", self.show_shortcuts))
        help_menu.addAction(self._action("&About Heirloom", self.show_about))
        # Restore-tab actions live in the window so their shortcuts work anywhere in the tab.
        self.restore_actions = [self.save_action, self.load_mask_action, self.save_mask_action, self.undo_action,
                                self.redo_action, self.clear_mask_action, self.detect_action, self.restore_action,
                                self.cancel_action, self.zoom_in_action, self.zoom_out_action,
                                self.zoom_fit_action, self.zoom_100_action, self.original_action,
                                self.compare_action, self.diff_action, self.brush_smaller_action,
                                self.brush_bigger_action]

    def _connect(self) -> None:
        tab = self.restore_tab
        tab.status_message.connect(self.set_status)
        tab.image_opened.connect(self._on_image_opened)
        tab.busy_changed.connect(self._on_restore_busy)
        tab.models_requested.connect(self._show_models_tab)
        tab.runner.busy_changed.connect(self._sync_actions)
        for signal in (tab.restore_done, tab.detect_done):
            signal.connect(self._sync_actions)
        stack = tab.canvas.undo_stack
        for signal in (stack.canUndoChanged, stack.canRedoChanged, stack.undoTextChanged, stack.redoTextChanged):
            signal.connect(self._sync_actions)
        self.queue_tab.running_changed.connect(self._on_queue_running)
        self.queue_tab.review_requested.connect(self.review_queue_item)
        self.train_tab.running_changed.connect(self._on_train_running)
        self.train_tab.profile_saved.connect(self._on_profile_saved)
        self.train_tab.status_message.connect(self.set_status)
        self.models_tab.status_message.connect(self.set_status)
        self.settings.changed.connect(self._on_setting_changed)
        self.tabs.currentChanged.connect(self._on_tab_changed)

    @Slot()
    def _show_models_tab(self) -> None:
        self.tabs.setCurrentWidget(self.models_tab)

    # ------------------------------------------------------------------ status

    def set_status(self, text: str) -> None:
        self.status_label.setText(text)

    def _update_engine_labels(self) -> None:
        weights = self.settings.weights
        name = weights_title(weights)
        try:
            resolve_weights(weights)
        except CheckpointError as exc:
            self.weights_label.setText(f"Weights: {name} (missing)")
            self.weights_label.setToolTip(str(exc))
        else:
            self.weights_label.setText(f"Weights: {name}")
            self.weights_label.setToolTip(weights)
        try:
            choice = choose_device(self.settings.device)
        except DeviceError as exc:
            self.device_label.setText("Device: ?")
            self.device_label.setToolTip(str(exc))
            return
        self.device_label.setText(f"Device: {choice.device}" + (" ⚠" if choice.note else ""))
        self.device_label.setToolTip(choice.note or f"Restoration runs on {choice.device}")

    @Slot(str)
    def _on_setting_changed(self, key: str) -> None:
        if key in ("engine/weights", "engine/device"):
            self._update_engine_labels()
        elif key == "files/recent":
            self._rebuild_recent_menu()

    @Slot(int)
    def _on_tab_changed(self, _index: int) -> None:
        self._sync_actions()
        if self.tabs.currentWidget() is self.train_tab:
            self.train_tab.refresh()

    @Slot()
    def _sync_actions(self, *_args: object) -> None:
        """Restore-tab actions only act while that tab is shown (and when they make sense)."""
        tab = self.restore_tab
        stack = tab.canvas.undo_stack
        if not shiboken6.isValid(stack):  # the window is being torn down and the stack said goodbye
            return
        here = self.tabs.currentWidget() is tab
        for action in self.restore_actions:
            action.setEnabled(here)
        self.undo_action.setEnabled(here and stack.canUndo() and not tab.busy)
        self.redo_action.setEnabled(here and stack.canRedo() and not tab.busy)
        self.undo_action.setText(f"&Undo {stack.undoText()}".strip())
        self.redo_action.setText(f"&Redo {stack.redoText()}".strip())
        self.save_action.setEnabled(here and tab.result is not None and not tab.busy)
        self.cancel_action.setEnabled(here and tab.busy)
        self.open_action.setEnabled(not tab.busy)

    # ------------------------------------------------------------------ device lane

    @Slot(bool)
    def _on_restore_busy(self, busy: bool) -> None:
        self._restoring = busy
        self._sync_lane()

    @Slot(bool)
    def _on_train_running(self, running: bool) -> None:
        self._training = running
        self._sync_lane()

    @Slot(bool)
    def _on_queue_running(self, running: bool) -> None:
        self._queue_running = running
        self._sync_lane()

    def _sync_lane(self) -> None:
        """Whoever has the device keeps it; the others wait and say why."""
        restoring, training = self._restoring, self._training
        held = restoring or training
        if held != self._queue_held:  # set_held(False) restarts a queue that waits: only on a change
            self._queue_held = held
            self.queue_tab.set_held(held, "the Restore tab" if restoring else "a fine-tune (Train tab)")
        self.restore_tab.set_device_reserved(QUEUE_BUSY if self._queue_running else TRAIN_BUSY if training else "")
        self.train_tab.set_device_reserved(QUEUE_BUSY_TRAIN if self._queue_running
                                           else RESTORE_BUSY_TRAIN if restoring else "")

    @Slot(str)
    def _on_profile_saved(self, choice: str) -> None:
        """A new profile: list it wherever weights are chosen, and build no network from stale files."""
        self.restorers.clear()
        self.models_tab.refresh()
        self.set_status(f"{weights_title(choice)} saved: choose it in Models & settings, or with "
                        "“Restore with it” in the Train tab.")

    def queue_restorer(self) -> Restorer:
        """The album queue's networks: the same cache, weights and device as the Restore tab."""
        return self.restorers.get(self.settings.weights, choose_device(self.settings.device).device)

    def queue_options(self) -> RestoreOptions:
        """The album queue restores with the Restore tab's options as they are now."""
        panel = self.restore_tab.mask_panel
        return self.restore_tab.options_panel.options(panel.threshold, panel.dilation)

    # ------------------------------------------------------------------ files

    def open_paths(self, paths: list[Path]) -> str:
        """Route dropped or opened paths: one photo -> Restore tab; folders or several files ->
        Album queue. Returns the tab used ("restore", "queue") or "" when nothing could be opened."""
        paths = [Path(p) for p in paths]
        if not paths:
            return ""
        if len(paths) == 1 and not paths[0].is_dir():
            path = paths[0]
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                self.set_status(f"{path.name} is not a photo Heirloom can open "
                                f"({', '.join(sorted(s.lstrip('.') for s in IMAGE_SUFFIXES))}).")
                return ""
            self.tabs.setCurrentWidget(self.restore_tab)
            if not self.restore_tab.confirm_discard("Open another photo"):
                return ""
            return "restore" if self.restore_tab.load_image(path) else ""
        self.queue_tab.add_paths(paths)
        self.tabs.setCurrentWidget(self.queue_tab)
        return "queue"

    @staticmethod
    def _dropped_paths(event: QDragEnterEvent | QDropEvent) -> list[Path]:
        mime = event.mimeData()
        if not mime.hasUrls():
            return []
        return [Path(u.toLocalFile()) for u in mime.urls() if u.isLocalFile()]

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802 (Qt API)
        if self._dropped_paths(event):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dragMoveEvent(self, event) -> None:  # noqa: N802 (Qt API)
        self.dragEnterEvent(event)

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802 (Qt API)
        paths = self._dropped_paths(event)
        if not paths:
            event.ignore()
            return
        event.acceptProposedAction()
        self.open_paths(paths)

    def add_files_dialog(self) -> None:
        patterns = " ".join(f"*{s}" for s in sorted(IMAGE_SUFFIXES))
        files, _ = QFileDialog.getOpenFileNames(self, "Add photos to the album queue",
                                                str(self.settings.last_open_folder or ""),
                                                f"Images ({patterns});;All files (*)")
        if files:
            self.queue_tab.add_paths([Path(f) for f in files])
            self.tabs.setCurrentWidget(self.queue_tab)

    def add_folder_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Add a folder to the album queue",
                                                  str(self.settings.last_open_folder or ""))
        if folder:
            self.queue_tab.add_paths([Path(folder)])
            self.tabs.setCurrentWidget(self.queue_tab)

    @Slot(object, object)
    def review_queue_item(self, photo: Path, output: Path) -> bool:
        """A finished queue row was opened: the photo, its mask and its result in the compare view."""
        if self.restore_tab.busy:
            self.set_status("The Restore tab is busy; wait or cancel before opening a queue result.")
            return False
        self.tabs.setCurrentWidget(self.restore_tab)
        if not self.restore_tab.confirm_discard("Open a queue result"):
            return False
        return self.restore_tab.open_result(Path(photo), Path(output))

    @Slot(object)
    def _on_image_opened(self, path: Path) -> None:
        self.settings.add_recent_file(path)
        self.setWindowTitle(f"{path.name} — Heirloom")
        self._sync_actions()

    # Menu actions carry their target in data(), not in a lambda: a lambda holding ``self`` keeps
    # the window alive in a reference cycle until interpreter shutdown, where PySide's cleanup crashes.
    @Slot()
    def _on_recent_action(self) -> None:
        action = self.sender()
        if isinstance(action, QAction) and action.data():
            self.open_paths([Path(action.data())])

    @Slot()
    def _on_tab_action(self) -> None:
        action = self.sender()
        if isinstance(action, QAction):
            self.tabs.setCurrentIndex(int(action.data()))

    def _rebuild_recent_menu(self) -> None:
        menu = self.recent_menu
        menu.clear()
        recent = self.settings.recent_files
        for index, path in enumerate(recent, 1):
            action = menu.addAction(f"&{index % 10}  {path.name}")
            action.setData(str(path))
            action.triggered.connect(self._on_recent_action)
            action.setToolTip(str(path))
            action.setStatusTip(str(path))
            action.setEnabled(path.is_file())
        if recent:
            menu.addSeparator()
            menu.addAction("Clear recent files", self.settings.clear_recent_files)
        else:
            menu.addAction("No recent photos").setEnabled(False)

    # ------------------------------------------------------------------ dialogs and errors

    @Slot(str, str)
    def show_unexpected_error(self, message: str, details: str) -> None:
        """The global exception hook's report: status line plus one non-blocking dialog with
        copyable details (a burst of errors extends the open dialog instead of stacking boxes)."""
        self.set_status(message if len(message) <= 140 else message[:137] + "…")
        box = self._error_box
        if box is not None and box.isVisible():
            box.setDetailedText(f"{box.detailedText()}\n\n{details}".strip())
            return
        self._error_box = show_details_dialog(self, message, details, "Heirloom — unexpected error")
        self._error_box.destroyed.connect(self._forget_error_box)

    @Slot()
    def _forget_error_box(self) -> None:
        self._error_box = None

    def show_shortcuts(self) -> None:
        rows = [("Open photo", self.open_action), ("Save result", self.save_action), ("Undo", self.undo_action),
                ("Redo", self.redo_action), ("Detect scratches", self.detect_action),
                ("Restore", self.restore_action), ("Zoom in / out", self.zoom_in_action),
                ("Fit / 100%", self.zoom_fit_action), ("Show original", self.original_action),
                ("What changed", self.diff_action),
                ("Brush smaller / bigger", self.brush_smaller_action)]
        lines = []
        for name, action in rows:
            keys = action.shortcut().toString(QKeySequence.SequenceFormat.NativeText)
            if action is self.zoom_in_action:
                keys += " / " + self.zoom_out_action.shortcut().toString(QKeySequence.SequenceFormat.NativeText)
            elif action is self.zoom_fit_action:
                keys += " / " + self.zoom_100_action.shortcut().toString(QKeySequence.SequenceFormat.NativeText)
            elif action is self.brush_smaller_action:
                keys += " / " + self.brush_bigger_action.shortcut().toString(QKeySequence.SequenceFormat.NativeText)
            lines.append(f"<tr><td>{name}</td><td><b>{keys}</b></td></tr>")
        lines.append("<tr><td>Pan / Paint / Erase</td><td><b>H / B / E</b></td></tr>")
        lines.append("<tr><td>Pan while painting</td><td><b>hold Space</b>, or the middle button</td></tr>")
        lines.append("<tr><td>Zoom at the cursor</td><td><b>mouse wheel</b></td></tr>")
        QMessageBox.information(self, "Keyboard shortcuts", "<table cellspacing=6>" + "".join(lines) + "</table>")

    def show_about(self) -> None:
        from engine import __version__

        QMessageBox.about(self, "About Heirloom",
                          f"<b>Heirloom {__version__}</b><p>Restores old photos on your own computer: "
                          "scratches, fading and grain, offline, on the CPU or a GPU.</p>")

    # ------------------------------------------------------------------ closing

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 (Qt API)
        """Ask about an unsaved restoration, then stop every background job before the window (and
        the thread objects) go away."""
        if self.restore_tab.has_unsaved_work():
            self.tabs.setCurrentWidget(self.restore_tab)
            if not self.restore_tab.confirm_discard("Quit Heirloom"):
                event.ignore()
                return
        self.settings.window_geometry = self.saveGeometry()
        self.train_tab.shutdown()  # pauses a fine-tune with a checkpoint: resumable next time
        self.restore_tab.shutdown()
        self.queue_tab.shutdown()
        self.models_tab.shutdown()
        self.settings.sync()
        super().closeEvent(event)

    def tab_widget(self, key: str) -> QWidget:
        """The tab for ``restore``, ``queue``, ``train`` or ``models``."""
        return {"restore": self.restore_tab, "queue": self.queue_tab, "train": self.train_tab,
                "models": self.models_tab}[key]
