"""Partial non-local block (official ``NonLocalBlock2D_with_mask_Res``, mode "combine").

Holes (masked positions) take a weighted average of features at valid positions; valid positions
keep their input. The official code builds three N x N float tensors (N = H*W/16: 17 GB each for a
1024 px photo). We compute the *same* numbers in query chunks, never holding more than
``chunk x N`` attention weights.

Exactness: the official renormalisation is not a masked softmax. Per row it takes the softmax over
*all* keys, zeroes invalid keys, then divides by ``max(row sum, 1e-12)``; rows whose valid mass is
below 1e-12 therefore come out (nearly) zero. Each chunk applies exactly that sequence, so the
result equals the unchunked computation (OFFICIAL_PIPELINE.md §5.4 step 3).

Rows at holes (``rows="holes"``): the block's output at a valid cell is its input, so only the
attention rows of hole cells feed a hole's output directly; the other rows reach it only through
the residual blocks' 3x3 convolutions (rows within ``reach`` cells of a hole) and their
instance-norm statistics (every row, 1/N of a mean each). Hole rows are computed exactly, against
every key; the others against the keys of their neighbourhood only (``local_attention``), which
changes them little. Global attention costs N^2; this costs holes x N + N x window. Measured on
real photos with the lite weights (bench/attention_rows.py, docs/benchmarks/attention-rows.md):
50+ dB PSNR against computing every row exactly, also when the rows within ``reach`` stay local.
Training always computes every row.
"""

from __future__ import annotations

from typing import Callable, Literal

import torch
import torch.nn.functional as F
from torch import nn

from engine.models.networks.blocks import ResnetBlock

AttentionRows = Literal["all", "holes"]
ATTENTION_ROWS: tuple[str, ...] = ("all", "holes")
StepHook = Callable[[float], None]
"""Called with the fraction done between chunks; may raise to cancel (e.g. ``Progress.check``)."""

DEFAULT_ATTENTION_BYTES = 256 * 1024 * 1024
# Rows far from holes attend to the keys of a LOCAL_BLOCK^2 group of cells grown by LOCAL_MARGIN on each
# side (32 x 32 keys, 128 image pixels): enough for the normalisation statistics (measured).
LOCAL_BLOCK, LOCAL_MARGIN = 16, 8


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
    values = masked_values(g, valid) if fused else g
    pieces = []
    for start in range(0, theta.shape[0], rows):
        stop = min(start + rows, theta.shape[0])
        logits = theta[start:stop] @ phi
        pieces.append(_fused_rows(logits, values) if fused else _official_rows(logits, valid, g))
        del logits
        if step_hook is not None:
            step_hook(stop / theta.shape[0])
    return torch.cat(pieces) if len(pieces) > 1 else pieces[0]


