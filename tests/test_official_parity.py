"""Our networks and stage-1 code against outputs the official code computed (golden files).

Every ``*.npz`` in ``$HEIRLOOM_GOLDEN_DIR`` (default ``../shared/reference/golden``) is run through
*our* code with recipe weights and compared with the tolerances of ``golden/README.md``. A golden
whose case we cannot run is a failure, never a skip.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import RecipeSource, bank_for, golden_dir, recipe_state
from skimage.util import img_as_ubyte
from torch import nn

from engine.core import official
from engine.core.detection import OFFICIAL_THRESHOLD
from engine.core.faces import align, detect, stage
from engine.core.translation import Mode
from engine.io.pixels import to_u8
from engine.models.checkpoints import ModelBank
from engine.models.registry import FACE_NETWORKS


def golden_files() -> list[Path]:
    return sorted(golden_dir().glob("*.npz"))


def close(name: str, ours: torch.Tensor | np.ndarray, ref: np.ndarray, atol: float) -> None:
    ours = ours.detach().cpu().numpy() if isinstance(ours, torch.Tensor) else np.asarray(ours)
    assert ours.shape == ref.shape, f"{name}: shape {ours.shape} != golden {ref.shape}"
    err = float(np.max(np.abs(ours.astype(np.float64) - ref.astype(np.float64)))) if ref.size else 0.0
    assert err <= atol, f"{name}: max |diff| {err:.3g} > {atol:g}"


def exact(name: str, ours, ref: np.ndarray) -> None:
    close(name, ours, ref, 0.0)


def u8_close(name: str, ours: np.ndarray, ref: np.ndarray) -> None:
    """Network outputs saved as 8-bit: max |diff| <= 1 on at most 1 % of the values."""
    assert ours.shape == ref.shape, f"{name}: shape {ours.shape} != golden {ref.shape}"
    diff = np.abs(ours.astype(np.int16) - ref.astype(np.int16))
    assert diff.max() <= 1, f"{name}: max |diff| {diff.max()} > 1"
    assert (diff > 0).mean() <= 0.01, f"{name}: {(diff > 0).mean():.2%} of values differ (> 1 %)"


def mask_matches(name: str, ours_u8: np.ndarray, ref_u8: np.ndarray, prob: torch.Tensor) -> None:
    """Binary masks agree except where the probability is within 1e-5 of the threshold."""
    p = prob.detach().cpu().numpy().reshape(ref_u8.shape)
    undecided = np.abs(p - OFFICIAL_THRESHOLD) < 1e-5
    differ = (ours_u8 != ref_u8) & ~undecided
    assert not differ.any(), f"{name}: {int(differ.sum())} mask pixels differ away from the threshold"


def check_detector(z, meta) -> None:
    det = official.detect(bank_for(detector_salt=meta["recipe_salt"]), z["raw_u8"])
    exact("transformed_u8", det.transformed_u8, z["transformed_u8"])
    exact("saved_input_u8", det.transformed_u8, z["saved_input_u8"])
    exact("gray_u8", det.gray_u8, z["gray_u8"])
    exact("input", det.input, z["input"])
    exact("scaled_input", det.scaled_input, z["scaled_input"])
    close("logits", det.logits, z["logits"], 5e-5)
    close("prob_full", det.prob_full, z["prob_full"], 1e-5)
    mask_matches("mask_binary_u8", (det.mask_u8 > 0).astype(np.uint8), z["mask_binary_u8"], det.prob_full)
    mask_matches("saved_mask_u8", det.mask_u8, z["saved_mask_u8"], det.prob_full)


def check_vae(z, meta) -> None:
    net = bank_for(meta["recipe_salt"]).get(meta["model"])
    x = official.to_network(z["image_u8"])
    exact("input", x, z["input"])
    with torch.inference_mode():
        latent = net.encode(x)
        close("latent", latent, z["latent"], 1e-4)
        close("output", net.decode(latent), z["output"], 3e-4)


def check_quality(z, meta) -> None:
    out = official.restore(bank_for(meta["recipe_salt"]), z["raw_u8"], Mode.QUALITY)
    exact("preprocessed_u8", out.input_u8, z["preprocessed_u8"])
    exact("input", out.input, z["input"])
    close("latent", out.latent, z["latent"], 1e-4)
    close("mapped", out.mapped, z["mapped"], 3e-4)
    close("generated", out.generated, z["generated"], 3e-4)
    u8_close("restored_u8", out.restored_u8, z["restored_u8"])
    exact("saved_input_image_u8", official.save_image_u8((out.input + 1) / 2, normalize=True), z["saved_input_image_u8"])


def check_masked_restore(z, meta, mode: Mode, bank: ModelBank) -> None:
    out = official.restore(bank, z["image_u8"], mode, z["mask_u8"])
    exact("mask_dilated_u8", out.mask_dilated_u8, z["mask_dilated_u8"])
    exact("hole_image_u8", out.input_u8, z["hole_image_u8"])
    exact("input", out.input, z["input"])
    exact("mask", out.mask, z["mask"])
    close("latent", out.latent, z["latent"], 1e-4)
    tol = 3e-4 if mode is Mode.HR else 2e-3
    if "nl_out" in z:
        mapping = bank.get("mapping_scratch")
        with torch.inference_mode():
            nl = mapping.NL(mapping.before_NL(torch.from_numpy(z["latent"])), torch.from_numpy(z["mask"]))
        close("nl_out", nl, z["nl_out"], 3e-3)
    close("mapped", out.mapped, z["mapped"], tol)
    close("generated", out.generated, z["generated"], tol)
    u8_close("restored_u8", out.restored_u8, z["restored_u8"])


def mode_of(meta) -> Mode:
    return Mode.HR if meta.get("inference_optimize") or meta.get("mapping_exp") else Mode.SCRATCH


def check_chain(z, meta) -> None:
    bank = bank_for(meta["recipe_salt"], meta["recipe_salt_detector"])
    det = official.detect(bank, z["det_raw_u8"])
    exact("image_u8 (detector input PNG)", det.transformed_u8, z["image_u8"])
    mask_matches("mask_u8 (detector mask PNG)", det.mask_u8, z["mask_u8"], det.prob_full)
    check_masked_restore(z, meta, mode_of(meta), bank)


def check_face_enhancement(z, meta) -> None:
    """Stage 3: the SPADE face generator on an aligned crop (OFFICIAL_PIPELINE.md §5.7, §6.2)."""
    spec = next(s for s in FACE_NETWORKS if f"{s.manifest}.json" == meta["manifest"])
    net = bank_for(meta["recipe_salt"]).get(spec.name)
    assert net.load_size == meta["load_size"] == z["face_u8"].shape[0]
    x = official.to_network(z["face_u8"])
    if "input" in z:
        exact("input", x, z["input"])
    with torch.inference_mode():
        if "fc_out" in z:
            close("fc_out", net.head(x), z["fc_out"], 1e-5)
        generated = net(x)
    close("generated", generated, z["generated"], 5e-5)
    u8_close("restored_u8", official.save_image_u8((generated + 1) / 2, normalize=False), z["restored_u8"])


class GoldenFace(nn.Module):
    """Stands in for the face generator: answers with the golden's restored face, so the face
    stage's alignment, colour matching and blending are what is compared."""

    def __init__(self, face_u8: np.ndarray) -> None:
        super().__init__()
        self.load_size = face_u8.shape[0]
        self.face = official.to_network(face_u8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.face


class GoldenFaceBank(ModelBank):
    def __init__(self, face_u8: np.ndarray) -> None:
        super().__init__(RecipeSource({}, faces=True), torch.device("cpu"))
        self.generator = GoldenFace(face_u8)

    def get(self, name: str) -> nn.Module:
        return self.generator


def check_face_align_and_blend(z, meta) -> None:
    """Stages 2 and 4 given five landmarks (OFFICIAL_PIPELINE.md §6.1, §6.3): exact with scikit-image 0.26."""
    size = meta["crop_size"]
    assert size == (512 if meta["hr"] else 256) == z["aligned_crop_u8"].shape[0]
    image = z["image_u8"]
    params = align.similarity_to_image(z["landmarks5_xy"], size)
    # Exact in principle; the SVD inside the fit can move the last bit (1.4e-17 measured).
    close("affine_params", params, z["affine_params"], 1e-12)
    exact("aligned_crop_u8", align.align_face(image, params, size), z["aligned_crop_u8"])
    face = align.blend_face(image.astype(np.float64), z["restored_face_u8"], params, size, image_u8=image)
    exact("aligned_face_trunc_u8", face.aligned_face_trunc_u8, z["aligned_face_trunc_u8"])
    exact("histmatched_face_u8", face.histmatched_u8, z["histmatched_face_u8"])
    exact("warped_back", face.warped_back.astype(np.float32), z["warped_back"])
    assert (face.backward_mask == face.backward_mask[..., :1]).all(), "backward_mask channels differ"
    exact("backward_mask", face.backward_mask[..., 0], z["backward_mask"])
    exact("final_u8", img_as_ubyte(face.blended01), z["final_u8"])
    # The production face stage (layers composed on the face's box, float photo) gives the same bytes.
    landmarks = z["landmarks5_xy"]
    found = detect.Face((*landmarks.min(axis=0), *landmarks.max(axis=0)), 1.0, landmarks)
    out, report = stage.refine_faces(image.astype(np.float32) / 255.0, GoldenFaceBank(z["restored_face_u8"]),
                                     stage.face_network(meta["hr"]), detector=lambda _: [found])
    assert (report.refined, report.warnings) == (1, [])
    exact("final_u8 (face stage)", to_u8(out), z["final_u8"])


CHECKS = {
    "scratch_detector": check_detector,
    "vae_roundtrip": check_vae,
    "quality_restore": check_quality,
    "scratch_restore": lambda z, meta: check_masked_restore(z, meta, Mode.SCRATCH, bank_for(meta["recipe_salt"])),
    "hr_restore": lambda z, meta: check_masked_restore(z, meta, Mode.HR, bank_for(meta["recipe_salt"])),
    "with_scratch_chain": check_chain,
    "face_enhancement": check_face_enhancement,
    "face_align_and_blend": check_face_align_and_blend,
}


def _params():
    return [pytest.param(path, id=path.stem) for path in golden_files()]


def test_golden_directory_is_not_empty():
    assert golden_files(), f"no golden files found in {golden_dir()}"


@pytest.mark.parametrize("path", _params())
def test_golden(path: Path):
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(str(arrays["meta_json"]))
    case = meta.get("case")
    assert case in CHECKS, f"{path.name}: golden case {case!r} is not known to the parity test"
    CHECKS[case](arrays, meta)


def test_recipe_weights_are_the_ones_the_goldens_used():
    index_file = golden_dir() / "index.json"
    if not index_file.exists():
        pytest.skip(f"{index_file} is absent: no weight digests to compare")
    index = json.loads(index_file.read_text(encoding="utf-8"))
    import hashlib

    per_manifest = index["weights_sha256"]["per_manifest"]
    assert {"face_Setting_9_epoch_100_netG.json", "face_FaceSR_512_netG.json"} <= set(per_manifest)
    for manifest_file, entry in per_manifest.items():
        digest = hashlib.sha256()
        for key, tensor in recipe_state(manifest_file, entry["salt"]).items():
            digest.update(key.encode("utf-8"))
            digest.update(tensor.contiguous().numpy().tobytes())
        assert digest.hexdigest() == entry["sha256"], manifest_file
