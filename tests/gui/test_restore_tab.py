"""The Restore tab end to end with tiny random weights: detect -> overlay and sliders, brush -> the
mask reaches the engine and the MaskStore, undo across strokes and sliders, mask files, errors."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np
import pytest
import torch
from PySide6.QtCore import QPointF, Qt
from PySide6.QtWidgets import QApplication, QMessageBox

pytest.register_assert_rewrite("gui_fixtures")  # its helpers assert; imported below before pytest loads it

from engine.detection import mask_from_probability
from engine.masks import MaskStore
from engine.pipeline import RestoreResult, Restorer, as_float_rgb
from gui_fixtures import JOB_TIMEOUT_MS, run_detect, run_restore, use_weights

pytest_plugins = ("gui_fixtures",)
pytestmark = pytest.mark.usefixtures("isolated_app")


@pytest.fixture
def tab(make_window, photo, tiny_weights, shared_restorers):
    window = make_window(restorers=shared_restorers)
    use_weights(window, tiny_weights)
    assert window.restore_tab.load_image(photo)
    return window.restore_tab


def record_restores(monkeypatch, run_networks: bool) -> list:
    """Every Restorer.restore call's (options, user_mask); then the real restore runs, or (to save
    a network pass where other tests already run one) the photo comes back as its own result."""
    calls = []
    original = Restorer.restore

    def recording(self, image, options, user_mask=None, progress=None):
        calls.append((options, None if user_mask is None else user_mask.copy()))
        if run_networks:
            return original(self, image, options, user_mask, progress)
        progress.report(1.0, "done")
        return RestoreResult(as_float_rgb(image), options.mode(user_mask is not None), user_mask)

    monkeypatch.setattr(Restorer, "restore", recording)
    return calls


@pytest.fixture
def recorded(monkeypatch) -> list:
    return record_restores(monkeypatch, run_networks=True)


def paint_dab(qtbot, tab, x: float, y: float) -> None:
    """A real mouse press + release on the canvas at photo pixel (x, y), with the Paint tool."""
    tab.mask_panel.tool_buttons["paint"].click()
    pos = tab.canvas.photo_to_view(QPointF(x, y)).toPoint()
    qtbot.mousePress(tab.canvas.viewport(), Qt.MouseButton.LeftButton, pos=pos)
    qtbot.mouseRelease(tab.canvas.viewport(), Qt.MouseButton.LeftButton, pos=pos)


def test_detect_shows_the_overlay_and_the_sliders_recompute_the_mask(qtbot, tab):
    panel, canvas = tab.mask_panel, tab.canvas
    panel.overlay_checkbox.setChecked(False)
    assert run_detect(qtbot, tab.window()) == "finished", tab.error_label.text()
    prob = panel.probability
    assert prob is not None and prob.shape == (56, 40)
    assert canvas.overlay_visible() and panel.overlay_checkbox.isChecked()
    assert np.array_equal(canvas.mask(), prob >= panel.threshold)
    assert "Scratch mask covers" in tab.last_status

    before = canvas.mask()
    new_threshold = 0.5  # a random U-Net says about 0.497 everywhere: 0.40 marks all, 0.50 almost none
    panel.threshold_slider.setValue(int(new_threshold * 100))
    assert panel.threshold_value.text() == f"{new_threshold:.2f}"
    assert np.array_equal(canvas.mask(), mask_from_probability(prob, new_threshold, 0))
    assert not np.array_equal(canvas.mask(), before)
    panel.dilation_slider.setValue(2)
    assert np.array_equal(canvas.mask(), mask_from_probability(prob, new_threshold, 2))

    # Undo walks back through the slider changes, and the sliders follow.
    canvas.undo_stack.undo()
    assert panel.dilation == 0 and np.array_equal(canvas.mask(), mask_from_probability(prob, new_threshold, 0))
    canvas.undo_stack.undo()
    assert panel.threshold == pytest.approx(0.4) and np.array_equal(canvas.mask(), before)
    canvas.undo_stack.undo()  # the detection itself
    assert not panel.has_detection and not canvas.mask().any()
    canvas.undo_stack.redo()
    assert panel.has_detection and np.array_equal(canvas.mask(), before)

    panel.opacity_slider.setValue(80)
    assert canvas.overlay_opacity() == pytest.approx(0.8)


def test_brush_edits_survive_a_threshold_change(qtbot, tab):
    panel, canvas = tab.mask_panel, tab.canvas
    prob = np.tile(np.linspace(0.0, 1.0, 40, dtype=np.float32), (56, 1))  # damage grows to the right
    panel.adopt_detection(prob)
    detected = canvas.mask()
    assert np.array_equal(detected, prob >= 0.4)
    edited = detected.copy()
    painted = (slice(2, 6), slice(2, 6))  # far left: never detected
    edited[painted] = True
    erased = (30, 35)  # far right: detected at any threshold
    edited[erased] = False
    canvas.set_mask(edited)  # what a paint and an erase stroke leave behind
    for threshold in (0.3, 0.7):
        panel.threshold_slider.setValue(int(threshold * 100))
        expected = mask_from_probability(prob, threshold, 0)
        expected[painted] = True
        expected[erased] = False
        assert np.array_equal(canvas.mask(), expected)
    panel.dilation_slider.setValue(1)
    assert canvas.mask()[painted].all() and not canvas.mask()[erased]
    canvas.undo_stack.undo()
    canvas.undo_stack.undo()
    canvas.undo_stack.undo()
    assert np.array_equal(canvas.mask(), edited) and panel.threshold == pytest.approx(0.4)


def test_a_brushed_mask_reaches_the_engine_and_the_mask_store(qtbot, tab, make_window, tmp_path, monkeypatch):
    recorded = record_restores(monkeypatch, run_networks=False)
    tab.options_panel.scratch_combo.setCurrentIndex(tab.options_panel.scratch_combo.findData("off"))
    tab.mask_panel.brush_slider.setValue(6)
    paint_dab(qtbot, tab, 20, 28)
    brushed = tab.canvas.mask()
    assert brushed[28, 20] and brushed.sum() < brushed.size / 4
    assert tab.canvas.undo_stack.canUndo()

    assert run_restore(qtbot, tab.window()) == "finished", tab.error_label.text()
    options, user_mask = recorded[-1]
    assert np.array_equal(user_mask, brushed)
    assert not options.scratch and options.mask_dilation == 0  # exactly the mask shown, no detection
    assert tab.result.mode.value == "scratch"
    stored = MaskStore(tmp_path / "masks").load(tab.image_path, (56, 40))
    assert stored is not None and np.array_equal(stored, brushed)

    # The same photo in a new window comes back with its mask.
    again = make_window().restore_tab
    assert again.load_image(tab.image_path)
    assert np.array_equal(again.canvas.mask(), brushed)
    assert "stored mask (brushed)" in again.last_status


def test_opening_and_brushing_hash_the_photo_only_when_it_is_read(qtbot, make_window, photo, tmp_path,
                                                                   content_hashes):
    """The mask store is keyed by the photo's sha256, which reading the photo already computed: opening
    it (stored mask and origin) and every brush pause must not hash the scan again on the GUI thread."""
    tab = make_window().restore_tab
    MaskStore(tmp_path / "masks").save(photo, np.ones((56, 40), bool))  # opening finds a stored mask
    content_hashes.clear()
    assert tab.load_image(photo) and tab.canvas.mask().all()
    assert [name for name, _ in content_hashes] == ["sha256_bytes"]  # read_photo's, of the bytes it decoded
    tab.mask_panel.brush_slider.setValue(4)
    for x in (10, 30):
        tab.mask_panel.tool_buttons["erase"].click()
        pos = tab.canvas.photo_to_view(QPointF(x, 28)).toPoint()
        qtbot.mousePress(tab.canvas.viewport(), Qt.MouseButton.LeftButton, pos=pos)
        qtbot.mouseRelease(tab.canvas.viewport(), Qt.MouseButton.LeftButton, pos=pos)
        qtbot.waitUntil(lambda: not tab._mask_dirty, timeout=JOB_TIMEOUT_MS)  # the pause stored the strokes
    assert [name for name, _ in content_hashes] == ["sha256_bytes"]
    stored = MaskStore(tmp_path / "masks").load(photo, (56, 40))
    assert stored is not None and not stored[28, 10] and not stored[28, 30] and stored[0, 0]


def test_auto_detect_restore_detects_first_and_shows_the_mask_it_used(qtbot, tab, recorded):
    assert tab.options_panel.scratch_auto and not tab.mask_panel.has_detection
    assert run_restore(qtbot, tab.window()) == "finished", tab.error_label.text()
    options, user_mask = recorded[-1]
    assert not options.scratch  # the worker detected; the engine gets the finished mask
    panel = tab.mask_panel
    assert panel.has_detection
    expected = mask_from_probability(panel.probability, panel.threshold, panel.dilation)
    assert np.array_equal(user_mask if user_mask is not None else np.zeros_like(expected), expected)
    assert np.array_equal(tab.canvas.mask(), expected)

    # Once detected, the next restore takes the view's mask as it is: an erased pixel stays out,
    # nothing is detected again, and in HR mode the engine's own detection adds nothing back.
    edited = np.ones_like(expected)
    edited[3, 4] = False
    tab.canvas.set_mask(edited)
    job = tab.restore_job(torch.device("cpu"))
    assert job.detect is None and np.array_equal(job.user_mask, edited)
    assert not job.options.scratch and job.options.mask_dilation == 0
    tab.options_panel.hr_checkbox.setChecked(True)
    assert tab.restore_job(torch.device("cpu")).options.threshold > 1.0


def test_cancel_a_detection(qtbot, tab):
    with qtbot.waitSignal(tab.detect_done, timeout=JOB_TIMEOUT_MS) as blocker:
        assert tab.start_detect()
        tab.cancel()
    assert blocker.args == ["cancelled"]
    assert not tab.mask_panel.has_detection and tab.restore_button.isEnabled()


def test_a_failing_worker_shows_a_readable_message_with_details(qtbot, tab, monkeypatch):
    def broken(self, image, options, user_mask=None, progress=None):
        raise RuntimeError("kaboom in the mapping network")

    monkeypatch.setattr(Restorer, "restore", broken)
    tab.options_panel.scratch_combo.setCurrentIndex(1)
    assert run_restore(qtbot, tab.window()) == "failed"
    text = tab.error_label.text()
    assert "Something went wrong inside Heirloom" in text and "kaboom" in text
    assert "Traceback" not in text
    assert "Traceback" in tab.error_label.details and "broken" in tab.error_label.details
    assert tab.error_label.details_button.isVisible()
    tab.error_label.details_button.click()
    boxes = [w for w in QApplication.topLevelWidgets() if isinstance(w, QMessageBox) and w.isVisible()]
    assert boxes and "kaboom" in boxes[-1].detailedText()
    boxes[-1].close()

    def no_memory(self, image, options, user_mask=None, progress=None):
        raise MemoryError()

    monkeypatch.setattr(Restorer, "restore", no_memory)
    assert run_restore(qtbot, tab.window()) == "failed"
    assert "Not enough memory" in tab.error_label.text()
    assert tab.restore_button.isEnabled()  # the tab stays usable


def test_mask_files_and_the_original_is_never_overwritten(qtbot, tab, tmp_path):
    mask = np.zeros((56, 40), bool)
    mask[5:9, :] = True
    tab.canvas.set_mask(mask)
    out = tmp_path / "mask.png"
    assert tab.mask_panel.save_mask(out)
    tab.canvas.clear_mask()
    assert tab.mask_panel.load_mask(out)
    assert np.array_equal(tab.canvas.mask(), mask)
    before = tab.image_path.read_bytes()
    assert not tab.mask_panel.save_mask(tab.image_path)
    assert "never overwrites" in tab.error_label.text()
    assert tab.image_path.read_bytes() == before
    from PIL import Image

    Image.fromarray(np.zeros((10, 10), np.uint8)).save(tmp_path / "small.png")
    assert not tab.mask_panel.load_mask(tmp_path / "small.png")
    assert "10x10" in tab.error_label.text() and np.array_equal(tab.canvas.mask(), mask)


def test_hr_follows_the_official_dilation_and_options_are_locked_while_busy(qtbot, tab):
    options, panel = tab.options_panel, tab.mask_panel
    options.hr_checkbox.setChecked(True)
    assert panel.dilation == 3
    options.hr_checkbox.setChecked(False)
    assert panel.dilation == 0
    panel.set_params(0.4, 5)
    options.hr_checkbox.setChecked(True)
    assert panel.dilation == 5  # a value the user chose is kept
    with qtbot.waitSignal(tab.detect_done, timeout=JOB_TIMEOUT_MS):
        assert tab.start_detect()
        assert not options.hr_checkbox.isEnabled() and not panel.detect_button.isEnabled()
        assert tab.canvas.tool() == "pan"
    assert options.hr_checkbox.isEnabled() and panel.detect_button.isEnabled()


def test_zoom_buttons_and_label(qtbot, tab):
    tab.actual_button.click()
    assert tab.canvas.zoom() == pytest.approx(1.0)
    assert tab.zoom_label.text() == "Zoom 100%"
    tab.fit_button.click()
    assert tab.canvas.zoom() > 1.0  # a 40x56 photo is enlarged to fit


def test_restore_requires_a_photo_and_free_device(make_window):
    tab = make_window().restore_tab
    assert not tab.start_restore()
    assert "Open a photo first" in tab.error_label.text()


def test_engine_warnings_reach_the_status_line(qtbot, tab, monkeypatch):
    """What the engine could not do (here: a face that failed) is said, not swallowed."""
    def warned(self, image, options, user_mask=None, progress=None):
        progress.report(1.0, "done")
        result = RestoreResult(as_float_rgb(image), options.mode(user_mask is not None), user_mask)
        result.warnings.append("face 2 was left as it was (its crop is too small)")
        return result

    monkeypatch.setattr(Restorer, "restore", warned)
    assert run_restore(qtbot, tab.window()) == "finished", tab.error_label.text()
    assert "Note: face 2 was left as it was (its crop is too small)." in tab.last_status


def test_strength_control_reaches_the_engine_and_is_remembered(qtbot, tab, recorded):
    """"Weights' default" sends None (the card decides); a percentage is sent as a fraction and kept."""
    spin = tab.options_panel.strength_spin
    assert spin.value() == -1 and spin.text() == "Weights' default"
    assert run_restore(qtbot, tab.window()) == "finished", tab.error_label.text()
    spin.setValue(40)
    assert tab.window().settings.strength == 40
    assert run_restore(qtbot, tab.window()) == "finished", tab.error_label.text()
    assert [options.strength for options, _ in recorded] == [None, 0.4]


def test_the_status_line_says_which_strength_was_applied(qtbot, tab, monkeypatch):
    """With "Weights' default" the strength can be chosen per photo: the user is told which."""
    def chosen(self, image, options, user_mask=None, progress=None):
        progress.report(1.0, "done")
        return RestoreResult(as_float_rgb(image), options.mode(user_mask is not None), user_mask, strength=0.35)

    monkeypatch.setattr(Restorer, "restore", chosen)
    assert run_restore(qtbot, tab.window()) == "finished", tab.error_label.text()
    assert "strength 35 %" in tab.last_status, tab.last_status
