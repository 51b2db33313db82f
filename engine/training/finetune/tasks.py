"""The three fine-tuning objectives, each starting from the networks of a weight source.

Shapes come from the source (``network_kwargs``: our cards; empty = the official shapes), so lite,
tiny and official weights all fine-tune. Loss terms follow how the base was trained: weights whose
pipeline output is tone-anchored (``output_tone`` "match-input" or "predicted") are judged tone-anchored, official
ones on their raw output (see engine.core.tone).

* ``DetectorTask``: the user's masks as labels; half of every batch gets synthetic structured damage
  drawn over the user's own photos (label = the union), so the detector keeps what it knew. BatchNorm
  layers stay in eval mode: batches of 2-8 crops would give noisy statistics and overwrite the
  running averages learned on large batches; training on the stored statistics is also exactly the
  network the pipeline runs.
* ``DomainTask``: VAE_A on the user's scans (R) and synthetic old photos (X) with a fresh latent
  discriminator; the encoder learns to place the scans' codes where synthetic codes lie (the paper's
  alignment). An anchor term keeps X codes where the *base* encoder put them, because the mapping,
  which is not retrained here, was trained on those codes.
* ``MappingTask``: both mappings on the user's clean photos degraded synthetically, each toward its
  own decoder (official VAE_B_quality and VAE_B_scratch differ).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torch import nn

from engine.core.detection import OFFICIAL_THRESHOLD, detect_scratches
from engine.core.metrics import detection_scores, psnr
from engine.core.tone import apply_output_tone, match_tone
from engine.models.checkpoints import WeightSource, build_network
from engine.models.predictors import ANCHORED_TONES, TonePredictor
from engine.models.registry import BY_NAME
from engine.training.config import LossWeights
from engine.training.data import PhotoPool, step_rng, synthetic_batch
from engine.training.finetune.data import LabelledPhoto, labelled_crops
from engine.training.finetune.job import FinetuneSettings
from engine.training.losses import LatentDiscriminator, focal_loss, kl_to_unit, lsgan
from engine.training.trainers import (
    LATENT_NOISE,
    LUMA_WEIGHTS,
    adam,
    mapping_batch,
    to_images,
    to_tensor,
)

EVAL_CROPS = 8  # fixed crops scored before and after (domain, mapping)
PREVIEW_SIDE = 256


@dataclass
class Preview:
    """One preview pair for the Train tab: what goes in, what the current weights make of it."""

    title: str
    before: np.ndarray  # HxWx3 float32 in [0, 1]
    after: np.ndarray


def load_net(source: WeightSource, name: str, device: torch.device, trainable: bool) -> nn.Module:
    spec = BY_NAME[name]
    net = build_network(spec, source.state_dict(spec), device, source.network_kwargs(spec))
    return net.requires_grad_(trainable)


def freeze_batchnorm(net: nn.Module) -> None:
    for m in net.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


def losses_for(tone: str, anchored: float) -> LossWeights:
    """Tone-anchored L1 (plus a little raw L1) for our weights, raw L1 for official-style ones."""
    if tone in ANCHORED_TONES:
        return LossWeights(recon=anchored, raw=1.0, gan=0.0, fm=0.0)
    return LossWeights(recon=0.0, raw=10.0, gan=0.0, fm=0.0)


def image_l1(out: torch.Tensor, target: torch.Tensor, w: LossWeights) -> torch.Tensor:
    loss = w.raw * (out - target).abs().mean()
    if w.recon:
        loss = loss + w.recon * (match_tone(out, target) - target).abs().mean()
    return loss


def small(image: np.ndarray, side: int = PREVIEW_SIDE, multiple: int = 4) -> np.ndarray:
    """Downscale to at most ``side`` (long side), cropped to a multiple of ``multiple``."""
    h, w = image.shape[:2]
    scale = min(1.0, side / max(h, w))
    if scale < 1:
        image = cv2.resize(image, (max(multiple, round(w * scale)), max(multiple, round(h * scale))),
                           interpolation=cv2.INTER_AREA)
    h, w = image.shape[:2]
    image = image[:h - h % multiple, :w - w % multiple]
    return (image.astype(np.float32) / 255.0 if image.dtype == np.uint8 else image.astype(np.float32))


class FinetuneTask:
    """Trainable networks + optimisers (what a checkpoint holds), one optimisation step per call."""

    name = ""
    tuned: tuple[str, ...] = ()  # registry names written into the profile
    loss_keys: tuple[str, ...] = ()  # metrics worth a line on the loss chart

    def __init__(self, source: WeightSource, settings: FinetuneSettings, device: torch.device, seed: int) -> None:
        self.source, self.settings, self.device, self.seed = source, settings, device, seed
        self.nets: dict[str, nn.Module] = {}
        self.optims: dict[str, torch.optim.Optimizer] = {}

    def rng(self, step: int) -> np.random.Generator:
        """Batches are a function of (seed, step): a resumed run sees what an uninterrupted one would."""
        torch.manual_seed(int(step_rng(self.seed, self.name + "/torch", step).integers(2**62)))
        return step_rng(self.seed, "finetune-" + self.name, step)

    def train_mode(self) -> None:
        for net in self.nets.values():
            net.train()

    def eval_mode(self) -> None:
        for net in self.nets.values():
            net.eval()

    def step(self, step: int) -> dict[str, float]:
        raise NotImplementedError

    def export(self) -> dict[str, dict[str, torch.Tensor]]:
        return {name: {k: v.detach().cpu().contiguous() for k, v in self.nets[name].state_dict().items()}
                for name in self.tuned}

    def evaluate(self) -> dict[str, float]:
        """Scores on held-out data with the current weights (empty when nothing is held out)."""
        return {}

    def preview(self, count: int) -> list[Preview]:
        return []


class _OneNet:
    """What ``engine.core.detection`` needs of a ModelBank (``get``), over the network being trained, so
    held-out scores are computed by exactly the code a restore runs."""

    def __init__(self, net: nn.Module) -> None:
        self.net = net

    def get(self, name: str) -> nn.Module:
        return self.net


class DetectorTask(FinetuneTask):
    name = "detector"
    tuned = ("detector",)
    loss_keys = ("focal", "focal_user", "focal_synthetic")

    def __init__(self, source: WeightSource, train: list[LabelledPhoto], held: list[LabelledPhoto],
                 settings: FinetuneSettings, device: torch.device, seed: int = 0) -> None:
        super().__init__(source, settings, device, seed)
        if not train:
            raise ValueError("no labelled photos to train on")
        self.train, self.held = train, held
        self.nets = {"detector": load_net(source, "detector", device, trainable=True)}
        self.optims = {"detector": adam(self.nets["detector"].parameters(), settings.lr)}
        self.luma = LUMA_WEIGHTS.to(device)

    def train_mode(self) -> None:
        super().train_mode()
        freeze_batchnorm(self.nets["detector"])

    def step(self, step: int) -> dict[str, float]:
        rng = self.rng(step)
        b, size = self.settings.batch, self.settings.crop
        n_user = b - b // 2
        rgb, masks = labelled_crops(self.train, rng, b, size)
        degraded, synthetic = synthetic_batch(rgb[n_user:], rng, structured=True)
        rgb[n_user:], masks[n_user:] = degraded, masks[n_user:] | synthetic
        x = (to_tensor(rgb, self.device) * self.luma).sum(1, keepdim=True)
        target = torch.from_numpy(masks.astype(np.float32))[:, None].to(self.device)
        logits = self.nets["detector"](x)
        loss = focal_loss(logits, target)
        opt = self.optims["detector"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            user = focal_loss(logits[:n_user], target[:n_user]).item()
            synth = focal_loss(logits[n_user:], target[n_user:]).item()
        return {"focal": loss.item(), "focal_user": user, "focal_synthetic": synth}

    def probabilities(self, photo: LabelledPhoto) -> np.ndarray:
        return detect_scratches(_OneNet(self.nets["detector"]), photo.eval_rgb, self.settings.detect_side)

    def evaluate(self) -> dict[str, float]:
        if not self.held:
            return {}
        self.eval_mode()
        try:
            probs = [self.probabilities(p).ravel() for p in self.held]
        finally:
            self.train_mode()
        truth = np.concatenate([p.eval_mask.ravel() for p in self.held])
        scores = detection_scores(np.concatenate(probs), truth, OFFICIAL_THRESHOLD)
        return {**scores, "photos": float(len(self.held))}

    def preview(self, count: int) -> list[Preview]:
        """The user's mask (green) beside what the detector finds now (red), on held-out photos."""
        photos = (self.held or self.train)[:count]
        self.eval_mode()
        try:
            out = []
            for p in photos:
                found = self.probabilities(p) >= OFFICIAL_THRESHOLD
                out.append(Preview(p.name, small(_overlay(p.eval_rgb, p.eval_mask, (0.1, 0.9, 0.2))),
                                   small(_overlay(p.eval_rgb, found, (1.0, 0.15, 0.1)))))
            return out
        finally:
            self.train_mode()


