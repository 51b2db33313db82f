"""Standing rules of the code base, checked rather than remembered."""

from __future__ import annotations

import ast
import importlib
import os
import pkgutil
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

import engine
from engine.io import durable
from engine.io import pixels as io_pixels

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
    sha256; one implementation (engine/io/durable.py) keeps them agreeing."""
    offenders = {}
    for name, text in engine_sources().items():
        if name == "engine/io/durable.py":
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
    assert [n for n, text in sources.items() if "0.299, 0.587" in text] == ["engine/io/pixels.py"]
    assert [n for n, text in sources.items() if "def to_u8(" in text] == ["engine/io/pixels.py"]


def test_shared_helpers_are_importable_from_their_one_home():
    """Every engine module that names one of these helpers holds the very object of its home."""
    homes = {"sha256_file": durable, "sha256_bytes": durable, "sha256_stream": durable, "link_or_copy": durable,
             "LUMA": io_pixels, "to_u8": io_pixels}
    modules = [importlib.import_module(m.name) for m in pkgutil.walk_packages(engine.__path__, "engine.")]
    strays = {f"{module.__name__}.{name}" for module in modules for name, home in homes.items()
              if hasattr(module, name) and getattr(module, name) is not getattr(home, name)}
    assert not strays
    assert {getattr(home, name).__module__ for name, home in homes.items() if name != "LUMA"} == {
        "engine.io.durable", "engine.io.pixels"}
    assert io_pixels.LUMA == (0.299, 0.587, 0.114)


def run_import_linter(root: Path) -> subprocess.CompletedProcess:
    lint = Path(sys.executable).with_name("lint-imports")
    return subprocess.run([str(lint), "--config", str(root / "pyproject.toml"), "--no-cache"], cwd=root,
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(root)})


def test_the_layer_contracts_hold():
    result = run_import_linter(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 4 kept, 0 broken" in result.stdout, result.stdout


# A forbidden import hidden inside a function, as a refactor might leave one, and the contract that
# must then fail: (file to add it to, the import, words of the broken contract's name).
BREAKS = [
    ("engine/core/tiling.py", "from engine.core import pipeline", "No import cycles"),
    ("engine/io/pixels.py", "import gui.app", "never the reverse"),
    ("engine/progress.py", "import PySide6.QtCore", "no Qt in the engine"),
    ("engine/core/translation.py", "from engine.store import paths", "Core inference knows nothing"),
    ("engine/models/registry.py", "from engine.store import weights", "Engine layers"),
]


@pytest.mark.parametrize("target, statement, contract", BREAKS, ids=[b[0] for b in BREAKS])
def test_a_forbidden_import_inside_a_function_breaks_a_contract(tmp_path, target, statement, contract):
    copy = tmp_path / "tree"
    for package in ("engine", "gui"):
        shutil.copytree(ROOT / package, copy / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", copy / "pyproject.toml")
    path = copy / target
    path.write_text(path.read_text(encoding="utf-8") + f"\n\ndef _smuggled() -> None:\n    {statement}\n",
                    encoding="utf-8")
    result = run_import_linter(copy)
    assert result.returncode != 0, result.stdout
    broken = [line for line in result.stdout.splitlines() if "BROKEN" in line]
    assert any(contract in line for line in broken), result.stdout


def function_level_engine_imports(path: Path) -> list[int]:
    """Line numbers of engine-internal imports inside functions or classes, unless the line itself or
    the line above says why in a comment (an optional or heavy dependency loaded only when needed)."""
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    tree = ast.parse(text)
    top = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, (ast.Import, ast.ImportFrom)) or id(node) in top:
            continue
        module = node.module if isinstance(node, ast.ImportFrom) else node.names[0].name
        internal = getattr(node, "level", 0) or (module or "").split(".")[0] == "engine"
        said = "#" in lines[node.lineno - 1] or lines[node.lineno - 2].lstrip().startswith("#")
        if internal and not said:
            found.append(node.lineno)
    return found


def test_engine_imports_its_own_modules_at_the_top_unless_a_comment_says_why():
    hidden = {str(p.relative_to(ROOT)): lines for p in (ROOT / "engine").rglob("*.py")
              if (lines := function_level_engine_imports(p))}
    assert not hidden, hidden


def test_folders_found_from_a_modules_own_location_survive_the_package_layout(monkeypatch):
    """Modules that find resources beside the code count folders up from their own file: moving a
    module one package deeper must not send them to the wrong place."""
    from engine.cli import train
    from engine.degradation import overlays
    from engine.store import paths

    monkeypatch.delenv(overlays.ENV_VAR, raising=False)
    assert paths.RESOURCES == ROOT / "resources" and (paths.DEFAULT_WEIGHTS_DIR / "model.json").is_file()
    assert overlays.default_folder() == ROOT.parent / "shared" / "data" / "damage_overlays"
    assert train.SHARED_DATA == ROOT.parent / "shared" / "data"
