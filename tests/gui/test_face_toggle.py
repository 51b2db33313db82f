"""Faces in the Restore tab: boxes over the restored side, a per-face on/off that recomposes the photo
without running a network, the face stage's progress in the bar, and "Refine faces" explaining itself
when the weights have no face model.

The restore runs the real pipeline and the real face detector, with the stand-in face generator and
identity global stage of tests/test_face_stage.py, so it costs a detection pass, not a network.
``HEIRLOOM_TEST_SHOTS=folder`` keeps a grab of the tab (faces_check.png) to look at.
"""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import skimage.data
import torch
from PIL import Image
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QImage

pytest.register_assert_rewrite("gui_fixtures")

from gui_fixtures import run_restore, use_weights
from test_face_stage import StandInBank, StandInFace, changed, near

import gui.restore_options
from engine.core import pipeline
from engine.core.pipeline import Restorer
from engine.io.pixels import to_u8
from gui.canvas import FACE_OFF_COLOUR, FACE_ON_COLOUR
from gui.workers import RestorerCache

pytest_plugins = ("gui_fixtures",)
pytestmark = pytest.mark.usefixtures("isolated_app", "one_torch_thread")
SHOTS = os.environ.get("HEIRLOOM_TEST_SHOTS")




class StandInRestorers(RestorerCache):
    """Every weights choice gets the one stand-in restorer (face generator announced and fast)."""

    def __init__(self, generator: StandInFace) -> None:
        super().__init__()
        self.restorer = Restorer(StandInBank(generator))

    def get(self, weights: str, device: torch.device) -> Restorer:
        return self.restorer


@pytest.fixture
def two_faces(tmp_path) -> Path:
    """The astronaut at 256 px and its mirror image side by side: two faces, one in each half."""
    portrait = cv2.resize(skimage.data.astronaut(), (256, 256), interpolation=cv2.INTER_AREA)
    path = tmp_path / "two_faces.png"
    Image.fromarray(np.ascontiguousarray(np.hstack([portrait, portrait[:, ::-1]]))).save(path)
    return path


@pytest.fixture
def faces_tab(make_window, tiny_weights, two_faces, monkeypatch):
    monkeypatch.setattr(pipeline, "translate", lambda bank, x, *a, **k: SimpleNamespace(generated=x))
    monkeypatch.setattr(gui.restore_options, "faces_unavailable", lambda weights, hr: None)
    window = make_window(restorers=StandInRestorers(StandInFace()))
    use_weights(window, tiny_weights)
    window.settings.tile = "off"
    tab = window.restore_tab
    tab.options_panel.scratch_combo.setCurrentIndex(tab.options_panel.scratch_combo.findData("off"))
    assert tab.options_panel.faces_combo.isEnabled()
    assert tab.load_image(two_faces)
    return tab


def shown_after(tab) -> np.ndarray:
    """The canvas's full-resolution "after" image as RGB uint8."""
    image = tab.canvas._after.levels[0].convertToFormat(QImage.Format.Format_RGB888)
    h, w = image.height(), image.width()
    rows = np.frombuffer(image.constBits(), np.uint8).reshape(h, image.bytesPerLine())
    return rows[:, :3 * w].reshape(h, w, 3).copy()


def edge_colour(tab, face) -> QColor:
    """The grabbed colour of the middle of a face box's left edge (where the 2 px outline is)."""
    rect = tab.canvas.face_rect_in_view(face)
    return tab.canvas.viewport().grab().toImage().pixelColor(int(rect.left()), int(rect.center().y()))


def click_label(qtbot, tab, face) -> None:
    pos = tab.canvas.face_label_rect(face).center().toPoint()
    qtbot.mouseClick(tab.canvas.viewport(), Qt.MouseButton.LeftButton, pos=pos)


