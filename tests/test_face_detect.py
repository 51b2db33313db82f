"""Offline MTCNN face detection with five landmarks (engine.core.faces.detect)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data

from engine.core.faces import detect

OLD_PHOTO = Path("/work/shared/data/real_old/old_a.png")


@pytest.fixture(scope="module")
def astronaut():
    return skimage.data.astronaut()


@pytest.fixture(scope="module")
def astronaut_faces(astronaut):
    return detect.detect_faces(astronaut)


def check_face_geometry(face: detect.Face):
    lm = face.landmarks
    assert lm.shape == (5, 2) and lm.dtype == np.float64
    left_eye, right_eye, nose, left_mouth, right_mouth = lm
    assert left_eye[0] < right_eye[0]
    assert left_mouth[0] < right_mouth[0]
    assert max(left_eye[1], right_eye[1]) < nose[1] < min(left_mouth[1], right_mouth[1])
    x0, y0, x1, y1 = face.box
    assert x0 < x1 and y0 < y1
    assert np.all((lm[:, 0] > x0) & (lm[:, 0] < x1) & (lm[:, 1] > y0) & (lm[:, 1] < y1))


def test_astronaut_has_exactly_one_confident_face(astronaut_faces):
    faces = astronaut_faces
    confident = [f for f in faces if f.score > 0.9]
    assert len(confident) == 1
    face = confident[0]
    assert faces[0] is face  # sorted by score, descending
    assert [f.score for f in faces] == sorted((f.score for f in faces), reverse=True)
    check_face_geometry(face)
    # Eileen Collins' face: eyes near (204, 100) and (247, 103) in the 512×512 image.
    np.testing.assert_allclose(face.landmarks[0], [204, 100], atol=8)
    np.testing.assert_allclose(face.landmarks[1], [247, 103], atol=8)


def test_flipped_astronaut_is_found_and_mirrored(astronaut, astronaut_faces):
    (face,) = [f for f in detect.detect_faces(astronaut[:, ::-1].copy()) if f.score > 0.9]
    check_face_geometry(face)
    w = astronaut.shape[1]
    original = astronaut_faces[0]
    # The image-left eye of the flip is the mirrored image-right eye of the original.
    np.testing.assert_allclose(face.landmarks[0, 0], w - original.landmarks[1, 0], atol=6)
    np.testing.assert_allclose(face.landmarks[0, 1], original.landmarks[1, 1], atol=6)


def test_blank_grey_image_has_no_faces():
    assert detect.detect_faces(np.full((240, 320, 3), 128, np.uint8)) == []


def test_small_image_below_min_face_size_returns_empty():
    assert detect.detect_faces(np.full((10, 10, 3), 128, np.uint8)) == []


def test_rejects_non_rgb_input():
    with pytest.raises(ValueError):
        detect.detect_faces(np.zeros((32, 32), np.uint8))
    with pytest.raises(ValueError):
        detect.detect_faces(np.zeros((32, 32, 3), np.float32))


@pytest.mark.skipif(not OLD_PHOTO.is_file(), reason="shared real old photos not present")
def test_real_old_photo_face_and_landmarks():
    image = cv2.imread(str(OLD_PHOTO), cv2.IMREAD_COLOR)[..., ::-1].copy()
    faces = detect.detect_faces(image)
    assert faces and faces[0].score > 0.9
    check_face_geometry(faces[0])
    # Checked visually: the boy's eyes (behind glasses) are near (130, 172) and (195, 172).
    np.testing.assert_allclose(faces[0].landmarks[0], [130, 172], atol=10)
    np.testing.assert_allclose(faces[0].landmarks[1], [195, 172], atol=10)


def test_missing_weights_raise_a_clear_error(monkeypatch):
    monkeypatch.setattr(detect.importlib.util, "find_spec", lambda name: None)
    monkeypatch.setattr(detect, "_NETS", None)
    with pytest.raises(detect.FaceDetectorUnavailable, match="--no-deps facenet-pytorch==2.6.0"):
        detect.detect_faces(np.zeros((64, 64, 3), np.uint8))


def test_facenet_pytorch_code_is_never_imported(astronaut):
    import sys

    detect.detect_faces(astronaut[:64, :64].copy())
    assert "facenet_pytorch" not in sys.modules