def _official_rows(logits: torch.Tensor, valid: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """The official sequence, op for op (differentiable; used for training)."""
    weights = F.normalize(torch.softmax(logits, dim=-1) * valid, p=1, dim=-1, eps=1e-12)
    return weights @ g


def masked_values(g: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """(N, C) values and (N,) 0/1 validity -> (N, C+1): the values at valid keys (zero elsewhere) and
    the validity itself as a last column, so one product with the attention weights gives both the
    masked weighted sum and each row's valid mass (``_fused_rows``)."""
    return torch.cat([g * valid[:, None], valid[:, None].to(g.dtype)], dim=1)


def _fused_rows(logits: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Same numbers for inference with four passes over the (rows x N) block instead of the
    official eight: with e = exp(f - max f), S_all = sum e and S_valid = sum e*v, the official row is
    ``(e*v) @ g / S_all / max(S_valid / S_all, 1e-12)``. Since v is 0 or 1, ``(e*v) @ g`` is
    ``e @ (v*g)``, and S_valid comes out of the same product as its last column (``masked_values``),
    so the block is never multiplied by the mask; the per-row scale is applied on (rows x C).
    Overwrites ``logits``."""
    logits.sub_(logits.amax(dim=-1, keepdim=True)).exp_()
    total = logits.sum(dim=-1, keepdim=True)
    weighted = logits @ values
    kept = weighted[:, -1:]
    scale = 1.0 / (total * torch.clamp(kept / total, min=1e-12))
    return weighted[:, :-1].mul_(scale)


def grow(cells: torch.Tensor, radius: int) -> torch.Tensor:
    """(h,w) bool map dilated by a (2r+1)^2 square: every cell within ``radius`` (Chebyshev) of a set cell."""
    if radius <= 0:
        return cells
    grown = F.max_pool2d(cells[None, None].float(), 2 * radius + 1, stride=1, padding=radius)
    return grown[0, 0] > 0


def local_attention(theta: torch.Tensor, phi: torch.Tensor, g: torch.Tensor, valid: torch.Tensor,
                    h: int, w: int, block: int, margin: int,
                    max_bytes: int = DEFAULT_ATTENTION_BYTES) -> torch.Tensor:
    """The official renormalised attention restricted to neighbourhoods, for every row: each
    ``block`` x ``block`` group of query cells attends to the keys of its group grown by ``margin``
    cells on each side (keys beyond the map are invalid). theta, g: (N, C); phi: (C, N); valid: (N,).
    Returns (N, C). Batched over groups, at most ``max_bytes`` of attention weights at a time."""
    c = theta.shape[1]
    window = block + 2 * margin
    gy, gx = -(-h // block), -(-w // block)
    pad_h, pad_w = gy * block - h, gx * block - w

    def groups_of_queries(t: torch.Tensor) -> torch.Tensor:  # (N, C) -> (groups, block^2, C)
        t = F.pad(t.t().reshape(c, h, w), (0, pad_w, 0, pad_h))
        return t.reshape(c, gy, block, gx, block).permute(1, 3, 2, 4, 0).reshape(gy * gx, block * block, c)

    def windows(t: torch.Tensor) -> torch.Tensor:  # (C', h, w) -> (groups, C', window^2)
        t = F.pad(t, (margin, margin + pad_w, margin, margin + pad_h))
        t = t.unfold(1, window, block).unfold(2, window, block)  # (C', gy, gx, window, window)
        return t.permute(1, 2, 0, 3, 4).reshape(gy * gx, t.shape[0], window * window)

    queries = groups_of_queries(theta)
    keys = windows(phi.reshape(c, h, w))
    key_valid = windows(valid.reshape(1, h, w))  # (groups, 1, window^2)
    values = windows(g.t().reshape(c, h, w)).mul_(key_valid)
    values = torch.cat([values, key_valid], dim=1).transpose(1, 2)  # (groups, window^2, C+1): see masked_values
    per = max(1, max_bytes // (3 * 4 * block * block * window * window))
    out = torch.empty(gy * gx, block * block, c, dtype=g.dtype, device=g.device)
    for start in range(0, gy * gx, per):
        stop = min(start + per, gy * gx)
        logits = torch.bmm(queries[start:stop], keys[start:stop])
        logits.sub_(logits.amax(dim=-1, keepdim=True)).exp_()
        total = logits.sum(dim=-1, keepdim=True)
        weighted = torch.bmm(logits, values[start:stop])
        scale = 1.0 / (total * torch.clamp(weighted[..., -1:] / total, min=1e-12))
        out[start:stop] = weighted[..., :-1] * scale
        del logits, weighted
    out = out.reshape(gy, gx, block, block, c).permute(0, 2, 1, 3, 4).reshape(gy * block, gx * block, c)
    return out[:h, :w].reshape(h * w, c)


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

    @property
    def reach(self) -> int:
        """Latent cells over which an attention row reaches a hole's output through the residual
        blocks' 3x3 convolutions (two per block), normalisation statistics aside."""
        return 2 * len(self.res_block)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, step_hook: StepHook | None = None,
                rows: AttentionRows = "all") -> torch.Tensor:
        b, c, h, w = x.shape
        valid = valid_key_map(mask, (h, w))
        outs = []
        for i in range(b):
            xi = x[i:i + 1]
            g = self.g(xi).reshape(c, h * w).t()
            theta = self.theta(xi).reshape(c, h * w).t()
            phi = self.phi(xi).reshape(c, h * w)
            vi = valid[i].reshape(h * w)
            if rows == "all" or torch.is_grad_enabled():
                y = partial_attention(theta, phi, g, vi, self.attention_bytes, step_hook)
            else:
                y = self._hole_rows(theta, phi, g, vi, h, w, step_hook)
            outs.append(y.t().reshape(1, c, h, w))
            del g, theta, phi, y
        y = torch.cat(outs) if b > 1 else outs[0]
        w_y = self.res_block(self.W(y))
        return valid * x + (1.0 - valid) * w_y

    def _hole_rows(self, theta: torch.Tensor, phi: torch.Tensor, g: torch.Tensor, valid: torch.Tensor,
                   h: int, w: int, step_hook: StepHook | None, exact_reach: int | None = 0) -> torch.Tensor:
        """Attention output with exact rows at holes and up to ``exact_reach`` cells from them (None:
        ``self.reach``; bench/attention_rows.py compares the two), local rows elsewhere."""
        reach = self.reach if exact_reach is None else exact_reach
        near = grow(valid.view(h, w) < 0.5, reach).reshape(-1).nonzero()[:, 0]
        y = local_attention(theta, phi, g, valid, h, w, LOCAL_BLOCK, LOCAL_MARGIN, self.attention_bytes)
        if near.numel():
            y[near] = partial_attention(theta[near], phi, g, valid, self.attention_bytes, step_hook)
        return y
