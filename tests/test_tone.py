"""Tone anchoring: lite weights are trained blind to global tone, and the pipeline restores it."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.core.pipeline import RestoreOptions, Restorer
from engine.core.tone import channel_stats, match_tone
from engine.models.checkpoints import ModelBank, SafetensorsSource, save_state_dicts
from engine.models.registry import BY_NAME

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

QUALITY = ("VAE_A_quality", "mapping_quality", "VAE_B_quality")


def test_match_tone_copies_reference_stats_ignoring_invalid_pixels() -> None:
    gen = torch.Generator().manual_seed(0)
    out = torch.randn(1, 3, 16, 16, generator=gen) * 0.3 + 0.5
    ref = torch.randn(1, 3, 16, 16, generator=gen) * 0.1 - 0.2
    valid = torch.ones(1, 1, 16, 16)
    valid[..., :4, :] = 0
    ref_holes = ref.clone()
    ref_holes[..., :4, :] = 1.0  # white holes must not pull the statistics
    toned = match_tone(out, ref_holes, valid)
    mean, std = channel_stats(toned, valid)
    ref_mean, ref_std = channel_stats(ref, valid)
    assert torch.allclose(mean, ref_mean, atol=1e-5) and torch.allclose(std, ref_std, atol=1e-4)


def write_weights(folder: Path, tone: str | None) -> Path:
    torch.manual_seed(0)
    kwargs = {"channels": 8}
    parts = {}
    for name in QUALITY:
        spec = BY_NAME[name]
        kw = kwargs if name.startswith("VAE") else {"width": 16, "blocks": 1, "latent": 8}
        parts[name] = spec.build(**kw).state_dict()
    save_state_dicts(folder, parts)
    card = {"networks": {n: (kwargs if n.startswith("VAE") else {"width": 16, "blocks": 1, "latent": 8}) for n in QUALITY}}
    if tone:
        card["output_tone"] = tone
    (folder / "model.json").write_text(json.dumps(card))
    return folder


def test_card_decides_whether_output_takes_the_input_tone(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    photo = np.clip(0.3 + 0.05 * rng.standard_normal((32, 32, 3)), 0, 1).astype(np.float32)
    photo[..., 2] += 0.2  # a blue cast the untrained decoder knows nothing about
    results = {}
    for tone in (None, "match-input"):
        source = SafetensorsSource(write_weights(tmp_path / str(tone), tone))
        restorer = Restorer(ModelBank(source, torch.device("cpu")))
        results[tone] = restorer.restore(photo, RestoreOptions()).image
    anchored, raw = results["match-input"], results[None]
    assert np.allclose(anchored.mean((0, 1)), photo.mean((0, 1)), atol=0.01)
    assert np.abs(raw.mean((0, 1)) - photo.mean((0, 1))).max() > 0.02  # without the card: the model's own tone


# --- predicted tone ---------------------------------------------------------------------------------

def clean_photos(count: int, side: int = 96) -> list[np.ndarray]:
    from engine.training.tone_fit import training_photos

    return training_photos([SHARED_DATA / "clean_train" / "bsds500"], side)[:count]


def test_tone_predictor_undoes_fading_better_than_keeping_the_input_tone() -> None:
    from engine.degradation.degrade import colour_fading
    from engine.training.tone_fit import fit_tone_predictor, tone_targets

    photos = clean_photos(136)
    predictor = fit_tone_predictor(photos[:120], rounds=3)
    kept, predicted = [], []
    for i, clean in enumerate(photos[120:]):
        faded = colour_fading(clean, np.random.default_rng(i), amount=0.8)
        truth = tone_targets(clean)
        kept.append(np.abs(tone_targets(faded) - truth).mean())
        predicted.append(np.abs(np.concatenate(predictor.predict(faded)) - truth).mean())
    assert np.mean(predicted) < 0.8 * np.mean(kept), (np.mean(predicted), np.mean(kept))


def test_tone_predictor_keeps_a_grey_photo_grey_and_survives_its_card() -> None:
    from engine.models.predictors import TonePredictor

    rng = np.random.default_rng(1)
    predictor = TonePredictor.fit(rng.normal(size=(80, 30)), rng.uniform(0.1, 0.6, size=(80, 6)))
    grey = np.repeat(rng.uniform(0, 1, (40, 50, 1)), 3, axis=2).astype(np.float32)
    mean, std = predictor.predict(grey)
    assert np.ptp(mean) == 0 and np.ptp(std) == 0
    # a black and white scan saved as JPEG: a little chroma noise is still grey
    jpeg_grey = np.clip(grey + rng.integers(-2, 3, grey.shape) * (rng.random(grey.shape) < 0.1) / 255, 0, 1)
    assert np.ptp(jpeg_grey, axis=2).max() > 2 / 255
    mean, std = predictor.predict(jpeg_grey.astype(np.float32))
    assert np.ptp(mean) == 0 and np.ptp(std) == 0
    toned = np.clip(grey * np.array([1.0, 0.93, 0.8]), 0, 1).astype(np.float32)  # a sepia print is not grey
    assert np.ptp(predictor.predict(toned)[0]) > 0
    again = TonePredictor.from_json(json.loads(json.dumps(predictor.to_json())))
    colour = rng.uniform(0, 1, (40, 50, 3)).astype(np.float32)
    assert np.allclose(np.concatenate(again.predict(colour)), np.concatenate(predictor.predict(colour)), atol=1e-4)


def test_predicted_tone_card_gives_the_output_the_predicted_stats(tmp_path: Path) -> None:
    from engine.models.checkpoints import CheckpointError
    from engine.models.predictors import TonePredictor

    rng = np.random.default_rng(2)
    targets = np.c_[rng.uniform(0.4, 0.6, size=(80, 3)), rng.uniform(0.05, 0.1, size=(80, 3))]
    predictor = TonePredictor.fit(rng.normal(size=(80, 30)), targets)  # moderate: no clipping at 0 or 1
    folder = write_weights(tmp_path / "w", "predicted")
    card = json.loads((folder / "model.json").read_text())
    with pytest.raises(CheckpointError, match="tone_predictor"):
        SafetensorsSource(folder).tone_predictor()
    card["tone_predictor"] = predictor.to_json()
    (folder / "model.json").write_text(json.dumps(card))
    photo = np.clip(0.5 + 0.1 * rng.standard_normal((32, 40, 3)), 0, 1).astype(np.float32)
    restorer = Restorer(ModelBank(SafetensorsSource(folder), torch.device("cpu")))
    result = restorer.restore(photo, RestoreOptions(correct_fading=True))  # the predicted tone is opt-in
    mean, std = predictor.predict(photo)
    assert np.allclose(result.image.mean((0, 1)), mean, atol=0.01)
    assert np.allclose(result.image.std((0, 1)), std, atol=0.01)
    kept = restorer.restore(photo, RestoreOptions())  # by default the photo keeps its own tone (issue 17)
    assert np.allclose(kept.image.mean((0, 1)), photo.mean((0, 1)), atol=0.005)


def test_a_grey_photo_is_restored_grey_by_tone_blind_weights(tmp_path: Path) -> None:
    """Our weights (tone anchored) must not invent colour in a black and white scan, even one saved
    as JPEG with a little chroma noise; official weights (tone "model") are left as they are."""
    from tiny_weights import make_tiny_weights

    from engine.core.pipeline import RestoreOptions, Restorer
    from engine.models.checkpoints import ModelBank, SafetensorsSource

    rng = np.random.default_rng(2)
    yy, xx = np.mgrid[0:40, 0:48] / 48
    grey = np.repeat((0.3 + 0.4 * xx * yy + 0.1 * np.sin(9 * yy))[..., None], 3, axis=2)
    grey = np.clip(grey + rng.integers(-2, 3, grey.shape) * (rng.random(grey.shape) < 0.1) / 255, 0, 1).astype(np.float32)
    assert np.ptp(grey, axis=2).max() > 2 / 255  # not exactly grey
    ours = Restorer(ModelBank(SafetensorsSource(make_tiny_weights(tmp_path / "ours")), torch.device("cpu")))
    out = ours.restore(grey, RestoreOptions(strength=1.0)).image
    assert np.ptp(out, axis=2).max() < 1e-6
    official_like = Restorer(ModelBank(SafetensorsSource(make_tiny_weights(tmp_path / "model", output_tone="model")),
                                       torch.device("cpu")))
    assert np.ptp(official_like.restore(grey, RestoreOptions(strength=1.0)).image, axis=2).max() > 1e-3
