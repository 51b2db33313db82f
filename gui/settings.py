"""Typed, persistent user settings (QSettings underneath).

Why a wrapper: QSettings hands back strings from INI files ("true", "512") and turns a one-item
list into a plain string, so every reader would have to re-parse. Here each setting has one typed
property, one default and one parser. Values are mirrored in a plain dict so worker threads (the
album queue's restorer factory) can read them without touching QSettings from another thread.

Tests and ``--screenshot`` pass their own QSettings (an INI file in a temporary folder), so they
never read or change the user's real settings. ``HEIRLOOM_SETTINGS_FILE`` does the same for a
whole process.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from PySide6.QtCore import QByteArray, QObject, QSettings, Signal

from engine.core.plan import Tile, parse_tile
from engine.device import PRECISIONS

RECENT_LIMIT = 10
SCRATCH_MODES = ("auto", "off")
FACE_MODES = ("auto", "on", "off")


def _as_bool(value: Any, default: bool) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return {"true": True, "1": True, "false": False, "0": False}.get(value.strip().lower(), default)
    return default


def _as_float(value: Any, default: float) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return default


def default_store() -> QSettings:
    """The user's settings, or an INI file named by ``HEIRLOOM_SETTINGS_FILE`` (tests, portable use)."""
    override = os.environ.get("HEIRLOOM_SETTINGS_FILE")
    if override:
        return QSettings(override, QSettings.Format.IniFormat)
    return QSettings(QSettings.Format.IniFormat, QSettings.Scope.UserScope, "Heirloom", "Heirloom")


