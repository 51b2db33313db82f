"""The one explicit list of networks Heirloom loads, and what each needs.

No folder scanning: every architecture is named here (this also keeps PyInstaller happy).
``name`` doubles as the manifest key stem and as the file stem of our own safetensors weights.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache, partial
from importlib import resources
from typing import Callable

from torch import nn

from .networks.face import FaceGenerator
from .networks.mapping import PatchAttentionMapping, QualityMapping, ScratchMapping
from .networks.unet import ScratchUNet
from .networks.vae import VAEGenerator


@dataclass(frozen=True)
class NetworkSpec:
    name: str  # e.g. "VAE_A_quality"
    manifest: str  # key in manifests/official.json
    build: Callable[..., nn.Module]  # keyword arguments: width etc. (none = official shapes)
    purpose: str


GLOBAL_NETWORKS: tuple[NetworkSpec, ...] = (
    NetworkSpec("VAE_A_quality", "VAE_A_quality_netG", VAEGenerator, "encoder for old photos (VAE_A)"),
    NetworkSpec("VAE_B_quality", "VAE_B_quality_netG", VAEGenerator, "decoder for clean photos, quality mode"),
    NetworkSpec("VAE_B_scratch", "VAE_B_scratch_netG", VAEGenerator, "decoder for clean photos, scratch mode"),
    NetworkSpec("mapping_quality", "mapping_quality_mapping_net", QualityMapping, "latent mapping, no scratches"),
    NetworkSpec("mapping_scratch", "mapping_scratch_mapping_net", ScratchMapping, "latent mapping with partial non-local block"),
    NetworkSpec("mapping_Patch_Attention", "mapping_Patch_Attention_mapping_net", PatchAttentionMapping,
                "latent mapping with multi-scale patch attention (HR)"),
    NetworkSpec("detector", "detection_FT_Epoch_latest", ScratchUNet, "scratch-detection U-Net"),
)

# The face generators (stage 3) live in the separate official face_checkpoints.zip. They are kept
# out of GLOBAL_NETWORKS, which lists what stage 1 needs (weights listings, import validation).
FACE_NETWORKS: tuple[NetworkSpec, ...] = (
    NetworkSpec("face_256", "face_Setting_9_epoch_100_netG", partial(FaceGenerator, load_size=256),
                "SPADE face generator, 256x256 faces (Setting_9_epoch_100)"),
    NetworkSpec("face_512", "face_FaceSR_512_netG", partial(FaceGenerator, load_size=512),
                "SPADE face generator, 512x512 faces for --HR (FaceSR_512)"),
)

BY_NAME = {spec.name: spec for spec in GLOBAL_NETWORKS + FACE_NETWORKS}


@dataclass(frozen=True)
class TensorSpec:
    key: str
    shape: tuple[int, ...]
    dtype: str
    optional: bool


@dataclass(frozen=True)
class Manifest:
    """The exact state-dict layout of one official checkpoint file."""

    name: str
    title: str
    container: str  # "raw_state_dict" or "dict"
    state_dict_key: str | None
    path_in_zip: str
    tensors: tuple[TensorSpec, ...]


@cache
def manifests() -> dict[str, Manifest]:
    raw = json.loads(resources.files("engine.models").joinpath("manifests/official.json").read_text(encoding="utf-8"))
    return {
        name: Manifest(name, m["title"], m["container"], m["state_dict_key"], m["path_in_zip"],
                       tuple(TensorSpec(k, tuple(s), d, o) for k, s, d, o in m["tensors"]))
        for name, m in raw.items()
    }


def manifest_for(spec: NetworkSpec, kwargs: dict | None = None) -> Manifest:
    """The official layout, or for other hyper-parameters (our lite weights) the layout of the
    network those parameters build."""
    if not kwargs:
        return manifests()[spec.manifest]
    state = spec.build(**kwargs).state_dict()
    official = manifests()[spec.manifest]
    tensors = tuple(TensorSpec(k, tuple(v.shape), str(v.dtype).removeprefix("torch."), k.endswith("num_batches_tracked"))
                    for k, v in state.items())
    args = ", ".join(f"{k}={v}" for k, v in sorted(kwargs.items()))
    return Manifest(spec.manifest, f"{official.title} ({args})", "raw_state_dict", None, official.path_in_zip, tensors)
