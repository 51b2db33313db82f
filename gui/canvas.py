"""The Restore tab's image view: zoom and pan, a before/after split line, and the damage-mask brush.

Everything is drawn in ``drawBackground``/``drawForeground`` of a QGraphicsView whose scene coordinates
are photo pixels (pixel ``(row, col)`` covers ``[col, col + 1) x [row, row + 1)``), so the photo, the
mask overlay and the brush all share one transform and stay aligned at every zoom.

Big scans (24 MP and more) stay responsive because nothing is re-converted per mouse move:

* the photo is converted to a QImage once, with a half-size pyramid so zoomed-out views are
  box-filtered (no moiré) and cheap to draw;
* the mask's full-resolution level *is* the ``bool`` array (wrapped as an 8-bit indexed QImage
  without a copy), and its coarser levels are max-pooled so a 1-pixel scratch still shows when
  zoomed out; a brush stroke only recomputes the touched rectangle of each level;
* a stroke repaints only the part of the viewport it touched.

Undo keeps one command per stroke (press..release), per ``set_mask`` and per ``clear_mask``; each stores
only the changed rectangle, bit-packed, so a long history of a big scan costs little memory.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PySide6.QtCore import QEvent, QPointF, QRect, QRectF, QSize, Qt, Signal
from PySide6.QtGui import (
    QColor,
    QFocusEvent,
    QFont,
    QFontMetricsF,
    QImage,
    QKeyEvent,
    QKeySequence,
    QMouseEvent,
    QPainter,
    QPainterPath,
    QPen,
    QResizeEvent,
    QTransform,
    QUndoCommand,
    QUndoStack,
    QWheelEvent,
    qRgba,
)
from PySide6.QtWidgets import QFrame, QGraphicsScene, QGraphicsView, QWidget

from engine.io.decode import read_mask
from engine.io.encode import write_png

MIN_ZOOM = 0.05
MAX_ZOOM = 32.0
WHEEL_STEP = 1.25          # zoom factor per wheel notch (120 eighths of a degree)
SPLIT_GRAB_PX = 7.0        # a press this close (logical px) to the split line grabs it instead of painting
KNOB_RADIUS = 13.0
MAX_BRUSH = 2000
UNDO_LIMIT = 200
TOOLS = ("pan", "paint", "erase")
BACKGROUND = QColor("#2b2b2b")
DEFAULT_OVERLAY = QColor(255, 0, 110)   # magenta-red: visible on sepia, grey and colour photos alike
FACE_ON_COLOUR = QColor(64, 224, 112)   # a refined face, shown refined
FACE_OFF_COLOUR = QColor(255, 176, 32)  # a face switched off, or one the face stage could not refine
FACE_STATES = ("on", "off", "failed")
DEFAULT_BRUSH = 8                       # px: thin cracks first; [ and ] grow it for blotches
LOUPE_PX = 168                          # side of the 100 % loupe shown while brushing a zoomed-out photo
CLICK_SLOP_PX = 4.0                     # a press that moves less than this is a click, not a pan


def default_hint() -> str:
    """The empty-canvas text, with the platform's Open shortcut (Ctrl+O, or ⌘O on macOS)."""
    text = QKeySequence(QKeySequence.StandardKey.Open).toString(QKeySequence.SequenceFormat.NativeText)
    return f"Drop a photo here or press {text or 'Ctrl+O'}"


