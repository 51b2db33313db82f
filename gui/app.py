"""Start the Heirloom desktop app, or render one tab to a PNG (``--screenshot``) and exit.

    python main.py                                   the app
    python main.py --screenshot FILE.png [--tab restore|queue|train|models] [PHOTO_OR_FOLDER...]

Screenshots run offscreen (no display needed) with throwaway settings, masks and queue, so they
neither depend on nor change the user's own; the window is 1366 x 768, the smallest screen we
design for.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

SCREENSHOT_SIZE = (1366, 768)
SETTLE_TIMEOUT_S = 60.0
# Libraries Qt's X11 ("xcb") platform plugin loads that minimal desktop installs often lack; without
# them Qt prints a raw plugin error and aborts the process, so they are looked for first.
XCB_LIBRARIES = (("xcb-cursor", "libxcb-cursor0"), ("xkbcommon-x11", "libxkbcommon-x11-0"))


def missing_x11_libraries(platform: str | None = None, env: dict[str, str] | None = None) -> list[str]:
    """Debian/Ubuntu package names of the X11 libraries Qt will need but cannot find (empty when
    another platform plugin is in use: Windows, macOS, Wayland, offscreen)."""
    import ctypes.util

    platform = sys.platform if platform is None else platform
    env = os.environ if env is None else env
    chosen = env.get("QT_QPA_PLATFORM", "")
    if not platform.startswith("linux") or (chosen and not chosen.startswith("xcb")):
        return []
    if not chosen and env.get("WAYLAND_DISPLAY") and not env.get("DISPLAY"):
        return []
    return [package for lib, package in XCB_LIBRARIES if ctypes.util.find_library(lib) is None]


def x11_help(packages: list[str]) -> str:
    """What to print instead of Qt's raw "could not load the Qt platform plugin" abort."""
    return ("Heirloom cannot open its window: Qt needs X11 libraries that are not installed "
            f"({', '.join(packages)}).\nInstall them, then start Heirloom again:\n"
            f"    Ubuntu/Debian: sudo apt install {' '.join(packages)}\n"
            "    Fedora: sudo dnf install xcb-util-cursor libxkbcommon-x11\n"
            "The command line (python main.py restore ...) works without them.")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="heirloom", description="Heirloom desktop app")
    parser.add_argument("--screenshot", metavar="FILE.png", type=Path,
                        help="render the window offscreen into FILE.png and exit")
    parser.add_argument("--tab", choices=("restore", "queue", "train", "models"), default="restore",
                        help="which tab the screenshot shows (default: restore)")
    parser.add_argument("paths", nargs="*", type=Path, metavar="PHOTO",
                        help="a photo to open (restore tab) or photos/folders to queue (queue tab)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """``argv`` are the arguments after the program name (None: none). Returns the exit code."""
    args = build_parser().parse_args([] if argv is None else argv)
    if args.screenshot is not None:
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # before the QApplication exists
    from PySide6.QtWidgets import QApplication

    missing = missing_x11_libraries() if QApplication.instance() is None else []
    if missing:
        print(x11_help(missing), file=sys.stderr)
        return 1

    from engine.device import keep_large_buffers_mapped  # here, like Qt: --help stays instant

    keep_large_buffers_mapped()  # repeated restores reuse their buffers
    app = QApplication.instance() or QApplication([sys.argv[0] if sys.argv else "heirloom"])
    app.setApplicationName("Heirloom")
    app.setOrganizationName("Heirloom")
    if args.screenshot is not None:
        return screenshot(args.screenshot, args.tab, args.paths)
    return run_app(app, args.paths)


def run_app(app, paths: list[Path]) -> int:
    from .errors import ExceptionHub
    from .main_window import MainWindow

    hub = ExceptionHub()
    hub.install()
    try:
        try:
            window = MainWindow()
        except Exception as exc:  # no window to report to: say it in a box, not only on a console
            from PySide6.QtWidgets import QMessageBox

            from .errors import describe_error, error_details

            hub.report(exc, " while starting")  # printed and logged too
            box = QMessageBox(QMessageBox.Icon.Critical, "Heirloom could not start", describe_error(exc))
            box.setDetailedText(error_details(exc))
            box.exec()
            return 1
        hub.raised.connect(window.show_unexpected_error)
        window.show()
        if paths:
            window.open_paths(paths)
        return int(app.exec())
    finally:
        hub.uninstall()


def _settle(app, window, seconds: float = SETTLE_TIMEOUT_S) -> None:
    """Let layouts, background listings and thumbnails finish before grabbing."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        app.processEvents()
        if not window.models_tab.refreshing:
            break
        time.sleep(0.02)
    for _ in range(20):
        app.processEvents()
        time.sleep(0.01)


def screenshot(path: Path, tab: str, paths: list[Path]) -> int:
    """Open the window offscreen on ``tab``, load ``paths`` there, render it to ``path``."""
    from engine.store.masks import MaskStore

    from .main_window import MainWindow
    from .settings import Settings

    with tempfile.TemporaryDirectory(prefix="heirloom-shot-") as tmp:
        scratch = Path(tmp)
        window = MainWindow(settings=Settings.from_file(scratch / "settings.ini"), masks=MaskStore(scratch / "masks"),
                            queue_state=scratch / "queue.json")
        window.resize(*SCREENSHOT_SIZE)
        window.tabs.setCurrentWidget(window.tab_widget(tab))
        window.show()
        if paths:
            if tab == "restore":
                if not window.restore_tab.load_image(paths[0]):
                    print(f"error: cannot open {paths[0]}: {window.restore_tab.error_label.text()}", file=sys.stderr)
                    window.close()
                    return 1
            elif tab == "queue":
                window.queue_tab.add_paths(paths)
        from PySide6.QtWidgets import QApplication

        _settle(QApplication.instance(), window)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        ok = window.grab().save(str(path), "PNG")
        window.close()
    if not ok:
        print(f"error: could not write {path}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
