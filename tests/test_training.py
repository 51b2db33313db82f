"""Training stages on a tiny configuration: they learn, checkpoint, resume exactly, and export
weights the pipeline can load."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ROOT
from PIL import Image
from safetensors.torch import load_file

from engine.cli.app import build_parser
from engine.cli.app import main as cli_main
from engine.cli.train import calibration_photos
from engine.cli.train import main as train_main
from engine.training.losses import focal_loss


def train(stage: str, out: Path, photos, *extra: str) -> int:
    clean, old = photos
    return train_main(["train", stage, "--config", "tiny", "--out", str(out), "--device", "cpu",
                       "--clean", str(clean), "--old", str(old), *extra])


def metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_all_stages_train_and_export_weights_the_pipeline_uses(tmp_path, training_photos):
    runs = tmp_path / "runs"
    for stage in ("vae-a", "vae-b", "mapping", "detector"):
        assert train(stage, runs / stage, training_photos) == 0, stage
        assert (runs / stage / "checkpoint.pt").exists()
        assert list((runs / stage / "samples").glob("step_*.png"))
    dest = tmp_path / "weights"
    # --clean: the detector calibration and strength fit at export run on these small photos (seconds; on
    # the default, the shared set's 384 px photos, minutes: that default is checked below)
    clean = str(training_photos[0])
    assert train_main(["train", "export", "--runs", str(runs), "--dest", str(dest), "--clean", clean]) == 0
    card = json.loads((dest / "model.json").read_text())
    assert set(card["files"]) == {f"{n}.safetensors" for n in ("VAE_A_quality", "VAE_B_quality", "VAE_B_scratch",
                                                               "mapping_quality", "mapping_scratch", "detector")}
    assert card["networks"]["mapping_scratch"]["width"] == 16
    assert card["output_tone"] == "match-input" and "best_threshold" in card["detector_calibration"]
    assert 0 <= card["default_strength"] <= 1 and len(card["strength_fit_psnr"]) == 11
    assert card["strength_fit"]["samples"] > 0 and "predicted" in card["strength_fit"]
    from engine.models.predictors import StrengthPredictor
    StrengthPredictor.from_json(card["strength_predictor"])  # loads
    # without --clean, export calibrates on the shared training photos: that default is there and readable
    default_clean = build_parser().parse_args(["train", "export"]).clean
    assert len(calibration_photos(default_clean, count=2, side=64)) == 2
    photo = tmp_path / "p.png"
    Image.fromarray(np.full((40, 52, 3), 120, np.uint8)).save(photo)
    out = io.StringIO()
    assert cli_main(["restore", str(photo), "-o", str(tmp_path / "o"), "--scratch", "--weights", str(dest)],
                    out=out, err=io.StringIO()) == 0, out.getvalue()
    assert Image.open(tmp_path / "o" / "p.png").size == (52, 40)

    # the optional end-to-end stage starts from those runs, and export then takes its chains
    assert train("joint", runs / "joint", training_photos) == 0
    joint_dest = tmp_path / "joint-weights"
    assert train_main(["train", "export", "--runs", str(runs), "--dest", str(joint_dest), "--clean", clean]) == 0
    joint_card = json.loads((joint_dest / "model.json").read_text())
    assert joint_card["steps"]["joint"] == 4 and "joint" not in card["steps"]
    files = {name: load_file(joint_dest / f"{name}.safetensors") for name in ("VAE_B_quality", "VAE_B_scratch")}
    before = load_file(dest / "VAE_B_scratch.safetensors")
    key = next(k for k in before if k.startswith("decoder") and k.endswith("weight"))
    assert not torch.equal(files["VAE_B_scratch"][key], files["VAE_B_quality"][key])  # each chain its own decoder
    assert not torch.equal(files["VAE_B_scratch"][key], before[key])
    assert cli_main(["restore", str(photo), "-o", str(tmp_path / "o2"), "--scratch", "--weights", str(joint_dest)],
                    out=out, err=io.StringIO()) == 0, out.getvalue()


def test_resume_continues_exactly_where_it_stopped(tmp_path, training_photos):
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert train("vae-b", straight, training_photos, "--steps", "4") == 0
    assert train("vae-b", split, training_photos, "--steps", "2") == 0
    assert train("vae-b", split, training_photos, "--steps", "4") == 1  # refuses to overwrite without --resume
    assert train("vae-b", split, training_photos, "--steps", "4", "--resume") == 0
    a = torch.load(straight / "checkpoint.pt", weights_only=True)
    b = torch.load(split / "checkpoint.pt", weights_only=True)
    assert a["step"] == b["step"] == 4
    for key, tensor in a["nets"]["G"].items():
        torch.testing.assert_close(b["nets"]["G"][key], tensor, rtol=1e-4, atol=1e-5)
    assert [m["step"] for m in metrics(split)] == [1, 2, 3, 4]


def test_a_killed_run_resumes(tmp_path, training_photos):
    clean, old = training_photos
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "engine.cli.train", "train", "detector", "--config", "tiny", "--out", str(out),
           "--device", "cpu", "--clean", str(clean), "--steps", "400"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (out / "checkpoint.pt").exists() and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(0.5)
    proc.kill()
    proc.wait()
    done = torch.load(out / "checkpoint.pt", weights_only=True)["step"]
    assert 0 < done < 400
    assert train("detector", out, training_photos, "--steps", str(done + 2), "--resume") == 0
    assert torch.load(out / "checkpoint.pt", weights_only=True)["step"] == done + 2


def test_sigterm_stops_training_with_a_checkpoint(tmp_path, training_photos):
    import signal

    clean, _ = training_photos
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "engine.cli.train", "train", "vae-b", "--config", "tiny", "--out", str(out),
           "--device", "cpu", "--clean", str(clean), "--steps", "100000"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (out / "metrics.jsonl").exists() or not (out / "metrics.jsonl").read_text().count("\n") >= 3:
        assert time.time() < deadline
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1 and "resume with --resume" in err
    step = torch.load(out / "checkpoint.pt", weights_only=True)["step"]
    assert step >= metrics(out)[-1]["step"] > 0  # saved at the stop, not only every ckpt_every steps


def test_focal_loss_prefers_right_answers_and_down_weights_easy_pixels():
    target = torch.tensor([[1.0, 0.0]])
    assert focal_loss(torch.tensor([[4.0, -4.0]]), target) < focal_loss(torch.tensor([[-4.0, 4.0]]), target)
    easy = focal_loss(torch.tensor([[6.0]]), torch.tensor([[1.0]]))
    bce = torch.nn.functional.binary_cross_entropy_with_logits(torch.tensor([[6.0]]), torch.tensor([[1.0]]))
    assert easy < 0.01 * bce


def test_detector_calibration_moves_the_best_cut_to_the_official_threshold():
    from engine.models.networks.unet import ScratchUNet
    from engine.training.calibrate import calibrate_detector, detector_probabilities

    torch.manual_seed(0)
    net = ScratchUNet(width_log2=2)
    with torch.no_grad():
        net.last[1].bias.fill_(1.0)  # over-confident: most pixels above 0.4
    rng = np.random.default_rng(1)
    photos = [np.clip(rng.random((64, 80, 3)) * 0.2 + 0.4, 0, 1).astype(np.float32) for _ in range(3)]
    state = {k: v.clone() for k, v in net.state_dict().items()}
    calibrated, cal = calibrate_detector(state, 2, photos)
    assert calibrated["last.1.bias"].item() == pytest.approx(1.0 + cal.logit_shift, abs=1e-5)
    net.load_state_dict(calibrated)
    net.eval()
    prob, truth = detector_probabilities(net, photos, 50_000)
    from engine.core.metrics import detection_scores
    assert detection_scores(prob, truth, 0.4)["f1"] == pytest.approx(cal.f1_at_official_after, abs=0.01)
    assert cal.f1_at_official_after >= cal.f1_at_official_before


def test_detector_alternates_small_and_large_crops_with_the_same_pixels_per_step():
    """Damage is drawn at the crop's scale, so the detector also trains on crops twice as large
    (holes as big as at the pipeline's 256 px detection size), with the same pixels per step."""
    from engine.training.config import CONFIGS
    from engine.training.data import PhotoPool
    from engine.training.trainers import DetectorTrainer

    config = CONFIGS["lite"]
    rng = np.random.default_rng(0)
    pool = PhotoPool([rng.integers(0, 255, (300, 400, 3), np.uint8) for _ in range(3)])
    trainer = DetectorTrainer(config, torch.device("cpu"), pool)
    small, large = trainer.crop_and_batch(0), trainer.crop_and_batch(1)
    assert small == (128, 8) and large == (256, 2) and trainer.crop_and_batch(2) == small
    assert small[0] ** 2 * small[1] == large[0] ** 2 * large[1]
    tight = DetectorTrainer(config, torch.device("cpu"), PhotoPool([rng.integers(0, 255, (200, 220, 3), np.uint8)]))
    assert tight.crop_and_batch(1)[0] == 192  # never larger than the smallest photo, a multiple of 16
    metrics = tight.step(1)  # a large-crop step runs
    assert 0.0 <= metrics["f1"] <= 1.0 and np.isfinite(metrics["focal"])


def test_detector_ships_a_weight_average_and_resumes_checkpoints_without_one(tmp_path):
    """Export takes the detector's moving average; a checkpoint written before the average existed
    resumes with the average starting at the trained weights."""
    from engine.training.config import CONFIGS
    from engine.training.data import PhotoPool
    from engine.training.loop import CHECKPOINT, load_checkpoint, save_checkpoint
    from engine.training.trainers import EMA_DECAY, DetectorTrainer

    rng = np.random.default_rng(0)
    pool = PhotoPool([rng.integers(0, 255, (64, 64, 3), np.uint8) for _ in range(2)])
    config = CONFIGS["tiny"]
    trainer = DetectorTrainer(config, torch.device("cpu"), pool)
    before = {k: v.clone() for k, v in trainer.nets["U"].state_dict().items()}
    trainer.step(0)
    after, averaged = trainer.nets["U"].state_dict(), trainer.nets["U_ema"].state_dict()
    name = next(k for k, v in after.items() if v.is_floating_point() and not torch.equal(v, before[k]))
    expected = EMA_DECAY * before[name] + (1 - EMA_DECAY) * after[name]
    assert torch.allclose(averaged[name], expected, atol=1e-6)
    exported = trainer.export()["detector"]
    assert torch.equal(exported[name], averaged[name]) and not torch.equal(exported[name], after[name])

    save_checkpoint(trainer, tmp_path, 1)
    state = torch.load(tmp_path / CHECKPOINT, weights_only=True)
    del state["nets"]["U_ema"]  # as written before the average existed
    torch.save(state, tmp_path / CHECKPOINT)
    resumed = DetectorTrainer(config, torch.device("cpu"), pool)
    assert load_checkpoint(resumed, tmp_path) == 1
    assert torch.equal(resumed.nets["U_ema"].state_dict()[name], after[name])
