"""Training the full-resolution refinement (``engine.models.networks.refine``) behind a frozen chain.

The chain is what the refinement will follow in the app: the detector, VAEs and mappings of a
weights folder (``train refine --weights DIR``), run exactly as the pipeline runs them (detected
mask at the weights' threshold, the chain in scratch mode, or in quality mode with no mask for a
quarter of the batches). Only the refinement learns. What it sees per crop:

* the damaged crop, holes filled white (the chain's input), with realistic damage as the
  benchmark draws it (``degrade(..., damage="realistic")``: a mixed draw, or one damage family);
* the chain's output with a tone: half the batches the clean crop's (what correcting fading aims
  at), half the damaged crop's own global and local tone (the app's colour-faithful default);
* the mask the pipeline would use: the detector's (it misses most thin cracks, which is what the
  refinement must learn to remove), for 30 % of the crops joined by the true mask (brushed masks).

Loss: tone-blind (the pipeline re-anchors the refinement's output to the chosen tone) L1, L1 of
image gradients (edges, not just flat colour) and 1 - SSIM. No adversarial term: on one CPU core
the run is a few thousand steps, too short for a discriminator to pay (lite's other stages drop
it too). A weight average (``R_ema``) is what export ships.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from engine.core.detection import OFFICIAL_THRESHOLD
from engine.core.tone import keep_local_colour, match_tone
from engine.core.translation import Mode, translate
from engine.degradation.degrade import FAMILIES, degrade
from engine.degradation.overlays import OverlayLibrary
from engine.models.checkpoints import ModelBank, SafetensorsSource
from engine.models.networks.refine import RefineNet
from engine.training.config import TrainConfig
from engine.training.data import PhotoPool
from engine.training.trainers import LUMA_WEIGHTS, Trainer, adam, to_images, to_tensor

EMA_DECAY = 0.998  # a short run: the average spans about the last 500 steps
QUALITY_SHARE = 0.25  # batches restored in quality mode (no mask), as a restore without scratch mode is
FAMILY_SHARE = 0.45  # crops damaged with one family only (the rest: the mixed draw)
TRUE_MASK_SHARE = 0.3  # crops whose mask also holds the true damage (a user's brushed mask)
PHOTO_TONE_SHARE = 0.5  # batches whose chain output has the damaged crop's tone (the app's default)
PHOTO_TONE_SIGMA = 4.0  # px: keep_local_colour's scale for a 384-512 px photo (1 % of its short side)
GRADIENT_WEIGHT = 0.5
SSIM_WEIGHT = 0.2


def refine_batch(clean: np.ndarray, rng: np.random.Generator, overlays: OverlayLibrary | None
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Damage each clean crop as the benchmark does: (damaged (B,H,W,3), true masks (B,H,W) bool,
    which crops' masks join the detector's (B,) bool)."""
    degraded, masks = [], []
    for img in clean:
        family = str(rng.choice(FAMILIES)) if rng.random() < FAMILY_SHARE else None
        d = degrade(img, int(rng.integers(2**31)), damage="realistic", overlays=overlays, family=family)
        degraded.append(d.degraded)
        masks.append(d.mask)
    return np.stack(degraded).astype(np.float32), np.stack(masks), rng.random(len(clean)) < TRUE_MASK_SHARE


