"""The Album queue tab: enqueue by folder and drop, restore in the background with one failing photo,
cancel, pause, hold, retry, brushed masks, and a queue that comes back after the app is re-created."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import json
import threading
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from PySide6.QtCore import QMimeData, QPoint, Qt, QUrl
from PySide6.QtGui import QDropEvent

from engine.core.pipeline import RestoreOptions, Restorer, RestoreResult, as_float_rgb
from engine.jobs.album_queue import CANCELLED, DONE, FAILED, PENDING
from engine.models.checkpoints import ModelBank, SafetensorsSource, save_state_dicts
from engine.models.registry import BY_NAME
from engine.store.masks import MaskStore
from engine.store.weights import WeightsNotFound
from gui.queue_model import (
    COL_ERROR,
    COL_NAME,
    COL_PROGRESS,
    COL_SIZE,
    COL_STATUS,
    ProgressRole,
)
from gui.queue_tab import QueueTab
from gui.workers import Task

QUALITY_NETWORKS = ("VAE_A_quality", "mapping_quality", "VAE_B_quality")
TIMEOUT_MS = 30_000


@pytest.fixture(autouse=True)
def isolated_data(tmp_path, monkeypatch):
    monkeypatch.setenv("HEIRLOOM_DATA_DIR", str(tmp_path / "userdata"))
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny_restorer(tmp_path_factory) -> Restorer:
    """Randomly initialised quality networks in our safetensors layout (real, just untrained)."""
    folder = tmp_path_factory.mktemp("tiny-weights")
    torch.manual_seed(0)
    save_state_dicts(folder, {name: BY_NAME[name].build().state_dict() for name in QUALITY_NETWORKS})
    return Restorer(ModelBank(SafetensorsSource(folder, label="tiny test weights"), torch.device("cpu")))


class FakeRestorer:
    """Inverts the photo and records what it was given; ``gate`` (if set) makes each restore wait for
    the test, checking the engine's cancel flag like real networks do between steps."""

    def __init__(self, source) -> None:
        self.bank = SimpleNamespace(source=source)
        self.device = torch.device("cpu")
        self.calls: list[tuple[tuple[int, ...], np.ndarray | None]] = []
        self.entered = threading.Event()
        self.gate: threading.Event | None = None

    def prepare(self, options: RestoreOptions, has_user_mask: bool = False) -> None:
        pass

    def restore(self, image, options=RestoreOptions(), user_mask=None, progress=None) -> RestoreResult:
        self.calls.append((image.shape, user_mask))
        progress.report(0.25, "encoding")
        self.entered.set()
        while self.gate is not None and not self.gate.wait(0.01):
            progress.check()  # raises Cancelled once the queue's Cancel is pressed
        progress.report(1.0, "done")
        return RestoreResult(1.0 - as_float_rgb(image), options.mode(user_mask is not None), user_mask, None, {},
                             brushed=user_mask is not None)


@pytest.fixture
def fake(tiny_restorer) -> FakeRestorer:
    return FakeRestorer(tiny_restorer.bank.source)


