"""Global restoration in latent space: VAE_A encoder -> mapping -> VAE_B decoder.

Shared by Heirloom's pipeline and by the official-compatible stage-1 path, so both run
exactly the same network code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum
from fractions import Fraction
from functools import partial

import torch

from engine.core.tiling import TiledRunner, TileSpec
from engine.models.checkpoints import ModelBank
from engine.models.networks.partial_nonlocal import AttentionRows
from engine.models.registry import BY_NAME
from engine.progress import Progress


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

MIN_LATENT_TILE = 8  # latent cells: smaller mapping and decoder tiles would be mostly halo


def input_scales(mode: Mode) -> tuple[Fraction, ...]:
    """Input cells per image pixel of each network of ``mode``'s chain (encoder 1, then the latent's
    1/4), from the networks' output scales."""
    scales, scale = [], Fraction(1)
    for name in NETWORKS[mode]:
        scales.append(scale)
        scale *= Fraction(BY_NAME[name].traits.out_scale)
    return tuple(scales)


def spatial_multiple(mode: Mode) -> int:
    """The multiple the image's height and width must have for ``mode``: every network's own multiple,
    in image pixels (HR: 32, because the latent, 1/4 of the image, must hold whole 8x8 patches)."""
    scales = input_scales(mode)
    return math.lcm(*(int(BY_NAME[name].traits.spatial_multiple / scale) for name, scale in zip(NETWORKS[mode], scales)))


@dataclass
class Translation:
    latent: torch.Tensor
    mapped: torch.Tensor
    generated: torch.Tensor


def autocast(device: torch.device, dtype: torch.dtype | None):
    """Reduced-precision context for the networks (a no-op for exact float32)."""
    return torch.autocast(device_type=device.type, dtype=dtype or torch.float32, enabled=dtype is not None)


