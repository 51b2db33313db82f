"""The VAE generator of the paper (official class ``GlobalGenerator_DCDCv2``).

One architecture serves VAE_A (photos -> shared latent) and VAE_B (clean photos <-> clean latent);
inference uses the encoder of VAE_A and the decoder of VAE_B. Every layer has 64 channels and there
are only two stride-2 convolutions, so the latent is (N, 64, H/4, W/4) and H, W must be multiples of 4
(stated for padding and tiling in the registry's descriptor).
"""

from __future__ import annotations

import torch
from torch import nn

from engine.models.networks.blocks import ResnetBlock, instance_norm

CHANNELS = 64


class VAEGenerator(nn.Module):
    """``encoder``: (N,3,H,W) in [-1,1] -> (N,64,H/4,W/4); ``decoder``: back to (N,3,H,W) in (-1,1)."""

    def __init__(self, channels: int = CHANNELS) -> None:
        super().__init__()
        c = channels
        self.encoder = nn.Sequential(
            nn.ReflectionPad2d(3), nn.Conv2d(3, c, 7, padding=0), instance_norm(c), nn.ReLU(inplace=True),
            nn.Conv2d(c, c, 4, stride=2, padding=1), instance_norm(c), nn.ReLU(inplace=True),
            nn.Conv2d(c, c, 4, stride=2, padding=1), instance_norm(c), nn.ReLU(inplace=True),
            ResnetBlock(c), ResnetBlock(c), ResnetBlock(c), ResnetBlock(c),
        )
        self.decoder = nn.Sequential(
            ResnetBlock(c), ResnetBlock(c), ResnetBlock(c), ResnetBlock(c),
            nn.ConvTranspose2d(c, c, 4, stride=2, padding=1), instance_norm(c), nn.ReLU(inplace=True),
            nn.ConvTranspose2d(c, c, 4, stride=2, padding=1), instance_norm(c), nn.ReLU(inplace=True),
            nn.ReflectionPad2d(3), nn.Conv2d(c, 3, 7, padding=0), nn.Tanh(),
        )

    def encode(self, image: torch.Tensor) -> torch.Tensor:
        return self.encoder(image)

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        return self.decoder(latent)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(image))