def write_photo(path: Path, seed: int, size: tuple[int, int] = (40, 28)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    y, x = np.mgrid[0:size[1], 0:size[0]]
    rgb = np.stack([x * 5 + seed * 20, y * 7, (x + y) * 3], axis=2) % 256
    Image.fromarray(rgb.astype(np.uint8)).save(path)
    return path


@pytest.fixture
def album(tmp_path) -> Path:
    """Two photos (one in a subfolder), a broken 'photo' and a text file."""
    folder = tmp_path / "album"
    write_photo(folder / "a.png", 1)
    write_photo(folder / "1950s" / "b.jpg", 2)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n but then nothing useful")
    (folder / "notes.txt").write_text("not a photo")
    return folder


def make_tab(qtbot, tmp_path, restorer, masks: MaskStore | None = None, state: Path | None = None,
             options: RestoreOptions = RestoreOptions()) -> QueueTab:
    tab = QueueTab(lambda: restorer, lambda: options, masks or MaskStore(tmp_path / "masks"),
                   state or tmp_path / "state" / "queue.json")
    qtbot.addWidget(tab)
    tab.set_output_dir(tmp_path / "restored")
    tab.resize(1100, 520)
    tab.show()
    qtbot.waitExposed(tab)
    return tab


def run_to_end(qtbot, tab: QueueTab) -> None:
    with qtbot.waitSignal(tab.running_changed, timeout=TIMEOUT_MS, check_params_cb=lambda on: not on):
        assert tab.start()
        assert tab.is_running and not tab.start_button.isEnabled() and tab.cancel_button.isEnabled()


def statuses(tab: QueueTab) -> dict[str, str]:
    return {item.name: item.status for item in tab.queue.items}


def tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_album_with_a_broken_photo_restores_the_rest_and_comes_back_after_a_restart(
        qtbot, tmp_path, album, tiny_restorer, fake):
    originals = tree(album)
    tab = make_tab(qtbot, tmp_path, tiny_restorer)
    assert tab.pages.currentWidget() is tab.empty_label
    assert not tab.start_button.isEnabled() and not tab.pause_button.isEnabled()
    assert tab.add_paths([album, album / "notes.txt"]) == 3  # a folder's other files are skipped silently
    assert "Added 3 photos" in tab.status_label.text() and "1 not an image" in tab.status_label.text()
    assert tab.add_paths([album / "a.png"]) == 0  # already queued
    assert tab.pages.currentWidget() is tab.table
    model = tab.model
    assert model.rowCount() == 3
    assert [model.index(r, COL_NAME).data() for r in range(3)] == ["a.png", "broken.png", "b.jpg"]
    assert model.index(0, COL_SIZE).data().endswith(("bytes", "KB"))
    assert model.index(0, COL_STATUS).data() == "Waiting" and model.index(0, COL_PROGRESS).data(ProgressRole) is None
    assert tab.start_button.isEnabled() and not tab.retry_button.isEnabled()
    qtbot.waitUntil(lambda: len(tab.thumbnails._pixmaps) == 3, timeout=TIMEOUT_MS)
    assert model.index(0, 0).data(Qt.ItemDataRole.DecorationRole).width() <= tab.thumbnails.size

    finished_rows = []
    tab.item_finished.connect(finished_rows.append)
    run_to_end(qtbot, tab)
    assert sorted(finished_rows) == [0, 1, 2]
    assert statuses(tab) == {"a.png": DONE, "b.jpg": DONE, "broken.png": FAILED}
    error = model.index(1, COL_ERROR).data()
    assert model.index(1, COL_STATUS).data() == "Failed" and "Cannot read the photo" in error
    assert "Cannot read the photo" in model.index(1, COL_ERROR).data(Qt.ItemDataRole.ToolTipRole)
    assert model.index(0, COL_PROGRESS).data(ProgressRole) == 1.0
    out = tmp_path / "restored"
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "a.png.heirloom.json", "b.png", "b.png.heirloom.json"]
    with Image.open(out / "b.png") as restored:
        assert restored.size == (40, 28)
    assert json.loads((out / "a.png.heirloom.json").read_text())["weights"]["label"] == "tiny test weights"
    assert tree(album) == originals  # originals untouched, byte for byte
    assert tab.overall_bar.format().startswith("3 of 3") and "1 failed" in tab.status_label.text()
    assert tab.retry_button.isEnabled() and not tab.start_button.isEnabled() and not tab.cancel_button.isEnabled()
    tab.table.selectRow(0)
    assert tab.remove_button.isEnabled()
    shot = os.environ.get("HEIRLOOM_QUEUE_SCREENSHOT")
    if shot:
        tab.grab().save(shot)
    tab.shutdown()

    # The app is closed and opened again: the queue is back, finished photos are not redone.
    again = make_tab(qtbot, tmp_path, fake)
    assert statuses(again) == {"a.png": DONE, "b.jpg": DONE, "broken.png": FAILED}
    assert again.model.index(0, COL_STATUS).data() == "Done"
    assert not again.start() and fake.calls == []
    assert again.retry_failed() == 1 and statuses(again)["broken.png"] == PENDING
    run_to_end(qtbot, again)
    assert fake.calls == [] and statuses(again)["broken.png"] == FAILED  # read failed again; nothing redone
    assert tree(album) == originals


