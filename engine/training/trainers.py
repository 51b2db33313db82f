"""The four training stages. Each trainer owns its networks, optimisers and data and does one
optimisation step per ``step(i)`` call; ``engine.training.loop`` adds checkpointing, resume,
samples and progress around it.

A step is split in two: ``data(step)`` draws the batch as NumPy arrays on the CPU (crops and the
synthetic degradation, from the step's seed alone), ``learn(batch)`` runs the networks on the
trainer's device. The split lets data workers (``engine.training.workers``) prepare the batches
of later steps in other processes while the device learns; ``step(i)`` does both in-process.
Network calls go through ``run`` and updates through ``optimise`` (``engine.training.amp``), so
mixed precision on CUDA changes the forward passes only.

Loss weights are the paper's structure (reconstruction + KL + LSGAN for the VAEs, latent L1 +
LSGAN + feature matching for the mapping, focal loss for the detector); their values are tuned
for short CPU runs and stated next to each trainer.
"""

from __future__ import annotations

import copy

import cv2
import numpy as np
import torch
from torch import nn

from engine.core.tone import match_tone
from engine.degradation.overlays import OverlayLibrary
from engine.io.pixels import LUMA
from engine.models.networks.mapping import QualityMapping, ScratchMapping
from engine.models.networks.unet import ScratchUNet
from engine.models.networks.vae import VAEGenerator
from engine.models.registry import BY_NAME
from engine.training.amp import MixedPrecision
from engine.training.config import LossWeights, TrainConfig
from engine.training.data import PhotoPool, step_rng, synthetic_batch
from engine.training.labelled import LabelledPool
from engine.training.losses import (
    LatentDiscriminator,
    PatchDiscriminator,
    feature_matching,
    focal_loss,
    kl_to_unit,
    lsgan,
)

LUMA_WEIGHTS = torch.tensor(LUMA).view(1, 3, 1, 1)  # imageio's grey weights, for NCHW batches
LATENT_NOISE = 0.1  # std of the noise added to VAE latents in training


def to_tensor(batch: np.ndarray, device: torch.device) -> torch.Tensor:
    """(B,H,W,3) [0,1] -> (B,3,H,W) [-1,1]."""
    return torch.from_numpy(batch).permute(0, 3, 1, 2).to(device) * 2 - 1


