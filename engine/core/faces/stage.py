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

Each refined face is kept as a layer on its own bounding box (the warped-back face and its blend
weight), with the pre-face pixels under all of them, so ``FaceReport.compose`` can rebuild the photo
with any subset of faces in milliseconds (the GUI's per-face toggle) instead of a full re-restore.
The stage's own output is built by that same routine, so "every face on" is its result bit for bit.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from engine.core.faces import align, detect
from engine.core.official import save_image_u8, to_network
from engine.io.durable import sha256_file
from engine.io.pixels import to_u8
from engine.models.checkpoints import CheckpointError, ModelBank, WeightSource
from engine.models.registry import BY_NAME
from engine.progress import Cancelled, Progress

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


def generator_name(source: WeightSource, network: str) -> str:
    """The face generator for provenance: the official checkpoint's name for official-width weights,
    else (our own lite generator) the network, its widths and the weights it came from."""
    kwargs = source.network_kwargs(BY_NAME[network])
    if not kwargs:
        return _CHECKPOINT[network]
    widths = ", ".join(f"{k}={v}" for k, v in sorted(kwargs.items()))
    return f"{network} ({widths}) from {source.label}"


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
    info: dict[str, Any] = {"name": "MTCNN (engine.core.faces.detect)", "score_cutoff": SCORE_CUTOFF}
    try:
        folder = detect.weights_dir()
        info["weights"] = {"folder": str(folder), "sha256": _detector_hashes(folder)}
    except detect.FaceDetectorUnavailable:
        info["weights"] = None
    return info


@dataclass
class FaceLayer:
    """What one refined face adds to the photo, on the face's bounding box only (a face is small next
    to a big scan, so keeping a layer per face costs little): the blend weight is exactly 0 outside."""

    top: int
    left: int
    back: np.ndarray  # (h, w, 3) float64 0..255: the colour-matched face warped back
    weight: np.ndarray  # (h, w, 1) float64 0..1 (or (h, w, 3)): the eroded, blurred blend mask

    @property
    def bounds(self) -> tuple[int, int, int, int]:
        """(y0, y1, x0, x1) in photo pixels."""
        h, w = self.back.shape[:2]
        return self.top, self.top + h, self.left, self.left + w

    @property
    def nbytes(self) -> int:
        return self.back.nbytes + self.weight.nbytes


@dataclass
class FaceRegion:
    """A rectangle of the photo as it was before the face stage, covering one or more overlapping
    layers. Disjoint rectangles, not one around all faces: faces in opposite corners of a big scan
    must not cost a copy of the whole scan."""

    bounds: tuple[int, int, int, int]  # y0, y1, x0, x1
    base: np.ndarray  # float32 (y1 - y0, x1 - x0, 3)


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    return a[0] < b[1] and b[0] < a[1] and a[2] < b[3] and b[2] < a[3]


def merge_bounds(boxes: list[tuple[int, int, int, int]]) -> list[tuple[int, int, int, int]]:
    """Bounding rectangles of the groups of overlapping (y0, y1, x0, x1) boxes; the results are
    pairwise disjoint and every box lies inside exactly one of them."""
    merged = list(boxes)
    changed = True
    while changed:
        changed = False
        for i in range(len(merged)):
            for j in range(i + 1, len(merged)):
                a, b = merged[i], merged[j]
                if _overlap(a, b):
                    merged[i] = (min(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), max(a[3], b[3]))
                    del merged[j]
                    changed = True
                    break
            if changed:
                break
    return merged


@dataclass
class FaceRecord:
    """One detected face; ``index`` counts from 1 in the order the faces were found and blended."""

    index: int
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 in photo pixels
    score: float
    landmarks: np.ndarray  # (5, 2) x, y
    refined: bool = False
    error: str | None = None
    layer: FaceLayer | None = field(default=None, repr=False)  # None: not refined, or it changes no pixel

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
    # The photo before any face, under the layers: all ``compose`` needs besides the layers.
    regions: list[FaceRegion] = field(default_factory=list, repr=False)
    checkpoint: str | None = None  # what generated the faces (None: the official checkpoint of ``network``)

    @property
    def found(self) -> int:
        return len(self.faces)

    @property
    def refined(self) -> int:
        return sum(f.refined for f in self.faces)

    @property
    def refined_indices(self) -> set[int]:
        return {f.index for f in self.faces if f.refined}

    def compose(self, image: np.ndarray, enabled: set[int] | frozenset[int]) -> np.ndarray:
        """The photo with only the faces whose index is in ``enabled`` blended in, in the order found.

        ``image`` is this stage's output (only its pixels outside ``regions`` are used). Every face
        enabled gives that output exactly; none gives the photo as it was before the face stage.
        Returns a new float32 array.
        """
        out = np.array(image, dtype=np.float32, copy=True)
        self.compose_into(out, enabled)
        return out

    def compose_into(self, out: np.ndarray, enabled: set[int] | frozenset[int]) -> list[tuple[int, int, int, int]]:
        """``compose`` in place on ``out`` (a float32 copy of this stage's output), returning the
        rectangles (y0, y1, x0, x1) it rewrote: nothing else changes, so a viewer of a big scan
        only has to refresh those."""
        for region in self.regions:
            y0, y1, x0, x1 = region.bounds
            out[y0:y1, x0:x1] = self._compose_region(region, enabled)
        return [region.bounds for region in self.regions]

    def _compose_region(self, region: FaceRegion, enabled: set[int] | frozenset[int]) -> np.ndarray:
        """One region's pixels with its enabled layers blended in order, float32 (see ``compose``)."""
        ry0, _, rx0, _ = region.bounds
        work = region.base.astype(np.float64) * 255.0
        for record in self.faces:
            layer = record.layer
            if layer is None or record.index not in enabled or not _overlap(layer.bounds, region.bounds):
                continue
            y0, y1, x0, x1 = layer.bounds
            view = work[y0 - ry0:y1 - ry0, x0 - rx0:x1 - rx0]
            view[...] = align.blend_layer(layer.back, view, layer.weight) * 255.0
        return (work / 255.0).astype(np.float32)

    def describe(self) -> dict[str, Any]:
        return {"ran": True, "network": self.network, "checkpoint": self.checkpoint or _CHECKPOINT.get(self.network),
                "crop_size": self.size, "detector": detector_description(), "found": self.found,
                "refined": self.refined, "faces": [f.describe() for f in self.faces], "warnings": list(self.warnings)}


def refine_faces(image: np.ndarray, bank: ModelBank, network: str, progress: Progress | None = None,
                 detector: Detector | None = None) -> tuple[np.ndarray, FaceReport]:
    """Detect, restore and blend back every face of ``image`` (HxWx3 float in [0, 1]).

    Returns the new float32 image and the report (whose ``compose`` rebuilds the image with any
    subset of the faces). Raises FacesUnavailable when the detector or the generator cannot be
    loaded (the caller decides whether that is an error), Cancelled on cancel.
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
    report.checkpoint = generator_name(bank.source, network)
    for record in records:
        progress.report(0.1 + 0.9 * (record.index - 1) / len(records),
                        f"refining face {record.index} of {len(records)}")
        try:
            record.layer = _refine_one(net, bank.device, image_u8, record.landmarks, size)
            record.refined = True
        except Cancelled:
            raise
        except Exception as exc:  # noqa: BLE001 - one bad face must not cost the photo
            record.error = f"{type(exc).__name__}: {exc}"
            report.warnings.append(f"face {record.index}: not refined ({record.error})")
    progress.report(1.0, f"{report.refined} of {report.found} face(s) refined")
    layers = [r.layer for r in records if r.layer is not None]
    if not layers:
        report.seconds = time.perf_counter() - t0
        return image, report
    for y0, y1, x0, x1 in merge_bounds([layer.bounds for layer in layers]):
        report.regions.append(FaceRegion((y0, y1, x0, x1), np.array(image[y0:y1, x0:x1], dtype=np.float32)))
    out = report.compose(image, report.refined_indices)
    report.seconds = time.perf_counter() - t0
    return out, report


def _refine_one(net: torch.nn.Module, device: torch.device, image_u8: np.ndarray,
                landmarks: np.ndarray, size: int) -> FaceLayer | None:
    """Stages 2-4 for one face, kept as a layer on its bounding box (None: the face's blend weight
    is zero everywhere, e.g. a face almost entirely outside the photo)."""
    params = align.similarity_to_image(landmarks, size)
    crop = align.align_face(image_u8, params, size)
    with torch.inference_mode():
        generated = net(to_network(crop).to(device))
    restored = save_image_u8((generated + 1.0) / 2.0, normalize=False)
    _, _, back, bmask = align.warp_back(restored, params, size, image_u8=image_u8)
    weight = align.blend_weights(bmask)
    del bmask
    touched = weight.max(axis=2) > 0.0
    rows, cols = np.flatnonzero(touched.any(axis=1)), np.flatnonzero(touched.any(axis=0))
    if rows.size == 0:
        return None
    y0, y1, x0, x1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    weight = weight[y0:y1, x0:x1]
    # The mask is the same in every channel; one channel keeps the layer a third smaller.
    if np.array_equal(weight[..., :1], weight[..., 1:2]) and np.array_equal(weight[..., :1], weight[..., 2:3]):
        weight = weight[..., :1]
    return FaceLayer(y0, x0, np.ascontiguousarray(back[y0:y1, x0:x1]), np.ascontiguousarray(weight))
