"""The weights catalogue: every weight set Heirloom can restore with, and how each is described.

One list for every front end, so they cannot disagree about which weights exist or what they can
do: ``python main.py models`` prints it; the Models tab's table and profile combo and the Train
tab's base combo show it. The sets are Heirloom's default weights, the imported official ones,
every fine-tuned profile, and any other choice a caller names (a weights file or folder in use).

Two speeds: :func:`list_weights` looks only at folder and zip listings (cheap enough for the GUI
thread); :func:`check_weights` reads and validates every file (seconds for the official set), so
its verdicts are remembered until the files change.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable

from engine.models.checkpoints import (
    CheckpointError,
    OfficialSource,
    SafetensorsSource,
    WeightSource,
    open_source,
)
from engine.models.registry import FACE_NETWORKS, GLOBAL_NETWORKS
from engine.store.paths import official_dir
from engine.store.profiles import (
    Profile,
    ProfileError,
    get_profile,
    list_profiles,
    profile_source,
    profiles_dir,
)
from engine.store.weights import (
    DEFAULT,
    OFFICIAL,
    PATH,
    PROFILE,
    PROFILE_PREFIX,
    WeightsNotFound,
    choice_kind,
    default_dir,
    missing_networks,
    validate_faces,
    validate_source,
)

__all__ = ["CAPABILITIES", "WeightsEntry", "check_weights", "checked_weights", "forget_checks", "list_weights",
           "weights_title"]

TITLES = {DEFAULT: "Heirloom default", OFFICIAL: "Official (Microsoft)"}
# What a weight set can do, by the Global networks it holds (names from engine.models.registry).
CAPABILITIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("quality", ("VAE_A_quality", "mapping_quality", "VAE_B_quality")),
    ("scratch repair", ("VAE_A_quality", "mapping_scratch", "VAE_B_scratch")),
    ("HR", ("VAE_A_quality", "mapping_Patch_Attention", "VAE_B_scratch")),
    ("scratch detection", ("detector",)),
)


def resolve_weights(choice: str) -> WeightSource:
    """``default``, ``official``, ``profile:NAME`` or a path -> a weight source (errors say what to do)."""
    kind = choice_kind(choice)
    if kind == PROFILE:  # a fine-tuned profile in the user data directory (engine.store.profiles)
        return profile_source(choice.removeprefix(PROFILE_PREFIX))
    if kind == DEFAULT:
        source = SafetensorsSource(default_dir(), label="Heirloom default weights")
        missing = missing_networks(source)
        if missing:
            hint = ("the official weights are imported: use --weights official"
                    if official_dir().is_dir() else
                    "get the official weights with `python main.py models download official` or import "
                    "global_checkpoints.zip with `python main.py models import PATH`, then use --weights official")
            raise WeightsNotFound(f"Heirloom's own default weights are not installed in {default_dir()} "
                                  f"(missing: {', '.join(missing)}); {hint}")
        return source
    if kind == OFFICIAL:
        if not official_dir().is_dir():
            raise WeightsNotFound("the official weights are not imported yet; run `python main.py models download "
                                  "official` or `python main.py models import global_checkpoints.zip`")
        return OfficialSource(official_dir())
    path = Path(choice).expanduser()
    if not path.exists():
        raise WeightsNotFound(f"weights path {path} does not exist (use default, official, a zip or a folder)")
    return open_source(path)


@dataclass(frozen=True)
class WeightsEntry:
    """One weight set: what to call it, where it is, what it holds and (once checked) whether it is sound."""

    choice: str  # what --weights and the GUI's weights setting take
    title: str  # how it is named to the user
    kind: str  # DEFAULT, OFFICIAL, PROFILE or PATH (engine.store.weights)
    location: Path
    installed: bool
    about: str = ""  # a profile's task, base, steps and headline metric
    can_do: tuple[str, ...] = ()  # CAPABILITIES names its networks allow
    cannot_do: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()  # Global networks it lacks, optional ones (HR) included
    faces: tuple[str, ...] = ()  # face generators it holds (none: the face stage stays off)
    checked: bool = False  # every file was read and validated (or it could not even be opened)
    problems: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.installed and self.checked and not self.problems

    @property
    def has_faces(self) -> bool:
        return bool(self.faces)

    @property
    def status(self) -> str:
        if not self.installed:
            return "Not installed"
        if not self.checked:
            return "Not checked yet"
        return "Complete" if self.ok else "Incomplete or damaged"

    @property
    def contents(self) -> str:
        """“quality, scratch repair, scratch detection; no HR”: what the set can do (“—” when unknown)."""
        if not self.can_do and not self.cannot_do:
            return "—"
        text = ", ".join(self.can_do) if self.can_do else "nothing usable"
        return text + (f"; no {', '.join(self.cannot_do)}" if self.cannot_do and self.can_do else "")

    @property
    def detail(self) -> str:
        """The verdict in one line: valid (with what is optional and absent), or the first problem."""
        if not self.installed:
            return "the file or folder does not exist" if self.kind == PATH else "not installed"
        if not self.checked:
            verdict = "not checked yet" + (f" (missing: {', '.join(self.missing)})" if self.missing else "")
        elif self.problems:
            verdict = f"{len(self.problems)} problem(s): {self.problems[0]}"
        else:
            verdict = "valid"
            if self.missing:
                verdict += " (no HR network: --hr needs the official weights)"
            verdict += (f" (faces: {', '.join(self.faces)})" if self.faces else
                        " (no face generator: faces stay off; import face_checkpoints.zip to refine faces)")
        return f"{self.about}; {verdict}" if self.about else verdict


def weights_title(choice: str) -> str:
    """How a weights choice is named to the user: “Heirloom default”, “Profile my-album”, a file name."""
    kind = choice_kind(choice)
    if kind in TITLES:
        return TITLES[kind]
    if kind == PROFILE:
        return f"Profile {choice.removeprefix(PROFILE_PREFIX)}"
    return Path(choice).name or choice


def list_weights(extra: Iterable[str] = ()) -> list[WeightsEntry]:
    """Every weight set found, unchecked: the default weights, the official ones, each profile, then
    each choice of ``extra`` (e.g. the weights in use) not listed already. Reads no weights file."""
    entries = [_entry(DEFAULT, default_dir()), _entry(OFFICIAL, official_dir())]
    entries += [_profile_entry(profile) for profile in list_profiles()]
    for choice in extra:
        if choice and choice not in {entry.choice for entry in entries}:
            entries.append(_entry_for_choice(choice))
    return entries


def checked_weights(extra: Iterable[str] = ()) -> list[WeightsEntry]:
    """:func:`list_weights` with every entry checked (slow the first time: run it off the GUI thread)."""
    return [check_weights(entry) for entry in list_weights(extra)]


# Verdicts by (choice, files signature): switching weights or listing again must not re-read a
# gigabyte when no file changed.
_PROBLEMS: dict[tuple[str, tuple], tuple[str, ...]] = {}


def check_weights(entry: WeightsEntry) -> WeightsEntry:
    """``entry`` with every network file read and validated against the manifests."""
    if not entry.installed or entry.checked:
        return entry
    key = (entry.choice, files_signature(entry.location))
    if key not in _PROBLEMS:
        try:
            source = _open(entry.kind, entry.location)
            problems = validate_source(source, require_all=entry.kind == OFFICIAL) + validate_faces(source)
        except CheckpointError as exc:
            problems = [str(exc)]
        _PROBLEMS[key] = tuple(problems)
    return replace(entry, checked=True, problems=_PROBLEMS[key])


def forget_checks() -> None:
    """Read every file again at the next check (the user asked to; files may change in place)."""
    _PROBLEMS.clear()


def files_signature(path: Path) -> tuple:
    """(name, size, mtime) of a file or of every file under a folder: changes when the weights do."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return tuple((str(p), st.st_size, st.st_mtime_ns) for p in files for st in (p.stat(),))


