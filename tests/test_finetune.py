"""Fine-tuning on the user's photos: the three tasks on tiny weights and 64 px crops, the command
line end to end (detector -> profile -> restore with it), resume, pause, cancel and budgets."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import layout_only_state
from PIL import Image
from tiny_weights import make_labelled_photos, make_photos, make_tiny_weights

from engine.cli.app import main as cli_main
from engine.core.pipeline import RestoreOptions, Restorer
from engine.models.checkpoints import ModelBank, OfficialSource, validate_state_dict
from engine.models.registry import BY_NAME, manifest_for
from engine.progress import Cancelled, Progress
from engine.store.catalogue import resolve_weights
from engine.store.masks import MaskStore
from engine.training.finetune.data import holdout, inspect_data, sample_clean_photos
from engine.training.finetune.session import (
    Budget,
    DetectorData,
    DomainData,
    FinetuneJob,
    FinetuneSession,
    FinetuneSettings,
    MappingData,
)
from engine.training.finetune.tasks import DetectorTask

SMALL = FinetuneSettings(crop=64, batch=2, detect_side=64, image_side=96, ckpt_every=2)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return make_tiny_weights(tmp_path_factory.mktemp("tiny") / "weights")


@pytest.fixture(scope="module")
def labelled(tmp_path_factory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("labelled")
    make_labelled_photos(base / "photos", base / "masks")
    return base / "photos", base / "masks"


@pytest.fixture(autouse=True)
def data_dir(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("HEIRLOOM_DATA_DIR", str(tmp_path / "userdata"))
    return tmp_path / "userdata"


@pytest.fixture(autouse=True)
def one_thread(monkeypatch):
    """Tiny networks gain nothing from threads, and on a busy machine two OpenMP threads spinning on
    one free core make each step 30x slower; ``--device cpu`` would widen the pool to every core."""
    import engine.device

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    monkeypatch.setattr(engine.device, "_cpu", lambda: torch.device("cpu"))
    yield
    torch.set_num_threads(threads)


def cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    return cli_main([str(a) for a in argv], out=out, err=err), out.getvalue(), err.getvalue()


def detector_job(tiny: Path, labelled, work: Path, budget: Budget) -> FinetuneJob:
    return FinetuneJob(DetectorData(*labelled), work, str(tiny), budget, SMALL)


def steps_logged(work: Path) -> list[int]:
    return [json.loads(line)["step"] for line in (work / "metrics.jsonl").read_text().splitlines()]


def test_cli_detector_finetune_makes_a_profile_that_restores(tiny, labelled, tmp_path, data_dir):
    photos, masks = labelled
    common = ["finetune", "detector", "--images", photos, "--masks", masks, "--profile", "mine", "--base", tiny,
              "--device", "cpu", "--crop", "64", "--batch", "2"]
    code, out, err = cli(*common, "--steps", "3")
    assert code == 0, err
    assert "labelled 3, held out 1" in err and "ETA" in err and "held-out after:  f1" in out
    card = json.loads((data_dir / "profiles" / "mine" / "model.json").read_text())
    assert card["task"] == "detector" and card["steps"] == 3 and card["base"]["choice"] == str(tiny)
    assert card["data"] == {"images": str(photos), "masks": str(masks)}
    assert {"precision", "recall", "f1"} <= set(card["metrics"]["before"]) and "f1" in card["metrics"]["after"]

    code, _, err = cli(*common, "--steps", "3")  # same name again: refused, nothing lost
    assert code == 1 and "already exists" in err
    code, out, err = cli("finetune", "detector", "--profile", "mine", "--resume", "--steps", "5")  # folders remembered
    assert code == 0, err
    assert steps_logged(data_dir / "finetune" / "mine") == [1, 2, 3, 4, 5]  # continued from step 3
    assert json.loads((data_dir / "profiles" / "mine" / "model.json").read_text())["steps"] == 5

    code, out, err = cli("restore", photos / "photo0.png", "-o", tmp_path / "out", "--scratch",
                         "--weights", "profile:mine", "--device", "cpu")
    assert code == 0, err + out
    assert Image.open(tmp_path / "out" / "photo0.png").size == (128, 96)
    code, _, err = cli("restore", photos / "photo0.png", "-o", tmp_path / "out2", "--weights", "profile:nope")
    assert code != 0 and "existing profiles: mine" in err


def test_pause_then_resume_in_a_new_session_equals_an_uninterrupted_run(tiny, labelled, tmp_path):
    straight = FinetuneSession(detector_job(tiny, labelled, tmp_path / "a", Budget(steps=4)))
    list(straight.run())
    assert straight.state == "finished" and straight.step == 4

    first = FinetuneSession(detector_job(tiny, labelled, tmp_path / "b", Budget(steps=4)))
    for metrics in first.run():
        assert set(first.loss_keys) <= set(metrics) and 0 < metrics["fraction"] <= 1
        if metrics["step"] == 2:
            first.pause()
    assert first.state == "paused" and first.step == 2
    assert torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)["step"] == 2
    with pytest.raises(FileExistsError):
        next(FinetuneSession(detector_job(tiny, labelled, tmp_path / "b", Budget(steps=4))).run())
    second = FinetuneSession(detector_job(tiny, labelled, tmp_path / "b", Budget(steps=4)))
    list(second.run(resume=True))
    assert second.step == 4 and steps_logged(tmp_path / "b") == [1, 2, 3, 4]
    a, b = straight.task.nets["detector"].state_dict(), second.task.nets["detector"].state_dict()
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-4, atol=1e-5)
    assert second.before == straight.before  # base scores kept with the checkpoint


def test_reload_saves_a_stopped_run_as_it_is_in_a_new_session(tiny, labelled, tmp_path):
    """The app was closed while training: the next session saves (or resumes) the checkpoint as it is."""
    first = FinetuneSession(detector_job(tiny, labelled, tmp_path / "w", Budget(steps=4)))
    for metrics in first.run():
        if metrics["step"] == 2:
            first.pause()
    later = FinetuneSession(detector_job(tiny, labelled, tmp_path / "w", Budget(steps=4)))
    assert later.reload() and later.state == "paused" and later.step == 2 and later.before == first.before
    assert later.save_profile("as-is").card["steps"] == 2
    list(later.run(resume=True))
    assert later.step == 4 and steps_logged(tmp_path / "w") == [1, 2, 3, 4]
    assert not FinetuneSession(detector_job(tiny, labelled, tmp_path / "none", Budget(steps=4))).reload()


def test_cancel_stops_with_a_checkpoint_and_batchnorm_statistics_stay(tiny, labelled, tmp_path):
    session = FinetuneSession(detector_job(tiny, labelled, tmp_path / "w", Budget(steps=50)))
    progress = Progress(lambda fraction, message: progress.cancel() if message == "step 2/50" else None)
    with pytest.raises(Cancelled):
        list(session.run(progress=progress))
    assert session.state == "cancelled"
    state = torch.load(tmp_path / "w" / "checkpoint.pt", weights_only=True)
    assert state["step"] == 2
    base = resolve_weights(str(tiny)).state_dict(BY_NAME["detector"])
    tuned = state["nets"]["detector"]
    torch.testing.assert_close(tuned["down_path.0.block.2.running_mean"], base["down_path.0.block.2.running_mean"])
    assert not torch.equal(tuned["first.1.weight"], base["first.1.weight"])  # but the weights did learn


def test_time_budget_stops(tiny, labelled, tmp_path):
    session = FinetuneSession(detector_job(tiny, labelled, tmp_path / "w", Budget(minutes=0.004)))
    metrics = list(session.run())
    assert session.state == "finished" and 0.24 <= session.seconds < 10 and len(metrics) == session.step
    assert metrics[-1]["fraction"] == 1.0


def test_brushed_masks_from_the_store_are_labels(tiny, labelled, tmp_path):
    photos, masks = labelled
    store = MaskStore(tmp_path / "store")
    for photo in sorted(photos.glob("*.png")):
        store.save(photo, np.asarray(Image.open(masks / photo.name)) > 127)
    summary = inspect_data(DetectorData(images=photos), store)
    assert summary.counts["labelled"] == 3 and summary.counts["held_out"] == 1
    assert inspect_data(DetectorData(images=tmp_path), store).counts["labelled"] == 0  # other folder: none
    session = FinetuneSession(FinetuneJob(DetectorData(images=photos), tmp_path / "w", str(tiny), Budget(steps=1),
                                          SMALL), mask_store=store)
    list(session.run())
    previews = session.preview(1)
    assert previews[0].before.shape == previews[0].after.shape and previews[0].before.shape[2] == 3


def test_holdout_is_deterministic_and_keeps_most_for_training():
    names = [f"scan{i:03d}.jpg" for i in range(23)]
    held = holdout(names)
    assert len(held) == 4 and held == holdout(list(reversed(names)))
    assert holdout(["only.jpg"]) == set() and len(holdout(["a.jpg", "b.jpg"])) == 1


def test_domain_task_from_the_cli_uses_shipped_clean_photos_by_default(tiny, tmp_path, data_dir):
    assert len(sample_clean_photos()) >= 4
    scans = make_photos(tmp_path / "scans", count=3, old=True)
    code, out, err = cli("finetune", "domain", "--scans", scans, "--profile", "scans", "--base", tiny, "--steps", "2",
                         "--device", "cpu", "--crop", "64", "--batch", "2")
    assert code == 0, err
    assert "sample photos that ship with scikit-image" in err and "domain_gap" in out
    card = json.loads((data_dir / "profiles" / "scans" / "model.json").read_text())
    assert card["fine_tuned"] == ["VAE_A_quality"] and "anchor_l1" in card["metrics"]["after"]
    restorer = Restorer(ModelBank(resolve_weights("profile:scans"), torch.device("cpu")))
    result = restorer.restore(np.asarray(Image.open(scans / "00.png")), RestoreOptions())
    assert result.image.shape == (80, 96, 3)


def test_mapping_task_trains_and_its_profile_restores(tiny, tmp_path):
    clean = make_photos(tmp_path / "clean", count=3)
    job = FinetuneJob(MappingData(clean), tmp_path / "w", str(tiny), Budget(steps=2), SMALL)
    session = FinetuneSession(job)
    assert session.prepare().counts["held_out"] == 1
    metrics = list(session.run())
    assert len(metrics) == 2 and "scratch_latent_l1" in metrics[-1]
    assert len(session.preview(2)) == 1  # one held-out photo
    profile = session.save_profile("clean")
    assert profile.card["fine_tuned"] == ["mapping_quality", "mapping_scratch"]
    assert "psnr_scratch" in profile.card["metrics"]["before"]
    restorer = Restorer(ModelBank(profile.source(), torch.device("cpu")))
    photo = np.asarray(Image.open(clean / "00.png"))
    mask = np.zeros(photo.shape[:2], bool)
    mask[10:14, :] = True
    assert restorer.restore(photo, RestoreOptions(), user_mask=mask).image.shape == (80, 96, 3)


def test_weights_without_tone_anchoring_train_on_the_raw_output(tmp_path):
    """Official-style weights (output_tone "model") are fine-tuned on their raw output, as trained."""
    base = make_tiny_weights(tmp_path / "raw", output_tone="model")
    scans, clean = make_photos(tmp_path / "scans", count=2, old=True), make_photos(tmp_path / "clean", count=2)
    session = FinetuneSession(FinetuneJob(DomainData(scans, clean), tmp_path / "w", str(base), Budget(steps=1), SMALL))
    session.prepare()
    assert session.task.w.recon == 0 and session.task.w.raw > 0
    assert np.isfinite(list(session.run())[-1]["recon_l1"])
    assert session.save_profile("raw").card["output_tone"] == "model"


def test_official_shaped_weights_build_and_export_in_the_official_layout(tmp_path, labelled):
    """No card: the official architecture (37 M parameters; one training step of it costs seconds on a
    busy CPU, so the step itself is exercised on tiny weights above, where the code path is the same)."""
    member = tmp_path / "official" / "detection" / "FT_Epoch_latest.pt"
    member.parent.mkdir(parents=True)
    buf = io.BytesIO()
    torch.save({"model_state": layout_only_state("detector")}, buf)
    member.write_bytes(buf.getvalue())
    assert isinstance(resolve_weights(str(tmp_path / "official")), OfficialSource)
    session = FinetuneSession(FinetuneJob(DetectorData(*labelled), tmp_path / "w", str(tmp_path / "official"),
                                          Budget(steps=1), SMALL))
    session.prepare()  # the detector task reads nothing but the detector
    task = session.task
    assert isinstance(task, DetectorTask)
    task.train_mode()
    unet = task.nets["detector"]
    assert unet.training and not unet.down_path[0].block[2].training  # BatchNorm stays on its statistics
    validate_state_dict(task.export()["detector"], manifest_for(BY_NAME["detector"]), "official-shaped detector")
