"""The face stage of the pipeline (official stages 2-4, OFFICIAL_PIPELINE.md §6) on one photo.

The globally restored photo is rounded to 8 bits as the official stage-1 PNG is; faces are found on
it (MTCNN, score >= ``SCORE_CUTOFF``), each is aligned to the five-point template, restored by the
SPADE face generator (256 px, or 512 px with HR, as the official ``--HR`` switch), colour-matched to
its own crop and blended back in the order found. Two deliberate differences from the official
scripts: faces are detected once (the official stage 4 detects them again, with the same result),
and blending runs on the float photo, so pixels no face touches keep their exact value instead of
being rounded to 8 bits.

One face that fails (degenerate landmarks, a network error) is skipped with a warning naming it;
the other faces and the photo are kept.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ..durable import sha256_file
from ..models.checkpoints import CheckpointError, ModelBank, WeightSource
from ..models.registry import BY_NAME
from ..official import save_image_u8, to_network
from ..progress import Cancelled, Progress
from . import align, detect

SCORE_CUTOFF = 0.9  # MTCNN: a false positive on the astronaut image scores 0.851, real faces ~1.0
Detector = Callable[[np.ndarray], list[detect.Face]]


class FacesUnavailable(CheckpointError):
    """Face refinement was asked for but cannot run here; the message says how to enable it."""


def face_network(hr: bool) -> str:
    """The generator the official pipeline uses: FaceSR_512 with ``--HR``, else Setting_9 at 256."""
    return "face_512" if hr else "face_256"


_CHECKPOINT = {"face_256": "Setting_9_epoch_100", "face_512": "FaceSR_512"}


def choose_face_network(source: WeightSource, faces: bool | None, hr: bool) -> str | None:
    """The face network to run, or None. ``faces``: True = required, False = off, None = on when
    ``source`` has the network. Raises FacesUnavailable when required but absent."""
    if faces is False:
        return None
    name = face_network(hr)
    if source.has(BY_NAME[name]):
        return name
    if faces:
        raise FacesUnavailable(
            f"face refinement needs the official face generator {_CHECKPOINT[name]} "
            f"({'used with --hr' if hr else '256 px'}), which {source.label} does not include. Get it with "
            "`python main.py models download official` (or `python main.py models import face_checkpoints.zip`), "
            "then use --weights official; or restore without --faces")
    return None


def require_detector() -> None:
    """Raise FacesUnavailable unless the MTCNN weight files can be found."""
    try:
        detect.weights_dir()
    except detect.FaceDetectorUnavailable as exc:
        raise FacesUnavailable(f"face refinement needs the face detector: {exc}") from None


@cache
def _detector_hashes(folder: Path) -> dict[str, str]:
    return {f"{n}net.pt": sha256_file(folder / f"{n}net.pt") for n in "pro"}


def detector_description() -> dict[str, Any]:
    """What found the faces (its weights decide which faces are found), for provenance."""
    info: dict[str, Any] = {"name": "MTCNN (engine.faces.detect)", "score_cutoff": SCORE_CUTOFF}
    try:
        folder = detect.weights_dir()
        info["weights"] = {"folder": str(folder), "sha256": _detector_hashes(folder)}
    except detect.FaceDetectorUnavailable:
        info["weights"] = None
    return info


@dataclass
class FaceRecord:
    """One detected face; ``index`` counts from 1 in the order the faces were found and blended."""

    index: int
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 in photo pixels
    score: float
    landmarks: np.ndarray  # (5, 2) x, y
    refined: bool = False
    error: str | None = None

    def describe(self) -> dict[str, Any]:
        return {"index": self.index, "box": [round(v, 2) for v in self.box], "score": round(self.score, 4),
                "landmarks": np.round(self.landmarks, 2).tolist(), "refined": self.refined, "error": self.error}


@dataclass
class FaceReport:
    """What the face stage did to one photo."""

    network: str
    size: int  # aligned crop side (256 or 512)
    faces: list[FaceRecord] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def found(self) -> int:
        return len(self.faces)

    @property
    def refined(self) -> int:
        return sum(f.refined for f in self.faces)

    def describe(self) -> dict[str, Any]:
        return {"ran": True, "network": self.network, "checkpoint": _CHECKPOINT.get(self.network),
                "crop_size": self.size, "detector": detector_description(), "found": self.found,
                "refined": self.refined, "faces": [f.describe() for f in self.faces], "warnings": list(self.warnings)}


def to_u8(image01: np.ndarray) -> np.ndarray:
    """float [0, 1] -> uint8 as ``save_image`` writes the official stage-1 PNG: floor(255 v + 0.5)."""
    return np.clip(np.floor(image01.astype(np.float64) * 255.0 + 0.5), 0, 255).astype(np.uint8)


def refine_faces(image: np.ndarray, bank: ModelBank, network: str, progress: Progress | None = None,
                 detector: Detector | None = None) -> tuple[np.ndarray, FaceReport]:
    """Detect, restore and blend back every face of ``image`` (HxWx3 float in [0, 1]).

    Returns the new float32 image and the report. Raises FacesUnavailable when the detector or the
    generator cannot be loaded (the caller decides whether that is an error), Cancelled on cancel.
    ``detector``: default ``detect.detect_faces``.
    """
    progress = progress or Progress()
    detector = detector or detect.detect_faces
    t0 = time.perf_counter()
    progress.report(0.0, "detecting faces")
    image_u8 = to_u8(image)
    try:
        found = [f for f in detector(image_u8) if f.score >= SCORE_CUTOFF]
    except detect.FaceDetectorUnavailable as exc:
        raise FacesUnavailable(f"face detection is unavailable: {exc}") from None
    records = [FaceRecord(k, f.box, f.score, np.asarray(f.landmarks)) for k, f in enumerate(found, start=1)]
    report = FaceReport(network, 0, records)
    if not records:
        report.seconds = time.perf_counter() - t0
        return image, report
    try:
        net = bank.get(network)
    except CheckpointError as exc:
        raise FacesUnavailable(f"the face generator could not be loaded: {exc}") from None
    size = report.size = int(net.load_size)
    current = image.astype(np.float64) * 255.0
    for record in records:
        progress.report(0.1 + 0.9 * (record.index - 1) / len(records), f"face {record.index} of {len(records)}")
        try:
            current = _refine_one(net, bank.device, image_u8, current, record.landmarks, size)
            record.refined = True
        except Cancelled:
            raise
        except Exception as exc:  # noqa: BLE001 - one bad face must not cost the photo
            record.error = f"{type(exc).__name__}: {exc}"
            report.warnings.append(f"face {record.index}: not refined ({record.error})")
    progress.report(1.0, f"{report.refined} of {report.found} face(s) refined")
    report.seconds = time.perf_counter() - t0
    out = image if report.refined == 0 else (current / 255.0).astype(np.float32)
    return np.ascontiguousarray(out), report


def _refine_one(net: torch.nn.Module, device: torch.device, image_u8: np.ndarray, current: np.ndarray,
                landmarks: np.ndarray, size: int) -> np.ndarray:
    """Stages 2-4 for one face; returns the new 0..255 float64 image (``current`` is not modified)."""
    params = align.similarity_to_image(landmarks, size)
    crop = align.align_face(image_u8, params, size)
    with torch.inference_mode():
        generated = net(to_network(crop).to(device))
    restored = save_image_u8((generated + 1.0) / 2.0, normalize=False)
    blended = align.blend_face(current, restored, params, size, image_u8=image_u8)
    return blended.blended01 * 255.0
