"""Fixtures shared by the main-window, Restore and Models tab tests.

A test module loads them with ``pytest_plugins = ("gui_fixtures",)`` and opts in to the isolation
with ``pytestmark = pytest.mark.usefixtures("isolated_app")`` (not autouse: a plugin's autouse
fixture would reach every test of the session).

Every window gets its own settings INI file, mask store and queue state in tmp_path: no test reads
or writes the user's real settings or data. The default weights point at an empty folder, so
"weights missing" is the starting state, as on a machine without the bundled weights.
"""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
from PIL import Image

import engine.core.detection
import engine.device
import engine.store.catalogue
import engine.store.paths
import engine.store.weights
import gui.prompts
from engine.device import DeviceInfo
from engine.models.checkpoints import save_state_dicts
from engine.models.registry import BY_NAME
from engine.store.masks import MaskStore
from gui.main_window import MainWindow
from gui.settings import Settings
from gui.workers import RestorerCache

# Quality and scratch restoration plus the detector: everything but the (large) HR mapping.
TINY_NETWORKS = ("VAE_A_quality", "mapping_quality", "VAE_B_quality", "VAE_B_scratch", "mapping_scratch", "detector")
JOB_TIMEOUT_MS = 60_000
CPU_ONLY = [DeviceInfo("cpu", "CPU (test)", 8 * 2**30, 4 * 2**30)]


@pytest.fixture
def isolated_app(tmp_path, monkeypatch):
    """No real weights, data or settings: all of them live in tmp_path."""
    monkeypatch.setattr(engine.store.paths, "DEFAULT_WEIGHTS_DIR", tmp_path / "no-default-weights")
    # The detector sees 64 px instead of 256: these tests check the wiring, not detection quality,
    # and a random U-Net at 256 px costs seconds per call on a busy CPU.
    monkeypatch.setattr(engine.core.detection, "OFFICIAL_SHORT_SIDE", 64)
    monkeypatch.setenv("HEIRLOOM_DATA_DIR", str(tmp_path / "userdata"))
    monkeypatch.setenv("HEIRLOOM_SETTINGS_FILE", str(tmp_path / "env-settings.ini"))
    for name in ("no_proxy", "NO_PROXY"):  # requests to 127.0.0.1 must not go to a proxy
        monkeypatch.setenv(name, "*")
    # A modal Save / Discard / Cancel box would block a test forever (e.g. closing a window with an
    # unsaved restore at teardown): discard unless a test patches its own answer.
    monkeypatch.setattr(gui.prompts, "ask_unsaved", lambda *_args, **_kwargs: gui.prompts.DISCARD)
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)  # choose_device("cpu") widens it; the rest of the suite expects it small


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory) -> Path:
    """Randomly initialised networks saved as our safetensors folder (cheap, but real)."""
    folder = tmp_path_factory.mktemp("tiny-weights")
    torch.manual_seed(0)
    save_state_dicts(folder, {name: BY_NAME[name].build().state_dict() for name in TINY_NETWORKS})
    return folder


@pytest.fixture(scope="session")
def shared_restorers() -> RestorerCache:
    """One cache for the whole session, so the tiny networks are built once, not per test."""
    return RestorerCache()


@pytest.fixture
def photo(tmp_path) -> Path:
    """A 40 (wide) x 56 (high) RGB PNG with some structure."""
    return make_photo(tmp_path / "photo.png")


def make_photo(path: Path, size: tuple[int, int] = (40, 56), seed: int = 1) -> Path:
    rng = np.random.default_rng(seed)
    w, h = size
    y, x = np.mgrid[0:h, 0:w]
    rgb = np.stack([x * 6, y * 4, (x + y) * 2], axis=2).astype(np.uint8)
    rgb = np.clip(rgb.astype(int) + rng.integers(-10, 10, rgb.shape), 0, 255).astype(np.uint8)
    Image.fromarray(rgb).save(path)
    return path


@pytest.fixture
def make_window(qtbot, tmp_path, isolated_app) -> Callable[..., MainWindow]:
    """Build a shown MainWindow on the CPU with settings in ``settings_file`` (default tmp_path)."""

    def make(settings_file: Path | None = None, restorers: RestorerCache | None = None, **kwargs) -> MainWindow:
        settings = Settings.from_file(settings_file or tmp_path / "settings.ini")
        if settings.device == "auto":
            settings.device = "cpu"
        win = MainWindow(settings=settings, masks=MaskStore(tmp_path / "masks"), queue_state=tmp_path / "queue.json",
                         devices=CPU_ONLY, restorers=restorers, **kwargs)
        qtbot.addWidget(win)
        win.show()
        qtbot.waitExposed(win)
        wait_for_listing(qtbot, win)
        return win

    return make


@pytest.fixture
def window(make_window) -> MainWindow:
    return make_window()


def wait_for_listing(qtbot, win: MainWindow) -> None:
    qtbot.waitUntil(lambda: not win.models_tab.refreshing, timeout=JOB_TIMEOUT_MS)


def use_weights(win: MainWindow, folder: Path) -> None:
    win.models_tab.set_weights(str(folder))


def run_restore(qtbot, win: MainWindow) -> str:
    tab = win.restore_tab
    with qtbot.waitSignal(tab.restore_done, timeout=JOB_TIMEOUT_MS) as blocker:
        assert tab.start_restore(), tab.error_label.text()
        assert not tab.restore_button.isEnabled() and tab.cancel_button.isEnabled()
    return blocker.args[0]


def run_detect(qtbot, win: MainWindow) -> str:
    tab = win.restore_tab
    with qtbot.waitSignal(tab.detect_done, timeout=JOB_TIMEOUT_MS) as blocker:
        assert tab.start_detect(), tab.error_label.text()
    return blocker.args[0]


@pytest.fixture
def one_torch_thread(monkeypatch):
    """Tiny or stand-in networks gain nothing from threads; choosing the CPU device would widen the pool."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    monkeypatch.setattr(engine.device, "_cpu", lambda: torch.device("cpu"))
    yield
    torch.set_num_threads(threads)
