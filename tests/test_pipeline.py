"""Heirloom's pipeline: exact size, no contrast stretch, masks, cancellation, exact chunked attention."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import bank_for

from engine.core import detection, pipeline
from engine.core.detection import mask_from_probability
from engine.core.pipeline import (
    NO_DETECTION,
    RestoreOptions,
    Restorer,
    damage_mask,
    pad_to_multiple,
    required_networks,
)
from engine.core.translation import Mode, translate
from engine.models.networks.partial_nonlocal import partial_attention
from engine.models.networks.patch_attention import PatchAttention
from engine.progress import Cancelled, Progress


def photo(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([(xx * 3 + yy * k) % 255 for k in (1, 2, 5)], axis=2).astype(np.float64)
    return np.clip(base + rng.normal(0, 8, base.shape), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def restorer() -> Restorer:
    return Restorer(bank_for())


@pytest.mark.parametrize("options", [RestoreOptions(), RestoreOptions(scratch=True), RestoreOptions(hr=True)],
                         ids=["quality", "scratch", "hr"])
def test_output_has_exactly_the_input_size(restorer, options):
    image = photo(37, 53)
    result = restorer.restore(image, options)
    assert result.image.shape == (37, 53, 3)
    assert result.image.dtype == np.float32
    if options.detect:
        assert result.detected.shape == (37, 53) and result.mask.shape == (37, 53)


def test_result_is_the_cropped_clamped_network_output_without_stretch(restorer):
    image = photo(30, 42, seed=3)
    result = restorer.restore(image, RestoreOptions())
    x = torch.from_numpy(image.astype(np.float32) / 255.0).permute(2, 0, 1)[None] * 2 - 1
    padded, _ = pad_to_multiple(x, 4)
    assert padded.shape[-2:] == (32, 44)
    generated = translate(restorer.bank, padded, None, Mode.QUALITY).generated
    expected = ((generated[0, :, :30, :42] + 1) / 2).clamp(0, 1).permute(1, 2, 0).numpy()
    # equal to the clamped network output itself: no resize, no per-image min-max stretch
    np.testing.assert_allclose(result.image, expected, atol=1e-6)


def test_user_mask_is_merged_and_holes_are_filled(restorer):
    image = photo(40, 48)
    user = np.zeros((40, 48), bool)
    user[10:12, 5:40] = True
    result = restorer.restore(image, RestoreOptions(scratch=True), user_mask=user)
    assert result.mode is Mode.SCRATCH
    assert result.mask[user].all()
    assert (result.mask == (user | (result.detected >= 0.4))).all()
    only_user = restorer.restore(image, RestoreOptions(), user_mask=user)
    assert only_user.mode is Mode.SCRATCH and (only_user.mask == user).all() and only_user.detected is None


def test_hr_mode_dilates_the_detected_scratches_never_the_users_pixels(restorer, monkeypatch):
    image = photo(64, 64)
    probability = np.zeros((64, 64), np.float32)
    probability[30, 30] = 0.9  # the detector marks one pixel
    monkeypatch.setattr(pipeline, "detect_scratches", lambda *_args: probability)
    user = np.zeros((64, 64), bool)
    user[10, 50] = True  # a person marks another, exactly
    result = restorer.restore(image, RestoreOptions(hr=True), user_mask=user)
    detected = result.mask & ~user
    assert detected.sum() == 49 and detected[27:34, 27:34].all()  # grown by 3 iterations of a 3x3 dilation
    assert result.mask[9:12, 49:52].sum() == 1 and result.mask[10, 50]  # the user's pixel, not grown


def test_dilation_grows_the_detected_part_and_the_users_mask_is_added_as_it_is(monkeypatch):
    probability = np.zeros((32, 32), np.float32)
    probability[8, 8] = 0.9
    monkeypatch.setattr(pipeline, "detect_scratches", lambda *_args: probability)
    user = np.zeros((32, 32), bool)
    user[24, 24] = True
    holes, detected, *_ = damage_mask(None, np.zeros((32, 32, 3), np.float32),
                                      RestoreOptions(scratch=True, mask_dilation=2, detection_scale="official"), user)
    assert detected is probability
    assert np.array_equal(holes, mask_from_probability(probability, 0.4, 2) | user)
    assert holes[6:11, 6:11].all() and holes.sum() == 25 + 1


def counted_detector_runs(monkeypatch) -> list[tuple[int, int]]:
    """The input size of every run of the detector network from now on (the network still runs)."""
    runs: list[tuple[int, int]] = []
    real = detection.run_detector

    def counted(bank, grey, size, antialias):
        runs.append(size)
        return real(bank, grey, size, antialias)

    monkeypatch.setattr(detection, "run_detector", counted)
    return runs


def test_the_detector_runs_only_where_the_options_ask_for_detection(restorer, monkeypatch):
    runs = counted_detector_runs(monkeypatch)
    image = photo(40, 48)
    user = np.zeros((40, 48), bool)
    user[10:12, 5:40] = True
    quality = restorer.restore(image, RestoreOptions())
    assert runs == [] and quality.mode is Mode.QUALITY and quality.mask is None
    # A reviewed mask in HR mode (the Restore tab's): used exactly as given, the detector never runs.
    reviewed_options = RestoreOptions(hr=True, detection_scale=NO_DETECTION)
    assert "detector" not in required_networks(reviewed_options, has_user_mask=True)
    reviewed = restorer.restore(image, reviewed_options, user_mask=user)
    assert runs == [] and reviewed.mode is Mode.HR and reviewed.detected is None
    assert np.array_equal(reviewed.mask, user)  # not grown by HR's dilation either
    unmarked = restorer.restore(image, reviewed_options)
    assert runs == [] and unmarked.mode is Mode.HR and not unmarked.mask.any()
    assert RestoreOptions(scratch=True, detection_scale=NO_DETECTION).mode(has_user_mask=False) is Mode.QUALITY
    detected = restorer.restore(image, RestoreOptions(hr=True))
    assert len(runs) == 1 and detected.detected is not None


def test_mask_of_another_size_is_a_clear_error(restorer):
    with pytest.raises(ValueError, match="exactly the photo's size"):
        restorer.restore(photo(20, 20), RestoreOptions(), user_mask=np.zeros((10, 10), bool))


def test_cancel_stops_inside_the_mapping_stage(restorer):
    seen: list[str] = []
    progress = Progress()

    def callback(fraction: float, message: str) -> None:
        seen.append(message)
        if message.startswith("mapping"):
            progress.cancel()

    progress.callback = callback
    with pytest.raises(Cancelled):
        restorer.restore(photo(48, 48), RestoreOptions(scratch=True), progress=progress)
    assert any(m.startswith("mapping") for m in seen)
    assert "decoding" not in seen


def official_attention(theta, phi, g, valid):
    """The official sequence on the full N x N matrix (what the chunked form must equal)."""
    a = torch.softmax(theta @ phi, dim=-1) * valid
    return F.normalize(a, p=1, dim=-1, eps=1e-12) @ g


def test_chunked_partial_attention_equals_the_official_formula():
    gen = torch.Generator().manual_seed(0)
    n, c = 300, 16
    theta = torch.randn(n, c, generator=gen) * 6  # wide logits: some rows have tiny valid mass
    phi = torch.randn(c, n, generator=gen) * 6
    g = torch.randn(n, c, generator=gen)
    valid = (torch.rand(n, generator=gen) > 0.3).float()
    reference = official_attention(theta, phi, g, valid)
    for budget in (1, 4096, 10**9):
        for inference in (False, True):  # the differentiable official path and the fused inference path
            with torch.inference_mode(inference):
                ours = partial_attention(theta, phi, g, valid, max_bytes=budget)
            np.testing.assert_allclose(ours.numpy(), reference.numpy(), rtol=1e-4, atol=2e-5)
    masked_softmax = torch.softmax((theta @ phi).masked_fill(valid == 0, float("-inf")), dim=-1) @ g
    assert (masked_softmax - reference).abs().max() > 0.1, "test data must exercise the 1e-12 renormalisation"


def test_patch_attention_with_every_patch_masked_keeps_the_features():
    block = PatchAttention(2, channels=4)
    x = torch.randn(1, 4, 6, 6)
    assert torch.equal(block.compose(x, torch.ones(1, 1, 6, 6)), x)
    hole = torch.zeros(1, 1, 6, 6)
    hole[..., :2, :2] = 1
    composed = block.compose(x, hole)
    assert not torch.equal(composed[..., :2, :2], x[..., :2, :2])
    assert torch.equal(composed[..., 2:, :], x[..., 2:, :])
