"""Checkpoint loading: manifests, strict layouts, zip/folder sources, refusal of bad files."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest
import torch
from conftest import GLOBAL_FILES, recipe_state, reference_file

from engine.models.checkpoints import (
    CheckpointError,
    ModelBank,
    OfficialSource,
    SafetensorsSource,
    open_source,
    save_state_dicts,
    validate_state_dict,
)
from engine.models.registry import (
    BY_NAME,
    FACE_NETWORKS,
    GLOBAL_NETWORKS,
    manifest_for,
    manifests,
)

VAE = BY_NAME["VAE_A_quality"]
VAE_MEMBER = GLOBAL_FILES["VAE_A_quality"][1]


def pth_bytes(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def zip_with(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def test_shipped_manifests_agree_with_the_reference():
    for name, manifest in manifests().items():
        ref = json.loads(reference_file(f"manifests/{name}.json").read_text(encoding="utf-8"))
        expected = [(t["key"], tuple(t["shape"]), t["dtype"], bool(t.get("optional", False))) for t in ref["tensors"]]
        assert [(t.key, t.shape, t.dtype, t.optional) for t in manifest.tensors] == expected, name


@pytest.mark.parametrize("spec", GLOBAL_NETWORKS + FACE_NETWORKS, ids=lambda s: s.name)
def test_every_network_has_exactly_the_official_layout(spec):
    ours = spec.build().state_dict()
    expected = manifest_for(spec).tensors
    assert [(k, tuple(v.shape)) for k, v in ours.items()] == [(t.key, t.shape) for t in expected]


def test_face_networks_are_registered_but_not_part_of_stage_1(tmp_path):
    assert {s.name for s in FACE_NETWORKS} == {"face_256", "face_512"}
    assert all(BY_NAME[s.name] is s for s in FACE_NETWORKS)
    assert not {s.name for s in FACE_NETWORKS} & {s.name for s in GLOBAL_NETWORKS}
    # an official Global zip without the face files still lists and reads its own files
    archive = zip_with(tmp_path / "g.zip", {VAE_MEMBER: pth_bytes(recipe_state(GLOBAL_FILES["VAE_A_quality"][0]))})
    source = OfficialSource(archive)
    assert set(source.files()) == {"VAE_A_quality"}
    assert not source.has(BY_NAME["face_256"])
    with pytest.raises(CheckpointError, match="Setting_9_epoch_100/latest_net_G.pth"):
        source.state_dict(BY_NAME["face_256"])


def test_zip_and_unzipped_folder_give_the_same_validated_weights(tmp_path):
    state = recipe_state(GLOBAL_FILES["VAE_A_quality"][0])
    data = pth_bytes(state)
    archive = zip_with(tmp_path / "global_checkpoints.zip", {VAE_MEMBER: data})
    folder = tmp_path / "Global"
    (folder / VAE_MEMBER).parent.mkdir(parents=True)
    (folder / VAE_MEMBER).write_bytes(data)
    for source in (OfficialSource(archive), open_source(folder)):
        loaded = source.state_dict(VAE)
        assert all(torch.equal(loaded[k], state[k]) for k in state)
        assert source.has(VAE) and not source.has(BY_NAME["mapping_scratch"])


def test_detector_checkpoint_is_read_from_its_model_state_entry(tmp_path):
    state = recipe_state(GLOBAL_FILES["detector"][0], "det-28/")
    member = GLOBAL_FILES["detector"][1]
    archive = zip_with(tmp_path / "g.zip", {member: pth_bytes({"model_state": state, "epoch": 3})})
    assert set(OfficialSource(archive).state_dict(BY_NAME["detector"])) == set(state)
    bare = zip_with(tmp_path / "bare.zip", {member: pth_bytes(state)})
    with pytest.raises(CheckpointError, match="model_state"):
        OfficialSource(bare).state_dict(BY_NAME["detector"])


def test_missing_unexpected_and_misshaped_keys_are_named(tmp_path):
    state = dict(recipe_state(GLOBAL_FILES["VAE_A_quality"][0]))
    del state["decoder.11.bias"]
    state["encoder.99.weight"] = torch.zeros(1)
    state["encoder.1.weight"] = torch.zeros(64, 3, 5, 5)
    archive = zip_with(tmp_path / "g.zip", {VAE_MEMBER: pth_bytes(state)})
    with pytest.raises(CheckpointError) as info:
        OfficialSource(archive).state_dict(VAE)
    message = str(info.value)
    assert "latest_net_G.pth" in message
    assert "missing keys: decoder.11.bias" in message
    assert "unexpected keys: encoder.99.weight" in message
    assert "encoder.1.weight (shape (64, 3, 5, 5), expected (64, 3, 7, 7))" in message


def test_optional_batchnorm_counters_may_be_absent():
    state = {k: v for k, v in recipe_state(GLOBAL_FILES["detector"][0], "det-28/").items()
             if not k.endswith("num_batches_tracked")}
    validate_state_dict(state, manifest_for(BY_NAME["detector"]), "old detector file")


def test_truncated_checkpoint_is_reported_not_crashed(tmp_path):
    data = pth_bytes(recipe_state(GLOBAL_FILES["VAE_A_quality"][0]))
    archive = zip_with(tmp_path / "g.zip", {VAE_MEMBER: data[: len(data) // 2]})
    with pytest.raises(CheckpointError, match="damaged or not a PyTorch checkpoint"):
        OfficialSource(archive).state_dict(VAE)


def test_truncated_zip_is_refused(tmp_path):
    good = zip_with(tmp_path / "g.zip", {VAE_MEMBER: pth_bytes(recipe_state(GLOBAL_FILES["VAE_A_quality"][0]))})
    cut = tmp_path / "cut.zip"
    cut.write_bytes(good.read_bytes()[:100_000])
    with pytest.raises(CheckpointError):
        OfficialSource(cut).state_dict(VAE)


def test_wrong_zip_says_which_file_is_missing(tmp_path):
    archive = zip_with(tmp_path / "holiday.zip", {"photos/a.txt": b"hello"})
    with pytest.raises(CheckpointError, match="restoration/VAE_A_quality/latest_net_G.pth"):
        OfficialSource(archive).state_dict(VAE)
    not_zip = tmp_path / "notes.txt"
    not_zip.write_text("not weights")
    with pytest.raises(CheckpointError, match="neither a folder nor a zip"):
        OfficialSource(not_zip)


class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "code ran"))


def test_pickle_that_would_run_code_is_refused_never_executed(tmp_path):
    marker = tmp_path / "pwned.txt"
    payload = pth_bytes({"encoder.1.weight": _Exploit(marker)})
    archive = zip_with(tmp_path / "evil.zip", {VAE_MEMBER: payload})
    with pytest.raises(CheckpointError, match="refused"):
        OfficialSource(archive).state_dict(VAE)
    assert not marker.exists()
    # the payload really is dangerous: an unrestricted unpickler would have run it
    with zipfile.ZipFile(archive) as zf, zf.open(VAE_MEMBER) as fh:
        torch.load(io.BytesIO(fh.read()), weights_only=False)
    assert marker.exists()


def test_safetensors_round_trip_and_validation(tmp_path):
    state = recipe_state(GLOBAL_FILES["VAE_A_quality"][0])
    save_state_dicts(tmp_path, {"VAE_A_quality": state})
    source = open_source(tmp_path)
    assert isinstance(source, SafetensorsSource)
    net = ModelBank(source, torch.device("cpu")).get("VAE_A_quality")
    assert torch.equal(net.state_dict()["encoder.1.weight"], state["encoder.1.weight"])
    save_state_dicts(tmp_path, {"VAE_B_quality": {"encoder.1.weight": torch.zeros(3)}})
    with pytest.raises(CheckpointError, match="missing keys"):
        source.state_dict(BY_NAME["VAE_B_quality"])
    (tmp_path / "mapping_quality.safetensors").write_bytes(b"\x00garbage")
    with pytest.raises(CheckpointError, match="damaged"):
        source.state_dict(BY_NAME["mapping_quality"])
