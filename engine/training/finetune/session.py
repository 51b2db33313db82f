"""Fine-tuning on the user's own photos: one API for the Train tab and ``python main.py finetune``.

Three tasks start from the weights in use (``default``, ``official``, ``profile:NAME`` or a path):
``detector`` (brushed masks as labels), ``domain`` (align VAE_A to the user's scans) and ``mapping``
(the user's clean photos degraded synthetically); see ``finetune_tasks`` for what each trains.

Typical use from a worker thread (the GUI keeps the session and calls ``pause`` / ``progress.cancel``
from its own thread; everything else is called from the worker)::

    session = FinetuneSession(FinetuneJob(DetectorData(images, masks), work_dir, base="default",
                                          budget=Budget(minutes=5)), torch.device("cpu"))
    summary = session.prepare()                  # counts, warnings; scores the base weights
    for metrics in session.run(resume=False, progress=Progress(callback)):
        chart.add(metrics["step"], {k: metrics[k] for k in session.loss_keys})
        if metrics["step"] % 50 == 0:
            show(session.preview(3))             # list[Preview]: before / after images
    if session.state == "finished":             # or "paused": run(resume=True) continues
        profile = session.save_profile("my-archive")

``run`` is a generator of metric dicts (``step``, ``seconds``, ``fraction`` and the task's losses).
It checkpoints into the work folder every ``ckpt_every`` steps or ``ckpt_seconds``, and whenever it
stops early: ``pause()`` (ends the generator at the next step boundary), ``Progress.cancel()``
(raises ``Cancelled``), Ctrl-C or closing the generator. ``run(resume=True)`` - in this session or a
new one with the same work folder - continues exactly where it stopped: batches are a function of
the step number, and the budget counts the whole run.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
import time
from pathlib import Path
from typing import Iterator

import torch

from engine.models.checkpoints import WeightSource
from engine.progress import Progress
from engine.store.catalogue import resolve_weights
from engine.store.masks import MaskStore
from engine.store.paths import user_data_dir
from engine.store.profiles import Profile, ProfileInfo, save_profile, validate_name
from engine.training.finetune.data import (
    DataSummary,
    find_labelled,
    inspect_data,
    load_labelled,
    load_photo_sets,
    split_labelled,
)
from engine.training.finetune.job import (
    TASKS,
    Budget,
    DetectorData,
    DomainData,
    FinetuneJob,
    FinetuneSettings,
    MappingData,
    TaskData,
)
from engine.training.finetune.tasks import (
    DetectorTask,
    DomainTask,
    FinetuneTask,
    MappingTask,
    Preview,
)
from engine.training.metrics_log import append_metrics, open_metrics_log

__all__ = ["TASKS", "Budget", "DataSummary", "DetectorData", "DomainData", "FinetuneJob", "FinetuneSession",
           "FinetuneSettings", "MappingData", "Preview", "TaskData", "default_work_dir", "inspect_data", "load_job"]

CHECKPOINT = "checkpoint.pt"
JOB = "job.json"
BEFORE = "before.json"


def default_work_dir(profile: str) -> Path:
    """Where a fine-tune that will become profile ``profile`` keeps its checkpoint."""
    return user_data_dir() / "finetune" / validate_name(profile)


def load_job(work: Path) -> FinetuneJob | None:
    """The job a work folder was started with (None if it has none)."""
    try:
        return FinetuneJob.from_json(json.loads((Path(work) / JOB).read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def fingerprint(source: WeightSource) -> str:
    """Identifies the base weights' files (names and sizes), so a checkpoint is never resumed on top
    of different base weights (e.g. after the default weights were updated)."""
    items = []
    for name, location in sorted(source.files().items()):
        path = Path(location)
        items.append([name, location, path.stat().st_size if path.is_file() else None])
    return hashlib.sha256(json.dumps(items).encode()).hexdigest()[:16]


class FinetuneSession:
    """One fine-tune: data, networks, the training loop with its checkpoints, and the profile."""

    def __init__(self, job: FinetuneJob, device: torch.device | str = "cpu", mask_store: MaskStore | None = None) -> None:
        self.job = job
        self.device = torch.device(device)
        self.mask_store = mask_store
        self.work = Path(job.work)
        self.summary = DataSummary()
        self.state = "new"  # new -> ready -> running -> paused | finished | cancelled
        self.step = 0
        self.seconds = 0.0  # training time so far (whole run, across resumes)
        self.before: dict[str, float] = {}
        self._task: FinetuneTask | None = None
        self._source: WeightSource | None = None
        self._pause = threading.Event()
        self._saved_step = 0

    # ------------------------------------------------------------------ setup

    @property
    def task(self) -> FinetuneTask:
        if self._task is None:
            raise RuntimeError("call prepare() first")
        return self._task

    @property
    def loss_keys(self) -> tuple[str, ...]:
        return self.task.loss_keys

    def prepare(self, progress: Progress | None = None) -> DataSummary:
        """Resolve the base weights, load the data and build the networks (idempotent). Raises
        ValueError for unusable data and CheckpointError for unusable weights."""
        if self._task is not None:
            return self.summary
        progress = progress or Progress()
        progress.report(0.0, "loading photos")
        self._source = resolve_weights(self.job.base)
        self._task = self._build(self.job.data, self.job.settings, self._source)
        self.state = "ready"
        return self.summary

    def _build(self, data: TaskData, settings: FinetuneSettings, source: WeightSource) -> FinetuneTask:
        seed = settings.seed
        if isinstance(data, DetectorData):
            pairs, self.summary = find_labelled(data, self.mask_store)
            photos = load_labelled(pairs, settings, self.summary)
            train, held = split_labelled(photos)
            if not train:
                raise ValueError("no usable labelled photos to train on: " + "; ".join(self.summary.warnings))
            return DetectorTask(source, train, held, settings, self.device, seed)
        sets = load_photo_sets(data, settings, self.summary)
        if isinstance(data, DomainData):
            return DomainTask(source, sets.train, sets.held, sets.clean, settings, self.device, seed)
        return MappingTask(source, sets.train, sets.held, settings, self.device, seed)

    # ------------------------------------------------------------------ checkpoints

    def _save_checkpoint(self) -> None:
        task = self.task
        state = {"task": task.name, "base": self.job.base, "base_fingerprint": fingerprint(self._source),
                 "step": self.step, "seconds": self.seconds,
                 "nets": {k: v.state_dict() for k, v in task.nets.items()},
                 "optims": {k: v.state_dict() for k, v in task.optims.items()}}
        tmp = self.work / (CHECKPOINT + ".tmp")
        torch.save(state, tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, self.work / CHECKPOINT)
        self._saved_step = self.step

    def _load_checkpoint(self) -> bool:
        path = self.work / CHECKPOINT
        if not path.is_file():
            return False
        state = torch.load(path, map_location=self.device, weights_only=True)
        if state["task"] != self.task.name or state["base"] != self.job.base:
            raise ValueError(f"{self.work} holds a {state['task']} fine-tune of {state['base']!r}, not a "
                             f"{self.task.name} fine-tune of {self.job.base!r}; start over or use another name")
        if state["base_fingerprint"] != fingerprint(self._source):
            raise ValueError(f"the base weights {self.job.base!r} changed since the checkpoint in {self.work} was "
                             "made; it cannot be resumed on top of them: start over")
        for k, net in self.task.nets.items():
            net.load_state_dict(state["nets"][k])
        for k, opt in self.task.optims.items():
            opt.load_state_dict(state["optims"][k])
        self.step, self.seconds = int(state["step"]), float(state["seconds"])
        self._saved_step = self.step
        return True

    def has_checkpoint(self) -> bool:
        return (self.work / CHECKPOINT).is_file()

    def reload(self, progress: Progress | None = None) -> bool:
        """Prepare and load the work folder's checkpoint without training, so a run stopped in an
        earlier session (e.g. the app was closed) can be previewed or saved as a profile as it is.
        False when there is no checkpoint. ``run(resume=True)`` afterwards continues from it."""
        self.prepare(progress)
        if self.step == 0 and not self._load_checkpoint():
            return False
        before = self.work / BEFORE
        if before.is_file():
            self.before = json.loads(before.read_text(encoding="utf-8"))
        self.state = "finished" if self.job.budget.reached(self.step, self.seconds) else "paused"
        return True

    def discard(self) -> None:
        """Delete the work folder (start over)."""
        shutil.rmtree(self.work, ignore_errors=True)
        self.step, self.seconds, self.before, self._saved_step = 0, 0.0, {}, 0
        self._task, self.state = None, "new"  # the networks are rebuilt from the base by prepare()

    # ------------------------------------------------------------------ training

    def pause(self) -> None:
        """Stop at the next step boundary with a checkpoint; ``run(resume=True)`` continues. Thread-safe."""
        self._pause.set()

    @property
    def fraction(self) -> float:
        return self.job.budget.fraction(self.step, self.seconds)

    def run(self, resume: bool = False, progress: Progress | None = None,
            budget: Budget | None = None) -> Iterator[dict[str, float]]:
        """Train until the budget (``budget`` overrides the job's, e.g. to extend a finished run) is
        spent or the run is paused; yields metrics after every step."""
        progress = progress or Progress()
        self.prepare(progress)
        if budget is not None:
            self.job = FinetuneJob(self.job.data, self.job.work, self.job.base, budget, self.job.settings)
        self.work.mkdir(parents=True, exist_ok=True)
        if not resume and self.has_checkpoint():
            raise FileExistsError(f"{self.work} already holds a fine-tune checkpoint; resume it or start over")
        if resume and self.step == 0:
            self._load_checkpoint()
        (self.work / JOB).write_text(json.dumps(self.job.to_json(), indent=2) + "\n", encoding="utf-8")
        self._score_base(progress)
        self._pause.clear()
        self.state = "running"
        task, budget, settings = self.task, self.job.budget, self.job.settings
        task.train_mode()
        last_save = time.monotonic()
        log = open_metrics_log(self.work)
        try:
            while not budget.reached(self.step, self.seconds):
                progress.check()
                if self._pause.is_set():
                    self.state = "paused"
                    return
                t0 = time.perf_counter()
                metrics = task.step(self.step)
                self.seconds += time.perf_counter() - t0
                self.step += 1
                metrics = {"step": self.step, **metrics, "seconds": round(self.seconds, 2), "fraction": self.fraction}
                append_metrics(log, metrics)
                if self.step % settings.ckpt_every == 0 or time.monotonic() - last_save > settings.ckpt_seconds:
                    self._save_checkpoint()
                    last_save = time.monotonic()
                progress.report(self.fraction, self._message())
                yield metrics
            self.state = "finished"
        except GeneratorExit:  # the caller stopped iterating: like a pause
            self.state = "paused"
            raise
        except BaseException:  # Cancelled, KeyboardInterrupt, or an error in a step
            self.state = "cancelled"
            raise
        finally:
            log.close()
            if self.step > self._saved_step:
                self._save_checkpoint()  # stopped early or finished between checkpoints: keep it all
            self._pause.clear()

    def _message(self) -> str:
        b = self.job.budget
        if b.steps is not None:
            return f"step {self.step}/{b.steps}"
        return f"step {self.step}, {int(self.seconds // 60)}:{int(self.seconds % 60):02d}/{b.minutes:g} min"

    def _score_base(self, progress: Progress) -> None:
        """Held-out scores of the base weights, once per run (kept in the work folder)."""
        path = self.work / BEFORE
        if path.is_file():
            self.before = json.loads(path.read_text(encoding="utf-8"))
            return
        if self.step > 0:
            return  # a checkpoint without base scores (should not happen): no before, no harm
        progress.report(0.0, "scoring the base weights")
        self.before = self.task.evaluate()
        path.write_text(json.dumps(self.before) + "\n", encoding="utf-8")

    # ------------------------------------------------------------------ results

    def evaluate(self) -> dict[str, float]:
        """Held-out scores of the current weights (same data and rules as the base scores)."""
        return self.task.evaluate()

    def preview(self, count: int = 3) -> list[Preview]:
        return self.task.preview(count)

    def save_profile(self, name: str, overwrite: bool = False, after: dict[str, float] | None = None) -> Profile:
        """Write the current weights, with the base's other networks, as profile ``name``; ``after``:
        their held-out scores when the caller has just computed them (else they are scored here)."""
        validate_name(name)
        if self.step == 0:
            raise ValueError("nothing has been trained yet: run the fine-tune before saving a profile")
        after = self.evaluate() if after is None else after
        data = {k: (str(v) if v is not None else None) for k, v in vars(self.job.data).items()}
        info = ProfileInfo(task=self.task.name, base=self.job.base, data=data, steps=self.step, seconds=self.seconds,
                           device=str(self.device), metrics_before=self.before, metrics_after=after)
        return save_profile(name, self._source, self.task.export(), info, overwrite=overwrite)
