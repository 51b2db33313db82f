"""First run: the empty Restore tab hints at dropping a photo and offers a sample photo, which is an
aged copy of a scikit-image photograph written into the user data folder (no network, no weights)."""

from __future__ import annotations

import io
import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import Qt

import engine.jobs.sample
from engine.cli.app import main as cli_main
from engine.jobs.sample import SAMPLE_NAME, make_sample_photo, skimage_data_dir
from engine.store.paths import user_data_dir

pytest_plugins = ("gui_fixtures",)
pytestmark = pytest.mark.usefixtures("isolated_app")


def pixels(path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


def test_sample_is_an_aged_copy_of_a_shipped_photo(tmp_path):
    first = make_sample_photo(tmp_path / "a")
    second = make_sample_photo(tmp_path / "b")
    assert first.name == SAMPLE_NAME and first.read_bytes() == second.read_bytes()  # same sample for everyone
    aged, clean = pixels(first), pixels(skimage_data_dir() / engine.jobs.sample.SOURCE_NAME)
    assert aged.shape == clean.shape
    assert np.abs(aged.astype(int) - clean.astype(int)).mean() > 5  # visibly damaged, not a copy


def test_sample_is_made_once_in_the_user_data_folder(monkeypatch):
    path = make_sample_photo()
    assert path.parent == user_data_dir() / "samples"
    monkeypatch.setattr(engine.jobs.sample, "degrade", lambda *a, **k: pytest.fail("made again"))
    assert make_sample_photo() == path


def test_cli_sample_writes_the_photo(tmp_path):
    out, err = io.StringIO(), io.StringIO()
    assert cli_main(["sample", "-o", str(tmp_path / "here")], out, err) == 0, err.getvalue()
    assert out.getvalue().strip() == str(tmp_path / "here" / SAMPLE_NAME)
    assert (tmp_path / "here" / SAMPLE_NAME).is_file()


def test_empty_restore_tab_offers_the_sample(qtbot, window):
    tab = window.restore_tab
    assert window.tabs.currentWidget() is tab
    assert "Drop a photo here" in tab.canvas.hint()
    assert tab.sample_button.isVisible()
    viewport = tab.canvas.viewport().rect()
    assert viewport.contains(tab.sample_button.geometry())  # inside the empty view, below the hint
    assert tab.sample_button.geometry().top() > viewport.center().y()

    qtbot.mouseClick(tab.sample_button, Qt.MouseButton.LeftButton)

    assert tab.image_path == user_data_dir() / "samples" / SAMPLE_NAME
    assert tab.image is not None and tab.image.shape == (512, 512, 3)
    assert not tab.sample_button.isVisible()
    assert "Opened " + SAMPLE_NAME in window.status_label.text()


def test_sample_without_scikit_image_data_says_so(qtbot, window, monkeypatch):
    monkeypatch.setattr(engine.jobs.sample, "skimage_data_dir", lambda: None)
    tab = window.restore_tab
    assert not tab.open_sample()
    assert "sample photo" in tab.error_label.text() and tab.image is None
    assert tab.sample_button.isVisible()
