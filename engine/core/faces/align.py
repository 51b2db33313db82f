"""Official face alignment and warp-back blending (OFFICIAL_PIPELINE.md §6.1, §6.3).

Everything here reproduces the official ``Face_Detection`` scripts numerically: the same
scikit-image warps, the same template arithmetic, the same histogram matching and blur blending.
Deviations that look harmless (a float64 template, a float mask warp, another CDF rule) change
the results measurably, so the small details below are deliberate.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from skimage.transform import SimilarityTransform, warp
from skimage.util import img_as_ubyte

# Five template points (eyes, nose tip, mouth corners) in a 256-pixel frame, as the official code.
_BASE_POINTS = (196.0, 226.0, 316.0, 226.0, 256.0, 286.0, 220.0, 360.4, 292.0, 360.4)
TARGET_FACE_SCALE = 1.3
_ERODE_KERNEL = np.ones((9, 9), np.uint8)


def template_points(size: int) -> np.ndarray:
    """Template landmarks in an ``size``×``size`` crop, (5, 2) float32.

    The official base array is float32 and the whole chain (``/256 − 1``, ``*1.3 + 1``, ``/2*S``)
    stays in float32; doing it in float64 moves the similarity by ~1e-5 and flips crop pixels by 1,
    so every constant is a float32 here on purpose.
    """
    f32 = np.float32
    pts = np.asarray(_BASE_POINTS, dtype=f32) / f32(256.0) - f32(1.0)
    pts = (pts * f32(TARGET_FACE_SCALE) + f32(1.0)) / f32(2.0) * f32(size)
    return pts.astype(f32).reshape(5, 2)


def _estimate(src: np.ndarray, dst: np.ndarray) -> SimilarityTransform:
    """Least-squares similarity src → dst; raises ValueError when the fit is degenerate."""
    if hasattr(SimilarityTransform, "from_estimate"):  # scikit-image >= 0.26 (estimate is deprecated)
        tf = SimilarityTransform.from_estimate(src, dst)
        ok = bool(tf)
    else:
        tf = SimilarityTransform()
        ok = tf.estimate(src, dst)
    if not ok:
        raise ValueError(f"cannot fit a similarity to the landmarks: {tf}")
    return tf


def similarity_to_image(landmarks5: np.ndarray, size: int) -> np.ndarray:
    """3×3 similarity mapping crop coordinates to image coordinates.

    Estimated template → landmarks with the landmarks as int64 (the official dlib points are ints;
    float32 landmarks would change the fit). Raises ValueError for unusable landmarks.
    """
    lm = np.asarray(landmarks5)
    if lm.shape != (5, 2):
        raise ValueError(f"expected (5, 2) landmarks, got shape {lm.shape}")
    params = _estimate(template_points(size), lm.astype(np.int64)).params
    if not np.all(np.isfinite(params)) or abs(np.linalg.det(params[:2, :2])) < 1e-12:
        raise ValueError("landmarks give a degenerate similarity")
    return params


def _transform(params: np.ndarray) -> SimilarityTransform:
    """Wrap a 3×3 matrix as the transform object the official code passes to ``warp``."""
    return SimilarityTransform(matrix=np.asarray(params, dtype=np.float64))


def align_face(image_u8: np.ndarray, params: np.ndarray, size: int) -> np.ndarray:
    """Stage-2 crop: bilinear warp into [0, 1] floats (0 outside the image), then ``img_as_ubyte``."""
    crop = warp(image_u8, _transform(params), output_shape=(size, size, 3))
    return img_as_ubyte(crop)


def match_histograms(face_u8: np.ndarray, reference_u8: np.ndarray) -> np.ndarray:
    """Per-channel histogram matching of ``face_u8`` to ``reference_u8`` (both uint8, H×W×C).

    For each value v the output is the smallest j with ``cdf_ref[j] >= cdf_src[v]``, CDFs being
    float64 cumulative counts over the pixel count — the rule that reproduces the official LUTs.
    Channels are independent, so the official BGR order does not matter.
    """
    out = np.empty_like(face_u8)
    for c in range(face_u8.shape[2]):
        cdf_src = _cdf(face_u8[..., c])
        cdf_ref = _cdf(reference_u8[..., c])
        lut = np.minimum(np.searchsorted(cdf_ref, cdf_src, side="left"), 255).astype(np.uint8)
        out[..., c] = lut[face_u8[..., c]]
    return out


def _cdf(channel_u8: np.ndarray) -> np.ndarray:
    """Normalised 256-bin cumulative histogram in float64."""
    counts = np.bincount(channel_u8.ravel(), minlength=256)[:256]
    return np.cumsum(counts).astype(np.float64) / channel_u8.size


def blur_blend(back: np.ndarray, current: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Official ``blur_blending_cv2``: feathered paste of ``back`` over ``current``, result in [0, 1].

    The mask is cast to float64 before ``*255``: scikit-image >= 0.19 returns uint8 from the
    nearest warp, while the official code was written for the float64 masks of older versions.
    """
    return blend_layer(back, current, blend_weights(mask))


