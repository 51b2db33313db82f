"""Heirloom's restoration pipeline: photo (+ optional user mask) -> restored photo of the same size.

Stages: scratch detection (scratch/HR modes) -> merge with the user's mask -> global restoration
in latent space (quality, scratch or HR patch attention) -> full-resolution refinement (when the
weights have one; ``engine.core.refinement``) -> face refinement (when the weights have
the face generator, or when asked for; see ``engine.core.faces.stage``) -> result.

Where the official stage 1 harms the photo we do better (the official behaviour stays available,
number for number, in ``engine.core.official``):
* the output has exactly the input's size: we reflect-pad to the multiple the networks need and
  crop afterwards, instead of resizing the photo to a multiple of 4 or 16;
* no min-max contrast stretch of the output: values are clamped to [0, 1], so a photo's tonal
  range is what the networks produced, not stretched to full black and white;
* the scratch mask is computed on the photo's own pixel grid (see ``engine.core.detection``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import torch

from engine.core.detection import (
    NO_DETECTION,
    OFFICIAL_THRESHOLD,
    DetectionScale,
    detect_scratches,
    detection_short_side,
    mask_from_probability,
    parse_detection_scale,
    resolve_detection_scale,
)
from engine.core.faces.regions import OFF as FACE_PROTECTION_OFF
from engine.core.faces.regions import FaceProtection, protect_faces, protect_probability
from engine.core.faces.stage import (
    FaceReport,
    FacesUnavailable,
    choose_face_network,
    refine_faces,
    require_detector,
)
from engine.core.fast import FAST, PRECISION_NAME, FastUnavailable, fast_bank
from engine.core.plan import Tile, parse_tile, plan_restore
from engine.core.refinement import has_refinement, refine
from engine.core.strength import apply_strength
from engine.core.tone import apply_output_tone, tone_for
from engine.core.tiling import pad_to_multiple
from engine.core.translation import (
    NETWORKS,
    Mode,
    spatial_multiple,
    translate,
    translate_tiled,
)
from engine.models.checkpoints import ModelBank
from engine.progress import Progress


class DamageMask(NamedTuple):
    holes: np.ndarray  # HxW bool, all False when nothing is marked
    detected: np.ndarray | None  # the detector's probability (before face protection), or None
    face_protection: FaceProtection | None  # what face protection did; None when no detector ran
    scale: DetectionScale | None = None  # the detection scale applied (the weights' own when not given)


def damage_mask(bank: ModelBank, rgb: np.ndarray, options: "RestoreOptions", user_mask: np.ndarray | None = None,
                progress: Progress | None = None) -> DamageMask:
    """The one mask policy (``restore``, ``detect``, the album queue, the Restore tab): the detector's
    probability when the options ask for detection, thresholded and grown by the options' dilation
    (a thresholded scratch is thinner than the damage it marks), then cleared on the eyes and mouths
    of the faces in the photo (``options.protect_faces``, ``engine.core.faces.regions``: the detector
    takes pupils and teeth for damage), then merged with the user's mask, which is never grown nor
    cleared: a person's brushed pixels are exact by intent.
    Returns (holes, detector probability or None, face protection report or None, scale applied or None)."""
    h, w = rgb.shape[:2]
    holes = np.zeros((h, w), bool)
    detected = protection = scale = None
    if options.detect:
        scale = resolve_detection_scale(bank, options.detection_scale)
        detected = detect_scratches(bank, rgb, detection_short_side(scale, h, w), progress)
        holes = mask_from_probability(detected, options.threshold, options.dilation)
        if options.protect_faces:
            holes, protection = protect_faces(holes, rgb)
        else:
            protection = FACE_PROTECTION_OFF
    if user_mask is not None:
        holes |= np.asarray(user_mask).astype(bool)
    return DamageMask(holes, detected, protection, scale)


def detection_probability(bank: ModelBank, image: np.ndarray, scale: DetectionScale | None = None,
                          protect: bool = True, progress: Progress | None = None
                          ) -> tuple[np.ndarray, FaceProtection]:
    """The same policy for a view that keeps the probability to re-threshold it as sliders move (the
    Restore tab's Detect): the detector's probability at ``scale`` (None: the weights' own), zeroed
    on the eyes and mouths of faces when ``protect`` (``damage_mask`` clears them from the mask)."""
    rgb = as_float_rgb(image)
    h, w = rgb.shape[:2]
    probability = detect_scratches(bank, rgb, detection_short_side(resolve_detection_scale(bank, scale), h, w),
                                   progress)
    if not protect:
        return probability, FACE_PROTECTION_OFF
    return protect_probability(probability, rgb)


# ``RestoreOptions.detection_scale`` value that runs no detector even in scratch or HR mode: the mask
# the caller passes is the whole mask (the Restore tab's reviewed mask, already detected and edited).



@dataclass(frozen=True)
class RestoreOptions:
    """What to do with one photo. ``hr`` implies masked restoration with patch attention."""

    scratch: bool = False  # detect scratches and restore them (partial non-local block)
    hr: bool = False  # patch-attention mapping (official --HR), detection included
    threshold: float = OFFICIAL_THRESHOLD  # detector probability that counts as damage
    mask_dilation: int | None = None  # 3x3 dilation iterations; None = official (0, HR: 3)
    # None: the weights' own (their card's detection_scale; "official" = 256 px short side without one),
    # "official", "full", "auto" (full up to 1536 px), a short side in px, or NO_DETECTION (the mask given is final)
    detection_scale: DetectionScale | None = None
    tile: Tile = "auto"  # "auto": untiled when it fits the memory budget; "off"; or a tile size in px
    max_memory_gb: float | None = None  # memory budget; None = a safe share of what the device has free
    precision: str = "fp32"  # fp32 (exact), bf16, fp16 (GPU), auto (reduced where the hardware is native), fast (CPU int8)
    faces: bool | None = None  # refine faces: True = required, False = off, None = if the weights have the generator
    # how much of the restoration to apply outside the repaired holes (holes are always repaired):
    # 1 = all of it (official), 0 = only the holes; None = the weights' default (engine.core.strength)
    strength: float | None = None
    # clear detected damage on the eyes and mouths of faces (engine.core.faces.regions); never a user's mask
    protect_faces: bool = True
    # correct fading: give the output the tone the weights' predictor estimates for the unfaded photo
    # (their card's "predicted" tone). Off: the photo keeps its own tone and colour balance outside
    # repaired damage (engine.core.tone.tone_for). Official weights are never changed either way.
    correct_fading: bool = False

    def __post_init__(self) -> None:
        """Tile and detection scale are read once, here, by their parsers: a bad value fails when
        the options are made (not after detection ran), and "512" from a settings file is 512."""
        object.__setattr__(self, "tile", parse_tile(self.tile))
        if self.detection_scale is not None:
            object.__setattr__(self, "detection_scale", parse_detection_scale(self.detection_scale))

    @property
    def detect(self) -> bool:
        """Whether the detector runs: scratch and HR mode detect unless detection is switched off."""
        return (self.scratch or self.hr) and self.detection_scale != NO_DETECTION

    def mode(self, has_user_mask: bool) -> Mode:
        if self.hr:
            return Mode.HR
        return Mode.SCRATCH if (self.detect or has_user_mask) else Mode.QUALITY

    @property
    def dilation(self) -> int:
        if self.mask_dilation is not None:
            return self.mask_dilation
        return 3 if self.hr else 0


@dataclass
class RestoreResult:
    image: np.ndarray  # HxWx3 float32 in [0, 1], same H, W as the input
    mode: Mode
    mask: np.ndarray | None = None  # HxW bool: the holes that were filled (damage_mask's merge)
    detected: np.ndarray | None = None  # HxW float32 detector probability, if detection ran
    timings: dict[str, float] = field(default_factory=dict)
    tiling: dict = field(default_factory=dict)  # tile size used (None = untiled), shrinks on low memory
    faces: FaceReport | None = None  # None: the face stage did not run
    warnings: list[str] = field(default_factory=list)  # things the user should know; the photo is still restored
    strength: float = 1.0  # the restoration strength applied (engine.core.strength)
    brushed: bool = False  # the caller's mask (brushed, reviewed or a mask file) is part of ``mask``
    face_protection: FaceProtection | None = None  # what face protection did to the detected mask (None: no detection)
    detection_scale: DetectionScale | None = None  # the scale detection ran at (None: no detection)
    tone: str = "model"  # the output tone applied (engine.core.tone.tone_for): model, photo, predicted, match-input
    refined: bool = False  # the weights' full-resolution refinement ran (engine.core.refinement)


def as_float_rgb(image: np.ndarray) -> np.ndarray:
    """uint8 / uint16 / float image, grey or RGB(A) -> HxWx3 float32 in [0, 1] (alpha dropped)."""
    if not isinstance(image, np.ndarray) or image.ndim not in (2, 3) or min(image.shape[:2]) < 1:
        raise ValueError(f"expected an HxW or HxWxC image array, got {getattr(image, 'shape', type(image))}")
    if image.dtype == np.uint8:
        out = image.astype(np.float32) / 255.0
    elif image.dtype == np.uint16:
        out = image.astype(np.float32) / 65535.0
    elif np.issubdtype(image.dtype, np.floating):
        out = np.clip(image.astype(np.float32), 0.0, 1.0)
    else:
        raise ValueError(f"unsupported image dtype {image.dtype}")
    if out.ndim == 2:
        out = np.repeat(out[..., None], 3, axis=2)
    elif out.shape[2] == 1:
        out = np.repeat(out, 3, axis=2)
    elif out.shape[2] >= 3:
        out = out[..., :3]
    else:
        raise ValueError(f"unsupported channel count {out.shape[2]}")
    return np.ascontiguousarray(out)


def required_networks(options: RestoreOptions, has_user_mask: bool) -> list[str]:
    names = list(NETWORKS[options.mode(has_user_mask)])
    if options.detect:
        names.append("detector")
    return names


class Restorer:
    """Runs the pipeline with one set of networks (built once, shared by every call)."""

    def __init__(self, bank: ModelBank) -> None:
        self.bank = bank

    @property
    def device(self) -> torch.device:
        return self.bank.device

    def prepare(self, options: RestoreOptions, has_user_mask: bool = False) -> None:
        """Load every network the options need now, so bad weights fail before any photo. Faces
        asked for explicitly are checked too; automatic faces load lazily, at the first face found
        (a photo without faces never pays for the face generator)."""
        face_net, _ = self._face_network(options)
        if face_net is not None and options.faces:
            require_detector()
        for name in required_networks(options, has_user_mask):
            self.bank.get(name)
        if has_refinement(self.bank):
            self.bank.get("refine")
        if face_net is not None and options.faces:
            self.bank.get(face_net)

    def restore(self, image: np.ndarray, options: RestoreOptions = RestoreOptions(),
                user_mask: np.ndarray | None = None, progress: Progress | None = None) -> RestoreResult:
        progress = progress or Progress()
        rgb = original = as_float_rgb(image)  # holes are filled in a copy: the tone is read from the photo
        h, w = rgb.shape[:2]
        if user_mask is not None and user_mask.shape[:2] != (h, w):
            raise ValueError(f"the mask is {user_mask.shape[1]}x{user_mask.shape[0]} but the photo is {w}x{h}; "
                             "a mask must have exactly the photo's size")
        mode = options.mode(user_mask is not None)
        face_net, faces_skipped = self._face_network(options)
        global_progress = progress.sub(0.0, 0.8) if face_net else progress
        timings: dict[str, float] = {}
        detected = None
        holes = None
        restore_start = 0.0
        policy = None
        if mode.uses_mask:
            t0 = time.perf_counter()
            policy = damage_mask(self.bank, rgb, options, user_mask, global_progress.sub(0.0, 0.1))
            holes, detected = policy.holes, policy.detected
            if detected is not None:
                timings["detection"] = time.perf_counter() - t0
                restore_start = 0.1
            rgb = rgb.copy()
            rgb[holes] = 1.0  # holes are filled with white, as the networks were trained
        progress.check()
        t0 = time.perf_counter()
        x = torch.from_numpy(rgb).permute(2, 0, 1)[None].mul(2.0).sub_(1.0)
        del rgb  # the hole-filled copy (if any) is in x now; a large scan cannot afford spare copies
        multiple = spatial_multiple(mode)
        x, _ = pad_to_multiple(x, multiple)
        mask_t = None
        if mode.uses_mask:
            mask_t, _ = pad_to_multiple(torch.from_numpy(holes.astype(np.float32))[None, None], multiple)
        plan = plan_restore(self.bank, options, mode, x.shape[-2], x.shape[-1], self.device)
        refining = has_refinement(self.bank)
        stage_progress = global_progress.sub(restore_start, 1.0 - restore_start)
        if refining:  # the refinement costs about a tenth of the chain
            refine_progress = stage_progress.sub(0.9, 0.1)
            stage_progress = stage_progress.sub(0.0, 0.9)
        networks, fast_note = self._fast_networks(options, mode, plan.tile)
        if plan.tile is None:
            generated = translate(networks, x, mask_t, mode, stage_progress, precision=plan.precision,
                                  attention_rows=plan.attention_rows).generated
            tiling = {"tile": None}
        else:
            generated, tiling = translate_tiled(self.bank, x, mask_t, mode, plan.tile, plan.network_budget,
                                                stage_progress, precision=plan.precision,
                                                attention_window=plan.attention_window,
                                                attention_rows=plan.attention_rows)
        tiling.update(plan.facts())
        if networks is not self.bank:
            tiling["precision"] = PRECISION_NAME
            tiling["fast_self_check_db"] = round(networks.self_check_psnr, 1)
        with torch.inference_mode():  # in place where possible: each copy of a 24 MP photo is 288 MB
            del mask_t
            tone = tone_for(self.bank.source.output_tone(), options.correct_fading)
            generated = self._finish(generated[:1, :, :h, :w].float(), x[:1, :, :h, :w], original, holes, tone,
                                     refine_progress if refining else None, plan, timings)
            del x
            generated = generated[0].add_(1.0).mul_(0.5).clamp_(0.0, 1.0)
            result = generated.permute(1, 2, 0).contiguous().cpu().numpy()
            del generated
        strength = self.default_strength(original) if options.strength is None else options.strength
        result = apply_strength(result, original, holes, strength)
        timings["restoration"] = time.perf_counter() - t0
        out = RestoreResult(np.ascontiguousarray(result), mode, holes, detected, timings, tiling, strength=strength,
                            brushed=user_mask is not None,
                            face_protection=policy.face_protection if policy is not None else None,
                            detection_scale=policy.scale if policy is not None else None, tone=tone,
                            refined=refining)
        if options.correct_fading and tone != "predicted":
            out.warnings.append("correct fading changes nothing with these weights: they set the tone themselves"
                                if tone == "model" else
                                "fading was not corrected: these weights' card has no tone predictor")
        if plan.over_budget:
            out.warnings.append(plan.over_budget)
        if fast_note:
            out.warnings.append(fast_note)
        if faces_skipped:
            out.warnings.append(faces_skipped)
        if face_net is not None:
            self._face_stage(out, face_net, required=bool(options.faces), progress=progress.sub(0.8, 0.2))
        progress.report(1.0, "done")
        return out

    def _fast_networks(self, options: RestoreOptions, mode: Mode, tile: int | None):
        """The networks to restore with and why fast precision was not used: the bank (and None) unless
        ``--precision fast`` asks for its int8 form (engine.core.fast); the bank and the reason when
        fast precision cannot run, so the restore is exact float32 and says so."""
        if options.precision != FAST:
            return self.bank, None
        if tile is not None:
            return self.bank, ("fast precision runs untiled restores only (its networks cannot share "
                               "normalisation statistics across tiles); this one ran in float32")
        try:
            return fast_bank(self.bank, mode), None
        except FastUnavailable as exc:
            return self.bank, str(exc)

    def _finish(self, generated: torch.Tensor, network_input: torch.Tensor, original: np.ndarray,
                holes: np.ndarray | None, tone: str, refine_progress: Progress | None, plan,
                timings: dict[str, float]) -> torch.Tensor:
        """The chain's output (1,3,H,W) in [-1, 1] with ``tone`` (``_anchor_tone``), then, when
        ``refine_progress`` is given (the weights have a refinement), refined at full resolution
        (engine.core.refinement) and anchored to the same tone again: the refinement is trained
        blind to global tone."""
        generated = self._anchor_tone(generated, network_input, original, holes, tone)
        if refine_progress is None:
            return generated
        refine_progress.check()
        t0 = time.perf_counter()
        holes_t = None if holes is None else torch.from_numpy(holes)[None, None]
        generated = refine(self.bank, generated, network_input, holes_t, plan.network_budget, plan.precision,
                           refine_progress)
        generated = self._anchor_tone(generated, network_input, original, holes, tone)
        timings["refinement"] = timings.get("refinement", 0.0) + time.perf_counter() - t0
        return generated

    def _anchor_tone(self, generated: torch.Tensor, network_input: torch.Tensor, original: np.ndarray,
                     holes: np.ndarray | None, tone: str) -> torch.Tensor:
        """Give weights trained blind to global tone the ``tone`` chosen by ``tone_for`` (engine.core.tone;
        over the whole assembled image, so tiles cannot disagree)."""
        source = self.bank.source
        valid = None if holes is None else torch.from_numpy(~holes)[None, None].to(generated.device)
        return apply_output_tone(generated, tone, network_input, [original],
                                 source.tone_predictor() if tone == "predicted" else None, valid)

    def _face_network(self, options: RestoreOptions) -> tuple[str | None, str | None]:
        """The face network to run, and why faces that were asked for (``--faces``) cannot run.
        Weights without a face model (e.g. Heirloom's own) still restore the photo: the user
        hears why the faces were left as they are, and nothing else of the batch is lost."""
        try:
            return choose_face_network(self.bank.source, options.faces, options.hr), None
        except FacesUnavailable as exc:
            return None, f"faces were not refined: {exc}"

    def _face_stage(self, result: RestoreResult, network: str, required: bool, progress: Progress) -> None:
        """Run the face stage on ``result`` in place. When the stage cannot run at all (no detector,
        unloadable generator) that is an error only if faces were asked for; otherwise a warning."""
        t0 = time.perf_counter()
        try:
            result.image, result.faces = refine_faces(result.image, self.bank, network, progress)
        except FacesUnavailable as exc:
            if required:
                raise
            result.warnings.append(f"faces were not refined: {exc}")
        else:
            result.warnings.extend(result.faces.warnings)
        result.timings["faces"] = time.perf_counter() - t0

    def default_strength(self, photo: np.ndarray) -> float:
        """The weights' strength for this photo: predicted from its damage when the card can, else
        the card's fixed default (1 for official weights)."""
        predictor = self.bank.source.strength_predictor()
        return self.bank.source.default_strength() if predictor is None else predictor.predict(photo)
