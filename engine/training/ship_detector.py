"""Put a detector run into a complete weights folder, with its threshold calibrated on real damage.

The detector trains much longer than the other stages and is judged on its own (issue #16), so it
is shipped on its own: the other networks of an existing weights folder are kept as they are and
only ``detector.safetensors`` and the card change. Calibration moves the decision point to the
pipeline's threshold (as ``engine.training.calibrate`` does on synthetic damage), but chooses it on
real damaged photos with reference masks (a labelled set's calib split), at the detection scale the
weights run at, maximising the mean per-photo F1 with the benchmark's 3 px tolerance, among the
thresholds whose F1 on synthetic damage (training photos, exact pixels) is within
``SYNTHETIC_F1_SLACK`` of the best cut's: the issue's guard that real-damage gains must not cost the
synthetic benchmark (>= 0.83). The floor is relative because the calibration photos are not the
benchmark's held-out ones (those are never tuned on) and score differently in absolute terms.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from engine.core.detection import OFFICIAL_THRESHOLD, scratch_probability
from engine.core.metrics import detection_scores, tolerant_precision_recall
from engine.degradation.degrade import degrade
from engine.models.checkpoints import ModelBank, SafetensorsSource
from engine.training.calibrate import BIAS_KEY, calibrate_detector
from engine.training.config import CONFIGS
from engine.training.labelled import LabelledPool
from engine.training.weights_copy import put_network, read_card, staged_copy

TOLERANCE_PX = 3.0  # the real-damage benchmark's tolerance (bench/eval_detection.py)
THRESHOLDS = tuple(round(0.05 * i, 2) for i in range(2, 19))  # 0.10 .. 0.90
SYNTHETIC_F1_SLACK = 0.02  # the synthetic F1 a real-damage gain may cost, from the best synthetic cut
SYNTHETIC_SEED = 50_000  # engine.training.calibrate's seeds: damage never drawn by the benchmarks


@dataclass(frozen=True)
class RealCalibration:
    """What the calibration on real damage measured (means over the labelled photos)."""

    best_threshold: float
    logit_shift: float
    photos: list[str]
    at_official: dict[str, float]  # mean precision / recall / F1 at the pipeline threshold, before the shift
    at_best: dict[str, float]  # the same at the chosen threshold (= at the pipeline threshold after it)
    synthetic_f1: float | None = None  # F1 on synthetic damage at the chosen threshold
    synthetic_floor: float | None = None  # the floor it had to keep (None: not constrained)

    def to_json(self) -> dict:
        def rounded(d: dict[str, float]) -> dict[str, float]:
            return {k: round(v, 4) for k, v in d.items()}

        return {"on": f"real damaged photos with reference masks ({len(self.photos)}: {', '.join(self.photos)}), "
                      f"mean per-photo F1 with a {TOLERANCE_PX:g} px tolerance",
                "best_threshold": self.best_threshold, "logit_shift": round(self.logit_shift, 4),
                "at_0.4_before": rounded(self.at_official), "at_0.4_after": rounded(self.at_best),
                **({"synthetic_f1_after": round(self.synthetic_f1, 4), "synthetic_f1_floor": self.synthetic_floor}
                   if self.synthetic_f1 is not None else {})}


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


def mean_scores(probabilities: list[np.ndarray], masks: list[np.ndarray], threshold: float) -> dict[str, float]:
    rows = [tolerant_precision_recall(p >= threshold, m, TOLERANCE_PX) for p, m in zip(probabilities, masks)]
    return {k: float(np.mean([r[k] for r in rows])) for k in ("precision", "recall", "f1")}


def synthetic_f1(bank: ModelBank, photos: list[np.ndarray], seed: int = SYNTHETIC_SEED) -> dict[float, float]:
    """F1 (exact pixels) per threshold on synthetic damage drawn on ``photos`` (HxWx3 float in [0, 1]),
    detected at the weights' own scale as a restore does."""
    probabilities, truths = [], []
    for i, clean in enumerate(photos):
        damaged = degrade(clean, seed=seed + i)
        probabilities.append(scratch_probability(bank, damaged.degraded).ravel())
        truths.append(damaged.mask.ravel())
    prob, truth = np.concatenate(probabilities), np.concatenate(truths)
    return {t: detection_scores(prob, truth, t)["f1"] for t in THRESHOLDS}


def calibrate_on_real(bank: ModelBank, labelled: LabelledPool, synthetic_photos: list[np.ndarray] | None = None,
                      slack: float = SYNTHETIC_F1_SLACK) -> RealCalibration:
    """Sweep the threshold over the labelled photos' probabilities at the weights' detection scale;
    with ``synthetic_photos``, only thresholds whose synthetic F1 is within ``slack`` of the best
    synthetic cut compete on real F1."""
    probabilities = [scratch_probability(bank, photo) for photo in labelled.photos]
    table = {t: mean_scores(probabilities, labelled.masks, t) for t in THRESHOLDS}
    candidates, synthetic = list(THRESHOLDS), None
    if synthetic_photos:
        synthetic = synthetic_f1(bank, synthetic_photos)
        floor = max(synthetic.values()) - slack
        candidates = [t for t in THRESHOLDS if synthetic[t] >= floor]
    best = max(candidates, key=lambda t: table[t]["f1"])
    official = mean_scores(probabilities, labelled.masks, OFFICIAL_THRESHOLD)
    return RealCalibration(float(best), _logit(OFFICIAL_THRESHOLD) - _logit(float(best)), list(labelled.stems),
                           official, table[best], None if synthetic is None else synthetic[best],
                           None if synthetic is None else round(floor, 4))


def ship_detector(run: Path, weights: Path, dest: Path, labelled: LabelledPool | None,
                  synthetic_photos: list[np.ndarray] | None = None) -> dict:
    """Write ``dest``: a copy of the weights folder ``weights`` whose detector is the run's weight
    average, calibrated on ``labelled`` keeping the synthetic F1 on ``synthetic_photos`` at the floor
    (without ``labelled``: calibrated on synthetic damage over ``synthetic_photos`` alone).
    Returns the new card. ``dest`` must not exist; it appears complete or not at all."""
    state = torch.load(Path(run) / "checkpoint.pt", map_location="cpu", weights_only=True)
    if state["stage"] != "detector":
        raise ValueError(f"{run} is a {state['stage']} run, not a detector run")
    detector = dict(state["nets"].get("U_ema", state["nets"]["U"]))
    width_log2 = CONFIGS[state["config"]].arch.detector_width_log2
    card = read_card(weights)
    card.setdefault("networks", {})["detector"] = {"width_log2": width_log2}
    card.setdefault("steps", {})["detector"] = int(state["step"])
    card["detector_run"] = {"config": state["config"], "steps": int(state["step"])}
    with staged_copy(weights, dest, ("detector",)) as staging:
        put_network(staging, card, "detector", detector)
        if labelled is not None:
            calibration = calibrate_on_real(ModelBank(SafetensorsSource(staging), torch.device("cpu")), labelled,
                                            synthetic_photos)
            detector[BIAS_KEY] = detector[BIAS_KEY] + calibration.logit_shift
            card["detector_calibration"] = calibration.to_json()
        else:
            if not synthetic_photos:
                raise ValueError("calibrating on synthetic damage needs photos")
            detector, synthetic = calibrate_detector(detector, width_log2, synthetic_photos)
            card["detector_calibration"] = synthetic.to_json()
        put_network(staging, card, "detector", detector)
    return card
