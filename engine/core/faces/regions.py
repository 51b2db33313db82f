"""Eye and mouth regions of faces, where a scratch detector's "damage" is almost always the face itself.

The detector marks pupils, eye whites, catch-lights, teeth and lips as scratches, and restoring them
as holes gives a face blank "blind" eyes. This module is the one definition of those regions, used
by the mask policy (``engine.core.pipeline.damage_mask`` clears detected damage there) and by
``bench/eval_detection.py`` (the false-alarm score on faces):

* an eye disc of radius ``EYE_RADIUS`` x the inter-ocular distance (IOD) around each eye landmark;
* a mouth ellipse through the two mouth corners (half-width: half the corner distance plus
  ``MOUTH_MARGIN`` x IOD, half-height ``MOUTH_HALF_HEIGHT`` x IOD), turned with the mouth line.

The mask policy protects more on *small* faces (IOD under ``SMALL_FACE_IOD`` px, faces about 30 px
wide or less): the whole face ellipse (``protected_regions``). A face that small is a bright blob to
the detector, which marks it whole; clearing only its eyes and mouth left the rest of the face to be
filled, and the restore blanked it (seen on real crowd scenes: 1888Slum, 1880Paris). On larger
faces real cracks across the face must still be repaired, so only eyes and mouths are protected.

Landmarks are MTCNN's five points (``engine.core.faces.detect``). Faces are found once per photo on
a copy whose long side is at most ``FACE_SEARCH_LONG_SIDE`` px (faces smaller than MTCNN's 20 px
minimum in that copy have eyes a few pixels apart in the photo: too small to matter here).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

import cv2
import numpy as np

from engine.core.faces import detect

EYE_RADIUS = 0.3  # x inter-ocular distance
MOUTH_HALF_HEIGHT = 0.2  # x inter-ocular distance
MOUTH_MARGIN = 0.1  # x inter-ocular distance, added to half the mouth-corner distance
FACE_SEARCH_LONG_SIDE = 1024  # the face detector sees a copy at most this long (never enlarged)
PROTECT_SCORE = 0.9  # MTCNN score from which a face is protected (as the face stage's cutoff)
SMALL_FACE_IOD = 12.0  # px: faces with eyes closer than this are protected whole
FACE_HALF_WIDTH = 1.0  # x IOD: the face ellipse of a small face
FACE_HALF_HEIGHT = 1.35  # x IOD, forehead to chin


def draw_face_regions(region: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """Draw one face's eye discs and mouth ellipse (value 1) into ``region`` (HxW uint8), in place."""
    le, re, _, ml, mr = np.asarray(landmarks, np.float64).reshape(5, 2)
    iod = float(np.linalg.norm(re - le))
    for eye in (le, re):
        cv2.circle(region, (int(round(eye[0])), int(round(eye[1]))), max(1, int(round(EYE_RADIUS * iod))), 1, -1)
    centre = (ml + mr) / 2
    half_width = float(np.linalg.norm(mr - ml)) / 2 + MOUTH_MARGIN * iod
    angle = float(np.degrees(np.arctan2(mr[1] - ml[1], mr[0] - ml[0])))
    cv2.ellipse(region, (int(round(centre[0])), int(round(centre[1]))),
                (max(1, int(round(half_width))), max(1, int(round(MOUTH_HALF_HEIGHT * iod)))), angle, 0, 360, 1, -1)
    return region


def face_regions(shape: tuple[int, int], landmarks: np.ndarray | Iterable[np.ndarray]) -> np.ndarray:
    """HxW bool: the eye discs and mouth ellipses of one face's (5, 2) landmarks or of several faces'."""
    region = np.zeros(shape[:2], np.uint8)
    points = np.asarray(landmarks, np.float64)
    for face in points.reshape(-1, 5, 2):
        draw_face_regions(region, face)
    return region.astype(bool)


