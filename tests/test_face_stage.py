"""The face stage in the pipeline: detect, align, restore, blend back (engine.core.faces.stage + Restorer).

One test runs the real 256 px SPADE generator with recipe weights; the others use a stand-in
generator and an identity global stage, so they test the wiring (what runs, what changes, what is
reported) in milliseconds instead of seconds per face.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import skimage.data
import torch
from conftest import RecipeSource, bank_for
from torch import nn

from engine.core import pipeline
from engine.core.faces import align, detect, stage
from engine.core.official import save_image_u8, to_network
from engine.core.pipeline import RestoreOptions, Restorer
from engine.io.encode import finish
from engine.io.metadata import PhotoFile
from engine.io.pixels import to_u8
from engine.models.checkpoints import ModelBank
from engine.progress import Cancelled, Progress


@pytest.fixture(scope="module")
def portrait() -> np.ndarray:
    """The astronaut at 256 px: one face about 45 px wide."""
    return cv2.resize(skimage.data.astronaut(), (256, 256), interpolation=cv2.INTER_AREA)


@pytest.fixture(scope="module")
def pair(portrait) -> np.ndarray:
    """Two faces side by side (the portrait and its mirror image)."""
    return np.ascontiguousarray(np.hstack([portrait, portrait[:, ::-1]]))


class StandInFace(nn.Module):
    """Stands in for the 256 px generator: returns the face inverted (a change no blend can hide);
    raises on the calls numbered in ``fail_on``."""

    load_size = 256

    def __init__(self, fail_on: tuple[int, ...] = ()) -> None:
        super().__init__()
        self.calls, self.fail_on = 0, fail_on

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls in self.fail_on:
            raise RuntimeError("generator exploded")
        return -x


class StandInBank(ModelBank):
    """Recipe weights' announcements with the stand-in face generator; the global networks are not
    needed (the tests replace the global stage by the identity)."""

    def __init__(self, generator: nn.Module, faces: bool = True) -> None:
        super().__init__(RecipeSource({}, faces=faces), torch.device("cpu"))
        self.generator = generator

    def get(self, name: str) -> nn.Module:
        return self.generator if name.startswith("face_") else nn.Identity()


@pytest.fixture
def identity_global(monkeypatch):
    """The global restoration returns its input, so every change comes from the face stage."""
    monkeypatch.setattr(pipeline, "translate", lambda bank, x, *args, **kwargs: SimpleNamespace(generated=x))


def near(box, shape, margin: float = 1.0) -> np.ndarray:
    """Pixels within ``margin`` box sizes of ``box`` (the aligned crop reaches ~1.5 box sizes)."""
    x0, y0, x1, y1 = box
    mx, my = margin * (x1 - x0), margin * (y1 - y0)
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    return (xx >= x0 - mx) & (xx <= x1 + mx) & (yy >= y0 - my) & (yy <= y1 + my)


def inside(box, shape) -> np.ndarray:
    return near(box, shape, 0.0)


def changed(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a.astype(np.float64) - b.astype(np.float64)).max(axis=2) > 0


def test_real_generator_refines_the_one_astronaut_face_and_nothing_else(portrait):
    image = portrait.astype(np.float32) / 255.0
    out, report = stage.refine_faces(image, bank_for(), "face_256")  # the network the parity test builds
    assert (report.found, report.refined, report.size, report.warnings) == (1, 1, 256, [])
    assert out.shape == image.shape and out.dtype == np.float32
    diff = changed(out, image)
    box = report.faces[0].box
    assert not (diff & ~near(box, diff.shape)).any(), "pixels changed far from the face"
    assert diff[inside(box, diff.shape)].mean() > 0.9
    assert report.faces[0].describe()["refined"] is True


def test_auto_faces_refine_the_face_and_keep_every_other_pixel(identity_global, portrait):
    restorer = Restorer(StandInBank(StandInFace()))
    result = restorer.restore(portrait, RestoreOptions(tile="off"))
    assert result.faces is not None and (result.faces.found, result.faces.refined) == (1, 1)
    assert result.faces.network == "face_256" and "faces" in result.timings and result.warnings == []
    plain = restorer.restore(portrait, RestoreOptions(tile="off", faces=False))
    diff = changed(result.image, plain.image)  # exact: untouched pixels keep their float value
    box = result.faces.faces[0].box
    assert not (diff & ~near(box, diff.shape)).any()
    assert diff[inside(box, diff.shape)].mean() > 0.9


def test_no_faces_changes_nothing(identity_global, portrait):
    generator = StandInFace()
    off = Restorer(StandInBank(generator)).restore(portrait, RestoreOptions(tile="off", faces=False))
    unannounced = Restorer(StandInBank(generator, faces=False)).restore(portrait, RestoreOptions(tile="off"))
    assert off.faces is None and unannounced.faces is None and generator.calls == 0
    assert off.warnings == [] and unannounced.warnings == []
    np.testing.assert_allclose(off.image, portrait / 255.0, atol=1e-6)  # identity global stage
    assert np.array_equal(off.image, unannounced.image)


def test_hr_uses_the_512_generator_as_the_official_hr_switch(portrait):
    announced = RecipeSource({}, faces=True)
    assert stage.choose_face_network(announced, None, hr=True) == "face_512"
    assert stage.choose_face_network(announced, None, hr=False) == "face_256"
    assert stage.choose_face_network(announced, False, hr=True) is None
    generator = StandInFace()
    generator.load_size = 512
    _, report = stage.refine_faces(portrait / 255.0, StandInBank(generator), "face_512")
    assert (report.network, report.size, report.refined) == ("face_512", 512, 1)


def test_a_face_that_fails_is_reported_and_the_others_are_kept(identity_global, pair):
    restorer = Restorer(StandInBank(StandInFace(fail_on=(1,))))
    result = restorer.restore(pair, RestoreOptions(tile="off"))
    assert (result.faces.found, result.faces.refined) == (2, 1)
    first, second = result.faces.faces
    assert not first.refined and "generator exploded" in first.error and second.refined
    assert result.warnings == ["face 1: not refined (RuntimeError: generator exploded)"]
    plain = restorer.restore(pair, RestoreOptions(tile="off", faces=False))
    diff = changed(result.image, plain.image)
    assert not diff[near(first.box, diff.shape, 0.2)].any()
    assert diff[inside(second.box, diff.shape)].mean() > 0.9


def test_progress_names_each_face_and_cancel_stops_between_faces(identity_global, pair):
    generator = StandInFace()
    messages: list[str] = []
    progress = Progress()

    def callback(fraction: float, message: str) -> None:
        messages.append(message)
        if message == "refining face 1 of 2":
            progress.cancel()  # face 1 still finishes; the check before face 2 stops the photo

    progress.callback = callback
    with pytest.raises(Cancelled):
        Restorer(StandInBank(generator)).restore(pair, RestoreOptions(tile="off"), progress=progress)
    assert "detecting faces" in messages and "refining face 1 of 2" in messages
    assert "refining face 2 of 2" not in messages
    assert generator.calls == 1


def test_faces_asked_for_without_face_weights_restore_with_a_clear_warning(identity_global, portrait):
    restorer = Restorer(StandInBank(StandInFace(), faces=False))
    restorer.prepare(RestoreOptions(faces=True))  # nothing to load, nothing to refuse
    result = restorer.restore(portrait, RestoreOptions(faces=True, tile="off"))
    assert result.faces is None and len(result.warnings) == 1
    warning = result.warnings[0]
    assert warning.startswith("faces were not refined") and "face_checkpoints.zip" in warning
    assert "Setting_9_epoch_100" in warning and "models download official" in warning
    np.testing.assert_allclose(result.image, portrait / 255.0, atol=1e-6)
    with pytest.raises(stage.FacesUnavailable, match="FaceSR_512"):
        stage.choose_face_network(restorer.bank.source, True, True)


def test_missing_face_detector_warns_in_auto_mode_and_fails_when_asked(identity_global, portrait, monkeypatch):
    def unavailable(image):
        raise detect.FaceDetectorUnavailable("MTCNN weights not found")

    monkeypatch.setattr(detect, "detect_faces", unavailable)
    restorer = Restorer(StandInBank(StandInFace()))
    result = restorer.restore(portrait, RestoreOptions(tile="off"))
    assert result.faces is None and len(result.warnings) == 1
    assert result.warnings[0].startswith("faces were not refined") and "MTCNN" in result.warnings[0]
    np.testing.assert_allclose(result.image, portrait / 255.0, atol=1e-6)
    with pytest.raises(stage.FacesUnavailable, match="MTCNN"):
        restorer.restore(portrait, RestoreOptions(tile="off", faces=True))


def test_a_photo_without_faces_is_unchanged_and_loads_no_generator(identity_global):
    class Bank(StandInBank):
        def get(self, name: str) -> nn.Module:
            assert not name.startswith("face_"), "the face generator was loaded for a photo without faces"
            return super().get(name)

    grey = np.full((96, 128, 3), 120, np.uint8)
    result = Restorer(Bank(StandInFace())).restore(grey, RestoreOptions(tile="off"))
    assert (result.faces.found, result.faces.refined) == (0, 0)
    np.testing.assert_allclose(result.image, grey / 255.0, atol=1e-6)


def test_face_report_compose_toggles_each_face_without_running_a_network(identity_global, pair):
    generator = StandInFace()
    restorer = Restorer(StandInBank(generator))
    result = restorer.restore(pair, RestoreOptions(tile="off"))
    plain = restorer.restore(pair, RestoreOptions(tile="off", faces=False))
    first, second = result.faces.faces
    calls = generator.calls
    assert np.array_equal(result.faces.compose(result.image, {1, 2}), result.image)  # the stage's own output
    assert np.array_equal(result.faces.compose(result.image, set()), plain.image)  # as if faces were off
    only_second = result.faces.compose(result.image, {2})
    assert generator.calls == calls and only_second.dtype == np.float32
    diff = changed(only_second, result.image)
    assert diff.any() and not (diff & ~near(first.box, diff.shape)).any(), "face 2's pixels moved"
    assert not changed(only_second, plain.image)[near(first.box, diff.shape, 0.2)].any()
    # Exactly what the stage gives when face 1 fails and face 2 is refined.
    failed_first = Restorer(StandInBank(StandInFace(fail_on=(1,)))).restore(pair, RestoreOptions(tile="off"))
    assert np.array_equal(only_second, failed_first.image)
    assert np.array_equal(result.faces.compose(result.image, {1, 2, 7}), result.image)  # unknown numbers: ignored

    report, h, w = result.faces, pair.shape[0], pair.shape[1]  # layers live on the faces' boxes
    for record in report.faces:
        y0, y1, x0, x1 = record.layer.bounds
        assert (y1 - y0) * (x1 - x0) < h * w / 2 and record.layer.weight.shape[2] == 1
        bx0, by0, bx1, by1 = record.box
        assert x0 <= bx0 and bx1 <= x1 and y0 <= by0 and by1 <= y1
    assert [r.bounds for r in report.regions] == [f.layer.bounds for f in report.faces]  # apart: no overlap
    assert "layer" not in str(report.describe()) and "regions" not in report.describe()


def test_the_face_stage_sees_the_8_bit_photo_that_is_saved_to_the_last_level():
    """One 8-bit rounding: what the face detector and aligner get is the saved photo's bytes, also on
    the half levels where float32 and float64 arithmetic round apart."""
    levels = ((np.arange(32 * 32) / 4) / 255).astype(np.float32)  # whole, quarter and half levels
    image = np.repeat(levels.reshape(32, 32, 1), 3, axis=2)
    seen: list[np.ndarray] = []
    stage.refine_faces(image, StandInBank(StandInFace()), "face_256", detector=lambda u8: seen.append(u8) or [])
    saved, _ = finish(PhotoFile(Path("p.png"), "PNG", "RGB", np.zeros((32, 32, 3), np.uint8)), image)
    assert seen[0].dtype == np.uint8 and np.array_equal(seen[0], saved)


def scene() -> tuple[np.ndarray, detect.Face]:
    """A textured 200x240 photo in [0, 1] and one plausible face in it, as the detector reports it."""
    rng = np.random.RandomState(5)
    image = rng.randint(40, 200, size=(200, 240, 3)).astype(np.float32) / 255.0
    landmarks = np.array([[100, 80], [140, 80], [120, 105], [105, 130], [135, 130]], dtype=np.int64)
    return image, detect.Face((95.0, 70.0, 145.0, 140.0), 1.0, landmarks)


class WrongSizeOnce(StandInFace):
    """The stand-in generator, but its first face comes back at half the crop size."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = super().forward(x)
        return out[..., ::2, ::2] if self.calls == 1 else out


