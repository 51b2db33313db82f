"""Building blocks shared by the Global restoration networks.

Module positions inside every ``nn.Sequential`` reproduce the official state-dict indices, so an
official checkpoint loads strictly. Parameter-free layers (padding, InstanceNorm, ReLU) occupy
their own index exactly as they do there (see OFFICIAL_PIPELINE.md §5).
"""

from __future__ import annotations

import torch
from torch import nn


class SharedStatsInstanceNorm(nn.InstanceNorm2d):
    """The official InstanceNorm (no affine parameters, no running statistics, nothing in the state
    dict), which can also normalise with statistics shared across tiles.

    With ``shared`` set to a ``engine.core.tiling.SharedNormStats``, every call takes its mean and variance
    from that object instead of from the tensor itself, so all tiles of one photo are normalised
    alike (no colour shift between tiles). Without it, it is a plain InstanceNorm.
    """

    shared = None  # set per call by engine.core.tiling.shared_norm_stats(...)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.shared is None:
            return super().forward(x)
        return self.shared.normalize(x, self.eps)


def instance_norm(channels: int) -> nn.InstanceNorm2d:
    """The official norm: no affine parameters, no running statistics (nothing in the state dict)."""
    return SharedStatsInstanceNorm(channels, affine=False, track_running_stats=False, eps=1e-5)


def conv_norm_relu(c_in: int, c_out: int, kernel: int = 3, stride: int = 1, padding: int = 1) -> list[nn.Module]:
    """``[Conv, IN, ReLU]``: three Sequential positions, as in the official mapping networks."""
    return [nn.Conv2d(c_in, c_out, kernel, stride, padding), instance_norm(c_out), nn.ReLU(inplace=True)]


class ResnetBlock(nn.Module):
    """``x + [RPad, Conv3, IN, ReLU, RPad, Conv3, IN](x)``; no activation after the addition."""

    def __init__(self, channels: int, dilation: int = 1) -> None:
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.ReflectionPad2d(dilation),
            nn.Conv2d(channels, channels, 3, padding=0, dilation=dilation),
            instance_norm(channels),
            nn.ReLU(inplace=True),
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3, padding=0),
            instance_norm(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


def resnet_blocks(channels: int, count: int) -> list[nn.Module]:
    return [ResnetBlock(channels) for _ in range(count)]


def mapping_encoder_layers(c_in: int = 64, width: int = 512) -> list[nn.Module]:
    """The four ``[Conv3, IN, ReLU]`` groups 64 -> w/4 -> w/2 -> w -> w that open every mapping net
    (official: w = 512)."""
    chans = [c_in, width // 4, width // 2, width, width]
    layers: list[nn.Module] = []
    for a, b in zip(chans[:-1], chans[1:]):
        layers += conv_norm_relu(a, b)
    return layers


def mapping_decoder_layers(width: int = 512, c_out: int = 64) -> list[nn.Module]:
    """Three ``[Conv3, IN, ReLU]`` groups w -> w -> w/2 -> w/4, then a plain ``Conv3 w/4 -> 64``."""
    chans = [width, width, width // 2, width // 4]
    layers: list[nn.Module] = []
    for a, b in zip(chans[:-1], chans[1:]):
        layers += conv_norm_relu(a, b)
    layers.append(nn.Conv2d(width // 4, c_out, 3, padding=1))
    return layers