def test_drop_a_folder_on_the_tab(qtbot, tmp_path, album, fake):
    tab = make_tab(qtbot, tmp_path, fake)
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(album))])
    event = QDropEvent(QPoint(20, 20), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                       Qt.KeyboardModifier.NoModifier)
    tab.dropEvent(event)
    assert tab.model.rowCount() == 3


def test_cancel_stops_the_running_photo_and_holds_the_queue(qtbot, tmp_path, fake):
    photos = [write_photo(tmp_path / "in" / f"{n}.png", i) for i, n in enumerate("ab")]
    tab = make_tab(qtbot, tmp_path, fake)
    tab.add_paths(photos)
    fake.gate = threading.Event()  # never set: only Cancel can end the restore
    with qtbot.waitSignal(tab.running_changed, timeout=TIMEOUT_MS, check_params_cb=lambda on: not on):
        assert tab.start()
        assert fake.entered.wait(10)
        qtbot.waitUntil(lambda: tab.model.index(0, COL_PROGRESS).data() == "25 %", timeout=TIMEOUT_MS)
        assert tab.model.index(0, COL_STATUS).data() == "Restoring…"
        tab.cancel()
        assert not tab.cancel_button.isEnabled()
    assert statuses(tab) == {"a.png": CANCELLED, "b.png": PENDING}
    assert len(fake.calls) == 1 and not (tmp_path / "restored" / "a.png").exists()
    assert "Cancelled" in tab.status_label.text()
    assert tab.retry_button.isEnabled() and tab.start_button.isEnabled()
    assert tab.retry_failed() == 1 and statuses(tab)["a.png"] == PENDING


def test_closing_mid_photo_requeues_it_and_the_next_start_finishes_the_album(qtbot, tmp_path, fake):
    photos = [write_photo(tmp_path / "in" / f"{n}.png", i) for i, n in enumerate("ab")]
    tab = make_tab(qtbot, tmp_path, fake)
    tab.add_paths(photos)
    fake.gate = threading.Event()
    assert tab.start() and fake.entered.wait(10)
    tab.shutdown()  # what the main window does when it closes
    assert not tab.is_running and statuses(tab) == {"a.png": PENDING, "b.png": PENDING}

    fake.gate = None
    again = make_tab(qtbot, tmp_path, fake)
    assert statuses(again) == {"a.png": PENDING, "b.png": PENDING}
    run_to_end(qtbot, again)
    assert statuses(again) == {"a.png": DONE, "b.png": DONE} and len(fake.calls) == 3
    assert again.add_paths([tmp_path / "restored"]) == 0  # our own outputs are not queued as new photos
    assert "2 in the output folder left out" in again.status_label.text()


def test_pause_holds_after_the_current_photo_and_start_goes_on(qtbot, tmp_path, fake):
    photos = [write_photo(tmp_path / "in" / f"{n}.png", i) for i, n in enumerate("abc")]
    tab = make_tab(qtbot, tmp_path, fake)
    tab.add_paths(photos)
    fake.gate = threading.Event()
    with qtbot.waitSignal(tab.running_changed, timeout=TIMEOUT_MS, check_params_cb=lambda on: not on):
        assert tab.start()
        assert fake.entered.wait(10)
        tab.pause()
        assert "Pausing" in tab.status_label.text() and not tab.pause_button.isEnabled()
        fake.gate.set()
    assert statuses(tab) == {"a.png": DONE, "b.png": PENDING, "c.png": PENDING}
    assert "Paused. 2 photos waiting" in tab.status_label.text()
    assert tab.overall_bar.format() == "1 of 3"
    run_to_end(qtbot, tab)
    assert set(statuses(tab).values()) == {DONE} and len(fake.calls) == 3


