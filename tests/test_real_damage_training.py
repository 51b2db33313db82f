"""The detector learns from real damaged photos with reference masks (issue #16): the labelled set,
its crops, the trainer's use of them, starting a run from another, and shipping a run's detector
calibrated on real damage."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from engine.training.config import CONFIGS
from engine.training.data import PhotoPool
from engine.training.labelled import LabelledPool
from engine.training.loop import init_from_run, save_checkpoint
from engine.training.trainers import DetectorTrainer


def labelled_set(root: Path, sizes=((90, 120), (140, 100)), splits=("calib", "calib")) -> Path:
    """Photos that are dark except exactly where their mask says damage (white), so a crop's mask
    can be read back from its pixels."""
    folder, data = root / "masks", root / "data"
    folder.mkdir()
    (data / "old").mkdir(parents=True)
    rng = np.random.default_rng(1)
    entries = []
    for i, ((h, w), split) in enumerate(zip(sizes, splits)):
        mask = np.zeros((h, w), bool)
        mask[rng.integers(0, h, 40), rng.integers(0, w, 40)] = True
        mask[h // 3, : w // 2] = True  # a crack
        photo = np.where(mask[..., None], 250, 20).astype(np.uint8).repeat(3, axis=2)
        Image.fromarray(photo).save(data / "old" / f"p{i}.png")
        Image.fromarray(mask.astype(np.uint8) * 255).save(folder / f"p{i}_mask.png")
        entries.append({"stem": f"p{i}", "path": f"old/p{i}.png", "split": split})
    (folder / "manifest.json").write_text(json.dumps({"photos": entries}), encoding="utf-8")
    return folder


def test_a_labelled_set_gives_crops_whose_masks_line_up_with_their_pixels(tmp_path):
    pool = LabelledPool.from_manifest(labelled_set(tmp_path), tmp_path / "data")
    assert pool.stems == ["p0", "p1"] and pool.photos[0].shape == (90, 120, 3)
    images, masks = pool.crops(np.random.default_rng(0), 24, 64)
    assert images.shape == (24, 64, 64, 3) and masks.shape == (24, 64, 64) and masks.any()
    assert np.array_equal(images[..., 0] > 0.5, masks)  # flips and offsets applied to both alike
    small, small_masks = pool.crops(np.random.default_rng(1), 4, 128)  # larger than p0: mirror-padded
    assert np.array_equal(small[..., 0] > 0.5, small_masks)


def test_the_held_out_split_is_never_loaded_for_training(tmp_path):
    folder = labelled_set(tmp_path, splits=("calib", "test"))
    assert LabelledPool.from_manifest(folder, tmp_path / "data").stems == ["p0"]
    with pytest.raises(ValueError, match="held out"):
        LabelledPool.from_manifest(folder, tmp_path / "data", split="test")


def test_a_missing_photo_or_mask_is_named(tmp_path):
    folder = labelled_set(tmp_path)
    (folder / "p1_mask.png").unlink()
    with pytest.raises(FileNotFoundError, match="p1_mask.png"):
        LabelledPool.from_manifest(folder, tmp_path / "data")


def real_config(share: float):
    tiny = CONFIGS["tiny"]
    return replace(tiny, stages={**tiny.stages, "detector": replace(tiny.stage("detector"), real_crops=share)})


def clean_pool() -> PhotoPool:
    rng = np.random.default_rng(0)
    return PhotoPool([rng.integers(0, 255, (96, 96, 3), np.uint8) for _ in range(2)])


def test_the_detector_trains_on_real_crops_with_their_reference_masks(tmp_path):
    labelled = LabelledPool.from_manifest(labelled_set(tmp_path), tmp_path / "data")
    with pytest.raises(ValueError, match="--real-masks"):
        DetectorTrainer(real_config(1.0), torch.device("cpu"), clean_pool())
    trainer = DetectorTrainer(real_config(1.0), torch.device("cpu"), clean_pool(), labelled=labelled)
    trainer.step(0)
    degraded, _, target = trainer._last
    assert np.array_equal(degraded[..., 0] > 0.5, target[..., 0] > 0.5)  # every crop real, its own mask
    synthetic_only = DetectorTrainer(CONFIGS["tiny"], torch.device("cpu"), clean_pool(), labelled=labelled)
    assert synthetic_only.labelled is None  # a configuration without real crops ignores the set


def test_a_run_can_start_from_another_runs_detector(tmp_path):
    source = DetectorTrainer(CONFIGS["tiny"], torch.device("cpu"), clean_pool())
    source.step(0)
    (tmp_path / "a").mkdir()
    save_checkpoint(source, tmp_path / "a", 1)
    labelled = LabelledPool.from_manifest(labelled_set(tmp_path), tmp_path / "data")
    target = DetectorTrainer(real_config(0.5), torch.device("cpu"), clean_pool(), labelled=labelled)
    init_from_run(target, tmp_path / "a")
    for name, value in source.nets["U"].state_dict().items():
        assert torch.equal(target.nets["U"].state_dict()[name], value)
    wider = DetectorTrainer(CONFIGS["lite"], torch.device("cpu"), clean_pool())
    with pytest.raises(ValueError, match="does not fit"):
        init_from_run(wider, tmp_path / "a")



def run_and_weights(tmp_path: Path) -> tuple[LabelledPool, Path]:
    """A labelled set, a 3-step tiny detector run in ``tmp_path/run`` and a weights folder (a card
    at the photo's own detection scale, no networks) to ship it into."""
    labelled = LabelledPool.from_manifest(labelled_set(tmp_path), tmp_path / "data")
    trainer = DetectorTrainer(CONFIGS["tiny"], torch.device("cpu"), clean_pool())
    for step in range(3):
        trainer.step(step)
    (tmp_path / "run").mkdir()
    save_checkpoint(trainer, tmp_path / "run", 3)
    weights = tmp_path / "weights"
    weights.mkdir()
    (weights / "model.json").write_text(json.dumps({"name": "w", "detection_scale": "auto", "networks": {}}))
    return labelled, weights


def test_a_shipped_detector_is_calibrated_on_real_damage_and_keeps_the_other_networks(tmp_path):
    from engine.core.detection import OFFICIAL_THRESHOLD
    from engine.models.checkpoints import ModelBank, SafetensorsSource
    from engine.training.ship_detector import mean_scores, ship_detector

    labelled, weights = run_and_weights(tmp_path)
    (weights / "other.txt").write_text("kept")

    card = ship_detector(tmp_path / "run", weights, tmp_path / "shipped", labelled)
    shipped = tmp_path / "shipped"
    assert (shipped / "other.txt").read_text() == "kept" and card["networks"]["detector"] == {"width_log2": 2}
    assert card["steps"]["detector"] == 3 and json.loads((shipped / "model.json").read_text()) == card
    calibration = card["detector_calibration"]
    bank = ModelBank(SafetensorsSource(shipped), torch.device("cpu"))
    from engine.core.detection import scratch_probability

    after = mean_scores([scratch_probability(bank, p) for p in labelled.photos], labelled.masks, OFFICIAL_THRESHOLD)
    assert after["f1"] == pytest.approx(calibration["at_0.4_after"]["f1"], abs=2e-3)
    assert calibration["at_0.4_after"]["f1"] >= calibration["at_0.4_before"]["f1"]
    with pytest.raises(FileExistsError):
        ship_detector(tmp_path / "run", weights, shipped, labelled)
    assert not any(p.name.startswith(".shipped") for p in tmp_path.iterdir())  # no staging folder left


def test_the_train_command_continues_a_detector_on_real_damage_and_ships_it(tmp_path, capsys):
    """`train detector --real-masks --init-from`, then `train export-detector`: what
    scripts/train_lite.sh runs for the lite-real detector, on the tiny configuration."""
    from engine.cli.train import main as train_main

    masks = labelled_set(tmp_path)
    clean = tmp_path / "clean"
    clean.mkdir()
    rng = np.random.default_rng(3)
    for i in range(12):  # every tenth is held out; photos at least a crop wide
        Image.fromarray(rng.integers(0, 255, (80, 96, 3), np.uint8)).save(clean / f"c{i:02d}.png")
    common = ["--device", "cpu", "--clean", str(clean), "--steps", "2"]
    assert train_main(["train", "detector", "--config", "tiny", "--out", str(tmp_path / "synthetic"), *common]) == 0
    assert train_main(["train", "detector", "--config", "tiny", "--out", str(tmp_path / "real"), *common,
                       "--real-masks", str(masks), "--data-root", str(tmp_path / "data"),
                       "--init-from", str(tmp_path / "synthetic")]) == 0
    weights = tmp_path / "weights"
    weights.mkdir()
    (weights / "model.json").write_text(json.dumps({"name": "w", "detection_scale": "auto"}))
    # --clean: the synthetic-damage guard runs on these small photos (the shared set's default: ~10 s)
    assert train_main(["train", "export-detector", "--run", str(tmp_path / "real"), "--weights", str(weights),
                       "--dest", str(tmp_path / "shipped"), "--real-masks", str(masks),
                       "--data-root", str(tmp_path / "data"), "--clean", str(clean)]) == 0
    assert "real calib split" in capsys.readouterr().out
    assert (tmp_path / "shipped" / "detector.safetensors").is_file()
    assert train_main(["train", "export-detector", "--run", str(tmp_path / "real")]) == 2


def test_the_real_damage_threshold_keeps_the_synthetic_f1_near_its_best(tmp_path):
    """Only thresholds whose synthetic F1 is within the slack of the best synthetic cut compete on
    real F1: no slack takes the synthetic best. What was kept is written on the card."""
    from engine.models.checkpoints import ModelBank, SafetensorsSource
    from engine.training.ship_detector import calibrate_on_real, ship_detector, synthetic_f1

    labelled, weights = run_and_weights(tmp_path)
    rng = np.random.default_rng(5)
    photos = [rng.random((64, 80, 3), dtype=np.float32) for _ in range(2)]
    card = ship_detector(tmp_path / "run", weights, tmp_path / "shipped", labelled, photos)
    calibration = card["detector_calibration"]
    assert calibration["synthetic_f1_after"] >= calibration["synthetic_f1_floor"] - 1e-4

    bank = ModelBank(SafetensorsSource(tmp_path / "shipped"), torch.device("cpu"))
    synthetic = synthetic_f1(bank, photos)
    strict = calibrate_on_real(bank, labelled, photos, slack=0.0)
    assert synthetic[strict.best_threshold] == max(synthetic.values())
    free = calibrate_on_real(bank, labelled, photos, slack=1.0)  # every threshold competes on real F1
    assert free.best_threshold == calibrate_on_real(bank, labelled).best_threshold
    assert free.at_best["f1"] >= strict.at_best["f1"]
