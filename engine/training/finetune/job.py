"""What a fine-tune is asked to do: task data, budget and settings (plain dataclasses, JSON-able so a
work folder remembers its job and ``--resume`` needs no arguments repeated)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

TASKS = ("detector", "domain", "mapping")


@dataclass(frozen=True)
class DetectorData:
    """Labelled photos for *Teach the detector*. ``masks``: a folder of ``<photo stem>.png`` (white =
    damage); None = the masks brushed in the Restore tab (``engine.store.masks.MaskStore``), limited to
    photos inside ``images`` when that is given."""

    images: Path | None = None
    masks: Path | None = None

    task = "detector"


@dataclass(frozen=True)
class DomainData:
    """*Adapt to my scans*: the user's old scans, and clean photos to make synthetic old photos from
    (None = the sample photos shipped with scikit-image, see ``finetune_data.sample_clean_photos``)."""

    scans: Path
    clean: Path | None = None

    task = "domain"


@dataclass(frozen=True)
class MappingData:
    """*Learn from my clean photos*: they are degraded synthetically to make training pairs."""

    clean: Path

    task = "mapping"


TaskData = DetectorData | DomainData | MappingData
_DATA = {"detector": DetectorData, "domain": DomainData, "mapping": MappingData}


@dataclass(frozen=True)
class Budget:
    """Stop after ``steps`` optimisation steps or ``minutes`` of training time (exactly one). Both
    count the whole run, across pauses and resumes."""

    steps: int | None = None
    minutes: float | None = None

    def __post_init__(self) -> None:
        if (self.steps is None) == (self.minutes is None):
            raise ValueError("give a step budget or a time budget (exactly one)")
        if (self.steps is not None and self.steps < 1) or (self.minutes is not None and self.minutes <= 0):
            raise ValueError("the budget must be positive")

    def fraction(self, step: int, seconds: float) -> float:
        if self.steps is not None:
            return min(step / self.steps, 1.0)
        return min(seconds / (60.0 * self.minutes), 1.0)

    def reached(self, step: int, seconds: float) -> bool:
        return self.fraction(step, seconds) >= 1.0

    def describe(self) -> str:
        return f"{self.steps} steps" if self.steps is not None else f"{self.minutes:g} minutes"


@dataclass(frozen=True)
class FinetuneSettings:
    """Optimisation settings. Defaults suit a CPU: small batches, a learning rate low enough not to
    wreck what the base weights know in a few hundred steps."""

    crop: int = 128  # training crop side, pixels (multiple of 16)
    batch: int = 4
    lr: float = 1e-4
    image_side: int = 512  # domain/mapping: photos are downscaled once to this long side
    detect_side: int = 256  # detector: the short side the pipeline's detector sees (official scale)
    eval_side: int = 1024  # detector: held-out photos are scored at most this large (long side)
    ckpt_every: int = 100  # steps between checkpoints (also every ckpt_seconds, and at any stop)
    ckpt_seconds: float = 120.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.crop < 16 or self.crop % 16:
            raise ValueError("the crop must be a multiple of 16 pixels")
        if self.batch < 2:
            raise ValueError("the batch must hold at least 2 crops (one real, one synthetic)")
        if self.detect_side < self.crop or self.image_side < self.crop:
            raise ValueError("photos must be scaled at least as large as the crop")


@dataclass(frozen=True)
class FinetuneJob:
    data: TaskData
    work: Path  # checkpoint, metrics.jsonl, job.json, before.json
    base: str = "default"  # default | official | profile:NAME | a weights path
    budget: Budget = field(default_factory=lambda: Budget(minutes=15.0))
    settings: FinetuneSettings = field(default_factory=FinetuneSettings)

    @property
    def task(self) -> str:
        return self.data.task

    def to_json(self) -> dict:
        return {"task": self.task, "base": self.base, "work": str(self.work),
                "data": {k: (str(v) if v is not None else None) for k, v in asdict(self.data).items()},
                "budget": asdict(self.budget), "settings": asdict(self.settings)}

    @classmethod
    def from_json(cls, raw: dict) -> "FinetuneJob":
        data_cls = _DATA[raw["task"]]
        data = data_cls(**{f.name: (Path(raw["data"][f.name]) if raw["data"].get(f.name) else None)
                           for f in fields(data_cls)})
        return cls(data, Path(raw["work"]), raw["base"], Budget(**raw["budget"]),
                   FinetuneSettings(**raw["settings"]))
