"""The official stage 1, number for number (OFFICIAL_PIPELINE.md §3-4).

Heirloom's own pipeline (``engine.core.pipeline``) deliberately differs where the official code harms
the photo (it resizes to multiples of 4/16 and min-max stretches the contrast). This module keeps
the official behaviour available, with the same networks, so that results can be compared with
the official release and the golden files bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from engine.core.detection import OFFICIAL_THRESHOLD, network_size, run_detector
from engine.core.translation import Mode, translate
from engine.models.checkpoints import ModelBank

HR_MASK_DILATION = 3


def round_to_multiple(n: int, k: int) -> int:
    """``int(round(n/k)*k)`` with Python's ties-to-even rounding, as the official scripts do."""
    return int(round(n / k) * k)


def resize_to_multiple(rgb_u8: np.ndarray, k: int, resample: Image.Resampling) -> np.ndarray:
    h, w = rgb_u8.shape[:2]
    nh, nw = round_to_multiple(h, k), round_to_multiple(w, k)
    if (nh, nw) == (h, w):
        return rgb_u8
    return np.asarray(Image.fromarray(rgb_u8).resize((nw, nh), resample))


def to_network(u8: np.ndarray) -> torch.Tensor:
    """HxW or HxWxC uint8 -> (1,C,H,W) float32: ToTensor then Normalize(0.5, 0.5)."""
    t = torch.from_numpy(np.array(u8, copy=True))
    t = t[None] if t.ndim == 2 else t.permute(2, 0, 1)
    return ((t.float().div(255) - 0.5) / 0.5)[None]


def pil_grey(rgb_u8: np.ndarray) -> np.ndarray:
    return np.asarray(Image.fromarray(rgb_u8).convert("L"))


def save_image_u8(t: torch.Tensor, normalize: bool) -> np.ndarray:
    """torchvision ``save_image`` of one (1,C,H,W) tensor: min-max stretch if ``normalize``,
    ``floor(255 v + 0.5)`` clamped; returns HxWx3 (C=3) or HxW (C=1) uint8."""
    t = t[0].detach().float().cpu().clone()
    if normalize:
        lo, hi = float(t.min()), float(t.max())
        t = t.clamp_(lo, hi).sub_(lo).div_(max(hi - lo, 1e-5))
    u8 = t.mul(255).add_(0.5).clamp_(0, 255).to(torch.uint8)
    return u8[0].numpy() if u8.shape[0] == 1 else u8.permute(1, 2, 0).numpy()


def dilate(mask_u8: np.ndarray, iterations: int) -> np.ndarray:
    if iterations <= 0:
        return mask_u8
    return cv2.dilate(mask_u8, np.ones((3, 3), np.uint8), iterations=iterations)


def fill_holes(rgb_u8: np.ndarray, mask_u8: np.ndarray) -> np.ndarray:
    """``uint8(img*(1 - m/255) + (m/255)*255)``: masked pixels become white."""
    m = (mask_u8.astype(np.float64) / 255.0)[..., None]
    return (rgb_u8 * (1 - m) + m * 255).astype(np.uint8)


@dataclass
class OfficialDetection:
    transformed_u8: np.ndarray
    gray_u8: np.ndarray
    input: torch.Tensor
    scaled_input: torch.Tensor
    logits: torch.Tensor
    prob_full: torch.Tensor
    mask_u8: np.ndarray  # 0/255, as the official PNG


def detect(bank: ModelBank, raw_u8: np.ndarray) -> OfficialDetection:
    """``detection.py --input_size full_size`` on one RGB image."""
    transformed = resize_to_multiple(raw_u8, 16, Image.Resampling.BICUBIC)
    grey = pil_grey(transformed)
    x = to_network(grey)
    h, w = grey.shape
    size = network_size(h, w)
    logits = run_detector(bank, x, size, antialias=False)
    with torch.inference_mode():
        scaled = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        prob = F.interpolate(torch.sigmoid(logits), size=(h, w), mode="nearest")
        mask = (prob >= OFFICIAL_THRESHOLD).float()
    return OfficialDetection(transformed, grey, x, scaled, logits, prob, save_image_u8(mask, normalize=True))


@dataclass
class OfficialRestoration:
    input_u8: np.ndarray  # what entered the network (resized, or hole-filled)
    input: torch.Tensor
    latent: torch.Tensor
    mapped: torch.Tensor
    generated: torch.Tensor
    restored_u8: np.ndarray
    mask_dilated_u8: np.ndarray | None = None
    mask: torch.Tensor | None = None


def restore(bank: ModelBank, image_u8: np.ndarray, mode: Mode, mask_u8: np.ndarray | None = None) -> OfficialRestoration:
    """``test.py`` stage 1: Full/Quality_restore, or Scratch_and_Quality_restore [--HR] with a 0/255 mask."""
    if mode is Mode.QUALITY:
        prepared = resize_to_multiple(image_u8, 4, Image.Resampling.BILINEAR)
        x = to_network(prepared)
        out = translate(bank, x, None, mode, keep_intermediates=True)
        return OfficialRestoration(prepared, x, out.latent, out.mapped, out.generated,
                                   save_image_u8((out.generated + 1) / 2, normalize=True))
    if mask_u8 is None:
        raise ValueError("scratch restoration needs a mask")
    dilated = dilate(mask_u8, HR_MASK_DILATION if mode is Mode.HR else 0)
    holes = fill_holes(image_u8, dilated)
    x = to_network(holes)
    mask = torch.from_numpy(np.ascontiguousarray(dilated)).float().div(255)[None, None]  # ToTensor: 0..1
    out = translate(bank, x, mask, mode, keep_intermediates=True)
    return OfficialRestoration(holes, x, out.latent, out.mapped, out.generated,
                               save_image_u8((out.generated + 1) / 2, normalize=True), dilated, mask)
