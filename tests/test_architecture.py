"""Standing rules of the code base, checked rather than remembered."""

from __future__ import annotations

import ast
import subprocess
import sys

from conftest import ROOT

FORBIDDEN_IN_ENGINE = ("PySide6", "PyQt5", "PyQt6", "shiboken6", "gui")


def imported_modules(path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_engine_never_imports_qt_or_gui():
    offenders = {str(p.relative_to(ROOT)): sorted(imported_modules(p) & set(FORBIDDEN_IN_ENGINE))
                 for p in (ROOT / "engine").rglob("*.py")}
    assert not {k: v for k, v in offenders.items() if v}


def test_importing_every_engine_module_loads_no_qt():
    """Stronger than the import scan above: what each module pulls in transitively (third-party
    packages included) must not bring a Qt binding or the GUI into a headless process."""
    code = ("import importlib, pkgutil, sys, engine\n"
            "names = [m.name for m in pkgutil.walk_packages(engine.__path__, 'engine.')]\n"
            "for name in names: importlib.import_module(name)\n"
            "print(len(names), sorted(m for m in sys.modules if m.split('.')[0] in "
            f"{FORBIDDEN_IN_ENGINE!r}))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    count, loaded = out.stdout.strip().split(" ", 1)
    assert int(count) > 20 and loaded == "[]", out.stdout


def test_gui_uses_one_qt_binding():
    """PySide6 only: a second binding in the same process crashes at import time."""
    for path in (ROOT / "gui").rglob("*.py"):
        names = imported_modules(path)
        assert not names & {"PyQt5", "PyQt6"}, path


def test_no_chdir_and_no_subprocess_in_the_engine():
    for path in (ROOT / "engine").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert "os.chdir" not in text, path
        assert "subprocess" not in imported_modules(path), path
