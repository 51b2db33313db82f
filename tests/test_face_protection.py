"""Face protection in the one mask policy: detected damage is cleared on eyes and mouths of faces
(engine.core.faces.regions), never a person's mask; the option, its CLI flag and the sidecar record."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tiny_weights import make_tiny_weights

from engine.cli.app import main
from engine.core import pipeline
from engine.core.faces import detect, regions
from engine.core.faces.regions import EYE_RADIUS, face_regions, protect_faces
from engine.core.pipeline import RestoreOptions, damage_mask

# one upright face: eyes 40 px apart (eye discs of radius 12), mouth corners 30 px apart
LANDMARKS = np.array([[40.0, 50.0], [80.0, 50.0], [60.0, 70.0], [45.0, 90.0], [75.0, 90.0]])


def fake_faces(monkeypatch, landmarks: list[np.ndarray], calls: list | None = None) -> None:
    """The MTCNN cascade replaced by fixed faces (landmarks in the coordinates of the image it is given)."""

    def found(image):
        if calls is not None:
            calls.append(image.shape)
        return [detect.Face((0.0, 0.0, 1.0, 1.0), 0.99, np.asarray(lm, np.float64)) for lm in landmarks]

    monkeypatch.setattr(detect, "detect_faces", found)


def no_face_weights(monkeypatch) -> None:
    def missing():
        raise detect.FaceDetectorUnavailable("MTCNN weights (facenet_pytorch/data/{p,r,o}net.pt) not found")

    monkeypatch.setattr(detect, "_nets", missing)


def test_eye_discs_and_mouth_ellipse_geometry():
    region = face_regions((128, 128), LANDMARKS)
    radius = EYE_RADIUS * 40  # 12 px
    for ex, ey in LANDMARKS[:2]:
        assert region[int(ey), int(ex)]
        assert region[int(ey), int(ex + radius - 1)] and region[int(ey + radius - 1), int(ex)]
        assert not region[int(ey), int(ex + radius + 2)] and not region[int(ey - radius - 2), int(ex)]
    assert not region[70, 60]  # the nose is not protected
    assert not region[50, 60]  # nor the bridge between the eyes (discs of 12 px, 40 px apart)
    # mouth: centre (60, 90), half-width 15 + 0.1 x 40 = 19, half-height 0.2 x 40 = 8
    assert region[90, 60] and region[90, 60 + 17] and region[90, 60 - 17] and region[90 + 7, 60]
    assert not region[90, 60 + 21] and not region[90 + 10, 60] and not region[90 - 10, 60]


def test_mouth_ellipse_turns_with_the_mouth_and_faces_add_up():
    tilted = LANDMARKS.copy()
    tilted[3], tilted[4] = [60.0, 75.0], [60.0, 105.0]  # a mouth drawn vertically
    region = face_regions((128, 128), tilted)
    assert region[90 + 17, 60] and not region[90, 60 + 10]
    second = LANDMARKS + [0.0, 0.0]
    second[:, 0] += 200
    both = face_regions((128, 320), [LANDMARKS, second])
    assert np.array_equal(both[:, :128], face_regions((128, 128), LANDMARKS))
    assert both[50, 240] and both[90, 260]


def _probability() -> np.ndarray:
    probability = np.zeros((128, 128), np.float32)
    probability[50, 15:51] = 0.9  # a "scratch" running into the left pupil
    probability[90, 50:71] = 0.9  # over the lips
    probability[10, 5:120] = 0.9  # a real crack across the sky
    probability[110:125, 100] = 0.9  # and one lower down
    return probability


def test_detected_damage_on_eyes_and_mouth_is_cleared_the_rest_and_the_users_mask_kept(monkeypatch):
    probability = _probability()
    monkeypatch.setattr(pipeline, "detect_scratches", lambda *_args: probability)
    fake_faces(monkeypatch, [LANDMARKS])
    user = np.zeros((128, 128), bool)
    user[48:53, 78:83] = True  # a person brushed the right eye: that is kept whatever the policy
    holes, detected, protection, _ = damage_mask(None, np.full((128, 128, 3), 0.5, np.float32),
                                                 RestoreOptions(scratch=True, detection_scale=256), user)
    region = face_regions((128, 128), LANDMARKS)
    assert detected is probability  # the detector's own map, before protection
    assert not (holes & region & ~user).any()
    assert holes[user].all()
    assert holes[10, 5:120].all() and holes[110:125, 100].all()  # damage elsewhere kept
    assert holes[50, 15:27].all() and not holes[50, 29:51].any()  # the scratch is cut where the eye disc begins
    assert protection.ran and protection.faces == 1
    assert protection.cleared_px == int(((probability >= 0.4) & region).sum()) > 0


def test_off_keeps_everything_the_detector_marked(monkeypatch):
    probability = _probability()
    monkeypatch.setattr(pipeline, "detect_scratches", lambda *_args: probability)
    calls: list = []
    fake_faces(monkeypatch, [LANDMARKS], calls)
    holes, _, protection, _ = damage_mask(None, np.zeros((128, 128, 3), np.float32),
                                          RestoreOptions(scratch=True, protect_faces=False, detection_scale=256))
    assert np.array_equal(holes, probability >= 0.4)
    assert protection.reason == "off" and not protection.ran and calls == []


def test_no_detection_no_face_search_and_a_final_mask_is_never_touched(monkeypatch):
    calls: list = []
    fake_faces(monkeypatch, [LANDMARKS], calls)
    monkeypatch.setattr(pipeline, "detect_scratches", lambda *_args: np.zeros((128, 128), np.float32))
    holes, _, protection, _ = damage_mask(None, np.zeros((128, 128, 3), np.float32),
                                          RestoreOptions(scratch=True, detection_scale=256))
    assert not holes.any() and protection.reason == "nothing detected" and calls == []
    user = face_regions((128, 128), LANDMARKS)  # a reviewed mask covering the eyes, detection off
    holes, detected, protection, _ = damage_mask(None, np.zeros((128, 128, 3), np.float32),
                                                 RestoreOptions(scratch=True, detection_scale="off"), user)
    assert np.array_equal(holes, user) and detected is None and protection is None and calls == []


def test_faces_are_searched_on_a_downscaled_copy_and_mapped_back(monkeypatch):
    calls: list = []
    fake_faces(monkeypatch, [LANDMARKS], calls)  # found at these coordinates in the small copy
    detected = np.zeros((1536, 2048), bool)
    detected[100, 80] = detected[180, 120] = True  # the left eye in photo pixels (x2), and the mouth
    detected[1000, 1000] = True
    kept, protection = protect_faces(detected, np.zeros((1536, 2048, 3), np.float32))
    assert calls == [(768, 1024, 3)]
    assert not kept[100, 80] and not kept[180, 120] and kept[1000, 1000]
    assert protection.cleared_px == 2


def test_missing_face_weights_keep_the_mask_and_say_so(monkeypatch):
    no_face_weights(monkeypatch)
    detected = np.zeros((64, 64), bool)
    detected[20, 20] = True
    kept, protection = protect_faces(detected, np.zeros((64, 64, 3), np.float32))
    assert np.array_equal(kept, detected)
    assert not protection.ran and protection.unavailable and "MTCNN" in protection.reason


# ---------------------------------------------------------------------------- CLI and sidecars


def run(*argv: object) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main([str(a) for a in argv], out=out, err=err)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def photo(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("HEIRLOOM_DATA_DIR", str(tmp_path / "userdata"))
    path = tmp_path / "p.png"
    Image.fromarray(np.random.default_rng(5).integers(0, 255, (48, 40, 3), dtype=np.uint8)).save(path)
    return path


@pytest.fixture
def weights(tmp_path) -> Path:
    return make_tiny_weights(tmp_path / "tiny")


@pytest.fixture
def everything_detected(monkeypatch):
    monkeypatch.setattr(pipeline, "detect_scratches",
                        lambda _bank, image, *_args: np.full(image.shape[:2], 0.9, np.float32))


def test_restore_records_face_protection_and_the_flag_turns_it_off(tmp_path, photo, weights, everything_detected,
                                                                    monkeypatch):
    fake_faces(monkeypatch, [LANDMARKS / 4])
    code, _, err = run("restore", photo, "-o", tmp_path / "on", "--scratch", "--weights", weights, "--device", "cpu",
                       "--save-mask")
    assert code == 0, err
    record = json.loads((tmp_path / "on" / "p.png.heirloom.json").read_text())
    assert record["options"]["restore"]["protect_faces"] is True
    assert record["options"]["detection_scale_applied"] == "official"  # the tiny weights have no card scale
    assert record["mask"]["face_protection"]["ran"] and record["mask"]["face_protection"]["faces"] == 1
    assert record["mask"]["face_protection"]["cleared_px"] > 0
    mask = np.asarray(Image.open(tmp_path / "on" / "p_mask.png")) > 0
    assert not mask[12, 10] and mask[2, 2]  # the (scaled) left eye is not a hole; the corner is

    code, _, err = run("restore", photo, "-o", tmp_path / "off", "--scratch", "--weights", weights, "--device", "cpu",
                       "--no-face-protection", "--save-mask")
    assert code == 0, err
    record = json.loads((tmp_path / "off" / "p.png.heirloom.json").read_text())
    assert record["options"]["restore"]["protect_faces"] is False
    assert record["mask"]["face_protection"]["reason"] == "off"
    assert (np.asarray(Image.open(tmp_path / "off" / "p_mask.png")) > 0).all()


def test_restore_without_face_weights_still_restores_and_the_sidecar_says_so(tmp_path, photo, weights,
                                                                              everything_detected, monkeypatch):
    no_face_weights(monkeypatch)
    code, stdout, err = run("restore", photo, "-o", tmp_path / "out", "--scratch", "--weights", weights,
                            "--device", "cpu")
    assert code == 0, stdout + err
    record = json.loads((tmp_path / "out" / "p.png.heirloom.json").read_text())
    protection = record["mask"]["face_protection"]
    assert protection["ran"] is False and protection["reason"].startswith("unavailable")


def test_brushed_mask_without_detection_records_no_face_protection(tmp_path, photo, weights, monkeypatch):
    calls: list = []
    fake_faces(monkeypatch, [LANDMARKS / 4], calls)
    mask = tmp_path / "m.png"
    Image.fromarray(np.full((48, 40), 255, np.uint8)).save(mask)
    code, _, err = run("restore", photo, "-o", tmp_path / "out", "--no-scratch", "--mask", mask, "--weights", weights,
                       "--device", "cpu")
    assert code == 0, err
    record = json.loads((tmp_path / "out" / "p.png.heirloom.json").read_text())
    assert record["mask"]["source"] == "brushed" and record["mask"]["face_protection"] is None and calls == []


def test_detect_command_records_face_protection_and_obeys_the_flag(tmp_path, photo, weights, everything_detected,
                                                                  monkeypatch):
    fake_faces(monkeypatch, [LANDMARKS / 4])
    code, _, err = run("detect", photo, "-o", tmp_path / "on", "--weights", weights, "--device", "cpu")
    assert code == 0, err
    record = json.loads((tmp_path / "on" / "p_mask.png.heirloom.json").read_text())
    assert record["detection"]["face_protection"]["faces"] == 1
    assert not (np.asarray(Image.open(tmp_path / "on" / "p_mask.png")) > 0)[12, 10]
    code, _, err = run("detect", photo, "-o", tmp_path / "off", "--weights", weights, "--device", "cpu",
                       "--no-face-protection")
    assert code == 0, err
    record = json.loads((tmp_path / "off" / "p_mask.png.heirloom.json").read_text())
    assert record["detection"]["face_protection"]["reason"] == "off"
    assert (np.asarray(Image.open(tmp_path / "off" / "p_mask.png")) > 0).all()


def test_the_benchmark_scores_faces_on_the_engines_regions():
    source = (Path(__file__).resolve().parents[1] / "bench" / "eval_detection.py").read_text(encoding="utf-8")
    assert "from engine.core.faces.regions import face_regions, protect_faces" in source
    assert "def face_regions" not in source
    assert regions.face_regions is face_regions


def test_the_restore_tabs_probability_is_zeroed_on_eyes_and_mouths_for_every_threshold(monkeypatch):
    probability = _probability()
    probability[60:70, 100:110] = 0.05  # faint, below the default threshold but reachable with the slider
    monkeypatch.setattr(pipeline, "detect_scratches", lambda *_args: probability)
    fake_faces(monkeypatch, [LANDMARKS])
    region = face_regions((128, 128), LANDMARKS)
    protected, report = pipeline.detection_probability(None, np.zeros((128, 128, 3), np.uint8), 256)
    assert not protected[region].any() and report.faces == 1
    assert np.array_equal(protected[~region], probability[~region])
    unprotected, report = pipeline.detection_probability(None, np.zeros((128, 128, 3), np.uint8), 256, protect=False)
    assert unprotected is probability and report.reason == "off"


def test_a_small_face_is_protected_whole_and_a_large_one_only_at_eyes_and_mouth(monkeypatch):
    """A face a few pixels wide is a bright blob to the detector, marked whole: clearing only its
    eyes and mouth left the rest to be filled, and restores blanked such faces in crowd scenes."""
    from engine.core.faces.regions import SMALL_FACE_IOD, protected_regions

    small = LANDMARKS / 5 + 60  # eyes 8 px apart: a face ~20 px wide, at (68-76, 70-78)
    large = LANDMARKS  # eyes 40 px apart
    assert np.linalg.norm(small[1] - small[0]) < SMALL_FACE_IOD <= np.linalg.norm(large[1] - large[0])
    region = protected_regions((128, 128), [small])
    nose = small[2].astype(int)
    assert region[nose[1], nose[0]] and region[nose[1] - 8, nose[0]]  # nose and forehead too
    assert not region[nose[1], nose[0] + 14] and not region[nose[1] + 20, nose[0]]  # not beyond the face
    assert np.array_equal(protected_regions((128, 128), [large]), face_regions((128, 128), [large]))
    probability = np.zeros((128, 128), np.float32)
    probability[58:92, 64:84] = 1.0  # the detector took the whole small face for damage
    monkeypatch.setattr(pipeline, "detect_scratches", lambda *_args: probability)
    fake_faces(monkeypatch, [small])
    holes, _, protection, _ = damage_mask(None, np.full((128, 128, 3), 0.5, np.float32),
                                          RestoreOptions(scratch=True, detection_scale=256))
    assert not holes[nose[1], nose[0]] and not (holes & region).any()
    assert holes[58, 64] and holes[91, 83]  # corners outside the face ellipse stay damage
    assert protection.cleared_px == int((region & (probability >= 0.4)).sum())