def _as_rgb(image: np.ndarray) -> np.ndarray:
    """Accept HxW, HxWx3 or HxWx4 uint8 and return C-contiguous HxWx3 (grey scans are common)."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"the canvas shows uint8 images, got {image.dtype}")
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] not in (3, 4) or image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"expected an HxWx3 image, got shape {image.shape}")
    return np.ascontiguousarray(image[..., :3])


def _level_count(width: int, height: int) -> int:
    """Enough halvings that the coarsest level is drawn at >= 50 % even at the smallest fit zoom."""
    levels = 1
    while levels < 10 and min(width, height) >> levels >= 4:
        levels += 1
    return levels


class _PhotoPyramid:
    """One photo as RGB32 QImages: full size, then halves (Qt's smooth scale box-filters)."""

    def __init__(self, rgb: np.ndarray) -> None:
        h, w = rgb.shape[:2]
        self.width, self.height = w, h
        base = QImage(rgb.data, w, h, 3 * w, QImage.Format.Format_RGB888)
        # convertToFormat copies, so the QImage owns its pixels and ``rgb`` may go away.
        self.levels = [base.convertToFormat(QImage.Format.Format_RGB32)]
        for _ in range(1, _level_count(w, h)):
            prev = self.levels[-1]
            size = QSize((prev.width() + 1) // 2, (prev.height() + 1) // 2)
            self.levels.append(prev.scaled(size, Qt.AspectRatioMode.IgnoreAspectRatio,
                                           Qt.TransformationMode.SmoothTransformation))

    def draw(self, painter: QPainter, level: int) -> None:
        image = self.levels[min(level, len(self.levels) - 1)]
        painter.drawImage(QRectF(0, 0, self.width, self.height), image, QRectF(image.rect()))


def _pool_into(src: np.ndarray, dst: np.ndarray, y0: int, y1: int, x0: int, x1: int) -> None:
    """dst[y0:y1, x0:x1] = 2x2 max of src (a missing last row/column counts as 0): the coarse overlay
    shows any damage. Four strided maxima: ~25x faster than a reshape-max on a 24 MP mask."""
    block = src[2 * y0:2 * y1, 2 * x0:2 * x1]
    out = dst[y0:y1, x0:x1]
    out[...] = block[0::2, 0::2]  # always the full (y1-y0, x1-x0): dst levels are ceil-sized
    for dy, dx in ((1, 0), (0, 1), (1, 1)):
        part = block[dy::2, dx::2]
        view = out[:part.shape[0], :part.shape[1]]
        np.maximum(view, part, out=view)


class _MaskPyramid:
    """The editable mask (level 0, the truth) and max-pooled coarser levels, each wrapped as an
    indexed QImage that shares the numpy buffer, so edits show up without any conversion."""

    def __init__(self, width: int, height: int, colour: QColor) -> None:
        self.width, self.height = width, height
        self.mask = np.zeros((height, width), bool)
        self.arrays: list[np.ndarray] = [self.mask.view(np.uint8)]
        for _ in range(1, _level_count(width, height)):
            prev = self.arrays[-1]
            self.arrays.append(np.zeros(((prev.shape[0] + 1) // 2, (prev.shape[1] + 1) // 2), np.uint8))
        self.images: list[QImage] = []
        self.set_colour(colour)

    def set_colour(self, colour: QColor) -> None:
        # Rebuilt rather than recoloured in place: changing a wrapping QImage could detach it from numpy.
        table = [qRgba(0, 0, 0, 0), qRgba(colour.red(), colour.green(), colour.blue(), 255)]
        self.images = []
        for arr in self.arrays:
            image = QImage(arr.data, arr.shape[1], arr.shape[0], arr.strides[0], QImage.Format.Format_Indexed8)
            image.setColorTable(table)
            self.images.append(image)

    def refresh(self, y0: int, y1: int, x0: int, x1: int) -> None:
        """Recompute the coarse levels over the photo rectangle [y0, y1) x [x0, x1) after level 0 changed."""
        for k in range(1, len(self.arrays)):
            y0, x0 = y0 // 2, x0 // 2
            y1, x1 = (y1 + 1) // 2, (x1 + 1) // 2
            _pool_into(self.arrays[k - 1], self.arrays[k], y0, y1, x0, x1)

    def draw(self, painter: QPainter, level: int) -> None:
        level = min(level, len(self.images) - 1)
        scale = 1 << level
        painter.drawImage(QRectF(0, 0, self.width, self.height), self.images[level],
                          QRectF(0, 0, self.width / scale, self.height / scale))


def _stamp_segment(mask: np.ndarray, a: QPointF, b: QPointF, radius: float, value: bool
                   ) -> tuple[int, int, int, int] | None:
    """Set every pixel whose centre lies within ``radius`` of segment a-b (a capsule, so fast mouse
    moves leave no gaps). Long segments are cut into short pieces so the work stays proportional to
    the painted area, not to the segment's bounding box. Returns the touched (y0, y1, x0, x1) or None."""
    h, w = mask.shape
    ax, ay, bx, by = a.x(), a.y(), b.x(), b.y()
    length = math.hypot(bx - ax, by - ay)
    pieces = max(1, math.ceil(length / max(2.0 * radius, 16.0)))
    r2 = radius * radius
    touched: list[int] | None = None
    for i in range(pieces):
        px0, py0 = ax + (bx - ax) * i / pieces, ay + (by - ay) * i / pieces
        px1, py1 = ax + (bx - ax) * (i + 1) / pieces, ay + (by - ay) * (i + 1) / pieces
        x0 = max(0, math.floor(min(px0, px1) - radius - 0.5))
        x1 = min(w, math.ceil(max(px0, px1) + radius + 0.5))
        y0 = max(0, math.floor(min(py0, py1) - radius - 0.5))
        y1 = min(h, math.ceil(max(py0, py1) + radius + 0.5))
        if x0 >= x1 or y0 >= y1:
            continue
        dx, dy = px1 - px0, py1 - py0
        cx = np.arange(x0, x1, dtype=np.float64)[None, :] + 0.5 - px0
        cy = np.arange(y0, y1, dtype=np.float64)[:, None] + 0.5 - py0
        len2 = dx * dx + dy * dy
        if len2 > 0.0:
            t = np.clip((cx * dx + cy * dy) / len2, 0.0, 1.0)
            d2 = (cx - t * dx) ** 2 + (cy - t * dy) ** 2
        else:
            d2 = cx * cx + cy * cy
        hit = d2 <= r2
        if not hit.any():
            continue
        mask[y0:y1, x0:x1][hit] = value
        touched = [y0, y1, x0, x1] if touched is None else [
            min(touched[0], y0), max(touched[1], y1), min(touched[2], x0), max(touched[3], x1)]
    return None if touched is None else (touched[0], touched[1], touched[2], touched[3])


class _MaskEdit(QUndoCommand):
    """One undoable change of the mask: the changed rectangle before and after, bit-packed."""

    def __init__(self, canvas: "PhotoCanvas", text: str, y0: int, x0: int,
                 before: np.ndarray, after: np.ndarray, already_applied: bool = False) -> None:
        super().__init__(text)
        self._canvas = canvas
        self._already_applied = already_applied
        self._y0, self._x0 = y0, x0
        self._shape = before.shape
        self._before = np.packbits(before, axis=None)
        self._after = np.packbits(after, axis=None)

    def _apply(self, packed: np.ndarray) -> None:
        count = self._shape[0] * self._shape[1]
        values = np.unpackbits(packed, count=count).reshape(self._shape).view(bool)
        self._canvas._write_region(self._y0, self._x0, values)

    def redo(self) -> None:
        if self._already_applied:  # a stroke is on screen already when QUndoStack.push calls redo()
            self._already_applied = False
            self._canvas.mask_changed.emit()
            return
        self._apply(self._after)

    def undo(self) -> None:
        self._apply(self._before)


@dataclass
class _Stroke:
    """A brush stroke in progress: the mask as it was at the press, and where the brush is."""

    value: bool
    start: np.ndarray
    last: QPointF
    box: tuple[int, int, int, int] | None = None

    def grow(self, box: tuple[int, int, int, int] | None) -> None:
        if box is None:
            return
        self.box = box if self.box is None else (min(self.box[0], box[0]), max(self.box[1], box[1]),
                                                 min(self.box[2], box[2]), max(self.box[3], box[3]))


def _distance(a: QPointF, b: QPointF) -> float:
    return math.hypot(a.x() - b.x(), a.y() - b.y())


def _changed_box(old: np.ndarray, new: np.ndarray) -> tuple[int, int, int, int] | None:
    """Bounding rectangle (y0, y1, x0, x1) of the pixels that differ, so undo stores only that."""
    diff = old != new
    rows = np.flatnonzero(diff.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(diff[rows[0]:rows[-1] + 1].any(axis=0))
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


@dataclass(frozen=True)
class FaceBox:
    """A detected face as the canvas draws it over the restored side."""

    index: int  # the face's number (from 1), drawn as its label and sent back by ``face_clicked``
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 in photo pixels
    state: str = "on"  # "on": refined and shown; "off": refined, switched off; "failed": not refined


class PhotoCanvas(QGraphicsView):
    """Zoomable photo view with a before/after split line and a damage-mask brush (see module doc)."""

    split_changed = Signal(float)     # the before/after split moved (0..1 of the photo width)
    mask_changed = Signal()           # the mask changed: end of a stroke, undo, redo, clear, set, load
    zoom_changed = Signal(float)      # view scale, 1.0 = one photo pixel per screen (device) pixel
    brush_size_changed = Signal(int)  # diameter in photo pixels
    tool_changed = Signal(str)
    face_clicked = Signal(int)        # a face's label was clicked (or, with the Pan tool, its box)
    stroked = Signal()                # a person painted or erased (not a detection, load or undo)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setScene(QGraphicsScene(self))
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        # Zoom anchoring is done by hand (exactly under the cursor); a resize keeps the centre.
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.NoAnchor)
        self.setResizeAnchor(QGraphicsView.ViewportAnchor.AnchorViewCenter)
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.setMouseTracking(True)
        self.viewport().setMouseTracking(True)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        # Dropped files belong to the main window (it handles drops "anywhere"), not to this view.
        self.setAcceptDrops(False)
        self.viewport().setAcceptDrops(False)
        self.setMinimumSize(320, 240)
        self.undo_stack = QUndoStack(self)
        self.undo_stack.setUndoLimit(UNDO_LIMIT)

        self._hint = default_hint()
        self._before: _PhotoPyramid | None = None
        self._after: _PhotoPyramid | None = None
        self._masks: _MaskPyramid | None = None
        self._mask_maybe_set = False       # False only when the mask is known to be empty (skip drawing)
        self._compare = False
        self._split = 0.5
        self._before_only = False
        self._overlay_visible = True
        self._overlay_opacity = 0.5
        self._overlay_colour = QColor(DEFAULT_OVERLAY)
        self._tool = "paint"
        self._brush = DEFAULT_BRUSH
        self._fit_mode = True              # keep fitting on resize until the user zooms or pans
        self._space_down = False
        self._pan_last: QPointF | None = None
        self._dragging_split = False
        self._stroke: _Stroke | None = None
        self._last_paint: QPointF | None = None  # end of the previous stroke, for Shift+click lines
        self._cursor_scene: QPointF | None = None
        self._over_split = False           # hovering the split line: a press would grab it, so no brush circle
        self._faces: list[FaceBox] = []
        self._faces_visible = True
        self._over_face = False            # hovering a face's label (or box, Pan tool): a click toggles it
        self._face_press: tuple[int, QPointF] | None = None  # Pan tool press in a face box: click or drag?
        self.setSceneRect(QRectF(0, 0, 1, 1))
        self._update_cursor(None)

    # ------------------------------------------------------------------------------- photos

    def has_photo(self) -> bool:
        return self._before is not None

    def photo_size(self) -> QSize | None:
        """Width x height of the photo in pixels, or None."""
        return None if self._before is None else QSize(self._before.width, self._before.height)

    def set_before(self, image: np.ndarray | None) -> None:
        """Start a new photo (the original): clears the after image, the mask and its undo history,
        and fits the view. None empties the canvas and shows the hint."""
        rgb = None if image is None else _as_rgb(image)  # a bad image is refused before anything is cleared
        self._stroke = None
        self._last_paint = None
        self._after = None
        self._faces = []
        self.undo_stack.clear()
        if rgb is None:
            self._before = None
            self._masks = None
            self.setSceneRect(QRectF(0, 0, 1, 1))
        else:
            self._before = _PhotoPyramid(rgb)
            self._masks = _MaskPyramid(self._before.width, self._before.height, self._overlay_colour)
            self.setSceneRect(QRectF(0, 0, self._before.width, self._before.height))
        self._mask_maybe_set = False
        self.zoom_fit()
        self.mask_changed.emit()
        self._update_cursor(None)
        self.viewport().update()

    def set_after(self, image: np.ndarray | None) -> None:
        """The restored result (same size as the before image); None removes it."""
        if image is None:
            self._after = None
        else:
            if self._before is None:
                raise ValueError("set the before image first")
            rgb = _as_rgb(image)
            if rgb.shape[:2] != (self._before.height, self._before.width):
                raise ValueError(f"the result is {rgb.shape[1]}x{rgb.shape[0]} but the photo is "
                                 f"{self._before.width}x{self._before.height}")
            self._after = _PhotoPyramid(rgb)
        self._update_cursor(None)
        self.viewport().update()

    def has_after(self) -> bool:
        return self._after is not None

    # ------------------------------------------------------------------------------ faces

    def set_faces(self, faces: list[FaceBox]) -> None:
        """The detected faces to outline over the restored side (empty: none)."""
        for face in faces:
            if face.state not in FACE_STATES:
                raise ValueError(f"unknown face state {face.state!r}; expected one of {', '.join(FACE_STATES)}")
        self._faces = list(faces)
        self.viewport().update()

    def faces(self) -> list[FaceBox]:
        return list(self._faces)

    def set_faces_visible(self, on: bool) -> None:
        """Hide the outlines to judge the faces themselves; clicks on them are off while hidden."""
        self._faces_visible = bool(on)
        self.viewport().update()

    def faces_visible(self) -> bool:
        return self._faces_visible

    def _after_area_in_view(self) -> QRectF | None:
        """Where the restored photo is on screen (the right of the split, or all of it), or None."""
        if not self._faces or not self._faces_visible or self._after is None or self._before_only:
            return None
        photo = self.photo_rect_in_view().intersected(QRectF(self.viewport().rect()))
        if self.split_visible():
            x = self._split_view_x()
            photo = photo.intersected(QRectF(x, photo.top(), max(0.0, photo.right() - x), photo.height()))
        return None if photo.isEmpty() else photo

    def face_rect_in_view(self, face: FaceBox) -> QRectF:
        """The face's box in viewport coordinates, on whole pixels so its outline is crisp."""
        x0, y0, x1, y1 = face.box
        rect = self.viewportTransform().mapRect(QRectF(x0, y0, x1 - x0, y1 - y0))
        return QRectF(QPointF(round(rect.left()), round(rect.top())),
                      QPointF(round(rect.right()), round(rect.bottom())))

    def _face_font(self) -> QFont:
        font = QFont(self.font())
        font.setPixelSize(12)
        font.setBold(True)
        return font

    def face_label_rect(self, face: FaceBox) -> QRectF:
        """The number tag at the box's top-left corner: above the box when it fits, else inside it."""
        rect = self.face_rect_in_view(face)
        metrics = QFontMetricsF(self._face_font())
        width = metrics.horizontalAdvance(str(face.index)) + 10
        height = metrics.height() + 2
        top = rect.top() - height if rect.top() - height >= self.photo_rect_in_view().top() else rect.top()
        return QRectF(rect.left() - 1, top, width, height)

    def face_at(self, pos: QPointF, label_only: bool = False) -> int | None:
        """The face whose label (or, unless ``label_only``, box) is drawn under viewport point ``pos``."""
        area = self._after_area_in_view()
        if area is None or not area.contains(pos):
            return None
        for face in reversed(self._faces):  # the last drawn is on top
            on_box = not label_only and self.face_rect_in_view(face).contains(pos)
            if on_box or self.face_label_rect(face).contains(pos):
                return face.index
        return None

    def _draw_faces(self, painter: QPainter) -> None:
        area = self._after_area_in_view()
        if area is None:
            return
        painter.save()
        painter.setClipRect(area)
        painter.setFont(self._face_font())
        for face in self._faces:
            colour = FACE_ON_COLOUR if face.state == "on" else FACE_OFF_COLOUR
            rect = self.face_rect_in_view(face)
            painter.setBrush(Qt.BrushStyle.NoBrush)
            painter.setPen(QPen(QColor(0, 0, 0, 150), 4))  # a dark rim: the outline shows on light and dark skin
            painter.drawRect(rect)
            pen = QPen(colour, 2)
            if face.state != "on":
                pen.setDashPattern([3.0, 2.0])
            painter.setPen(pen)
            painter.drawRect(rect)
            label = self.face_label_rect(face)
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(colour)
            painter.drawRoundedRect(label, 3, 3)
            painter.setPen(QColor(20, 20, 20))
            painter.drawText(label, int(Qt.AlignmentFlag.AlignCenter), str(face.index))
        painter.restore()

    # ---------------------------------------------------------------------------- compare

    def set_compare(self, enabled: bool) -> None:
        """Split view: before left of the line, after right of it (only once there is an after image)."""
        self._compare = bool(enabled)
        self.viewport().update()

    def compare(self) -> bool:
        return self._compare

    def set_split(self, fraction: float) -> None:
        fraction = min(1.0, max(0.0, float(fraction)))
        if fraction != self._split:
            self._split = fraction
            self.viewport().update()
            self.split_changed.emit(fraction)

    def split(self) -> float:
        return self._split

    def show_before_only(self, on: bool) -> None:
        """The quick "hold to see the original" toggle: overrides compare and the after image."""
        self._before_only = bool(on)
        self.viewport().update()

    def before_only(self) -> bool:
        return self._before_only

    def split_visible(self) -> bool:
        """True when the split line is on screen (compare on, an after image, not showing the original)."""
        return self._compare and self._after is not None and not self._before_only and self._before is not None

    # ------------------------------------------------------------------------------- mask

    def mask_coverage(self) -> float:
        """Share of the photo the mask covers (0..1), without copying the mask."""
        if self._masks is None or not self._mask_maybe_set:
            return 0.0
        return float(np.count_nonzero(self._masks.mask)) / self._masks.mask.size

    def mask(self) -> np.ndarray | None:
        """A copy of the editable mask (HxW bool, True = damage), None if there is no photo."""
        return None if self._masks is None else self._masks.mask.copy()

    def set_mask(self, mask: np.ndarray | None, undoable: bool = True) -> None:
        """Replace the mask (e.g. with the detector's). None means empty. With ``undoable=False`` the
        undo history is forgotten too (its rectangles would no longer fit), e.g. for a stored mask
        loaded together with its photo."""
        if self._masks is None:
            if mask is None:
                return
            raise ValueError("there is no photo to put a mask on")
        h, w = self._masks.mask.shape
        new = np.zeros((h, w), bool) if mask is None else np.asarray(mask)
        if new.shape != (h, w):
            raise ValueError(f"the mask is {new.shape[1] if new.ndim > 1 else '?'}x{new.shape[0]} "
                             f"but the photo is {w}x{h}")
        new = new.astype(bool, copy=False)
        self._abort_stroke()
        if undoable:
            self._push_change("Set mask", 0, 0, self._masks.mask, new)
        else:
            self.undo_stack.clear()
            self._write_region(0, 0, new)

    def clear_mask(self) -> None:
        """Empty the mask (one undo step; nothing is recorded if it was already empty)."""
        if self._masks is not None:
            self._abort_stroke()
            self._push_change("Clear mask", 0, 0, self._masks.mask, np.zeros_like(self._masks.mask))

    def load_mask(self, path: Path) -> None:
        """Load a PNG mask (white = damage) as one undoable step; ValueError if its size differs."""
        if self._masks is None:
            raise ValueError("open a photo before loading a mask")
        loaded = read_mask(Path(path))
        h, w = self._masks.mask.shape
        if loaded.shape != (h, w):
            raise ValueError(f"the mask {Path(path).name} is {loaded.shape[1]}x{loaded.shape[0]} pixels "
                             f"but the photo is {w}x{h}")
        self._abort_stroke()
        self._push_change("Load mask", 0, 0, self._masks.mask, loaded)

    def save_mask(self, path: Path) -> None:
        """Write the mask as a black/white PNG (white = damage), atomically."""
        if self._masks is None:
            raise ValueError("there is no mask to save: no photo is open")
        write_png(Path(path), self._masks.mask.astype(np.uint8) * 255)

    def _push_change(self, text: str, y0: int, x0: int, old: np.ndarray, new: np.ndarray,
                     already_applied: bool = False) -> None:
        """Record old -> new for the rectangle at (y0, x0) as one undo step, trimmed to what changed."""
        box = _changed_box(old, new)
        if box is None:
            return
        by0, by1, bx0, bx1 = box
        self.undo_stack.push(_MaskEdit(self, text, y0 + by0, x0 + bx0,
                                       old[by0:by1, bx0:bx1].copy(), new[by0:by1, bx0:bx1].copy(),
                                       already_applied))

    def _write_region(self, y0: int, x0: int, values: np.ndarray) -> None:
        """Put ``values`` into the mask at (y0, x0), refresh that part of the overlay, tell listeners."""
        assert self._masks is not None
        self._abort_stroke()
        h, w = values.shape
        self._masks.mask[y0:y0 + h, x0:x0 + w] = values
        self._masks.refresh(y0, y0 + h, x0, x0 + w)
        self._mask_maybe_set = self._mask_maybe_set or bool(values.any())
        if y0 == 0 and x0 == 0 and values.shape == self._masks.mask.shape and not values.any():
            self._mask_maybe_set = False
        self._update_photo_rect(y0, y0 + h, x0, x0 + w)
        self.mask_changed.emit()

    # ---------------------------------------------------------------------------- overlay

    def set_overlay_visible(self, on: bool) -> None:
        self._overlay_visible = bool(on)
        self.viewport().update()

    def overlay_visible(self) -> bool:
        return self._overlay_visible

    def set_overlay_opacity(self, opacity: float) -> None:
        self._overlay_opacity = min(1.0, max(0.0, float(opacity)))
        self.viewport().update()

    def overlay_opacity(self) -> float:
        return self._overlay_opacity

    def set_overlay_colour(self, colour: QColor) -> None:
        self._overlay_colour = QColor(colour)
        if self._masks is not None:
            self._masks.set_colour(self._overlay_colour)
        self.viewport().update()

    def overlay_colour(self) -> QColor:
        return QColor(self._overlay_colour)

    # ------------------------------------------------------------------------------ tools

    def set_tool(self, tool: str) -> None:
        """"pan", "paint" or "erase"."""
        if tool not in TOOLS:
            raise ValueError(f"unknown tool {tool!r}; expected one of {', '.join(TOOLS)}")
        if tool != self._tool:
            self._tool = tool
            self._update_cursor(None)
            self.viewport().update()
            self.tool_changed.emit(tool)

    def tool(self) -> str:
        return self._tool

    def set_brush_size(self, pixels: int) -> None:
        """Brush diameter in photo pixels (1 .. 2000)."""
        pixels = int(min(MAX_BRUSH, max(1, round(pixels))))
        if pixels != self._brush:
            self._brush = pixels
            self.viewport().update()
            self.brush_size_changed.emit(pixels)

    def brush_size(self) -> int:
        return self._brush

    # ------------------------------------------------------------------------------- hint

    def hint(self) -> str:
        return self._hint

    def set_hint(self, text: str) -> None:
        self._hint = text
        self.viewport().update()

    # ------------------------------------------------------------------------------- zoom

    def _dpr(self) -> float:
        return self.viewport().devicePixelRatioF() or 1.0

    def zoom(self) -> float:
        """Photo pixels to screen (device) pixels: 1.0 shows every photo pixel on one screen pixel."""
        return self.transform().m11() * self._dpr()

    def _fit_zoom(self) -> float:
        if self._before is None:
            return 1.0
        area = self.viewport().rect()
        scale = min(area.width() / self._before.width, area.height() / self._before.height)
        return max(1e-4, scale * self._dpr())

    def _min_zoom(self) -> float:
        return min(MIN_ZOOM, self._fit_zoom())

    def zoom_fit(self) -> None:
        """Show the whole photo, centred; stays fitted while the window is resized, until the user zooms."""
        old = self.zoom()
        self._fit_mode = True
        z = min(MAX_ZOOM, self._fit_zoom())
        self.setTransform(QTransform.fromScale(z / self._dpr(), z / self._dpr()))
        if self._before is not None:
            self.centerOn(QPointF(self._before.width / 2, self._before.height / 2))
        self.viewport().update()
        if not math.isclose(old, self.zoom()):
            self.zoom_changed.emit(self.zoom())

    def zoom_100(self, anchor: QPointF | None = None) -> None:
        """One photo pixel per screen pixel, keeping the point under ``anchor`` (default: the view centre)."""
        self.set_zoom(1.0, anchor)

    def zoom_by(self, factor: float, anchor: QPointF | None = None) -> None:
        """Multiply the zoom, keeping the photo point under ``anchor`` (viewport coords, default centre) fixed."""
        self.set_zoom(self.zoom() * factor, anchor)

    def set_zoom(self, zoom: float, anchor: QPointF | None = None) -> None:
        """Zoom to ``zoom`` (clamped to 5 %..3200 %, or below 5 % only as far as fitting needs)."""
        zoom = min(MAX_ZOOM, max(self._min_zoom(), float(zoom)))
        old = self.zoom()
        self._fit_mode = False
        if anchor is None:
            anchor = QPointF(self.viewport().rect().center())
        fixed = self.view_to_photo(anchor)
        self.setTransform(QTransform.fromScale(zoom / self._dpr(), zoom / self._dpr()))
        moved = self.photo_to_view(fixed) - anchor
        hbar, vbar = self.horizontalScrollBar(), self.verticalScrollBar()
        hbar.setValue(hbar.value() + round(moved.x()))
        vbar.setValue(vbar.value() + round(moved.y()))
        self.viewport().update()
        if not math.isclose(old, self.zoom()):
            self.zoom_changed.emit(self.zoom())

    def view_to_photo(self, point: QPointF) -> QPointF:
        """Viewport (logical px) -> photo coordinates (pixel (r, c) spans c..c+1, r..r+1)."""
        inverse, _ok = self.viewportTransform().inverted()
        return inverse.map(QPointF(point))

    def photo_to_view(self, point: QPointF) -> QPointF:
        """Photo coordinates -> viewport (logical px)."""
        return self.viewportTransform().map(QPointF(point))

    def photo_rect_in_view(self) -> QRectF:
        """Where the photo is drawn, in viewport coordinates (empty without a photo)."""
        if self._before is None:
            return QRectF()
        return self.viewportTransform().mapRect(QRectF(0, 0, self._before.width, self._before.height))

    # ---------------------------------------------------------------------------- painting

    def _level(self) -> int:
        """The coarsest pyramid level still drawn at >= 100 % (so it is only ever shrunk, by < 2x)."""
        zoom = self.zoom()
        return 0 if zoom >= 1.0 else max(0, int(math.floor(math.log2(1.0 / zoom) + 1e-9)))

    def _split_view_x(self) -> float:
        """The split line's x in viewport coordinates, on a whole pixel so the halves meet exactly."""
        assert self._before is not None
        return float(round(self.photo_to_view(QPointF(self._split * self._before.width, 0)).x()))

    def drawBackground(self, painter: QPainter, rect: QRectF) -> None:  # noqa: N802 (Qt API)
        painter.fillRect(rect, BACKGROUND)
        if self._before is None:
            return
        level = self._level()
        # Smooth (box pyramid + bilinear) when shrinking; nearest from 100 % up, so pixels stay honest.
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, self.zoom() < 1.0 - 1e-6)
        photo = QRectF(0, 0, self._before.width, self._before.height)
        if self.split_visible():
            assert self._after is not None
            cut = self.view_to_photo(QPointF(self._split_view_x(), 0)).x()
            painter.save()
            painter.setClipRect(QRectF(0, 0, cut, photo.height()))
            self._before.draw(painter, level)
            painter.setClipRect(QRectF(cut, 0, photo.width() - cut, photo.height()))
            self._after.draw(painter, level)
            painter.restore()
        elif self._after is not None and not self._before_only:
            self._after.draw(painter, level)
        else:
            self._before.draw(painter, level)
        if self._overlay_visible and self._mask_maybe_set and self._masks is not None:
            painter.save()
            painter.setOpacity(self._overlay_opacity)
            painter.setClipRect(photo)
            self._masks.draw(painter, level)
            painter.restore()

    def drawForeground(self, painter: QPainter, rect: QRectF) -> None:  # noqa: N802 (Qt API)
        painter.save()
        painter.resetTransform()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        if self._before is None:
            self._draw_hint(painter)
        else:
            self._draw_faces(painter)
            if self.split_visible():
                self._draw_split(painter)
            if self._brush_cursor_visible():
                self._draw_brush_cursor(painter)
                if self.loupe_visible():
                    self._draw_loupe(painter)
        painter.restore()

    # ------------------------------------------------------------------------------ loupe

    def loupe_visible(self) -> bool:
        """While brushing a photo shown smaller than 100 %, a corner box shows the cursor's
        neighbourhood at 100 %: a thin crack can be traced although the whole photo is in view."""
        return self._brush_cursor_visible() and self._before is not None and self.zoom() < 1.0 - 1e-6

    def loupe_rect(self) -> QRectF:
        """Top-left corner of the view, or top-right when the cursor is there (never under it)."""
        side = float(LOUPE_PX)
        box = QRectF(8, 8, side, side)
        if self._cursor_scene is not None and box.adjusted(-24, -24, 24, 24).contains(
                self.photo_to_view(self._cursor_scene)):
            box.moveLeft(self.viewport().width() - side - 8)
        return box

    def _draw_loupe(self, painter: QPainter) -> None:
        assert self._cursor_scene is not None and self._before is not None and self._masks is not None
        box = self.loupe_rect()
        span = box.width() * self._dpr()  # photo pixels across: one per device pixel
        centre = self._cursor_scene
        source = QRectF(centre.x() - span / 2, centre.y() - span / 2, span, span)
        photo = self._after if self._after is not None and not self._before_only and (
            not self.split_visible() or centre.x() >= self._split * self._before.width) else self._before
        painter.save()
        painter.setClipRect(box)
        painter.fillRect(box, BACKGROUND)
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, False)
        painter.drawImage(box, photo.levels[0], source)
        if self._overlay_visible and self._mask_maybe_set:
            painter.setOpacity(self._overlay_opacity)
            painter.drawImage(box, self._masks.images[0], source)
            painter.setOpacity(1.0)
        radius = self._brush / 2.0 / self._dpr()
        mid = box.center()
        painter.setBrush(Qt.BrushStyle.NoBrush)
        for colour, width in ((QColor(0, 0, 0, 200), 3.0), (QColor(255, 255, 255), 1.0)):
            painter.setPen(QPen(colour, width))
            painter.drawEllipse(mid, max(radius, 1.5), max(radius, 1.5))
        painter.restore()
        painter.setPen(QPen(QColor(255, 255, 255, 220), 1.0))
        painter.drawRect(box)
        font = QFont(self.font())
        font.setPixelSize(11)
        painter.setFont(font)
        label = QRectF(box.left(), box.bottom() - 16, 44, 16)
        painter.fillRect(label, QColor(0, 0, 0, 160))
        painter.drawText(label, int(Qt.AlignmentFlag.AlignCenter), "100 %")

    def _draw_hint(self, painter: QPainter) -> None:
        font = QFont(self.font())
        font.setPixelSize(16)
        painter.setFont(font)
        painter.setPen(QColor("#b0b0b0"))
        area = QRectF(self.viewport().rect()).adjusted(24, 24, -24, -24)
        painter.drawText(area, int(Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap), self._hint)

    def _knob_centre(self) -> QPointF:
        """Handle position: on the line, at the middle of the photo's visible height."""
        photo = self.photo_rect_in_view().intersected(QRectF(self.viewport().rect()))
        y = photo.center().y() if not photo.isEmpty() else self.viewport().height() / 2
        return QPointF(self._split_view_x(), y)

    def _draw_split(self, painter: QPainter) -> None:
        photo = self.photo_rect_in_view().intersected(QRectF(self.viewport().rect()))
        if photo.isEmpty():
            return
        x = self._split_view_x()
        painter.setPen(QPen(QColor(0, 0, 0, 110), 4))
        painter.drawLine(QPointF(x, photo.top()), QPointF(x, photo.bottom()))
        painter.setPen(QPen(QColor(255, 255, 255, 235), 2))
        painter.drawLine(QPointF(x, photo.top()), QPointF(x, photo.bottom()))
        knob = self._knob_centre()
        painter.setPen(QPen(QColor(0, 0, 0, 140), 1.5))
        painter.setBrush(QColor(255, 255, 255, 240))
        painter.drawEllipse(knob, KNOB_RADIUS, KNOB_RADIUS)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(QColor(60, 60, 60))
        for sign in (-1.0, 1.0):  # ◀ ▶ arrows: "drag me sideways"
            tip = QPointF(knob.x() + sign * 8.5, knob.y())
            arrow = QPainterPath(tip)
            arrow.lineTo(knob.x() + sign * 3.0, knob.y() - 5.0)
            arrow.lineTo(knob.x() + sign * 3.0, knob.y() + 5.0)
            arrow.closeSubpath()
            painter.drawPath(arrow)
        self._draw_side_labels(painter, x, photo)

    def _draw_side_labels(self, painter: QPainter, x: float, photo: QRectF) -> None:
        """Small "Before" / "After" tags at the top of each side, where there is room for them."""
        font = QFont(self.font())
        font.setPixelSize(12)
        painter.setFont(font)
        metrics = painter.fontMetrics()
        for text, left_side in (("Before", True), ("After", False)):
            width = metrics.horizontalAdvance(text) + 12
            height = metrics.height() + 4
            box = QRectF(x - 8 - width if left_side else x + 8, photo.top() + 8, width, height)
            if box.left() < photo.left() + 2 or box.right() > photo.right() - 2:
                continue
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(QColor(0, 0, 0, 150))
            painter.drawRoundedRect(box, 4, 4)
            painter.setPen(QColor(255, 255, 255))
            painter.drawText(box, int(Qt.AlignmentFlag.AlignCenter), text)

    def _brush_cursor_visible(self) -> bool:
        return (self._tool in ("paint", "erase") and self._cursor_scene is not None and self._pan_last is None
                and not self._dragging_split and not self._space_down and not self._over_split
                and not self._over_face)

    def _brush_view_radius(self) -> float:
        return self._brush / 2.0 * self.transform().m11()

    def _draw_brush_cursor(self, painter: QPainter) -> None:
        assert self._cursor_scene is not None
        centre = self.photo_to_view(self._cursor_scene)
        radius = self._brush_view_radius()
        if radius < 4.0:  # too small to see as a circle: a crosshair instead
            for colour, width in ((QColor(0, 0, 0, 200), 3.0), (QColor(255, 255, 255), 1.0)):
                painter.setPen(QPen(colour, width))
                painter.drawLine(QPointF(centre.x() - 6, centre.y()), QPointF(centre.x() + 6, centre.y()))
                painter.drawLine(QPointF(centre.x(), centre.y() - 6), QPointF(centre.x(), centre.y() + 6))
            return
        painter.setBrush(Qt.BrushStyle.NoBrush)
        painter.setPen(QPen(QColor(0, 0, 0, 200), 3.0))
        painter.drawEllipse(centre, radius, radius)
        white = QPen(QColor(255, 255, 255), 1.0)
        if self._tool == "erase":  # dashed: the eraser is told apart at a glance
            white.setDashPattern([4.0, 3.0])
        painter.setPen(white)
        painter.drawEllipse(centre, radius, radius)

    def _brush_cursor_rect(self) -> QRect:
        if self._cursor_scene is None:
            return QRect()
        centre = self.photo_to_view(self._cursor_scene)
        r = max(self._brush_view_radius(), 7.0) + 4.0
        return QRectF(centre.x() - r, centre.y() - r, 2 * r, 2 * r).toAlignedRect()

    def _update_photo_rect(self, y0: int, y1: int, x0: int, x1: int) -> None:
        """Repaint only the part of the viewport showing photo rows y0..y1, columns x0..x1."""
        pad = float(2 << self._level())  # a coarse level's bilinear footprint reaches one texel further
        area = QRectF(x0 - pad, y0 - pad, (x1 - x0) + 2 * pad, (y1 - y0) + 2 * pad)
        self.viewport().update(self.viewportTransform().mapRect(area).toAlignedRect().adjusted(-2, -2, 2, 2))

    def scrollContentsBy(self, dx: int, dy: int) -> None:  # noqa: N802 (Qt API)
        # The handle, labels and brush circle are placed in viewport coordinates: a blitted scroll
        # would drag stale copies of them along, so repaint everything.
        super().scrollContentsBy(dx, dy)
        self.viewport().update()

    def resizeEvent(self, event: QResizeEvent) -> None:  # noqa: N802 (Qt API)
        super().resizeEvent(event)
        if self._fit_mode:
            self.zoom_fit()

    # ------------------------------------------------------------------------------- mouse

    def _near_split(self, pos: QPointF) -> bool:
        if not self.split_visible():
            return False
        knob = self._knob_centre()
        if math.hypot(pos.x() - knob.x(), pos.y() - knob.y()) <= KNOB_RADIUS + 2:
            return True
        photo = self.photo_rect_in_view()
        return abs(pos.x() - self._split_view_x()) <= SPLIT_GRAB_PX and photo.top() <= pos.y() <= photo.bottom()

    def _update_cursor(self, pos: QPointF | None) -> None:
        over_split = pos is not None and self._stroke is None and self._near_split(pos)
        over_face = (pos is not None and self._stroke is None and not over_split and self._pan_last is None
                     and not self._space_down and self.face_at(pos, label_only=self._tool != "pan") is not None)
        if over_split != self._over_split or over_face != self._over_face:
            self._over_split, self._over_face = over_split, over_face
            self.viewport().update(self._brush_cursor_rect())
        if self._pan_last is not None:
            shape = Qt.CursorShape.ClosedHandCursor
        elif self._dragging_split or over_split:
            shape = Qt.CursorShape.SplitHCursor
        elif over_face:
            shape = Qt.CursorShape.PointingHandCursor
        elif self._before is None:
            shape = Qt.CursorShape.ArrowCursor
        elif self._space_down or self._tool == "pan":
            shape = Qt.CursorShape.OpenHandCursor
        else:
            shape = Qt.CursorShape.BlankCursor  # the brush circle is the cursor
        self.viewport().setCursor(shape)

    def _move_brush_cursor(self, pos: QPointF | None) -> None:
        old = self._brush_cursor_rect()
        old_loupe = self.loupe_rect().toAlignedRect().adjusted(-2, -2, 2, 2)
        self._cursor_scene = None if pos is None or self._before is None else self.view_to_photo(pos)
        if self._tool in ("paint", "erase"):
            self.viewport().update(old)
            self.viewport().update(self._brush_cursor_rect())
            self.viewport().update(old_loupe)
            self.viewport().update(self.loupe_rect().toAlignedRect().adjusted(-2, -2, 2, 2))

    def mousePressEvent(self, event: QMouseEvent) -> None:  # noqa: N802 (Qt API)
        pos = event.position()
        button = event.button()
        if self._before is None or self._stroke is not None or self._pan_last is not None or self._dragging_split:
            event.accept()
            return
        if button == Qt.MouseButton.MiddleButton or (
                button == Qt.MouseButton.LeftButton and self._space_down):
            self._pan_last = pos
        elif button == Qt.MouseButton.LeftButton and self._near_split(pos):
            self._dragging_split = True
            self._drag_split_to(pos)
        elif button == Qt.MouseButton.LeftButton and (
                face := self.face_at(pos, label_only=self._tool != "pan")) is not None:
            # A face's label (any tool) or box (Pan tool): the release decides, so a drag still pans.
            self._face_press = (face, pos)
            if self._tool == "pan":
                self._pan_last = pos
        elif button == Qt.MouseButton.LeftButton and self._tool == "pan":
            self._pan_last = pos
        elif button == Qt.MouseButton.LeftButton and self._tool in ("paint", "erase"):
            self._begin_stroke(pos, bool(event.modifiers() & Qt.KeyboardModifier.ShiftModifier))
        self._update_cursor(pos)
        self.viewport().update(self._brush_cursor_rect())
        event.accept()

    def mouseMoveEvent(self, event: QMouseEvent) -> None:  # noqa: N802 (Qt API)
        pos = event.position()
        if self._face_press is not None and _distance(pos, self._face_press[1]) > CLICK_SLOP_PX:
            self._face_press = None  # a drag, not a click
        if self._pan_last is not None:
            delta = pos - self._pan_last
            self._pan_last = pos
            self._fit_mode = False
            hbar, vbar = self.horizontalScrollBar(), self.verticalScrollBar()
            hbar.setValue(hbar.value() - round(delta.x()))
            vbar.setValue(vbar.value() - round(delta.y()))
        elif self._dragging_split:
            self._drag_split_to(pos)
        elif self._stroke is not None:
            self._continue_stroke(pos)
        self._move_brush_cursor(pos)
        self._update_cursor(pos)
        event.accept()

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:  # noqa: N802 (Qt API)
        pos = event.position()
        button = event.button()
        face_press = self._face_press if button == Qt.MouseButton.LeftButton else None
        if face_press is not None:
            self._face_press = None
            if _distance(pos, face_press[1]) <= CLICK_SLOP_PX:
                self.face_clicked.emit(face_press[0])
        if self._pan_last is not None and button in (Qt.MouseButton.MiddleButton, Qt.MouseButton.LeftButton):
            self._pan_last = None
        elif self._dragging_split and button == Qt.MouseButton.LeftButton:
            self._drag_split_to(pos)
            self._dragging_split = False
        elif self._stroke is not None and button == Qt.MouseButton.LeftButton:
            self._continue_stroke(pos)
            self._end_stroke()
        self._move_brush_cursor(pos)
        self._update_cursor(pos)
        event.accept()

    def mouseDoubleClickEvent(self, event: QMouseEvent) -> None:  # noqa: N802 (Qt API)
        # A quick second click is just another press (a dab), not a special gesture.
        self.mousePressEvent(event)

    def wheelEvent(self, event: QWheelEvent) -> None:  # noqa: N802 (Qt API)
        """The wheel zooms around the cursor, no modifier needed (a trackpad's small steps zoom finely)."""
        if self._before is None:
            event.ignore()
            return
        steps = event.angleDelta().y() / 120.0 or event.angleDelta().x() / 120.0
        if steps:
            self.zoom_by(WHEEL_STEP ** steps, event.position())
            self._move_brush_cursor(event.position())
        event.accept()

    def leaveEvent(self, event: QEvent) -> None:  # noqa: N802 (Qt API)
        super().leaveEvent(event)
        if self._stroke is None:
            self._move_brush_cursor(None)

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802 (Qt API)
        if event.key() == Qt.Key.Key_Space:
            if not event.isAutoRepeat():
                self._space_down = True
                self._update_cursor(None)
                self.viewport().update(self._brush_cursor_rect())
            event.accept()
            return
        super().keyPressEvent(event)

    def keyReleaseEvent(self, event: QKeyEvent) -> None:  # noqa: N802 (Qt API)
        if event.key() == Qt.Key.Key_Space:
            if not event.isAutoRepeat():
                self._space_down = False
                self._update_cursor(None)
                self.viewport().update(self._brush_cursor_rect())
            event.accept()
            return
        super().keyReleaseEvent(event)

    def focusOutEvent(self, event: QFocusEvent) -> None:  # noqa: N802 (Qt API)
        super().focusOutEvent(event)
        self._space_down = False  # the release would go to another widget and space would stick

    # ----------------------------------------------------------------------------- actions

    def _drag_split_to(self, pos: QPointF) -> None:
        assert self._before is not None
        self.set_split(self.view_to_photo(pos).x() / self._before.width)

    def _begin_stroke(self, pos: QPointF, line_from_last: bool) -> None:
        assert self._masks is not None
        point = self.view_to_photo(pos)
        self._stroke = _Stroke(value=self._tool == "paint", start=self._masks.mask.copy(), last=point)
        # Shift+click draws a straight line from where the previous stroke ended (scratches are straight).
        origin = self._last_paint if line_from_last and self._last_paint is not None else point
        self._paint_segment(origin, point)

    def _continue_stroke(self, pos: QPointF) -> None:
        assert self._stroke is not None
        point = self.view_to_photo(pos)
        self._paint_segment(self._stroke.last, point)
        self._stroke.last = point

    def _paint_segment(self, a: QPointF, b: QPointF) -> None:
        assert self._masks is not None and self._stroke is not None
        box = _stamp_segment(self._masks.mask, a, b, self._brush / 2.0, self._stroke.value)
        if box is None:
            return
        self._stroke.grow(box)
        y0, y1, x0, x1 = box
        self._masks.refresh(y0, y1, x0, x1)
        self._mask_maybe_set = self._mask_maybe_set or self._stroke.value
        self._update_photo_rect(y0, y1, x0, x1)

    def _end_stroke(self) -> None:
        """Release: the whole stroke becomes one undo step (only its bounding rectangle is stored)."""
        stroke, self._stroke = self._stroke, None
        assert stroke is not None and self._masks is not None
        self._last_paint = stroke.last
        if stroke.box is None:
            return
        y0, y1, x0, x1 = stroke.box
        label = "Paint stroke" if stroke.value else "Erase stroke"
        self._push_change(label, y0, x0, stroke.start[y0:y1, x0:x1], self._masks.mask[y0:y1, x0:x1],
                          already_applied=True)
        self.stroked.emit()

    def _abort_stroke(self) -> None:
        """Drop an unfinished stroke and put back what it painted (e.g. Ctrl+Z pressed mid-stroke)."""
        stroke, self._stroke = self._stroke, None
        if stroke is None or stroke.box is None or self._masks is None:
            return
        y0, y1, x0, x1 = stroke.box
        self._masks.mask[y0:y1, x0:x1] = stroke.start[y0:y1, x0:x1]
        self._masks.refresh(y0, y1, x0, x1)
        self._update_photo_rect(y0, y1, x0, x1)
