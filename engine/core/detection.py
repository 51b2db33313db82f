"""Scratch detection with the U-Net: photo -> probability that each pixel is structured damage."""

from __future__ import annotations

from typing import Literal

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from engine.core.tiling import TiledRunner, TileSpec
from engine.io.pixels import LUMA
from engine.models.checkpoints import ModelBank
from engine.models.registry import BY_NAME
from engine.progress import Progress

OFFICIAL_SHORT_SIDE = 256
OFFICIAL_THRESHOLD = 0.4
DETECTOR_MULTIPLE = BY_NAME["detector"].traits.spatial_multiple  # 16: four stride-2 downsamplings
MIN_DETECTION_SHORT_SIDE = 64

NO_DETECTION = "off"  # the mask given is final: no detector runs (a reviewed mask, HR from the GUI)
DetectionScale = int | Literal["official", "full", "auto", "off"]
# "auto": the photo's own resolution, shrunk to this short side when larger. Measured on the real-damage
# set (bench/eval_detection.py, docs/benchmarks/detection-scale.md): the default weights find real damage
# best at the photo's own resolution (the set's photos have short sides up to 1245 px); larger scans are
# shrunk to 1536 px so detection time stays bounded (and the detector tiles above 1 MP, as for "full").
AUTO_MAX_SHORT_SIDE = 1536


def parse_detection_scale(value: str | int) -> DetectionScale:
    """The one reading of a detection scale (CLI, options, benchmarks, weights' cards): ``official``,
    ``full``, ``auto`` (full up to AUTO_MAX_SHORT_SIDE), ``off`` or a short side in pixels that the detector can take (a multiple of its spatial multiple, at least
    MIN_DETECTION_SHORT_SIDE). Raises ValueError saying what is accepted."""
    text = str(value).strip().lower()
    if text in ("official", "full", "auto", NO_DETECTION):
        return text
    if text.isdigit() and int(text) >= MIN_DETECTION_SHORT_SIDE and int(text) % DETECTOR_MULTIPLE == 0:
        return int(text)
    raise ValueError(f"the detection scale must be official, full, auto, off or a short side in pixels that is a multiple of "
                     f"{DETECTOR_MULTIPLE} (at least {MIN_DETECTION_SHORT_SIDE}), not {value!r}")


def network_size(h: int, w: int, short_side: int = OFFICIAL_SHORT_SIDE) -> tuple[int, int]:
    """Official rule: the short side becomes ``short_side``, the long side
    ``int(round(long/short*short_side/16)*16)`` (Python rounding, ties to even)."""
    if h < w:
        return short_side, int(round(w / h * short_side / DETECTOR_MULTIPLE) * DETECTOR_MULTIPLE)
    return int(round(h / w * short_side / DETECTOR_MULTIPLE) * DETECTOR_MULTIPLE), short_side


# Above this many network pixels the detector runs tile by tile (BatchNorm with stored statistics:
# tiles need no shared statistics, only the descriptor's halo covering the U-Net's receptive field).
UNTILED_DETECTOR_PIXELS = 1024 * 1024
DETECTOR_TILE = 512


def run_detector(bank: ModelBank, grey: torch.Tensor, size: tuple[int, int], antialias: bool) -> torch.Tensor:
    """grey (1,1,h,w) in [-1,1] -> logits at ``size`` (multiples of 16), tiled when large."""
    unet = bank.get("detector")
    device = next(unet.parameters()).device
    with torch.inference_mode():
        scaled = F.interpolate(grey, size=size, mode="bilinear", align_corners=False, antialias=antialias)
        if size[0] * size[1] <= UNTILED_DETECTOR_PIXELS:
            return unet(scaled.to(device))
    spec = TileSpec.for_network(BY_NAME["detector"].traits, DETECTOR_TILE, align=DETECTOR_MULTIPLE)
    return TiledRunner(unet, unet, spec, device, max_first_batch=1).run(scaled)


def weights_detection_scale(bank: ModelBank) -> DetectionScale:
    """The scale the weights' card asks for (``official`` without one); a bad card value fails here."""
    try:
        return parse_detection_scale(bank.source.detection_scale())
    except ValueError as exc:
        raise ValueError(f"{bank.source.label}: its model card's detection_scale is not usable: {exc}") from None


