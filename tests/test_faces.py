"""Face stages 2 and 4 (engine.core.faces.align) beyond the golden parity checks."""

from __future__ import annotations

import numpy as np

from engine.core.faces import align


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
