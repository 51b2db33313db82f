"""Running a trainer: resumable checkpoints, sample images, progress with ETA, export.

``train(...)`` is a generator of metric dicts. It checkpoints every ``ckpt_every`` steps and
whenever it is stopped early (cancel, Ctrl-C, closing the generator), atomically, so a killed run
loses at most ``ckpt_every`` steps and ``resume=True`` continues exactly where it stopped (batches
are a function of the step number).

A ``deadline`` (``train --minutes``) ends a run cleanly before a step that would not finish in
time, judged by the run's mean step time so far, with a checkpoint and a last sample: a GPU run
gets a wall-clock budget instead of a step count, and ``resume=True`` later continues it. A run
always takes at least one step, so every stage leaves a checkpoint for the next to build on.
``workers`` > 0 has data worker processes make the batches (``engine.training.workers``).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Callable, Iterator

import torch

from engine.io.durable import sha256_file
from engine.io.encode import write_png
from engine.io.pixels import to_u8
from engine.models.checkpoints import save_state_dicts
from engine.progress import Progress
from engine.training.metrics_log import append_metrics, open_metrics_log
from engine.training.trainers import Trainer
from engine.training.workers import step_batches

CHECKPOINT = "checkpoint.pt"


def save_checkpoint(trainer: Trainer, out: Path, step: int) -> None:
    state = {"stage": trainer.stage, "step": step, "config": trainer.config.name,
             "nets": {k: v.state_dict() for k, v in trainer.nets.items()},
             "optims": {k: v.state_dict() for k, v in trainer.optims.items()}}
    if trainer.amp.scalers:  # fp16 loss scales, so a resumed run scales as an uninterrupted one
        state["scalers"] = trainer.amp.state_dict()
    tmp = out / (CHECKPOINT + ".tmp")
    torch.save(state, tmp)
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, out / CHECKPOINT)


def load_checkpoint(trainer: Trainer, out: Path) -> int:
    """Restore networks and optimisers; returns the number of steps already done (0 if none)."""
    path = out / CHECKPOINT
    if not path.exists():
        return 0
    state = torch.load(path, map_location=trainer.device, weights_only=True)
    if state["stage"] != trainer.stage or state["config"] != trainer.config.name:
        raise ValueError(f"{path} is a {state['config']} {state['stage']} checkpoint, not "
                         f"{trainer.config.name} {trainer.stage}; use another --out folder")
    for k, net in trainer.nets.items():
        if k in state["nets"]:
            net.load_state_dict(state["nets"][k])
        else:  # a network added to the stage since (e.g. a weight average): it starts from the trained ones
            trainer.missing_from_checkpoint(k)
    for k, opt in trainer.optims.items():
        opt.load_state_dict(state["optims"][k])
    trainer.amp.load_state_dict(state.get("scalers", {}))
    return int(state["step"])


def init_from_run(trainer: Trainer, run: Path) -> None:
    """Start a new run from another run's networks and optimisers (same stage and shapes, any
    configuration): e.g. a detector continued on different data. The new run counts its own steps."""
    path = Path(run) / CHECKPOINT
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint to start from at {path}")
    state = torch.load(path, map_location=trainer.device, weights_only=True)
    if state["stage"] != trainer.stage:
        raise ValueError(f"{path} is a {state['stage']} checkpoint, not {trainer.stage}")
    try:
        for k, net in trainer.nets.items():
            if k in state["nets"]:
                net.load_state_dict(state["nets"][k])
            else:
                trainer.missing_from_checkpoint(k)
        for k, opt in trainer.optims.items():
            opt.load_state_dict(state["optims"][k])
    except (RuntimeError, ValueError) as exc:  # shapes differ: another architecture
        raise ValueError(f"{path} ({state['config']}) does not fit the {trainer.config.name} networks: {exc}") from exc


def train(trainer: Trainer, out: Path, steps: int | None = None, resume: bool = False,
          progress: Progress | None = None, init_from: Path | None = None, deadline: float | None = None,
          workers: int = 0, clock: Callable[[], float] = time.monotonic) -> Iterator[dict[str, float]]:
    """Train ``trainer`` up to ``steps`` (default: its stage's), yielding each step's metrics.
    ``deadline`` is a ``clock()`` time (``time.monotonic`` unless a test gives its own clock)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = trainer.cfg
    total = steps if steps is not None else cfg.steps
    if not resume and (out / CHECKPOINT).exists():
        raise FileExistsError(f"{out} already holds a checkpoint; pass --resume to continue it or choose another --out")
    if resume and (out / CHECKPOINT).exists():
        start = load_checkpoint(trainer, out)
    else:
        start = 0
        if init_from is not None:
            init_from_run(trainer, init_from)
    progress = progress or Progress()
    for net in trainer.nets.values():
        net.train()
    step = saved = start
    log = open_metrics_log(out)
    started = time.perf_counter()
    began = clock()
    batches = step_batches(trainer, start, total, workers)
    metrics: dict[str, float] = {}
    try:
        for _, batch in batches:
            progress.check()
            if deadline is not None and step > start and out_of_time(clock(), began, step - start, deadline):
                if metrics and step % cfg.log_every:  # the last step is on record, as at the end of a run
                    append_metrics(log, metrics)
                if step % cfg.sample_every:
                    write_sample(trainer, out, step)
                break
            metrics = trainer.step(step, batch)
            step += 1
            metrics = {"step": step, **metrics, "seconds": round(time.perf_counter() - started, 2)}
            if step % cfg.log_every == 0 or step == total:
                append_metrics(log, metrics)
            if step % cfg.sample_every == 0 or step == total:
                write_sample(trainer, out, step)
            if step % cfg.ckpt_every == 0 or step == total:
                save_checkpoint(trainer, out, step)
                saved = step
            progress.report((step - start) / max(total - start, 1), f"step {step}/{total}")
            yield metrics
    finally:
        batches.close()  # stops the data workers
        log.close()
        if step > saved:  # stopped early (even between logging and the periodic save): keep what was learned
            save_checkpoint(trainer, out, step)


def out_of_time(now: float, began: float, done: int, deadline: float) -> bool:
    """Whether one more step, at the mean duration of the ``done`` steps since ``began``, would
    end past ``deadline``."""
    return now + (now - began) / done > deadline


def write_sample(trainer: Trainer, out: Path, step: int) -> None:
    (out / "samples").mkdir(exist_ok=True)
    write_png(out / "samples" / f"step_{step:06d}.png", to_u8(trainer.samples()))


def export_weights(parts: dict[str, dict[str, torch.Tensor]], dest: Path, card: dict) -> dict:
    """Write ``<name>.safetensors`` per network plus ``model.json`` (card with sha256 of each file)."""

    save_state_dicts(dest, parts)
    card = dict(card)
    card["files"] = {f"{name}.safetensors": sha256_file(dest / f"{name}.safetensors") for name in sorted(parts)}
    (dest / "model.json").write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    return card


