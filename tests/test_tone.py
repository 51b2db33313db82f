"""Tone anchoring: lite weights are trained blind to global tone, and the pipeline restores it."""

import json
from pathlib import Path

import numpy as np
import torch

from engine.models.checkpoints import ModelBank, SafetensorsSource, save_state_dicts
from engine.models.registry import BY_NAME
from engine.pipeline import RestoreOptions, Restorer
from engine.tone import channel_stats, match_tone

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
