"""Full-resolution refinement after the latent chain (Heirloom's own; the official path has none).

Why: the latent chain works at a quarter of the photo's resolution through narrow VAEs, so what it
returns is soft: where nothing is damaged it loses grain-free detail the photo still has, and where
the detector missed a crack it paints the crack back. The refinement sees, at the photo's own
resolution, the photo (holes filled white, as the chain saw it), the chain's tone-anchored output
and the hole mask, and predicts two things: a per-pixel *blend* (how much of the chain to take
over the photo; 1 inside the holes, where the photo has nothing) and a residual on that blend. It
starts as the blend the lite weights shipped with before (``START_BLEND`` of the chain, the holes
filled, no residual), so a short run starts from a known output; what it learns is where to trust
the chain (grain, blur, and the damage no mask marked), where to keep the photo's detail, and
what neither has.

No normalisation layers: every output pixel depends only on a fixed neighbourhood (radius
the registry's halo), so tiles with that much context equal the untiled result exactly.
Shape: a small U-Net, two stride-2 steps, the residual blocks at a quarter of the resolution
(where the receptive field is cheap), ~15 k multiply-adds per pixel at width 16.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

START_BLEND = 0.4  # the lite weights' fitted fixed strength before the refinement existed


def _act() -> nn.LeakyReLU:
    return nn.LeakyReLU(0.2, inplace=True)


class _Residual(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), _act(),
                                  nn.Conv2d(channels, channels, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class RefineNet(nn.Module):
    """(photo, restored, holes) -> refined, each (N,C,H,W): photo and restored 3 channels in [-1, 1],
    holes 1 channel, 1 = hole. H and W must be multiples of the two strides' 4 (the registry's
    traits say so; ``engine.core.refinement`` pads to them)."""

    def __init__(self, width: int = 16, blocks: int = 3) -> None:
        super().__init__()
        w1, w2, w3 = width, 2 * width, 3 * width
        self.head = nn.Sequential(nn.Conv2d(7, w1, 3, padding=1), _act())
        self.down1 = nn.Sequential(nn.Conv2d(w1, w2, 3, stride=2, padding=1), _act())
        self.down2 = nn.Sequential(nn.Conv2d(w2, w3, 3, stride=2, padding=1), _act())
        self.body = nn.Sequential(*[_Residual(w3) for _ in range(blocks)])
        self.up2 = nn.Conv2d(w3, w2, 1)
        self.fuse2 = nn.Sequential(nn.Conv2d(w2, w2, 3, padding=1), _act())
        self.up1 = nn.Conv2d(w2, w1, 1)
        self.fuse1 = nn.Sequential(nn.Conv2d(w1, w1, 3, padding=1), _act())
        self.tail = nn.Conv2d(w1, 4, 3, padding=1)  # a residual (3) and the blend's logit (1)
        nn.init.zeros_(self.tail.weight)  # starts as the fixed blend: training moves away from a known output
        nn.init.zeros_(self.tail.bias)
        nn.init.constant_(self.tail.bias[3:], math.log(START_BLEND / (1 - START_BLEND)))

    @staticmethod
    def blend(photo: torch.Tensor, restored: torch.Tensor, holes: torch.Tensor,
              share: torch.Tensor | float = START_BLEND) -> torch.Tensor:
        """``share`` of the restoration over the photo, all of it in the holes."""
        holes = holes.to(photo.dtype)
        return torch.lerp(photo, restored, holes + (1 - holes) * share)

    def forward(self, photo: torch.Tensor, restored: torch.Tensor, holes: torch.Tensor) -> torch.Tensor:
        holes = holes.to(photo.dtype)
        full = self.head(torch.cat([photo, restored, holes], 1))
        half = self.down1(full)
        quarter = self.body(self.down2(half))
        half = self.fuse2(half + F.interpolate(self.up2(quarter), scale_factor=2, mode="bilinear", align_corners=False))
        full = self.fuse1(full + F.interpolate(self.up1(half), scale_factor=2, mode="bilinear", align_corners=False))
        out = self.tail(full)
        return self.blend(photo, restored, holes, torch.sigmoid(out[:, 3:])) + out[:, :3]
