"""A live loss chart for the Train tab (QtCharts).

Per-step losses of a fine-tune on batches of 2-8 crops jump around by a factor of two; a line of
raw values is a scribble. Each line is therefore the mean of the last ``SMOOTH`` steps (unbiased
from the first step, unlike an exponential average), and the chart keeps the last ``MAX_POINTS``
steps so a long run stays legible and cheap to redraw.
"""

from __future__ import annotations

from collections import deque

from PySide6.QtCharts import QChart, QChartView, QLineSeries, QValueAxis
from PySide6.QtCore import QMargins, QPointF, Qt
from PySide6.QtGui import QColor, QPainter, QPen
from PySide6.QtWidgets import QWidget

SMOOTH = 10
MAX_POINTS = 400
# Friendlier legend names for the engine's loss keys (engine.training.finetune.tasks).
NAMES = {
    "focal": "all crops", "focal_user": "your masks", "focal_synthetic": "synthetic scratches",
    "recon_l1": "reconstruction", "align": "alignment", "anchor_l1": "anchor", "latent_d": "discriminator",
    "quality_latent_l1": "quality (latent)", "quality_image_l1": "quality (image)",
    "scratch_latent_l1": "scratches (latent)", "scratch_image_l1": "scratches (image)",
}
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b")
EMPTY_TITLE = "Training losses appear here once a fine-tune runs"


def loss_name(key: str) -> str:
    return NAMES.get(key, key.replace("_", " "))


def y_range(values: list[float]) -> tuple[float, float]:
    """Padded range of the values; from 0 when they are all positive and not far above it."""
    lo, hi = min(values), max(values)
    span = hi - lo
    pad = span * 0.08 if span > 0 else max(abs(hi) * 0.1, 1e-3)
    lo, hi = lo - pad, hi + pad
    if min(values) >= 0 and lo < 0:
        lo = 0.0
    return lo, hi


class LossChart(QChartView):
    """One smoothed line per loss key against the step; ``add`` once per training step."""

    def __init__(self, parent: QWidget | None = None) -> None:
        chart = QChart()
        chart.setMargins(QMargins(4, 4, 4, 4))
        chart.legend().setAlignment(Qt.AlignmentFlag.AlignBottom)
        chart.setBackgroundRoundness(0)
        super().__init__(chart, parent)
        self.setRenderHint(QPainter.RenderHint.Antialiasing)
        self.setMinimumHeight(180)
        self.x_axis = QValueAxis()
        self.x_axis.setTitleText("step")
        self.x_axis.setLabelFormat("%d")
        self.y_axis = QValueAxis()
        self.y_axis.setTitleText(f"loss (mean of {SMOOTH} steps)")
        self.y_axis.setLabelFormat("%.3g")
        chart.addAxis(self.x_axis, Qt.AlignmentFlag.AlignBottom)
        chart.addAxis(self.y_axis, Qt.AlignmentFlag.AlignLeft)
        self._series: dict[str, QLineSeries] = {}
        self._recent: dict[str, deque[float]] = {}
        self._points: dict[str, deque[QPointF]] = {}
        self.set_keys(())

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(self._series)

    def set_keys(self, keys: tuple[str, ...] | list[str]) -> None:
        """Start over with one (empty) line per key."""
        chart = self.chart()
        for series in self._series.values():
            chart.removeSeries(series)
        self._series, self._recent, self._points = {}, {}, {}
        for i, key in enumerate(keys):
            series = QLineSeries()
            series.setName(loss_name(key))
            series.setPen(QPen(QColor(COLOURS[i % len(COLOURS)]), 2))
            chart.addSeries(series)
            series.attachAxis(self.x_axis)
            series.attachAxis(self.y_axis)
            self._series[key] = series
            self._recent[key] = deque(maxlen=SMOOTH)
            self._points[key] = deque(maxlen=MAX_POINTS)
        self.x_axis.setRange(0, 10)
        self.x_axis.setTickCount(6)
        self.y_axis.setRange(0, 1)
        chart.setTitle(EMPTY_TITLE)
        chart.legend().setVisible(bool(keys))

    def add(self, step: int, losses: dict[str, float]) -> None:
        """One step's losses (keys not on the chart are ignored; non-finite values are skipped)."""
        for key, series in self._series.items():
            value = losses.get(key)
            if value is None or value != value or abs(value) == float("inf"):
                continue
            recent = self._recent[key]
            recent.append(float(value))
            points = self._points[key]
            points.append(QPointF(step, sum(recent) / len(recent)))
            series.replace(list(points))
        self._fit()

    def add_history(self, rows: list[dict[str, float]]) -> None:
        """Steps of an earlier session (metrics.jsonl), drawn at once."""
        for row in rows[-(MAX_POINTS + SMOOTH):]:
            self.add(int(row["step"]), row)

    def point_count(self) -> int:
        return sum(series.count() for series in self._series.values())

    def _fit(self) -> None:
        values = [p.y() for points in self._points.values() for p in points]
        steps = [p.x() for points in self._points.values() for p in points]
        if not values:
            return
        self.chart().setTitle("")
        first, last = int(min(steps)), int(max(steps))
        span = max(last - first, 1)
        self.x_axis.setRange(first, first + span)
        if span <= 6:  # one tick per step: a "%d" label on 1.25 would repeat "1"
            self.x_axis.setTickCount(span + 1)
        else:
            self.x_axis.setTickCount(6)
            self.x_axis.applyNiceNumbers()
        self.y_axis.setRange(*y_range(values))