def to_images(t: torch.Tensor) -> np.ndarray:
    return ((t.detach().float().cpu().clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 1).numpy()


def adam(params, lr: float) -> torch.optim.Adam:
    return torch.optim.Adam(params, lr=lr, betas=(0.5, 0.999))


def uses_image_discriminator(weights: LossWeights) -> bool:
    return weights.gan > 0 or weights.fm > 0


def chain_arrays(clean_np: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The degraded inputs of both mappings from clean crops, as arrays: "quality" (unstructured
    damage), "scratch" (structured, holes filled white as the networks expect) and the hole masks."""
    plain_np, _ = synthetic_batch(clean_np, rng, structured=False)
    scratched_np, masks_np = synthetic_batch(clean_np, rng, structured=True)
    scratched_np = np.where(masks_np[..., None], 1.0, scratched_np).astype(np.float32)
    return plain_np, scratched_np, masks_np


def chain_tensors(clean_np: np.ndarray, plain_np: np.ndarray, scratched_np: np.ndarray, masks_np: np.ndarray,
                  device: torch.device) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """``chain_arrays``' batch on the device: the clean target, the hole mask, the degraded inputs."""
    mask = torch.from_numpy(masks_np.astype(np.float32))[:, None].to(device)
    degraded = {"quality": to_tensor(plain_np, device), "scratch": to_tensor(scratched_np, device)}
    return to_tensor(clean_np, device), mask, degraded


def mapping_batch(clean_np: np.ndarray, rng: np.random.Generator, device: torch.device
                  ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor], np.ndarray]:
    """One mapping batch from clean crops: the clean target, the hole mask, the degraded inputs of
    both mappings and the scratched images as arrays (for sample grids)."""
    plain_np, scratched_np, masks_np = chain_arrays(clean_np, rng)
    return (*chain_tensors(clean_np, plain_np, scratched_np, masks_np, device), scratched_np)


def chain_loss(mapped: torch.Tensor, image: torch.Tensor, target_latent: torch.Tensor, clean: torch.Tensor,
               w: LossWeights) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The restoration chain's fidelity loss (mapping and joint stages): latent L1 to VAE_B's code of
    the clean photo, tone-anchored and raw image L1. Returns (loss, latent L1, anchored image L1)."""
    latent_l1 = (mapped - target_latent).abs().mean()
    image_l1 = (match_tone(image, clean) - clean).abs().mean()
    loss = w.latent * latent_l1 + w.recon * image_l1 + w.raw * (image - clean).abs().mean()
    return loss, latent_l1, image_l1


class Trainer:
    """Base: named networks and optimisers (what a checkpoint holds) and the stage's data seed."""

    stage = ""

    def __init__(self, config: TrainConfig, device: torch.device, seed: int = 0) -> None:
        self.config, self.device, self.seed = config, device, seed
        self.cfg = config.stage(self.stage)
        torch.manual_seed(seed)  # networks built after this start from the same weights every run
        self.nets: dict[str, nn.Module] = {}
        self.optims: dict[str, torch.optim.Optimizer] = {}
        self.amp = MixedPrecision(device)  # float32; train --amp swaps in autocast (CUDA only)

    def rng(self, step: int) -> np.random.Generator:
        """The step's data randomness (crops, damage): a function of (seed, stage, step) alone."""
        return step_rng(self.seed, self.stage, step)

    def seed_torch(self, step: int) -> None:
        """The step's network-side randomness (latent noise), seeded apart from the data's so a
        batch made in a worker process leaves the same torch state as one made here."""
        torch.manual_seed(int(step_rng(self.seed, self.stage + "/torch", step).integers(2**62)))

    def data(self, step: int) -> tuple:
        """The step's batch as NumPy arrays (and plain numbers), from ``rng(step)`` only. Data
        workers call it in other processes: it must not touch the networks or torch's RNG."""
        raise NotImplementedError

    def learn(self, batch: tuple) -> dict[str, float]:
        """One optimisation step on ``data``'s batch; returns the step's metrics."""
        raise NotImplementedError

    def step(self, step: int, batch: tuple | None = None) -> dict[str, float]:
        """One optimisation step; ``batch`` is ``data(step)`` when a data worker made it already."""
        if batch is None:
            batch = self.data(step)
        self.seed_torch(step)
        return self.learn(batch)

    def run(self, fn, *args):
        """A network call (under autocast when mixed precision is on; outputs float32)."""
        return self.amp.run(fn, *args)

    def optimise(self, name: str, loss: torch.Tensor) -> None:
        """Zero grads, backward and step of optimiser ``name`` (loss-scaled under fp16)."""
        self.amp.optimise(name, self.optims[name], loss)

    def discriminator_step(self, real: torch.Tensor, fakes: list[torch.Tensor]) -> float:
        """One LSGAN update of the image discriminator ``D``: real photos vs (detached) generated ones."""
        D = self.nets["D"]
        loss = lsgan(self.run(D, real)[-1], True) + sum(lsgan(self.run(D, f.detach())[-1], False)
                                                        for f in fakes) / len(fakes)
        self.optimise("D", loss)
        return loss.item()

    def adversarial_terms(self, fake: torch.Tensor, real: torch.Tensor, weights: LossWeights) -> torch.Tensor:
        """Generator side: fool the discriminator ``D``, and match its features on real photos."""
        fake_feats, real_feats = self.run(self.nets["D"], fake), self.run(self.nets["D"], real)
        return weights.gan * lsgan(fake_feats[-1], True) + weights.fm * feature_matching(fake_feats, real_feats)

    def chain_data(self, step: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The batch of the stages that train the restoration chains (mapping, joint): the step's
        clean crops plus ``chain_arrays`` of them; needs ``self.clean``."""
        rng = self.rng(step)
        clean_np = self.clean.crops(rng, self.cfg.batch, self.cfg.crop)
        return (clean_np, *chain_arrays(clean_np, rng))

    def missing_from_checkpoint(self, name: str) -> None:
        """Resuming a checkpoint written before network ``name`` belonged to this stage."""
        raise KeyError(f"the checkpoint has no {name!r} network")

    def samples(self) -> np.ndarray:
        """A row-per-example grid (input | output | target) of the last batch, HxWx3 in [0, 1]."""
        rows = [np.concatenate(list(row), axis=1) for row in zip(*self._last)]
        return np.concatenate(rows[:4], axis=0)

    def export(self) -> dict[str, dict[str, torch.Tensor]]:
        """Registry network name -> state dict, for shipping as safetensors."""
        raise NotImplementedError


class VAETrainer(Trainer):
    """VAE_A on real old photos R and synthetic old photos X (with a latent discriminator aligning
    the two domains), or VAE_B on clean photos Y.

    Loss: L1 reconstruction (tone-anchored and/or raw), KL, optional LSGAN + feature matching,
    and the latent alignment (VAE_A only), weighted by the stage's ``LossWeights``. The latent
    noise (std 0.1) is the official fixed-variance VAE's, smaller than its std 1 because our runs
    are short and a decoder fighting strong noise stays blurry for thousands of steps.
    """

    def __init__(self, config: TrainConfig, device: torch.device, clean: PhotoPool, old: PhotoPool | None,
                 domain: str, seed: int = 0) -> None:
        self.stage = "vae-a" if domain == "A" else "vae-b"
        super().__init__(config, device, seed)
        self.clean, self.old, self.domain = clean, old, domain
        ch = config.arch.vae_channels
        self.nets = {"G": VAEGenerator(ch).to(device)}
        self.optims = {"G": adam(self.nets["G"].parameters(), self.cfg.lr)}
        if uses_image_discriminator(self.cfg.loss):
            self.nets["D"] = PatchDiscriminator().to(device)
            self.optims["D"] = adam(self.nets["D"].parameters(), self.cfg.lr)
        if domain == "A":
            self.nets["DL"] = LatentDiscriminator(ch).to(device)
            self.optims["DL"] = adam(self.nets["DL"].parameters(), self.cfg.lr)

    def data(self, step: int) -> tuple[np.ndarray, int]:
        """(crops (B,H,W,3), how many of them come first from real old photos)."""
        rng = self.rng(step)
        b, size = self.cfg.batch, self.cfg.crop
        if self.domain == "B":
            return self.clean.crops(rng, b, size), 0
        n_real = b // 2
        real_old = self.old.crops(rng, n_real, size)
        synthetic, _ = synthetic_batch(self.clean.crops(rng, b - n_real, size), rng, structured=True)
        return np.concatenate([real_old, synthetic]), n_real

    def learn(self, batch: tuple[np.ndarray, int]) -> dict[str, float]:
        G, w = self.nets["G"], self.cfg.loss
        x, n_real = to_tensor(batch[0], self.device), batch[1]
        z = self.run(G.encode, x)
        recon = self.run(G.decode, z + LATENT_NOISE * torch.randn_like(z))
        metrics: dict[str, float] = {}
        if "D" in self.nets:
            metrics["d"] = self.discriminator_step(x, [recon])
        if self.domain == "A":  # the latent discriminator learns to tell real (R) from synthetic (X) codes
            DL, zd = self.nets["DL"], z.detach()
            dl_loss = lsgan(self.run(DL, zd[:n_real]), True) + lsgan(self.run(DL, zd[n_real:]), False)
            self.optimise("DL", dl_loss)
            metrics["dl"] = dl_loss.item()
        l1 = (match_tone(recon, x) - x).abs().mean()
        g_loss = w.recon * l1 + w.raw * (recon - x).abs().mean() + w.kl * kl_to_unit(z)
        if "D" in self.nets:
            g_loss = g_loss + self.adversarial_terms(recon, x, w)
        metrics.update(l1=l1.item(), kl=kl_to_unit(z).item())
        if self.domain == "A":  # make synthetic latents indistinguishable from real ones (and vice versa)
            DL = self.nets["DL"]
            align = lsgan(self.run(DL, z[n_real:]), True) + lsgan(self.run(DL, z[:n_real]), False)
            g_loss = g_loss + w.align * align
            metrics["align"] = align.item()
        self.optimise("G", g_loss)
        self._last = (to_images(x), to_images(recon), to_images(x))
        metrics["g"] = g_loss.item()
        return metrics

    def export(self) -> dict[str, dict[str, torch.Tensor]]:
        state = {k: v.detach().cpu() for k, v in self.nets["G"].state_dict().items()}
        if self.domain == "A":
            return {"VAE_A_quality": state}
        return {"VAE_B_quality": state, "VAE_B_scratch": state}


class MappingTrainer(Trainer):
    """Both latent mappings with the VAEs frozen: ``quality`` on unstructured damage, ``scratch``
    (partial non-local block, hole mask) on structured damage.

    Loss: latent L1 to VAE_B's code of the clean photo, image L1 after VAE_B's decoder
    (tone-anchored and/or raw), optional LSGAN + feature matching (the feature-matching term of the
    image discriminator stands in for the paper's VGG perceptual loss, which needs ImageNet weights
    that are not available offline), weighted by the stage's ``LossWeights``.
    """

    stage = "mapping"

    def __init__(self, config: TrainConfig, device: torch.device, clean: PhotoPool, vae_a: VAEGenerator,
                 vae_b: VAEGenerator, seed: int = 0) -> None:
        super().__init__(config, device, seed)
        self.clean = clean
        self.vae_a = vae_a.to(device).eval().requires_grad_(False)
        self.vae_b = vae_b.to(device).eval().requires_grad_(False)
        a = config.arch
        self.nets = {
            "quality": QualityMapping(a.mapping_width, a.mapping_blocks, a.vae_channels).to(device),
            "scratch": ScratchMapping(a.mapping_width, a.mapping_blocks, a.nl_blocks, a.vae_channels).to(device),
        }
        self.optims = {"quality": adam(self.nets["quality"].parameters(), self.cfg.lr),
                       "scratch": adam(self.nets["scratch"].parameters(), self.cfg.lr)}
        if uses_image_discriminator(self.cfg.loss):
            self.nets["D"] = PatchDiscriminator().to(device)
            self.optims["D"] = adam(self.nets["D"].parameters(), self.cfg.lr)

    def data(self, step: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        return self.chain_data(step)

    def learn(self, batch: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]) -> dict[str, float]:
        clean_np, _, scratched_np, _ = batch
        y, mask, degraded = chain_tensors(*batch, self.device)
        with torch.no_grad():
            target = self.run(self.vae_b.encode, y)
            inputs = {name: self.run(self.vae_a.encode, x) for name, x in degraded.items()}
        w = self.cfg.loss
        outputs = {}
        for name in ("quality", "scratch"):
            mapped = self.run(self.nets[name], inputs[name], mask if name == "scratch" else None)
            outputs[name] = (mapped, self.run(self.vae_b.decode, mapped))
        metrics: dict[str, float] = {}
        if "D" in self.nets:
            metrics["d"] = self.discriminator_step(y, [img for _, img in outputs.values()])
        for name, (mapped, img) in outputs.items():
            loss, latent_l1, image_l1 = chain_loss(mapped, img, target, y, w)
            if "D" in self.nets:
                loss = loss + self.adversarial_terms(img, y, w)
            self.optimise(name, loss)
            metrics[f"{name}_latent_l1"] = latent_l1.item()
            metrics[f"{name}_image_l1"] = image_l1.item()
        self._last = (scratched_np, to_images(outputs["scratch"][1]), clean_np)
        return metrics

    def export(self) -> dict[str, dict[str, torch.Tensor]]:
        return {f"mapping_{n}": {k: v.detach().cpu() for k, v in self.nets[n].state_dict().items()}
                for n in ("quality", "scratch")}


EMA_DECAY = 0.999  # the detector's weight average spans about the last thousand steps


def face_points(pool: PhotoPool) -> list[tuple[int, float, float]]:
    """(photo index, x, y) of each eye and the mouth of every face found in the pool's photos
    (the face stage's detector), for crops centred on the hard negatives a detector must leave."""
    # MTCNN: loaded only by stages that want faces
    from engine.training.face_data import detect_landmarks

    points = []
    for index, photo in enumerate(pool.photos):
        for landmarks, _ in detect_landmarks(photo):
            for x, y in (landmarks[0], landmarks[1], (landmarks[3] + landmarks[4]) / 2):
                points.append((index, float(x), float(y)))
    return points


TEXT_FONTS = (cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_DUPLEX, cv2.FONT_HERSHEY_COMPLEX,
              cv2.FONT_HERSHEY_TRIPLEX, cv2.FONT_HERSHEY_SCRIPT_SIMPLEX, cv2.FONT_ITALIC | cv2.FONT_HERSHEY_COMPLEX)


def print_text(img: np.ndarray, rng: np.random.Generator) -> None:
    """Print a caption into a clean crop (in place): lettering on a photo is content, not damage,
    and thin bright strokes are what a crack detector most easily mistakes for cracks."""
    h, w = img.shape[:2]
    canvas = np.round(img * 255).astype(np.uint8)  # OpenCV draws text on 8-bit images only
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 .,-"
    for _ in range(int(rng.integers(1, 4))):
        text = "".join(letters[i] for i in rng.integers(0, len(letters), int(rng.integers(3, 16))))
        scale = float(rng.uniform(0.3, 1.2))
        colour = (int(rng.integers(215, 256)),) * 3 if rng.random() < 0.6 else (int(rng.integers(0, 50)),) * 3
        origin = (int(rng.integers(0, max(1, w // 2))), int(rng.integers(12, max(13, h))))
        cv2.putText(canvas, text, origin, TEXT_FONTS[int(rng.integers(len(TEXT_FONTS)))], scale, colour,
                    int(rng.integers(1, 3)), cv2.LINE_AA)
    img[:] = canvas.astype(np.float32) / 255.0


class DetectorTrainer(Trainer):
    """Scratch-detection U-Net on synthetic damage with exact masks, focal loss."""

    stage = "detector"

    def __init__(self, config: TrainConfig, device: torch.device, clean: PhotoPool, seed: int = 0,
                 overlays: OverlayLibrary | None = None, labelled: LabelledPool | None = None) -> None:
        super().__init__(config, device, seed)
        if self.cfg.real_crops > 0 and labelled is None:
            raise ValueError(f"the {config.name} detector trains on real damaged photos too; "
                             "give their reference masks with --real-masks (e.g. bench/real_masks)")
        self.clean = clean
        self.labelled = labelled if self.cfg.real_crops > 0 else None
        self.overlays = overlays if overlays is not None else OverlayLibrary.default()
        self.faces = face_points(clean) if self.cfg.face_crops > 0 else []
        unet = ScratchUNet(width_log2=config.arch.detector_width_log2).to(device)
        # "U_ema": an exponential moving average of U's weights, which is what export ships. Small
        # batches at a constant learning rate make single checkpoints noisy (held-out F1 moved by
        # +-0.04 between checkpoints a few thousand steps apart); the average is steadier.
        self.nets = {"U": unet, "U_ema": copy.deepcopy(unet).requires_grad_(False)}
        self.optims = {"U": adam(unet.parameters(), self.cfg.lr)}
        smallest = min(min(p.shape[:2]) for p in clean.photos)
        multiple = BY_NAME["detector"].traits.spatial_multiple
        self.large_crop = max(self.cfg.crop, min(2 * self.cfg.crop, smallest) // multiple * multiple)

    def crop_and_batch(self, step: int) -> tuple[int, int]:
        """Every other step: crops twice as large, a quarter as many (same pixels per step). Damage
        is drawn at the crop's scale (holes, corners and creases grow with the image), while the
        pipeline detects at 256 px on the short side; small crops alone leave the detector blind to
        the large holes it meets there."""
        if step % 2 == 0:
            return self.cfg.crop, self.cfg.batch
        return self.large_crop, max(1, self.cfg.batch * self.cfg.crop**2 // self.large_crop**2)

    def data(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        """(damaged crops (B,H,W,3), their exact damage masks (B,H,W) bool)."""
        rng = self.rng(step)
        crop, batch = self.crop_and_batch(step)
        clean_np = self.clean.crops(rng, batch, crop, around=self.faces, around_share=self.cfg.face_crops)
        for img in clean_np:
            if rng.random() < self.cfg.text_negatives:
                print_text(img, rng)
        degraded, masks = synthetic_batch(clean_np, rng, structured=True, realistic=self.cfg.realistic_damage,
                                          overlays=self.overlays)
        if self.labelled is not None:  # some crops are real damaged photos with their reference masks
            real = rng.random(batch) < self.cfg.real_crops
            if real.any():
                degraded[real], masks[real] = self.labelled.crops(rng, int(real.sum()), crop)
        return degraded, masks

    def learn(self, batch: tuple[np.ndarray, np.ndarray]) -> dict[str, float]:
        degraded, masks = batch
        x = (to_tensor(degraded, self.device) * LUMA_WEIGHTS.to(self.device)).sum(1, keepdim=True)
        target = torch.from_numpy(masks.astype(np.float32))[:, None].to(self.device)
        logits = self.run(self.nets["U"], x)
        loss = focal_loss(logits, target)
        self.optimise("U", loss)
        self.update_average()
        pred = logits.detach() > 0
        tp = float((pred & (target > 0)).sum())
        f1 = 2 * tp / max(float(pred.sum()) + float(target.sum()), 1.0)
        prob = torch.sigmoid(logits.detach()).repeat(1, 3, 1, 1).permute(0, 2, 3, 1).cpu().numpy()
        self._last = (degraded, prob, np.repeat(masks[..., None].astype(np.float32), 3, axis=3))
        return {"focal": loss.item(), "f1": f1}

    @torch.no_grad()
    def update_average(self) -> None:
        averaged, current = self.nets["U_ema"].state_dict(), self.nets["U"].state_dict()
        for name, value in current.items():
            if value.is_floating_point():
                averaged[name].mul_(EMA_DECAY).add_(value, alpha=1.0 - EMA_DECAY)
            else:
                averaged[name].copy_(value)

    def missing_from_checkpoint(self, name: str) -> None:
        if name != "U_ema":
            super().missing_from_checkpoint(name)
        self.nets["U_ema"].load_state_dict(self.nets["U"].state_dict())

    def export(self) -> dict[str, dict[str, torch.Tensor]]:
        return {"detector": {k: v.detach().cpu() for k, v in self.nets["U_ema"].state_dict().items()}}


class JointTrainer(Trainer):
    """Optional last stage (ours, not the paper's): both restoration chains fine-tuned end to end.

    The paper trains the mapping with both VAEs frozen, which needs long GPU runs before the
    mapped latents are good enough for VAE_B's decoder. On a CPU budget we then let the encoder
    (VAE_A), each mapping and its own copy of VAE_B's decoder (``VAE_B_quality`` /
    ``VAE_B_scratch``, which the official release also keeps separately) adapt to each other
    on image L1, with the mapping stage's latent L1 (targets from the frozen, original VAE_B) kept
    as a regulariser so the chain stays a latent translation. No discriminator: this stage is
    about fidelity. Starts from the vae-a, vae-b and mapping runs; resumes like every stage.
    """

    stage = "joint"
    CHAINS = ("quality", "scratch")

    def __init__(self, config: TrainConfig, device: torch.device, clean: PhotoPool, vae_a: VAEGenerator,
                 vae_b: VAEGenerator, mappings: dict[str, dict[str, torch.Tensor]], seed: int = 0) -> None:
        super().__init__(config, device, seed)
        self.clean = clean
        self.vae_b_target = copy.deepcopy(vae_b).to(device).eval().requires_grad_(False)
        a = config.arch
        self.nets = {
            "vae_a": vae_a.to(device).train(),
            "quality": QualityMapping(a.mapping_width, a.mapping_blocks, a.vae_channels).to(device),
            "scratch": ScratchMapping(a.mapping_width, a.mapping_blocks, a.nl_blocks, a.vae_channels).to(device),
            "vae_b_quality": copy.deepcopy(vae_b).to(device).train(),
            "vae_b_scratch": copy.deepcopy(vae_b).to(device).train(),
        }
        for name in self.CHAINS:
            self.nets[name].load_state_dict(mappings[name])
        params = [p for net in self.nets.values() for p in net.parameters()]
        self.optims = {"all": adam(params, self.cfg.lr)}

    def data(self, step: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        return self.chain_data(step)

    def learn(self, batch: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]) -> dict[str, float]:
        clean_np, _, scratched_np, _ = batch
        y, mask, degraded = chain_tensors(*batch, self.device)
        with torch.no_grad():
            target = self.run(self.vae_b_target.encode, y)
        w, metrics = self.cfg.loss, {}
        loss = torch.zeros((), device=self.device)
        images = {}
        for name in self.CHAINS:
            latent = self.run(self.nets["vae_a"].encode, degraded[name])
            mapped = self.run(self.nets[name], latent, mask if name == "scratch" else None)
            img = images[name] = self.run(self.nets[f"vae_b_{name}"].decode, mapped)
            chain, latent_l1, image_l1 = chain_loss(mapped, img, target, y, w)
            loss = loss + chain
            metrics[f"{name}_latent_l1"], metrics[f"{name}_image_l1"] = latent_l1.item(), image_l1.item()
        self.optimise("all", loss)
        self._last = (scratched_np, to_images(images["scratch"]), clean_np)
        return metrics

    def export(self) -> dict[str, dict[str, torch.Tensor]]:
        def cpu(net: nn.Module) -> dict[str, torch.Tensor]:
            return {k: v.detach().cpu() for k, v in net.state_dict().items()}

        return {"VAE_A_quality": cpu(self.nets["vae_a"]), "mapping_quality": cpu(self.nets["quality"]),
                "mapping_scratch": cpu(self.nets["scratch"]), "VAE_B_quality": cpu(self.nets["vae_b_quality"]),
                "VAE_B_scratch": cpu(self.nets["vae_b_scratch"])}
