"""Aligned face crops for training and measuring our face generator (``face_train``).

Faces are found by the pipeline's own MTCNN detector and cut out
with the pipeline's own similarity to the official five-point template (``engine.core.faces.align``), so
the generator learns on exactly the kind of crop the face stage will hand it. The crop is
``FACE_SIZE`` square (256, as ``face_256``): faces smaller than that in the photo are *upsampled* by
the alignment warp (bilinear, like the pipeline), so their clean targets are soft; each face keeps
its ``scale`` (crop pixels per photo pixel) so the damage can be applied at the photo's own
resolution (``degrade_face``). Faces larger than the crop are taken from a photo shrunk with area
averaging first, because the bilinear warp does not antialias. The score cutoff is stricter than
the pipeline's 0.9 (``MIN_SCORE``): between 0.9 and 0.95 the training photos give mostly look-alikes
(fur, rock, a horse's head), which would teach the generator nothing about faces.

Training faces come only from the training photos of ``split_holdout`` (never the held-out tenth);
the held-out faces come from the held-out photos plus scikit-image's astronaut and cameraman (never
trained on), at the pipeline's own score cutoff: they measure what the face stage does. Extraction is slow-ish (MTCNN over a few hundred photos on one core), so the training
set is cached in an ``.npz`` in the run folder and reused when the photo list is unchanged.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
from PIL import Image, ImageOps

from engine.core.faces import align, detect
from engine.core.faces.stage import SCORE_CUTOFF
from engine.degradation.degrade import degrade
from engine.training.data import list_photos, split_holdout

FACE_SIZE = 256  # the crop side of face_256
DETECT_SIDE = 1024  # detection runs on a copy at most this large (MTCNN cost grows with the area)
MAX_UPSAMPLING = 8.0  # faces enlarged more than this (eyes < ~10 px apart) are only blur: skipped
MIN_SCORE = 0.95  # stricter than the pipeline's SCORE_CUTOFF (0.9), see the module docstring
ASTRONAUT, CAMERAMAN = "skimage:astronaut", "skimage:camera"  # held-out extras (never trained on)
_TEMPLATE_EYES = float(np.linalg.norm(align.template_points(FACE_SIZE)[1] - align.template_points(FACE_SIZE)[0]))

Detector = Callable[[np.ndarray], list[detect.Face]]


@dataclass
class FaceSet:
    """Clean aligned faces and where each came from."""

    faces: np.ndarray  # (N, S, S, 3) uint8
    scales: np.ndarray  # (N,) float32 crop pixels per photo pixel (> 1: the face was upsampled)
    sources: np.ndarray  # (N,) str: photo path, or "skimage:<name>"
    landmarks: np.ndarray  # (N, 5, 2) float32, in the full-resolution photo's pixels
    scores: np.ndarray  # (N,) float32 detector scores

    def __len__(self) -> int:
        return len(self.faces)

    @classmethod
    def empty(cls, size: int) -> "FaceSet":
        return cls(np.zeros((0, size, size, 3), np.uint8), np.zeros(0, np.float32), np.zeros(0, str),
                   np.zeros((0, 5, 2), np.float32), np.zeros(0, np.float32))

    def save(self, path: Path, key: str) -> None:
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez_compressed(tmp, faces=self.faces, scales=self.scales, sources=self.sources.astype(str),
                            landmarks=self.landmarks, scores=self.scores, key=np.asarray(key))
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path, key: str) -> "FaceSet | None":
        """The cached set, or None when absent, unreadable or made from other photos / another size."""
        try:
            with np.load(path, allow_pickle=False) as z:
                if str(z["key"]) != key:
                    return None
                return cls(z["faces"], z["scales"], z["sources"], z["landmarks"], z["scores"])
        except (OSError, KeyError, ValueError):
            return None

    def summary(self) -> str:
        if not len(self):
            return "0 faces"
        up = self.scales
        return (f"{len(self)} faces from {len(set(self.sources.tolist()))} photos (upsampled x{np.median(up):.1f} "
                f"median, {int((up > 1).sum())} of {len(self)} upsampled to {self.faces.shape[1]} px)")


def load_photo(source: str) -> np.ndarray | None:
    """Full-resolution RGB uint8 of a face's source photo; None when unreadable."""
    if source.startswith("skimage:"):
        import skimage.data

        img = getattr(skimage.data, source.removeprefix("skimage:"))()
        return np.ascontiguousarray(img if img.ndim == 3 else np.repeat(img[..., None], 3, axis=2))
    try:
        with Image.open(source) as img:
            return np.asarray(ImageOps.exif_transpose(img).convert("RGB"))
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None


def face_scale(params: np.ndarray) -> float:
    """Crop pixels per photo pixel of a crop→photo similarity."""
    return float(1.0 / np.sqrt(abs(np.linalg.det(params[:2, :2]))))