def test_faces_are_boxed_toggled_one_by_one_and_saved_as_shown(qtbot, faces_tab, tmp_path):
    tab, canvas = faces_tab, faces_tab.canvas
    formats: list[str] = []
    set_format = tab.progress_bar.setFormat
    tab.progress_bar.setFormat = lambda text: (formats.append(text), set_format(text))[1]
    assert run_restore(qtbot, tab.window()) == "finished", tab.error_label.text()
    result = tab.result
    assert (result.faces.found, result.faces.refined) == (2, 2)
    assert any(f.startswith("Detecting faces") for f in formats)
    assert any(f.startswith("Refining face 2 of 2 — ") for f in formats), formats
    assert "2 of 2 faces refined" in tab.last_status

    # Two boxes; with the split in the middle only face 2 is over the restored side.
    first, second = canvas.faces()
    assert [(f.index, f.state) for f in canvas.faces()] == [(1, "on"), (2, "on")]
    assert first.box == pytest.approx(result.faces.faces[0].box)
    assert tab.face_panel.isVisible() and set(tab.face_panel.checkboxes) == {1, 2}
    assert edge_colour(tab, second) == FACE_ON_COLOUR
    assert canvas.face_at(tab.canvas.face_label_rect(first).center()) is None  # face 1 is on the "before" side
    canvas.set_split(0.0)
    assert edge_colour(tab, first) == FACE_ON_COLOUR

    # Face 1 off by a click on its label: only its region changes, exactly to "no face stage" there.
    click_label(qtbot, tab, first)
    assert tab.faces_on == {2} and canvas.faces()[0].state == "off"
    assert not tab.face_panel.checkboxes[1].isChecked() and tab.face_panel.checkboxes[2].isChecked()
    assert edge_colour(tab, canvas.faces()[0]) == FACE_OFF_COLOUR
    off = tab.result_image
    diff = changed(off, result.image)
    assert diff.any() and not (diff & ~near(first.box, diff.shape)).any()
    assert np.array_equal(off, result.faces.compose(result.image, {2}))
    assert np.array_equal(shown_after(tab), to_u8(off))
    saved = tmp_path / "saved.png"
    assert tab.save_result(saved, wait=True)
    assert np.array_equal(np.asarray(Image.open(saved).convert("RGB")), to_u8(off))
    if SHOTS:
        tab.window().resize(1100, 640)
        canvas.set_split(0.08)
        qtbot.wait(50)
        tab.window().grab().save(str(Path(SHOTS) / "faces_check.png"))

    # Back on from the list: the stage's own result again, bit for bit.
    tab.face_panel.checkboxes[1].setChecked(True)
    assert tab.faces_on == {1, 2} and canvas.faces()[0].state == "on"
    assert np.array_equal(tab.result_image, result.image)
    assert np.array_equal(shown_after(tab), to_u8(result.image))

    # Hidden boxes take no clicks; a new photo drops the faces.
    tab.face_panel.boxes_checkbox.setChecked(False)
    assert not canvas.faces_visible() and canvas.face_at(canvas.face_label_rect(first).center()) is None
    assert tab.load_image(tab.image_path)
    assert canvas.faces() == [] and not tab.face_panel.isVisible() and tab.faces_on == set()


def test_refine_faces_says_why_it_is_unavailable(make_window, tiny_weights):
    window = make_window()
    use_weights(window, tiny_weights)  # restoration networks only: no face generator
    panel = window.restore_tab.options_panel
    assert not panel.faces_combo.isEnabled() and "no face model" in panel.faces_combo.toolTip()
    assert panel.faces_note.isVisible() and "face_checkpoints.zip" in panel.faces_combo.toolTip()
    if SHOTS:
        window.resize(1100, 640)
        window.grab().save(str(Path(SHOTS) / "faces_unavailable.png"))
    panel.faces_combo.setCurrentIndex(panel.faces_combo.findData("on"))  # a choice saved earlier
    assert panel.options(0.4, 0).faces is None  # not an error at Restore: the engine notes why
    panel.hr_checkbox.setChecked(True)
    assert "HR mode" in panel.faces_combo.toolTip()
    panel.set_locked(True)
    panel.set_locked(False)
    assert not panel.faces_combo.isEnabled()