class Settings(QObject):
    """Every persisted choice of the app; ``changed(key)`` lets several widgets show one setting."""

    changed = Signal(str)

    def __init__(self, store: QSettings | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.store = store if store is not None else default_store()
        self._values: dict[str, Any] = {}

    @classmethod
    def from_file(cls, path: Path) -> "Settings":
        """Settings kept in one INI file (what tests use: never the user's real settings)."""
        return cls(QSettings(str(path), QSettings.Format.IniFormat))

    # ------------------------------------------------------------------ plumbing

    def _get(self, key: str, default: Any) -> Any:
        if key not in self._values:
            self._values[key] = self.store.value(key, default)
        return self._values[key]

    def _set(self, key: str, value: Any) -> None:
        if self._values.get(key, object()) == value and self.store.contains(key):
            return
        self._values[key] = value
        self.store.setValue(key, value)
        self.changed.emit(key)

    def sync(self) -> None:
        """Write to disk now (QSettings otherwise writes lazily, e.g. at exit)."""
        self.store.sync()

    # ------------------------------------------------------------------ engine choices

    @property
    def weights(self) -> str:
        """``default``, ``official`` or the path of a weights zip / folder."""
        return str(self._get("engine/weights", "default") or "default")

    @weights.setter
    def weights(self, value: str) -> None:
        self._set("engine/weights", str(value).strip() or "default")

    @property
    def device(self) -> str:
        """``auto``, ``cpu``, ``cuda:N`` or ``mps`` (engine.device.choose_device's words)."""
        return str(self._get("engine/device", "auto") or "auto")

    @device.setter
    def device(self, value: str) -> None:
        self._set("engine/device", str(value).strip() or "auto")

    @property
    def tile(self) -> Tile:
        try:
            return parse_tile(self._get("engine/tile", "auto"))
        except ValueError:
            return "auto"

    @tile.setter
    def tile(self, value: Tile | str) -> None:
        self._set("engine/tile", str(parse_tile(value)))

    @property
    def precision(self) -> str:
        """``fp32`` (exact, the default) or another of engine.device.PRECISIONS."""
        value = str(self._get("engine/precision", "fp32") or "fp32")
        return value if value in PRECISIONS else "fp32"

    @precision.setter
    def precision(self, value: str) -> None:
        if value not in PRECISIONS:
            raise ValueError(f"unknown precision {value!r}; use one of {', '.join(PRECISIONS)}")
        self._set("engine/precision", value)

    @property
    def max_memory_gb(self) -> float | None:
        """Memory budget for a restore; None = let the engine take a safe share of what is free."""
        value = _as_float(self._get("engine/max_memory_gb", 0.0), 0.0)
        return value if value > 0 else None

    @max_memory_gb.setter
    def max_memory_gb(self, value: float | None) -> None:
        self._set("engine/max_memory_gb", float(value or 0.0))

    # ------------------------------------------------------------------ restore options

    @property
    def scratch_mode(self) -> str:
        value = str(self._get("restore/scratch", "auto"))
        return value if value in SCRATCH_MODES else "auto"

    @scratch_mode.setter
    def scratch_mode(self, value: str) -> None:
        if value not in SCRATCH_MODES:
            raise ValueError(f"scratch mode must be one of {SCRATCH_MODES}")
        self._set("restore/scratch", value)

    @property
    def hr(self) -> bool:
        return _as_bool(self._get("restore/hr", False), False)

    @hr.setter
    def hr(self, value: bool) -> None:
        self._set("restore/hr", bool(value))

    @property
    def faces(self) -> str:
        value = str(self._get("restore/faces", "auto"))
        return value if value in FACE_MODES else "auto"

    @faces.setter
    def faces(self, value: str) -> None:
        if value not in FACE_MODES:
            raise ValueError(f"faces must be one of {FACE_MODES}")
        self._set("restore/faces", value)

    @property
    def strength(self) -> int | None:
        """Restoration strength in percent, or None for the weights' own default."""
        try:
            value = int(self._get("restore/strength", -1))
        except (TypeError, ValueError):
            return None
        return value if 0 <= value <= 100 else None

    @strength.setter
    def strength(self, value: int | None) -> None:
        if value is not None and not 0 <= value <= 100:
            raise ValueError("strength must be 0-100 % or None (the weights' default)")
        self._set("restore/strength", -1 if value is None else int(value))

    @property
    def correct_fading(self) -> bool:
        """Correct faded colours (RestoreOptions.correct_fading); off keeps the photo's own tone."""
        return _as_bool(self._get("restore/correct_fading", False), False)

    @correct_fading.setter
    def correct_fading(self, value: bool) -> None:
        self._set("restore/correct_fading", bool(value))

    # ------------------------------------------------------------------ folders and files

    def _path(self, key: str) -> Path | None:
        value = str(self._get(key, "") or "")
        return Path(value) if value else None

    def _set_path(self, key: str, value: Path | None) -> None:
        self._set(key, str(value) if value else "")

    @property
    def last_open_folder(self) -> Path | None:
        return self._path("folders/open")

    @last_open_folder.setter
    def last_open_folder(self, value: Path | None) -> None:
        self._set_path("folders/open", value)

    @property
    def last_save_folder(self) -> Path | None:
        return self._path("folders/save")

    @last_save_folder.setter
    def last_save_folder(self, value: Path | None) -> None:
        self._set_path("folders/save", value)

    @property
    def output_folder(self) -> Path | None:
        """Where restored photos are saved by default; None = next to the original."""
        return self._path("folders/output")

    @output_folder.setter
    def output_folder(self, value: Path | None) -> None:
        self._set_path("folders/output", value)

    @property
    def recent_files(self) -> list[Path]:
        """Most recent first. Stored as JSON: QSettings would turn a one-item list into a string."""
        raw = self._get("files/recent", "[]")
        try:
            items = json.loads(raw) if isinstance(raw, str) else list(raw or [])
        except ValueError:
            items = []
        return [Path(p) for p in items if isinstance(p, str) and p][:RECENT_LIMIT]

    def add_recent_file(self, path: Path) -> None:
        entry = str(Path(path).resolve())
        items = [entry] + [str(p) for p in self.recent_files if str(p) != entry]
        self._set("files/recent", json.dumps(items[:RECENT_LIMIT]))

    def clear_recent_files(self) -> None:
        self._set("files/recent", "[]")

    # ------------------------------------------------------------------ window

    @property
    def window_geometry(self) -> bytes:
        value = self._get("window/geometry", b"")
        if isinstance(value, QByteArray):
            return bytes(value.data())
        return bytes(value) if isinstance(value, (bytes, bytearray)) else b""

    @window_geometry.setter
    def window_geometry(self, value: bytes | QByteArray) -> None:
        self._set("window/geometry", QByteArray(bytes(value.data() if isinstance(value, QByteArray) else value)))
