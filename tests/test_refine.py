"""The full-resolution refinement (issue #17, item 2): network, tiled stage, pipeline, training, export."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from tiny_weights import make_photos, make_tiny_weights

from engine.core.pipeline import RestoreOptions, Restorer
from engine.core.refinement import refine
from engine.core.strength import apply_strength
from engine.models.checkpoints import CheckpointError, ModelBank, SafetensorsSource, save_state_dicts
from engine.models.networks.refine import START_BLEND, RefineNet
from engine.models.registry import BY_NAME
from engine.training.refine_train import refine_loss
from engine.training.ship_refine import ship_refine

CPU = torch.device("cpu")


def random_refine(width: int = 4, seed: int = 0) -> RefineNet:
    """A refinement whose residual is not zero (a fresh one returns its composite exactly)."""
    torch.manual_seed(seed)
    net = RefineNet(width=width)
    torch.nn.init.normal_(net.tail.weight, std=0.05)
    return net.eval()


def add_refine(folder, width: int = 4, seed: int = 0):
    save_state_dicts(folder, {"refine": random_refine(width, seed).state_dict()})
    card = json.loads((folder / "model.json").read_text())
    card["networks"]["refine"] = {"width": width}
    (folder / "model.json").write_text(json.dumps(card))
    return folder


def images(h: int, w: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    photo = torch.rand(1, 3, h, w, generator=g) * 2 - 1
    restored = torch.rand(1, 3, h, w, generator=g) * 2 - 1
    holes = (torch.rand(1, 1, h, w, generator=g) > 0.9).float()
    return photo, restored, holes


def test_a_fresh_refinement_returns_the_fixed_blend_with_its_holes_filled():
    photo, restored, holes = images(32, 48)
    out = RefineNet(width=4)(photo, restored, holes)
    expected = torch.where(holes > 0, restored, START_BLEND * restored + (1 - START_BLEND) * photo)
    assert torch.allclose(out, expected, atol=1e-6)


def test_the_receptive_radius_covers_what_one_pixel_changes():
    net = random_refine()
    photo, restored, holes = images(160, 160)
    with torch.no_grad():
        base = net(photo, restored, holes)
        changed = photo.clone()
        changed[..., 80, 80] += 1.0
        diff = (net(changed, restored, holes) - base).abs().amax((0, 1))
    ys, xs = torch.nonzero(diff > 0, as_tuple=True)
    reach = max((ys - 80).abs().max().item(), (xs - 80).abs().max().item())
    traits = BY_NAME["refine"].traits
    assert 20 < reach <= traits.halo - traits.feather


def test_tiled_refinement_equals_untiled_at_any_size(tmp_path):
    folder = add_refine(make_tiny_weights(tmp_path / "w"))
    bank = ModelBank(SafetensorsSource(folder), CPU)
    photo, restored, holes = images(150, 203)  # not multiples of the network's 4
    whole = refine(bank, restored, photo, holes)
    tiled = refine(bank, restored, photo, holes, tile=48)
    assert whole.shape == (1, 3, 150, 203)
    assert torch.allclose(whole, tiled, atol=1e-5)
    assert not torch.allclose(whole, RefineNet.blend(photo, restored, holes), atol=1e-3)  # it did something


def test_the_pipeline_runs_the_refinement_when_the_weights_have_one(tmp_path):
    plain = make_tiny_weights(tmp_path / "plain")
    refined = add_refine(make_tiny_weights(tmp_path / "refined"))
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 255, (70, 90, 3), np.uint8)
    mask = np.zeros((70, 90), bool)
    mask[30:34, 10:80] = True
    options = RestoreOptions(scratch=True, detection_scale="off", strength=1.0, faces=False)
    without = Restorer(ModelBank(SafetensorsSource(plain), CPU)).restore(photo, options, user_mask=mask)
    restorer = Restorer(ModelBank(SafetensorsSource(refined), CPU))
    with_refine = restorer.restore(photo, options, user_mask=mask)
    assert not without.refined and "refinement" not in without.timings
    assert with_refine.refined and "refinement" in with_refine.timings
    assert with_refine.image.shape == photo.shape
    assert np.abs(with_refine.image - without.image).mean() > 1e-3
    # the strength still blends with the photo: at 0 only the holes change
    none = restorer.restore(photo, RestoreOptions(scratch=True, detection_scale="off", strength=0.0, faces=False),
                            user_mask=mask)
    original = photo.astype(np.float32) / 255
    assert np.allclose(none.image[~mask], original[~mask], atol=1e-6)
    assert np.allclose(none.image, apply_strength(with_refine.image.copy(), original, mask, 0.0), atol=1e-6)
    # quality mode (no mask) is refined too
    assert restorer.restore(photo, RestoreOptions(faces=False)).refined


def test_a_refinement_file_that_does_not_match_is_named_before_any_photo(tmp_path):
    folder = add_refine(make_tiny_weights(tmp_path / "w"), width=4)
    card = json.loads((folder / "model.json").read_text())
    card["networks"]["refine"] = {"width": 8}  # the card says 8, the file holds 4
    (folder / "model.json").write_text(json.dumps(card))
    with pytest.raises(CheckpointError, match="refine.safetensors.*head.0.weight"):
        Restorer(ModelBank(SafetensorsSource(folder), CPU)).prepare(RestoreOptions())


def test_the_loss_is_blind_to_global_tone_but_not_to_detail():
    clean = torch.rand(2, 3, 32, 32) * 2 - 1
    loss_same, _ = refine_loss(clean.clone(), clean)
    loss_toned, _ = refine_loss(clean * 0.5 + 0.2, clean)  # the same picture, another global tone
    loss_blurred, _ = refine_loss(torch.nn.functional.avg_pool2d(clean, 3, 1, 1), clean)
    assert loss_toned.item() < loss_same.item() + 1e-3
    assert loss_blurred.item() > loss_same.item() + 0.1


def test_the_train_command_trains_a_refinement_and_ships_it_behind_its_chain(tmp_path, capsys):
    from engine.cli.train import main as train_main

    weights = make_tiny_weights(tmp_path / "weights")
    clean = make_photos(tmp_path / "clean", count=12, size=(80, 96))
    common = ["--device", "cpu", "--clean", str(clean), "--weights", str(weights)]
    run = tmp_path / "run"
    assert train_main(["train", "refine", "--config", "tiny", "--out", str(run), "--steps", "3", *common]) == 0
    assert (run / "checkpoint.pt").is_file() and (run / "samples").is_dir()
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert metrics[-1]["step"] == 3 and {"l1", "ssim", "l1_chain", "l1_start"} <= set(metrics[-1])
    assert train_main(["train", "refine", "--config", "tiny", "--out", str(run), "--steps", "4", "--resume",
                       *common]) == 0
    dest = tmp_path / "shipped"
    card = ship_refine(run, weights, dest, [np.random.default_rng(1).random((64, 64, 3)).astype(np.float32)])
    assert (dest / "refine.safetensors").is_file() and not (weights / "refine.safetensors").exists()
    assert card["networks"]["refine"] == {"width": 4} and card["steps"]["refine"] == 4
    assert "default_strength" in card and "strength_predictor" in card
    on_disk = json.loads((dest / "model.json").read_text())
    assert on_disk["files"]["refine.safetensors"] and on_disk["files"] == {**card["files"]}
    assert Restorer(ModelBank(SafetensorsSource(dest), CPU)).restore(
        np.zeros((40, 40, 3), np.uint8), RestoreOptions(faces=False)).refined
    # the command: a second export to the same folder is refused, and so is a run of another stage
    assert train_main(["train", "export-refine", "--run", str(run), "--weights", str(weights),
                       "--dest", str(dest), "--clean", str(clean)]) == 1
    assert "already exists" in capsys.readouterr().err
    assert train_main(["train", "export-refine", "--run", str(run)]) == 2
    assert train_main(["train", "export-refine", "--run", str(weights), "--weights", str(weights),
                       "--dest", str(tmp_path / "other"), "--clean", str(clean)]) == 1
    assert not (tmp_path / "other").exists()


def test_a_profile_tuned_from_refined_weights_keeps_their_refinement(tmp_path, monkeypatch):
    from engine.store import profiles

    monkeypatch.setenv("HEIRLOOM_DATA_DIR", str(tmp_path / "userdata"))
    base = add_refine(make_tiny_weights(tmp_path / "w"))
    source = SafetensorsSource(base)
    tuned = {"detector": source.state_dict(BY_NAME["detector"])}
    profile = profiles.save_profile("tuned", source, tuned, profiles.ProfileInfo("detector", str(base)))
    kept = SafetensorsSource(profile.folder)
    assert kept.has(BY_NAME["refine"]) and kept.network_kwargs(BY_NAME["refine"]) == {"width": 4}
    assert Restorer(ModelBank(kept, CPU)).restore(np.zeros((32, 32, 3), np.uint8), RestoreOptions(faces=False)).refined


def test_the_benchmarks_two_tone_shortcut_refines_each_tone(tmp_path):
    """bench/eval_colour.TwoTones runs the chain once for both tones; with a refinement, each tone
    must be refined on its own, exactly as a real --correct-fading restore does."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    from eval_colour import TwoTones

    folder = add_refine(make_tiny_weights(tmp_path / "w", output_tone="predicted"))
    card = json.loads((folder / "model.json").read_text())
    card["tone_predictor"] = json.loads((Path(__file__).resolve().parents[1] / "resources" / "weights"
                                         / "heirloom-lite-v1" / "model.json").read_text())["tone_predictor"]
    (folder / "model.json").write_text(json.dumps(card))
    photo = np.random.default_rng(2).integers(0, 255, (48, 64, 3), np.uint8)
    photo[..., 2] //= 2  # a colour cast, so the two tones differ
    restorer = TwoTones(ModelBank(SafetensorsSource(folder), CPU))
    options = RestoreOptions(faces=False, strength=1.0)
    result, corrected, _ = restorer.restore_both(photo, options)
    real = Restorer.restore(restorer, photo, RestoreOptions(faces=False, strength=1.0, correct_fading=True))
    assert result.refined and real.refined
    assert np.abs(real.image - corrected).max() < 1e-5
    assert np.abs(result.image - corrected).max() > 1e-3
