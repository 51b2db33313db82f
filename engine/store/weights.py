"""Which weights Heirloom uses and where they live.

* ``default``: Heirloom's own weights, shipped in ``resources/weights/heirloom-lite-v1`` (safetensors);
* ``official``: the official release, imported into the user data directory by
  ``python main.py models import global_checkpoints.zip`` and, for face refinement,
  ``python main.py models import face_checkpoints.zip`` (or both downloaded);
* any path: an official zip, its unzipped folder, or a folder of our safetensors files.
* ``profile:NAME``: a fine-tuned profile (``engine.store.profiles``), a complete safetensors folder.

Nothing is ever written next to the program (not writable once installed): imports and
downloads go to the per-user data directory from platformdirs. Which of these sets are installed,
and how each is described, is the catalogue's job (engine.store.catalogue)."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from engine.io.durable import link_or_copy
from engine.models.checkpoints import (
    CheckpointError,
    OfficialSource,
    WeightSource,
)
from engine.models.registry import (
    FACE_NETWORKS,
    GLOBAL_NETWORKS,
    OWN_NETWORKS,
    NetworkSpec,
    manifest_for,
)
from engine.store import paths
from engine.store.paths import official_dir

# What ``--weights`` and the GUI's weights setting take: two names, ``profile:NAME``, or a path.
DEFAULT, OFFICIAL, PROFILE, PATH = "default", "official", "profile", "path"


PROFILE_PREFIX = "profile:"


class WeightsNotFound(CheckpointError):
    """Weights that were asked for are not installed; the message says how to get them."""


def default_dir() -> Path:
    """Heirloom's own weights, read at call time so tests and portable builds can point elsewhere."""
    return paths.DEFAULT_WEIGHTS_DIR  # looked up at call time: tests and portable installs point it elsewhere


def choice_kind(choice: str) -> str:
    """DEFAULT, OFFICIAL, PROFILE or PATH: how a weights choice is to be read."""
    if choice in (DEFAULT, OFFICIAL):
        return choice
    return PROFILE if choice.startswith(PROFILE_PREFIX) else PATH


# Quality and scratch restoration need these; the HR patch-attention mapping is optional
# (Heirloom's lite weights do not include one). The face generators (FACE_NETWORKS, from the separate
# face_checkpoints.zip) are optional too: without them the face stage is simply off.
OPTIONAL_NETWORKS = ("mapping_Patch_Attention",)


def missing_networks(source: WeightSource, include_optional: bool = False) -> list[str]:
    """The Global networks ``source`` lacks (without ``include_optional``: only those restoring needs)."""
    return [spec.name for spec in GLOBAL_NETWORKS
            if not source.has(spec) and (include_optional or spec.name not in OPTIONAL_NETWORKS)]


def _problems(source: WeightSource, specs) -> list[str]:
    """Read and check each of ``specs`` in ``source``; the errors, in words (empty = all good)."""
    problems = []
    for spec in specs:
        try:
            source.state_dict(spec)
        except CheckpointError as exc:
            problems.append(str(exc))
    return problems


def validate_source(source: WeightSource, require_all: bool = True) -> list[str]:
    """Read and check every Global network file, and Heirloom's own networks (the refinement) where
    present; returns the problems (empty = all good). Without ``require_all`` an absent optional
    network (HR) is not a problem."""
    return _problems(source, [spec for spec in GLOBAL_NETWORKS
                              if require_all or spec.name not in OPTIONAL_NETWORKS or source.has(spec)]
                     + [spec for spec in OWN_NETWORKS if source.has(spec)])


def validate_faces(source: WeightSource) -> list[str]:
    """Read and check every face generator ``source`` has; returns the problems (empty = all good).
    Absent ones are no problem: without them the face stage is simply off."""
    return _problems(source, [spec for spec in FACE_NETWORKS if source.has(spec)])


def archive_networks(source: OfficialSource) -> list[NetworkSpec]:
    """The networks an official archive brings, after checking it is complete and valid:
    global_checkpoints.zip must hold every Global network; face_checkpoints.zip (or its folder)
    one or both face generators; an archive holding both sets is fine. Raises CheckpointError."""
    faces = [spec for spec in FACE_NETWORKS if source.has(spec)]
    has_global = any(source.has(spec) for spec in GLOBAL_NETWORKS)
    if not has_global and not faces:
        raise CheckpointError(f"not imported: {source.path} holds none of the official checkpoints; expected "
                              "global_checkpoints.zip or face_checkpoints.zip (or the folder either unzips to)")
    problems = (validate_source(source) if has_global else []) + validate_faces(source)
    if problems:
        raise CheckpointError("not imported: " + " | ".join(problems))
    return (list(GLOBAL_NETWORKS) if has_global else []) + faces


@dataclass(frozen=True)
class ImportedWeights:
    """What importing (or downloading) official archives installed, and where."""

    folder: Path
    networks: tuple[str, ...]  # registry names, global networks first

    def describe(self) -> str:
        """“global weights and face weights (face_256)”: the words every front end reports it in."""
        face_names = {spec.name for spec in FACE_NETWORKS}
        faces = [name for name in self.networks if name in face_names]
        parts = (["global weights"] if len(faces) < len(self.networks) else []) + (
            [f"face weights ({', '.join(faces)})"] if faces else [])
        return " and ".join(parts)


def import_official(archive: Path) -> ImportedWeights:
    """Validate an official zip (or folder) completely, then install its checkpoints into the user
    data directory. Nothing is installed unless every file validates. Files of the other archive
    already installed are kept, so the global and the face archives can be imported in either order."""
    source = OfficialSource(Path(archive))
    specs = archive_networks(source)
    target = official_dir()
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".official-", dir=target.parent))
    try:
        new = set()
        for spec in specs:
            data, _ = source.read_bytes(spec)
            dest = staging / manifest_for(spec).path_in_zip
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(data)
            new.add(spec.name)
        if target.is_dir():
            installed = OfficialSource(target)
            for spec in GLOBAL_NETWORKS + FACE_NETWORKS:
                member = installed.member(spec)
                if spec.name not in new and member is not None:  # linked: no copy of hundreds of MB
                    dest = staging / manifest_for(spec).path_in_zip
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    link_or_copy(target / member, dest)
            shutil.rmtree(target)
        staging.replace(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return ImportedWeights(target, tuple(spec.name for spec in specs))
