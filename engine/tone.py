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

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from .ridge import RidgeModel

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


# --- Predicted tone -------------------------------------------------------------------------------
# Anchoring to the *input's* tone keeps whatever fading the photo suffered (lifted blacks, lowered
# contrast, a sepia cast): measured on the held-out benchmark set, even a perfect restoration
# given the damaged photo's tone scores only 24.8 dB. A ridge regression from robust statistics
# of the damaged photo to the clean photo's per-channel mean and spread, fitted on synthetic
# pairs at export, lifts that ceiling to 28.5 dB. It is a few hundred numbers in the model card.

ANCHORED_TONES = ("match-input", "predicted")  # weights trained blind to global tone
FEATURE_SIDE = 256  # statistics are taken at this long side: the same for a thumbnail or a 40 MP scan
PERCENTILES = (1, 5, 25, 50, 75, 95, 99)
# A photo whose channels differ by at most this on average is grey. Not "never differ": a black and
# white scan saved as JPEG carries a little chroma noise (measured on the real scans in
# ../shared/data: grey ones 0.0005-0.0044, the faintest toned print 0.0078), and the predictor
# would otherwise give it a colour photo's channel balance, i.e. a cast it never had.
MONOCHROME_SPREAD = 0.005


def tone_features(rgb: np.ndarray) -> np.ndarray:
    """What the predictor sees of an HxWx3 [0, 1] photo: per-channel percentiles, mean and
    spread, and three colour measures (30 numbers)."""
    h, w = rgb.shape[:2]
    scale = FEATURE_SIDE / max(h, w)
    if scale < 1:
        rgb = cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    rgb = rgb.astype(np.float32)
    features: list[float] = []
    for c in range(3):
        channel = rgb[..., c]
        features += [*np.percentile(channel, PERCENTILES), float(channel.mean()), float(channel.std())]
    grey = rgb.mean(axis=2)
    features += [float((rgb.max(axis=2) - rgb.min(axis=2)).mean()), float((rgb[..., 0] - rgb[..., 2]).mean()),
                 float((rgb[..., 1] - grey).mean())]
    return np.asarray(features, np.float32)


def is_monochrome(rgb: np.ndarray) -> bool:
    """Mean channel spread over a regular sample of at most about a million pixels (the whole of a
    24 MP scan took 1.9 s per call; the sample's mean is the same to well within the threshold)."""
    step = max(1, int((rgb.shape[0] * rgb.shape[1] / 1e6) ** 0.5))
    sample = rgb[::step, ::step]
    return float((sample.max(axis=2) - sample.min(axis=2)).mean()) <= MONOCHROME_SPREAD


@dataclass(frozen=True)
class TonePredictor:
    """Ridge map from ``tone_features`` to the clean photo's per-channel mean and standard
    deviation (in [0, 1] units)."""

    model: RidgeModel

    @classmethod
    def fit(cls, features: np.ndarray, targets: np.ndarray, ridge: float = 1.0) -> "TonePredictor":
        """``targets`` (N, 6): means then stds; ``features`` (N, 30)."""
        return cls(RidgeModel.fit(features, targets, ridge))

    def predict(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Estimated clean per-channel (mean, std) of the damaged photo ``rgb``. A grey photo
        stays grey: colour it never had is not invented (the three channels get one tone)."""
        out = self.model.predict(tone_features(rgb))
        mean, std = np.clip(out[:3], 0.0, 1.0), np.clip(out[3:], 0.01, 0.5)
        if is_monochrome(rgb):
            mean, std = np.full(3, mean.mean(), np.float32), np.full(3, std.mean(), np.float32)
        return mean.astype(np.float32), std.astype(np.float32)

    def to_json(self) -> dict:
        return {"features": "engine.tone.tone_features", **self.model.to_json()}

    @classmethod
    def from_json(cls, data: dict) -> "TonePredictor":
        return cls(RidgeModel.from_json(data, features=30, targets=6))


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
