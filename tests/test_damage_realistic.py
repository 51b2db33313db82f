"""Realistic damage (issue #16): every kind draws what it claims, the mask is exactly the visible
change, seeds reproduce, and the real overlay library is used when present."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import DATA

from engine.degradation import realistic as r
from engine.degradation.degrade import degrade
from engine.degradation.overlays import OverlayLibrary

OVERLAYS = DATA / "damage_overlays"


def photo(h: int = 128, w: int = 160) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    img = np.stack([0.35 + 0.3 * np.sin(6 * xx), 0.35 + 0.3 * np.cos(4 * yy), 0.25 + 0.4 * xx * yy], axis=2)
    return img.astype(np.float32)


@pytest.mark.parametrize("kind", list(r.REALISTIC))
def test_each_kind_changes_the_photo_and_masks_exactly_the_visible_change(kind):
    img = photo()
    out, mask, kinds = r.realistic_structured(img, np.random.default_rng(5), None, [kind])
    assert kinds == [kind]
    change = np.abs(out - img).max(axis=2)
    assert mask.any(), kind
    assert np.array_equal(change > 0, mask)  # nothing outside the mask moved
    assert change[mask].min() >= r.VISIBLE_EPS  # and nothing invisible is called damage
    assert mask.mean() < 0.6


def test_cracks_are_thin_and_branching():
    alpha = r.branching_cracks(np.random.default_rng(1), 256, 256) > 0.5
    assert 0.002 < alpha.mean() < 0.2
    # thin: eroding by a 5x5 square removes nearly all of a 1-4 px crack
    import cv2

    eroded = cv2.erode(alpha.astype(np.uint8), np.ones((5, 5), np.uint8))
    assert eroded.sum() < 0.1 * alpha.sum()


def test_craquelure_is_a_network_of_many_cells():
    import cv2

    alpha = r.craquelure(np.random.default_rng(2), 256, 256) > 0.5
    cells, _ = cv2.connectedComponents((~alpha).astype(np.uint8), connectivity=4)
    assert cells > 8  # closed cells between cracks, not a few lines


def test_paper_base_shows_in_tears_and_is_cream_not_grey_or_pink():
    rng = np.random.default_rng(4)
    base = r.paper_base(rng, 8, 8).reshape(-1, 3).mean(axis=0)
    assert base.min() > 0.5 and base[0] >= base[1] >= base[2]


def test_realistic_degrade_is_reproducible_and_differs_from_classic():
    a = degrade(photo(), 11, damage="realistic")
    b = degrade(photo(), 11, damage="realistic")
    c = degrade(photo(), 11)
    assert np.array_equal(a.degraded, b.degraded) and np.array_equal(a.mask, b.mask)
    assert a.steps != c.steps or not np.array_equal(a.mask, c.mask)
    with pytest.raises(ValueError):
        degrade(photo(), 1, damage="fancy")


@pytest.mark.skipif(not OVERLAYS.is_dir(), reason="needs ../shared/data/damage_overlays")
def test_real_overlays_and_outlines_are_used():
    library = OverlayLibrary.from_folder(OVERLAYS)
    assert {"dirt", "hair", "scratches"} <= set(library.overlays) and len(library.outlines) > 10_000
    rng = np.random.default_rng(0)
    alpha = library.alpha(rng, ("hair",), 200, 300, 0.8)
    assert alpha.shape == (200, 300) and 0 <= alpha.min() and alpha.max() <= 1
    stamps = library.stamp_outlines(rng, 200, 300, 40, 0.3)
    assert stamps.any()
    out, mask, _ = r.realistic_structured(photo(), np.random.default_rng(3), library, ["dust", "fibres", "scratches"])
    assert mask.any() and np.array_equal(np.abs(out - photo()).max(axis=2) > 0, mask)
