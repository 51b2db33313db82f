"""The album queue as a Qt table: thumbnail, name, size, status, progress, error.

The model reads the engine's ``AlbumQueue`` items directly (the worker thread changes their status
and progress under the queue's lock and then signals the GUI, which calls ``refresh``). Thumbnails
are decoded off the GUI thread with Pillow's draft mode (JPEG decodes at 1/8 size for free) and
cached, so a folder of large TIFF scans never stalls scrolling.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageOps
from PySide6.QtCore import (
    QAbstractTableModel,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    QRect,
    QRunnable,
    QSize,
    Qt,
    QThreadPool,
    Signal,
)
from PySide6.QtGui import QColor, QImage, QPainter, QPixmap
from PySide6.QtWidgets import (
    QApplication,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionProgressBar,
    QStyleOptionViewItem,
)

from engine.jobs.album_queue import (
    CANCELLED,
    DONE,
    FAILED,
    PENDING,
    RUNNING,
    SKIPPED,
    AlbumQueue,
    QueueItem,
)

THUMB = 48
BAR_HEIGHT = 18
COL_THUMB, COL_NAME, COL_SIZE, COL_STATUS, COL_PROGRESS, COL_ERROR = range(6)
HEADERS = ("", "Name", "Size", "Status", "Progress", "Error")
STATUS_TEXT = {PENDING: "Waiting", RUNNING: "Restoring…", DONE: "Done", FAILED: "Failed",
               CANCELLED: "Cancelled", SKIPPED: "Already restored"}
STATUS_COLOUR = {DONE: QColor("#2e7d32"), SKIPPED: QColor("#2e7d32"), FAILED: QColor("#c62828"),
                 CANCELLED: QColor("#8d6e00"), RUNNING: QColor("#1565c0")}
ItemRole = Qt.ItemDataRole.UserRole + 1  # the QueueItem of a row
ProgressRole = Qt.ItemDataRole.UserRole + 2  # float 0..1, or None when no bar should show


def human_size(size: int) -> str:
    """1536 -> '1.5 KB' (decimal units, as file managers show them)."""
    value = float(size)
    for unit in ("bytes", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{int(value)} bytes" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"


def make_thumbnail(path: Path, size: int = THUMB) -> QImage | None:
    """A small RGB QImage of the photo (EXIF orientation applied), or None when it cannot be read.
    Safe off the GUI thread: QImage, unlike QPixmap, needs no GUI thread."""
    try:
        with Image.open(path) as img:
            img.draft("RGB", (size * 2, size * 2))  # JPEG: decode at a fraction of full size
            img = ImageOps.exif_transpose(img)
            img.thumbnail((size, size))
            rgb = img.convert("RGB")
    except Exception:  # any undecodable file just gets the placeholder
        return None
    data = rgb.tobytes()
    return QImage(data, rgb.width, rgb.height, rgb.width * 3, QImage.Format.Format_RGB888).copy()


class _ThumbnailJob(QRunnable):
    def __init__(self, cache: "ThumbnailCache", path: str) -> None:
        super().__init__()
        self.cache, self.path = cache, path

    def run(self) -> None:
        self.cache._decoded.emit(self.path, make_thumbnail(Path(self.path), self.cache.size))


class ThumbnailCache(QObject):
    """Path -> QPixmap, decoded in a one-thread pool (the device lane keeps the CPU busy enough)."""

    ready = Signal(str)
    _decoded = Signal(str, object)  # from the pool thread; delivered queued in the GUI thread

    def __init__(self, size: int = THUMB, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.size = size
        self._pixmaps: dict[str, QPixmap] = {}
        self._pending: set[str] = set()
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(1)
        self._decoded.connect(self._store)
        self.placeholder = self._placeholder()

    def _placeholder(self) -> QPixmap:
        pix = QPixmap(self.size, self.size)
        pix.fill(QColor("#d9d9d9"))
        painter = QPainter(pix)
        painter.setPen(QColor("#8a8a8a"))
        painter.drawRect(0, 0, self.size - 1, self.size - 1)
        painter.end()
        return pix

    def get(self, path: str) -> QPixmap:
        """The cached thumbnail, else the placeholder (and the thumbnail is requested once)."""
        pix = self._pixmaps.get(path)
        if pix is not None:
            return pix
        if path not in self._pending:
            self._pending.add(path)
            self._pool.start(_ThumbnailJob(self, path))
        return self.placeholder

    def _store(self, path: str, image: QImage | None) -> None:
        self._pending.discard(path)
        self._pixmaps[path] = QPixmap.fromImage(image) if image is not None else self.placeholder
        self.ready.emit(path)

    def wait(self, msecs: int = 5000) -> bool:
        """Let running decodes end (before the cache goes away)."""
        self._pool.clear()
        return self._pool.waitForDone(msecs)


class QueueModel(QAbstractTableModel):
    """Rows are the queue's items in order; ``refresh(item_id)`` repaints one row."""

    def __init__(self, queue: AlbumQueue, thumbnails: ThumbnailCache | None = None,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.queue = queue
        self.thumbnails = thumbnails or ThumbnailCache(parent=self)
        self.thumbnails.ready.connect(self._thumbnail_ready)
        self._rows: dict[int, int] = {}
        self._path_rows: dict[str, int] = {}
        self._reindex()

    def _reindex(self) -> None:
        self._rows = {item.id: row for row, item in enumerate(self.queue.items)}
        self._path_rows = {item.path: row for row, item in enumerate(self.queue.items)}

    # ------------------------------------------------------------------ Qt API

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: N802
        return 0 if parent.isValid() else len(self.queue.items)

    def columnCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: N802
        return 0 if parent.isValid() else len(HEADERS)

    def headerData(self, section: int, orientation: Qt.Orientation,  # noqa: N802
                   role: int = Qt.ItemDataRole.DisplayRole) -> object:
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return HEADERS[section]
        return None

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> object:
        if not index.isValid() or index.row() >= len(self.queue.items):
            return None
        item = self.queue.items[index.row()]
        col = index.column()
        if role == ItemRole:
            return item
        if role == Qt.ItemDataRole.DecorationRole and col == COL_THUMB:
            return self.thumbnails.get(item.path)
        if role == Qt.ItemDataRole.DisplayRole:
            return self._text(item, col)
        if role == Qt.ItemDataRole.ToolTipRole:
            return self._tooltip(item, col)
        if role == ProgressRole and col == COL_PROGRESS:
            return item.progress if item.status in (RUNNING, DONE) else None
        if role == Qt.ItemDataRole.ForegroundRole and col in (COL_STATUS, COL_ERROR):
            return STATUS_COLOUR.get(item.status) if col == COL_STATUS or item.status == FAILED else None
        if role == Qt.ItemDataRole.TextAlignmentRole and col in (COL_SIZE, COL_PROGRESS):
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.SizeHintRole and col == COL_THUMB:
            return QSize(self.thumbnails.size + 8, self.thumbnails.size + 6)
        return None

    @staticmethod
    def _text(item: QueueItem, col: int) -> str | None:
        if col == COL_NAME:
            return item.name
        if col == COL_SIZE:
            return human_size(item.size)
        if col == COL_STATUS:
            return STATUS_TEXT.get(item.status, item.status)
        if col == COL_PROGRESS:
            return f"{round(item.progress * 100)} %" if item.status in (RUNNING, DONE) else ""
        if col == COL_ERROR:
            return (item.error or "").splitlines()[0] if item.error else ""
        return None

    @staticmethod
    def _tooltip(item: QueueItem, col: int) -> str | None:
        if col == COL_ERROR and item.error:
            return item.error
        lines = [item.path]
        if item.output and item.status in (DONE, SKIPPED):
            lines.append(f"Restored: {item.output}")
        if item.error:
            lines.append(item.error)
        return "\n".join(lines)

    # ------------------------------------------------------------------ changes

    def item(self, row: int) -> QueueItem:
        return self.queue.items[row]

    def row_of(self, item_id: int) -> int | None:
        return self._rows.get(item_id)

    def insert(self, paths: list[Path]) -> list[QueueItem]:
        """Add photos to the queue (duplicates ignored) and announce the new rows."""
        fresh = self.queue.unknown(paths)  # rows are only ever added here, in the GUI thread
        if not fresh:
            return []
        first = len(self.queue.items)
        self.beginInsertRows(QModelIndex(), first, first + len(fresh) - 1)
        try:
            added = self.queue.add(fresh)
            self._reindex()
        finally:
            self.endInsertRows()
        return added

    def remove(self, ids: list[int]) -> list[int]:
        """Drop items (the running one stays); rows go away in one reset, cheap for any selection."""
        self.beginResetModel()
        try:
            gone = self.queue.remove(ids)
            self._reindex()
        finally:
            self.endResetModel()
        return gone

    def refresh(self, item_id: int | None = None) -> None:
        """Repaint one item's row (or every row)."""
        if item_id is None:
            if self.queue.items:
                self.dataChanged.emit(self.index(0, 0), self.index(len(self.queue.items) - 1, len(HEADERS) - 1))
            return
        row = self._rows.get(item_id)
        if row is not None:
            self.dataChanged.emit(self.index(row, 0), self.index(row, len(HEADERS) - 1))

    def _thumbnail_ready(self, path: str) -> None:
        row = self._path_rows.get(path)
        if row is not None:
            index = self.index(row, COL_THUMB)
            self.dataChanged.emit(index, index, [Qt.ItemDataRole.DecorationRole])


class ProgressDelegate(QStyledItemDelegate):
    """Draws the progress column as a slim progress bar for running and finished rows."""

    def paint(self, painter: QPainter, option: QStyleOptionViewItem,
              index: QModelIndex | QPersistentModelIndex) -> None:
        value = index.data(ProgressRole)
        if value is None:
            super().paint(painter, option, index)
            return
        bar = QStyleOptionProgressBar()
        height = min(option.rect.height() - 8, BAR_HEIGHT)
        bar.rect = QRect(option.rect.x() + 6, option.rect.center().y() - height // 2 + 1,
                         option.rect.width() - 12, height)
        bar.minimum, bar.maximum = 0, 100
        bar.progress = int(round(float(value) * 100))
        bar.text = f"{bar.progress} %"
        bar.textVisible = True
        bar.textAlignment = Qt.AlignmentFlag.AlignCenter
        bar.state = option.state | QStyle.StateFlag.State_Horizontal
        style = option.widget.style() if option.widget is not None else QApplication.style()
        style.drawControl(QStyle.ControlElement.CE_ProgressBar, bar, painter, option.widget)
