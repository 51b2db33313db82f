"""Small file-system helpers shared by everything that writes or verifies files.

The one home of content digests (sha256 of a file, a stream or bytes) and of hard-link-or-copy:
the provenance sidecars, the mask store, the album queue, downloads, profiles and exported weights
must all agree on what "the same file" means."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path
from typing import BinaryIO, Callable

HASH_BLOCK = 1 << 20  # bytes read at a time: big scans and weights are hashed without loading them whole


def fsync_dir(folder: Path) -> None:
    """Make a rename inside ``folder`` durable (POSIX); best effort where folders cannot be opened."""
    if os.name != "posix":
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of content already in memory (a decoded photo's file, an encoded output)."""
    return hashlib.sha256(data).hexdigest()


def sha256_stream(stream: BinaryIO, sink: Callable[[bytes], None] | None = None) -> str:
    """Hex sha256 of everything left in ``stream``, read block by block; each block also goes to
    ``sink`` when given, so a copy can be checked without reading the data twice."""
    digest = hashlib.sha256()
    for block in iter(lambda: stream.read(HASH_BLOCK), b""):
        digest.update(block)
        if sink is not None:
            sink(block)
    return digest.hexdigest()


def same_file(a: Path, b: Path) -> bool:
    """True when ``a`` and ``b`` name the same file (links, ``..`` and case-insensitive disks included):
    how every writer checks that it is not about to replace an original photo."""
    a, b = Path(a).expanduser(), Path(b).expanduser()
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.resolve() == b.resolve()


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's content."""
    with open(path, "rb") as handle:
        return sha256_stream(handle)


def link_or_copy(src: Path, dest: Path) -> None:
    """Hard-link ``src`` to ``dest`` (free, and safe for files only ever replaced by rename, never
    rewritten in place, like weights) or, across file systems, copy it."""
    try:
        os.link(src, dest)
    except OSError:
        shutil.copy2(src, dest)
