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
taken over the whole assembled image, so tiles cannot disagree."""

from __future__ import annotations

import numpy as np
import torch

from engine.models.predictors import TonePredictor, is_monochrome

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


def anchor_to_stats(output: torch.Tensor, mean: torch.Tensor, std: torch.Tensor,
                    valid: torch.Tensor | None = None) -> torch.Tensor:
    """``output`` (N,C,H,W) with the given per-channel mean/std ((C,) each, same value range)."""
    out_mean, out_std = channel_stats(output, valid)
    if torch.is_grad_enabled():
        return (output - out_mean) / (out_std + EPS) * std.view(1, -1, 1, 1) + mean.view(1, -1, 1, 1)
    # inference: one new tensor instead of four (large scans)
    return output.sub(out_mean).div_(out_std + EPS).mul_(std.view(1, -1, 1, 1)).add_(mean.view(1, -1, 1, 1))


def apply_output_tone(generated: torch.Tensor, tone: str, network_input: torch.Tensor,
                      originals: list[np.ndarray] | None = None, predictor: TonePredictor | None = None,
                      valid: torch.Tensor | None = None) -> torch.Tensor:
    """The one place the pipeline (and fine-tuning previews) give a network's output (N,3,H,W) in
    [-1, 1] the global tone its weights' card asks for: ``tone`` "model" leaves it, "match-input"
    copies ``network_input``'s statistics, "predicted" uses ``predictor`` on each of ``originals``
    (the photos as given, HxWx3 [0, 1])."""
    if tone == "model":
        return generated
    if tone == "match-input":
        return keep_grey(match_tone(generated, network_input.to(generated.device), valid), originals)
    if predictor is None or originals is None or len(originals) != generated.shape[0]:
        raise ValueError("predicted tone needs the weights' tone predictor and one original photo per output")
    toned = []
    for i, original in enumerate(originals):
        mean, std = predictor.predict(original)  # [0, 1] units -> the networks' [-1, 1]
        toned.append(anchor_to_stats(generated[i:i + 1], torch.from_numpy(mean * 2 - 1).to(generated.device),
                                     torch.from_numpy(std * 2).to(generated.device),
                                     None if valid is None else valid[i:i + 1]))
    return keep_grey(torch.cat(toned) if len(toned) > 1 else toned[0], originals)


def keep_grey(output: torch.Tensor, originals: list[np.ndarray] | None) -> torch.Tensor:
    """A black and white photo's restoration stays black and white: weights trained blind to colour
    balance otherwise leave faint invented colour in it (measured on real grey scans with our lite
    weights: a mean channel spread of 0.011, 2-3 levels). Each grey original's output gets the mean
    of its channels in all three."""
    grey = [i for i, original in enumerate(originals or []) if is_monochrome(original)]
    if not grey:
        return output
    if output.requires_grad:
        output = output.clone()  # in-place on a copy keeps autograd correct (fine-tuning previews)
    for i in grey:
        output[i] = output[i].mean(0, keepdim=True)
    return output
