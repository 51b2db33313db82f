"""The GPU training recipe, checked on the CPU: scripts/train_gpu.sh end to end on the tiny
configuration (one folder with every stage's checkpoint and exported weights that restore a photo),
the time budget, data workers giving the in-process batches, and mixed precision keeping
everything float32 but the forward passes."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ROOT
from PIL import Image
from torch import nn

from engine.cli.app import main as cli_main
from engine.cli.train import main as train_main
from engine.models.checkpoints import SafetensorsSource, build_network
from engine.models.registry import BY_NAME
from engine.training import amp as amp_module
from engine.training.amp import MixedPrecision
from engine.training.config import CONFIGS
from engine.training.data import PhotoPool
from engine.training.loop import CHECKPOINT, train
from engine.training.trainers import DetectorTrainer, MappingTrainer, Trainer, VAETrainer
from engine.training.workers import step_batches



def pools(photos) -> tuple[PhotoPool, PhotoPool]:
    clean, old = photos
    side = CONFIGS["tiny"].image_cache_side
    return PhotoPool.from_folders([clean], side, 64), PhotoPool.from_folders([old], side, 64, holdout=False)


def test_recipe_script_trains_every_stage_into_one_folder_within_its_budget(tmp_path, training_photos):
    """The whole recipe on the CPU, with a data worker and a budget so small that every stage
    stops after the one step a run always takes: all of it lands in OUT, and the weights restore."""
    clean, old = training_photos
    out = tmp_path / "gpu-run"
    env = {**os.environ, "CONFIG": "tiny", "DEVICE": "cpu", "MINUTES": "0.0001", "WORKERS": "1", "OUT": str(out),
           "CLEAN": str(clean), "OLD": str(old), "PY": sys.executable}
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "train_gpu.sh")], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for stage in ("vae-b", "vae-a", "mapping", "detector"):
        state = torch.load(out / "runs" / stage / CHECKPOINT, weights_only=True)
        assert state["stage"] == stage and state["config"] == "tiny"
        assert state["step"] == 1  # the budget stopped it (tiny trains 4 steps)
        assert list((out / "runs" / stage / "samples").glob("step_000001.png"))
        assert json.loads((out / "runs" / stage / "metrics.jsonl").read_text().splitlines()[-1])["step"] == 1
    summary = json.loads((out / "recipe.json").read_text())
    assert list(summary["stages"]) == ["vae-b", "vae-a", "mapping", "detector"]
    assert all(s["step"] == 1 and s["of"] == 4 for s in summary["stages"].values())
    assert summary["workers"] == 1 and summary["amp"] == "off"
    assert "time budget spent at step 1 of 4" in (out / "train.log").read_text()

    card = json.loads((out / "weights" / "model.json").read_text())
    assert card["name"] == "heirloom-tiny" and card["steps"] == {s: 1 for s in summary["stages"]}
    source = SafetensorsSource(out / "weights")
    for name in card["networks"]:  # every exported network loads, strictly, at the card's widths
        spec = BY_NAME[name]
        build_network(spec, source.state_dict(spec), torch.device("cpu"), source.network_kwargs(spec))
    photo = tmp_path / "p.png"
    Image.fromarray(np.full((40, 52, 3), 120, np.uint8)).save(photo)
    log = io.StringIO()
    assert cli_main(["restore", str(photo), "-o", str(tmp_path / "o"), "--scratch", "--weights", str(out / "weights")],
                    out=log, err=log) == 0, log.getvalue()
    assert Image.open(tmp_path / "o" / "p.png").size == (52, 40)


class ClockedTrainer(Trainer):
    """Each step takes 10 s of a fake clock: the budget's arithmetic without waiting for it."""

    stage = "vae-b"

    def __init__(self) -> None:
        super().__init__(CONFIGS["tiny"], torch.device("cpu"))
        self.now = 0.0
        self.nets = {"G": nn.Linear(2, 2)}
        self.optims = {"G": torch.optim.SGD(self.nets["G"].parameters(), lr=0.1)}

    def data(self, step: int) -> tuple:
        return (np.full((1, 4, 4, 3), step / 10, np.float32),)

    def learn(self, batch: tuple) -> dict[str, float]:
        self.now += 10.0
        loss = self.nets["G"](torch.ones(1, 2)).pow(2).sum()
        self.optimise("G", loss)
        self._last = (batch[0], batch[0], batch[0])
        return {"loss": loss.item()}


