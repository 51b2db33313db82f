"""Resumable, atomic download of model files (HTTP through the standard library alone).

The official checkpoints are large zip files fetched over connections that may drop, so:

* **Resume.** Bytes are streamed into ``<dest>.part`` beside the destination. If that file is
  already there (an earlier attempt was interrupted or cancelled), the next call asks the server
  for the remaining bytes only (``Range: bytes=N-``) and appends them. A server that ignores the
  range (answers 200) makes us start again from zero; one that answers 416 for a ``.part`` that
  already holds the whole file lets us finish without downloading anything.
* **Atomic.** ``dest`` itself is only ever created by ``os.replace`` of a complete, optionally
  sha256-verified, fsynced ``.part``. A crash, a cancel or a network failure therefore leaves either
  the old ``dest`` (or none) plus a ``.part`` to resume from, never a half-written ``dest``.

Failures raise :class:`DownloadError` whose message says what to do next; a cancel raises
:class:`engine.progress.Cancelled`. This module never imports Qt.

:func:`fetch_official` is the one way every front end gets the official weights: each official zip
downloaded as above into the user data directory, then validated and installed by
:func:`engine.store.weights.import_official`.
"""

from __future__ import annotations

import http.client
import os
import re
import threading
import urllib.error
import urllib.request
from contextlib import suppress
from pathlib import Path
from typing import Callable, Mapping, Sequence

from engine.io.durable import fsync_dir, sha256_file
from engine.progress import Cancelled, Progress
from engine.store.paths import official_dir, user_data_dir
from engine.store.weights import ImportedWeights, import_official

__all__ = ["DownloadError", "OFFICIAL_RELEASE_URLS", "download", "download_path", "fetch_official", "part_path"]

OFFICIAL_RELEASE_URLS: dict[str, str] = {
    "global": "https://github.com/microsoft/Bringing-Old-Photos-Back-to-Life/releases/download/v1.0/"
              "global_checkpoints.zip",
    "face": "https://github.com/microsoft/Bringing-Old-Photos-Back-to-Life/releases/download/v1.0/"
            "face_checkpoints.zip",
}

ARCHIVE_NAMES = {"global": "global weights", "face": "face weights"}  # how progress messages name them
INSTALL_SHARE = 0.05  # of each archive's slice of the progress: checking and installing after the download

# Shown in messages so the user always has a way forward without the network.
MANUAL_IMPORT_HINT = "download the file by hand and import it with `python main.py models import PATH`"
RESUME_HINT = "run the same command again to resume where it stopped"
USER_AGENT = "Heirloom/0.1 (+urllib)"

ProgressFn = Callable[[int, int | None], None]

_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$", re.IGNORECASE)
_UNSATISFIED_RANGE = re.compile(r"^\s*bytes\s+\*/(\d+)\s*$", re.IGNORECASE)


class DownloadError(Exception):
    """A download failed; the message names the cause and what the user can do about it."""


def part_path(dest: Path) -> Path:
    """The partial file a download of ``dest`` streams into (and resumes from)."""
    dest = Path(dest)
    return dest.with_name(dest.name + ".part")


def download_path(archive: str) -> Path:
    """Where an official archive (``"global"`` or ``"face"``) is downloaded to; the same file for every
    front end, so a download cancelled in one resumes in another."""
    return user_data_dir() / "downloads" / f"{archive}_checkpoints.zip"


