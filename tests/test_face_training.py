"""The optional face stage on the tiny configuration: it finds and aligns faces, trains, resumes
exactly, and its export makes ``restore --faces`` run our own face generator."""

from __future__ import annotations

import io
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data
import torch

from engine.cli.app import main as cli_main
from engine.cli.train import FACE_CACHE
from engine.cli.train import main as train_main
from engine.core.faces.stage import refine_faces
from engine.io.encode import write_png
from engine.models.checkpoints import ModelBank, SafetensorsSource
from engine.training.face_data import FaceSet, degrade_face


def face_photo(i: int) -> np.ndarray:
    """A generated 'photo' (smooth colours) with the astronaut's head in it, shifted and mirrored by i."""
    head = cv2.resize(skimage.data.astronaut()[20:260, 120:330], (105, 120), interpolation=cv2.INTER_AREA)
    if i % 2:
        head = head[:, ::-1]
    yy, xx = np.mgrid[0:144, 0:176] / 176
    img = np.stack([np.sin(xx * (i + 2)), np.cos(yy * (i + 3)), xx * yy], axis=2) * 0.3 + 0.5
    img = (img * 255).astype(np.uint8)
    x, y = 20 + 12 * i, 10 + 4 * i
    img[y:y + 120, x:x + 105] = head
    return img


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("faces")
    for i in range(3):
        write_png(folder / f"{i:02d}.png", face_photo(i))
    return folder


def train(stage: str, out: Path, clean: Path, *extra: str) -> int:
    return train_main(["train", stage, "--config", "tiny", "--out", str(out), "--device", "cpu",
                       "--clean", str(clean), "--old", str(clean), *extra])


def test_face_stage_trains_resumes_and_exports_a_generator_the_pipeline_runs(tmp_path, clean):
    runs = tmp_path / "runs"
    straight, face = tmp_path / "straight", runs / "face"
    assert train("face", straight, clean) == 0
    faces = FaceSet.load(straight / FACE_CACHE, key=str(np.load(straight / FACE_CACHE)["key"]))
    assert len(faces) == 3 and faces.faces.shape[1:] == (256, 256, 3)  # one aligned face per photo
    assert (faces.scales > 1).all()  # ~40 px between the eyes: upsampled into the 256 px crop
    damaged = degrade_face(faces.faces[0], float(faces.scales[0]), seed=1)
    assert damaged.shape == (256, 256, 3) and damaged.dtype == np.float32

    assert train("face", face, clean, "--steps", "2") == 0
    assert train("face", face, clean, "--resume") == 0  # the cached faces are reused
    a = torch.load(straight / "checkpoint.pt", weights_only=True)
    b = torch.load(face / "checkpoint.pt", weights_only=True)
    assert a["step"] == b["step"] == 4
    for key, tensor in a["nets"]["G"].items():  # batch statistics and power iteration resume too
        torch.testing.assert_close(b["nets"]["G"][key], tensor, rtol=1e-4, atol=1e-5)
    assert list((face / "samples").glob("step_*.png"))

    for stage in ("vae-a", "vae-b", "mapping", "detector"):
        assert train(stage, runs / stage, clean) == 0, stage
    dest = tmp_path / "weights"
    # --clean: the detector calibration at export runs on these small photos (seconds, not the shared set)
    assert train_main(["train", "export", "--runs", str(runs), "--dest", str(dest), "--clean", str(clean)]) == 0
    card = json.loads((dest / "model.json").read_text())
    assert "face_256.safetensors" in card["files"] and card["steps"]["face"] == 4
    assert card["networks"]["face_256"] == {"ngf": 2, "spade_hidden": 4}

    photo = tmp_path / "portrait.png"
    write_png(photo, face_photo(3))
    err = io.StringIO()
    assert cli_main(["restore", str(photo), "-o", str(tmp_path / "o"), "--faces", "--weights", str(dest)],
                    out=io.StringIO(), err=err) == 0, err.getvalue()
    record = json.loads((tmp_path / "o" / "portrait.png.heirloom.json").read_text())["faces"]
    assert record["ran"] and record["network"] == "face_256"
    # four tiny steps of the global networks leave no face to find; on the clean photo the stage refines one
    image = face_photo(3).astype(np.float32) / 255.0
    refined, report = refine_faces(image, ModelBank(SafetensorsSource(dest), torch.device("cpu")), "face_256")
    assert report.refined == 1 and not np.array_equal(refined, image)
    assert "ngf=2" in report.describe()["checkpoint"]  # provenance names our generator, not the official one

    # a face model that does not help yet can be left out of an export: faces then stay off
    without = tmp_path / "without-face"
    assert train_main(["train", "export", "--runs", str(runs), "--dest", str(without), "--clean", str(clean),
                       "--without", "face"]) == 0
    assert "face_256.safetensors" not in json.loads((without / "model.json").read_text())["files"]