def _overlay(rgb: np.ndarray, mask: np.ndarray, colour: tuple[float, float, float]) -> np.ndarray:
    out = rgb.copy()
    out[mask] = 0.4 * out[mask] + 0.6 * np.asarray(colour, np.float32)
    return out


def fixed_crops(photos: list[np.ndarray], size: int, count: int, seed: int) -> np.ndarray:
    """The same crops every time (scores before and after are comparable)."""
    return PhotoPool(photos).crops(np.random.default_rng(seed), count, size)


def restore_small(vae_a: nn.Module, mapping: nn.Module, vae_b: nn.Module, rgb: np.ndarray, tone: str,
                  mask: np.ndarray | None = None, predictor: TonePredictor | None = None) -> np.ndarray:
    """Quality (or, with ``mask``, scratch) restoration of a small photo batch (B,H,W,3) with the given
    networks, as the pipeline does it untiled (holes white, the output tone the weights ask for)."""
    device = next(vae_a.parameters()).device
    originals = list(rgb)
    rgb = rgb.copy()
    mask_t = None
    if mask is not None:
        rgb[mask] = 1.0
        mask_t = torch.from_numpy(mask.astype(np.float32))[:, None].to(device)
    with torch.no_grad():
        x = to_tensor(rgb, device)
        out = vae_b.decode(mapping(vae_a.encode(x), mask_t))
        out = apply_output_tone(out, tone, x, originals, predictor, None if mask_t is None else (mask_t < 0.5))
    return to_images(out)