def fetch_official(
    progress: Progress,
    archives: Sequence[str] = tuple(OFFICIAL_RELEASE_URLS),
    urls: Mapping[str, str] | None = None,
    on_imported: Callable[[ImportedWeights], None] | None = None,
) -> ImportedWeights:
    """Download every official archive in ``archives`` (global and face weights by default), resuming
    partial downloads, then validate and install each; returns everything installed.

    ``urls`` replaces the release address of an archive (mirrors, tests). Each archive is installed as
    soon as it is complete, so a later failure or cancel keeps what came before; ``on_imported`` is
    told of each. A cancel (``progress``'s event) raises :class:`Cancelled` and never leaves weights
    half-installed: only the resumable ``.part`` of the archive being downloaded stays.
    """
    installed: list[ImportedWeights] = []
    for index, archive in enumerate(archives):
        url = (urls or {}).get(archive) or OFFICIAL_RELEASE_URLS[archive]
        result = _fetch_archive(archive, url, progress.sub(index / len(archives), 1 / len(archives)))
        installed.append(result)
        if on_imported is not None:
            on_imported(result)
    with suppress(Cancelled):  # everything is installed: a cancel arriving now changes nothing
        progress.report(1.0, "installed")
    return ImportedWeights(official_dir(), tuple(name for result in installed for name in result.networks))


def _fetch_archive(archive: str, url: str, progress: Progress) -> ImportedWeights:
    """One archive: download into this slice of ``progress``, then check and install it."""
    what = ARCHIVE_NAMES[archive]

    def report(done: int, total: int | None) -> None:
        if total:
            progress.report((1 - INSTALL_SHARE) * done / total,
                            f"downloading {what}, {done / 2**20:.1f} of {total / 2**20:.1f} MB")
        else:
            progress.report(0.0, f"downloading {what}, {done / 2**20:.1f} MB")

    progress.check()
    dest = download(url, download_path(archive), progress=report, cancel=progress.cancel_event)
    progress.report(1 - INSTALL_SHARE, f"checking and installing {what}")
    return import_official(dest)  # not interrupted by a cancel: it installs all of the archive or nothing


def download(
    url: str,
    dest: Path,
    progress: ProgressFn | None = None,
    cancel: threading.Event | None = None,
    expected_sha256: str | None = None,
    timeout: float = 30.0,
    chunk_size: int = 1 << 16,
) -> Path:
    """Download ``url`` to ``dest``, resuming a previous ``.part`` if there is one; returns ``dest``.

    ``progress(bytes_done, total_or_None)`` is called once the server has answered (with the bytes
    already on disk) and after every chunk. ``cancel`` is checked between chunks; when set,
    :class:`Cancelled` is raised and the ``.part`` is kept for a later resume. ``timeout`` applies
    to connecting and to each read.
    """
    dest = Path(dest)
    part = part_path(dest)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DownloadError(f"could not create the folder {dest.parent}: {exc}") from exc
    _check_cancel(cancel)

    # At most one restart: a .part the server cannot extend (416 with a different size, or a 206
    # for the wrong offset) is discarded and the file fetched from zero.
    for _attempt in range(2):
        offset = part.stat().st_size if part.exists() else 0
        if _fetch(url, part, offset, progress, cancel, timeout, chunk_size):
            break
        part.unlink(missing_ok=True)
    else:
        raise DownloadError(f"the server at {url} kept refusing to resume the download; "
                            f"delete {part} and try again, or {MANUAL_IMPORT_HINT}")

    _finish(url, part, dest, expected_sha256)
    return dest


def _check_cancel(cancel: threading.Event | None) -> None:
    if cancel is not None and cancel.is_set():
        raise Cancelled("download cancelled by the user")


def _open(url: str, offset: int, timeout: float) -> http.client.HTTPResponse:
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    # A fresh opener per call (not urlopen's cached one) so proxy settings are read now.
    return urllib.request.build_opener().open(request, timeout=timeout)


