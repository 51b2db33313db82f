"""engine.store.download against a real HTTP server on 127.0.0.1 (resume, restart, cancel, failures)."""

from __future__ import annotations

import hashlib
import http.server
import random
import re
import socket
import threading
from dataclasses import dataclass, field

import pytest
from conftest import FACE_FILES, GLOBAL_FILES, serve_folder

from engine.progress import Cancelled, Progress
from engine.store.download import (
    OFFICIAL_RELEASE_URLS,
    DownloadError,
    download,
    download_path,
    fetch_official,
    part_path,
)
from engine.store.paths import official_dir
from engine.store.weights import ImportedWeights

PAYLOAD = random.Random(20240601).randbytes(300 * 1024)
CHUNK = 16 * 1024


@dataclass
class ServerState:
    """What the handler serves and how it misbehaves; tests flip these fields."""

    payload: bytes = PAYLOAD
    drop_after: int | None = None  # close the connection after this many body bytes, once
    ignore_range: bool = False  # answer 200 with the whole body even when asked for a range
    status: int | None = None  # answer this error status instead (e.g. 404)
    ranges: list[str | None] = field(default_factory=list)  # Range header of every GET, in order


class PayloadServer:
    def __init__(self, state: ServerState, httpd: http.server.ThreadingHTTPServer) -> None:
        self.state = state
        self.httpd = httpd
        self.url = f"http://127.0.0.1:{httpd.server_address[1]}/weights/global_checkpoints.zip"


def make_handler(state: ServerState) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:  # keep pytest output clean
            pass

        def do_GET(self) -> None:
            range_header = self.headers.get("Range")
            state.ranges.append(range_header)
            payload = state.payload
            if state.status is not None:
                self.send_error(state.status)
                return

            start = 0
            match = re.fullmatch(r"bytes=(\d+)-", range_header or "")
            if match and not state.ignore_range:
                start = int(match.group(1))
                if start >= len(payload):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(payload)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(payload) - 1}/{len(payload)}")
            else:
                self.send_response(200)
            body = payload[start:]
            self.send_header("Content-Type", "application/zip")
            self.send_header("Content-Length", str(len(body)))  # always the full length ...
            self.end_headers()
            if state.drop_after is not None:
                cut, state.drop_after = state.drop_after, None
                self.wfile.write(body[:cut])  # ... but deliver only part of it, then hang up
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(body)

    return Handler


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch):
    """A proxy configured in the environment must not swallow requests to 127.0.0.1."""
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.setenv(name, "*")


@pytest.fixture
def server():
    state = ServerState()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), make_handler(state))
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield PayloadServer(state, httpd)
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=2)


def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_full_download_matches_payload_and_reports_progress(server, tmp_path):
    dest = tmp_path / "models" / "global_checkpoints.zip"
    calls: list[tuple[int, int | None]] = []
    result = download(server.url, dest, progress=lambda done, total: calls.append((done, total)),
                      expected_sha256=hashlib.sha256(PAYLOAD).hexdigest().upper(), chunk_size=CHUNK)
    assert result == dest
    assert dest.read_bytes() == PAYLOAD
    assert not part_path(dest).exists()
    assert server.state.ranges == [None]  # fresh download: no Range header
    assert calls[-1] == (len(PAYLOAD), len(PAYLOAD))
    assert all(total == len(PAYLOAD) for _, total in calls)
    assert [done for done, _ in calls] == sorted(done for done, _ in calls)


def test_interrupted_download_keeps_part_then_resumes_with_range(server, tmp_path):
    dest = tmp_path / "global_checkpoints.zip"
    part = part_path(dest)
    assert part == tmp_path / "global_checkpoints.zip.part"
    server.state.drop_after = 100_000

    with pytest.raises(DownloadError, match="interrupted") as info:
        download(server.url, dest, chunk_size=CHUNK)
    assert "again" in str(info.value)
    assert part.exists() and part.stat().st_size == 100_000
    assert not dest.exists()

    calls: list[tuple[int, int | None]] = []
    download(server.url, dest, progress=lambda done, total: calls.append((done, total)), chunk_size=CHUNK)
    assert server.state.ranges == [None, "bytes=100000-"]  # asked for the remaining bytes only
    assert dest.read_bytes() == PAYLOAD
    assert not part.exists()
    assert calls[0] == (100_000, len(PAYLOAD))  # progress starts where the .part left off
    assert calls[-1] == (len(PAYLOAD), len(PAYLOAD))


def test_server_ignoring_range_restarts_from_zero(server, tmp_path):
    dest = tmp_path / "global_checkpoints.zip"
    part_path(dest).write_bytes(b"\xff" * 50_000)  # garbage that must not survive
    server.state.ignore_range = True
    download(server.url, dest, chunk_size=CHUNK)
    assert server.state.ranges == ["bytes=50000-"]
    assert dest.read_bytes() == PAYLOAD
    assert not part_path(dest).exists()


def test_complete_part_answered_416_is_finished_without_transfer(server, tmp_path):
    dest = tmp_path / "global_checkpoints.zip"
    part_path(dest).write_bytes(PAYLOAD)
    download(server.url, dest, expected_sha256=hashlib.sha256(PAYLOAD).hexdigest())
    assert server.state.ranges == [f"bytes={len(PAYLOAD)}-"]
    assert dest.read_bytes() == PAYLOAD
    assert not part_path(dest).exists()


