"""The optional ``face`` stage: our own (narrow) SPADE face generator, ``face_256`` in exported weights.

Degraded aligned face -> clean aligned face, on faces cut from the training photos with the
pipeline's detector and alignment (``face_data``). Every step draws faces by a seed derived from
the step (so a resumed run sees the batches an uninterrupted one would), flips half of them (the
template is left-right symmetric, so a mirrored aligned face is still aligned) and damages each
afresh at its photo's own resolution (``face_data.degrade_face``): a hundred faces give an endless
supply of pairs.

Loss: L1 after giving the output the target's per-channel mean and spread (the pipeline
histogram-matches every generated face to its own crop, so the generator's global tone is thrown
away and should not cost capacity), a light raw L1 that keeps the output in range, and optionally
the LSGAN + feature-matching terms of the other stages (off in ``lite``: on one core the
discriminator costs about a tenth more per step, and adversarial terms pay off only in far longer
runs than an hour).

The network is the official generator with narrower widths; the normalisation layers use batch
statistics and the spectral norms are power-iterated while training, as in the official training
(inference never does either; see ``engine.models.networks.face``).
"""

from __future__ import annotations

import numpy as np
import torch

from engine.core.tone import match_tone
from engine.models.networks.face import (
    FaceGenerator,
    set_training_statistics,
    update_spectral_norms,
)
from engine.training.config import TrainConfig
from engine.training.face_data import FACE_SIZE, FaceSet, degrade_face
from engine.training.losses import PatchDiscriminator
from engine.training.trainers import (
    Trainer,
    adam,
    to_images,
    to_tensor,
    uses_image_discriminator,
)

WARMUP_POWER_ITERATIONS = 20  # a fresh network's random u, v give a poor sigma until iterated


class FaceTrainer(Trainer):
    """``face_256`` at the configuration's widths (``Architecture.face_ngf`` / ``face_spade_hidden``)."""

    stage = "face"

    def __init__(self, config: TrainConfig, device: torch.device, faces: FaceSet, seed: int = 0) -> None:
        super().__init__(config, device, seed)
        if not len(faces):
            raise ValueError("no faces to train on: the detector found none in the training photos")
        if faces.faces.shape[1] != FACE_SIZE:
            raise ValueError(f"faces are {faces.faces.shape[1]} px, the face_256 generator needs {FACE_SIZE}")
        self.faces = faces
        a = config.arch
        G = FaceGenerator(FACE_SIZE, a.face_ngf, a.face_spade_hidden)
        set_training_statistics(G, True)
        update_spectral_norms(G, WARMUP_POWER_ITERATIONS)
        self.nets = {"G": G.to(device)}
        self.optims = {"G": adam(G.parameters(), self.cfg.lr)}
        if uses_image_discriminator(self.cfg.loss):
            self.nets["D"] = PatchDiscriminator().to(device)
            self.optims["D"] = adam(self.nets["D"].parameters(), self.cfg.lr)

    def batch(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """(degraded, clean) HxWx3 float32 [0, 1] batches; the degraded faces are 8-bit like the
        pipeline's crops."""
        idx = rng.integers(len(self.faces), size=self.cfg.batch)
        clean, degraded = [], []
        for i in idx:
            face = self.faces.faces[i]
            if rng.random() < 0.5:
                face = face[:, ::-1]
            face = np.ascontiguousarray(face)
            damaged = degrade_face(face, float(self.faces.scales[i]), int(rng.integers(2**31)))
            clean.append(face.astype(np.float32) / 255.0)
            degraded.append(np.floor(damaged * 255.0 + 0.5) / 255.0)
        return np.stack(degraded).astype(np.float32), np.stack(clean)

    def data(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        return self.batch(self.rng(step))

    def learn(self, batch: tuple[np.ndarray, np.ndarray]) -> dict[str, float]:
        G, w = self.nets["G"], self.cfg.loss
        degraded_np, clean_np = batch
        x, y = to_tensor(degraded_np, self.device), to_tensor(clean_np, self.device)
        update_spectral_norms(G)
        out = self.run(G, x)
        metrics: dict[str, float] = {}
        if "D" in self.nets:
            metrics["d"] = self.discriminator_step(y, [out])
        l1 = (match_tone(out, y) - y).abs().mean()
        raw = (out - y).abs().mean()
        loss = w.recon * l1 + w.raw * raw
        if "D" in self.nets:
            loss = loss + self.adversarial_terms(out, y, w)
        self.optimise("G", loss)
        with torch.no_grad():
            metrics.update(l1=l1.item(), raw_l1=raw.item(), input_l1=(match_tone(x, y) - y).abs().mean().item(),
                           g=loss.item())
        self._last = (degraded_np, to_images(out), clean_np)
        return metrics

    def export(self) -> dict[str, dict[str, torch.Tensor]]:
        return {"face_256": {k: v.detach().cpu() for k, v in self.nets["G"].state_dict().items()}}