def _fetch(url: str, part: Path, offset: int, progress: ProgressFn | None,
           cancel: threading.Event | None, timeout: float, chunk_size: int) -> bool:
    """Bring ``part`` up to the full file. False means "discard the .part and start over"."""
    try:
        response = _open(url, offset, timeout)
    except urllib.error.HTTPError as exc:
        _close_quietly(exc)
        if exc.code == 416 and offset:
            match = _UNSATISFIED_RANGE.match((exc.headers or {}).get("Content-Range", "") or "")
            if match and int(match.group(1)) == offset:
                if progress is not None:
                    progress(offset, offset)
                return True  # the .part already holds the whole file
            return False
        raise DownloadError(_http_message(url, exc.code, exc.reason)) from exc
    except urllib.error.URLError as exc:
        raise DownloadError(f"could not reach {url}: {exc.reason}; check the network connection "
                            f"or {MANUAL_IMPORT_HINT}") from exc
    except (OSError, http.client.HTTPException) as exc:
        raise DownloadError(f"could not reach {url}: {_describe(exc)}; check the network "
                            f"connection or {MANUAL_IMPORT_HINT}") from exc

    with response:
        status = response.status
        length = response.headers.get("Content-Length")
        length = int(length) if length and length.strip().isdigit() else None
        if status == 206:
            match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
            if not match or int(match.group(1)) != offset:
                return False  # not the bytes we asked for: cannot append safely
            done = offset
            if match.group(3) != "*":
                total: int | None = int(match.group(3))
            else:
                total = offset + length if length is not None else None
            mode = "ab"
        elif 200 <= status < 300:
            done, total, mode = 0, length, "wb"  # full body (server ignored Range): restart
        else:
            raise DownloadError(_http_message(url, status, response.reason))

        try:
            with open(part, mode) as out:
                if progress is not None:
                    progress(done, total)
                while True:
                    _check_cancel(cancel)
                    try:
                        chunk = response.read(chunk_size)
                    except (OSError, http.client.HTTPException) as exc:
                        raise DownloadError(_interrupted_message(url, part, done, total, exc)) from exc
                    if not chunk:
                        break
                    out.write(chunk)
                    done += len(chunk)
                    if progress is not None:
                        progress(done, total)
        except OSError as exc:  # disk full, permission denied, ...
            raise DownloadError(f"could not write {part}: {exc}; free some disk space or choose "
                                f"another folder, then {RESUME_HINT}") from exc

    if total is not None and done < total:
        raise DownloadError(_interrupted_message(url, part, done, total))
    if total is not None and done > total:
        part.unlink(missing_ok=True)
        raise DownloadError(f"the server at {url} sent {done} bytes but announced {total}; the partial "
                            f"file was deleted. Try again later, or {MANUAL_IMPORT_HINT}")
    return True


def _finish(url: str, part: Path, dest: Path, expected_sha256: str | None) -> None:
    """Verify, flush to disk and move the complete ``part`` onto ``dest`` in one atomic step."""
    if expected_sha256:
        expected = expected_sha256.strip().lower()
        actual = sha256_file(part)
        if actual != expected:
            part.unlink(missing_ok=True)
            raise DownloadError(f"the file downloaded from {url} is not the expected one: its sha256 is "
                                f"{actual}, expected {expected}. The partial file was deleted; try again "
                                f"later, or {MANUAL_IMPORT_HINT}")
    try:
        with open(part, "ab") as handle:  # a writable handle: Windows cannot flush a read-only one
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(part, dest)
    except OSError as exc:
        raise DownloadError(f"could not move the downloaded file into place at {dest}: {exc}; close any "
                            f"program using it, then {RESUME_HINT}") from exc
    fsync_dir(dest.parent)


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def _close_quietly(response: object) -> None:
    """Close an HTTPError's body; one built without a body cannot be closed and needs nothing."""
    try:
        response.close()  # type: ignore[attr-defined]
    except Exception:
        pass


def _http_message(url: str, code: int, reason: object) -> str:
    text = f"the server answered HTTP {code} {reason} for {url}"
    if code == 404:
        return f"{text}; the file is not (or no longer) at that address, {MANUAL_IMPORT_HINT}"
    if code in (401, 403):
        return f"{text}; access was refused, {MANUAL_IMPORT_HINT}"
    return f"{text}; try again later, or {MANUAL_IMPORT_HINT}"


def _interrupted_message(url: str, part: Path, done: int, total: int | None,
                         cause: BaseException | None = None) -> str:
    got = f"{done} of {total} bytes" if total is not None else f"{done} bytes"
    why = f" ({_describe(cause)})" if cause is not None else ""
    return (f"the download of {url} was interrupted after {got}{why}; the partial file {part} was kept, "
            f"{RESUME_HINT}")
