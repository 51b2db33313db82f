"""``main.py detect``: masks for a folder, their sidecars, failures one by one, and the masks going
straight back into ``restore --mask-dir``."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tiny_weights import make_tiny_weights

from engine.cli.app import main


def run(*argv: object) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main([str(a) for a in argv], out=out, err=err)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(autouse=True)
def data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("HEIRLOOM_DATA_DIR", str(tmp_path / "userdata"))


@pytest.fixture
def album(tmp_path) -> Path:
    folder = tmp_path / "album"
    folder.mkdir()
    rng = np.random.default_rng(3)
    for name, size in (("a.png", (40, 52)), ("b.jpg", (64, 48))):
        Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(folder / name)
    (folder / "broken.png").write_bytes(b"not a photo")
    return folder


@pytest.fixture
def weights(tmp_path) -> Path:
    return make_tiny_weights(tmp_path / "tiny")


def test_detect_writes_a_mask_of_each_photo_size_and_reports_the_broken_one(tmp_path, album, weights):
    out = tmp_path / "masks"
    code, stdout, _ = run("detect", album, "-o", out, "--weights", weights, "--device", "cpu", "--threshold", "0.5")
    assert code == 1  # one photo failed; the others were done
    assert "FAILED" in stdout and "broken.png" in stdout
    assert "done: 2, failed: 1" in stdout
    for name, size in (("a", (40, 52)), ("b", (64, 48))):
        with Image.open(out / f"{name}_mask.png") as mask:
            assert mask.size == size
            values = set(np.unique(np.asarray(mask.convert("L"))))
        assert values <= {0, 255}
        record = json.loads((out / f"{name}_mask.png.heirloom.json").read_text())
        assert record["mask"]["source"] == "detected" and record["mask"]["reviewed"] is False
        assert record["detection"]["threshold"] == 0.5
        assert len(record["input"]["sha256"]) == 64
    assert not (out / "broken_mask.png").exists()
    assert sorted(p.name for p in album.iterdir()) == ["a.png", "b.jpg", "broken.png"]  # inputs untouched


def test_detect_keeps_reviewed_masks_unless_overwrite(tmp_path, album, weights):
    out = tmp_path / "masks"
    run("detect", album / "a.png", "-o", out, "--weights", weights, "--device", "cpu")
    painted = np.zeros((52, 40), np.uint8)
    painted[10:20, 5:30] = 255
    Image.fromarray(painted).save(out / "a_mask.png")
    code, stdout, _ = run("detect", album / "a.png", "-o", out, "--weights", weights, "--device", "cpu")
    assert code == 0 and "SKIPPED" in stdout
    assert np.array_equal(np.asarray(Image.open(out / "a_mask.png")), painted)
    code, stdout, _ = run("detect", album / "a.png", "-o", out, "--weights", weights, "--device", "cpu",
                          "--overwrite")
    assert code == 0 and "OK" in stdout


def test_detected_masks_are_accepted_by_restore_mask_dir(tmp_path, album, weights):
    masks = tmp_path / "masks"
    run("detect", album / "a.png", "-o", masks, "--weights", weights, "--device", "cpu")
    reviewed = np.zeros((52, 40), np.uint8)
    reviewed[20:30, :] = 255  # the archivist's corrected mask
    Image.fromarray(reviewed).save(masks / "a_mask.png")
    code, stdout, stderr = run("restore", album / "a.png", "-o", tmp_path / "out", "--mask-dir", masks,
                               "--weights", weights, "--device", "cpu", "--save-mask")
    assert code == 0, stdout + stderr
    record = json.loads((tmp_path / "out" / "a.png.heirloom.json").read_text())
    assert record["mask"]["file"] == str((masks / "a_mask.png").resolve())
    used = np.asarray(Image.open(tmp_path / "out" / "a_mask.png")) > 127
    assert used[20:30].all()


def test_detect_usage_errors(tmp_path, album, capsys):
    assert run("detect", album, "-o", tmp_path / "m", "--threshold", "1.5")[0] == 2
    assert run("detect", album, "-o", tmp_path / "m", "--detect-scale", "100")[0] == 2
    file = tmp_path / "file"
    file.write_text("x")
    code, _, err = run("detect", album, "-o", file)
    assert code == 2 and "not a folder" in err
