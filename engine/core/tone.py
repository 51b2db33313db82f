"""Tone anchoring: give a network's output the global per-channel mean and spread of a reference.

Why: every convolution in the VAEs is followed by instance normalisation without affine
parameters, so the encoder cannot see a photo's global brightness, contrast or colour offset (a
constant added to the input, or a uniform gain, vanishes at the first norm). The decoder then
*invents* the global tone from what it learned. The official weights learned a plausible prior
from 100s of GPU epochs; Heirloom's lite weights train for minutes on a CPU and would otherwise
paint a grey sky blue. They are trained to get everything *but* the global tone right (their loss
compares tone-anchored output) and their model card asks the pipeline to anchor the output to
the input photo's tone. Official weights are never anchored (parity).

Which tone a restore gets (``tone_for``): official weights ("model" cards) always their own. For
anchored cards the *photo's* colour is the default ("photo": global statistics, then local colour,
see ``keep_local_colour``): the predicted tone is a fading correction, and as a default it recoloured
prints (hand-coloured ``old_c``: blue mean -19 %; over 39 real scans the worst channel's mean moved
by > 11 levels for the worst 5 %). Correcting fading (the card's "predicted" tone) is the user's
choice (``RestoreOptions.correct_fading``).

Cost: two reductions over the output and one over the input; with tiling the statistics are
taken over the whole assembled image, so tiles cannot disagree. The local colour costs a few
full-size passes per channel (the low-pass itself runs on a copy ~sigma/2 times smaller)."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from engine.models.predictors import TonePredictor, is_monochrome

EPS = 1e-4

# "photo": keep the photo's own colour (the pipeline's default for anchored cards, see ``tone_for``)
PHOTO_TONE = "photo"
# Local colour is kept at scales above sigma = this fraction of the short side (but >= LOCAL_SIGMA_MIN
# px): detail and repaired holes come from the restoration, the colour at every place from the photo.
LOCAL_SIGMA_FRACTION = 0.01
LOCAL_SIGMA_MIN = 2.0
# Where less than this share of a neighbourhood is undamaged, the local correction fades to zero
# (inside a large hole only the global statistics apply: the photo has no colour there).
LOCAL_MIN_SUPPORT = 0.1


def tone_for(card_tone: str, correct_fading: bool) -> str:
    """The tone a restore applies: ``card_tone`` is what the weights' card asks for. "model" cards
    (official weights) are never changed. Anchored cards keep the photo's colour ("photo") unless the
    user asks to correct fading, which is the card's own tone ("predicted"; a "match-input" card has
    no fading correction and keeps its global anchoring)."""
    if card_tone == "model":
        return "model"
    return card_tone if correct_fading else PHOTO_TONE


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
    (the photos as given, HxWx3 [0, 1]), "photo" copies ``network_input``'s statistics and then its
    local colour (``keep_local_colour``). ``valid`` (N,1,H,W), 1 = undamaged: where the statistics
    and the local colour are read."""
    if tone == "model":
        return generated
    if tone == PHOTO_TONE:
        reference = network_input.to(generated.device)
        toned = match_tone_inplace(generated, reference, valid)
        return keep_grey(keep_local_colour(toned, reference, valid), originals)
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


def match_tone_inplace(output: torch.Tensor, reference: torch.Tensor,
                       valid: torch.Tensor | None = None) -> torch.Tensor:
    """``match_tone``, in place at inference (a 24 MP photo is 288 MB per copy)."""
    if torch.is_grad_enabled():
        return match_tone(output, reference, valid)
    ref_mean, ref_std = channel_stats(reference, valid)
    out_mean, out_std = channel_stats(output, valid)
    return output.sub_(out_mean).div_(out_std + EPS).mul_(ref_std).add_(ref_mean)


def local_sigma(height: int, width: int) -> float:
    """The low-pass scale of ``keep_local_colour`` for a photo of this size, in pixels."""
    return max(LOCAL_SIGMA_MIN, LOCAL_SIGMA_FRACTION * min(height, width))


def _gaussian_kernel(sigma: float, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    radius = max(1, math.ceil(3.0 * sigma))
    x = torch.arange(-radius, radius + 1, device=device, dtype=dtype)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    return kernel / kernel.sum()


def _lowpass(image: torch.Tensor, factor: int, sigma: float) -> torch.Tensor:
    """(N,C,H,W) -> its Gaussian low-pass on a grid ``factor`` times coarser (box-averaged first,
    zero beyond the borders: used as a normalised convolution, zeros count as "no data")."""
    n, c, h, w = image.shape
    image = image.reshape(n * c, 1, h, w)
    if factor > 1:
        image = F.pad(image, (0, (-w) % factor, 0, (-h) % factor))
        image = F.avg_pool2d(image, factor)
    kernel = _gaussian_kernel(sigma, image.device, image.dtype)
    r = kernel.numel() // 2
    image = F.conv2d(image, kernel.view(1, 1, 1, -1), padding=(0, r))
    image = F.conv2d(image, kernel.view(1, 1, -1, 1), padding=(r, 0))
    return image.reshape(n, c, *image.shape[-2:])


def keep_local_colour(output: torch.Tensor, reference: torch.Tensor, valid: torch.Tensor | None = None,
                      sigma: float | None = None) -> torch.Tensor:
    """``output`` (N,C,H,W) plus the low-pass of (``reference`` - ``output``) taken over ``valid``
    pixels only (a normalised, mask-aware Gaussian of ``sigma`` px, default ``local_sigma``): its
    local colour and brightness become the reference's, its detail (and what it painted into the
    holes, which the reference does not know) stays. The low-pass runs ``sigma / 2`` times smaller
    and is upsampled bilinearly, so a 24 MP photo costs a few full-size passes per channel.
    In place at inference."""
    n, c, h, w = output.shape
    sigma = local_sigma(h, w) if sigma is None else sigma
    factor = max(1, int(sigma // 2))
    small_sigma = sigma / factor
    if valid is None:
        weight = torch.ones((n, 1, h, w), dtype=output.dtype, device=output.device)
    else:
        weight = valid.to(device=output.device, dtype=output.dtype)
    support = _lowpass(weight, factor, small_sigma).clamp_min_(LOCAL_MIN_SUPPORT)
    result = output.clone() if torch.is_grad_enabled() else output
    for ch in range(c):
        diff = reference[:, ch:ch + 1].to(output.device, output.dtype) - output[:, ch:ch + 1]
        correction = _lowpass(diff.mul_(weight), factor, small_sigma).div_(support)
        del diff
        if factor > 1:
            correction = F.interpolate(correction, scale_factor=factor, mode="bilinear",
                                       align_corners=False)[..., :h, :w]
        result[:, ch:ch + 1] += correction
    return result


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
