"""Heirloom entry point.

    python main.py                       the app
    python main.py PHOTO_OR_FOLDER...    the app, with the photo open (or the folders queued)
    python main.py --screenshot FILE.png [--tab restore|queue|train|models] [PHOTO]
    python main.py restore|models|train|finetune|profiles|sample ...   headless command line (see engine.cli.app)
    python main.py --version             print the version and exit (without loading PyTorch or Qt)
"""

from __future__ import annotations

import sys
from pathlib import Path

GUI_OPTIONS = ("--screenshot", "--tab")
CLI_COMMANDS = ("restore", "models", "train", "finetune", "profiles", "sample")


def wants_cli(args: list[str]) -> bool:
    """Command words and other options go to the command line; the app takes paths (file
    associations and "Open with" pass the photo as the only argument) and its own options."""
    if not args:
        return False
    first = args[0]
    if first in CLI_COMMANDS:
        return True
    if first.startswith(GUI_OPTIONS):
        return False
    return first.startswith("-") or not Path(first).exists()


def main() -> int:
    args = sys.argv[1:]
    if args == ["--version"]:  # the installer's smoke test and support questions: answer at once
        from engine import __version__

        print(f"Heirloom {__version__}")
        return 0
    if wants_cli(args):
        from engine.cli.app import main as cli_main

        return cli_main(args)
    from gui.app import main as gui_main

    return gui_main(args)


if __name__ == "__main__":
    sys.exit(main())
