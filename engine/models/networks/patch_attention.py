"""Multi-scale patch attention (official ``Patch_Attention_4`` at inference, the ``--HR`` path).

Each hole patch (p x p latent cells, more than 60 % masked) is replaced by the single most similar
valid patch (cosine similarity, hard argmax) and the result is fused with the block input by a 3x3
conv. Only valid *patches* are keys, so memory is (masked patches x valid patches); we process the
queries in chunks so it stays bounded on large photos.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from engine.models.networks.blocks import ResnetBlock
from engine.models.networks.partial_nonlocal import DEFAULT_ATTENTION_BYTES

MASKED_PATCH_THRESHOLD = 0.6


def best_key_indices(queries: torch.Tensor, keys: torch.Tensor, max_bytes: int) -> torch.Tensor:
    """For each query row the index of the key with the highest softmax(cosine) (= official argmax)."""
    q = F.normalize(queries, dim=1, eps=1e-12)
    k = F.normalize(keys, dim=1, eps=1e-12)
    rows = max(1, max_bytes // (2 * 4 * max(k.shape[0], 1)))
    picks = []
    for start in range(0, q.shape[0], rows):
        sim = q[start:start + rows] @ k.t()
        picks.append(torch.softmax(sim, dim=1).argmax(dim=1))
    return torch.cat(picks)


class PatchAttention(nn.Module):
    """One attention scale with patch size ``patch``: (1,C,h,w) features + (1,1,H,W) hole mask."""

    def __init__(self, patch: int, channels: int = 512) -> None:
        super().__init__()
        self.patch = patch
        self.F_Combine = nn.Conv2d(2 * channels + 1, channels, 3, padding=1)
        self.res_block = nn.Sequential(ResnetBlock(channels))
        self.attention_bytes = DEFAULT_ATTENTION_BYTES

    def compose(self, x: torch.Tensor, hole: torch.Tensor) -> torch.Tensor:
        """Copy the best valid patch into each masked patch of one feature map (batch of 1).

        Quirk kept for parity: when patches were moved, rows/columns not covered by whole patches
        come out as zeros. Heirloom's pipeline pads the latent to a multiple of the largest patch,
        so no real pixel is ever in that border. Without any valid patch there is nothing to copy
        from and ``x`` is returned (the official code would fail here).
        """
        p = self.patch
        h, w = x.shape[-2:]
        coverage = F.unfold(hole, kernel_size=p, stride=p)  # (1, p*p, L)
        masked = coverage[0].mean(dim=0) > MASKED_PATCH_THRESHOLD
        if not bool(masked.any()) or bool(masked.all()):
            return x
        patches = F.unfold(x, kernel_size=p, stride=p)  # (B, C*p*p, L)
        vectors = patches[0].t()  # (L, C*p*p)
        query_idx = masked.nonzero().squeeze(1)
        key_idx = (~masked).nonzero().squeeze(1)
        best = best_key_indices(vectors[query_idx], vectors[key_idx], self.attention_bytes)
        patches = patches.clone()
        patches[:, :, query_idx] = patches[:, :, key_idx[best]]
        return F.fold(patches, output_size=(h, w), kernel_size=p, stride=p)

    def forward(self, z: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.res_block(z)
        hole = F.interpolate(mask, size=z.shape[-2:], mode="bilinear", align_corners=False)
        hole = (hole > 0).to(z.dtype)
        # The official code decides the patch choice from batch element 0 for the whole batch; we
        # decide per element (identical for one photo, correct for a batch of tiles).
        composed = torch.cat([self.compose(x[i:i + 1], hole[i:i + 1]) for i in range(x.shape[0])])
        return self.F_Combine(torch.cat([z, composed, hole], dim=1))
