"""Damage families (issue #17, item 5): ``degrade(..., family=...)`` draws only one family's structured
kinds, keeps the seed's unstructured damage, and leaves the default draw of every seed as it was."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from engine.degradation import realistic as r
from engine.degradation.degrade import DAMAGE_FAMILIES, FAMILIES, STRUCTURED, degrade


def photo(h: int = 96, w: int = 128) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    img = np.stack([0.4 + 0.3 * np.sin(7 * xx), 0.4 + 0.3 * np.cos(5 * yy), 0.3 + 0.4 * xx * yy], axis=2)
    return img.astype(np.float32)


# The default draw's steps for seeds 0..7 (no overlay library), recorded before families existed: the family parameter
# and the named-only kinds must not change which random numbers the default draw uses.
DEFAULT_STEPS = {
    "classic": {
        0: ("gaussian_noise", "salt_pepper", "speckle", "paper", "scratches", "crease"),
        1: ("grain", "speckle", "scratches"),
        2: ("blur", "gaussian_noise", "grayscale", "fading", "salt_pepper", "paper", "scratches", "dust", "jpeg"),
        3: ("grayscale", "fading", "blur", "gaussian_noise", "grain", "scratches", "dust", "corner", "jpeg"),
        4: ("salt_pepper", "grayscale", "scratches", "dust", "jpeg"),
        5: ("grayscale", "fading", "grain", "paper", "scratches", "crease", "holes"),
        6: ("gaussian_noise", "scratches", "jpeg"),
        7: ("fading", "grain", "paper", "scratches", "crease", "jpeg"),
    },
    "realistic": {
        0: ("gaussian_noise", "salt_pepper", "speckle", "paper", "cracks", "tear", "fold", "dust", "jpeg"),
        1: ("grain", "speckle", "cracks", "fibres"),
        2: ("blur", "gaussian_noise", "grayscale", "fading", "salt_pepper", "paper", "cracks", "dust", "jpeg"),
        3: ("grayscale", "fading", "blur", "gaussian_noise", "grain", "cracks", "fold", "dust", "fibres", "scratches",
            "jpeg"),
        4: ("salt_pepper", "grayscale", "fibres"),
        5: ("grayscale", "fading", "grain", "paper", "cracks", "foxing", "fibres"),
        6: ("gaussian_noise", "cracks", "dust", "jpeg"),
        7: ("fading", "grain", "paper", "dust", "fibres"),
    },
}


@pytest.mark.parametrize("style", ["classic", "realistic"])
def test_default_draw_is_unchanged(style):
    for seed, steps in DEFAULT_STEPS[style].items():
        assert degrade(photo(), seed, damage=style).steps == steps, (style, seed)
        same = degrade(photo(), seed, damage=style, family=None)
        assert np.array_equal(same.degraded, degrade(photo(), seed, damage=style).degraded)


@pytest.mark.parametrize("style", ["classic", "realistic"])
@pytest.mark.parametrize("family", ["scratches", "holes"])
def test_a_family_draws_only_its_own_kinds_and_at_least_one(style, family):
    every = set(STRUCTURED) | set(r.LAYERS)
    own = set(DAMAGE_FAMILIES[style][family])
    drawn = set()
    for seed in range(12):
        d = degrade(photo(), seed, damage=style, family=family)
        kinds = [s for s in d.steps if s in every]
        assert kinds and set(kinds) <= own, (seed, d.steps)
        assert d.mask.any()
        drawn |= set(kinds)
    assert len(drawn) >= 2  # a family is a mix, not one kind


@pytest.mark.parametrize("style", ["classic", "realistic"])
def test_families_share_the_seed_unstructured_damage(style):
    for seed in range(6):
        base = degrade(photo(), seed, damage=style, family="unstructured", jpeg_probability=0.0)
        assert not base.mask.any()
        for family in ("scratches", "holes"):
            d = degrade(photo(), seed, damage=style, family=family, jpeg_probability=0.0)
            assert d.steps[:len(base.steps)] == base.steps
            # outside the damage the photo is the unstructured-only photo, pixel for pixel
            assert np.array_equal(d.degraded[~d.mask], base.degraded[~d.mask])


def test_flaking_removes_areas_and_masks_exactly_the_change():
    img = photo(128, 160)
    out, mask, kinds = r.realistic_structured(img, np.random.default_rng(3), None, ["flaking"])
    assert kinds == ["flaking"]
    change = np.abs(out - img).max(axis=2)
    assert np.array_equal(change > 0, mask) and change[mask].min() >= r.VISIBLE_EPS
    assert 0.003 < mask.mean() < 0.5
    # areas, not lines: a 3x3 erosion keeps a good part of the flakes (it removes 1-2 px lines)
    kept = cv2.erode(mask.astype(np.uint8), np.ones((3, 3), np.uint8)).sum()
    assert kept > 0.25 * mask.sum()
    assert "flaking" not in r.REALISTIC  # never in the default draw


def test_bad_family_or_kind_is_refused():
    with pytest.raises(ValueError):
        degrade(photo(), 1, family="stains")
    with pytest.raises(ValueError):
        r.draw_kinds(np.random.default_rng(0), r.LAYERS, ["stains"])
    assert FAMILIES == ("unstructured", "scratches", "holes")
