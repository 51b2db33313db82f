"""Guards against Qt bindings that corrupt the interpreter (seen with PySide6 6.12.0 on CPython
3.11: each call of a method returning void lost a reference to None, and the app aborted with
"none_dealloc" after a few thousand repaints)."""

import subprocess
import sys

PROBE = """
import sys
from PySide6.QtCore import QRect
rect = QRect()
before = sys.getrefcount(None)
for _ in range(1000):
    rect.setX(1)
print(before - sys.getrefcount(None))
"""


def test_void_qt_calls_keep_none_alive() -> None:
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert abs(int(done.stdout.strip())) < 50, "the installed PySide6 leaks references to None; see pyproject.toml"