def detect_landmarks(photo: np.ndarray, detector: Detector | None = None,
                     min_score: float = SCORE_CUTOFF) -> list[tuple[np.ndarray, float]]:
    """(five-point landmarks in full-resolution pixels, score) of the faces scoring ``min_score`` or
    more (default: those the pipeline would refine)."""
    detector = detector or detect.detect_faces
    h, w = photo.shape[:2]
    shrink = min(1.0, DETECT_SIDE / max(h, w))
    small = photo if shrink == 1.0 else cv2.resize(photo, (round(w * shrink), round(h * shrink)),
                                                    interpolation=cv2.INTER_AREA)
    return [(np.asarray(f.landmarks, np.float64) / shrink, float(f.score)) for f in detector(small)
            if f.score >= min_score]


def aligned_crop(photo: np.ndarray, landmarks: np.ndarray, size: int = FACE_SIZE) -> tuple[np.ndarray, float]:
    """(clean aligned crop uint8, scale). The pipeline's warp, on a photo area-shrunk first when the
    face is larger than the crop (so a big face is not aliased)."""
    scale = face_scale(align.similarity_to_image(landmarks, size))
    if scale < 1.0:
        h, w = photo.shape[:2]
        nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
        photo = cv2.resize(photo, (nw, nh), interpolation=cv2.INTER_AREA)
        landmarks = landmarks * np.array([nw / w, nh / h])
    return align.align_face(photo, align.similarity_to_image(landmarks, size), size), scale


def extract(sources: list[str], size: int = FACE_SIZE, detector: Detector | None = None,
            max_upsampling: float = MAX_UPSAMPLING, min_score: float = MIN_SCORE) -> FaceSet:
    """Every usable face of every source photo (see module docstring)."""
    faces, scales, names, marks, scores = [], [], [], [], []
    for source in sources:
        photo = load_photo(source)
        if photo is None:
            continue
        for lm, score in detect_landmarks(photo, detector, min_score):
            try:
                crop, scale = aligned_crop(photo, lm, size)
            except ValueError:  # degenerate landmarks
                continue
            if scale > max_upsampling:
                continue
            faces.append(crop)
            scales.append(scale)
            names.append(source)
            marks.append(lm.astype(np.float32))
            scores.append(score)
    if not faces:
        return FaceSet.empty(size)
    return FaceSet(np.stack(faces), np.asarray(scales, np.float32), np.asarray(names), np.stack(marks),
                   np.asarray(scores, np.float32))


def photo_split(folders: list[Path]) -> tuple[list[str], list[str]]:
    """(training photos, held-out photos) exactly as every training stage splits them (per folder)."""
    train, held = [], []
    for folder in folders:
        t, h = split_holdout(list_photos(Path(folder)))
        train += [str(p) for p in t]
        held += [str(p) for p in h]
    return train, held


def _key(sources: list[str], size: int, max_upsampling: float, min_score: float) -> str:
    text = "\n".join([f"size={size}", f"max_up={max_upsampling}", f"min_score={min_score}",
                      f"detect_side={DETECT_SIDE}", *sources])
    return hashlib.sha256(text.encode()).hexdigest()


def cached_faces(sources: list[str], cache: Path | None, size: int = FACE_SIZE,
                 detector: Detector | None = None, min_score: float = MIN_SCORE) -> FaceSet:
    """``extract`` with an ``.npz`` cache (recomputed when the photo list or a setting changes)."""
    key = _key(sources, size, MAX_UPSAMPLING, min_score)
    if cache is not None:
        found = FaceSet.load(cache, key)
        if found is not None:
            return found
    faces = extract(sources, size, detector, min_score=min_score)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        faces.save(cache, key)
    return faces


def training_faces(folders: list[Path], cache: Path | None, size: int = FACE_SIZE,
                   detector: Detector | None = None) -> FaceSet:
    """Faces of the training photos only (never the held-out tenth)."""
    return cached_faces(photo_split(folders)[0], cache, size, detector)


def held_out_faces(folders: list[Path], cache: Path | None = None, size: int = FACE_SIZE,
                   extras: bool = True, detector: Detector | None = None) -> FaceSet:
    """Faces of the held-out photos (plus the astronaut's and the cameraman's), found as the
    pipeline finds them (score >= its cutoff)."""
    sources = photo_split(folders)[1] + ([ASTRONAUT, CAMERAMAN] if extras else [])
    return cached_faces(sources, cache, size, detector, min_score=SCORE_CUTOFF)


def degrade_face(clean_u8: np.ndarray, scale: float, seed: int) -> np.ndarray:
    """A clean aligned face as the pipeline would crop it from a damaged photo, HxWx3 float32 [0, 1].

    The unstructured damage the face generator repairs (blur, noise, grain, low resolution, fading,
    JPEG; no scratches) is applied at the photo's own resolution, then the face is enlarged to the
    crop bilinearly as the alignment warp does: grain and JPEG blocks of a small face are as coarse
    in the crop as they are in a real one.
    """
    size = clean_u8.shape[0]
    img = clean_u8.astype(np.float32) / 255.0
    native = max(8, round(size / max(float(scale), 1.0)))
    if native < size:
        img = cv2.resize(img, (native, native), interpolation=cv2.INTER_AREA)
    damaged = degrade(img, seed, structured_damage=False).degraded
    if native < size:
        damaged = cv2.resize(damaged, (size, size), interpolation=cv2.INTER_LINEAR)
    return np.clip(damaged, 0.0, 1.0).astype(np.float32)
