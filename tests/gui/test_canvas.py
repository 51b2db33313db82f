"""The Restore tab's image view: brush strokes, undo, the split line, zoom, the overlay, mask files."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import gc
import time

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QColor, QImage, QWheelEvent
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication
from scipy import ndimage

from gui.canvas import MAX_ZOOM, MIN_ZOOM, PhotoCanvas

VIEW_W, VIEW_H = 400, 300
LEFT = Qt.MouseButton.LeftButton
NO_MOD = Qt.KeyboardModifier.NoModifier


@pytest.fixture
def canvas(qtbot) -> PhotoCanvas:
    view = PhotoCanvas()
    qtbot.addWidget(view)
    view.resize(VIEW_W, VIEW_H)
    view.show()
    qtbot.waitExposed(view)
    assert (view.viewport().width(), view.viewport().height()) == (VIEW_W, VIEW_H)
    return view


def grey(w: int, h: int, value: int = 128) -> np.ndarray:
    return np.full((h, w, 3), value, np.uint8)


def solid(w: int, h: int, rgb: tuple[int, int, int]) -> np.ndarray:
    return np.broadcast_to(np.array(rgb, np.uint8), (h, w, 3)).copy()


def view_point(canvas: PhotoCanvas, x: float, y: float) -> QPoint:
    """Photo coordinates -> the integer viewport position a real mouse would report."""
    return canvas.photo_to_view(QPointF(x, y)).toPoint()


def stroke(canvas: PhotoCanvas, points: list[QPoint], button=LEFT, modifier=NO_MOD) -> None:
    vp = canvas.viewport()
    QTest.mousePress(vp, button, modifier, points[0])
    for p in points[1:]:
        QTest.mouseMove(vp, p)
    QTest.mouseRelease(vp, button, modifier, points[-1])


def capsules(shape: tuple[int, int], points: list[QPointF], radius: float) -> np.ndarray:
    """Brute-force reference: pixels whose centre is within ``radius`` of the polyline."""
    h, w = shape
    cy, cx = np.mgrid[0:h, 0:w] + 0.5
    out = np.zeros(shape, bool)
    pairs = list(zip(points, points[1:])) or [(points[0], points[0])]
    for a, b in pairs:
        ax, ay, bx, by = a.x(), a.y(), b.x(), b.y()
        dx, dy = bx - ax, by - ay
        len2 = dx * dx + dy * dy
        t = np.zeros_like(cx) if len2 == 0 else np.clip(((cx - ax) * dx + (cy - ay) * dy) / len2, 0, 1)
        out |= (cx - ax - t * dx) ** 2 + (cy - ay - t * dy) ** 2 <= radius * radius
    return out


def rgb_at(image: QImage, x: int, y: int) -> tuple[int, int, int]:
    c = QColor(image.pixel(x, y))
    return c.red(), c.green(), c.blue()


def close(a: tuple[int, int, int], b: tuple[int, int, int], tol: int = 4) -> bool:
    return all(abs(p - q) <= tol for p, q in zip(a, b))


def send_wheel(canvas: PhotoCanvas, pos: QPoint, notches: float) -> None:
    vp = canvas.viewport()
    event = QWheelEvent(QPointF(pos), QPointF(vp.mapToGlobal(pos)), QPoint(0, 0), QPoint(0, int(120 * notches)),
                        Qt.MouseButton.NoButton, NO_MOD, Qt.ScrollPhase.NoScrollPhase, False)
    QApplication.sendEvent(vp, event)


# ------------------------------------------------------------------------------------ brush

def test_a_stroke_marks_exactly_the_pixels_within_the_brush_radius(canvas):
    canvas.set_before(grey(40, 30))
    assert canvas.zoom() == pytest.approx(10.0)  # 40x30 fits 400x300 exactly
    canvas.set_tool("paint")
    canvas.set_brush_size(5)
    path = [view_point(canvas, *p) for p in ((5.5, 10.5), (15.5, 10.5), (25.2, 14.7), (26.0, 20.3))]
    changes = []
    canvas.mask_changed.connect(lambda: changes.append(1))
    stroke(canvas, path)

    mask = canvas.mask()
    expected = capsules(mask.shape, [canvas.view_to_photo(QPointF(p)) for p in path], 2.5)
    assert np.array_equal(mask, expected)
    assert mask[10, 10] and mask[12, 25] and not mask[25, 5] and not mask[0, 39]
    assert len(changes) == 1          # one notification per stroke, at release
    assert canvas.undo_stack.count() == 1


def test_a_single_click_paints_a_round_dab(canvas):
    canvas.set_before(grey(40, 30))
    canvas.set_brush_size(7)
    p = view_point(canvas, 20.5, 15.5)
    QTest.mouseClick(canvas.viewport(), LEFT, NO_MOD, p)
    mask = canvas.mask()
    assert np.array_equal(mask, capsules(mask.shape, [QPointF(20.5, 15.5)], 3.5))
    assert mask.sum() == 37  # the disc of radius 3.5 around a pixel centre


def test_erase_removes_only_along_the_stroke(canvas):
    canvas.set_before(grey(40, 30))
    canvas.set_mask(np.ones((30, 40), bool))
    canvas.set_tool("erase")
    canvas.set_brush_size(4)
    path = [view_point(canvas, 3.5, 15.5), view_point(canvas, 36.5, 15.5)]
    stroke(canvas, path)
    mask = canvas.mask()
    expected = ~capsules(mask.shape, [canvas.view_to_photo(QPointF(p)) for p in path], 2.0)
    assert np.array_equal(mask, expected)
    assert not mask[15, 20] and mask[5, 20] and mask[25, 20]


def test_a_fast_stroke_leaves_no_gaps(canvas):
    canvas.set_before(grey(200, 150))
    canvas.set_brush_size(3)
    a, b = view_point(canvas, 10, 10), view_point(canvas, 190, 140)
    stroke(canvas, [a, b])  # one mouse event for 220 photo pixels
    mask = canvas.mask()
    pa, pb = canvas.view_to_photo(QPointF(a)), canvas.view_to_photo(QPointF(b))
    for t in np.linspace(0, 1, 2000):
        x, y = pa.x() + t * (pb.x() - pa.x()), pa.y() + t * (pb.y() - pa.y())
        assert mask[int(y), int(x)], (x, y)
    assert ndimage.label(mask)[1] == 1
    assert mask.sum() == capsules(mask.shape, [pa, pb], 1.5).sum()


def test_shift_click_draws_a_straight_line_from_the_last_stroke(canvas):
    canvas.set_before(grey(40, 30))
    canvas.set_brush_size(1)
    QTest.mouseClick(canvas.viewport(), LEFT, NO_MOD, view_point(canvas, 2.5, 2.5))
    QTest.mouseClick(canvas.viewport(), LEFT, Qt.KeyboardModifier.ShiftModifier, view_point(canvas, 30.5, 2.5))
    mask = canvas.mask()
    assert mask[2, 2:31].all() and mask.sum() == 29
    assert canvas.undo_stack.count() == 2


def test_undo_and_redo_restore_the_exact_masks(canvas):
    canvas.set_before(grey(40, 30))
    rng = np.random.default_rng(3)
    detected = rng.random((30, 40)) > 0.8
    canvas.set_mask(detected)
    after_set = canvas.mask()
    canvas.set_brush_size(6)
    stroke(canvas, [view_point(canvas, 5, 5), view_point(canvas, 35, 25)])
    after_paint = canvas.mask()
    canvas.set_tool("erase")
    stroke(canvas, [view_point(canvas, 5, 25), view_point(canvas, 35, 5)])
    after_erase = canvas.mask()
    canvas.clear_mask()
    gc.collect()  # the commands live in the C++ stack: they must survive Python's garbage collector
    assert not canvas.mask().any()
    assert [canvas.undo_stack.text(i) for i in range(canvas.undo_stack.count())] == [
        "Set mask", "Paint stroke", "Erase stroke", "Clear mask"]

    expected = [after_erase, after_paint, after_set, np.zeros((30, 40), bool)]
    for state in expected:
        canvas.undo_stack.undo()
        assert np.array_equal(canvas.mask(), state)
    for state in (after_set, after_paint, after_erase, np.zeros((30, 40), bool)):
        canvas.undo_stack.redo()
        assert np.array_equal(canvas.mask(), state)


def test_set_mask_without_undo_forgets_the_history_and_sizes_are_checked(canvas):
    canvas.set_before(grey(40, 30))
    stroke(canvas, [view_point(canvas, 5, 5), view_point(canvas, 20, 5)])
    stored = np.zeros((30, 40), bool)
    stored[10:20, 10:20] = True
    canvas.set_mask(stored, undoable=False)
    assert canvas.undo_stack.count() == 0 and np.array_equal(canvas.mask(), stored)
    with pytest.raises(ValueError, match="photo is 40x30"):
        canvas.set_mask(np.zeros((30, 41), bool))
    assert np.array_equal(canvas.mask(), stored)
    canvas.clear_mask()
    canvas.clear_mask()  # already empty: no second undo step
    assert canvas.undo_stack.count() == 1


def test_a_new_photo_starts_with_an_empty_mask_and_no_history(canvas):
    canvas.set_before(grey(40, 30))
    stroke(canvas, [view_point(canvas, 5, 5), view_point(canvas, 20, 5)])
    canvas.set_after(grey(40, 30, 90))
    canvas.set_before(grey(50, 20))
    assert canvas.mask().shape == (20, 50) and not canvas.mask().any()
    assert canvas.undo_stack.count() == 0 and not canvas.has_after()
    canvas.set_before(None)
    assert canvas.mask() is None and not canvas.has_photo()
    assert "Drop a photo" in canvas.hint()


# ------------------------------------------------------------------------------- split view

def test_compare_shows_before_left_and_after_right_of_the_line(canvas):
    red, blue = (200, 40, 40), (40, 40, 200)
    canvas.set_before(solid(40, 30, red))
    canvas.set_after(solid(40, 30, blue))
    canvas.set_compare(True)
    canvas.set_split(0.25)
    shot = canvas.viewport().grab().toImage()
    line_x = round(canvas.photo_to_view(QPointF(10, 0)).x())
    assert line_x == 100
    assert close(rgb_at(shot, line_x - 6, 250), red) and close(rgb_at(shot, 20, 200), red)
    assert close(rgb_at(shot, line_x + 6, 250), blue) and close(rgb_at(shot, 380, 200), blue)
    assert rgb_at(shot, line_x, 250)[1] > 150  # the white split line itself

    canvas.show_before_only(True)  # "hold to see the original"
    shot = canvas.viewport().grab().toImage()
    assert close(rgb_at(shot, 300, 250), red) and close(rgb_at(shot, line_x, 250), red)
    canvas.show_before_only(False)
    canvas.set_compare(False)
    shot = canvas.viewport().grab().toImage()
    assert close(rgb_at(shot, 20, 250), blue) and close(rgb_at(shot, 380, 250), blue)


def test_dragging_the_split_line_moves_it_and_does_not_paint(canvas):
    canvas.set_before(grey(40, 30))
    canvas.set_after(grey(40, 30, 200))
    canvas.set_compare(True)
    canvas.set_tool("paint")
    canvas.set_brush_size(9)
    moves = []
    canvas.split_changed.connect(moves.append)
    stroke(canvas, [QPoint(203, 40), QPoint(260, 45), QPoint(300, 50)])  # grab the line, not the knob
    assert canvas.split() == pytest.approx(0.75)
    assert moves and moves[-1] == pytest.approx(0.75)
    stroke(canvas, [QPoint(300, 150), QPoint(120, 150)])  # the knob, in the middle of the line
    assert canvas.split() == pytest.approx(0.3)
    assert not canvas.mask().any() and canvas.undo_stack.count() == 0

    stroke(canvas, [QPoint(40, 150), QPoint(60, 150)])  # away from the line the brush paints again
    assert canvas.mask().any() and canvas.split() == pytest.approx(0.3)


def test_without_an_after_image_there_is_no_line_to_grab(canvas):
    canvas.set_before(grey(40, 30))
    canvas.set_compare(True)
    assert not canvas.split_visible()
    stroke(canvas, [QPoint(200, 40), QPoint(300, 40)])
    assert canvas.split() == 0.5 and canvas.mask().any()


# -------------------------------------------------------------------------------- zoom, pan

def test_zoom_fit_and_100(canvas):
    canvas.set_before(grey(200, 100))
    zooms = []
    canvas.zoom_changed.connect(zooms.append)
    assert canvas.zoom() == pytest.approx(2.0)
    rect = canvas.photo_rect_in_view()
    assert (rect.x(), rect.y(), rect.width(), rect.height()) == pytest.approx((0, 50, 400, 200))
    centre = QPointF(VIEW_W / 2, VIEW_H / 2)
    before = canvas.view_to_photo(centre)
    canvas.zoom_100()
    assert canvas.zoom() == pytest.approx(1.0) and zooms == [pytest.approx(1.0)]
    assert canvas.photo_rect_in_view().width() == pytest.approx(200)
    after = canvas.view_to_photo(centre)
    assert (after.x(), after.y()) == pytest.approx((before.x(), before.y()), abs=1.0)
    canvas.set_zoom(8.0)
    canvas.zoom_fit()
    assert canvas.zoom() == pytest.approx(2.0)
    assert canvas.photo_rect_in_view().x() == pytest.approx(0, abs=1)
    canvas.zoom_by(1000)
    assert canvas.zoom() == pytest.approx(MAX_ZOOM)
    canvas.zoom_by(1e-6)
    assert canvas.zoom() == pytest.approx(MIN_ZOOM)


def test_wheel_zooms_around_the_cursor(canvas):
    canvas.set_before(grey(200, 150))
    canvas.set_zoom(4.0)
    cursor = QPoint(90, 70)
    fixed = canvas.view_to_photo(QPointF(cursor))
    send_wheel(canvas, cursor, 1)
    assert canvas.zoom() == pytest.approx(5.0)
    moved = canvas.photo_to_view(fixed)
    assert (moved.x(), moved.y()) == pytest.approx((cursor.x(), cursor.y()), abs=1.0)
    send_wheel(canvas, QPoint(330, 250), -2)
    assert canvas.zoom() == pytest.approx(5.0 / 1.25 ** 2)
    canvas.set_zoom(6.0)
    canvas.centerOn(QPointF(120, 90))
    cursor = QPoint(330, 250)
    fixed = canvas.view_to_photo(QPointF(cursor))
    canvas.set_zoom(3.0, QPointF(cursor))  # still larger than the view, so the point can stay put
    moved = canvas.photo_to_view(fixed)
    assert (moved.x(), moved.y()) == pytest.approx((cursor.x(), cursor.y()), abs=1.0)


def test_panning_with_the_pan_tool_middle_button_and_space(canvas, qtbot):
    canvas.set_before(grey(200, 150))
    canvas.set_zoom(4.0)
    canvas.set_tool("pan")
    origin = canvas.photo_to_view(QPointF(100, 75))
    stroke(canvas, [QPoint(200, 150), QPoint(180, 140), QPoint(150, 120)])
    moved = canvas.photo_to_view(QPointF(100, 75))
    assert (moved.x() - origin.x(), moved.y() - origin.y()) == pytest.approx((-50, -30), abs=1)

    canvas.set_tool("paint")
    stroke(canvas, [QPoint(150, 120), QPoint(190, 160)], button=Qt.MouseButton.MiddleButton)
    QTest.keyPress(canvas, Qt.Key.Key_Space)
    stroke(canvas, [QPoint(190, 160), QPoint(200, 150)])
    QTest.keyRelease(canvas, Qt.Key.Key_Space)
    back = canvas.photo_to_view(QPointF(100, 75))
    assert (back.x(), back.y()) == pytest.approx((origin.x(), origin.y()), abs=1)
    assert not canvas.mask().any()


# ---------------------------------------------------------------------------------- overlay

def test_the_overlay_tints_exactly_the_masked_pixels(canvas):
    canvas.set_before(grey(40, 30))
    mask = np.zeros((30, 40), bool)
    mask[10:20, 5:15] = True
    canvas.set_mask(mask)
    canvas.set_overlay_colour(QColor(255, 0, 0))
    canvas.set_overlay_opacity(0.5)
    shot = canvas.viewport().grab().toImage()
    tinted, plain = (191, 64, 64), (128, 128, 128)
    assert close(rgb_at(shot, 51, 101), tinted) and close(rgb_at(shot, 148, 198), tinted)
    assert close(rgb_at(shot, 48, 101), plain) and close(rgb_at(shot, 151, 150), plain)
    assert close(rgb_at(shot, 100, 98), plain) and close(rgb_at(shot, 100, 202), plain)
    canvas.set_overlay_visible(False)
    assert close(rgb_at(canvas.viewport().grab().toImage(), 100, 150), plain)


def test_the_overlay_stays_aligned_and_visible_when_zoomed_out(canvas):
    canvas.set_before(grey(1600, 1200))
    assert canvas.zoom() == pytest.approx(0.25)
    mask = np.zeros((1200, 1600), bool)
    mask[400:800, 400:800] = True       # view 100..200
    mask[:, 1201] = True                # a one-pixel scratch, view x ~300
    canvas.set_mask(mask)
    canvas.set_overlay_opacity(1.0)
    shot = canvas.viewport().grab().toImage()
    colour = canvas.overlay_colour()
    inside = (colour.red(), colour.green(), colour.blue())
    assert close(rgb_at(shot, 101, 101), inside) and close(rgb_at(shot, 198, 198), inside)
    assert close(rgb_at(shot, 98, 150), (128,) * 3) and close(rgb_at(shot, 202, 150), (128,) * 3)
    assert rgb_at(shot, 300, 150)[0] > 170  # the thin scratch still shows at 25 %


def test_the_coarse_overlay_levels_are_max_pooled_from_the_mask(canvas):
    """Zoomed out, a coarse level is drawn: every level must show any damage under each of its pixels,
    also for odd sizes and after small edits (only the touched rectangle is recomputed)."""
    canvas.set_before(grey(75, 53))
    rng = np.random.default_rng(5)
    canvas.set_mask(rng.random((53, 75)) > 0.97)
    canvas.set_zoom(0.5)
    canvas.set_brush_size(5)
    stroke(canvas, [view_point(canvas, 11, 7), view_point(canvas, 60, 44)])
    canvas.set_tool("erase")
    stroke(canvas, [view_point(canvas, 20, 30), view_point(canvas, 50, 30)])
    assert canvas.undo_stack.count() == 3
    levels = canvas._masks.arrays
    assert len(levels) > 2
    expected = canvas.mask().astype(np.uint8)
    for level in levels:
        assert np.array_equal(level, expected)
        h, w = expected.shape
        padded = np.zeros((h + h % 2, w + w % 2), np.uint8)
        padded[:h, :w] = expected
        expected = padded.reshape(padded.shape[0] // 2, 2, padded.shape[1] // 2, 2).max(axis=(1, 3))


def test_painting_updates_the_overlay_live(canvas):
    canvas.set_before(grey(40, 30))
    canvas.set_overlay_opacity(1.0)
    stroke(canvas, [view_point(canvas, 20.5, 15.5)])
    colour = canvas.overlay_colour()
    assert close(rgb_at(canvas.viewport().grab().toImage(), 205, 155), (colour.red(), colour.green(), colour.blue()))
    canvas.undo_stack.undo()
    assert close(rgb_at(canvas.viewport().grab().toImage(), 205, 155), (128,) * 3)


# -------------------------------------------------------------------------------- mask files

def test_save_and_load_mask_round_trip(canvas, tmp_path):
    canvas.set_before(grey(40, 30))
    rng = np.random.default_rng(7)
    mask = rng.random((30, 40)) > 0.7
    canvas.set_mask(mask)
    path = tmp_path / "masks" / "photo.png"
    canvas.save_mask(path)
    stored = np.asarray(Image.open(path))
    assert stored.shape == (30, 40) and set(np.unique(stored)) == {0, 255}
    assert not list(path.parent.glob("*.tmp*"))
    canvas.clear_mask()
    canvas.load_mask(path)
    assert np.array_equal(canvas.mask(), mask)
    canvas.undo_stack.undo()
    assert not canvas.mask().any()


def test_loading_a_mask_of_another_size_is_refused(canvas, tmp_path):
    canvas.set_before(grey(40, 30))
    path = tmp_path / "other.png"
    Image.fromarray(np.full((31, 40), 255, np.uint8)).save(path)
    with pytest.raises(ValueError, match="40x31 pixels but the photo is 40x30"):
        canvas.load_mask(path)
    assert not canvas.mask().any() and canvas.undo_stack.count() == 0


def test_after_image_must_match_the_photo(canvas):
    with pytest.raises(ValueError):
        canvas.set_after(grey(40, 30))
    canvas.set_before(grey(40, 30))
    with pytest.raises(ValueError, match="photo is 40x30"):
        canvas.set_after(grey(30, 40))


# ---------------------------------------------------------------------------------- big scans

def test_strokes_on_a_big_scan_only_touch_what_they_paint(canvas, qtbot):
    """A 24 MP scan: per-move work must scale with the brush, not with the photo."""
    canvas.set_before(grey(6000, 4000))
    canvas.set_zoom(1.0)
    canvas.set_brush_size(40)
    vp = canvas.viewport()
    points = [QPoint(50 + 6 * i, 60 + (i * 37) % 180) for i in range(50)]
    start = time.perf_counter()
    QTest.mousePress(vp, LEFT, NO_MOD, points[0])
    for p in points[1:]:
        QTest.mouseMove(vp, p)
        QApplication.processEvents()  # let each repaint happen, like a real event loop
    QTest.mouseRelease(vp, LEFT, NO_MOD, points[-1])
    QApplication.processEvents()
    elapsed = time.perf_counter() - start
    assert canvas.mask().any()
    assert elapsed < 2.0, f"50 brush moves took {elapsed:.2f} s"