def _open(kind: str, location: Path) -> WeightSource:
    if kind == OFFICIAL:
        return OfficialSource(location)
    if kind == PATH:
        return open_source(location)
    return SafetensorsSource(location)  # the default weights and profiles


def _entry(choice: str, location: Path, about: str = "") -> WeightsEntry:
    """An unchecked entry; what it holds comes from the file listing alone."""
    kind = choice_kind(choice)
    entry = WeightsEntry(choice, weights_title(choice), kind, location, location.exists(), about)
    if not entry.installed:
        return entry
    try:
        source = _open(kind, location)
    except CheckpointError as exc:
        return replace(entry, checked=True, problems=(str(exc),))
    present = {spec.name for spec in GLOBAL_NETWORKS if source.has(spec)}
    return replace(entry,
                   can_do=tuple(name for name, needs in CAPABILITIES if set(needs) <= present),
                   cannot_do=tuple(name for name, needs in CAPABILITIES if not set(needs) <= present),
                   missing=tuple(missing_networks(source, include_optional=True)),
                   faces=tuple(spec.name for spec in FACE_NETWORKS if source.has(spec)))


def _profile_entry(profile: Profile) -> WeightsEntry:
    choice = PROFILE_PREFIX + profile.name
    if profile.problem:  # an unreadable card: unusable, whatever its files
        return WeightsEntry(choice, weights_title(choice), PROFILE, profile.folder, True, checked=True,
                            problems=(profile.problem,))
    return _entry(choice, profile.folder, profile.describe())


def _entry_for_choice(choice: str) -> WeightsEntry:
    if choice_kind(choice) != PROFILE:
        return _entry(choice, Path(choice).expanduser())
    name = choice.removeprefix(PROFILE_PREFIX)
    try:
        return _profile_entry(get_profile(name))
    except ProfileError:  # gone (deleted, or never made here): listed as not installed
        return WeightsEntry(choice, weights_title(choice), PROFILE, profiles_dir() / name, False)
