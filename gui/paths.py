"""Path helpers shared by the tabs: the one rule that an original photo is never written to."""

from __future__ import annotations

import os
from pathlib import Path


def same_file(a: Path, b: Path) -> bool:
    """True when ``a`` and ``b`` name the same file (links, ``..`` and case-insensitive disks included)."""
    a, b = Path(a).expanduser(), Path(b).expanduser()
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.resolve() == b.resolve()
