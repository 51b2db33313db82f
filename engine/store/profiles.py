"""Named fine-tuning profiles: complete weight folders in the user data directory.

A profile is what a fine-tune produces (``engine.training.finetune.session``): the networks it tuned plus
every network of its base weights it did not tune, hard-linked (or copied) so the profile keeps
working when its base is updated or deleted. Layout::

    <user data>/profiles/<NAME>/<network>.safetensors
    <user data>/profiles/<NAME>/model.json    card: networks kwargs, output_tone, files (sha256),
                                              task, base, data folders, steps, metrics, created

Because it is a plain safetensors folder with a card, ``SafetensorsSource`` loads it like our
default weights, and ``resolve_weights("profile:NAME")`` returns it.

Profiles travel as a single zip (``<NAME>/model.json`` + ``<NAME>/*.safetensors``); importing one
checks every member name, the card and each file's sha256 before anything is installed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import torch

from engine.io.durable import link_or_copy, sha256_file, sha256_stream
from engine.models.checkpoints import (
    CheckpointError,
    SafetensorsSource,
    WeightSource,
    save_state_dicts,
)
from engine.models.registry import BY_NAME, FACE_NETWORKS, GLOBAL_NETWORKS, OWN_NETWORKS
from engine.store.paths import user_data_dir
from engine.store.weights import PROFILE_PREFIX, WeightsNotFound, validate_source

CARD = SafetensorsSource.CARD
FORMAT = "heirloom-profile/1"
PREFIX = PROFILE_PREFIX  # what --weights takes before a profile name
MAX_NAME = 64
# Letters, digits, space, dot, dash, underscore; starts with a letter or digit. No separators, so a
# name is always one folder inside the profiles directory, on every platform.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]*$")
_WINDOWS_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(1, 10)), *(f"lpt{i}" for i in range(1, 10))}
MAX_IMPORT_BYTES = 16 * 2**30  # a profile with every official network (faces included) is about 1.5 GB


class ProfileError(CheckpointError):
    """A profile name, folder or file is invalid; the message says which and why."""


class ProfileNotFound(ProfileError, WeightsNotFound):
    """No profile of that name (the message lists the ones that exist)."""


class ProfileExists(ProfileError):
    """Saving or importing would replace an existing profile without ``overwrite``."""


def profiles_dir() -> Path:
    return user_data_dir() / "profiles"


def validate_name(name: str) -> str:
    """Return ``name`` if it can name a profile folder, else raise ProfileError saying why."""
    if not isinstance(name, str) or not name.strip():
        raise ProfileError("a profile needs a name")
    if len(name) > MAX_NAME:
        raise ProfileError(f"profile name {name[:20]!r}... is {len(name)} characters long; at most {MAX_NAME}")
    if not _NAME.match(name) or name.endswith((".", " ")):
        raise ProfileError(f"profile name {name!r} is not allowed: use letters, digits, spaces, '.', '-' and '_', "
                           "starting with a letter or digit (no slashes)")
    if name.split(".")[0].strip().lower() in _WINDOWS_RESERVED:
        raise ProfileError(f"profile name {name!r} is reserved on Windows; choose another")
    return name


@dataclass(frozen=True)
class ProfileInfo:
    """What a fine-tune tells the card about itself (shown in listings and the Train tab)."""

    task: str  # "detector", "domain" or "mapping"
    base: str  # the weights choice it started from: "default", "official", "profile:NAME" or a path
    data: dict[str, str | None] = field(default_factory=dict)  # role -> folder ("images", "masks", "scans", ...)
    steps: int = 0
    seconds: float = 0.0
    device: str = "cpu"
    metrics_before: dict[str, float] = field(default_factory=dict)
    metrics_after: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Profile:
    name: str
    folder: Path
    card: dict
    problem: str | None = None  # set when the card cannot be read (the folder is listed anyway)

    @property
    def task(self) -> str:
        return str(self.card.get("task", "?"))

    @property
    def base(self) -> str:
        return str(self.card.get("base", {}).get("choice", "?"))

    @property
    def created(self) -> str:
        return str(self.card.get("created", ""))

    @property
    def metrics(self) -> dict[str, dict[str, float]]:
        return dict(self.card.get("metrics", {}))

    def source(self) -> SafetensorsSource:
        return SafetensorsSource(self.folder, label=f"profile {self.name}")

    def describe(self) -> str:
        """One line for listings: task, base, steps, the headline metric before -> after."""
        if self.problem:
            return f"unusable: {self.problem}"
        parts = [f"{self.task} from {self.base}", f"{self.card.get('steps', 0)} steps"]
        before, after = self.metrics.get("before", {}), self.metrics.get("after", {})
        for key in ("f1", "domain_gap", "psnr_quality"):
            if key in after:
                parts.append(f"{key} {before.get(key, float('nan')):.3f} -> {after[key]:.3f}")
                break
        if self.created:
            parts.append(self.created)
        return ", ".join(parts)


def _read_card(folder: Path) -> dict:
    try:
        card = json.loads((folder / CARD).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ProfileError(f"{folder / CARD} is not a readable profile card ({exc})") from None
    if not isinstance(card, dict):
        raise ProfileError(f"{folder / CARD} is not a profile card (expected a JSON object)")
    return card


def list_profiles() -> list[Profile]:
    """Every profile folder, sorted by name; one with an unreadable card has ``problem`` set."""
    root = profiles_dir()
    if not root.is_dir():
        return []
    found = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        try:
            found.append(Profile(folder.name, folder, _read_card(folder)))
        except ProfileError as exc:
            found.append(Profile(folder.name, folder, {}, str(exc)))
    return found


def get_profile(name: str) -> Profile:
    validate_name(name)
    folder = profiles_dir() / name
    if not (folder / CARD).is_file():
        names = [p.name for p in list_profiles()]
        known = f"existing profiles: {', '.join(names)}" if names else (
            "there are no profiles yet; make one with `python main.py finetune ...`")
        raise ProfileNotFound(f"no profile named {name!r} ({known})")
    return Profile(name, folder, _read_card(folder))


def profile_source(name: str) -> SafetensorsSource:
    """The weight source behind ``--weights profile:NAME``."""
    return get_profile(name).source()


def delete_profile(name: str) -> None:
    profile = get_profile(name)
    trash = profile.folder.with_name(f".deleted-{name}-{os.getpid()}-{time.monotonic_ns()}")
    profile.folder.replace(trash)  # gone from listings at once, even if the removal below is slow
    shutil.rmtree(trash, ignore_errors=True)


def _install(staging: Path, name: str, overwrite: bool) -> Path:
    """Move a finished staging folder to ``profiles/<name>``; the old profile (if allowed) goes only
    once the new one is complete."""
    target = profiles_dir() / name
    if target.exists():
        if not overwrite:
            raise ProfileExists(f"a profile named {name!r} already exists; delete it or choose another name")
        trash = target.with_name(f".replaced-{name}-{os.getpid()}-{time.monotonic_ns()}")
        target.replace(trash)
        staging.replace(target)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        staging.replace(target)
    return target


def _staging(name: str) -> Path:
    root = profiles_dir()
    root.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".staging-{name}-", dir=root))


def save_profile(name: str, base: WeightSource, tuned: Mapping[str, Mapping[str, torch.Tensor]],
                 info: ProfileInfo, overwrite: bool = False) -> Profile:
    """Write ``tuned`` (registry name -> state dict) plus every other network ``base`` has as the
    complete profile ``name``. Nothing replaces an existing profile unless ``overwrite``."""
    validate_name(name)
    if (profiles_dir() / name).exists() and not overwrite:
        raise ProfileExists(f"a profile named {name!r} already exists; delete it or choose another name")
    unknown = sorted(set(tuned) - set(BY_NAME))
    if unknown:
        raise ProfileError(f"not networks Heirloom knows: {', '.join(unknown)}")
    staging = _staging(name)
    try:
        save_state_dicts(staging, tuned)
        kept = []
        for spec in GLOBAL_NETWORKS + FACE_NETWORKS + OWN_NETWORKS:
            if spec.name in tuned or not base.has(spec):
                continue
            dest = staging / f"{spec.name}.safetensors"
            if isinstance(base, SafetensorsSource):
                link_or_copy(base.folder / f"{spec.name}.safetensors", dest)
            else:  # official .pth: converted once, so the profile needs no pickle loader
                save_state_dicts(staging, {spec.name: base.state_dict(spec)})
            kept.append(spec.name)
        names = sorted([*tuned, *kept])
        networks = {n: kw for n in names if (kw := base.network_kwargs(BY_NAME[n]))}
        base_card = getattr(base, "card", {}) or {}
        card = {
            "format": FORMAT, "name": name, "task": info.task,
            "base": {"choice": info.base, "label": base.label, "name": base_card.get("name")},
            "data": dict(info.data), "steps": info.steps, "seconds": round(info.seconds, 1), "device": info.device,
            "metrics": {"before": dict(info.metrics_before), "after": dict(info.metrics_after)},
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "fine_tuned": sorted(tuned), "networks": networks, "output_tone": base.output_tone(),
            "attention_rows": base.attention_rows(),
            "files": {f"{n}.safetensors": sha256_file(staging / f"{n}.safetensors") for n in names},
        }
        if "config" in base_card:
            card["config"] = base_card["config"]
        if base.default_strength() != 1.0:
            card["default_strength"] = base.default_strength()
        if base.detection_scale() != "official":  # the scale the base detector was measured at
            card["detection_scale"] = base.detection_scale()
        if (strength := base.strength_predictor()) is not None:
            card["strength_predictor"] = strength.to_json()
        if (predictor := base.tone_predictor()) is not None:  # the profile's output gets the base's tone
            card["tone_predictor"] = predictor.to_json()
        (staging / CARD).write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
        target = _install(staging, name, overwrite)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return Profile(name, target, card)


def export_profile(name: str, dest: Path, overwrite: bool = False) -> Path:
    """Write profile ``name`` as one zip file (``<NAME>/model.json`` and its safetensors)."""
    profile = get_profile(name)
    dest = Path(dest)
    if dest.exists() and not overwrite:
        raise ProfileExists(f"{dest} already exists; choose another file name")
    files = [CARD, *sorted(profile.card.get("files", {}))]
    missing = [f for f in files if not (profile.folder / f).is_file()]
    if missing:
        raise ProfileError(f"profile {name!r} is incomplete (missing {', '.join(missing)}); it cannot be exported")
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    os.close(fd)
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:  # safetensors do not compress
            for f in files:
                zf.write(profile.folder / f, f"{name}/{f}")
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return dest


def _members(zf: zipfile.ZipFile, origin: Path) -> tuple[str, dict[str, zipfile.ZipInfo]]:
    """(top folder, file name -> member), refusing anything but ``TOP/model.json`` and
    ``TOP/<known network>.safetensors``."""
    tops, files = set(), {}
    allowed = {CARD} | {f"{n}.safetensors" for n in BY_NAME}
    for info in zf.infolist():
        if info.is_dir():
            continue
        parts = info.filename.split("/")
        if (len(parts) != 2 or "\\" in info.filename or info.filename.startswith("/")
                or any(p in ("", ".", "..") for p in parts) or parts[1] not in allowed):
            raise ProfileError(f"{origin} is not a Heirloom profile: unexpected member {info.filename!r} "
                               f"(a profile holds only NAME/{CARD} and NAME/<network>.safetensors)")
        if parts[1] in files:
            raise ProfileError(f"{origin} holds {info.filename!r} twice")
        tops.add(parts[0])
        files[parts[1]] = info
    if len(tops) != 1 or CARD not in files:
        raise ProfileError(f"{origin} is not a Heirloom profile: expected one folder holding {CARD}")
    if sum(i.file_size for i in files.values()) > MAX_IMPORT_BYTES:
        raise ProfileError(f"{origin} unpacks to more than {MAX_IMPORT_BYTES // 2**30} GB; refused")
    return tops.pop(), files


def _check_card(card: object, files: dict[str, zipfile.ZipInfo], origin: Path) -> dict:
    if not isinstance(card, dict) or not str(card.get("format", "")).startswith("heirloom-profile/"):
        raise ProfileError(f"{origin}: {CARD} is not a Heirloom profile card")
    listed = card.get("files")
    if not isinstance(listed, dict) or not listed:
        raise ProfileError(f"{origin}: the card lists no files")
    present = set(files) - {CARD}
    if set(listed) != present:
        problems = [f"missing {', '.join(sorted(set(listed) - present))}" if set(listed) - present else "",
                    f"not in the card: {', '.join(sorted(present - set(listed)))}" if present - set(listed) else ""]
        raise ProfileError(f"{origin} does not match its card ({'; '.join(p for p in problems if p)})")
    networks = card.get("networks") or {}
    if not isinstance(networks, dict) or any(n not in BY_NAME or not isinstance(v, dict) for n, v in networks.items()):
        raise ProfileError(f"{origin}: the card's 'networks' entry is malformed")
    return card


def _extract(zf: zipfile.ZipFile, info: zipfile.ZipInfo, dest: Path) -> str:
    """Copy one member to ``dest`` (never more bytes than it declares); returns its sha256."""
    with zf.open(info) as src, open(dest, "wb") as out:
        written = 0

        def write(block: bytes) -> None:
            nonlocal written
            written += len(block)
            if written > info.file_size:
                raise ProfileError(f"{info.filename} is larger than it claims; refused")
            out.write(block)

        return sha256_stream(src, write)


def import_profile(path: Path, name: str | None = None, overwrite: bool = False) -> Profile:
    """Validate a profile zip completely (names, card, sha256, tensor layouts, completeness), then
    install it as ``name`` (default: the name in its card). Nothing is installed if any check fails."""
    path = Path(path)
    if not path.is_file():
        raise ProfileError(f"{path} not found")
    if not zipfile.is_zipfile(path):
        raise ProfileError(f"{path} is not a profile file (expected a zip made by `profiles export`)")
    try:
        with zipfile.ZipFile(path) as zf:
            top, files = _members(zf, path)
            try:
                card = json.loads(zf.read(files[CARD]).decode("utf-8"))
            except (ValueError, UnicodeDecodeError) as exc:
                raise ProfileError(f"{path}: {CARD} is not readable JSON ({exc})") from None
            card = _check_card(card, files, path)
            target = validate_name(name or str(card.get("name") or top))
            if (profiles_dir() / target).exists() and not overwrite:
                raise ProfileExists(f"a profile named {target!r} already exists; delete it, or import with "
                                    "another name")
            staging = _staging(target)
            try:
                for fname, expected in card["files"].items():
                    if _extract(zf, files[fname], staging / fname) != expected:
                        raise ProfileError(f"{path}: {fname} does not match the sha256 in its card (damaged or "
                                           "altered); not imported")
                card["name"] = target
                (staging / CARD).write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
                _validate_folder(staging, path)
                folder = _install(staging, target, overwrite)
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise ProfileError(f"{path} cannot be read ({exc}); the file may be truncated") from None
    return Profile(target, folder, card)


def _validate_folder(folder: Path, origin: Path) -> None:
    """Every tensor file matches its network's layout and the restoration networks are all there."""
    try:
        source = SafetensorsSource(folder)
        source.output_tone()
    except CheckpointError as exc:
        raise ProfileError(f"{origin}: {exc}") from None
    problems = validate_source(source, require_all=False)
    for spec in FACE_NETWORKS:
        if source.has(spec):
            try:
                source.state_dict(spec)
            except CheckpointError as exc:
                problems.append(str(exc))
    if problems:
        shown = "; ".join(p.replace(str(folder), "<profile>") for p in problems[:3])
        raise ProfileError(f"{origin} is not a usable profile: {shown}")