def test_sha256_mismatch_raises_and_leaves_nothing(server, tmp_path):
    dest = tmp_path / "global_checkpoints.zip"
    wrong = "0" * 64
    with pytest.raises(DownloadError) as info:
        download(server.url, dest, expected_sha256=wrong, chunk_size=CHUNK)
    message = str(info.value)
    assert wrong in message and hashlib.sha256(PAYLOAD).hexdigest() in message
    assert not dest.exists()
    assert not part_path(dest).exists()


def test_http_404_is_a_download_error(server, tmp_path):
    dest = tmp_path / "global_checkpoints.zip"
    dest.write_bytes(b"previous good copy")
    server.state.status = 404
    with pytest.raises(DownloadError, match="404") as info:
        download(server.url, dest)
    assert server.url in str(info.value)
    assert dest.read_bytes() == b"previous good copy"  # a failure never touches an existing dest
    assert not part_path(dest).exists()


def test_cancel_from_progress_keeps_part_for_resume(server, tmp_path):
    dest = tmp_path / "global_checkpoints.zip"
    cancel = threading.Event()

    def progress(done: int, total: int | None) -> None:
        if done >= 2 * CHUNK:
            cancel.set()

    with pytest.raises(Cancelled):
        download(server.url, dest, progress=progress, cancel=cancel, chunk_size=CHUNK)
    part = part_path(dest)
    assert part.exists() and 0 < part.stat().st_size < len(PAYLOAD)
    assert not dest.exists()

    kept = part.stat().st_size
    download(server.url, dest, chunk_size=CHUNK)  # a later call picks up where the cancel stopped
    assert server.state.ranges[-1] == f"bytes={kept}-"
    assert dest.read_bytes() == PAYLOAD


def test_cancel_already_set_does_not_connect(server, tmp_path):
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        download(server.url, tmp_path / "x.zip", cancel=cancel)
    assert server.state.ranges == []


def test_unreachable_server_is_a_download_error(tmp_path):
    url = f"http://127.0.0.1:{closed_port()}/global_checkpoints.zip"
    dest = tmp_path / "global_checkpoints.zip"
    with pytest.raises(DownloadError, match="could not reach") as info:
        download(url, dest, timeout=2.0)
    assert url in str(info.value) and "import" in str(info.value)
    assert not dest.exists() and not part_path(dest).exists()


def test_official_release_urls():
    assert set(OFFICIAL_RELEASE_URLS) == {"global", "face"}
    base = "https://github.com/microsoft/Bringing-Old-Photos-Back-to-Life/releases/download/v1.0/"
    assert OFFICIAL_RELEASE_URLS["global"] == base + "global_checkpoints.zip"
    assert OFFICIAL_RELEASE_URLS["face"] == base + "face_checkpoints.zip"


# ---------------------------------------------------------------- fetch_official: the one official path


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("HEIRLOOM_DATA_DIR", str(tmp_path / "userdata"))
    return tmp_path / "userdata"


@pytest.fixture
def official_urls(official_archives):
    """Both official archives served locally, by archive (what ``fetch_official(urls=...)`` takes)."""
    with serve_folder(official_archives) as base:
        yield {archive: f"{base}/{archive}_checkpoints.zip" for archive in OFFICIAL_RELEASE_URLS}


def test_fetch_official_downloads_and_installs_every_official_archive(official_urls, official_archives, data_dir):
    reports: list[tuple[float, str]] = []
    told: list[ImportedWeights] = []
    result = fetch_official(Progress(lambda fraction, message: reports.append((fraction, message))),
                            urls=official_urls, on_imported=told.append)  # default: every archive
    assert result.folder == official_dir()
    assert result.networks == tuple(GLOBAL_FILES) + ("face_256",)
    assert result.describe() == "global weights and face weights (face_256)"
    assert [imported.describe() for imported in told] == ["global weights", "face weights (face_256)"]
    for name, (_, member) in {**GLOBAL_FILES, "face_256": FACE_FILES["face_256"]}.items():
        assert (official_dir() / member).is_file(), name
    for archive in ("global", "face"):  # kept where the CLI and the GUI both look, so either resumes it
        assert download_path(archive).read_bytes() == (official_archives / f"{archive}_checkpoints.zip").read_bytes()
    fractions = [fraction for fraction, _ in reports]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    messages = " | ".join(message for _, message in reports)
    assert "downloading global weights" in messages and "downloading face weights" in messages
    assert "checking and installing face weights" in messages


@pytest.mark.parametrize("stop_in", ["global", "face"])
def test_a_cancelled_fetch_installs_nothing_partial(official_urls, data_dir, stop_in):
    """Cancelled while downloading an archive: the archives before it stay installed, nothing of it
    is (no half-installed folder, no staging left behind, no zip), only its resumable .part."""
    progress = Progress()
    what = f"downloading {stop_in} weights"
    progress.callback = lambda _fraction, message: progress.cancel() if message.startswith(what) else None
    with pytest.raises(Cancelled):
        fetch_official(progress, urls=official_urls)

    assert names_in(official_dir().parent) == (["official"] if stop_in == "face" else [])
    if stop_in == "face":  # the global weights, and not one face file
        installed = sorted(p.relative_to(official_dir()).as_posix() for p in official_dir().rglob("*") if p.is_file())
        assert installed == sorted(member for _, member in GLOBAL_FILES.values())
    kept = ["global_checkpoints.zip"] if stop_in == "face" else []
    assert names_in(download_path("global").parent) == sorted(kept + [part_path(download_path(stop_in)).name])


def names_in(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []
