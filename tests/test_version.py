"""`Heirloom --version` (the installer's smoke test and support questions rely on it)."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import engine

ROOT = Path(__file__).resolve().parents[1]


def test_engine_version_is_the_package_version():
    # installer/heirloom.spec refuses to build when these two disagree
    assert engine.__version__ == tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def test_version_flag_answers_without_loading_torch_or_qt():
    code = ("import sys, runpy; sys.argv = ['main.py', '--version']\n"
            "try:\n    runpy.run_path('main.py', run_name='__main__')\n"
            "except SystemExit as exc:\n    assert exc.code == 0, exc.code\n"
            "assert 'torch' not in sys.modules and 'PySide6' not in sys.modules, 'heavy imports'\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"Heirloom {engine.__version__}"
