"""Training configurations. ``full`` keeps the official shapes (so official weights can be
fine-tuned); ``lite`` narrows the VAEs, the mapping and the detector so each stage trains on 2 CPU cores in
about 45 minutes (and the optional face generator on one core in about an hour); ``gpu`` is for
minutes on one CUDA device (``scripts/train_gpu.sh``); ``tiny`` exists for tests."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace


@dataclass(frozen=True)
class Architecture:
    """Hyper-parameters that change tensor shapes (stored in the model card of our weights)."""

    vae_channels: int = 64
    mapping_width: int = 512
    mapping_blocks: int = 6
    nl_blocks: int = 3
    detector_width_log2: int = 6
    face_ngf: int = 64  # face generator base width (official 64)
    face_spade_hidden: int = 128  # its SPADE hidden width (official 128)
    refine_width: int = 16  # the full-resolution refinement's first width (ours; no official counterpart)

    def network_kwargs(self) -> dict[str, dict]:
        """Constructor arguments per registry network name (empty = official defaults)."""
        vae = {"channels": self.vae_channels}
        return {
            "VAE_A_quality": vae, "VAE_B_quality": vae, "VAE_B_scratch": vae,
            "mapping_quality": {"width": self.mapping_width, "blocks": self.mapping_blocks,
                                "latent": self.vae_channels},
            "mapping_scratch": {"width": self.mapping_width, "blocks": self.mapping_blocks,
                                "nl_blocks": self.nl_blocks, "latent": self.vae_channels},
            "mapping_Patch_Attention": {"width": self.mapping_width, "latent": self.vae_channels},
            "detector": {"width_log2": self.detector_width_log2},
            "face_256": {"ngf": self.face_ngf, "spade_hidden": self.face_spade_hidden},
            "refine": {"width": self.refine_width},
        }


@dataclass(frozen=True)
class LossWeights:
    """Weights of a stage's loss terms. ``recon`` compares the tone-anchored output (see
    ``engine.core.tone``: what the instance-normalised networks can represent), ``raw`` the output as
    is; ``gan``/``fm`` are the LSGAN and discriminator feature-matching terms (0 = no
    discriminator is trained at all), ``latent`` the mapping's latent L1, ``kl`` the VAE prior,
    ``align`` VAE_A's latent domain alignment."""

    recon: float = 10.0
    raw: float = 0.0
    gan: float = 1.0
    fm: float = 5.0
    kl: float = 0.05
    latent: float = 10.0
    align: float = 1.0


@dataclass(frozen=True)
class StageConfig:
    crop: int = 128
    batch: int = 4
    steps: int = 4000
    lr: float = 2e-4
    ckpt_every: int = 200
    sample_every: int = 500
    log_every: int = 10
    loss: LossWeights = LossWeights()
    # detector only: the share of damaged crops drawn with realistic damage (engine.degradation.realistic),
    # of clean crops given printed text (a hard negative), and of crops centred on a face (eyes,
    # teeth and catch-lights are hard negatives)
    realistic_damage: float = 0.0
    text_negatives: float = 0.0
    face_crops: float = 0.0
    # detector only: the share of crops taken from real damaged photos with reference masks
    # (engine.training.labelled; the paper fine-tuned on real labelled photos), when a labelled set is given
    real_crops: float = 0.0


@dataclass(frozen=True)
class TrainConfig:
    name: str
    arch: Architecture
    stages: dict[str, StageConfig] = field(default_factory=dict)
    image_cache_side: int = 512  # photos are downscaled once to this long side and kept in memory
    # "model": the decoder's own global tone (official); "match-input" / "predicted": the weights were
    # trained tone-anchored and the pipeline gives their output the input photo's tone or the tone a
    # predictor fitted at export estimates for the clean photo (engine.core.tone)
    output_tone: str = "model"

    def stage(self, name: str) -> StageConfig:
        return self.stages[name]

    def to_json(self) -> dict:
        return {"name": self.name, "arch": asdict(self.arch),
                "stages": {k: asdict(v) for k, v in self.stages.items()}, "image_cache_side": self.image_cache_side,
                "output_tone": self.output_tone}


# Lite: minutes of CPU, so reconstruction dominates; a discriminator only for the mapping, gently
# (adversarial terms need far longer runs to pay off and make short runs unstable).
_LITE_STAGE = StageConfig(crop=128, batch=4, steps=4000, lr=5e-4, loss=LossWeights(raw=1.0, gan=0.0, fm=0.0))
# The optional face stage (engine.training.face_train): whole 256 px aligned faces, tone-anchored L1
# (the pipeline histogram-matches the face to its crop, so only a light raw term), no discriminator.
_FACE_LOSS = LossWeights(recon=1.0, raw=0.2, gan=0.0, fm=0.0)

