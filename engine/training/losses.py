"""Losses and discriminators for training.

No pretrained VGG exists offline, so the paper's perceptual term is replaced by the
discriminator feature-matching loss (L1 between the discriminator's intermediate features on
real and generated images), which pix2pixHD and the paper also use.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class PatchDiscriminator(nn.Module):
    """PatchGAN: strided convs with LeakyReLU; returns every intermediate feature map, last = logits."""

    def __init__(self, in_channels: int = 3, width: int = 32, layers: int = 3) -> None:
        super().__init__()
        blocks: list[nn.Module] = [nn.Sequential(nn.Conv2d(in_channels, width, 4, 2, 1), nn.LeakyReLU(0.2, True))]
        c = width
        for i in range(1, layers):
            nc = min(c * 2, 8 * width)
            blocks.append(nn.Sequential(nn.Conv2d(c, nc, 4, 2 if i < layers - 1 else 1, 1),
                                        nn.InstanceNorm2d(nc), nn.LeakyReLU(0.2, True)))
            c = nc
        blocks.append(nn.Conv2d(c, 1, 3, 1, 1))
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for block in self.blocks:
            x = block(x)
            feats.append(x)
        return feats


class LatentDiscriminator(nn.Module):
    """Tells the latent codes of real old photos (R) from synthetic ones (X): the paper's domain
    alignment, which makes the mapping learned on X apply to R."""

    def __init__(self, channels: int = 64, width: int = 64) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(channels, width, 3, 1, 1), nn.LeakyReLU(0.2, True),
            nn.Conv2d(width, width, 4, 2, 1), nn.LeakyReLU(0.2, True),
            nn.Conv2d(width, 1, 3, 1, 1),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


def lsgan(logits: torch.Tensor, target_real: bool) -> torch.Tensor:
    target = torch.ones_like(logits) if target_real else torch.zeros_like(logits)
    return F.mse_loss(logits, target)


def feature_matching(fake_feats: list[torch.Tensor], real_feats: list[torch.Tensor]) -> torch.Tensor:
    return sum(F.l1_loss(f, r.detach()) for f, r in zip(fake_feats[:-1], real_feats[:-1])) / max(len(fake_feats) - 1, 1)


def kl_to_unit(latent: torch.Tensor) -> torch.Tensor:
    """The VAE prior term with a fixed unit variance: mean squared latent (as the official code)."""
    return latent.pow(2).mean()


def focal_loss(logits: torch.Tensor, target: torch.Tensor, gamma: float = 2.0, alpha: float = 0.75) -> torch.Tensor:
    """Binary focal loss: down-weights easy pixels, so thin rare scratches are not drowned out."""
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    p = torch.sigmoid(logits)
    pt = p * target + (1 - p) * (1 - target)
    weight = alpha * target + (1 - alpha) * (1 - target)
    return (weight * (1 - pt).pow(gamma) * bce).mean()
