"""Checkpoint loading, in one place.

Sources of weights:
* the official ``global_checkpoints.zip`` as downloaded, or the folder it unzips to (``.pth`` files,
  found by their path suffix, e.g. ``restoration/VAE_A_quality/latest_net_G.pth``);
* a folder of our own safetensors files ``<network name>.safetensors`` (default weights, profiles).

Every ``.pth`` is read with ``torch.load(weights_only=True)``: a pickle that would run code is
refused, never executed. Every state dict is validated against the manifest of the official
file before it reaches a network, and errors name the file and the offending keys.
"""

from __future__ import annotations

import io
import json
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import torch
from safetensors.torch import load_file as load_safetensors
from safetensors.torch import save_file as save_safetensors
from torch import nn

from engine.models.networks.partial_nonlocal import ATTENTION_ROWS, AttentionRows
from engine.models.predictors import ANCHORED_TONES, StrengthPredictor, TonePredictor
from engine.models.registry import (
    BY_NAME,
    FACE_NETWORKS,
    Manifest,
    NetworkSpec,
    manifest_for,
)

_DTYPES = {"float32": torch.float32, "float64": torch.float64, "float16": torch.float16, "int64": torch.int64}
_MAX_KEYS_SHOWN = 8


class CheckpointError(Exception):
    """A weights file is missing, unreadable, unsafe or does not match its manifest."""


def _key_list(keys: list[str]) -> str:
    shown = ", ".join(keys[:_MAX_KEYS_SHOWN])
    more = len(keys) - _MAX_KEYS_SHOWN
    return shown + (f" (+{more} more)" if more > 0 else "")


def validate_state_dict(state: Mapping[str, object], manifest: Manifest, origin: str) -> None:
    """Raise CheckpointError naming missing / unexpected / mis-shaped / wrongly typed keys."""
    expected = {t.key: t for t in manifest.tensors}
    missing = [k for k, t in expected.items() if k not in state and not t.optional]
    unexpected = [k for k in state if k not in expected]
    wrong = []
    for key, spec in expected.items():
        value = state.get(key)
        if value is None:
            continue
        if not isinstance(value, torch.Tensor):
            wrong.append(f"{key} (not a tensor: {type(value).__name__})")
        elif tuple(value.shape) != spec.shape:
            wrong.append(f"{key} (shape {tuple(value.shape)}, expected {spec.shape})")
        elif value.dtype != _DTYPES[spec.dtype]:
            wrong.append(f"{key} (dtype {str(value.dtype).removeprefix('torch.')}, expected {spec.dtype})")
    problems = []
    if missing:
        problems.append(f"missing keys: {_key_list(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_key_list(unexpected)}")
    if wrong:
        problems.append(f"mismatched tensors: {_key_list(wrong)}")
    if problems:
        raise CheckpointError(f"{origin} does not match the {manifest.title} layout: " + "; ".join(problems))


def read_pth(data: bytes, origin: str) -> object:
    """Unpickle a torch file without ever executing code from it."""
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "unsupported content"
        raise CheckpointError(f"{origin} was refused: it holds Python objects that would run code when loaded "
                              f"({first[:160]}). Only plain tensor checkpoints are accepted.") from None
    except Exception as exc:  # truncated zip container, garbage bytes, wrong format...
        raise CheckpointError(f"{origin} is damaged or not a PyTorch checkpoint ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0][:160] if str(exc) else 'unreadable'}). "
                              "Download or copy it again.") from None


def extract_state_dict(obj: object, manifest: Manifest, origin: str) -> dict[str, torch.Tensor]:
    if manifest.container == "dict":
        if not isinstance(obj, dict) or manifest.state_dict_key not in obj:
            raise CheckpointError(f"{origin} has no '{manifest.state_dict_key}' entry, "
                                  f"which the {manifest.title} checkpoint must have")
        obj = obj[manifest.state_dict_key]
    if not isinstance(obj, dict):
        raise CheckpointError(f"{origin} does not hold a state dict (found {type(obj).__name__})")
    return dict(obj)