class DomainTask(FinetuneTask):
    name = "domain"
    tuned = ("VAE_A_quality",)
    loss_keys = ("recon_l1", "align", "anchor_l1", "latent_d")

    def __init__(self, source: WeightSource, scans: PhotoPool, held: list[np.ndarray], clean: PhotoPool,
                 settings: FinetuneSettings, device: torch.device, seed: int = 0) -> None:
        super().__init__(source, settings, device, seed)
        self.scans, self.held, self.clean = scans, held, clean
        self.tone, self.predictor = source.output_tone(), source.tone_predictor()
        self.w = losses_for(self.tone, anchored=10.0)
        vae = load_net(source, "VAE_A_quality", device, trainable=True)
        self.anchor = load_net(source, "VAE_A_quality", device, trainable=False)
        channels = vae.encoder[1].out_channels
        torch.manual_seed(seed)  # the fresh discriminator starts alike on every run
        self.nets = {"VAE_A_quality": vae, "latent_D": LatentDiscriminator(channels).to(device)}
        self.optims = {k: adam(v.parameters(), settings.lr) for k, v in self.nets.items()}
        self._restorer: tuple[nn.Module, nn.Module] | None = None

    def train_mode(self) -> None:
        super().train_mode()
        self.anchor.eval()

    def batch(self, rng: np.random.Generator) -> tuple[np.ndarray, int]:
        b, size = self.settings.batch, self.settings.crop
        n_real = b // 2
        real = self.scans.crops(rng, n_real, size)
        synthetic, _ = synthetic_batch(self.clean.crops(rng, b - n_real, size), rng, structured=True)
        return np.concatenate([real, synthetic]), n_real

    def step(self, step: int) -> dict[str, float]:
        vae, disc, w = self.nets["VAE_A_quality"], self.nets["latent_D"], self.w
        batch, n = self.batch(self.rng(step))
        x = to_tensor(batch, self.device)
        z = vae.encode(x)
        recon = vae.decode(z + LATENT_NOISE * torch.randn_like(z))
        zd = z.detach()  # the discriminator learns real (scan) codes from synthetic ones
        d_loss = lsgan(disc(zd[:n]), True) + lsgan(disc(zd[n:]), False)
        self.optims["latent_D"].zero_grad(set_to_none=True)
        d_loss.backward()
        self.optims["latent_D"].step()
        with torch.no_grad():
            z_base = self.anchor.encode(x[n:])
        anchor = (z[n:] - z_base).abs().mean()
        align = lsgan(disc(z[:n]), False)  # scans' codes should pass for synthetic ones
        recon_loss = image_l1(recon, x, w)
        g_loss = recon_loss + w.kl * kl_to_unit(z) + w.align * align + w.latent * anchor
        self.optims["VAE_A_quality"].zero_grad(set_to_none=True)
        g_loss.backward()
        self.optims["VAE_A_quality"].step()
        return {"recon_l1": (recon - x).abs().mean().item(), "align": align.item(), "anchor_l1": anchor.item(),
                "latent_d": d_loss.item(), "loss": g_loss.item()}

    def _eval_batches(self) -> tuple[np.ndarray, np.ndarray]:
        scans = self.held or self.scans.photos
        real = fixed_crops(scans, self.settings.crop, EVAL_CROPS, 1234)
        clean = fixed_crops(self.clean.photos, self.settings.crop, EVAL_CROPS, 4321)
        synthetic, _ = synthetic_batch(clean, np.random.default_rng(99), structured=True)
        return real, synthetic

    def evaluate(self) -> dict[str, float]:
        """``domain_gap``: how far the scans' latent statistics are from synthetic old photos' (mean
        per-channel difference of means and of spreads, in units of the synthetic spread; lower =
        the mapping sees scans like what it was trained on); ``anchor_l1``: how far synthetic codes
        moved from the base encoder's (small = the mapping still fits)."""
        real, synthetic = self._eval_batches()
        vae = self.nets["VAE_A_quality"]
        vae.eval()
        try:
            with torch.no_grad():
                zr = vae.encode(to_tensor(real, self.device))
                zx = vae.encode(to_tensor(synthetic, self.device))
                zb = self.anchor.encode(to_tensor(synthetic, self.device))
                recon = vae.decode(zr)
        finally:
            vae.train()
        mr, sr = zr.mean(dim=(0, 2, 3)), zr.std(dim=(0, 2, 3))
        mx, sx = zx.mean(dim=(0, 2, 3)), zx.std(dim=(0, 2, 3))
        gap = (((mr - mx).abs() + (sr - sx).abs()) / (sx + 1e-6)).mean().item()
        real_t = to_tensor(real, self.device)
        return {"domain_gap": gap, "anchor_l1": (zx - zb).abs().mean().item(),
                "recon_l1_scans": (recon - real_t).abs().mean().item(), "held_out": float(len(self.held))}

    def preview(self, count: int) -> list[Preview]:
        """Held-out scans restored (quality mode) through the encoder being tuned."""
        if self._restorer is None:
            self._restorer = (load_net(self.source, "mapping_quality", self.device, False),
                              load_net(self.source, "VAE_B_quality", self.device, False))
        mapping, vae_b = self._restorer
        vae = self.nets["VAE_A_quality"]
        vae.eval()
        try:
            out = []
            for i, scan in enumerate((self.held or self.scans.photos)[:count]):
                img = small(scan)
                out.append(Preview(f"scan {i + 1}", img, restore_small(vae, mapping, vae_b, img[None], self.tone,
                                                                      predictor=self.predictor)[0]))
            return out
        finally:
            vae.train()


