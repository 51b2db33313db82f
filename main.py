"""Heirloom entry point: no arguments opens the app; ``restore``, ``models`` ... run headless."""

from __future__ import annotations

import sys


def main() -> int:
    if len(sys.argv) > 1:
        from engine.cli import main as cli_main

        return cli_main(sys.argv[1:])
    from gui.app import main as gui_main

    return gui_main()


if __name__ == "__main__":
    sys.exit(main())