def test_budget_stops_before_a_step_that_would_end_too_late_and_resume_continues(tmp_path):
    trainer = ClockedTrainer()
    # 10 s steps, 35 s: after three steps (30 s) a fourth would end at 40 s, past the deadline
    done = list(train(trainer, tmp_path, steps=100, deadline=35.0, clock=lambda: trainer.now))
    assert [m["step"] for m in done] == [1, 2, 3]
    assert torch.load(tmp_path / CHECKPOINT, weights_only=True)["step"] == 3  # saved at the stop
    assert (tmp_path / "samples" / "step_000003.png").exists()  # tiny samples every 2 steps: 3 is the stop's
    logged = [json.loads(line)["step"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert logged == [1, 2, 3]
    # a deadline already past still takes one step, so a stage always leaves a checkpoint
    resumed = ClockedTrainer()
    resumed.now = 1000.0
    more = list(train(resumed, tmp_path, steps=100, resume=True, deadline=0.0, clock=lambda: resumed.now))
    assert [m["step"] for m in more] == [4]
    assert torch.load(tmp_path / CHECKPOINT, weights_only=True)["step"] == 4


def test_minutes_flag_ends_a_stage_with_a_checkpoint_and_exit_code_0(tmp_path, training_photos, capsys):
    clean, _ = training_photos
    out = tmp_path / "run"
    assert train_main(["train", "vae-b", "--config", "tiny", "--out", str(out), "--device", "cpu",
                       "--clean", str(clean), "--minutes", "0.00001"]) == 0
    assert torch.load(out / CHECKPOINT, weights_only=True)["step"] == 1
    assert "continue with --resume" in capsys.readouterr().err
    assert train_main(["train", "vae-b", "--config", "tiny", "--out", str(out), "--device", "cpu",
                       "--clean", str(clean), "--resume"]) == 0
    assert torch.load(out / CHECKPOINT, weights_only=True)["step"] == 4


def arrays_equal(a, b) -> bool:
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.dtype == b.dtype and np.array_equal(a, b)
    if isinstance(a, (tuple, list)):
        return type(a) is type(b) and len(a) == len(b) and all(arrays_equal(x, y) for x, y in zip(a, b))
    return a == b


def test_worker_batches_are_exactly_the_in_process_batches(training_photos):
    clean, old = pools(training_photos)
    config, cpu = CONFIGS["tiny"], torch.device("cpu")
    vae_a = VAETrainer(config, cpu, clean, old, "A", seed=3)
    from engine.models.networks.vae import VAEGenerator

    trainers = [vae_a, DetectorTrainer(config, cpu, clean, seed=3),
                MappingTrainer(config, cpu, clean, VAEGenerator(8), VAEGenerator(8), seed=3)]
    for trainer in trainers:
        made = list(step_batches(trainer, 2, 5, workers=1))
        assert [step for step, _ in made] == [2, 3, 4]
        for step, batch in made:
            assert arrays_equal(batch, trainer.data(step)), (trainer.stage, step)
        assert not arrays_equal(made[0][1], made[1][1])  # steps do differ
    assert [b for _, b in step_batches(vae_a, 0, 2, workers=0)] == [None, None]  # in-process: trainer draws


def test_training_with_workers_gives_the_same_networks(tmp_path, training_photos):
    clean, old = training_photos
    common = ["--config", "tiny", "--device", "cpu", "--clean", str(clean), "--old", str(old), "--steps", "3"]
    assert train_main(["train", "vae-a", "--out", str(tmp_path / "here"), *common]) == 0
    assert train_main(["train", "vae-a", "--out", str(tmp_path / "workers"), "--workers", "1", *common]) == 0
    a = torch.load(tmp_path / "here" / CHECKPOINT, weights_only=True)
    b = torch.load(tmp_path / "workers" / CHECKPOINT, weights_only=True)
    for net in a["nets"]:
        for key, tensor in a["nets"][net].items():
            assert torch.equal(b["nets"][net][key], tensor), (net, key)


def test_amp_is_refused_on_the_cpu(tmp_path, training_photos, capsys):
    clean, _ = training_photos
    assert train_main(["train", "vae-b", "--config", "tiny", "--out", str(tmp_path / "r"), "--device", "cpu",
                       "--clean", str(clean), "--amp", "bf16"]) == 2
    assert "for CUDA devices" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
    with pytest.raises(ValueError):
        MixedPrecision(torch.device("cpu"), "fp16")


def test_fp16_runs_the_networks_in_half_and_keeps_everything_else_float32(tmp_path, training_photos, monkeypatch):
    """CPU autocast stands in for CUDA's (the CPU is refused only because it is slow there): the
    forward passes run in float16, losses come back float32, the weights, their average and the
    checkpoint stay float32, and each optimiser's loss scale is checkpointed and restored."""
    monkeypatch.setattr(amp_module, "check_mode", lambda device, mode: None)
    clean, old = pools(training_photos)
    cpu = torch.device("cpu")
    trainer = VAETrainer(CONFIGS["tiny"], cpu, clean, old, "A")  # G, an image D and a latent DL
    trainer.amp = MixedPrecision(cpu, "fp16")
    seen = []
    first_conv = next(m for m in trainer.nets["G"].modules() if isinstance(m, nn.Conv2d))
    first_conv.register_forward_hook(lambda module, args, output: seen.append(output.dtype))
    metrics = list(train(trainer, tmp_path / "vae", steps=2))
    assert seen and set(seen) == {torch.float16}
    assert all(np.isfinite(v) for m in metrics for v in m.values())
    state = torch.load(tmp_path / "vae" / CHECKPOINT, weights_only=True)
    assert set(state["scalers"]) == {"G", "D", "DL"}
    assert all(t.dtype == torch.float32
               for net in state["nets"].values() for t in net.values() if t.is_floating_point())
    resumed = VAETrainer(CONFIGS["tiny"], cpu, clean, old, "A")
    resumed.amp = MixedPrecision(cpu, "fp16")
    state["scalers"]["G"]["scale"] = 1024.0
    torch.save(state, tmp_path / "vae" / CHECKPOINT)
    list(train(resumed, tmp_path / "vae", steps=3, resume=True))
    assert resumed.amp.scalers["G"].get_scale() <= 1024.0  # continued from the saved scale, not 65536

    detector = DetectorTrainer(CONFIGS["tiny"], cpu, clean)
    detector.amp = MixedPrecision(cpu, "fp16")
    metrics = detector.step(0)
    assert np.isfinite(metrics["focal"])
    assert all(v.dtype == torch.float32 for v in detector.nets["U_ema"].state_dict().values() if v.is_floating_point())


def test_worker_loaders_leave_the_sigchld_handler_as_they_found_it(training_photos):
    """PyTorch's DataLoader installs a SIGCHLD handler for its workers; it must not outlive them
    (a later killed subprocess crashed the whole test process through it)."""
    import signal

    from engine.training.config import CONFIGS
    from engine.training.data import PhotoPool
    from engine.training.trainers import VAETrainer
    from engine.training.workers import step_batches

    before = signal.getsignal(signal.SIGCHLD)
    rng = np.random.default_rng(0)
    pool = PhotoPool([rng.integers(0, 255, (96, 96, 3), np.uint8) for _ in range(2)])
    trainer = VAETrainer(CONFIGS["tiny"], torch.device("cpu"), pool, None, "B")
    batches = [batch for _, batch in step_batches(trainer, 0, 2, workers=1)]
    assert len(batches) == 2 and all(b is not None for b in batches)
    assert signal.getsignal(signal.SIGCHLD) == before
