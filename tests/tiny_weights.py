"""Tiny, randomly initialised weights (the ``tiny`` training configuration) and small labelled
photos, for fine-tuning and profile tests: built in well under a second."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

from engine.models.registry import BY_NAME
from engine.training.config import CONFIGS
from engine.training.loop import export_weights

TINY_NETWORKS = ("VAE_A_quality", "VAE_B_quality", "VAE_B_scratch", "mapping_quality", "mapping_scratch", "detector")


def make_tiny_weights(dest: Path, seed: int = 0, output_tone: str | None = None) -> Path:
    """A complete lite-style weights folder (safetensors + model.json card) with tiny networks;
    ``output_tone="model"`` makes them behave like official weights (no tone anchoring)."""
    config = CONFIGS["tiny"]
    kwargs = config.arch.network_kwargs()
    torch.manual_seed(seed)
    parts = {name: BY_NAME[name].build(**kwargs[name]).state_dict() for name in TINY_NETWORKS}
    export_weights(parts, dest, {"name": f"tiny-{seed}", "config": config.to_json(), "output_tone": output_tone or config.output_tone,
                                 "networks": {name: kwargs[name] for name in TINY_NETWORKS}})
    return dest


def make_labelled_photos(images: Path, masks: Path, count: int = 3, size: tuple[int, int] = (96, 128),
                         seed: int = 0) -> None:
    """Smooth 'photos' with light scratches drawn on them, and masks of exactly those scratches."""
    images.mkdir(parents=True, exist_ok=True)
    masks.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    h, w = size
    for i in range(count):
        yy, xx = np.mgrid[0:h, 0:w] / w
        img = np.stack([np.sin(xx * (i + 2)), np.cos(yy * (i + 3)), xx * yy], axis=2) * 0.3 + 0.5
        img = (np.clip(img + rng.normal(0, 0.02, img.shape), 0, 1) * 255).astype(np.uint8)
        mask = np.zeros((h, w), np.uint8)
        for _ in range(3):
            (x0, x1), (y0, y1) = rng.integers(0, w, 2), rng.integers(0, h, 2)
            cv2.line(mask, (int(x0), int(y0)), (int(x1), int(y1)), 255, 2)
        img[mask > 0] = 235
        Image.fromarray(img).save(images / f"photo{i}.png")
        Image.fromarray(mask).save(masks / f"photo{i}.png")


def make_photos(folder: Path, count: int = 4, size: tuple[int, int] = (80, 96), old: bool = False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1 if old else 2)
    h, w = size
    for i in range(count):
        yy, xx = np.mgrid[0:h, 0:w] / w
        img = np.stack([np.sin(xx * (i + 2)), np.cos(yy * (i + 3)), xx * yy], axis=2) * 0.4 + 0.5
        img = img + rng.normal(0, 0.03, img.shape)
        if old:
            img = img.mean(axis=2, keepdims=True) * np.array([1.0, 0.9, 0.7])
        Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8)).save(folder / f"{i:02d}.png")
    return folder


def make_training_photos(base: Path, count: int = 12, size: tuple[int, int] = (80, 96)) -> tuple[Path, Path]:
    """``base/clean`` and ``base/old``: small generated 'clean' photos and faded 'old' ones for the
    training stages (fast to load; every tenth is held out, so twelve leave some to train on)."""
    rng = np.random.default_rng(0)
    h, w = size
    for kind in ("clean", "old"):
        (base / kind).mkdir(parents=True)
        for i in range(count):
            yy, xx = np.mgrid[0:h, 0:w] / w
            img = np.stack([np.sin(xx * (i + 2)), np.cos(yy * (i + 3)), xx * yy], axis=2) * 0.4 + 0.5
            img = img + rng.normal(0, 0.03, img.shape)
            if kind == "old":
                img = img.mean(axis=2, keepdims=True) * np.array([1.0, 0.9, 0.7])
            Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8)).save(base / kind / f"{i:02d}.png")
    return base / "clean", base / "old"
