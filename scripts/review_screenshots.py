"""Screenshots of the review states (issue #20) that ``main.py --screenshot`` cannot reach alone.

    QT_QPA_PLATFORM=offscreen python scripts/review_screenshots.py docs/screenshots

Runs the real flow offscreen with the installed default weights, in throwaway settings, masks and
queue: detect on the sample photo, restore it in the album queue, open the finished row in the
compare view, switch on "What changed", brush with the 100 % loupe, restore again and ask before
opening another photo. The fine-tune warning is the Train tab's real message for a run whose
held-out F1 dropped from 1.000 to 0.458 (a stand-in session gives those scores: a real fine-tune
takes minutes).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from PySide6.QtCore import QPoint, QPointF, Qt  # noqa: E402
from PySide6.QtGui import QPainter  # noqa: E402
from PySide6.QtTest import QTest  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

SIZE = (1366, 768)


def wait(app: QApplication, done, seconds: float = 600.0) -> None:
    deadline = time.monotonic() + seconds
    while not done():
        if time.monotonic() > deadline:
            raise TimeoutError("the window did not get there in time")
        app.processEvents()
        time.sleep(0.02)
    for _ in range(10):
        app.processEvents()


def save(widget_pixmap, folder: Path, name: str) -> None:
    path = folder / name
    if not widget_pixmap.save(str(path), "PNG"):
        raise OSError(f"could not write {path}")
    print(path)


class WorseSession:
    """Scores of a fine-tune that got worse; nothing is trained or written."""

    step, device, before = 40, "cpu", {"f1": 1.0, "photos": 1.0}

    def evaluate(self) -> dict[str, float]:
        return {"f1": 0.458, "photos": 1.0}


def main(folder: Path) -> int:
    app = QApplication.instance() or QApplication([sys.argv[0]])
    from engine.jobs.sample import make_sample_photo
    from engine.store.masks import MaskStore
    from gui.main_window import MainWindow
    from gui.prompts import unsaved_box
    from gui.settings import Settings

    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="heirloom-review-") as tmp:
        scratch = Path(tmp)
        os.environ["HEIRLOOM_DATA_DIR"] = str(scratch / "data")
        settings = Settings.from_file(scratch / "settings.ini")
        settings.device = "cpu"
        window = MainWindow(settings=settings, masks=MaskStore(scratch / "masks"), queue_state=scratch / "queue.json")
        window.resize(*SIZE)
        window.show()
        wait(app, lambda: not window.models_tab.refreshing)
        tab, queue = window.restore_tab, window.queue_tab
        sample = make_sample_photo(scratch / "album")

        # The detector's guess, reviewed by brushing: then the queue restores the album with it.
        assert tab.load_image(sample)
        assert tab.start_detect(), tab.error_label.text()
        wait(app, lambda: not tab.busy)
        tab.mask_panel.accept_button.click()
        tab.store_mask()
        queue.set_output_dir(scratch / "restored")
        queue.add_paths([sample])
        window.tabs.setCurrentWidget(queue)
        queue.start()
        wait(app, lambda: not queue.is_running and queue.reviewable(0) is not None)

        # Double-click on the finished row (as a person would): the compare view.
        table = queue.table
        rect = table.visualRect(queue.model.index(0, 1))
        QTest.mouseClick(table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
        QTest.mouseDClick(table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
        wait(app, lambda: tab.result is not None)
        save(window.grab(), folder, "queue-review-compare.png")

        tab.diff_button.click()
        wait(app, lambda: True)
        save(window.grab(), folder, "what-changed.png")
        tab.diff_button.click()

        # Brushing with the loupe: the loupe shows only below 100 %, and a 512 px sample photo fits
        # this window at 123 %, so zoom out to 80 % first.
        tab.canvas.set_zoom(0.8)
        tab.mask_panel.overlay_checkbox.setChecked(True)
        tab.mask_panel.set_tool("paint")
        photo = tab.canvas.photo_rect_in_view()
        spot = QPointF(photo.left() + photo.width() * 0.62, photo.top() + photo.height() * 0.4).toPoint()
        QTest.mouseMove(tab.canvas.viewport(), spot)
        QTest.mouseMove(tab.canvas.viewport(), spot + QPoint(1, 0))
        wait(app, lambda: True)
        save(window.grab(), folder, "brush-loupe.png")

        # Restore again after the review, then try to open another photo: asked first.
        tab.mask_panel.set_tool("pan")
        assert tab.start_restore(), tab.error_label.text()
        wait(app, lambda: not tab.busy)
        shot = window.grab()
        box = unsaved_box(window, *tab.unsaved_question("Open another photo"))
        box.show()
        wait(app, lambda: True)
        dialog = box.grab()
        painter = QPainter(shot)
        painter.drawPixmap((shot.width() - dialog.width()) // 2, (shot.height() - dialog.height()) // 3, dialog)
        painter.end()
        box.close()
        save(shot, folder, "unsaved-work-question.png")

        # The Train tab after saving a fine-tune that scored worse than its base.
        train = window.train_tab
        window.tabs.setCurrentWidget(train)
        train.job, train.session, train.run_state, train.step = (SimpleNamespace(budget=None, task="detector"),
                                                                 WorseSession(), "finished", 40)
        train.name_edit.setText("aunt-ruth-album")
        train.save_profile()
        wait(app, lambda: not train.busy)
        train.status_label.setText("Finished: step 40 of 40. Save it as a profile below.")
        save(window.grab(), folder, "finetune-worse-warning.png")
        train.job = train.session = None
        window.restore_tab.result_saved = True  # nothing to ask about while closing the throwaway window
        window.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/screenshots")))