def test_cancel_while_pausing_stops_the_current_photo_too(qtbot, tmp_path, fake):
    photos = [write_photo(tmp_path / "in" / f"{n}.png", i) for i, n in enumerate("ab")]
    tab = make_tab(qtbot, tmp_path, fake)
    tab.add_paths(photos)
    fake.gate = threading.Event()  # never set: only Cancel can end the restore
    with qtbot.waitSignal(tab.running_changed, timeout=TIMEOUT_MS, check_params_cb=lambda on: not on):
        assert tab.start()
        assert fake.entered.wait(10)
        tab.pause()
        task = tab.runner.task
        assert isinstance(task, Task) and task.is_paused  # the queue's Pause is the one worker's pause
        assert tab.cancel_button.isEnabled()
        tab.cancel()
        assert not tab.cancel_button.isEnabled()
    assert statuses(tab) == {"a.png": CANCELLED, "b.png": PENDING}
    assert "Cancelled" in tab.status_label.text() and not tab.is_running


def test_held_queue_waits_for_the_device_then_runs(qtbot, tmp_path, fake):
    tab = make_tab(qtbot, tmp_path, fake)
    tab.add_paths([write_photo(tmp_path / "in" / "a.png", 1)])
    tab.set_held(True)
    assert tab.start() and not tab.is_running
    assert "Waiting for the Restore tab" in tab.status_label.text()
    assert not tab.start_button.isEnabled() and tab.pause_button.isEnabled()
    with qtbot.waitSignal(tab.running_changed, timeout=TIMEOUT_MS, check_params_cb=lambda on: not on):
        tab.set_held(False)
    assert statuses(tab) == {"a.png": DONE}


def test_the_mask_brushed_for_a_photo_is_used_for_it(qtbot, tmp_path, fake):
    plain = write_photo(tmp_path / "in" / "plain.png", 1)
    scratched = write_photo(tmp_path / "in" / "scratched.png", 2)
    masks = MaskStore(tmp_path / "masks")
    brushed = np.zeros((28, 40), bool)
    brushed[10:12, 3:30] = True
    masks.save(scratched, brushed)
    tab = make_tab(qtbot, tmp_path, fake, masks=masks)
    tab.add_paths([plain, scratched])
    run_to_end(qtbot, tab)
    assert fake.calls[0][1] is None
    assert np.array_equal(fake.calls[1][1], brushed)
    record = json.loads((tmp_path / "restored" / "scratched.png.heirloom.json").read_text())
    assert record["mask"]["source"] == "brushed" and record["options"]["mode"] == "scratch"


def test_weights_that_cannot_load_are_explained_and_nothing_is_lost(qtbot, tmp_path):
    def no_weights() -> Restorer:
        raise WeightsNotFound("the official weights are not imported yet")

    tab = QueueTab(no_weights, RestoreOptions, MaskStore(tmp_path / "masks"), tmp_path / "queue.json")
    qtbot.addWidget(tab)
    tab.set_output_dir(tmp_path / "restored")
    tab.add_paths([write_photo(tmp_path / "in" / "a.png", 1)])
    assert not tab.start() and not tab.is_running
    assert "Weights not found" in tab.status_label.text()
    assert statuses(tab) == {"a.png": PENDING} and tab.start_button.isEnabled()


def test_a_damaged_state_file_opens_an_empty_queue_with_a_warning(qtbot, tmp_path, fake):
    state = tmp_path / "queue.json"
    state.write_text("{ half a file")
    tab = make_tab(qtbot, tmp_path, fake, state=state)
    assert tab.model.rowCount() == 0 and "damaged" in tab.status_label.text()
    assert list(tmp_path.glob("queue.json.corrupt-*"))
