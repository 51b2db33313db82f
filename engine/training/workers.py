"""Data workers: the training batches (crops and the synthetic degradation) made in other processes.

On a GPU the networks finish a step long before one CPU core has degraded the next batch, so
``train --workers N`` has N ``torch.utils.data.DataLoader`` worker processes call the trainer's
``data(step)`` for the coming steps while the device learns. Each batch is still a function of
(seed, stage, step) alone, never of which worker made it or when, so a run with workers learns
from exactly the batches of an in-process run and resumes as exactly. ``workers=0`` is the
in-process path: ``step_batches`` then yields no batches and the trainer draws its own.

Arrays travel as tensors (torch moves them through shared memory instead of pickling them
through a pipe) and come back as the same arrays, bit for bit. Workers are spawned (see
``WORKER_START``) and get a pickled copy of the trainer; they never touch the networks.
"""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from engine.training.trainers import Trainer

PREFETCH_PER_WORKER = 2  # batches each worker keeps ready ahead of the training step
# Workers start fresh ("spawn") rather than forked: a fork copies the parent's OpenCV / OpenMP
# thread pools in whatever state they are, and a forked worker's first degradation then hung
# waiting on a lock no thread of its own holds (seen in the full test suite, after other tests had
# used those pools). A spawned worker receives the trainer pickled (photo pools included) once.
WORKER_START = "spawn"


def to_shared(value: Any) -> Any:
    """Arrays (also inside tuples, lists and dicts) as tensors that share their memory."""
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(value))
    if isinstance(value, (tuple, list)):
        return type(value)(to_shared(v) for v in value)
    if isinstance(value, dict):
        return {k: to_shared(v) for k, v in value.items()}
    return value


def from_shared(value: Any) -> Any:
    """``to_shared`` undone: the tensors as NumPy arrays again (no copy)."""
    if isinstance(value, torch.Tensor):
        return value.numpy()
    if isinstance(value, (tuple, list)):
        return type(value)(from_shared(v) for v in value)
    if isinstance(value, dict):
        return {k: from_shared(v) for k, v in value.items()}
    return value


class StepData(Dataset):
    """Item ``i`` is the trainer's batch of step ``i``."""

    def __init__(self, trainer: Trainer) -> None:
        self.trainer = trainer

    def __getitem__(self, step: int) -> Any:
        return self.trainer.data(step)


def _init_worker(_: int) -> None:
    """One thread per worker: N workers already use N cores, OpenCV's own pool would oversubscribe."""
    import cv2

    cv2.setNumThreads(1)


def step_batches(trainer: Trainer, start: int, total: int, workers: int) -> Iterator[tuple[int, Any]]:
    """(step, batch) for steps ``start`` .. ``total - 1`` in order; the batch is None when
    ``workers`` is 0 (the trainer then makes it in this process)."""
    if workers <= 0:
        for step in range(start, total):
            yield step, None
        return
    restore_sigchld = _sigchld_keeper()
    loader = DataLoader(StepData(trainer), batch_size=None, sampler=range(start, total), num_workers=workers,
                        collate_fn=to_shared, worker_init_fn=_init_worker, prefetch_factor=PREFETCH_PER_WORKER,
                        multiprocessing_context=WORKER_START)
    batches = iter(loader)
    try:
        for step in range(start, total):
            yield step, from_shared(next(batches))
    finally:
        del batches  # shuts the worker processes down now, not at the next garbage collection
        restore_sigchld()


def _sigchld_keeper():
    """A function that puts SIGCHLD back as it was before a DataLoader ran. PyTorch installs a
    process-wide SIGCHLD handler for its workers and leaves it there; once they are gone, any
    other child's exit (a subprocess the app or a test runs) still went through it, and the test
    suite crashed with a segmentation fault when such a child was killed. The next DataLoader
    installs it again."""
    import signal

    from torch.utils.data._utils import signal_handling

    if not hasattr(signal, "SIGCHLD"):  # Windows: no handler is installed
        return lambda: None
    previous = signal.getsignal(signal.SIGCHLD)

    def restore() -> None:
        signal.signal(signal.SIGCHLD, previous if previous is not None else signal.SIG_DFL)
        signal_handling._SIGCHLD_handler_set = False

    return restore
