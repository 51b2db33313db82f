"""Face stages 2 and 4 (engine.faces.align) beyond the golden parity checks."""

from __future__ import annotations

import numpy as np
import pytest

from engine.faces import align

SIZE = 256


def scene():
    """A textured 200×240 photo and landmarks of one plausible face in it."""
    rng = np.random.RandomState(5)
    image = rng.randint(40, 200, size=(200, 240, 3)).astype(np.uint8)
    landmarks = np.array([[100, 80], [140, 80], [120, 105], [105, 130], [135, 130]], dtype=np.int64)
    return image, landmarks


def test_template_is_float32_as_the_official_chain():
    pts = align.template_points(256)
    assert pts.dtype == np.float32 and pts.shape == (5, 2)
    assert pts[3, 0] == np.float32(104.5999984741211) and pts[3, 1] == np.float32(195.8599853515625)
    np.testing.assert_array_equal(align.template_points(512), pts * 2)


def test_match_histograms_maps_onto_the_reference_values():
    rng = np.random.RandomState(0)
    face = rng.randint(0, 100, size=(32, 32, 3)).astype(np.uint8)
    ref = rng.randint(150, 256, size=(32, 32, 3)).astype(np.uint8)
    out = align.match_histograms(face, ref)
    assert out.dtype == np.uint8 and out.min() >= 150
    # monotone per channel: a brighter source pixel never maps darker
    order = np.argsort(face[..., 1].ravel(), kind="stable")
    assert (np.diff(out[..., 1].ravel()[order].astype(int)) >= 0).all()


@pytest.mark.parametrize("broken", ["degenerate_landmarks", "wrong_size_face"])
def test_paste_faces_skips_a_broken_face_and_keeps_the_good_one(broken):
    image, landmarks = scene()
    before = image.copy()
    params = align.similarity_to_image(landmarks, SIZE)
    good_face = np.full((SIZE, SIZE, 3), 255, np.uint8)
    good_face[::2] = 0  # two grey levels, so histogram matching keeps some contrast
    if broken == "degenerate_landmarks":
        bad = (np.full((5, 2), 50, np.int64), good_face)
    else:
        bad = (landmarks, np.zeros((SIZE // 2, SIZE // 2, 3), np.uint8))

    out, warnings = align.paste_faces(image, [bad, (landmarks, good_face)], SIZE)

    np.testing.assert_array_equal(image, before)  # input untouched
    assert len(warnings) == 1 and warnings[0].startswith("face 1:")
    alone, none = align.paste_faces(image, [(landmarks, good_face)], SIZE)
    assert none == []
    np.testing.assert_array_equal(out, alone)  # the good face is blended exactly as on its own
    assert out.dtype == np.uint8 and out.shape == image.shape
    face_center = np.round(params @ [SIZE / 2, SIZE / 2, 1]).astype(int)[:2]
    x, y = face_center
    assert not np.array_equal(out[y - 5:y + 5, x - 5:x + 5], image[y - 5:y + 5, x - 5:x + 5])
    np.testing.assert_array_equal(out[:3, :3], image[:3, :3])  # far from the face: unchanged


def test_paste_faces_with_only_broken_faces_returns_a_copy():
    image, _ = scene()
    out, warnings = align.paste_faces(image, [(np.zeros((4, 2)), np.zeros((SIZE, SIZE, 3), np.uint8))], SIZE)
    assert len(warnings) == 1
    np.testing.assert_array_equal(out, image)
    assert out is not image
