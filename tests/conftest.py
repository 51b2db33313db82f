"""Shared test fixtures: where the reference material lives and recipe-built official weights."""

from __future__ import annotations

import contextlib
import functools
import http.server
import importlib.util
import json
import os
import sys
import threading
import zipfile
from pathlib import Path
from typing import Iterator

import pytest
import torch

import engine.io.durable
from engine.models.checkpoints import ModelBank, WeightSource, validate_state_dict
from engine.models.registry import BY_NAME, NetworkSpec, manifest_for

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT.parent / "shared" / "reference"
DATA = ROOT.parent / "shared" / "data"

torch.set_num_threads(min(2, os.cpu_count() or 1))


def golden_dir() -> Path:
    return Path(os.environ.get("HEIRLOOM_GOLDEN_DIR") or REFERENCE / "golden")


def reference_file(name: str) -> Path:
    """A reference file beside the golden directory if it has one, else from ../shared/reference."""
    for base in (golden_dir().parent, REFERENCE):
        if (base / name).exists():
            return base / name
    raise FileNotFoundError(f"reference file {name} not found near {golden_dir()} or in {REFERENCE}")


def load_recipe():
    path = reference_file("weights_recipe.py")
    spec = importlib.util.spec_from_file_location("heirloom_weights_recipe", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


_STATE_CACHE: dict[tuple[str, str], dict] = {}


def recipe_state(manifest_file: str, salt: str = "") -> dict[str, torch.Tensor]:
    """Deterministic stand-in weights for one official checkpoint (cached per session)."""
    key = (manifest_file, salt)
    if key not in _STATE_CACHE:
        manifest = json.loads(reference_file(f"manifests/{manifest_file}").read_text(encoding="utf-8"))
        _STATE_CACHE[key] = load_recipe().deterministic_state_dict(manifest, salt=salt)
    return _STATE_CACHE[key]


GLOBAL_FILES = {
    "VAE_A_quality": ("VAE_A_quality_netG.json", "checkpoints/restoration/VAE_A_quality/latest_net_G.pth"),
    "VAE_B_quality": ("VAE_B_quality_netG.json", "checkpoints/restoration/VAE_B_quality/latest_net_G.pth"),
    "VAE_B_scratch": ("VAE_B_scratch_netG.json", "checkpoints/restoration/VAE_B_scratch/latest_net_G.pth"),
    "mapping_quality": ("mapping_quality_mapping_net.json",
                        "checkpoints/restoration/mapping_quality/latest_net_mapping_net.pth"),
    "mapping_scratch": ("mapping_scratch_mapping_net.json",
                        "checkpoints/restoration/mapping_scratch/latest_net_mapping_net.pth"),
    "mapping_Patch_Attention": ("mapping_Patch_Attention_mapping_net.json",
                                "checkpoints/restoration/mapping_Patch_Attention/latest_net_mapping_net.pth"),
    "detector": ("detection_FT_Epoch_latest.json", "checkpoints/detection/FT_Epoch_latest.pt"),
}
# The face generators come from the separate face_checkpoints.zip (not written by write_official_zip).
FACE_FILES = {
    "face_256": ("face_Setting_9_epoch_100_netG.json", "checkpoints/Setting_9_epoch_100/latest_net_G.pth"),
    "face_512": ("face_FaceSR_512_netG.json", "checkpoints/FaceSR_512/latest_net_G.pth"),
}
RECIPE_FILES = {**GLOBAL_FILES, **FACE_FILES}
DETECTOR_SALT = "det-28/"


def write_official_zip(path: Path, skip: tuple[str, ...] = ()) -> Path:
    """A global_checkpoints.zip laid out like the official release, holding recipe weights."""
    import io

    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, (manifest, member) in GLOBAL_FILES.items():
            if name in skip:
                continue
            state = recipe_state(manifest, DETECTOR_SALT if name == "detector" else "")
            obj = {"model_state": state, "epoch": 10} if name == "detector" else state
            buf = io.BytesIO()
            torch.save(obj, buf)
            zf.writestr(member, buf.getvalue())
    return path


class RecipeSource(WeightSource):
    """Recipe-built weights, validated against our shipped manifests like any real file.

    Every network can be read, but the face generators are announced (``has``) only with ``faces``:
    the pipeline runs its face stage automatically when the weights have them, and the stage-1
    tests must not pay for (or be changed by) face refinement."""

    def __init__(self, salts: dict[str, str], faces: bool = False) -> None:
        self.salts = salts
        self.faces = faces
        self.label = "recipe"

    def has(self, spec: NetworkSpec) -> bool:  # official networks only: no refinement of ours
        return spec.name in RECIPE_FILES and (self.faces or spec.name not in FACE_FILES)

    def state_dict(self, spec: NetworkSpec) -> dict[str, torch.Tensor]:
        state = recipe_state(RECIPE_FILES[spec.name][0], self.salts.get(spec.name, ""))
        validate_state_dict(state, manifest_for(spec), f"recipe:{spec.name}")
        return state


_BANKS: dict[tuple[str, str, bool], ModelBank] = {}


def bank_for(salt: str = "", detector_salt: str = DETECTOR_SALT, faces: bool = False) -> ModelBank:
    """Networks with recipe weights (built once per salt pair and shared by the tests); ``faces``:
    the weights announce the face generators, so the pipeline's automatic face stage runs."""
    key = (salt, detector_salt, faces)
    if key not in _BANKS:
        salts = {name: salt for name in RECIPE_FILES}
        salts["detector"] = detector_salt
        _BANKS[key] = ModelBank(RecipeSource(salts, faces), torch.device("cpu"))
    return _BANKS[key]


def layout_only_state(name: str) -> dict[str, torch.Tensor]:
    """Every key, shape and dtype of ``name``'s official checkpoint, all values zero and each tensor a
    stride-0 view of one element: it passes validation and loads, yet saves to a few kB. For tests
    of importing and downloading, where the values never reach a network."""
    manifest = manifest_for(BY_NAME[name])
    return {t.key: torch.zeros((), dtype=getattr(torch, t.dtype)).expand(t.shape) for t in manifest.tensors}


def write_layout_zip(path: Path, names: tuple[str, ...]) -> Path:
    """A zip laid out like the official releases (members, containers and state-dict layout) holding
    layout-only weights for ``names``: it imports and validates like the real archives, in kilobytes."""
    import io

    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        for name in names:
            manifest = manifest_for(BY_NAME[name])
            state = layout_only_state(name)
            buf = io.BytesIO()
            torch.save({manifest.state_dict_key: state} if manifest.container == "dict" else state, buf)
            zf.writestr(RECIPE_FILES[name][1], buf.getvalue())
    return path


def write_face_zip(path: Path, names: tuple[str, ...] = ("face_256",)) -> Path:
    """A face_checkpoints.zip laid out like the official release (members and state-dict layout),
    holding layout-only weights for ``names``."""
    return write_layout_zip(path, names)


@pytest.fixture(scope="session")
def official_archives(tmp_path_factory) -> Path:
    """A folder holding both official archives, named as released, with layout-only weights: every
    Global network in global_checkpoints.zip, face_256 in face_checkpoints.zip."""
    folder = tmp_path_factory.mktemp("official-archives")
    write_layout_zip(folder / "global_checkpoints.zip", tuple(GLOBAL_FILES))
    write_face_zip(folder / "face_checkpoints.zip")
    return folder


@contextlib.contextmanager
def serve_folder(folder: Path) -> Iterator[str]:
    """Serve ``folder`` over HTTP on 127.0.0.1, so downloads run their real code with no network;
    yields the base URL (no trailing slash)."""
    handler = functools.partial(QuietFileHandler, directory=str(folder))
    server = QuietServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=2)


class QuietFileHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # keep pytest output clean
        pass


class QuietServer(http.server.ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client hanging up mid-file (a cancelled download) is what the tests do on purpose


@pytest.fixture(scope="session")
def training_photos(tmp_path_factory) -> tuple[Path, Path]:
    """Small generated 'clean' and 'old' photo folders for the training tests (read, never written)."""
    from tiny_weights import make_training_photos

    return make_training_photos(tmp_path_factory.mktemp("training-photos"))


@pytest.fixture(scope="session")
def official_zip(tmp_path_factory) -> Path:
    return write_official_zip(tmp_path_factory.mktemp("weights") / "global_checkpoints.zip")


@pytest.fixture
def content_hashes(monkeypatch) -> list[tuple[str, object]]:
    """Every content digest (engine.io.durable's ``sha256_file`` and ``sha256_bytes``) computed from now
    on, in order, as (function name, resolved path or the bytes). Every engine module's binding is
    counted, not only durable's own, so a caller that imported the function by name cannot slip past."""
    calls: list[tuple[str, object]] = []

    def counting(name: str, function):
        def counted(what, *args, **kwargs):
            calls.append((name, Path(what).resolve() if name == "sha256_file" else what))
            return function(what, *args, **kwargs)
        return counted

    for name in ("sha256_file", "sha256_bytes"):
        original = getattr(engine.io.durable, name)
        wrapper = counting(name, original)
        for module in [m for key, m in sys.modules.items() if key == "engine" or key.startswith("engine.")]:
            if getattr(module, name, None) is original:
                monkeypatch.setattr(module, name, wrapper)
    return calls
