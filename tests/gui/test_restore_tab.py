"""The Restore tab end to end with tiny random weights: detect -> overlay and sliders, brush -> the
mask reaches the engine and the MaskStore, undo across strokes and sliders, mask files, errors,
the engine's one mask policy (the same mask as the CLI, no detector run for nothing) and Save…
through the engine's one save path, off the GUI thread, with its provenance record."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import json
import threading

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from PySide6.QtCore import QPointF, Qt
from PySide6.QtWidgets import QApplication, QMessageBox

pytest.register_assert_rewrite("gui_fixtures")  # its helpers assert; imported below before pytest loads it

from conftest import bank_for
from gui_fixtures import JOB_TIMEOUT_MS, run_detect, run_restore, use_weights

import engine.core.detection
import engine.jobs.batch
from engine.cli.app import main as cli_main
from engine.core.detection import mask_from_probability
from engine.core.pipeline import (
    Restorer,
    RestoreResult,
    as_float_rgb,
    required_networks,
)
from engine.core.translation import Mode
from engine.io.decode import read_mask
from engine.store.masks import MaskStore
from engine.store.provenance import sha256_file, sidecar_path
from gui.workers import RestorerCache

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


def stand_in_detector(monkeypatch) -> list[tuple[int, int]]:
    """Replace the detector network by a rule, darker = more damaged, so that thresholds at the
    slider's 0.01 steps split the photo (a random U-Net says about 0.497 everywhere). Returns the
    input size of every detector run from now on."""
    runs: list[tuple[int, int]] = []

    def detector(bank, grey, size, antialias):
        runs.append(size)
        return F.interpolate(grey, size=size, mode="bilinear", align_corners=False) * -6.0

    monkeypatch.setattr(engine.core.detection, "run_detector", detector)
    return runs


class OneRestorer(RestorerCache):
    """A cache that hands out one given restorer, whatever weights are chosen."""

    def __init__(self, restorer: Restorer) -> None:
        super().__init__()
        self.restorer = restorer

    def get(self, weights: str, device: torch.device) -> Restorer:
        return self.restorer


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


def test_auto_detect_restore_detects_in_the_engine_and_shows_the_mask_it_used(qtbot, tab, recorded, monkeypatch):
    runs = stand_in_detector(monkeypatch)
    assert tab.options_panel.scratch_auto and not tab.mask_panel.has_detection
    assert run_restore(qtbot, tab.window()) == "finished", tab.error_label.text()
    options, user_mask = recorded[-1]
    assert options.detect and user_mask is None  # the engine's mask policy detects; no strokes to add
    assert len(runs) == 1
    panel = tab.mask_panel
    assert panel.has_detection
    expected = mask_from_probability(panel.probability, panel.threshold, panel.dilation)
    assert 0 < expected.mean() < 1
    assert np.array_equal(tab.result.mask, expected) and np.array_equal(tab.canvas.mask(), expected)

    # Once detected, the next restore takes the view's mask as it is: an erased pixel stays out and
    # nothing is detected again; in HR mode neither.
    edited = np.ones_like(expected)
    edited[3, 4] = False
    tab.canvas.set_mask(edited)
    job = tab.restore_job(torch.device("cpu"))
    assert not job.options.detect and np.array_equal(job.user_mask, edited)
    assert run_restore(qtbot, tab.window()) == "finished", tab.error_label.text()
    assert len(runs) == 1 and np.array_equal(tab.result.mask, edited)
    tab.options_panel.hr_checkbox.setChecked(True)
    hr_job = tab.restore_job(torch.device("cpu"))
    assert hr_job.options.hr and not hr_job.options.detect
    assert "detector" not in required_networks(hr_job.options, has_user_mask=True)


def test_an_hr_restore_detects_once_then_never_and_strokes_are_not_grown(qtbot, tab, monkeypatch):
    """HR used to run the detector twice on a first restore (the worker's, then the engine's,
    thrown away) and once on every later one; now the engine detects once, when the view has no
    detection yet, and grows only what it detected."""
    monkeypatch.setattr(tab, "restorers", OneRestorer(Restorer(bank_for())))  # tiny weights have no HR network
    runs = stand_in_detector(monkeypatch)
    panel = tab.mask_panel
    tab.options_panel.hr_checkbox.setChecked(True)
    assert panel.dilation == 3
    strokes = np.zeros((56, 40), bool)
    strokes[50, 35] = True  # one brushed pixel, far from the detected (dark) corner
    tab.canvas.set_mask(strokes)
    assert run_restore(qtbot, tab.window()) == "finished", tab.error_label.text()
    assert len(runs) == 1 and tab.result.mode is Mode.HR
    detected = mask_from_probability(panel.probability, panel.threshold, 3)
    assert 0 < detected.mean() < 0.9 and not detected[45:56, 30:40].any()
    assert np.array_equal(tab.result.mask, detected | strokes) and np.array_equal(tab.canvas.mask(), detected | strokes)
    assert tab.result.mask[49:52, 34:37].sum() == 1  # the brushed pixel, exactly

    edited = tab.canvas.mask().copy()
    edited[0, 0] = False  # erase a detected pixel: it must stay out
    tab.canvas.set_mask(edited)
    assert run_restore(qtbot, tab.window()) == "finished", tab.error_label.text()
    assert len(runs) == 1 and tab.result.mode is Mode.HR and np.array_equal(tab.result.mask, edited)


def test_the_tab_and_the_cli_repair_the_same_mask_and_write_the_same_record(qtbot, tab, tiny_weights, tmp_path,
                                                                            monkeypatch):
    stand_in_detector(monkeypatch)
    strokes = np.zeros((56, 40), bool)
    strokes[48:51, 33:36] = True
    Image.fromarray(strokes.astype(np.uint8) * 255).save(tmp_path / "strokes.png")
    cli_out = tmp_path / "cli"
    assert cli_main(["restore", str(tab.image_path), "-o", str(cli_out), "--weights", str(tiny_weights), "--scratch",
                     "--mask", str(tmp_path / "strokes.png"), "--save-mask", "--device", "cpu"]) == 0
    cli_mask = read_mask(cli_out / "photo_mask.png")
    assert cli_mask[strokes].all() and 0.1 < cli_mask.mean() < 0.9

    # Auto-detect with the strokes brushed and no detection yet: the restore detects and adds them.
    tab.canvas.set_mask(strokes)
    assert run_restore(qtbot, tab.window()) == "finished", tab.error_label.text()
    assert np.array_equal(tab.result.mask, cli_mask) and np.array_equal(tab.canvas.mask(), cli_mask)
    assert tab.save_result(tmp_path / "tab.png", wait=True), tab.error_label.text()
    cli_record = json.loads(sidecar_path(cli_out / "photo.png").read_text())
    tab_record = json.loads(sidecar_path(tmp_path / "tab.png").read_text())
    assert tab_record.keys() == cli_record.keys() and tab_record["options"].keys() == cli_record["options"].keys()
    assert tab_record["options"]["restore"] == cli_record["options"]["restore"]
    assert tab_record["mask"]["source"] == cli_record["mask"]["source"] == "both"
    assert tab_record["weights"]["files"] == cli_record["weights"]["files"]

    # Detect first, then restore the view's mask as it is: the same mask again.
    tab.canvas.set_mask(strokes)
    assert run_detect(qtbot, tab.window()) == "finished", tab.error_label.text()
    assert np.array_equal(tab.canvas.mask(), cli_mask)
    assert run_restore(qtbot, tab.window()) == "finished", tab.error_label.text()
    assert np.array_equal(tab.result.mask, cli_mask)


def test_save_encodes_off_the_gui_thread_and_writes_the_provenance_record(qtbot, tab, tiny_weights, tmp_path,
                                                                         monkeypatch):
    encoded_on = []
    encode = engine.jobs.batch.encode

    def recording_encode(*args, **kwargs):
        encoded_on.append(threading.current_thread())
        return encode(*args, **kwargs)

    monkeypatch.setattr(engine.jobs.batch, "encode", recording_encode)
    tab.options_panel.scratch_combo.setCurrentIndex(tab.options_panel.scratch_combo.findData("off"))
    assert run_restore(qtbot, tab.window()) == "finished", tab.error_label.text()
    out = tmp_path / "kept" / "photo.jpg"
    with qtbot.waitSignal(tab.save_done, timeout=JOB_TIMEOUT_MS) as blocker:
        assert tab.save_result(out)
        assert not tab.save_button.isEnabled() and not tab.restore_button.isEnabled()  # one job at a time
    assert blocker.args == ["finished"], tab.error_label.text()
    assert encoded_on and threading.main_thread() not in encoded_on
    assert tab.result_saved and f"Saved {out}" in tab.last_status and tab.save_button.isEnabled()
    record = json.loads(sidecar_path(out).read_text())
    assert record["output"]["sha256"] == sha256_file(out) and record["output"]["format"] == "jpeg"
    assert record["input"]["sha256"] == sha256_file(tab.image_path)
    assert record["weights"]["choice"] == str(tiny_weights)
    files = record["weights"]["files"]
    assert set(files) == {"VAE_A_quality", "mapping_quality", "VAE_B_quality"}
    assert all(entry["sha256"] for entry in files.values())
    assert record["options"]["mode"] == "quality" and record["options"]["restore"]["scratch"] is False
    assert record["command"] == ["heirloom", "gui", "restore-tab"]

    (tmp_path / "a-file").write_text("not a folder")
    with qtbot.waitSignal(tab.save_done, timeout=JOB_TIMEOUT_MS) as blocker:
        assert tab.save_result(tmp_path / "a-file" / "photo.png")
    assert blocker.args == ["failed"] and "Could not save" in tab.error_label.text()


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


def test_correct_fading_checkbox_reaches_the_engine_and_the_album_queue_and_is_remembered(qtbot, tab, recorded):
    """Off by default (the photo keeps its own colour); ticked, the Restore tab and the album queue
    (the same options path) both ask the engine to correct fading, and the setting is kept."""
    box = tab.options_panel.fading_checkbox
    assert not box.isChecked() and box.text() == "Correct fading"
    assert tab.window().queue_options().correct_fading is False
    assert run_restore(qtbot, tab.window()) == "finished", tab.error_label.text()
    box.setChecked(True)
    assert tab.window().settings.correct_fading is True
    assert tab.window().queue_options().correct_fading is True
    assert run_restore(qtbot, tab.window()) == "finished", tab.error_label.text()
    assert [options.correct_fading for options, _ in recorded] == [False, True]
    tab.options_panel.set_locked(True)
    assert not box.isEnabled()
    tab.options_panel.set_locked(False)


def test_the_status_line_says_which_strength_was_applied(qtbot, tab, monkeypatch):
    """With "Weights' default" the strength can be chosen per photo: the user is told which."""
    def chosen(self, image, options, user_mask=None, progress=None):
        progress.report(1.0, "done")
        return RestoreResult(as_float_rgb(image), options.mode(user_mask is not None), user_mask, strength=0.35)

    monkeypatch.setattr(Restorer, "restore", chosen)
    assert run_restore(qtbot, tab.window()) == "finished", tab.error_label.text()
    assert "strength 35 %" in tab.last_status, tab.last_status
