"""Provenance sidecars: ``<output name>.heirloom.json`` next to each restored file.

An archive must be able to say what made a file and make it again: the record holds the input's
path and sha256, the output's sha256, the engine and library versions, the weights (name and sha256
of each file), every option, the device and thread count, the tile size, where the damage mask came
from, whether faces were refined (detector, generator, each face found), timings and warnings.
"""

from __future__ import annotations

import json
import os
import platform
import zipfile
from pathlib import Path
from typing import Any, Iterable

from engine import __version__
from engine.io.durable import sha256_file, sha256_stream, write_bytes_atomic
from engine.models.checkpoints import OfficialSource, WeightSource

SIDECAR_SUFFIX = ".heirloom.json"
SCHEMA = "heirloom-provenance/1"


def sidecar_path(output: Path) -> Path:
    output = Path(output)
    return output.with_name(output.name + SIDECAR_SUFFIX)


class WeightHashes:
    """sha256 of each weights file a run uses, computed once per run and reused for every photo.
    Official zips are hashed member by member (the bytes the network was loaded from)."""

    def __init__(self, source: WeightSource) -> None:
        self.source = source
        self._files = source.files()
        self._cache: dict[str, dict[str, str | None]] = {}

    def _hash(self, location: str) -> str | None:
        source = self.source
        if isinstance(source, OfficialSource) and location.startswith(f"{source.path}:"):
            member = location[len(str(source.path)) + 1:]
            if source.path.is_dir():
                return sha256_file(source.path / member)
            with zipfile.ZipFile(source.path) as zf, zf.open(member) as fh:
                return sha256_stream(fh)
        path = Path(location)
        return sha256_file(path) if path.is_file() else None

    def card(self) -> dict[str, Any] | None:
        """The model card of our own weights (it fixes the architecture, so it is part of what
        reproduces an output): its location, sha256 and per-network hyper-parameters."""
        folder = getattr(self.source, "folder", None)
        card = Path(folder) / "model.json" if folder is not None else None
        if card is None or not card.is_file():
            return None
        return {"location": str(card), "sha256": sha256_file(card), "name": self.source.card.get("name"),
                "networks": self.source.card.get("networks", {})}

    def describe(self, names: Iterable[str]) -> dict[str, dict[str, str | None]]:
        out = {}
        for name in names:
            if name not in self._cache:
                location = self._files.get(name)
                try:
                    sha = self._hash(location) if location else None
                except (OSError, zipfile.BadZipFile, KeyError):
                    sha = None
                self._cache[name] = {"location": location, "sha256": sha}
            out[name] = self._cache[name]
        return out


def environment() -> dict[str, Any]:
    """Versions that decide the output's bytes."""
    import zlib

    import cv2
    import numpy
    import PIL
    import torch

    return {"heirloom": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "numpy": numpy.__version__, "pillow": PIL.__version__, "opencv": cv2.__version__,
            "zlib": zlib.ZLIB_RUNTIME_VERSION, "platform": platform.platform(), "machine": platform.machine()}


def device_info(device: Any) -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {"device": str(device), "torch_threads": torch.get_num_threads()}
    if getattr(device, "type", None) == "cuda":
        info["name"] = torch.cuda.get_device_name(device)
        info["cudnn_deterministic"] = bool(torch.backends.cudnn.deterministic)
    return info


def mask_source(detected: bool, brushed: bool) -> str | None:
    if detected and brushed:
        return "both"
    return "detected" if detected else "brushed" if brushed else None


def build_record(*, input_path: Path, input_sha256: str, input_info: dict[str, Any], output_path: Path,
                 output_sha256: str, output_format: str, weights: dict[str, Any], options: dict[str, Any],
                 device: dict[str, Any], mask: dict[str, Any], timings: dict[str, float], warnings: list[str],
                 command: list[str], environment_info: dict[str, Any], tile: Any = None,
                 faces: dict[str, Any] | None = None) -> dict[str, Any]:
    """One sidecar's content (plain JSON types). ``tile``: the tiling facts (tile size, None = untiled);
    ``faces``: what the face stage did (``{"ran": False, ...}`` when it did not run)."""
    return {
        "schema": SCHEMA,
        "engine_version": __version__,
        "input": {"path": str(Path(input_path).resolve()), "sha256": input_sha256, **input_info},
        "output": {"path": str(Path(output_path).resolve()), "sha256": output_sha256, "format": output_format},
        "weights": weights,
        "options": options,
        "device": device,
        "tile": tile,
        "mask": mask,
        "faces": faces,
        "timings_s": {k: round(v, 4) for k, v in timings.items()},
        "warnings": list(warnings),
        "command": list(command),
        "cwd": os.getcwd(),
        "environment": environment_info,
    }


def write_sidecar(output: Path, record: dict[str, Any]) -> Path:
    path = sidecar_path(output)
    write_bytes_atomic(path, (json.dumps(record, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))
    return path
