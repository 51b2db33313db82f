"""Tone anchoring: give a network's output the global per-channel mean and spread of a reference.

Why: every convolution in the VAEs is followed by instance normalisation without affine
parameters, so the encoder cannot see a photo's global brightness, contrast or colour offset (a
constant added to the input, or a uniform gain, vanishes at the first norm). The decoder then
*invents* the global tone from what it learned. The official weights learned a plausible prior
from 100s of GPU epochs; Heirloom's lite weights train for minutes on a CPU and would otherwise
paint a grey sky blue. They are trained to get everything *but* the global tone right (their loss
compares tone-anchored output) and their model card asks the pipeline to anchor the output to
the input photo's tone. Official weights are never anchored (parity).

Cost: two reductions over the output and one over the input; with tiling the statistics are
taken over the whole assembled image, so tiles cannot disagree.
"""

from __future__ import annotations

import torch

EPS = 1e-4


def channel_stats(image: torch.Tensor, valid: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample, per-channel mean and standard deviation of (N,C,H,W), over ``valid`` pixels
    ((N,1,H,W), 1 = use) when given, e.g. to ignore the holes of a damaged photo."""
    if valid is None:
        return image.mean((2, 3), keepdim=True), image.std((2, 3), keepdim=True)
    weight = valid.to(image.dtype)
    count = weight.sum((2, 3), keepdim=True).clamp_min(1.0)
    mean = (image * weight).sum((2, 3), keepdim=True) / count
    var = ((image - mean).pow(2) * weight).sum((2, 3), keepdim=True) / count
    return mean, var.sqrt()


def match_tone(output: torch.Tensor, reference: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """``output`` with the per-channel mean/std of ``reference`` (differentiable, for training too)."""
    mean, std = channel_stats(output, valid)
    ref_mean, ref_std = channel_stats(reference, valid)
    return (output - mean) / (std + EPS) * ref_std + ref_mean
