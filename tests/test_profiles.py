"""Profiles: complete weight folders in the user data directory, listed, resolved as
``profile:NAME``, exported to one file and imported back with every check on the way in."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest
import torch
from tiny_weights import TINY_NETWORKS, make_tiny_weights

from engine.cli.app import main as cli_main
from engine.models.checkpoints import SafetensorsSource
from engine.models.registry import BY_NAME
from engine.store import profiles
from engine.store.catalogue import resolve_weights
from engine.store.profiles import (
    ProfileError,
    ProfileExists,
    ProfileInfo,
    ProfileNotFound,
)
from engine.store.weights import WeightsNotFound


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return make_tiny_weights(tmp_path_factory.mktemp("tiny") / "weights")


@pytest.fixture(autouse=True)
def data_dir(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("HEIRLOOM_DATA_DIR", str(tmp_path / "userdata"))
    return tmp_path / "userdata"


def tuned_detector(base: Path) -> dict[str, dict[str, torch.Tensor]]:
    state = SafetensorsSource(base).state_dict(BY_NAME["detector"])
    return {"detector": {k: (v + 0.5 if v.is_floating_point() else v) for k, v in state.items()}}


def make_profile(tiny: Path, name: str = "archive") -> profiles.Profile:
    info = ProfileInfo("detector", str(tiny), {"images": "/photos", "masks": "/masks"}, steps=7, seconds=1.5,
                       metrics_before={"f1": 0.2}, metrics_after={"f1": 0.5})
    return profiles.save_profile(name, SafetensorsSource(tiny), tuned_detector(tiny), info)


def test_a_profile_is_complete_listed_resolved_exported_imported_and_deleted(tiny, tmp_path):
    profile = make_profile(tiny)
    files = {p.name for p in profile.folder.glob("*.safetensors")}
    assert files == {f"{n}.safetensors" for n in TINY_NETWORKS}  # the base's other networks came along
    assert profile.card["fine_tuned"] == ["detector"] and profile.card["task"] == "detector"
    assert profile.card["metrics"] == {"before": {"f1": 0.2}, "after": {"f1": 0.5}}
    assert profile.card["networks"]["detector"] == {"width_log2": 2}  # the base's shapes
    assert profile.card["output_tone"] == "match-input" and profile.card["created"]
    untouched = profile.folder / "VAE_A_quality.safetensors"
    assert untouched.read_bytes() == (tiny / "VAE_A_quality.safetensors").read_bytes()

    source = resolve_weights("profile:archive")
    assert source.label == "profile archive"
    tuned = source.state_dict(BY_NAME["detector"])
    torch.testing.assert_close(tuned["first.1.weight"], tuned_detector(tiny)["detector"]["first.1.weight"])
    assert [p.name for p in profiles.list_profiles()] == ["archive"]
    assert "f1 0.200 -> 0.500" in profiles.list_profiles()[0].describe()

    exported = profiles.export_profile("archive", tmp_path / "archive.heirloom-profile")
    with zipfile.ZipFile(exported) as zf:
        assert sorted(zf.namelist())[0] == "archive/VAE_A_quality.safetensors"
    profiles.delete_profile("archive")
    assert profiles.list_profiles() == []
    with pytest.raises(ProfileNotFound, match="no profiles yet"):
        resolve_weights("profile:archive")

    back = profiles.import_profile(exported)
    assert back.name == "archive" and back.card["files"] == profile.card["files"]
    renamed = profiles.import_profile(exported, name="copy")
    assert renamed.card["name"] == "copy"
    assert [p.name for p in profiles.list_profiles()] == ["archive", "copy"]
    with pytest.raises(ProfileExists):
        profiles.import_profile(exported)
    profiles.import_profile(exported, overwrite=True)


def test_unknown_profile_lists_the_existing_ones(tiny):
    make_profile(tiny, "one")
    make_profile(tiny, "two")
    with pytest.raises(WeightsNotFound, match="existing profiles: one, two"):
        resolve_weights("profile:three")
    with pytest.raises(ProfileExists):
        make_profile(tiny, "one")


@pytest.mark.parametrize("name", ["", "a/b", "..", "../up", "a\\b", "x" * 65, "CON", "-dash", "tail."])
def test_profile_names_are_validated(name, tiny):
    with pytest.raises(ProfileError):
        profiles.validate_name(name)
    with pytest.raises(ProfileError):
        resolve_weights(f"profile:{name}")


def _rezip(src: Path, dest: Path, change) -> Path:
    """Copy a profile zip, letting ``change(name, data)`` edit (or drop, returning None) each member."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dest, "w") as zout:
        for info in zin.infolist():
            result = change(info.filename, zin.read(info))
            if result is not None:
                zout.writestr(result[0], result[1])
    return dest


