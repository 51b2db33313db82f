"""Partial non-local block (official ``NonLocalBlock2D_with_mask_Res``, mode "combine").

Holes (masked positions) take a weighted average of features at valid positions; valid positions
keep their input. The official code builds three N x N float tensors (N = H*W/16: 17 GB each for a
1024 px photo). We compute the *same* numbers in query chunks, never holding more than
``chunk x N`` attention weights.

Exactness: the official renormalisation is not a masked softmax. Per row it takes the softmax over
*all* keys, zeroes invalid keys, then divides by ``max(row sum, 1e-12)``; rows whose valid mass is
below 1e-12 therefore come out (nearly) zero. Each chunk applies exactly that sequence, so the
result equals the unchunked computation (OFFICIAL_PIPELINE.md §5.4 step 3).
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from engine.models.networks.blocks import ResnetBlock

StepHook = Callable[[float], None]
"""Called with the fraction done between chunks; may raise to cancel (e.g. ``Progress.check``)."""

DEFAULT_ATTENTION_BYTES = 256 * 1024 * 1024


def valid_key_map(mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(N,1,H,W) full-resolution hole mask (1 = hole) -> (N,1,h,w) validity, 1 only where the bilinear
    footprint holds no hole pixel and the nearest sample is valid (the official rule)."""
    m = F.interpolate(mask, size=size, mode="bilinear", align_corners=False)
    m = (m > 0).to(mask.dtype)
    v = 1.0 - m
    t = F.interpolate(1.0 - mask, size=size, mode="nearest")
    return v * t


def partial_attention(theta: torch.Tensor, phi: torch.Tensor, g: torch.Tensor, valid: torch.Tensor,
                      max_bytes: int = DEFAULT_ATTENTION_BYTES, step_hook: StepHook | None = None) -> torch.Tensor:
    """Official renormalised attention, computed in query chunks.

    theta, g: (N_q, C) queries / values; phi: (C, N) keys; valid: (N,) 0/1 key validity.
    Returns (N, C) = rows of ``renorm(softmax(theta @ phi) * valid) @ g``.
    """
    n = phi.shape[1]
    rows = max(1, min(theta.shape[0], max_bytes // (3 * 4 * max(n, 1))))
    fused = not torch.is_grad_enabled()
    pieces = []
    for start in range(0, theta.shape[0], rows):
        stop = min(start + rows, theta.shape[0])
        logits = theta[start:stop] @ phi
        pieces.append(_fused_rows(logits, valid, g) if fused else _official_rows(logits, valid, g))
        del logits
        if step_hook is not None:
            step_hook(stop / theta.shape[0])
    return torch.cat(pieces) if len(pieces) > 1 else pieces[0]


def _official_rows(logits: torch.Tensor, valid: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """The official sequence, op for op (differentiable; used for training)."""
    weights = F.normalize(torch.softmax(logits, dim=-1) * valid, p=1, dim=-1, eps=1e-12)
    return weights @ g


def _fused_rows(logits: torch.Tensor, valid: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Same numbers for inference with two in-place passes over the (rows x N) block instead of six:
    with e = exp(f - max f), S_all = sum e and S_valid = sum e*v, the official row is
    ``(e*v) / S_all / max(S_valid / S_all, 1e-12)``; the per-row scale is applied after the
    product with g, on (rows x C) instead of (rows x N). Overwrites ``logits``."""
    logits.sub_(logits.amax(dim=-1, keepdim=True)).exp_()
    total = logits.sum(dim=-1, keepdim=True)
    logits.mul_(valid)
    kept = logits.sum(dim=-1, keepdim=True)
    scale = 1.0 / (total * torch.clamp(kept / total, min=1e-12))
    return (logits @ g).mul_(scale)


class PartialNonLocalBlock(nn.Module):
    """x (1,C,h,w), hole mask (1,1,H,W) at image resolution -> x with holes filled by attention."""

    def __init__(self, channels: int = 512, res_blocks: int = 3) -> None:
        super().__init__()
        self.g = nn.Conv2d(channels, channels, 1)
        self.W = nn.Conv2d(channels, channels, 1)
        self.theta = nn.Conv2d(channels, channels, 1)
        self.phi = nn.Conv2d(channels, channels, 1)
        self.res_block = nn.Sequential(*[ResnetBlock(channels) for _ in range(res_blocks)])
        self.attention_bytes = DEFAULT_ATTENTION_BYTES

    def forward(self, x: torch.Tensor, mask: torch.Tensor, step_hook: StepHook | None = None) -> torch.Tensor:
        b, c, h, w = x.shape
        valid = valid_key_map(mask, (h, w))
        outs = []
        for i in range(b):
            xi = x[i:i + 1]
            g = self.g(xi).reshape(c, h * w).t()
            theta = self.theta(xi).reshape(c, h * w).t()
            phi = self.phi(xi).reshape(c, h * w)
            y = partial_attention(theta, phi, g, valid[i].reshape(h * w), self.attention_bytes, step_hook)
            outs.append(y.t().reshape(1, c, h, w))
            del g, theta, phi, y
        y = torch.cat(outs) if b > 1 else outs[0]
        w_y = self.res_block(self.W(y))
        return valid * x + (1.0 - valid) * w_y
