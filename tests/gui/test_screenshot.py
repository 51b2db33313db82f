"""``python main.py --screenshot FILE.png [--tab ...] [PHOTO]``: renders the requested tab offscreen,
writes a PNG and exits 0, without touching the user's settings; main.py routes it to the app."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import sys

import numpy as np
import pytest
from PIL import Image

import gui.app
from main import wants_cli

pytest_plugins = ("gui_fixtures",)
pytestmark = pytest.mark.usefixtures("isolated_app")


def grab_tab(tmp_path, tab: str, *extra: str) -> np.ndarray:
    out = tmp_path / f"{tab}.png"
    assert gui.app.main(["--screenshot", str(out), "--tab", tab, *extra]) == 0
    assert out.stat().st_size > 0
    with Image.open(out) as img:
        assert img.size == gui.app.SCREENSHOT_SIZE
        return np.asarray(img.convert("RGB"))


def test_each_tab_renders_differently(qapp, tmp_path, photo):
    shots = {tab: grab_tab(tmp_path, tab) for tab in ("queue", "train", "models")}
    shots["restore"] = grab_tab(tmp_path, "restore", str(photo))
    keys = list(shots)
    for i, a in enumerate(keys):
        for b in keys[i + 1:]:
            assert not np.array_equal(shots[a], shots[b]), (a, b)
    assert not (tmp_path / "env-settings.ini").exists()  # throwaway settings, not the user's


def test_unreadable_photo_fails_with_a_message(qapp, tmp_path, capsys):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"nope")
    assert gui.app.main(["--screenshot", str(tmp_path / "x.png"), str(bad)]) == 1
    assert "cannot open" in capsys.readouterr().err


def test_main_py_routes_app_arguments_and_commands(tmp_path, photo):
    assert not wants_cli([]) and not wants_cli(["--screenshot", "x.png"]) and not wants_cli([str(photo)])
    assert wants_cli(["restore", "a.png", "-o", "out"]) and wants_cli(["--version"]) and wants_cli(["models"])


def test_main_py_screenshot(qapp, tmp_path, monkeypatch):
    """main.py itself, in this process (a fresh interpreter costs seconds: torch and Qt load again)."""
    import main

    out = tmp_path / "shot.png"
    monkeypatch.setattr(sys, "argv", ["main.py", "--screenshot", str(out), "--tab", "train"])
    assert main.main() == 0
    with Image.open(out) as img:
        assert img.size == gui.app.SCREENSHOT_SIZE
