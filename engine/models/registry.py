"""The one explicit list of networks Heirloom loads, and what each needs.

No folder scanning: every architecture is named here (this also keeps PyInstaller happy).
``name`` doubles as the manifest key stem and as the file stem of our own safetensors weights.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from enum import Enum
from functools import cache, partial
from importlib import resources
from typing import Callable

import torch
from torch import nn

from engine.models.networks.face import FaceGenerator
from engine.models.networks.mapping import (
    PatchAttentionMapping,
    QualityMapping,
    ScratchMapping,
)
from engine.models.networks.refine import RefineNet
from engine.models.networks.unet import ScratchUNet
from engine.models.networks.vae import VAEGenerator


class Attention(Enum):
    """What a network's attention compares, which decides whether the run policy may window it."""

    NONE = "none"
    # every latent cell with every other (partial non-local block): cost grows with the square of the
    # photo's area, so on large photos the run policy bounds it to a window (engine.core.plan)
    DENSE = "dense"
    # hole patches with valid patches, hard argmax (HR): far fewer pairs; stays global, as the official --HR
    PATCH = "patch"


ALL_PRECISIONS = frozenset({torch.float32, torch.bfloat16, torch.float16})
FLOAT32_ONLY = frozenset({torch.float32})


@dataclass(frozen=True)
class NetworkTraits:
    """The facts about one network that padding, tiling and the run policy need, in the network's own
    input cells (pixels for the encoder and the detector, latent cells for mapping and decoder).

    One table for them (``NetworkSpec.traits``) so that a network's multiple, halo or memory factor
    is stated once, next to its name, instead of as literals in every module that pads or tiles.
    The VAE generators serve two roles: VAE_A's traits are those of its encoder half and VAE_B's of
    its decoder half, the only halves inference runs.
    """

    spatial_multiple: int = 1  # input height and width must be multiples of this (total stride, whole patches)
    # tiling context on each side: covers the receptive field, so a tile's core equals the untiled result
    halo: int = 0
    # blending ramp beyond a tile's core; halo - feather must still cover the receptive radius, because
    # the feathered band borrows a neighbour's halo pixels, exact only that far from its box edge
    feather: int = 0
    out_scale: float = 1.0  # output pixels per input pixel
    # live float32 maps of the widest layer per pixel, at the larger of input and output resolution
    # (0 = not measured: tiles are never checked against a memory budget)
    live_maps: int = 0
    attention: Attention = Attention.NONE
    precisions: frozenset[torch.dtype] = ALL_PRECISIONS  # compute dtypes it may run under (autocast)

    def bytes_per_input_pixel(self, widest_channels: int) -> float:
        """Working-set estimate per input pixel: ``live_maps`` float32 maps of ``widest_channels``
        channels at the larger of the input and output resolution (the decoder's maps are 16 times
        its input)."""
        return self.live_maps * 4 * widest_channels * max(1.0, self.out_scale) ** 2


# Halos cover each network's receptive field (encoder ~41 px, mapping 20 latent cells without
# attention, decoder ~11 latent cells). Live maps: measured peaks (VmHWM over a fresh process,
# official and lite widths) are encoder 2.25, mapping 5.8-9.6 (scratch: plus the attention's
# g/theta/phi and one chunk), decoder 3.6-3.8; the factors leave headroom so a tile chosen to fit
# really fits.
ENCODER_TRAITS = NetworkTraits(spatial_multiple=4, halo=48, feather=4, out_scale=0.25, live_maps=4)
DECODER_TRAITS = NetworkTraits(halo=16, feather=4, out_scale=4, live_maps=5)
MAPPING_TRAITS = NetworkTraits(halo=24, feather=2, live_maps=16)
SCRATCH_MAPPING_TRAITS = replace(MAPPING_TRAITS, attention=Attention.DENSE)
# The latent must hold whole 8x8 patches, so no border falls outside the largest patch grid.
PATCH_MAPPING_TRAITS = replace(MAPPING_TRAITS, spatial_multiple=8, attention=Attention.PATCH)
# Four stride-2 downsamplings; BatchNorm on stored statistics, so tiles need only a halo (128: tiled =
# untiled to 1e-7, measured). Runs in float32 (no autocast).
DETECTOR_TRAITS = NetworkTraits(spatial_multiple=16, halo=128, feather=16, precisions=FLOAT32_ONLY)
# Heirloom's full-resolution refinement: two stride-2 steps (multiple 4); no norms, so tiles whose halo
# covers its receptive radius are exact. The radius: 3 full-resolution 3x3 convolutions, 2 at half
# resolution (x2), 1 + 2 * 3 blocks at a quarter (x4), plus the bilinear upsamplings' reach = 41 px
# (tests/test_refine.py measures it); 48 with margin, and halo - feather must still cover it.
# live maps, in maps of its widest (3 x width, quarter resolution) channels per full-resolution pixel:
# ~4 full-resolution maps of width channels, 2 of 2 x width at half and 4 at a quarter ~ 1.8; 2 with margin.
REFINE_TRAITS = NetworkTraits(spatial_multiple=4, halo=48, feather=4, live_maps=2)
# Face generators see fixed-size aligned face crops (load_size): never padded or tiled; float32.
FACE_TRAITS = NetworkTraits(precisions=FLOAT32_ONLY)