class MappingTask(FinetuneTask):
    name = "mapping"
    tuned = ("mapping_quality", "mapping_scratch")
    loss_keys = ("quality_latent_l1", "quality_image_l1", "scratch_latent_l1", "scratch_image_l1")
    MODES = ("quality", "scratch")

    def __init__(self, source: WeightSource, clean: PhotoPool, held: list[np.ndarray], settings: FinetuneSettings,
                 device: torch.device, seed: int = 0) -> None:
        super().__init__(source, settings, device, seed)
        self.clean, self.held = clean, held
        self.tone, self.predictor = source.output_tone(), source.tone_predictor()
        self.w = losses_for(self.tone, anchored=4.0)
        self.vae_a = load_net(source, "VAE_A_quality", device, trainable=False)
        self.vae_b = {m: load_net(source, f"VAE_B_{m}", device, trainable=False) for m in self.MODES}
        self.nets = {f"mapping_{m}": load_net(source, f"mapping_{m}", device, trainable=True) for m in self.MODES}
        self.optims = {k: adam(v.parameters(), self.settings.lr) for k, v in self.nets.items()}

    def train_mode(self) -> None:
        super().train_mode()
        self.vae_a.eval()
        for net in self.vae_b.values():
            net.eval()

    def step(self, step: int) -> dict[str, float]:
        rng = self.rng(step)
        clean_np = self.clean.crops(rng, self.settings.batch, self.settings.crop)
        y, mask, degraded, _ = mapping_batch(clean_np, rng, self.device)
        with torch.no_grad():
            inputs = {name: self.vae_a.encode(x) for name, x in degraded.items()}
        metrics: dict[str, float] = {}
        for m in self.MODES:
            with torch.no_grad():
                target = self.vae_b[m].encode(y)
            mapped = self.nets[f"mapping_{m}"](inputs[m], mask if m == "scratch" else None)
            img = self.vae_b[m].decode(mapped)
            latent_l1 = (mapped - target).abs().mean()
            loss = self.w.latent * latent_l1 + image_l1(img, y, self.w)
            opt = self.optims[f"mapping_{m}"]
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            metrics[f"{m}_latent_l1"] = latent_l1.item()
            metrics[f"{m}_image_l1"] = (img - y).abs().mean().item()
        return metrics

    def _eval_set(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        clean = fixed_crops(self.held or self.clean.photos, self.settings.crop, EVAL_CROPS, 2468)
        rng = np.random.default_rng(77)
        plain, _ = synthetic_batch(clean, rng, structured=False)
        scratched, masks = synthetic_batch(clean, rng, structured=True)
        return clean, plain, scratched, masks

    def evaluate(self) -> dict[str, float]:
        """PSNR (dB) of fixed held-out crops restored from fixed synthetic damage, per mode."""
        clean, plain, scratched, masks = self._eval_set()
        self.eval_mode()
        try:
            out_q = restore_small(self.vae_a, self.nets["mapping_quality"], self.vae_b["quality"], plain, self.tone,
                                  predictor=self.predictor)
            out_s = restore_small(self.vae_a, self.nets["mapping_scratch"], self.vae_b["scratch"], scratched,
                                  self.tone, masks, self.predictor)
        finally:
            self.train_mode()
        return {"psnr_quality": float(np.mean([psnr(a, b) for a, b in zip(out_q, clean)])),
                "psnr_scratch": float(np.mean([psnr(a, b) for a, b in zip(out_s, clean)])),
                "held_out": float(len(self.held))}

    def preview(self, count: int) -> list[Preview]:
        """Held-out clean photos with fixed synthetic damage, restored in scratch mode."""
        self.eval_mode()
        try:
            out = []
            for i, photo in enumerate((self.held or self.clean.photos)[:count]):
                img = small(photo)
                damaged, mask = synthetic_batch(img[None], np.random.default_rng(500 + i), structured=True)
                restored = restore_small(self.vae_a, self.nets["mapping_scratch"], self.vae_b["scratch"], damaged,
                                         self.tone, mask, self.predictor)
                out.append(Preview(f"photo {i + 1}", damaged[0], restored[0]))
            return out
        finally:
            self.train_mode()
