"""Standing rules of the code base, checked rather than remembered."""

from __future__ import annotations

import ast
import importlib
import pkgutil
import subprocess
import sys

import engine
from conftest import ROOT
from engine import durable, imageio

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


def engine_sources() -> dict[str, str]:
    return {p.relative_to(ROOT).as_posix(): p.read_text(encoding="utf-8") for p in (ROOT / "engine").rglob("*.py")}


def hashes_content(call: ast.Call) -> bool:
    """``hashlib.sha256(...)`` / ``hashlib.new(...)`` over anything but encoded text: a content
    digest. Text hashed into a short key (a state file name, a shard) is a different idea."""
    func = call.func
    if not (isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id == "hashlib"
            and func.attr in ("sha256", "new")):
        return False
    data = call.args[1:] if func.attr == "new" else call.args
    return not (data and isinstance(data[0], ast.Call) and isinstance(data[0].func, ast.Attribute)
                and data[0].func.attr == "encode")


def test_file_digests_and_link_or_copy_live_only_in_durable():
    """Provenance, masks, the queue, downloads, profiles and exported weights must agree on a file's
    sha256; one implementation (engine/durable.py) keeps them agreeing."""
    offenders = {}
    for name, text in engine_sources().items():
        if name == "engine/durable.py":
            continue
        tree = ast.parse(text)
        found = [f"def {node.name}" for node in ast.walk(tree)
                 if isinstance(node, ast.FunctionDef) and "sha256" in node.name]
        found += [f"line {node.lineno}: content hash" for node in ast.walk(tree)
                  if isinstance(node, ast.Call) and hashes_content(node)]
        found += ["os.link"] if "os.link(" in text else []
        if found:
            offenders[name] = found
    assert not offenders


def test_grey_weights_and_8_bit_rounding_are_defined_once():
    sources = engine_sources()
    assert [n for n, text in sources.items() if "0.299, 0.587" in text] == ["engine/imageio.py"]
    assert [n for n, text in sources.items() if "def to_u8(" in text] == ["engine/imageio.py"]


def test_shared_helpers_are_importable_from_their_one_home():
    """Every engine module that names one of these helpers holds the very object of its home."""
    homes = {"sha256_file": durable, "sha256_bytes": durable, "sha256_stream": durable, "link_or_copy": durable,
             "LUMA": imageio, "to_u8": imageio}
    modules = [importlib.import_module(m.name) for m in pkgutil.walk_packages(engine.__path__, "engine.")]
    strays = {f"{module.__name__}.{name}" for module in modules for name, home in homes.items()
              if hasattr(module, name) and getattr(module, name) is not getattr(home, name)}
    assert not strays
    assert {getattr(home, name).__module__ for name, home in homes.items() if name != "LUMA"} == {
        "engine.durable", "engine.imageio"}
    assert imageio.LUMA == (0.299, 0.587, 0.114)
