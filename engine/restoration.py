"""Global restoration in latent space: VAE_A encoder -> mapping -> VAE_B decoder.

Shared by Heirloom's pipeline and by the official-compatible stage-1 path, so both run
exactly the same network code.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import torch

from .models.checkpoints import ModelBank
from .progress import Progress


class Mode(str, Enum):
    QUALITY = "quality"  # unstructured damage only (no mask)
    SCRATCH = "scratch"  # with hole mask, partial non-local block
    HR = "hr"  # with hole mask, multi-scale patch attention (official --HR)

    @property
    def uses_mask(self) -> bool:
        return self is not Mode.QUALITY


NETWORKS: dict[Mode, tuple[str, str, str]] = {
    Mode.QUALITY: ("VAE_A_quality", "mapping_quality", "VAE_B_quality"),
    Mode.SCRATCH: ("VAE_A_quality", "mapping_scratch", "VAE_B_scratch"),
    Mode.HR: ("VAE_A_quality", "mapping_Patch_Attention", "VAE_B_scratch"),
}

# Each network needs its input size to be a multiple of this (HR: the latent, 1/4 of the image,
# must hold whole 8x8 patches so no border falls outside the patch grid).
SPATIAL_MULTIPLE: dict[Mode, int] = {Mode.QUALITY: 4, Mode.SCRATCH: 4, Mode.HR: 32}


@dataclass
class Translation:
    latent: torch.Tensor
    mapped: torch.Tensor
    generated: torch.Tensor


def translate(bank: ModelBank, image: torch.Tensor, mask: torch.Tensor | None, mode: Mode,
              progress: Progress | None = None, keep_intermediates: bool = False) -> Translation:
    """image (1,3,H,W) in [-1,1], mask (1,1,H,W) 0/1 (1 = hole; required for scratch/HR modes).

    Returns the decoder output in (-1,1). Without ``keep_intermediates`` the latent and mapped
    tensors are dropped as soon as possible (only ``generated`` is filled) to save memory.
    Cancellation is checked between networks and inside the attention loops.
    """
    progress = progress or Progress()
    enc_name, map_name, dec_name = NETWORKS[mode]
    if mode.uses_mask and mask is None:
        raise ValueError(f"{mode.value} mode needs a hole mask")
    encoder, mapping, decoder = bank.get(enc_name), bank.get(map_name), bank.get(dec_name)
    device = next(encoder.parameters()).device
    image = image.to(device)
    mask = mask.to(device) if mask is not None else None
    progress.report(0.0, "encoding")
    with torch.inference_mode():
        latent = encoder.encode(image)
        progress.report(0.15, "mapping to the clean latent space")
        mapping_progress = progress.sub(0.15, 0.7)
        mapped = mapping(latent, mask, step_hook=lambda f: mapping_progress.report(f))
        if not keep_intermediates:
            del latent
            latent = torch.empty(0)
        progress.report(0.85, "decoding")
        generated = decoder.decode(mapped)
        if not keep_intermediates:
            mapped = torch.empty(0)
    progress.report(1.0)
    return Translation(latent, mapped, generated)