@pytest.mark.parametrize("broken", ["degenerate_landmarks", "wrong_size_face"])
def test_a_broken_face_is_skipped_and_the_good_one_blended_as_on_its_own(broken):
    image, good = scene()
    before = image.copy()
    if broken == "degenerate_landmarks":
        bad, generator = detect.Face(good.box, 1.0, np.full((5, 2), 50, np.int64)), StandInFace()
    else:
        bad, generator = good, WrongSizeOnce()
    out, report = stage.refine_faces(image, StandInBank(generator), "face_256", detector=lambda _: [bad, good])

    np.testing.assert_array_equal(image, before)  # input untouched
    assert len(report.warnings) == 1 and report.warnings[0].startswith("face 1: not refined")
    assert [f.refined for f in report.faces] == [False, True]
    alone, alone_report = stage.refine_faces(image, StandInBank(StandInFace()), "face_256", detector=lambda _: [good])
    assert alone_report.warnings == []
    np.testing.assert_array_equal(out, alone)  # the good face is blended exactly as on its own
    assert out.dtype == np.float32 and out.shape == image.shape
    x0, y0, x1, y1 = (int(v) for v in good.box)
    assert not np.array_equal(out[y0:y1, x0:x1], image[y0:y1, x0:x1])
    np.testing.assert_array_equal(out[:3, :3], image[:3, :3])  # far from the face: unchanged


