"""The main window: tabs, drops routed by kind, restore end to end (cancel, compare, save that never
overwrites), recent files and settings that survive a new window, shortcuts, the device lane."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from PySide6.QtCore import QMimeData, QObject, QPoint, Qt, QTimer, QUrl, Slot
from PySide6.QtGui import QDropEvent

pytest.register_assert_rewrite("gui_fixtures")  # its helpers assert; imported below before pytest loads it

from gui_fixtures import JOB_TIMEOUT_MS, make_photo, run_restore, use_weights

from engine.core.pipeline import Restorer
from gui.main_window import QUEUE_BUSY, MainWindow
from gui.settings import Settings
from gui.workers import RestorerCache

pytest_plugins = ("gui_fixtures",)
pytestmark = pytest.mark.usefixtures("isolated_app")


def drop(win: MainWindow, paths: list[Path]) -> None:
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    event = QDropEvent(QPoint(10, 10), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                       Qt.KeyboardModifier.NoModifier)
    win.dropEvent(event)


def test_tabs_and_missing_default_weights_are_explained(qtbot, window, photo):
    assert window.windowTitle() == "Heirloom"
    assert [window.tabs.tabText(i) for i in range(window.tabs.count())] == [
        "Restore", "Album queue", "Train", "Models && settings"]
    assert window.train_tab.start_button.text() == "Start" and not window.train_tab.has_run
    tab = window.restore_tab
    assert tab.canvas.has_photo() is False and "Drop a photo here" in tab.canvas.hint()
    assert not tab.restore_button.isEnabled() and not window.save_action.isEnabled()
    # The missing weights are explained as soon as the window opens, with a way to fix them.
    assert tab.error_label.isVisible() and "default weights" in tab.error_label.text()
    assert "--weights" not in tab.error_label.text()  # command-line advice stays in the details
    assert tab.error_label.action_button.isVisible()
    tab.error_label.action_button.click()
    assert window.tabs.currentWidget() is window.models_tab
    assert "Weights: Heirloom default (missing)" == window.weights_label.text()
    assert window.device_label.text() == "Device: cpu"

    assert tab.load_image(photo)
    assert tab.restore_button.isEnabled()
    assert run_restore(qtbot, window) == "failed"
    assert "default weights" in tab.error_label.text()
    assert "Weights" in window.status_label.text()
    assert tab.restore_button.isEnabled() and not tab.cancel_button.isEnabled()
    assert tab.result is None and not tab.save_button.isEnabled()


def test_unreadable_photo_is_reported(window, tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png at all")
    assert not window.restore_tab.load_image(bad)
    assert "Cannot open broken.png" in window.restore_tab.error_label.text()
    assert window.restore_tab.image is None and not window.restore_tab.restore_button.isEnabled()


def test_drops_route_one_photo_to_restore_and_folders_or_several_to_the_queue(window, photo, tmp_path):
    album = tmp_path / "album"
    album.mkdir()
    for i in range(3):
        make_photo(album / f"p{i}.png", seed=i)
    (album / "notes.txt").write_text("not a photo")

    drop(window, [photo])
    assert window.tabs.currentWidget() is window.restore_tab
    assert window.restore_tab.image_path == photo and window.restore_tab.canvas.has_photo()
    assert "photo.png" in window.restore_tab.caption_label.text()
    assert window.windowTitle() == "photo.png — Heirloom"

    drop(window, [album])
    assert window.tabs.currentWidget() is window.queue_tab
    assert len(window.queue_tab.queue.items) == 3

    window.tabs.setCurrentWidget(window.restore_tab)
    drop(window, [album / "p0.png", photo])  # several files: the queue, not the Restore tab
    assert window.tabs.currentWidget() is window.queue_tab
    assert len(window.queue_tab.queue.items) == 4
    assert window.restore_tab.image_path == photo

    window.tabs.setCurrentWidget(window.restore_tab)
    drop(window, [album / "notes.txt"])
    assert window.tabs.currentWidget() is window.restore_tab
    assert "not a photo" in window.status_label.text()


def test_restore_with_tiny_weights_compare_and_save(qtbot, make_window, photo, tiny_weights, shared_restorers,
                                                    tmp_path, monkeypatch):
    built = []
    original_init = Restorer.__init__

    def counting_init(self, bank):
        built.append(bank)
        original_init(self, bank)

    monkeypatch.setattr(Restorer, "__init__", counting_init)
    window = make_window(restorers=shared_restorers)
    use_weights(window, tiny_weights)
    tab = window.restore_tab
    tab.options_panel.scratch_combo.setCurrentIndex(1)  # off: quality mode (detection: test_restore_tab)
    assert not tab.error_label.isVisible()
    assert window.weights_label.text() == f"Weights: {tiny_weights.name}"
    assert tab.load_image(photo)
    assert not tab.compare_button.isEnabled()

    assert run_restore(qtbot, window) == "finished", tab.error_label.text()
    assert tab.result is not None
    assert tab.result.image.shape == (56, 40, 3) and tab.result.image.dtype == np.float32
    assert tab.canvas.has_after() and tab.canvas.split_visible()  # the result is shown in the split view
    assert tab.progress_bar.value() == tab.progress_bar.maximum()
    assert "Restored" in window.status_label.text()

    # Show original, then compare again; Compare off shows the result alone.
    tab.original_button.click()
    assert tab.canvas.before_only() and not tab.canvas.split_visible()
    assert "Before (original)" in tab.caption_label.text()
    tab.original_button.click()
    assert tab.canvas.split_visible()
    tab.compare_button.click()
    assert not tab.canvas.compare() and "After" in tab.caption_label.text()

    # Save: a new PNG of the photo's size; the original is refused and left byte-for-byte alone.
    assert window.save_action.isEnabled() and tab.save_button.isEnabled()
    assert tab.default_save_path() == photo.with_name("photo_restored.png")
    out = tmp_path / "out.png"
    assert tab.save_result(out, wait=True)
    with Image.open(out) as saved:
        assert saved.size == (40, 56) and saved.mode == "RGB"
    assert tab.save_result(tmp_path / "out.tif", wait=True) and (tmp_path / "out.tif").is_file()
    assert tab.save_result(tmp_path / "out.jpg", wait=True)
    with Image.open(tmp_path / "out.jpg") as saved:
        assert saved.format == "JPEG" and saved.size == (40, 56)
    assert tab.save_result(tmp_path / "noext", wait=True) and (tmp_path / "noext.png").is_file()
    before = photo.read_bytes()
    assert not tab.save_result(photo)
    assert "original" in tab.error_label.text()
    assert not tab.save_result(tmp_path / "sub" / ".." / "photo.png")  # same file, other spelling
    assert not tab.save_result(tmp_path / "photo.bmp")  # would become photo.png: the original again
    assert photo.read_bytes() == before

    # Later restores and the album queue reuse the loaded networks (cached per weights and device).
    assert len(built) <= 1  # built here, or by an earlier test sharing the cache
    assert window.queue_restorer() is window.restorers.get(str(tiny_weights), torch.device("cpu"))
    assert len(built) <= 1


def test_cancel_immediately(qtbot, make_window, photo, tiny_weights):
    window = make_window(restorers=RestorerCache())  # nothing loaded yet: Cancel lands while loading
    use_weights(window, tiny_weights)
    tab = window.restore_tab
    assert tab.load_image(photo)
    with qtbot.waitSignal(tab.restore_done, timeout=JOB_TIMEOUT_MS) as blocker:
        assert tab.start_restore()
        tab.cancel()
    assert blocker.args == ["cancelled"]
    assert "Cancelled" in window.status_label.text()
    assert tab.result is None
    assert tab.restore_button.isEnabled() and not tab.cancel_button.isEnabled()
    assert not window.save_action.isEnabled()


class CancelOnProgress(QObject):
    """Lives in the GUI thread and presses Cancel like a user would, on a given progress message."""

    def __init__(self, window: MainWindow, message: str) -> None:
        super().__init__()
        self.window, self.message = window, message

    @Slot(float, str)
    def on_progress(self, fraction: float, message: str) -> None:
        if message == self.message and self.window.restore_tab.cancel_button.isEnabled():
            self.window.restore_tab.cancel_button.click()


def test_cancel_from_first_progress_signal_stops_the_engine(qtbot, make_window, photo, tiny_weights,
                                                            shared_restorers, monkeypatch):
    """Cancel while the engine is inside restore(): the engine must raise Cancelled and stop."""
    original_restore = Restorer.restore
    calls = {"entered": 0, "returned": 0}

    def gated_restore(self, image, options, user_mask=None, progress=None):
        calls["entered"] += 1
        for _ in range(400):  # keep reporting: the test connects its canceller only after the start
            progress.report(0.0, "encoding")  # reaches the GUI as a progress signal
            if progress.cancel_event.wait(0.05):  # hold until the GUI cancels
                break
        assert progress.cancel_event.is_set()
        result = original_restore(self, image, options, user_mask, progress)
        calls["returned"] += 1
        return result

    monkeypatch.setattr(Restorer, "restore", gated_restore)
    window = make_window(restorers=shared_restorers)
    use_weights(window, tiny_weights)
    window.restore_tab.options_panel.scratch_combo.setCurrentIndex(1)  # off: straight to restore()
    tab = window.restore_tab
    assert tab.load_image(photo)

    canceller = CancelOnProgress(window, "encoding")
    with qtbot.waitSignal(tab.restore_done, timeout=JOB_TIMEOUT_MS) as blocker:
        assert tab.start_restore()
        tab.runner.task.progress.connect(canceller.on_progress)  # queued: runs in the GUI thread
    assert blocker.args == ["cancelled"]
    assert calls == {"entered": 1, "returned": 0}  # the real restore raised Cancelled
    assert "Cancelled" in window.status_label.text()
    assert tab.result is None and tab.restore_button.isEnabled()
    assert tab.progress_bar.value() == 0


def test_settings_and_recent_files_survive_a_new_window(qtbot, make_window, photo, tmp_path):
    settings_file = tmp_path / "mine.ini"
    first = make_window(settings_file)
    options = first.restore_tab.options_panel
    options.hr_checkbox.setChecked(True)
    options.tile_combo.setCurrentText("512")
    options.tile_combo.lineEdit().editingFinished.emit()
    first.models_tab.memory_spin.setValue(3.5)
    first.models_tab.set_weights("official")
    assert first.restore_tab.load_image(photo)
    assert [a.text() for a in first.recent_menu.actions()][0].endswith("photo.png")
    first.close()

    second = make_window(settings_file)
    s = second.settings
    assert (s.hr, s.tile, s.max_memory_gb, s.weights, s.device) == (True, 512, 3.5, "official", "cpu")
    assert s.recent_files == [photo.resolve()]
    assert second.restore_tab.options_panel.hr_checkbox.isChecked()
    assert second.restore_tab.options_panel.tile_combo.currentText() == "512"
    assert second.models_tab.official_radio.isChecked()
    assert "Official" in second.weights_label.text()
    recent = second.recent_menu.actions()[0]
    assert recent.isEnabled() and recent.toolTip() == str(photo.resolve())
    recent.trigger()
    assert second.restore_tab.image_path == photo.resolve()
    # Another settings file is another user: nothing leaks between them.
    assert Settings.from_file(tmp_path / "other.ini").weights == "default"


def test_shortcut_actions_act_on_the_restore_tab_only(window, photo):
    tab = window.restore_tab
    assert tab.load_image(photo)
    size = tab.canvas.brush_size()
    window.brush_bigger_action.trigger()
    assert tab.canvas.brush_size() > size
    window.brush_smaller_action.trigger()
    window.brush_smaller_action.trigger()
    assert tab.canvas.brush_size() < size
    assert window.undo_action.shortcut().toString() == "Ctrl+Z"
    assert "Ctrl+Shift+Z" in [s.toString() for s in window.redo_action.shortcuts()]

    mask = np.zeros((56, 40), bool)
    mask[10:20, 5:30] = True
    tab.canvas.set_mask(mask)
    assert window.undo_action.isEnabled()
    window.undo_action.trigger()
    assert not tab.canvas.mask().any()
    window.redo_action.trigger()
    assert tab.canvas.mask()[15, 10]
    window.tabs.setCurrentWidget(window.queue_tab)
    assert not window.undo_action.isEnabled() and not window.zoom_fit_action.isEnabled()
    window.tabs.setCurrentWidget(window.restore_tab)
    assert window.undo_action.isEnabled()


def test_one_device_lane_between_the_restore_tab_and_the_queue(window, photo):
    tab = window.restore_tab
    assert tab.load_image(photo)
    window.queue_tab.running_changed.emit(True)  # what the queue says when it takes the device
    assert not tab.restore_button.isEnabled() and tab.restore_button.toolTip() == QUEUE_BUSY
    assert not tab.start_restore() and "Pause it" in tab.error_label.text()
    window.queue_tab.running_changed.emit(False)
    assert tab.restore_button.isEnabled()
    tab.busy_changed.emit(True)
    assert window.queue_tab._held
    tab.busy_changed.emit(False)
    assert not window.queue_tab._held


def test_app_main_runs_the_event_loop_and_returns_an_exit_code(qapp, monkeypatch):
    """``python main.py`` without arguments ends up here: it must return an int, not raise."""
    import gui.app
    import gui.main_window

    shown = []
    monkeypatch.setattr(gui.main_window.MainWindow, "show", lambda self: shown.append(self))
    QTimer.singleShot(0, qapp.quit)
    assert gui.app.main() == 0
    assert len(shown) == 1 and shown[0].windowTitle() == "Heirloom"
    shown[0].close()
