"""engine.store.catalogue: which weight sets exist, what they hold, and the (cached) verdict on their files."""

from __future__ import annotations

import os

import pytest
import torch

import engine.store.catalogue
import engine.store.paths
import engine.store.weights
from engine.models.checkpoints import save_state_dicts
from engine.models.registry import BY_NAME
from engine.store.catalogue import (
    check_weights,
    checked_weights,
    forget_checks,
    list_weights,
    weights_title,
)

# Quality, scratch repair and detection: everything restoring needs, but no HR mapping and no face.
NETWORKS = ("VAE_A_quality", "mapping_quality", "VAE_B_quality", "VAE_B_scratch", "mapping_scratch", "detector")


@pytest.fixture
def default_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("HEIRLOOM_DATA_DIR", str(tmp_path / "userdata"))
    folder = tmp_path / "default"
    torch.manual_seed(0)
    save_state_dicts(folder, {name: BY_NAME[name].build().state_dict() for name in NETWORKS})
    monkeypatch.setattr(engine.store.paths, "DEFAULT_WEIGHTS_DIR", folder)
    forget_checks()
    return folder


def test_listing_reads_no_weights_and_checking_is_remembered_until_a_file_changes(default_weights):
    default, official = list_weights()
    assert (default.choice, default.title, default.kind) == ("default", "Heirloom default", "default")
    assert default.installed and not default.checked and default.status == "Not checked yet"
    assert default.contents == "quality, scratch repair, scratch detection; no HR"
    assert default.missing == ("mapping_Patch_Attention",) and not default.has_faces
    assert not official.installed and official.detail == "not installed" and official.contents == "—"

    checked = check_weights(default)
    assert checked.ok and checked.status == "Complete"
    assert checked.detail.startswith("valid (no HR network") and "no face generator" in checked.detail

    detector = default_weights / "detector.safetensors"
    stat = detector.stat()
    detector.write_bytes(b"x" * stat.st_size)  # damaged in place, same size and time: the same signature
    os.utime(detector, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert check_weights(default).ok  # remembered: no file was read again
    forget_checks()  # "Check again"
    damaged = check_weights(default)
    assert not damaged.ok and damaged.status == "Incomplete or damaged"
    assert damaged.detail.startswith("1 problem(s): ") and "detector.safetensors" in damaged.detail

    save_state_dicts(default_weights, {"detector": BY_NAME["detector"].build().state_dict()})  # a new file
    assert check_weights(default).ok  # its signature changed: checked again without being asked


def test_choices_in_use_are_listed_even_when_gone(default_weights, tmp_path):
    missing_folder = tmp_path / "gone-weights"
    entries = checked_weights(extra=("default", str(missing_folder), "profile:old album"))
    assert [e.choice for e in entries] == ["default", "official", str(missing_folder), "profile:old album"]
    folder, profile = entries[2:]
    assert (folder.title, folder.kind, folder.installed) == ("gone-weights", "path", False)
    assert folder.detail == "the file or folder does not exist" and folder.status == "Not installed"
    assert (profile.title, profile.kind, profile.installed) == ("Profile old album", "profile", False)
    assert weights_title("official") == "Official (Microsoft)"
