"""Issue #20, the archivist's workflow, tried as a person would in a real window: only reviewed masks
teach the detector; a fine-tune that got worse is not kept silently; unsaved work is asked about;
a finished queue row opens in the compare view and can be re-run with a fixed mask; redo by its
shortcut, live mask coverage, a thin default brush, a 100 % loupe, the "what changed" view; and
the small things (a clipped toggle label, Save…'s folder, library names in errors, missing X11
libraries)."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import QPoint, Qt
from PySide6.QtGui import QKeySequence
from PySide6.QtWidgets import QFileDialog

pytest.register_assert_rewrite("gui_fixtures")  # its helpers assert; imported below before pytest loads it

from gui_fixtures import JOB_TIMEOUT_MS, make_photo, run_restore, use_weights

import gui.main_window
import gui.prompts
from engine.core.detection import OFFICIAL_THRESHOLD
from engine.io.decode import ImageReadError, read_photo
from engine.jobs.album_queue import DONE
from engine.store.masks import ACCEPTED, BRUSHED, DETECTED
from engine.store.provenance import sha256_file, sidecar_path
from engine.training.finetune.data import find_labelled
from engine.training.finetune.job import DetectorData
from engine.training.verdict import judge
from gui.canvas import DEFAULT_BRUSH

pytest_plugins = ("gui_fixtures",)
pytestmark = pytest.mark.usefixtures("isolated_app", "one_torch_thread")


def answer(monkeypatch, reply: str) -> list[str]:
    """Answer the Save / Discard / Cancel question with ``reply``; returns the questions asked."""
    asked: list[str] = []

    def ask(_parent, title, text, details=""):
        asked.append(f"{title}: {text}")
        return reply

    monkeypatch.setattr(gui.prompts, "ask_unsaved", ask)
    return asked


def brush_dab(qtbot, tab) -> None:
    """One click with the Paint tool in the middle of the photo, as a person would."""
    tab.mask_panel.set_tool("paint")
    centre = tab.canvas.photo_rect_in_view().center().toPoint()
    qtbot.mousePress(tab.canvas.viewport(), Qt.MouseButton.LeftButton, pos=centre)
    qtbot.mouseRelease(tab.canvas.viewport(), Qt.MouseButton.LeftButton, pos=centre)


def fake_probability(shape: tuple[int, int]) -> np.ndarray:
    """A detector map rising from left to right: the threshold decides how much is damage."""
    h, w = shape
    return np.tile(np.linspace(0.0, 1.0, w, dtype=np.float32), (h, 1))


def share(text: str) -> float:
    """“Mask covers 12.3 % of the photo” -> 12.3"""
    return float(text.split("covers ")[1].split(" %")[0])


# ---------------------------------------------------------------------------- 1. reviewed masks

def test_only_reviewed_masks_are_counted_and_learned_from(qtbot, window, tmp_path):
    tab, panel = window.restore_tab, window.train_tab.data_panel
    detected, brushed, accepted = (make_photo(tmp_path / f"{n}.png", seed=i)
                                   for i, n in enumerate(("detected", "brushed", "accepted")))

    assert tab.load_image(detected)  # the detector's guess, never touched
    tab.mask_panel.adopt_detection(fake_probability((56, 40)))
    assert tab.mask_panel.origin == DETECTED and tab.mask_panel.accept_button.isEnabled()
    assert "Not reviewed" in tab.mask_panel.review_label.text()
    assert tab.load_image(brushed)  # detected, then corrected with the brush
    tab.mask_panel.adopt_detection(fake_probability((56, 40)))
    brush_dab(qtbot, tab)
    assert tab.mask_panel.origin == BRUSHED and "brushed by you" in tab.mask_panel.review_label.text()
    assert tab.load_image(accepted)  # detected, looked at, accepted as it is
    tab.mask_panel.adopt_detection(fake_probability((56, 40)))
    tab.mask_panel.accept_button.click()
    assert tab.mask_panel.origin == ACCEPTED and not tab.mask_panel.accept_button.isEnabled()
    tab.store_mask()

    assert window.masks.origin(detected) == DETECTED and window.masks.origin(brushed) == BRUSHED
    assert window.masks.origin(accepted) == ACCEPTED
    window.tabs.setCurrentWidget(window.train_tab)  # refreshes the counts
    qtbot.waitUntil(lambda: not panel.checking, timeout=JOB_TIMEOUT_MS)
    assert "1 brushed, 1 accepted, 1 detected-only (not used)" in panel.brushed_radio.text()
    text = panel.summary_label.text()
    assert "<b>2</b> labelled photos" in text and "detected-only mask(s) not used" in text

    pairs, summary = find_labelled(DetectorData(), window.masks)
    assert sorted(p.name for p, _ in pairs) == ["accepted.png", "brushed.png"]
    assert summary.counts["detected_only"] == 1
    assert sorted(e.photo.name for e in window.masks.entries(reviewed_only=True)) == ["accepted.png", "brushed.png"]

    # Reopened, the stored origin comes back; a new detection is a fresh, unreviewed guess.
    assert tab.load_image(brushed)
    assert tab.mask_panel.origin == BRUSHED
    tab.mask_panel.adopt_detection(fake_probability((56, 40)))
    tab.store_mask()
    assert window.masks.origin(brushed) == DETECTED


# ---------------------------------------------------------------------------- 2. worse fine-tune

class FakeSession:
    """Stands in for a finished fine-tune whose held-out F1 dropped from 1.000 to 0.458."""

    def __init__(self) -> None:
        self.step, self.device, self.saved = 40, "cpu", []
        self.before = {"f1": 1.0, "photos": 1.0}

    def evaluate(self) -> dict[str, float]:
        return {"f1": 0.458, "photos": 1.0}

    def save_profile(self, name: str, overwrite: bool = False, after=None):
        self.saved.append(name)
        return SimpleNamespace(name=name, card={"steps": self.step}, metrics={"before": self.before, "after": after})


def test_a_worse_finetune_is_not_kept_silently(qtbot, window, tmp_path):
    tab = window.train_tab
    window.resize(1366, 768)
    window.tabs.setCurrentWidget(tab)
    session = FakeSession()
    tab.job, tab.session, tab.run_state, tab.step = SimpleNamespace(budget=None, task="detector"), session, "finished", 40
    tab.name_edit.setText("worse")
    saved: list[str] = []
    tab.profile_saved.connect(saved.append)

    assert tab.save_profile()
    qtbot.waitUntil(lambda: not tab.busy, timeout=JOB_TIMEOUT_MS)
    message = tab.save_message.text()
    assert session.saved == [] and saved == []  # kept back: the base weights are better
    assert "Not saved" in message and "1.000 → 0.458" in message and "base weights" in message
    assert "too few to judge" in message  # one held-out photo
    assert tab.keep_worse_button.isVisible() and not tab.use_button.isVisible()
    if os.environ.get("HEIRLOOM_TEST_SHOTS"):
        window.grab().save(str(Path(os.environ["HEIRLOOM_TEST_SHOTS"]) / "train-worse-finetune.png"), "PNG")

    tab.keep_worse_button.click()  # the person read why and insists
    qtbot.waitUntil(lambda: not tab.busy, timeout=JOB_TIMEOUT_MS)
    assert session.saved == ["worse"] and saved == ["profile:worse"]
    assert "WORSE" in tab.save_message.text() and not tab.keep_worse_button.isVisible()


def test_verdict_reads_the_direction_of_each_score():
    assert judge({"f1": 0.5}, {"f1": 0.6, "photos": 8}).worse is False
    assert judge({"f1": 0.5}, {"f1": 0.4, "photos": 8}).worse is True
    assert judge({"domain_gap": 0.2}, {"domain_gap": 0.3, "held_out": 9}).worse is True  # lower is better
    assert judge({"f1": 0.5}, {"f1": 0.6, "photos": 8}).warnings == []
    assert "too few" in judge({"f1": 1.0}, {"f1": 1.0, "photos": 2}).warnings[0]
    assert judge({}, {}).warnings and not judge({}, {}).worse


# ---------------------------------------------------------------------------- 3. unsaved work

def test_quitting_or_opening_with_an_unsaved_restore_asks(qtbot, make_window, photo, tiny_weights,
                                                         shared_restorers, tmp_path, monkeypatch):
    window = make_window(restorers=shared_restorers)
    use_weights(window, tiny_weights)
    tab = window.restore_tab
    tab.options_panel.scratch_combo.setCurrentIndex(1)  # quality mode: quick
    other = make_photo(tmp_path / "other.png", seed=7)
    assert tab.load_image(photo)
    asked = answer(monkeypatch, gui.prompts.DISCARD)
    assert window.open_paths([other]) == "restore" and asked == []  # nothing restored: nothing to lose
    assert tab.load_image(photo)
    assert run_restore(qtbot, window) == "finished", tab.error_label.text()
    assert tab.has_unsaved_work()

    asked = answer(monkeypatch, gui.prompts.CANCEL)
    window.activateWindow()
    qtbot.keyClick(window, Qt.Key.Key_Q, Qt.KeyboardModifier.ControlModifier)  # Ctrl+Q
    assert len(asked) == 1 and "Quit" in asked[0] and "photo.png" in asked[0]
    assert window.isVisible()  # cancelled: nothing closed
    window.close()  # the window's close button
    assert len(asked) == 2 and window.isVisible()
    assert window.open_paths([other]) == "" and tab.image_path == photo and tab.result is not None
    tab.open_sample()
    assert len(asked) == 4 and tab.image_path == photo

    # Save: the file dialog suggests next to the original; the restore is written, then it opens.
    answer(monkeypatch, gui.prompts.SAVE)
    suggested = []

    def save_dialog(_parent, _title, start, _filters):
        suggested.append(start)
        return str(tmp_path / "kept.png"), ""

    monkeypatch.setattr(QFileDialog, "getSaveFileName", save_dialog)
    assert window.open_paths([other]) == "restore"
    assert (tmp_path / "kept.png").is_file() and tab.image_path == other
    assert Path(suggested[0]).parent == photo.parent

    # Discard: the restore is dropped and the window closes when asked to.
    assert tab.load_image(photo)
    assert run_restore(qtbot, window) == "finished", tab.error_label.text()
    asked = answer(monkeypatch, gui.prompts.DISCARD)
    window.close()
    assert len(asked) == 1 and not window.isVisible()


# ---------------------------------------------------------------------------- 4. queue review

def test_a_finished_queue_row_opens_in_the_compare_view_and_reruns_with_a_fixed_mask(
        qtbot, make_window, photo, tiny_weights, shared_restorers, tmp_path):
    window = make_window(restorers=shared_restorers)
    use_weights(window, tiny_weights)
    queue, tab = window.queue_tab, window.restore_tab
    mask = np.zeros((56, 40), bool)
    mask[5:50, 20] = True  # the crack the queue restored with
    window.masks.save(photo, mask, BRUSHED)
    out = tmp_path / "restored" / "photo_restored.png"
    out.parent.mkdir()
    restored = 255 - np.asarray(Image.open(photo).convert("RGB"))
    restored[:, :20] = np.asarray(Image.open(photo).convert("RGB"))[:, :20]  # changed on the right only
    Image.fromarray(restored).save(out)
    sidecar_path(out).write_text(json.dumps({"options": {"mode": "quality"}}), encoding="utf-8")
    assert queue.add_paths([photo]) == 1
    item = queue.model.item(0)
    queue.queue.finish(item, DONE, output=out)
    queue.model.refresh(item.id)
    window.tabs.setCurrentWidget(queue)

    rect = queue.table.visualRect(queue.model.index(0, 1))
    qtbot.mouseClick(queue.table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert queue.review_button.isEnabled()
    qtbot.mouseDClick(queue.table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert window.tabs.currentWidget() is tab
    assert tab.image_path == photo and tab.canvas.has_after() and tab.canvas.split_visible()
    assert (tab.canvas.mask() == mask).all() and tab.mask_panel.origin == BRUSHED
    assert "quality mode" in tab.caption_label.text() and "album queue" in window.status_label.text()
    assert tab.default_save_path() == out and not tab.has_unsaved_work()
    assert np.array_equal(tab._after_u8, restored)
    assert not tab.save_result(tmp_path / "copy.png")  # the queue's file is saved already, with its record
    assert "Nothing new to save" in tab.error_label.text() and not (tmp_path / "copy.png").exists()

    # "What changed": the untouched left half stays dim grey, the changed right half lights up.
    tab.diff_button.click()
    assert "What changed" in tab.caption_label.text()
    view = tab.canvas.grab().toImage()
    assert view.width() > 0
    from gui.restore_tab import difference_map
    diff = difference_map(tab.image, tab._after_u8)
    assert diff[:, :20, 1:].max() < 100 and (diff[:, 25:, 0] > 200).mean() > 0.5
    tab.diff_button.click()

    # Fix the mask, restore again, Save over the queue's file: its record now describes the new file.
    tab.mask_panel.overlay_checkbox.setChecked(True)
    brush_dab(qtbot, tab)
    assert run_restore(qtbot, window) == "finished", tab.error_label.text()
    assert tab.has_unsaved_work()
    before = out.read_bytes()
    assert tab.save_result(tab.default_save_path(), wait=True)
    record = json.loads(sidecar_path(out).read_text())
    assert out.read_bytes() != before and record["output"]["sha256"] == sha256_file(out)
    assert record["input"]["sha256"] == sha256_file(photo) and record["command"] == ["heirloom", "gui", "restore-tab"]
    assert photo.is_file()


def test_a_row_that_is_not_finished_does_not_open(qtbot, window, photo):
    queue = window.queue_tab
    assert queue.add_paths([photo]) == 1
    assert not queue.open_row(0) and "no restored file" in queue.status_label.text()
    assert window.restore_tab.image_path is None


# ---------------------------------------------------------------------------- 5. precision tools

class DesktopKeys(QKeySequence):
    """The key bindings of desktops (GNOME, macOS) whose first Redo key is Ctrl+Shift+Z itself."""

    def __init__(self, *args) -> None:
        if args and isinstance(args[0], QKeySequence.StandardKey) and args[0] == QKeySequence.StandardKey.Redo:
            args = ("Ctrl+Shift+Z",)
        super().__init__(*args)

    @staticmethod
    def keyBindings(key):  # noqa: N802 (Qt API)
        if isinstance(key, QKeySequence.StandardKey) and key == QKeySequence.StandardKey.Redo:
            return [QKeySequence("Ctrl+Shift+Z"), QKeySequence("Ctrl+Y")]
        return QKeySequence.keyBindings(key)


def test_redo_works_by_its_shortcut(qtbot, make_window, photo, monkeypatch):
    monkeypatch.setattr(gui.main_window, "QKeySequence", DesktopKeys)
    window = make_window()
    tab = window.restore_tab
    assert tab.load_image(photo)
    keys = [s.toString() for s in window.redo_action.shortcuts()]
    assert keys.count("Ctrl+Shift+Z") == 1  # listed twice, Qt calls it ambiguous and does nothing
    mask = np.zeros((56, 40), bool)
    mask[10:20, 5:30] = True
    tab.canvas.set_mask(mask)
    window.activateWindow()
    tab.canvas.setFocus()
    qtbot.keyClick(tab.canvas, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert not tab.canvas.mask().any()
    qtbot.keyClick(tab.canvas, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    assert tab.canvas.mask()[15, 10]


def test_coverage_follows_the_threshold_and_brushing_is_fine_by_default(qtbot, window, tmp_path):
    tab = window.restore_tab
    big = make_photo(tmp_path / "big.png", size=(1600, 1200))
    assert tab.load_image(big)
    assert tab.canvas.brush_size() == DEFAULT_BRUSH <= 8  # thin cracks first
    tab.mask_panel.adopt_detection(fake_probability((1200, 1600)))
    first = tab.mask_panel.coverage_label.text()
    assert first.startswith("Mask covers ") and abs(share(first) - (1 - OFFICIAL_THRESHOLD) * 100) < 1.5
    tab.mask_panel.threshold_slider.setValue(80)  # as a release of the slider does
    assert abs(share(tab.mask_panel.coverage_label.text()) - 20.0) < 1.5

    # The loupe: while brushing a photo shown below 100 %, the cursor's surroundings at 100 %.
    tab.mask_panel.set_tool("paint")
    assert tab.canvas.zoom() < 1
    centre = tab.canvas.photo_rect_in_view().center().toPoint()
    qtbot.mouseMove(tab.canvas.viewport(), pos=centre)
    assert tab.canvas.loupe_visible()
    tab.zoom_100()
    qtbot.mouseMove(tab.canvas.viewport(), pos=centre + QPoint(1, 1))
    assert not tab.canvas.loupe_visible()  # at 100 % the view itself is the loupe


# ---------------------------------------------------------------------------- 6. small things

def test_toggle_labels_fit_save_suggests_next_to_the_original_and_errors_name_no_library(
        qtbot, window, photo, tmp_path, monkeypatch):
    tab = window.restore_tab
    for button in (tab.original_button, tab.compare_button, tab.diff_button):
        # The checked style pads 10 px a side: the label must still fit when the button is pressed.
        assert button.minimumWidth() >= button.fontMetrics().horizontalAdvance(button.text()) + 20
    window.settings.last_save_folder = tmp_path / "somewhere-else"
    assert window.settings.output_folder is None  # "Next to the original photo"
    assert tab.load_image(photo)
    assert tab.default_save_path().parent == photo.parent
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a photo at all")
    with pytest.raises(ImageReadError) as caught:
        read_photo(broken)
    assert "Pillow" not in str(caught.value)
    assert not tab.load_image(broken) and "Pillow" not in tab.error_label.text()


def test_missing_x11_libraries_are_named_and_the_app_exits_cleanly(qapp, monkeypatch, capsys):
    import ctypes.util

    import gui.app

    monkeypatch.setattr(ctypes.util, "find_library", lambda name: None if name == "xcb-cursor" else "lib" + name)
    assert gui.app.missing_x11_libraries("linux", {"DISPLAY": ":0"}) == ["libxcb-cursor0"]
    assert gui.app.missing_x11_libraries("linux", {"DISPLAY": ":0", "QT_QPA_PLATFORM": "offscreen"}) == []
    assert gui.app.missing_x11_libraries("win32", {}) == []
    monkeypatch.setattr(gui.app, "missing_x11_libraries", lambda: ["libxcb-cursor0"])
    monkeypatch.setattr("PySide6.QtWidgets.QApplication.instance", staticmethod(lambda: None))
    assert gui.app.main([]) == 1
    err = capsys.readouterr().err
    assert "sudo apt install libxcb-cursor0" in err and "could not load" not in err.lower()
