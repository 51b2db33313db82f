"""Detector calibration at export: move the decision point to the pipeline's threshold.

The focal loss weights the rare damage pixels up (alpha 0.75), so a short-trained detector is
over-confident: its best F1 sits at a probability above the official threshold (0.4) every
code path uses (CLI, queue, the GUI slider's start value). Instead of teaching every caller a
per-weights threshold, the export shifts the last convolution's bias so that the probability
where F1 peaks becomes the official threshold. Ranking (ROC-AUC) is unchanged; only the cut moves.

Calibration photos are *training* photos (never the held-out slice the benchmark scores), with
synthetic damage from ``engine.degradation.degrade`` at the scale the pipeline runs the detector.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from engine.core.detection import OFFICIAL_SHORT_SIDE, OFFICIAL_THRESHOLD, network_size
from engine.core.metrics import detection_scores
from engine.degradation.degrade import degrade
from engine.io.pixels import LUMA
from engine.models.networks.unet import ScratchUNet

BIAS_KEY = "last.1.bias"
CANDIDATES = tuple(np.round(np.arange(0.2, 0.91, 0.05), 2))


@dataclass(frozen=True)
class Calibration:
    best_threshold: float  # where F1 peaked before the shift
    f1_at_official_before: float
    f1_at_official_after: float
    logit_shift: float  # added to the last bias

    def to_json(self) -> dict:
        return {"best_threshold": self.best_threshold, "f1_at_0.4_before": round(self.f1_at_official_before, 4),
                "f1_at_0.4_after": round(self.f1_at_official_after, 4), "logit_shift": round(self.logit_shift, 4)}


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


def detector_probabilities(net: ScratchUNet, photos: list[np.ndarray], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities and true masks (flattened) for synthetic damage on ``photos`` (HxWx3 [0,1])."""
    probs, truths = [], []
    for i, clean in enumerate(photos):
        d = degrade(clean, seed=seed + i)
        grey = (d.degraded * np.array(LUMA, np.float32)).sum(-1, dtype=np.float32)
        h, w = grey.shape
        x = torch.from_numpy(grey)[None, None] * 2 - 1
        size = network_size(h, w, OFFICIAL_SHORT_SIDE)
        if size != (h, w):
            x = F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
        with torch.inference_mode():
            logits = F.interpolate(net(x), size=(h, w), mode="bilinear", align_corners=False)
        probs.append(torch.sigmoid(logits)[0, 0].numpy().ravel())
        truths.append(d.mask.ravel())
    return np.concatenate(probs), np.concatenate(truths)


def calibrate_detector(state: dict[str, torch.Tensor], width_log2: int, photos: list[np.ndarray],
                       seed: int = 50_000) -> tuple[dict[str, torch.Tensor], Calibration]:
    """A copy of ``state`` whose F1-optimal cut is at the official threshold, and what was measured."""
    net = ScratchUNet(width_log2=width_log2)
    net.load_state_dict(state)
    net.eval()
    prob, truth = detector_probabilities(net, photos, seed)
    f1 = {t: detection_scores(prob, truth, float(t))["f1"] for t in CANDIDATES}
    best = max(f1, key=f1.get)
    shift = _logit(OFFICIAL_THRESHOLD) - _logit(float(best))
    calibrated = dict(state)
    calibrated[BIAS_KEY] = state[BIAS_KEY] + shift
    # sigmoid(z + shift) >= 0.4  <=>  sigmoid(z) >= best: the F1 after the shift is f1[best]
    return calibrated, Calibration(float(best), f1[min(CANDIDATES, key=lambda t: abs(t - OFFICIAL_THRESHOLD))],
                                   f1[best], shift)