class WeightSource:
    """Somewhere state dicts for the networks in the registry can be read from."""

    label: str

    def state_dict(self, spec: NetworkSpec) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def has(self, spec: NetworkSpec) -> bool:
        raise NotImplementedError

    def files(self) -> dict[str, str]:
        """Network name -> human-readable location of its file (for provenance and listings)."""
        return {}

    def network_kwargs(self, spec: NetworkSpec) -> dict:
        """Constructor arguments for ``spec`` (empty: the official shapes)."""
        return {}

    def output_tone(self) -> str:
        """"model" (the decoder's own global tone, as officially), "match-input" (weights trained
        tone-anchored: the pipeline gives the output the input photo's tone) or "predicted" (the
        output gets the tone the card's predictor estimates for the clean photo); see engine.tone."""
        return "model"

    def tone_predictor(self) -> TonePredictor | None:
        return None

    def attention_rows(self) -> AttentionRows:
        """Which rows of the partial non-local attention a restore computes exactly: "all" (the
        official computation; official weights always) or "holes" (the rows of hole cells exactly,
        the rest locally; for weights whose card says so, measured to make no visible difference:
        engine.models.networks.partial_nonlocal)."""
        return "all"

    def detection_scale(self) -> str | int:
        """The scale the scratch detector runs at unless told (engine.core.detection reads it): the
        official 256 px short side unless the weights' card says otherwise."""
        return "official"

    def default_strength(self) -> float:
        """How much of the restoration the pipeline applies outside the holes unless told (1 = all)."""
        return 1.0

    def strength_predictor(self) -> StrengthPredictor | None:
        """Per-photo strength (engine.core.strength) used instead of ``default_strength`` when present."""
        return None


class OfficialSource(WeightSource):
    """The official release: ``global_checkpoints.zip`` or the folder it unzips to."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.label = f"official ({self.path})"
        if not self.path.exists():
            raise CheckpointError(f"{self.path} does not exist")
        if self.path.is_dir():
            self._members = {p.relative_to(self.path).as_posix(): p for p in self.path.rglob("*") if p.is_file()}
        elif zipfile.is_zipfile(self.path):
            with zipfile.ZipFile(self.path) as zf:
                self._members = {info.filename: info.filename for info in zf.infolist() if not info.is_dir()}
        else:
            raise CheckpointError(f"{self.path} is neither a folder nor a zip file; expected the official "
                                  "global_checkpoints.zip or the folder it unzips to")

    def _member(self, spec: NetworkSpec) -> str | None:
        if spec.manifest is None:  # Heirloom's own networks are never in an official archive
            return None
        suffix = manifest_for(spec).path_in_zip.removeprefix("checkpoints/")
        hits = sorted(m for m in self._members if m == suffix or m.endswith("/" + suffix))
        return hits[0] if hits else None

    def has(self, spec: NetworkSpec) -> bool:
        return self._member(spec) is not None

    def member(self, spec: NetworkSpec) -> str | None:
        """The archive member (or path inside the folder) holding ``spec``'s checkpoint, if any."""
        return self._member(spec)

    def files(self) -> dict[str, str]:
        return {s.name: f"{self.path}:{m}" for s in BY_NAME.values() if (m := self._member(s))}

    def read_bytes(self, spec: NetworkSpec) -> tuple[bytes, str]:
        member = self._member(spec)
        if member is None:
            archive = "face_checkpoints.zip" if spec in FACE_NETWORKS else "global_checkpoints.zip"
            raise CheckpointError(f"{self.path} has no {manifest_for(spec).path_in_zip} "
                                  f"(the {spec.purpose}); is this the official {archive}?")
        origin = f"{self.path}:{member}"
        try:
            if self.path.is_dir():
                return self._members[member].read_bytes(), origin
            with zipfile.ZipFile(self.path) as zf:
                return zf.read(member), origin
        except (OSError, zipfile.BadZipFile, EOFError) as exc:
            raise CheckpointError(f"{origin} cannot be read ({exc}); the archive may be truncated") from None

    def state_dict(self, spec: NetworkSpec) -> dict[str, torch.Tensor]:
        data, origin = self.read_bytes(spec)
        manifest = manifest_for(spec)
        state = extract_state_dict(read_pth(data, origin), manifest, origin)
        validate_state_dict(state, manifest, origin)
        return state


