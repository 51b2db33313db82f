"""The Train tab end to end with tiny weights: a few detector steps on 64 px photos with drawn
masks; progress, losses and previews arrive; Pause / Resume continue from the checkpoint; Cancel
stops; closing the window pauses for next time; the saved profile is listed where weights are
chosen and restores a photo; folder counts and warnings; the device lane."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from PySide6.QtWidgets import QMessageBox

pytest.register_assert_rewrite("gui_fixtures")  # its helpers assert; imported below before pytest loads it

from gui_fixtures import JOB_TIMEOUT_MS, run_restore, wait_for_listing
from tiny_weights import make_labelled_photos, make_photos, make_tiny_weights

from engine.training.finetune.session import FinetuneSettings
from gui.main_window import QUEUE_BUSY_TRAIN, TRAIN_BUSY
from gui.train_worker import work_dir

pytest_plugins = ("gui_fixtures",)
pytestmark = pytest.mark.usefixtures("isolated_app", "one_torch_thread")

SMALL = FinetuneSettings(crop=64, batch=2, detect_side=64, image_side=96, eval_side=128, ckpt_every=2)
SHOTS = os.environ.get("HEIRLOOM_TEST_SHOTS")  # a folder to keep the tab's grabs in (to look at them)




@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return make_tiny_weights(tmp_path_factory.mktemp("tiny") / "weights")


@pytest.fixture
def labelled(tmp_path) -> tuple[Path, Path]:
    """Four 80 x 64 photos with scratches drawn on them, and masks of exactly those scratches."""
    make_labelled_photos(tmp_path / "photos", tmp_path / "masks", count=4, size=(64, 80))
    return tmp_path / "photos", tmp_path / "masks"


@pytest.fixture
def window(make_window, tiny):
    win = make_window()
    tab = win.train_tab
    tab.finetune_settings = SMALL
    tab.preview_every, tab.preview_seconds, tab.preview_count = 2, 1e9, 2
    tab.options.fill_bases(str(tiny), win.settings.weights)
    return win


def use_mask_folders(qtbot, tab, photos: Path, masks: Path) -> None:
    panel = tab.data_panel
    panel.folder_radio.click()
    panel.images_field.set_path(photos)
    panel.masks_field.set_path(masks)
    qtbot.waitUntil(lambda: not panel.checking and (panel.summary is not None or panel.problem != ""),
                    timeout=JOB_TIMEOUT_MS)


def set_steps(tab, steps: int) -> None:
    options = tab.options
    options.budget_unit.setCurrentIndex(options.budget_unit.findData("steps"))
    options.budget_spin.setValue(steps)


def grab(tab, name: str, tmp_path: Path) -> None:
    folder = Path(SHOTS) if SHOTS else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    assert tab.window().grab().save(str(folder / name), "PNG")


def test_a_tiny_finetune_pauses_resumes_saves_a_profile_that_restores(qtbot, window, labelled, tmp_path):
    tab = window.train_tab
    window.resize(1366, 768)
    window.tabs.setCurrentWidget(tab)
    photos, masks = labelled
    use_mask_folders(qtbot, tab, photos, masks)
    assert "<b>4</b> labelled photos" in tab.data_panel.summary_label.text()
    set_steps(tab, 100)  # lowered after the pause: a run this short could end before Pause is heard
    assert tab.start_button.isEnabled() and not tab.pause_button.isEnabled() and not tab.resume_button.isEnabled()
    steps: list[int] = []
    tab.stepped.connect(steps.append)

    tab.start_button.click()  # the buttons, as a user would
    assert tab.training and tab.cancel_button.isEnabled() and not tab.start_button.isEnabled()
    assert window.restore_tab._reserved_reason == TRAIN_BUSY and window.queue_tab._held  # the device lane
    qtbot.waitUntil(lambda: tab.step >= 2, timeout=JOB_TIMEOUT_MS)
    assert "ETA" in tab.progress_bar.format() and tab.progress_bar.value() > 0
    assert tab.chart.point_count() >= 2 * 3  # three losses per step
    grab(tab, "train-running.png", tmp_path)
    with qtbot.waitSignal(tab.run_done, timeout=JOB_TIMEOUT_MS) as done:
        tab.pause_button.click()
        assert not tab.pause_button.isEnabled()  # pausing: once is enough
    assert done.args == ["paused"]
    paused_at = tab.step
    assert 2 <= paused_at < 100 and steps == list(range(1, paused_at + 1))
    assert torch.load(work_dir() / "checkpoint.pt", weights_only=True)["step"] == paused_at
    assert tab.resume_button.isEnabled() and tab.save_button.isEnabled() and not tab.start_button.isEnabled()
    assert not tab.data_panel.images_field.isEnabled()  # the run's photos are fixed
    assert window.restore_tab._reserved_reason == "" and not window.queue_tab._held
    assert tab.previews.count == 1  # one photo in four is held out
    grab(tab, "train-paused.png", tmp_path)

    final = paused_at + 3
    set_steps(tab, final)  # the budget counts the whole run
    with qtbot.waitSignal(tab.run_done, timeout=JOB_TIMEOUT_MS) as done:
        tab.resume_button.click()
    assert done.args == ["finished"] and tab.session.state == "finished"
    assert steps == list(range(1, final + 1))  # continued from the checkpoint: no step twice, none lost
    assert tab.chart.point_count() == final * 3 and tab.previews.step == final
    assert not tab.resume_button.isEnabled()  # the budget is spent (raise it to train further)
    assert "Finished" in tab.status_label.text()

    assert not tab.save_profile("no/slashes")
    assert "not allowed" in tab.save_message.text()
    with qtbot.waitSignal(tab.profile_saved, timeout=JOB_TIMEOUT_MS) as saved:
        assert tab.save_profile("mine", force=True)  # a few random steps may score worse: test_archivist
    assert saved.args == ["profile:mine"]
    assert f"Saved profile “mine” ({final} steps" in tab.save_message.text() and "f1" in tab.save_message.text()
    qtbot.waitUntil(lambda: not tab.busy, timeout=JOB_TIMEOUT_MS)
    grab(tab, "train-finished.png", tmp_path)
    tab.name_edit.setText("mine")
    tab.save_button.click()  # the button, as a user would
    assert "already exists" in tab.save_message.text() and not tab.busy

    # Listed where the Restore tab and the queue take their weights from; chosen, it restores.
    wait_for_listing(qtbot, window)
    combo = window.models_tab.profile_combo
    index = combo.findData("profile:mine")
    assert index >= 0
    combo.setCurrentIndex(index)
    combo.activated.emit(index)
    assert window.settings.weights == "profile:mine"
    assert window.restore_tab.load_image(photos / "photo0.png")
    assert run_restore(qtbot, window) == "finished", window.restore_tab.error_label.text()
    assert window.restore_tab.result.image.shape[:2] == (64, 80)


def test_cancel_stops_and_closing_the_window_pauses_for_next_time(qtbot, window, make_window, labelled, monkeypatch):
    tab = window.train_tab
    use_mask_folders(qtbot, tab, *labelled)
    set_steps(tab, 500)
    assert tab.start()
    qtbot.waitUntil(lambda: tab.step >= 1, timeout=JOB_TIMEOUT_MS)
    with qtbot.waitSignal(tab.run_done, timeout=JOB_TIMEOUT_MS) as done:
        tab.cancel_button.click()
    assert done.args == ["cancelled"] and tab.session.state == "cancelled"
    assert not tab.busy and tab.runner.task is None  # the worker thread has ended
    assert tab.resume_button.isEnabled() and not tab.save_button.isEnabled()

    stopped = tab.step
    assert tab.resume()
    qtbot.waitUntil(lambda: tab.step >= stopped + 2, timeout=JOB_TIMEOUT_MS)
    window.close()  # pauses after the current step, with a checkpoint
    assert not tab.busy
    saved = torch.load(work_dir() / "checkpoint.pt", weights_only=True)["step"]
    assert saved >= stopped + 2

    again = make_window().train_tab  # next time: the run is found, with its chart
    assert again.run_state == "paused" and again.step == saved
    assert again.resume_button.isEnabled() and not again.start_button.isEnabled()
    assert again.chart.point_count() == saved * 3 and "last time" in again.status_label.text()
    assert again.data_panel.masks_field.edit.text() == str(labelled[1])
    with qtbot.waitSignal(again.profile_saved, timeout=JOB_TIMEOUT_MS):  # saved as it is: loads the checkpoint
        assert again.save_profile("as-left", force=True)
    qtbot.waitUntil(lambda: not again.busy, timeout=JOB_TIMEOUT_MS)
    assert f"({saved} steps" in again.save_message.text()

    asked = []
    monkeypatch.setattr(QMessageBox, "question", lambda *args: asked.append(args) or QMessageBox.StandardButton.Yes)
    again.new_button.click()
    assert asked and not work_dir().exists() and not again.resume_button.isEnabled()
    qtbot.waitUntil(lambda: again.start_button.isEnabled(), timeout=JOB_TIMEOUT_MS)


def test_a_pause_asked_for_while_preparing_stops_after_the_first_step(qtbot, window, labelled):
    tab = window.train_tab
    use_mask_folders(qtbot, tab, *labelled)
    set_steps(tab, 100)
    with qtbot.waitSignal(tab.run_done, timeout=JOB_TIMEOUT_MS) as done:
        assert tab.start() and tab.step == 0
        tab.pause()  # still loading the photos and the base weights
        assert tab.runner.task.is_paused and tab.pausing and not tab.pause_button.isEnabled()
        assert "Pausing" in tab.status_label.text()
    assert done.args == ["paused"] and tab.step == 1
    assert torch.load(work_dir() / "checkpoint.pt", weights_only=True)["step"] == 1
    assert tab.resume_button.isEnabled() and not tab.busy


def test_folder_counts_warnings_and_the_device_lane(qtbot, window, labelled, tmp_path):
    tab = window.train_tab
    panel = tab.data_panel
    qtbot.waitUntil(lambda: not panel.checking, timeout=JOB_TIMEOUT_MS)
    assert "(0 brushed, 0 accepted, 0 detected-only (not used))" in panel.brushed_radio.text()
    assert "no labelled photos" in panel.summary_label.text() and not tab.start_button.isEnabled()

    photos, masks = labelled
    window.masks.save(photos / "photo1.png", np.asarray(Image.open(masks / "photo1.png")) > 0)
    tab.refresh()
    qtbot.waitUntil(lambda: not panel.checking, timeout=JOB_TIMEOUT_MS)
    assert "(1 brushed, 0 accepted, 0 detected-only (not used))" in panel.brushed_radio.text()
    assert "only one labelled photo" in panel.summary_label.text() and tab.start_button.isEnabled()

    panel.folder_radio.click()
    panel.images_field.set_path(photos)
    panel.masks_field.set_path(tmp_path / "nowhere")
    qtbot.waitUntil(lambda: not panel.checking, timeout=JOB_TIMEOUT_MS)
    assert "not found" in panel.summary_label.text() and not tab.start_button.isEnabled()

    panel.set_task("domain")
    assert "Choose the folder of your old scans" in panel.summary_label.text()
    panel.scans_field.set_path(make_photos(tmp_path / "scans", count=2, old=True))
    qtbot.waitUntil(lambda: not panel.checking, timeout=JOB_TIMEOUT_MS)
    text = panel.summary_label.text()
    assert "<b>2</b> scans" in text and "only 2 scan photos" in text and tab.start_button.isEnabled()

    window._on_queue_running(True)  # the album queue has the device: no training starts
    assert not tab.start_button.isEnabled() and tab.start_button.toolTip() == QUEUE_BUSY_TRAIN
    assert not tab.start()
    window._on_queue_running(False)
    assert tab.start_button.isEnabled()

    tab.options.fill_bases("default", window.settings.weights)  # not installed in these tests
    assert not tab.start_button.isEnabled() and "not installed" in tab.options.base_note.text()