def test_import_refuses_unsafe_altered_or_incomplete_files(tiny, tmp_path):
    make_profile(tiny)
    good = profiles.export_profile("archive", tmp_path / "good.zip")
    profiles.delete_profile("archive")

    (tmp_path / "plain.txt").write_text("hello")
    with pytest.raises(ProfileError, match="not a profile file"):
        profiles.import_profile(tmp_path / "plain.txt")
    evil = _rezip(good, tmp_path / "evil.zip", lambda n, d: (n.replace("archive/", "../"), d)
                  if n.endswith("detector.safetensors") else (n, d))
    with pytest.raises(ProfileError, match="unexpected member '../detector.safetensors'"):
        profiles.import_profile(evil)
    extra = _rezip(good, tmp_path / "extra.zip", lambda n, d: (n, d))
    with zipfile.ZipFile(extra, "a") as zf:
        zf.writestr("archive/run.py", "print('hi')")
    with pytest.raises(ProfileError, match="unexpected member 'archive/run.py'"):
        profiles.import_profile(extra)

    def flip(name, data):
        if name.endswith("detector.safetensors"):
            data = data[:-1] + bytes([data[-1] ^ 1])
        return name, data
    with pytest.raises(ProfileError, match="does not match the sha256"):
        profiles.import_profile(_rezip(good, tmp_path / "altered.zip", flip))
    with pytest.raises(ProfileError, match="not readable JSON"):
        profiles.import_profile(_rezip(good, tmp_path / "card.zip",
                                       lambda n, d: (n, b"{broken") if n.endswith("model.json") else (n, d)))
    with pytest.raises(ProfileError, match="does not match its card"):
        profiles.import_profile(_rezip(good, tmp_path / "missing.zip",
                                       lambda n, d: None if n.endswith("mapping_quality.safetensors") else (n, d)))

    def drop_network(name, data):  # consistent card and files, but a restoration network is gone
        if name.endswith("mapping_quality.safetensors"):
            return None
        if name.endswith("model.json"):
            card = json.loads(data)
            del card["files"]["mapping_quality.safetensors"]
            return name, json.dumps(card).encode()
        return name, data
    with pytest.raises(ProfileError, match="not a usable profile"):
        profiles.import_profile(_rezip(good, tmp_path / "incomplete.zip", drop_network))
    with pytest.raises(ProfileError, match="not allowed"):
        profiles.import_profile(good, name="../x")
    assert profiles.list_profiles() == []  # nothing half-installed
    assert not [p for p in profiles.profiles_dir().iterdir()]  # no staging folders left behind


def test_profiles_command_line(tiny, tmp_path):
    def run(*argv: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        return cli_main(list(argv), out=out, err=err), out.getvalue(), err.getvalue()

    assert run("profiles", "list")[1].startswith("no profiles yet")
    make_profile(tiny)
    code, out, _ = run("profiles", "list")
    assert code == 0 and out.startswith("archive") and "detector from" in out
    dest = tmp_path / "a.zip"
    assert run("profiles", "export", "archive", str(dest))[0] == 0
    assert run("profiles", "export", "archive", str(dest))[0] == 1  # will not overwrite
    assert run("profiles", "delete", "archive")[0] == 0
    code, _, err = run("profiles", "delete", "archive")
    assert code == 1 and "no profile named 'archive'" in err
    code, out, _ = run("profiles", "import", str(dest), "--name", "restored")
    assert code == 0 and "profile:restored" in out


def test_a_profile_of_official_weights_converts_the_untuned_networks(tmp_path):
    """Official .pth networks become safetensors (no pickle loader needed), in the official shapes."""
    from conftest import GLOBAL_FILES, layout_only_state

    from engine.models.checkpoints import OfficialSource

    official = tmp_path / "official"
    for name in ("VAE_A_quality", "VAE_B_quality"):
        member = official / GLOBAL_FILES[name][1].removeprefix("checkpoints/")
        member.parent.mkdir(parents=True)
        torch.save(layout_only_state(name), member)
    base = OfficialSource(official)
    tuned = {"VAE_A_quality": {k: v.clone() + 1 for k, v in base.state_dict(BY_NAME["VAE_A_quality"]).items()}}
    profile = profiles.save_profile("from-official", base, tuned, ProfileInfo("domain", "official"))
    assert sorted(p.name for p in profile.folder.glob("*.safetensors")) == ["VAE_A_quality.safetensors",
                                                                             "VAE_B_quality.safetensors"]
    assert profile.card["networks"] == {} and profile.card["output_tone"] == "model"
    source = profile.source()
    assert float(source.state_dict(BY_NAME["VAE_A_quality"])["encoder.1.bias"][0]) == 1.0
    assert float(source.state_dict(BY_NAME["VAE_B_quality"])["encoder.1.bias"][0]) == 0.0
