"""metrics.jsonl, a training run's step log: one reader and writer for the format, safe after a crash."""

from __future__ import annotations

from engine.training.metrics_log import (
    METRICS_FILE,
    append_metrics,
    open_metrics_log,
    read_metrics,
)

KILLED_MID_WRITE = '{"step": 1, "loss": 0.5}\n{"step": 2, "loss": 0.4}\n{"step": 3, "lo'


def test_the_reader_skips_a_half_written_last_line_and_lines_that_are_not_steps(tmp_path):
    (tmp_path / METRICS_FILE).write_text('{"note": "not a step"}\n' + KILLED_MID_WRITE, encoding="utf-8")
    assert read_metrics(tmp_path) == [{"step": 1, "loss": 0.5}, {"step": 2, "loss": 0.4}]
    assert read_metrics(tmp_path / "no-run-here") == []


def test_a_resumed_run_cuts_the_broken_line_before_it_appends(tmp_path):
    (tmp_path / METRICS_FILE).write_text(KILLED_MID_WRITE, encoding="utf-8")
    with open_metrics_log(tmp_path) as log:
        append_metrics(log, {"step": 3, "loss": 0.3})
    assert [row["step"] for row in read_metrics(tmp_path)] == [1, 2, 3]  # step 3 is not glued to the broken line
    assert (tmp_path / METRICS_FILE).read_text(encoding="utf-8").count("\n") == 3


def test_a_new_run_starts_its_log(tmp_path):
    with open_metrics_log(tmp_path) as log:
        append_metrics(log, {"step": 1, "loss": 1.0})
        assert read_metrics(tmp_path) == [{"step": 1, "loss": 1.0}]  # flushed: a chart sees it at once