def resolve_detection_scale(bank: ModelBank, scale: str | int | None) -> DetectionScale:
    """``scale`` as parsed, or the weights' own when None (RestoreOptions' default)."""
    return weights_detection_scale(bank) if scale is None else parse_detection_scale(scale)


def detection_short_side(scale: str | int, h: int, w: int) -> int:
    """``"official"`` (256 px, what the official code always does), ``"full"`` (the photo's own
    resolution: finds hairline scratches on big scans), ``"auto"`` (the photo's own resolution up to
    AUTO_MAX_SHORT_SIDE, never enlarged) or an explicit short side in pixels."""
    scale = parse_detection_scale(scale)
    if scale == "official":
        return OFFICIAL_SHORT_SIDE
    if scale in ("full", "auto"):
        short = min(h, w) if scale == "full" else min(h, w, AUTO_MAX_SHORT_SIDE)
        return max(DETECTOR_MULTIPLE, round(short / DETECTOR_MULTIPLE) * DETECTOR_MULTIPLE)
    return scale


def detect_scratches(bank: ModelBank, image: np.ndarray, short_side: int = OFFICIAL_SHORT_SIDE,
                     progress: Progress | None = None) -> np.ndarray:
    """image HxWx3 float32 in [0,1] -> HxW float32 probability, pixel-aligned with the photo.

    Unlike the official code we do not resize the photo to a multiple of 16 first: the detector
    input is resampled straight from the photo (with antialiasing when shrinking) and the
    probabilities are resampled straight back to the photo's own grid, so mask pixel (y, x) is
    photo pixel (y, x).
    """
    progress = progress or Progress()
    progress.report(0.0, "detecting scratches")
    h, w = image.shape[:2]
    grey = (image[..., 0] * LUMA[0] + image[..., 1] * LUMA[1] + image[..., 2] * LUMA[2]).astype(np.float32)
    x = torch.from_numpy(grey)[None, None] * 2.0 - 1.0
    size = network_size(h, w, short_side)
    logits = run_detector(bank, x, size, antialias=size[0] < h or size[1] < w)
    progress.check()
    with torch.inference_mode():
        prob = torch.sigmoid(F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=False))
    progress.report(1.0)
    return prob[0, 0].cpu().numpy()


def scratch_probability(bank: ModelBank, image: np.ndarray, scale: str | int | None = None,
                        progress: Progress | None = None) -> np.ndarray:
    """HxWx3 uint8 / uint16 / float photo -> HxW float32 damage probability in [0, 1], at ``scale``
    (None: the weights' own, :func:`weights_detection_scale`).

    The expensive half of detection, kept apart so an interactive view can run it once and then
    re-threshold with :func:`mask_from_probability` as often as a slider moves.
    """
    if image.ndim != 3 or image.shape[2] < 3:
        raise ValueError(f"expected an HxWx3 photo, got shape {image.shape}")
    if image.dtype == np.uint8:
        rgb = image[..., :3].astype(np.float32) / 255.0
    elif image.dtype == np.uint16:
        rgb = image[..., :3].astype(np.float32) / 65535.0
    else:
        rgb = np.clip(image[..., :3].astype(np.float32), 0.0, 1.0)
    h, w = rgb.shape[:2]
    return detect_scratches(bank, rgb, detection_short_side(resolve_detection_scale(bank, scale), h, w), progress)


def mask_from_probability(probability: np.ndarray, threshold: float = OFFICIAL_THRESHOLD,
                          dilation: int = 0) -> np.ndarray:
    """HxW probability -> HxW bool damage mask: ``probability >= threshold`` grown by ``dilation``
    3x3 dilations, exactly the rule :class:`engine.core.pipeline.Restorer` applies to detected holes.
    Cheap (milliseconds on a scan), so a threshold or dilation slider can call it on every move."""
    mask = np.asarray(probability) >= threshold
    if dilation > 0 and mask.any():
        mask = cv2.dilate(mask.astype(np.uint8), np.ones((3, 3), np.uint8), iterations=int(dilation)).astype(bool)
    return mask
