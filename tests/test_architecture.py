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


def test_running_the_cli_engine_loads_no_qt():
    code = ("import sys, engine.cli, engine.pipeline, engine.official, engine.weights, engine.download; "
            "print(any(m.startswith(('PySide6', 'gui')) for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_no_chdir_and_no_subprocess_in_the_engine():
    for path in (ROOT / "engine").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert "os.chdir" not in text, path
        assert "subprocess" not in imported_modules(path), path
