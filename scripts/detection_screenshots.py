"""Screenshots of the Restore tab's damage overlay, as a user sees it after pressing *Detect*
(issue #16: scratched_a, scratched_b and the app's sample photo, looked at by a person).

    QT_QPA_PLATFORM=offscreen python scripts/detection_screenshots.py OUT_DIR [--weights default|PATH]
        [PHOTO...]   (default photos: ../shared/data/real_old/scratched_{a,b}.png and the sample photo)

Runs the real window offscreen in throwaway settings, loads each photo, runs the detector through
the tab's own button path and saves ``detect-<stem>.png`` of the whole window, plus
``detect-<stem>-mask.png`` (the mask the tab holds, white = damage) to compare with the photo.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from PySide6.QtWidgets import QApplication  # noqa: E402
from review_screenshots import SIZE, save, wait  # noqa: E402

REAL_OLD = ROOT.parent / "shared" / "data" / "real_old"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("photos", type=Path, nargs="*")
    parser.add_argument("--weights", default="default")
    args = parser.parse_args(argv)
    app = QApplication.instance() or QApplication([sys.argv[0]])
    from engine.io.encode import write_png
    from engine.jobs.sample import make_sample_photo
    from engine.store.masks import MaskStore
    from gui.main_window import MainWindow
    from gui.settings import Settings

    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="heirloom-detect-shots-") as tmp:
        scratch = Path(tmp)
        os.environ["HEIRLOOM_DATA_DIR"] = str(scratch / "data")
        photos = args.photos or [REAL_OLD / "scratched_a.png", REAL_OLD / "scratched_b.png",
                                 make_sample_photo(scratch / "album")]
        settings = Settings.from_file(scratch / "settings.ini")
        settings.device, settings.weights = "cpu", args.weights
        window = MainWindow(settings=settings, masks=MaskStore(scratch / "masks"), queue_state=scratch / "queue.json")
        window.resize(*SIZE)
        window.show()
        wait(app, lambda: not window.models_tab.refreshing)
        tab = window.restore_tab
        for photo in photos:
            assert tab.load_image(photo), tab.error_label.text()
            assert tab.start_detect(), tab.error_label.text()
            wait(app, lambda: not tab.busy)
            mask = tab.canvas.mask()
            stem = Path(photo).stem
            save(window.grab(), args.out, f"detect-{stem}.png")
            if mask is not None:
                write_png(args.out / f"detect-{stem}-mask.png", mask.astype("uint8") * 255)
                print(f"{stem}: {100 * mask.mean():.2f} % marked")
        window.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