def ssim(a: torch.Tensor, b: torch.Tensor, window: int = 7) -> torch.Tensor:
    """Mean SSIM of (N,C,H,W) images in [-1, 1] (box window; differentiable)."""
    a, b = (a + 1) / 2, (b + 1) / 2
    c1, c2 = 0.01**2, 0.03**2
    pool = lambda t: F.avg_pool2d(t, window, 1, window // 2, count_include_pad=False)  # noqa: E731
    mu_a, mu_b = pool(a), pool(b)
    var_a, var_b = pool(a * a) - mu_a**2, pool(b * b) - mu_b**2
    cov = pool(a * b) - mu_a * mu_b
    return (((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))).mean()


def gradients(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return t[..., :, 1:] - t[..., :, :-1], t[..., 1:, :] - t[..., :-1, :]


def refine_loss(refined: torch.Tensor, clean: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
    """Tone-blind: the refined output gets the clean crop's global tone before it is compared."""
    toned = match_tone(refined, clean)
    l1 = (toned - clean).abs().mean()
    grad = sum((g - h).abs().mean() for g, h in zip(gradients(toned), gradients(clean)))
    structure = ssim(toned, clean)
    loss = l1 + GRADIENT_WEIGHT * grad + SSIM_WEIGHT * (1 - structure)
    return loss, {"l1": l1.item(), "grad": grad.item(), "ssim": structure.item()}


class RefineTrainer(Trainer):
    """The refinement network ``R`` behind the frozen networks of a weights folder."""

    stage = "refine"

    def __init__(self, config: TrainConfig, device: torch.device, clean: PhotoPool, weights: Path, seed: int = 0,
                 overlays: OverlayLibrary | None = None) -> None:
        super().__init__(config, device, seed)
        self.clean = clean
        self.overlays = overlays if overlays is not None else OverlayLibrary.default()
        self.chain = ModelBank(SafetensorsSource(Path(weights)), device)
        self.rows = self.chain.source.attention_rows()
        for name in ("detector", "VAE_A_quality", "mapping_scratch", "VAE_B_scratch", "mapping_quality",
                     "VAE_B_quality"):
            self.chain.get(name).requires_grad_(False)  # loads (and validates) them now, not at step one
        net = RefineNet(**config.arch.network_kwargs()["refine"]).to(device)
        self.nets = {"R": net, "R_ema": copy.deepcopy(net).requires_grad_(False)}
        self.optims = {"R": adam(net.parameters(), self.cfg.lr)}

    def data(self, step: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, bool, bool]:
        """(clean, damaged, true masks, true-mask flags, quality mode?, photo tone?)."""
        rng = self.rng(step)
        clean = self.clean.crops(rng, self.cfg.batch, self.cfg.crop)
        damaged, masks, with_true = refine_batch(clean, rng, self.overlays)
        return clean, damaged, masks, with_true, bool(rng.random() < QUALITY_SHARE), bool(rng.random() < PHOTO_TONE_SHARE)

    @torch.no_grad()
    def chain_output(self, damaged: np.ndarray, masks: np.ndarray, with_true: np.ndarray, quality: bool,
                     photo_tone: bool, clean: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """What the pipeline hands the refinement: (photo with holes white, tone-anchored chain
        output, holes), each (B,C,H,W) on the device."""
        photo = to_tensor(damaged, self.device)
        if quality:
            holes = torch.zeros_like(photo[:, :1])
        else:
            grey = (photo * LUMA_WEIGHTS.to(self.device)).sum(1, keepdim=True)
            holes = (torch.sigmoid(self.chain.get("detector")(grey)) > OFFICIAL_THRESHOLD).float()
            true = torch.from_numpy((masks & with_true[:, None, None]).astype(np.float32))[:, None].to(self.device)
            holes = torch.maximum(holes, true)
            photo = torch.where(holes > 0, torch.ones_like(photo), photo)
        mode = Mode.QUALITY if quality else Mode.SCRATCH
        generated = translate(self.chain, photo, None if quality else holes, mode, attention_rows=self.rows).generated
        valid = 1 - holes
        if photo_tone:
            toned = keep_local_colour(match_tone(generated, photo, valid), photo, valid, sigma=PHOTO_TONE_SIGMA)
        else:
            toned = match_tone(generated, clean, valid)
        return photo, toned.clamp(-1, 1), holes

    def learn(self, batch) -> dict[str, float]:
        clean_np, damaged, masks, with_true, quality, photo_tone = batch
        clean = to_tensor(clean_np, self.device)
        photo, restored, holes = self.chain_output(damaged, masks, with_true, quality, photo_tone, clean)
        refined = self.run(self.nets["R"], photo, restored, holes)
        loss, metrics = refine_loss(refined, clean)
        self.optimise("R", loss)
        self.update_average()
        with torch.no_grad():  # how far the start (the fixed blend) and the chain alone are from the target
            metrics["l1_chain"] = (match_tone(restored, clean) - clean).abs().mean().item()
            metrics["l1_start"] = (match_tone(RefineNet.blend(photo, restored, holes), clean) - clean
                                   ).abs().mean().item()
        self._last = (to_images(photo), to_images(restored), to_images(refined), clean_np)
        return {"loss": loss.item(), **metrics, "holes": holes.mean().item()}

    @torch.no_grad()
    def update_average(self) -> None:
        averaged, current = self.nets["R_ema"].state_dict(), self.nets["R"].state_dict()
        for name, value in current.items():
            averaged[name].mul_(EMA_DECAY).add_(value, alpha=1.0 - EMA_DECAY)

    def export(self) -> dict[str, dict[str, torch.Tensor]]:
        return {"refine": {k: v.detach().cpu() for k, v in self.nets["R_ema"].state_dict().items()}}