def test_only_broken_faces_leave_the_photo_as_it_was():
    image, good = scene()
    broken = detect.Face(good.box, 1.0, np.zeros((4, 2)))
    out, report = stage.refine_faces(image, StandInBank(StandInFace()), "face_256", detector=lambda _: [broken])
    assert (report.found, report.refined, len(report.warnings)) == (1, 0, 1)
    np.testing.assert_array_equal(out, image)


def test_overlapping_face_boxes_share_one_region_and_apart_ones_do_not():
    assert stage.merge_bounds([(0, 10, 0, 10), (20, 30, 20, 30)]) == [(0, 10, 0, 10), (20, 30, 20, 30)]
    assert stage.merge_bounds([(0, 10, 0, 10), (5, 15, 5, 15), (14, 20, 0, 3)]) == [(0, 20, 0, 15)]
    assert stage.merge_bounds([(0, 10, 0, 10), (10, 20, 0, 10)]) == [(0, 10, 0, 10), (10, 20, 0, 10)]  # touching


def test_the_layered_stage_blends_as_the_official_face_by_face_paste(pair):
    """The stage composes layers on boxes; the official stage 4 blends whole photos face by face.
    Same numbers (to float32 rounding), so the goldens' blending still describes the stage."""
    image = pair.astype(np.float32) / 255.0
    out, report = stage.refine_faces(image, StandInBank(StandInFace()), "face_256")
    image_u8 = to_u8(image)
    current = image.astype(np.float64) * 255.0
    for record in report.faces:
        params = align.similarity_to_image(record.landmarks, 256)
        crop = align.align_face(image_u8, params, 256)
        restored = save_image_u8((-to_network(crop) + 1.0) / 2.0, normalize=False)
        current = align.blend_face(current, restored, params, 256, image_u8=image_u8).blended01 * 255.0
    np.testing.assert_allclose(out, (current / 255.0).astype(np.float32), rtol=0, atol=1e-6)


