"""Synthetic damage: each operation does what it claims, masks are exact, seeds reproduce."""

from __future__ import annotations

import numpy as np
import pytest

from engine.degradation import degrade as d


def clean(h: int = 96, w: int = 128) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    img = np.stack([0.5 + 0.4 * np.sin(7 * xx), 0.5 + 0.4 * np.cos(5 * yy), 0.3 + 0.5 * xx * yy], axis=2)
    return img.astype(np.float32)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(1.0 / max(np.mean((a - b) ** 2), 1e-12)))


def test_same_seed_same_damage_other_seed_other_damage():
    a, b, c = d.degrade(clean(), 7), d.degrade(clean(), 7), d.degrade(clean(), 8)
    assert np.array_equal(a.degraded, b.degraded) and np.array_equal(a.mask, b.mask) and a.steps == b.steps
    assert not np.array_equal(a.degraded, c.degraded)


@pytest.mark.parametrize("seed", range(12))
def test_structured_mask_marks_exactly_the_changed_pixels(seed):
    img = clean()
    out, mask, kinds = d.structured(img, np.random.default_rng(seed), list(d.STRUCTURED))
    changed = np.abs(out - img).max(axis=2) > 0
    assert np.array_equal(changed, mask)
    assert np.abs(out - img).max(axis=2)[mask].min() >= d.DAMAGE_EPS
    assert 0 < mask.mean() < 0.9


def test_each_structured_kind_draws_something():
    rng = np.random.default_rng(0)
    for kind, (_, layer) in d.STRUCTURED.items():
        assert layer(rng, 64, 80).max() > 0, kind


def test_scratch_widths_stay_thin():
    import cv2

    for seed in range(5):
        alpha = (d.scratch_layer(np.random.default_rng(seed), 200, 200) > 0).astype(np.uint8)
        # distance to the nearest undamaged pixel: ~2 px at most inside a line of width <= 4
        # (a little more where curves cross)
        depth = cv2.distanceTransform(alpha, cv2.DIST_L2, 3)[alpha > 0]
        assert np.median(depth) <= 1.5 and np.percentile(depth, 95) <= 3.0


def test_jpeg_quality_lowers_psnr_monotonically():
    img = d.gaussian_noise(clean(), np.random.default_rng(0), std=0.02)
    scores = [psnr(d.jpeg(img, np.random.default_rng(0), quality=q), img) for q in (90, 60, 30, 10)]
    assert all(a > b for a, b in zip(scores, scores[1:])), scores


def test_fading_reduces_saturation_and_contrast():
    img = clean()
    faded = d.colour_fading(img, np.random.default_rng(1), amount=0.8)
    assert d.saturation(faded).mean() < 0.6 * d.saturation(img).mean()
    assert faded.std() < img.std()
    assert faded.min() > img.min()  # lifted blacks


def test_blur_noise_grain_lowres_change_the_image_as_claimed():
    img = clean()
    rng = np.random.default_rng(2)
    blurred = d.gaussian_blur(img, rng, sigma=2.0)
    assert np.abs(np.diff(blurred, axis=1)).mean() < np.abs(np.diff(img, axis=1)).mean()
    noisy = d.gaussian_noise(img, rng, std=0.05)
    assert 0.03 < (noisy - img).std() < 0.07
    sp = d.salt_and_pepper(img, rng, amount=0.05)
    extremes = ((sp == 0) | (sp == 1)).all(axis=2).mean()
    assert 0.03 < extremes < 0.07
    grain = d.film_grain(img, rng, strength=0.06)
    assert (grain - img).std() > 0.01
    low = d.low_resolution(img, rng, factor=4.0)
    assert psnr(low, img) < 60 and low.shape == img.shape
    grey = d.grayscale(img, rng)
    assert np.allclose(grey[..., 0], grey[..., 2])


def test_degrade_outputs_are_valid_images():
    for seed in range(6):
        out = d.degrade(clean(), seed)
        assert out.degraded.shape == (96, 128, 3) and out.degraded.dtype == np.float32
        assert 0 <= out.degraded.min() and out.degraded.max() <= 1
        assert out.mask.shape == (96, 128) and out.mask.dtype == bool
    assert not d.degrade(clean(), 0, structured_damage=False).mask.any()
