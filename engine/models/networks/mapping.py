"""Latent mapping networks: translate the old-photo latent (VAE_A) into the clean latent (VAE_B).

* ``QualityMapping``    official ``Mapping_Model`` (unstructured damage only);
* ``ScratchMapping``    official ``Mapping_Model_with_mask``: global branch = partial non-local block;
* ``PatchAttentionMapping`` official ``Mapping_Model_with_mask_2`` (``--HR``): three patch-attention scales.
"""

from __future__ import annotations

import torch
from torch import nn

from engine.models.networks.blocks import (
    mapping_decoder_layers,
    mapping_encoder_layers,
    resnet_blocks,
)
from engine.models.networks.partial_nonlocal import AttentionRows, PartialNonLocalBlock, StepHook
from engine.models.networks.patch_attention import PatchAttention

WIDTH = 512
LATENT = 64  # channels of the VAE latent


class QualityMapping(nn.Module):
    """(N,64,h,w) -> (N,64,h,w); fully convolutional, any h, w."""

    def __init__(self, width: int = WIDTH, blocks: int = 6, latent: int = LATENT) -> None:
        super().__init__()
        self.model = nn.Sequential(*mapping_encoder_layers(latent, width), *resnet_blocks(width, blocks),
                                   *mapping_decoder_layers(width, latent))

    def forward(self, latent: torch.Tensor, mask: torch.Tensor | None = None, step_hook: StepHook | None = None,
                rows: AttentionRows = "all") -> torch.Tensor:
        return self.model(latent)


class ScratchMapping(nn.Module):
    """Latent + full-resolution hole mask (N,1,H,W), 1 = hole -> mapped latent."""

    def __init__(self, width: int = WIDTH, blocks: int = 6, nl_blocks: int = 3, latent: int = LATENT) -> None:
        super().__init__()
        self.before_NL = nn.Sequential(*mapping_encoder_layers(latent, width))
        self.NL = PartialNonLocalBlock(width, nl_blocks)
        self.after_NL = nn.Sequential(*resnet_blocks(width, blocks), *mapping_decoder_layers(width, latent))

    def forward(self, latent: torch.Tensor, mask: torch.Tensor, step_hook: StepHook | None = None,
                rows: AttentionRows = "all") -> torch.Tensor:
        """``rows``: which attention rows are exact (engine.models.networks.partial_nonlocal)."""
        return self.after_NL(self.NL(self.before_NL(latent), mask, step_hook, rows))


class PatchAttentionMapping(nn.Module):
    """Latent + hole mask -> mapped latent, with patch attention at patch sizes 8, 4 and 2."""

    PATCH_SIZES = (8, 4, 2)

    def __init__(self, width: int = WIDTH, latent: int = LATENT) -> None:
        super().__init__()
        self.before_NL = nn.Sequential(*mapping_encoder_layers(latent, width), *resnet_blocks(width, 2))
        self.NL_scale_1 = PatchAttention(8, width)
        self.res_block_1 = nn.Sequential(*resnet_blocks(width, 2))
        self.NL_scale_2 = PatchAttention(4, width)
        self.res_block_2 = nn.Sequential(*resnet_blocks(width, 2))
        self.NL_scale_3 = PatchAttention(2, width)
        self.after_NL = nn.Sequential(*resnet_blocks(width, 2), *mapping_decoder_layers(width, latent))

    def forward(self, latent: torch.Tensor, mask: torch.Tensor, step_hook: StepHook | None = None,
                rows: AttentionRows = "all") -> torch.Tensor:
        """``rows`` is accepted for a common signature; patch attention only ever compares hole patches."""
        x = self.before_NL(latent)
        stages = [(self.NL_scale_1, self.res_block_1), (self.NL_scale_2, self.res_block_2), (self.NL_scale_3, None)]
        for i, (attention, blocks) in enumerate(stages):
            x = attention(x, mask)
            if blocks is not None:
                x = blocks(x)
            if step_hook is not None:
                step_hook((i + 1) / len(stages))
        return self.after_NL(x)
