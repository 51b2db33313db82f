"""Where the app's files live: bundled resources, the default weights, the user data folder."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP_NAME = "Heirloom"


RESOURCES = Path(__file__).resolve().parents[2] / "resources"


DEFAULT_WEIGHTS_DIR = RESOURCES / "weights" / "heirloom-lite-v1"  # our own trained weights


def user_data_dir() -> Path:
    """Per-user data folder (``HEIRLOOM_DATA_DIR`` overrides it, e.g. for tests or portable installs)."""
    override = os.environ.get("HEIRLOOM_DATA_DIR")
    return Path(override) if override else platformdirs.user_data_path(APP_NAME, appauthor=False)


def official_dir() -> Path:
    return user_data_dir() / "weights" / "official"