def test_compose_with_overlapping_faces_matches_blending_them_one_by_one_on_the_whole_photo():
    rng = np.random.default_rng(3)
    image = rng.random((60, 80, 3)).astype(np.float32)
    report = stage.FaceReport("face_256", 256)
    for index, (top, left, h, w) in enumerate([(5, 5, 30, 40), (20, 30, 30, 40), (40, 0, 10, 10)], start=1):
        back = rng.random((h, w, 3)) * 300.0 - 20.0  # a bicubic warp over- and undershoots 0..255
        weight = np.clip(rng.random((h, w, 1)) * 1.5 - 0.25, 0.0, 1.0)
        record = stage.FaceRecord(index, (left, top, left + w, top + h), 1.0, np.zeros((5, 2)), refined=True)
        record.layer = stage.FaceLayer(top, left, back, weight)
        report.faces.append(record)
    for y0, y1, x0, x1 in stage.merge_bounds([f.layer.bounds for f in report.faces]):
        report.regions.append(stage.FaceRegion((y0, y1, x0, x1), image[y0:y1, x0:x1].copy()))
    assert len(report.regions) == 1  # 1 and 2 overlap; 3 only meets the rectangle around them
    for enabled in ({1, 2, 3}, {2}, {1, 3}, set()):
        current = image.astype(np.float64) * 255.0
        for record in report.faces:
            if record.index in enabled:
                y0, y1, x0, x1 = record.layer.bounds
                full_back = np.zeros((60, 80, 3))
                full_weight = np.zeros((60, 80, 1))
                full_back[y0:y1, x0:x1], full_weight[y0:y1, x0:x1] = record.layer.back, record.layer.weight
                current = align.blend_layer(full_back, current, full_weight) * 255.0
        expected = (current / 255.0).astype(np.float32)
        assert np.array_equal(report.compose(image, enabled), expected), enabled
    out = image.copy()
    assert report.compose_into(out, {2}) == [report.regions[0].bounds]  # in place: what a viewer refreshes
    assert np.array_equal(out, report.compose(image, {2}))
