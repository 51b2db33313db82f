"""``metrics.jsonl``, a training run's step log: one JSON object per logged step, appended while
the run trains (``engine.training.loop`` and the fine-tune session) and read back to draw the chart
of a run that is reopened. The one home of the format, for writers and readers alike.

A process killed in the middle of a write leaves half a line at the end. Readers skip it; a writer
that resumes the run cuts it off first, so the next step starts on a line of its own instead of
being glued to the broken one (and lost with it).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TextIO

METRICS_FILE = "metrics.jsonl"


def drop_partial_line(path: Path) -> None:
    """Truncate ``path`` after its last complete line (nothing to do when it ends with one)."""
    try:
        with open(path, "r+b") as fh:
            content = fh.read()
            if content and not content.endswith(b"\n"):
                fh.truncate(content.rfind(b"\n") + 1)
    except FileNotFoundError:
        pass


def open_metrics_log(folder: Path) -> TextIO:
    """The run folder's log, opened for appending (the caller closes it)."""
    path = Path(folder) / METRICS_FILE
    drop_partial_line(path)
    return open(path, "a", encoding="utf-8")


def append_metrics(log: TextIO, metrics: dict[str, Any]) -> None:
    """One step's line, flushed at once: a chart reading the file sees it."""
    log.write(json.dumps(metrics) + "\n")
    log.flush()


def read_metrics(folder: Path) -> list[dict[str, Any]]:
    """Every step logged in ``folder``, in order; [] when there is no log. A half-written last line
    and any line that is not a step record are skipped."""
    try:
        lines = (Path(folder) / METRICS_FILE).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []
    rows = []
    for line in lines:
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and "step" in row:
            rows.append(row)
    return rows