class SafetensorsSource(WeightSource):
    """A folder of ``<network name>.safetensors`` files (our own weights and fine-tuned profiles),
    with an optional ``model.json`` card whose ``networks`` entry gives each network's
    constructor arguments (e.g. the narrower lite mapping)."""

    CARD = "model.json"

    def __init__(self, folder: Path, label: str | None = None) -> None:
        self.folder = Path(folder)
        self.label = label or f"safetensors ({self.folder})"
        self.card: dict = {}
        card = self.folder / self.CARD
        if card.is_file():
            try:
                self.card = json.loads(card.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise CheckpointError(f"{card} is not a readable model card ({exc})") from None

    def network_kwargs(self, spec: NetworkSpec) -> dict:
        return dict(self.card.get("networks", {}).get(spec.name, {}))

    def output_tone(self) -> str:
        tone = self.card.get("output_tone", "model")
        if tone not in ("model", *ANCHORED_TONES):
            raise CheckpointError(f"{self.folder / self.CARD}: unknown output_tone {tone!r} "
                                  "(expected 'model', 'match-input' or 'predicted')")
        return tone

    def attention_rows(self) -> AttentionRows:
        rows = self.card.get("attention_rows", "all")
        if rows not in ATTENTION_ROWS:
            raise CheckpointError(f"{self.folder / self.CARD}: unknown attention_rows {rows!r} "
                                  f"(expected {' or '.join(map(repr, ATTENTION_ROWS))})")
        return rows

    def detection_scale(self) -> str | int:
        """The card's ``detection_scale`` (validated where it is used, by
        engine.core.detection.parse_detection_scale), else the official 256 px."""
        return self.card.get("detection_scale", "official")

    def default_strength(self) -> float:
        value = self.card.get("default_strength", 1.0)
        if not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
            raise CheckpointError(f"{self.folder / self.CARD}: default_strength must be a number from 0 to 1, "
                                  f"not {value!r}")
        return float(value)

    def strength_predictor(self) -> StrengthPredictor | None:
        if "strength_predictor" not in self.card:
            return None
        try:
            return StrengthPredictor.from_json(self.card["strength_predictor"])
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"{self.folder / self.CARD}: its strength_predictor entry is malformed ({exc}); "
                                  "re-export the weights with `main.py train export`") from None

    def tone_predictor(self) -> TonePredictor | None:
        if self.output_tone() != "predicted":
            return None
        try:
            return TonePredictor.from_json(self.card["tone_predictor"])
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"{self.folder / self.CARD}: output_tone is 'predicted' but its "
                                  f"tone_predictor entry is missing or malformed ({exc}); re-export the "
                                  "weights with `main.py train export`") from None

    def _file(self, spec: NetworkSpec) -> Path:
        return self.folder / f"{spec.name}.safetensors"

    def has(self, spec: NetworkSpec) -> bool:
        return self._file(spec).is_file()

    def files(self) -> dict[str, str]:
        return {s.name: str(self._file(s)) for s in BY_NAME.values() if self.has(s)}

    def state_dict(self, spec: NetworkSpec) -> dict[str, torch.Tensor]:
        path = self._file(spec)
        if not path.is_file():
            raise CheckpointError(f"{path} is missing: the weights in {self.folder} do not include the "
                                  f"{spec.purpose}; choose weights that do (e.g. --weights official)")
        try:
            state = load_safetensors(str(path))
        except Exception as exc:
            raise CheckpointError(f"{path} is damaged or not a safetensors file ({exc})") from None
        validate_state_dict(state, manifest_for(spec, self.network_kwargs(spec)), str(path))
        return state


def save_state_dicts(folder: Path, states: Mapping[str, Mapping[str, torch.Tensor]]) -> None:
    """Write ``<name>.safetensors`` per network (state dicts only: nothing executable)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, state in states.items():
        tmp = folder / f".{name}.safetensors.tmp"
        save_safetensors({k: v.contiguous() for k, v in state.items()}, str(tmp))
        tmp.replace(folder / f"{name}.safetensors")


def open_source(path: Path) -> WeightSource:
    """A zip / official folder, or a folder of our safetensors files."""
    path = Path(path)
    if path.is_dir() and any(path.glob("*.safetensors")):
        return SafetensorsSource(path)
    return OfficialSource(path)


def build_network(spec: NetworkSpec, state: Mapping[str, torch.Tensor], device: torch.device,
                  kwargs: dict | None = None) -> nn.Module:
    """Instantiate ``spec``'s network, load ``state`` strictly, eval mode, no gradients."""
    net = spec.build(**(kwargs or {}))
    net.load_state_dict(state, strict=True)
    net.eval().requires_grad_(False)
    return net.to(device)


@dataclass
class ModelBank:
    """Networks built once from one weight source and shared by every stage that needs them."""

    source: WeightSource
    device: torch.device

    def __post_init__(self) -> None:
        self._nets: dict[str, nn.Module] = {}
        self.derived: dict[str, dict] = {}  # forms of these networks made once (e.g. engine.core.fast's int8)

    def get(self, name: str) -> nn.Module:
        if name not in self._nets:
            spec = BY_NAME[name]
            self._nets[name] = build_network(spec, self.source.state_dict(spec), self.device,
                                             self.source.network_kwargs(spec))
        return self._nets[name]

    def missing(self, names: list[str]) -> list[str]:
        return [n for n in names if not self.source.has(BY_NAME[n])]
