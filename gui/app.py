"""Start the Heirloom desktop app (``python main.py`` with no arguments)."""

from __future__ import annotations

import sys

from PySide6.QtWidgets import QApplication

from .main_window import MainWindow


def main(argv: list[str] | None = None) -> int:
    """Create (or reuse) the QApplication, show the main window and run the event loop; returns the exit code."""
    app = QApplication.instance() or QApplication(sys.argv if argv is None else argv)
    app.setApplicationName("Heirloom")
    app.setOrganizationName("Heirloom")
    window = MainWindow()
    window.show()
    return int(app.exec())


if __name__ == "__main__":
    sys.exit(main())
