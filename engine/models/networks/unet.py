"""Scratch-detection U-Net (official ``detection_models.networks.UNet``, depth 4, wf 6).

Grey (N,1,h,w) in [-1,1] -> logits (N,1,h,w); h, w must be multiples of 16 (four stride-2
anti-aliased downsamplings; the registry's descriptor states it for padding and tiling). BatchNorm
runs on stored statistics (eval mode).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _act() -> nn.LeakyReLU:
    return nn.LeakyReLU(0.2, inplace=True)


class BlurPool(nn.Module):
    """Depthwise [1,2,1]x[1,2,1]/16 blur with reflect padding, stride 2 (anti-aliased downsampling)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels
        self.pad = nn.ReflectionPad2d(1)
        taps = torch.tensor([1.0, 2.0, 1.0])
        kernel = torch.outer(taps, taps)
        self.register_buffer("filt", (kernel / kernel.sum()).expand(channels, 1, 3, 3).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(self.pad(x), self.filt, stride=2, groups=self.channels)


class ConvBlock(nn.Module):
    """Two ``[RPad 1, Conv3, BN, LeakyReLU]`` groups."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(c_in, c_out, 3), nn.BatchNorm2d(c_out), _act(),
            nn.ReflectionPad2d(1), nn.Conv2d(c_out, c_out, 3), nn.BatchNorm2d(c_out), _act(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


class UpBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.up = nn.Sequential(
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
            nn.ReflectionPad2d(1), nn.Conv2d(c_in, c_out, 3),
        )
        self.conv_block = ConvBlock(c_in, c_out)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.conv_block(torch.cat([self.up(x), skip], dim=1))


class ScratchUNet(nn.Module):
    def __init__(self, depth: int = 4, width_log2: int = 6) -> None:
        super().__init__()
        chans = [2 ** (width_log2 + i) for i in range(depth + 1)]  # 64 .. 1024
        self.first = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(1, chans[0], 7), _act())
        self.down_path = nn.ModuleList(ConvBlock(c, 2 * c) for c in chans[:-1])
        self.down_sample = nn.ModuleList(
            nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(c, c, 3), nn.BatchNorm2d(c), _act(), BlurPool(c))
            for c in chans[:-1]
        )
        self.up_path = nn.ModuleList(UpBlock(chans[i + 1], chans[i]) for i in reversed(range(depth)))
        self.last = nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(chans[0], 1, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.first(x)
        skips = []
        for down, path in zip(self.down_sample, self.down_path):
            skips.append(x)
            x = path(down(x))
        for up, skip in zip(self.up_path, reversed(skips)):
            x = up(x, skip)
        return self.last(x)