CONFIGS: dict[str, TrainConfig] = {
    "full": TrainConfig("full", Architecture(), {
        **{s: StageConfig(crop=256, batch=4, steps=100_000, ckpt_every=1000, sample_every=2000,
                          loss=LossWeights(recon=0.0, raw=10.0))
           for s in ("vae-a", "vae-b", "mapping", "detector", "joint")},
        "face": StageConfig(crop=256, batch=4, steps=100_000, ckpt_every=1000, sample_every=2000, loss=_FACE_LOSS),
        "refine": StageConfig(crop=256, batch=4, steps=100_000, ckpt_every=1000, sample_every=2000),
    }, image_cache_side=1024),
    "lite": TrainConfig("lite", Architecture(vae_channels=32, mapping_width=128, mapping_blocks=3, nl_blocks=2,
                                             detector_width_log2=4, face_ngf=16, face_spade_hidden=16), {
        "vae-a": replace(_LITE_STAGE, steps=2000),
        "vae-b": replace(_LITE_STAGE, steps=2000),
        "mapping": replace(_LITE_STAGE, steps=2000, loss=LossWeights(raw=1.0, recon=4.0, gan=0.05, fm=0.5)),
        # 16 channels (8 missed real cracks; issue #16), mostly realistic damage, hard negatives
        "detector": StageConfig(crop=128, batch=8, steps=30000, lr=5e-4, ckpt_every=250, sample_every=1000,
                                realistic_damage=0.75, text_negatives=0.2, face_crops=0.2),
        # optional end-to-end fine-tune of both chains (engine.training.trainers.JointTrainer)
        "joint": replace(_LITE_STAGE, steps=3000, lr=1e-4, loss=LossWeights(recon=4.0, raw=1.0, latent=1.0,
                                                                              gan=0.0, fm=0.0)),
        # optional face generator (engine.training.face_train), one CPU core
        # (batch 2: on one core a step of 4 faces takes 2.3x as long as one of 2)
        "face": StageConfig(crop=256, batch=2, steps=1000, lr=5e-4, ckpt_every=50, sample_every=100, log_every=5,
                            loss=_FACE_LOSS),
        # the full-resolution refinement behind the shipped chain (engine.training.refine_train), one core
        "refine": StageConfig(crop=128, batch=8, steps=20000, lr=5e-4, ckpt_every=100, sample_every=500, log_every=10),
    }, output_tone="predicted"),
    "tiny": TrainConfig("tiny", Architecture(vae_channels=8, mapping_width=16, mapping_blocks=1, nl_blocks=1,
                                             detector_width_log2=2, face_ngf=2, face_spade_hidden=4, refine_width=4), {
        **{s: StageConfig(crop=64, batch=2, steps=4, ckpt_every=2, sample_every=2, log_every=1)
           for s in ("vae-a", "vae-b", "mapping", "joint", "refine")},
        "detector": StageConfig(crop=64, batch=2, steps=4, ckpt_every=2, sample_every=2, log_every=1,
                                realistic_damage=0.5, text_negatives=0.5),
        "face": StageConfig(crop=256, batch=2, steps=4, ckpt_every=2, sample_every=2, log_every=1, loss=_FACE_LOSS),
    }, image_cache_side=96, output_tone="match-input"),
}

# The lite configuration with the earlier 8-channel detector, continued on the realistic damage:
# the comparison (and fallback) for the 16-channel one, since only the detector differs.
CONFIGS["lite-d8"] = replace(CONFIGS["lite"], name="lite-d8",
                             arch=replace(CONFIGS["lite"].arch, detector_width_log2=3))
# The lite 16-channel detector continued with a quarter of its crops from real damaged photos with
# reference masks (train ... --real-masks bench/real_masks: its calib split only), started from the
# lite detector run (--init-from); lite-d8-real the same for the 8-channel detector the app ships.
for _base in ("lite", "lite-d8"):
    CONFIGS[f"{_base}-real"] = replace(CONFIGS[_base], name=f"{_base}-real", stages={
        **CONFIGS[_base].stages, "detector": replace(CONFIGS[_base].stage("detector"), real_crops=0.25)})

# One CUDA device for minutes (scripts/train_gpu.sh: ten by default, shared by the stages). ``full``
# keeps the official shapes for fine-tuning official weights, and its adversarial loss mix and
# 100k-step schedules need days; from scratch in minutes, lite's short-run recipe (tone-anchored L1,
# no GAN on the VAEs, a gentle one on the mapping, the tone predictor at export) is the one that
# learns. What a GPU adds is room: the VAEs at the official 64 channels, twice lite's mapping and
# detector widths (the official 512-wide mapping and 64-channel detector would take most of a
# minutes-long budget just to leave their random start), and batches of 16 crops of 256 px from
# photos cached at 768 px (a step sees 16x lite's pixels, the detector's 8x). Steps are set far beyond what a budget
# reaches: the time budget (train --minutes) decides where each stage stops. These sizes are a
# first guess made without a GPU at hand; the recipe's recipe.json reports each stage's steps per
# second to tune them by.
_GPU_STAGE = StageConfig(crop=256, batch=16, steps=100_000, lr=5e-4, ckpt_every=500, sample_every=1000, log_every=20,
                         loss=LossWeights(raw=1.0, gan=0.0, fm=0.0))
CONFIGS["gpu"] = TrainConfig("gpu", Architecture(vae_channels=64, mapping_width=256, mapping_blocks=6, nl_blocks=2,
                                                 detector_width_log2=5, face_ngf=32, face_spade_hidden=64), {
    "vae-a": _GPU_STAGE,
    "vae-b": _GPU_STAGE,
    "mapping": replace(_GPU_STAGE, loss=CONFIGS["lite"].stage("mapping").loss),
    # a quarter of its crops real damaged photos (scripts/train_gpu.sh passes --real-masks bench/real_masks)
    "detector": replace(CONFIGS["lite"].stage("detector"), crop=256, batch=16, steps=100_000, ckpt_every=500,
                        sample_every=1000, log_every=20, real_crops=0.25),
    "joint": replace(_GPU_STAGE, lr=1e-4, loss=CONFIGS["lite"].stage("joint").loss),
    "face": replace(CONFIGS["lite"].stage("face"), batch=8, steps=100_000, ckpt_every=500, sample_every=1000,
                    log_every=20),
    "refine": replace(_GPU_STAGE, lr=2e-4),
}, image_cache_side=768, output_tone="predicted")
