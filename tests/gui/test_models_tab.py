"""The Models & settings tab: the weights listing, downloading from a local HTTP server (with progress,
cancel and resume), importing, and device/tile/memory settings shared with the Restore tab."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import http.server
import io
import re
import threading
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest

pytest.register_assert_rewrite("gui_fixtures")  # its helpers assert; imported below before pytest loads it

from conftest import FACE_FILES, GLOBAL_FILES, serve_folder
from gui_fixtures import JOB_TIMEOUT_MS, wait_for_listing

import engine.core.plan as plan
import engine.store.catalogue
import engine.store.download
import engine.store.paths
import engine.store.weights
from engine.cli.app import main as cli_main
from engine.models.checkpoints import SafetensorsSource
from engine.store.download import download_path, part_path
from engine.store.paths import official_dir
from engine.store.profiles import ProfileInfo, save_profile
from engine.store.weights import ImportedWeights, import_official

pytest_plugins = ("gui_fixtures",)
pytestmark = pytest.mark.usefixtures("isolated_app")


PAYLOAD = bytes(range(256)) * 1200  # 300 KB


@dataclass
class Served:
    payload: bytes = PAYLOAD
    delay: float = 0.0  # seconds between 16 KB chunks (a slow line, to cancel mid-way)
    ranges: list[str | None] = field(default_factory=list)
    base: str = ""

    @property
    def urls(self) -> dict[str, str]:
        """Both official archives at this server (it serves the same payload whatever the path)."""
        return {archive: f"{self.base}/{archive}_checkpoints.zip" for archive in ("global", "face")}


@pytest.fixture
def server():
    served = Served()

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802 (http.server API)
            header = self.headers.get("Range")
            served.ranges.append(header)
            start = int(re.fullmatch(r"bytes=(\d+)-", header).group(1)) if header else 0
            body = served.payload[start:]
            self.send_response(206 if start else 200)
            if start:
                self.send_header("Content-Range", f"bytes {start}-{len(served.payload) - 1}/{len(served.payload)}")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            try:
                for i in range(0, len(body), 16384):
                    self.wfile.write(body[i:i + 16384])
                    self.wfile.flush()
                    time.sleep(served.delay)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client cancelled

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    served.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        yield served
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=2)


@pytest.fixture
def imported(monkeypatch, tmp_path):
    """Stand-in for import_official behind the download (the payload is no real archive; validating
    real official weights is the other tests' job)."""
    calls: list[tuple[Path, bytes]] = []

    def fake_import(archive: Path) -> ImportedWeights:
        calls.append((Path(archive), Path(archive).read_bytes()))
        target = tmp_path / "userdata" / "weights" / "official"
        target.mkdir(parents=True, exist_ok=True)
        return ImportedWeights(target, ("face_256",) if "face" in Path(archive).name else tuple(GLOBAL_FILES))

    monkeypatch.setattr(engine.store.download, "import_official", fake_import)
    return calls


def row(tab, choice: str):
    return next(r for r in tab.rows if r.choice == choice)


def test_lists_weights_with_what_they_contain(make_window, tiny_weights, qtbot):
    window = make_window()
    tab = window.models_tab
    assert row(tab, "default").status == "Not installed" and row(tab, "official").status == "Not installed"
    assert tab.default_radio.isChecked() and "not installed" in tab.weights_status.text()
    assert tab.table.rowCount() == 2 and "in use" in tab.table.item(0, 0).text()

    tab.custom_edit.setText(str(tiny_weights))
    tab.custom_edit.editingFinished.emit()
    assert window.settings.weights == str(tiny_weights) and tab.custom_radio.isChecked()
    wait_for_listing(qtbot, window)
    custom = row(tab, str(tiny_weights))
    assert custom.ok and custom.status == "Complete", custom.detail
    assert custom.contents == "quality, scratch repair, scratch detection; no HR"
    assert "complete" in tab.weights_status.text()
    assert tab.table.rowCount() == 3 and tab.table.item(2, 2).text() == custom.contents
    assert not window.restore_tab.error_label.isVisible()  # the Restore tab follows the choice

    tab.default_radio.click()
    assert window.settings.weights == "default"
    assert "default weights" in window.restore_tab.error_label.text()


def test_fine_tuned_profiles_are_listed_and_can_be_chosen(make_window, tiny_weights, qtbot):
    save_profile("my album", SafetensorsSource(tiny_weights), {}, ProfileInfo(task="detector", base="default"))
    window = make_window()
    tab = window.models_tab
    profile = row(tab, "profile:my album")
    assert profile.title == "Profile my album" and profile.ok, profile.detail
    assert profile.contents == "quality, scratch repair, scratch detection; no HR"
    assert "detector from default" in profile.detail
    assert tab.profile_radio.isEnabled() and tab.profile_combo.currentText() == "my album"
    tab.profile_combo.activated.emit(0)
    assert window.settings.weights == "profile:my album" and tab.profile_radio.isChecked()
    assert window.weights_label.text() == "Weights: Profile my album"
    assert not window.restore_tab.error_label.isVisible()
    wait_for_listing(qtbot, window)
    tab.table.setCurrentCell(0, 0)  # the default weights' row
    tab.use_button.click()
    assert window.settings.weights == "default" and tab.default_radio.isChecked()


def test_download_from_a_local_server_installs_and_switches_to_official(make_window, server, imported, qtbot):
    window = make_window(download_urls=server.urls)
    tab = window.models_tab
    assert not tab.cancel_button.isEnabled()
    seen = []
    with qtbot.waitSignal(tab.job_done, timeout=JOB_TIMEOUT_MS) as blocker:
        assert tab.start_download()
        assert tab.cancel_button.isEnabled() and not tab.download_button.isEnabled()
        tab._job_runner.task.progress.connect(lambda f, m: seen.append((f, m)))
    assert blocker.args == ["download", "finished"], tab.error_label.text()
    downloads = Path(os.environ["HEIRLOOM_DATA_DIR"]) / "downloads"
    # Both official archives, each whole, then installed: the global weights and the face weights.
    assert imported == [(downloads / "global_checkpoints.zip", PAYLOAD), (downloads / "face_checkpoints.zip", PAYLOAD)]
    assert tab.progress_bar.value() == tab.progress_bar.maximum()
    assert any("of 0.3 MB" in m for _, m in seen)
    assert [f for f, _ in seen] == sorted(f for f, _ in seen)
    # The default weights were missing, so the newly installed official ones are used from now on.
    assert window.settings.weights == "official" and tab.official_radio.isChecked()
    assert "are in use" in tab.job_status.text() and "face weights (face_256)" in tab.job_status.text()
    assert tab.download_button.isEnabled() and not tab.cancel_button.isEnabled()


def test_cancel_a_download_keeps_the_part_and_the_next_one_resumes(make_window, server, imported, qtbot):
    server.delay = 0.05  # about a second for the whole file
    window = make_window(download_urls=server.urls)
    tab = window.models_tab
    with qtbot.waitSignal(tab.job_done, timeout=JOB_TIMEOUT_MS) as blocker:
        assert tab.start_download()
        qtbot.waitUntil(lambda: tab.progress_bar.value() > 0, timeout=JOB_TIMEOUT_MS)
        tab.cancel_button.click()
    assert blocker.args == ["download", "cancelled"]
    assert "resume" in tab.job_status.text() and not imported
    dest = Path(os.environ["HEIRLOOM_DATA_DIR"]) / "downloads" / "global_checkpoints.zip"
    kept = part_path(dest).stat().st_size
    assert 0 < kept < len(PAYLOAD) and not dest.exists()

    server.delay = 0.0
    with qtbot.waitSignal(tab.job_done, timeout=JOB_TIMEOUT_MS) as blocker:
        assert tab.start_download()
    assert blocker.args == ["download", "finished"]
    assert server.ranges[-2:] == [f"bytes={kept}-", None]  # the global zip resumed, then the face zip
    assert imported[0] == (dest, PAYLOAD)


def test_download_installs_the_face_weights_too(make_window, official_archives, qtbot):
    """The real download and import, from a local server holding both official archives."""
    with serve_folder(official_archives) as base:
        window = make_window(download_urls={a: f"{base}/{a}_checkpoints.zip" for a in ("global", "face")})
        tab = window.models_tab
        with qtbot.waitSignal(tab.job_done, timeout=JOB_TIMEOUT_MS) as blocker:
            assert tab.start_download()
    assert blocker.args == ["download", "finished"], tab.error_label.text()
    assert (official_dir() / FACE_FILES["face_256"][1]).is_file()
    assert "global weights and face weights (face_256) are installed" in tab.job_status.text()
    wait_for_listing(qtbot, window)
    official = row(tab, "official")
    assert official.ok and official.faces == ("face_256",), official.detail
    r = tab.rows.index(official)
    assert tab.table.item(r, 1).text() == "Complete" and "faces: face_256" in tab.table.item(r, 1).toolTip()
    assert window.settings.weights == "official"
    options = window.restore_tab.options_panel
    assert options.faces_unavailable is None and options.faces_combo.isEnabled()  # faces can now be refined


def test_cancel_during_the_face_download_says_the_global_weights_were_installed(make_window, server, imported,
                                                                                qtbot):
    server.delay = 0.05
    window = make_window(download_urls=server.urls)
    tab = window.models_tab
    with qtbot.waitSignal(tab.job_done, timeout=JOB_TIMEOUT_MS) as blocker:
        assert tab.start_download()
        qtbot.waitUntil(lambda: tab.job_status.text().startswith("Downloading face weights"), timeout=JOB_TIMEOUT_MS)
        tab.cancel_button.click()
    assert blocker.args == ["download", "cancelled"]
    assert [archive.name for archive, _ in imported] == ["global_checkpoints.zip"]
    assert tab.job_status.text().startswith("Download cancelled; the official global weights were installed, "
                                            "nothing more.")
    assert part_path(download_path("face")).exists() and not download_path("face").exists()
    qtbot.waitUntil(lambda: not tab.refreshing and row(tab, "official").installed, timeout=JOB_TIMEOUT_MS)


def test_cli_listing_and_the_gui_lists_show_the_same_weights(make_window, tiny_weights, official_archives,
                                                              monkeypatch, qtbot):
    """One catalogue: the default weights, the imported official ones and a profile, in every list."""
    monkeypatch.setattr(engine.store.paths, "DEFAULT_WEIGHTS_DIR", tiny_weights)
    import_official(official_archives / "global_checkpoints.zip")
    import_official(official_archives / "face_checkpoints.zip")
    save_profile("my album", SafetensorsSource(tiny_weights), {}, ProfileInfo(task="detector", base="default"))
    out, err = io.StringIO(), io.StringIO()
    assert cli_main(["models"], out=out, err=err) == 0, err.getvalue()
    cli_lines = out.getvalue().splitlines()

    window = make_window()
    tab, bases = window.models_tab, window.train_tab.options.base_combo
    choices = ["default", "official", "profile:my album"]
    assert [r.choice for r in tab.rows] == choices
    assert [bases.itemData(i) for i in range(bases.count())] == choices
    assert len(cli_lines) == len(choices)
    for i, (line, choice) in enumerate(zip(cli_lines, choices)):
        assert line.startswith(f"OK      {choice} ") and tab.table.item(i, 1).text() == "Complete", line
        assert f" {tab.table.item(i, 3).text()}  (" in line  # the same folder
        assert bases.itemText(i).removesuffix(" (in use)") == tab.table.item(i, 0).text().removesuffix("  ✓ in use")
    assert "faces: face_256" in cli_lines[1] and "faces: face_256" in tab.table.item(1, 1).toolTip()
    assert "detector from default" in cli_lines[2] and "detector from default" in tab.table.item(2, 1).toolTip()
    assert [tab.profile_combo.itemText(i) for i in range(tab.profile_combo.count())] == ["my album"]


def test_download_and_import_failures_are_explained(make_window, tmp_path, qtbot):
    window = make_window(download_urls={"global": "http://127.0.0.1:9/nothing-here.zip"})  # port 9: refused
    tab = window.models_tab
    with qtbot.waitSignal(tab.job_done, timeout=JOB_TIMEOUT_MS) as blocker:
        assert tab.start_download()
    assert blocker.args == ["download", "failed"]
    assert tab.error_label.text().startswith("Download failed: could not reach")
    assert "import" in tab.error_label.text()  # the way forward without the network

    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr(GLOBAL_FILES["VAE_A_quality"][1], b"garbage")
    with qtbot.waitSignal(tab.job_done, timeout=JOB_TIMEOUT_MS) as blocker:
        assert tab.start_import(bad)
    assert blocker.args == ["import", "failed"]
    assert "Weights problem: not imported" in tab.error_label.text()
    assert window.settings.weights == "default"


def enter_text(combo, text: str) -> None:
    combo.setCurrentText(text)
    combo.lineEdit().editingFinished.emit()


def test_both_tile_combos_read_sizes_with_the_engine_parser(make_window, monkeypatch):
    """The tile combos of both tabs go through engine.core.plan.parse_tile, the parser of --tile and of
    RestoreOptions: its rule decides what is refused, not a copy of it in the GUI."""
    window = make_window()
    combos = (window.models_tab.tile_combo, window.restore_tab.options_panel.tile_combo)
    for combo, other in (combos, combos[::-1]):
        enter_text(combo, " AUTO ")
        assert window.settings.tile == "auto" and other.currentText() == "auto"
        enter_text(combo, "1024")
        assert window.settings.tile == 1024 and other.currentText() == "1024"
        with monkeypatch.context() as patched:
            patched.setattr(plan, "MIN_TILE", 1024)  # the engine's rule (the saved 1024 still passes it)
            enter_text(combo, "512")  # refused by that rule: back to the last valid size
            assert window.settings.tile == 1024 and combo.currentText() == "1024"
    assert "at least 64" in combos[0].toolTip() and combos[0].toolTip() == combos[1].toolTip()


def test_device_tile_memory_and_output_folder_are_settings_shared_with_the_restore_tab(make_window, tmp_path):
    window = make_window()
    tab, options = window.models_tab, window.restore_tab.options_panel
    texts = [tab.device_combo.itemText(i) for i in range(tab.device_combo.count())]
    assert texts[0].startswith("Automatic") and "8.0 GB, 4.0 GB free" in texts[1]
    tab.device_combo.setCurrentIndex(0)
    assert window.settings.device == "auto" and options.device_combo.currentData() == "auto"
    options.device_combo.setCurrentIndex(options.device_combo.findData("cpu"))
    assert tab.device_combo.currentData() == "cpu"
    tab.tile_combo.setCurrentText("1024")
    tab.tile_combo.lineEdit().editingFinished.emit()
    assert window.settings.tile == 1024 and options.tile_combo.currentText() == "1024"
    tab.tile_combo.setCurrentText("12")  # too small: back to the last valid value
    tab.tile_combo.lineEdit().editingFinished.emit()
    assert window.settings.tile == 1024 and tab.tile_combo.currentText() == "1024"
    tab.memory_spin.setValue(2.0)
    assert window.restore_tab.options_panel.options(0.4, 0).max_memory_gb == 2.0
    tab.memory_spin.setValue(0.0)
    assert window.settings.max_memory_gb is None and tab.memory_spin.text() == "Automatic"
    window.settings.output_folder = tmp_path / "restored"
    assert tab.output_edit.text() == str(tmp_path / "restored")
    window.restore_tab.image_path = tmp_path / "a.png"
    assert window.restore_tab.default_save_path() == tmp_path / "restored" / "a_restored.png"
    tab.output_reset_button.click()
    assert window.settings.output_folder is None


def test_the_tab_says_which_backend_and_precision_run_and_the_choice_reaches_the_restore(make_window):
    window = make_window()
    tab = window.models_tab
    window.settings.device = "cpu"
    line = tab.runtime_label.text()
    assert line.startswith("PyTorch ") and "CPU" in line and "instructions" in line
    assert line.endswith("precision float32 (exact)")
    assert tab.precision_combo.currentData() == "fp32"
    assert window.restore_tab.options_panel.options(0.4, 0).precision == "fp32"
    tab.precision_combo.setCurrentIndex(tab.precision_combo.findData("bf16"))
    assert window.settings.precision == "bf16"
    assert window.restore_tab.options_panel.options(0.4, 0).precision == "bf16"
    assert tab.runtime_label.text().endswith("precision bfloat16")
    tab.precision_combo.setCurrentIndex(tab.precision_combo.findData("fp16"))  # GPU only: the line says why
    assert "not usable: fp16 is for GPUs" in tab.runtime_label.text()
