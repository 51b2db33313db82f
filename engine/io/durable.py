"""Small file-system helpers shared by everything that writes or verifies files.

The one home of content digests (sha256 of a file, a stream or bytes) and of hard-link-or-copy:
the provenance sidecars, the mask store, the album queue, downloads, profiles and exported weights
must all agree on what "the same file" means."""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
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

TMP_SUFFIX = ".heirloom-tmp"


def _temp_prefix(path: Path) -> str:
    """Temporary files are named after their target, so a later run can find and remove its own."""
    digest = hashlib.sha1(path.name.encode("utf-8", "surrogateescape")).hexdigest()[:8]
    return f".{path.name[:40]}.{digest}."


def _create_temp(path: Path) -> tuple[Path, int]:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        tmp = path.parent / f"{_temp_prefix(path)}{secrets.token_hex(4)}{TMP_SUFFIX}"
        try:
            return tmp, os.open(tmp, flags, 0o666)  # 0o666 & ~umask, like any new file
        except FileExistsError:
            continue
    raise OSError(f"could not create a temporary file next to {path}")


def write_atomic(path: Path, data_writer: Callable[[BinaryIO], None]) -> None:
    """Write via a temporary file in the target folder, fsync, then rename over ``path``: a crash or a
    full disk leaves either the old file or the complete new one, never half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp, fd = _create_temp(path)
    try:
        with os.fdopen(fd, "wb") as fh:
            data_writer(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_dir(path.parent)


def _write_data(fh: BinaryIO, data: bytes) -> None:
    view = memoryview(data)
    for start in range(0, len(view), 1 << 20):
        fh.write(view[start:start + (1 << 20)])


def write_bytes_atomic(path: Path, data: bytes) -> None:
    write_atomic(path, lambda fh: _write_data(fh, data))


def stale_temps(folder: Path, targets: set[str]) -> list[Path]:
    """Temporary files a killed run left in ``folder`` for the file names in ``targets`` (ours only:
    matched by name, so another job's files in the same folder are left alone). One folder scan."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    prefixes = {_temp_prefix(folder / name) for name in targets}
    cut = 8 + len(TMP_SUFFIX)  # random part + suffix
    return [p for p in folder.iterdir() if p.name.endswith(TMP_SUFFIX) and p.name[:-cut] in prefixes]