def draw_small_face(region: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """Draw a small face's whole face ellipse (value 1) into ``region`` in place, when its IOD is
    under ``SMALL_FACE_IOD``; larger faces are left as they are."""
    le, re, _, ml, mr = np.asarray(landmarks, np.float64).reshape(5, 2)
    iod = float(np.linalg.norm(re - le))
    if iod >= SMALL_FACE_IOD:
        return region
    centre = ((le + re) / 2 + (ml + mr) / 2) / 2
    angle = float(np.degrees(np.arctan2(re[1] - le[1], re[0] - le[0])))
    axes = (max(1, int(round(FACE_HALF_WIDTH * iod))), max(1, int(round(FACE_HALF_HEIGHT * iod))))
    cv2.ellipse(region, (int(round(centre[0])), int(round(centre[1]))), axes, angle, 0, 360, 1, -1)
    return region


def protected_regions(shape: tuple[int, int], landmarks: np.ndarray | Iterable[np.ndarray]) -> np.ndarray:
    """HxW bool: what the mask policy keeps clear of detected damage: ``face_regions`` plus the
    whole face of every small face."""
    region = face_regions(shape, landmarks).astype(np.uint8)
    for face in np.asarray(landmarks, np.float64).reshape(-1, 5, 2):
        draw_small_face(region, face)
    return region.astype(bool)


def find_landmarks(rgb: np.ndarray, min_score: float = PROTECT_SCORE,
                   long_side: int = FACE_SEARCH_LONG_SIDE) -> list[np.ndarray]:
    """(5, 2) landmarks in photo pixels of each face MTCNN finds in ``rgb`` (HxWx3 float in [0, 1]
    or uint8), searched on a copy shrunk to ``long_side``. Raises detect.FaceDetectorUnavailable."""
    h, w = rgb.shape[:2]
    factor = min(1.0, long_side / max(h, w))
    small = rgb[..., :3]
    if factor < 1.0:
        size = (max(1, round(w * factor)), max(1, round(h * factor)))
        small = cv2.resize(np.ascontiguousarray(small), size, interpolation=cv2.INTER_AREA)
    if small.dtype != np.uint8:
        small = (np.clip(small, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    sy, sx = h / small.shape[0], w / small.shape[1]
    faces = detect.detect_faces(np.ascontiguousarray(small))
    return [f.landmarks * np.array([sx, sy]) for f in faces if f.score >= min_score]


@dataclass(frozen=True)
class FaceProtection:
    """What face protection did to one detected mask (recorded in sidecars)."""

    ran: bool  # the face detector ran on the photo
    faces: int = 0  # faces whose eyes and mouth were protected
    cleared_px: int = 0  # detected pixels cleared on them
    reason: str | None = None  # why it did not run: "off", "nothing detected", "unavailable: ..."

    @property
    def unavailable(self) -> bool:
        return bool(self.reason and self.reason.startswith("unavailable"))

    def describe(self) -> dict[str, Any]:
        return {"ran": self.ran, "faces": self.faces, "cleared_px": self.cleared_px, "reason": self.reason,
                "regions": f"eye discs r={EYE_RADIUS} IOD, mouth ellipse half-height {MOUTH_HALF_HEIGHT} IOD",
                "face_score": PROTECT_SCORE}


OFF = FaceProtection(ran=False, reason="off")


def protect_faces(detected: np.ndarray, rgb: np.ndarray) -> tuple[np.ndarray, FaceProtection]:
    """Clear ``detected`` (HxW bool, the detector's part of a mask only) on the eyes and mouths of
    the faces in ``rgb``, and on the whole of small faces (``protected_regions``). Skips the face search when nothing is detected; when the MTCNN weights
    are missing the mask is returned as it is and the report says protection was unavailable."""
    if not detected.any():
        return detected, FaceProtection(ran=False, reason="nothing detected")
    try:
        faces = find_landmarks(rgb)
    except detect.FaceDetectorUnavailable as exc:
        return detected, FaceProtection(ran=False, reason=f"unavailable: {exc}")
    if not faces:
        return detected, FaceProtection(ran=True)
    region = protected_regions(detected.shape, faces)
    cleared = detected & region
    return detected & ~region, FaceProtection(ran=True, faces=len(faces), cleared_px=int(cleared.sum()))


def protect_probability(probability: np.ndarray, rgb: np.ndarray, floor: float = 0.01) -> tuple[np.ndarray, FaceProtection]:
    """``protect_faces`` for a probability map kept to be re-thresholded (the Restore tab's Detect and
    its threshold slider, which starts at ``floor``): the map is zeroed on eyes and mouths, so every
    threshold gives a protected mask. ``cleared_px`` counts pixels at or above ``floor``."""
    marked = np.asarray(probability) >= floor
    kept, report = protect_faces(marked, rgb)
    if report.cleared_px:
        probability = np.where(marked & ~kept, np.float32(0.0), probability).astype(np.float32, copy=False)
    return probability, report