def translate(bank: ModelBank, image: torch.Tensor, mask: torch.Tensor | None, mode: Mode,
              progress: Progress | None = None, keep_intermediates: bool = False,
              precision: torch.dtype | None = None, attention_rows: AttentionRows = "all") -> Translation:
    """image (1,3,H,W) in [-1,1], mask (1,1,H,W) 0/1 (1 = hole; required for scratch/HR modes).

    Returns the decoder output in (-1,1). Without ``keep_intermediates`` the latent and mapped
    tensors are dropped as soon as possible (only ``generated`` is filled) to save memory.
    Cancellation is checked between networks and inside the attention loops. ``attention_rows``:
    which rows of a partial non-local block are exact (engine.core.plan decides).
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
    with torch.inference_mode(), autocast(device, precision):
        latent = encoder.encode(image)
        progress.report(0.15, "mapping to the clean latent space")
        mapping_progress = progress.sub(0.15, 0.7)
        mapped = mapping(latent, mask, step_hook=lambda f: mapping_progress.report(f), rows=attention_rows)
        if not keep_intermediates:
            del latent
            latent = torch.empty(0)
        progress.report(0.85, "decoding")
        generated = decoder.decode(mapped).float()
        if not keep_intermediates:
            mapped = torch.empty(0)
    progress.report(1.0)
    return Translation(latent, mapped, generated)


def latent_channels(bank: ModelBank, mode: Mode) -> int:
    """Channels of the latent map the mapping network translates (64, the official width, for a
    network without convolutions, such as a test stand-in)."""
    mapping = bank.get(NETWORKS[mode][1])
    return next((m.in_channels for m in mapping.modules() if isinstance(m, torch.nn.Conv2d)), 64)


def _widest(module: torch.nn.Module) -> int:
    return max((m.out_channels for m in module.modules() if isinstance(m, torch.nn.Conv2d)), default=64)


def tile_specs(bank: ModelBank, mode: Mode, tile: int,
               attention_window: int | None = None) -> tuple[TileSpec, TileSpec, TileSpec]:
    """Encoder, mapping and decoder tiling for an image tile of ``tile`` pixels.

    Halos, feathers and memory factors come from each network's descriptor (engine.models.registry):
    with shared normalisation statistics a tile's core equals the untiled result; only the attention
    of the scratch mapping is limited to the tile's window. ``attention_window`` (latent cells) caps
    the mapping's window (core + 2 halos) for bounded attention cost on very large photos
    (engine.core.plan.attention_window). Every tile starts on the chain's spatial multiple, so HR tiles
    hold whole 8x8 attention patches.
    """
    encoder, mapping, decoder = (BY_NAME[name].traits for name in NETWORKS[mode])
    enc_scale, map_scale, dec_scale = input_scales(mode)
    enc_align, map_align, dec_align = (int(spatial_multiple(mode) * scale) for scale in (enc_scale, map_scale, dec_scale))
    map_tile = max(MIN_LATENT_TILE, int(tile * map_scale))
    if attention_window is not None:
        map_tile = min(map_tile, max(MIN_LATENT_TILE, attention_window - 2 * mapping.halo))
    dec_tile = max(MIN_LATENT_TILE, int(tile * dec_scale))
    enc_c, map_c, dec_c = (_widest(bank.get(name)) for name in NETWORKS[mode])
    attention = max((getattr(m, "attention_bytes", 0) for m in bank.get(NETWORKS[mode][1]).modules()), default=0)
    return (
        TileSpec.for_network(encoder, int(tile * enc_scale), enc_align, enc_c),
        TileSpec.for_network(mapping, map_tile, map_align, map_c,
                             attention_bytes=attention / 3),  # partial_attention's one rows x N block per chunk
        TileSpec.for_network(decoder, dec_tile, dec_align, dec_c),
    )


def translate_tiled(bank: ModelBank, image: torch.Tensor, mask: torch.Tensor | None, mode: Mode, tile: int,
                    budget_bytes: int | None = None, progress: Progress | None = None,
                    max_first_batch: int = 64, precision: torch.dtype | None = None,
                    attention_window: int | None = None,
                    attention_rows: AttentionRows = "all") -> tuple[torch.Tensor, dict]:
    """Like ``translate`` but tile by tile (see ``engine.core.tiling``); image and mask stay on the CPU
    and only tiles move to the device. Returns the decoder output and tiling facts."""
    progress = progress or Progress()
    enc_name, map_name, dec_name = NETWORKS[mode]
    encoder, mapping, decoder = bank.get(enc_name), bank.get(map_name), bank.get(dec_name)
    device = next(encoder.parameters()).device
    enc_spec, map_spec, dec_spec = tile_specs(bank, mode, tile, attention_window)
    def reduced(fn):
        def run(*args):
            with autocast(device, precision):
                return fn(*args)
        return run

    runners = [TiledRunner(reduced(encoder.encode), encoder, enc_spec, device, budget_bytes, max_first_batch),
               TiledRunner(reduced(partial(mapping, rows=attention_rows)), mapping, map_spec, device, budget_bytes,
                           max_first_batch),
               TiledRunner(reduced(decoder.decode), decoder, dec_spec, device, budget_bytes, max_first_batch)]
    progress.report(0.0, "encoding (tiled)")
    latent = runners[0].run(image.cpu(), progress=progress.sub(0.0, 0.15))
    progress.report(0.15, "mapping to the clean latent space (tiled)")
    aux = [(mask.cpu(), 4.0)] if mode.uses_mask else []
    mapped = runners[1].run(latent, aux, progress=progress.sub(0.15, 0.7))
    del latent
    progress.report(0.85, "decoding (tiled)")
    generated = runners[2].run(mapped, progress=progress.sub(0.85, 0.15))
    progress.report(1.0)
    facts = {"tile": tile, "attention_window": attention_window, "tile_shrinks": sum(r.shrinks for r in runners),
             "final_tiles": [r.spec.tile for r in runners]}
    return generated, facts