@dataclass(frozen=True)
class NetworkSpec:
    name: str  # e.g. "VAE_A_quality"
    manifest: str | None  # key in manifests/official.json (None: ours only, no official checkpoint)
    build: Callable[..., nn.Module]  # keyword arguments: width etc. (none = official shapes)
    purpose: str
    traits: NetworkTraits


GLOBAL_NETWORKS: tuple[NetworkSpec, ...] = (
    NetworkSpec("VAE_A_quality", "VAE_A_quality_netG", VAEGenerator, "encoder for old photos (VAE_A)",
                ENCODER_TRAITS),
    NetworkSpec("VAE_B_quality", "VAE_B_quality_netG", VAEGenerator, "decoder for clean photos, quality mode",
                DECODER_TRAITS),
    NetworkSpec("VAE_B_scratch", "VAE_B_scratch_netG", VAEGenerator, "decoder for clean photos, scratch mode",
                DECODER_TRAITS),
    NetworkSpec("mapping_quality", "mapping_quality_mapping_net", QualityMapping, "latent mapping, no scratches",
                MAPPING_TRAITS),
    NetworkSpec("mapping_scratch", "mapping_scratch_mapping_net", ScratchMapping,
                "latent mapping with partial non-local block", SCRATCH_MAPPING_TRAITS),
    NetworkSpec("mapping_Patch_Attention", "mapping_Patch_Attention_mapping_net", PatchAttentionMapping,
                "latent mapping with multi-scale patch attention (HR)", PATCH_MAPPING_TRAITS),
    NetworkSpec("detector", "detection_FT_Epoch_latest", ScratchUNet, "scratch-detection U-Net", DETECTOR_TRAITS),
)

# The face generators (stage 3) live in the separate official face_checkpoints.zip. They are kept
# out of GLOBAL_NETWORKS, which lists what stage 1 needs (weights listings, import validation).
FACE_NETWORKS: tuple[NetworkSpec, ...] = (
    NetworkSpec("face_256", "face_Setting_9_epoch_100_netG", partial(FaceGenerator, load_size=256),
                "SPADE face generator, 256x256 faces (Setting_9_epoch_100)", FACE_TRAITS),
    NetworkSpec("face_512", "face_FaceSR_512_netG", partial(FaceGenerator, load_size=512),
                "SPADE face generator, 512x512 faces for --HR (FaceSR_512)", FACE_TRAITS),
)

# Heirloom's own networks with no official counterpart: optional parts of our weights folders (a
# folder without them restores as before).
OWN_NETWORKS: tuple[NetworkSpec, ...] = (
    NetworkSpec("refine", None, RefineNet, "full-resolution refinement after the latent chain", REFINE_TRAITS),
)

BY_NAME = {spec.name: spec for spec in GLOBAL_NETWORKS + FACE_NETWORKS + OWN_NETWORKS}


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
    if spec.manifest is None:  # ours only: the layout its hyper-parameters (or defaults) build
        state = spec.build(**(kwargs or {})).state_dict()
        args = ", ".join(f"{k}={v}" for k, v in sorted((kwargs or {}).items()))
        return Manifest(spec.name, f"{spec.purpose} ({args})", "raw_state_dict", None, "", _tensor_specs(state))
    if not kwargs:
        return manifests()[spec.manifest]
    state = spec.build(**kwargs).state_dict()
    official = manifests()[spec.manifest]
    args = ", ".join(f"{k}={v}" for k, v in sorted(kwargs.items()))
    return Manifest(spec.manifest, f"{official.title} ({args})", "raw_state_dict", None, official.path_in_zip,
                    _tensor_specs(state))


def _tensor_specs(state: dict[str, torch.Tensor]) -> tuple[TensorSpec, ...]:
    return tuple(TensorSpec(k, tuple(v.shape), str(v.dtype).removeprefix("torch."), k.endswith("num_batches_tracked"))
                 for k, v in state.items())