def blend_weights(mask: np.ndarray) -> np.ndarray:
    """The feathered 0..1 weight of ``blur_blend``: the 0/1 mask eroded, then Gaussian-blurred.
    Exactly 0 beyond the blur's reach, so a face's weight can be kept on its bounding box alone."""
    m = mask.astype(np.float64) * 255.0
    m = cv2.erode(m, _ERODE_KERNEL, iterations=3)
    return cv2.GaussianBlur(m, (25, 25), 0) / 255.0


def blend_layer(back: np.ndarray, current: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """``back`` over ``current`` (both 0..255) with ``weight``, result in [0, 1]; the one place the
    blend arithmetic lives, so the stage and a later recomposition give identical numbers."""
    out = back * weight + current * (1.0 - weight)
    return np.clip(out / 255.0, 0.0, 1.0)


@dataclass
class FaceBlend:
    """One face's stage-4 result and the intermediates the parity test compares."""

    blended01: np.ndarray  # new image in [0, 1], float64 (H, W, 3)
    aligned_face_trunc_u8: np.ndarray  # histogram reference (S, S, 3)
    histmatched_u8: np.ndarray  # colour-matched restored face (S, S, 3)
    warped_back: np.ndarray  # bicubic warp of the matched face, 0..255 float64 (H, W, 3)
    backward_mask: np.ndarray  # 0/1 uint8 (H, W, 3)


def blend_face(current_float_0_255: np.ndarray, restored_face_u8: np.ndarray, params: np.ndarray,
               size: int, *, image_u8: np.ndarray) -> FaceBlend:
    """Stage 4 for one face: match colours, warp back, blend into the current image.

    ``image_u8`` is the unblended stage-1 image: the official code takes the colour reference and
    the crop validity mask from it, not from the partially blended result.
    """
    reference, matched, back, bmask = warp_back(restored_face_u8, params, size, image_u8=image_u8)
    blended = blur_blend(back, current_float_0_255, bmask)
    return FaceBlend(blended, reference, matched, back, bmask.astype(np.uint8))


def warp_back(restored_face_u8: np.ndarray, params: np.ndarray, size: int, *,
              image_u8: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Stage 4 up to the blend: (histogram reference, matched face, warped-back face 0..255 float64,
    backward 0/1 mask). None of it depends on the other faces, only on the stage-1 image."""
    if restored_face_u8.shape != (size, size, 3) or restored_face_u8.dtype != np.uint8:
        raise ValueError(f"restored face must be uint8 ({size}, {size}, 3), "
                         f"got {restored_face_u8.dtype} {restored_face_u8.shape}")
    tf = _transform(params)
    h, w = image_u8.shape[:2]
    aligned = warp(image_u8, tf, output_shape=(size, size, 3), preserve_range=True)
    # Ones of the IMAGE's shape: fmask marks the crop pixels that come from inside the image.
    fmask = warp(np.ones(image_u8.shape, np.uint8), tf, output_shape=(size, size, 3), order=0,
                 preserve_range=True)
    reference = aligned.astype(np.uint8)  # truncation, as the official code
    matched = match_histograms(restored_face_u8, reference)
    inverse = tf.inverse
    back = warp(matched, inverse, output_shape=(h, w, 3), order=3, preserve_range=True)
    bmask = warp(fmask, inverse, output_shape=(h, w, 3), order=0, preserve_range=True)
    return reference, matched, back, bmask
