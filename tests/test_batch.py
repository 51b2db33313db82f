"""A batch that never loses work: a corpus of bad and unusual files, resume after kill -9, shards,
provenance sidecars, full disks and read-only folders."""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import signal
import struct
import subprocess
import sys
import time
import zipfile
import zlib
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch
from conftest import GLOBAL_FILES, ROOT, RecipeSource, bank_for, recipe_state
from PIL import Image
from test_imageio import GREY_ICC

from engine.cli.app import main
from engine.core.pipeline import RestoreOptions, Restorer, RestoreResult, as_float_rgb
from engine.io import decode as io_decode
from engine.io import durable as io_durable
from engine.io.durable import sha256_file
from engine.jobs import batch
from engine.jobs.batch import BatchConfig, parse_shard, plan, run
from engine.models.checkpoints import OfficialSource, save_state_dicts
from engine.store.provenance import WeightHashes, sidecar_path

RNG = np.random.default_rng(11)
QUALITY_NETWORKS = ("VAE_A_quality", "mapping_quality", "VAE_B_quality")


@pytest.fixture(autouse=True)
def data_dir(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("HEIRLOOM_DATA_DIR", str(tmp_path / "userdata"))
    return tmp_path / "userdata"


@pytest.fixture(scope="module")
def restorer() -> Restorer:
    return Restorer(bank_for())


class FakeRestorer:
    """Stands in for the networks where a test is about the batch, not the restoration: the
    'restored' photo is the photo inverted, the detected damage one row."""

    def __init__(self) -> None:
        self.bank = SimpleNamespace(source=RecipeSource({}))
        self.device = torch.device("cpu")
        self.calls: list[np.ndarray] = []

    def prepare(self, options: RestoreOptions, has_user_mask: bool = False) -> None:
        pass

    def restore(self, image, options=RestoreOptions(), user_mask=None, progress=None) -> RestoreResult:
        self.calls.append(np.array(image))
        rgb = as_float_rgb(image)
        holes = None
        if options.detect:
            holes = np.zeros(rgb.shape[:2], bool)
            holes[0] = True
        if user_mask is not None:
            holes = user_mask if holes is None else holes | user_mask
        return RestoreResult(1.0 - rgb, options.mode(user_mask is not None), holes, None, {"restoration": 0.0},
                             brushed=user_mask is not None)


def run_batch(restorer, inputs, outdir, **kwargs) -> tuple[int, str, str]:
    config = BatchConfig(inputs=tuple(str(p) for p in inputs), outdir=Path(outdir), **kwargs)
    out, err = io.StringIO(), io.StringIO()
    code = run(config, out, err, restorer=restorer)
    return code, out.getvalue(), err.getvalue()


def cli(*argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main([str(a) for a in argv], out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def tree(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): digest(p) for p in sorted(folder.rglob("*")) if p.is_file()}


def photo(path: Path, size=(32, 24)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(RNG.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return path


# ------------------------------------------------------------------------------------ corpus


def truncated(path: Path, fmt: str) -> None:
    buf = io.BytesIO()
    Image.fromarray(RNG.integers(0, 256, (48, 48, 3), dtype=np.uint8)).save(buf, format=fmt)
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])


def bomb_png(width: int = 50000, height: int = 50000) -> bytes:
    """A 60-byte PNG whose header claims 2.5 gigapixels (a decompression bomb's calling card)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IEND", b""))


def build_corpus(folder: Path) -> dict[str, tuple[str, str]]:
    """The issue's corpus, generated here. Returns name -> (expected status, expected text or output)."""
    folder.mkdir(parents=True)
    (folder / "empty.png").write_bytes(b"")
    truncated(folder / "truncated_png.png", "PNG")
    truncated(folder / "truncated_jpg.jpg", "JPEG")
    (folder / "notes.jpg").write_text("These are my notes about the album, not a photo.\n")
    (folder / "bomb.png").write_bytes(bomb_png())
    Image.new("CMYK", (32, 24), (20, 160, 40, 10)).save(folder / "cmyk.jpg")
    cv2.imwrite(str(folder / "rgb16.png"), RNG.integers(0, 65536, (24, 32, 3)).astype(np.uint16))
    cv2.imwrite(str(folder / "rgb16.tif"), RNG.integers(0, 65536, (24, 32, 3)).astype(np.uint16),
                [cv2.IMWRITE_TIFF_XDPI, 300, cv2.IMWRITE_TIFF_YDPI, 300, cv2.IMWRITE_TIFF_RESUNIT, 2])
    exif = Image.Exif()
    exif[271], exif[315] = "ScanCo", "Family archive"
    exif[0x8769] = {0x9003: "1923:05:01 10:00:00"}
    Image.fromarray(RNG.integers(0, 65536, (24, 32)).astype(np.uint16)).save(
        folder / "grey16.tif", dpi=(1200, 1200), icc_profile=GREY_ICC, exif=exif.tobytes())
    pal = Image.fromarray(RNG.integers(0, 4, (24, 32), dtype=np.uint8), "P")
    pal.putpalette([255, 255, 255, 180, 40, 40, 40, 180, 40, 40, 40, 180] + [0] * 756)
    pal.save(folder / "palette.png", transparency=0)
    grey_alpha = np.dstack([RNG.integers(0, 256, (24, 32), dtype=np.uint8),
                            RNG.integers(0, 256, (24, 32), dtype=np.uint8)])
    Image.fromarray(grey_alpha, "LA").save(folder / "grey_alpha.png")
    rotated = Image.Exif()
    rotated[0x0112] = 6
    Image.fromarray(RNG.integers(0, 256, (24, 40, 3), dtype=np.uint8)).save(folder / "rotated.jpg", exif=rotated)
    photo(folder / "Großmutter am See – 1923.png")
    pages = [Image.fromarray(RNG.integers(0, 256, (24, 32, 3), dtype=np.uint8)) for _ in range(3)]
    pages[0].save(folder / "pages.tif", save_all=True, append_images=pages[1:])
    photo(folder / "bmp_photo.bmp")
    Image.fromarray(RNG.integers(0, 256, (24, 32, 3), dtype=np.uint8)).save(folder / "webp_photo.webp", lossless=True)
    return {
        "empty.png": ("FAILED", "empty file (0 bytes)"),
        "truncated_png.png": ("FAILED", "damaged or truncated image"),
        "truncated_jpg.jpg": ("FAILED", "damaged or truncated image"),
        "notes.jpg": ("FAILED", "not an image file"),
        "bomb.png": ("FAILED", "run again with --allow-huge"),
        "cmyk.jpg": ("OK", "cmyk.png"),
        "rgb16.png": ("OK", "rgb16.png"),
        "rgb16.tif": ("OK", "rgb16.tif"),
        "grey16.tif": ("OK", "grey16.tif"),
        "palette.png": ("OK", "palette.png"),
        "grey_alpha.png": ("OK", "grey_alpha.png"),
        "rotated.jpg": ("OK", "rotated.png"),
        "Großmutter am See – 1923.png": ("OK", "Großmutter am See – 1923.png"),
        "pages.tif": ("OK", "pages.tif"),
        "bmp_photo.bmp": ("OK", "bmp_photo.png"),
        "webp_photo.webp": ("OK", "webp_photo.png"),
    }


class Spy:
    """The real restorer, recording what the networks were given."""

    def __init__(self, inner: Restorer) -> None:
        self.inner, self.inputs = inner, []

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def restore(self, image, *args, **kwargs):
        self.inputs.append(np.array(image))
        return self.inner.restore(image, *args, **kwargs)


def test_the_corpus_gets_one_clear_result_per_file_and_originals_stay_intact(tmp_path, restorer):
    corpus = tmp_path / "Fotos der Familie (é)"
    expected = build_corpus(corpus)
    before = tree(corpus)
    spy = Spy(restorer)
    code, out, err = run_batch(spy, [corpus], tmp_path / "out")
    assert code == 1
    lines = out.strip().splitlines()
    for name, (status, detail) in expected.items():
        mine = [line for line in lines if line.split(" ", 1)[1].startswith(str(corpus / name))]
        assert len(mine) == 1, (name, out)
        assert mine[0].startswith(f"{status} {corpus / name}"), mine[0]
        if status == "FAILED":
            assert detail in mine[0], mine[0]
        else:
            assert mine[0].endswith(")") and f"-> {tmp_path / 'out' / detail} " in mine[0], mine[0]
    failed = sum(s == "FAILED" for s, _ in expected.values())
    assert lines[-1].startswith(f"done: {len(expected) - failed}, failed: {failed}, skipped: 0 in ")
    assert tree(corpus) == before  # originals' bytes unchanged

    out_dir = tmp_path / "out"
    made = sorted(p.name for p in out_dir.iterdir())
    wanted = sorted([d for s, d in expected.values() if s == "OK"] +
                    [d + ".heirloom.json" for s, d in expected.values() if s == "OK"])
    assert made == wanted  # no partial files, nothing for the failures
    for name, (status, output) in expected.items():
        if status == "OK":
            record = json.loads(sidecar_path(out_dir / output).read_text(encoding="utf-8"))
            assert record["input"]["sha256"] == before[name] and record["output"]["sha256"] == digest(out_dir / output)

    # per-case checks of what was written
    def pil(name):
        return Image.open(out_dir / name)

    assert pil("cmyk.png").mode == "RGB"
    assert any("CMYK" in w for w in json.loads(sidecar_path(out_dir / "cmyk.png").read_text())["warnings"])
    for name in ("rgb16.png", "rgb16.tif"):
        back = cv2.imread(str(out_dir / name), cv2.IMREAD_UNCHANGED)
        assert back.dtype == np.uint16 and back.shape == (24, 32, 3), name
        assert (back % 257).any(), name  # real 16-bit values, not 8-bit ones scaled up
        source = cv2.imread(str(corpus / name), cv2.IMREAD_UNCHANGED)[..., ::-1]
        assert any(x.dtype == np.uint16 and np.array_equal(x, source) for x in spy.inputs), name
    assert pil("rgb16.tif").info["dpi"] == (300, 300)
    with pil("grey16.tif") as im:
        assert im.mode == "I;16" and im.info["dpi"] == (1200, 1200) and im.info["icc_profile"] == GREY_ICC
        assert im.tag_v2[271] == "ScanCo" and im.getexif().get_ifd(0x8769)[0x9003] == "1923:05:01 10:00:00"
    with pil("palette.png") as im, Image.open(corpus / "palette.png") as src:
        assert im.mode == "RGBA"
        assert np.array_equal(np.asarray(im)[..., 3], np.asarray(src.convert("RGBA"))[..., 3])
    with pil("grey_alpha.png") as im, Image.open(corpus / "grey_alpha.png") as src:
        assert im.mode == "LA" and np.array_equal(np.asarray(im)[..., 1], np.asarray(src)[..., 1])
    with pil("rotated.png") as im:
        assert im.size == (24, 40) and im.getexif().get(0x0112, 1) == 1
    assert "only the first was restored" in err and "pages.tif" in err


def test_a_full_disk_fails_that_photo_cleanly_and_the_batch_goes_on(tmp_path, monkeypatch):
    inputs = [photo(tmp_path / "in" / f"{n}.png") for n in ("a", "victim", "c")]
    real = batch.write_bytes_atomic

    def full_disk_for_victim(path: Path, data: bytes) -> None:
        if Path(path).name == "victim.png":
            def half_then_enospc(fh):
                fh.write(data[: len(data) // 2])
                fh.flush()
                raise OSError(errno.ENOSPC, "No space left on device")
            return io_durable.write_atomic(path, half_then_enospc)
        return real(path, data)

    monkeypatch.setattr(batch, "write_bytes_atomic", full_disk_for_victim)
    code, out, _ = run_batch(FakeRestorer(), inputs, tmp_path / "out")
    assert code == 1
    assert f"FAILED {inputs[1]}: cannot write {tmp_path / 'out' / 'victim.png'}: disk full" in out
    assert f"OK {inputs[0]}" in out and f"OK {inputs[2]}" in out
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "a.png", "a.png.heirloom.json", "c.png", "c.png.heirloom.json"]


def test_a_read_only_output_folder_fails_each_photo_clearly(tmp_path, monkeypatch):
    inputs = [photo(tmp_path / "in" / f"{n}.png") for n in ("a", "b")]
    before = tree(tmp_path / "in")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        (locked / ".probe").write_bytes(b"")
        (locked / ".probe").unlink()
        writable_anyway = True  # root ignores folder permissions: simulate what a normal user would get
    except PermissionError:
        writable_anyway = False
    if writable_anyway:
        real = io_durable._create_temp

        def refuse(path: Path):
            if Path(path).parent == locked:
                raise PermissionError(errno.EACCES, "Permission denied", str(path))
            return real(path)

        monkeypatch.setattr(io_durable, "_create_temp", refuse)
    try:
        code, out, _ = run_batch(FakeRestorer(), inputs, locked)
    finally:
        locked.chmod(0o755)
    assert code == 1
    for src in inputs:
        assert f"FAILED {src}: cannot write {locked / (src.stem + '.png')}: permission denied" in out
    assert "done: 0, failed: 2, skipped: 0" in out
    assert list(locked.iterdir()) == [] and tree(tmp_path / "in") == before


# ------------------------------------------------------------------------------ provenance


def test_sidecar_records_mask_source_and_file(tmp_path):
    src = photo(tmp_path / "p.png")
    mask = np.zeros((24, 32), np.uint8)
    mask[5:7] = 255
    Image.fromarray(mask).save(tmp_path / "m.png")
    cases = [({"options": RestoreOptions(scratch=True)}, "detected"),
             ({"mask": tmp_path / "m.png"}, "brushed"),
             ({"options": RestoreOptions(scratch=True), "mask": tmp_path / "m.png"}, "both"),
             ({}, None)]
    for i, (kwargs, source) in enumerate(cases):
        code, out, _ = run_batch(FakeRestorer(), [src], tmp_path / f"out{i}", save_mask=True, **kwargs)
        assert code == 0, out
        record = json.loads(sidecar_path(tmp_path / f"out{i}" / "p.png").read_text())
        assert record["mask"]["source"] == source
        brushed = "mask" in kwargs
        assert record["mask"]["file"] == (str((tmp_path / "m.png").resolve()) if brushed else None)
        assert record["mask"]["file_sha256"] == (digest(tmp_path / "m.png") if brushed else None)
        assert (record["mask"]["saved"] is not None) == (source is not None)
        assert record["tile"] is None and record["device"]["device"] == "cpu"
        assert record["options"]["restore"]["scratch"] == ("options" in kwargs)


def test_save_never_writes_over_the_original_and_writes_the_image_it_is_given(tmp_path):
    """PhotoProcessor.save, the one save path (CLI, album queue, Restore tab), refuses the photo
    itself under any spelling, and writes the image shown when it differs from the result."""
    src = photo(tmp_path / "p.png")
    restorer = FakeRestorer()
    processor = batch.PhotoProcessor(BatchConfig(inputs=(), outdir=tmp_path, argv=("test",)), restorer)
    picture = io_decode.read_photo(src)
    result = restorer.restore(picture.pixels)
    before = src.read_bytes()
    with pytest.raises(batch.WouldOverwriteOriginal, match="original"):
        processor.save(picture, result, tmp_path / "sub" / ".." / "p.png", "png")
    assert src.read_bytes() == before and not sidecar_path(src).exists()

    shown = np.zeros_like(result.image)  # e.g. faces switched off in the Restore tab
    written = processor.save(picture, result, tmp_path / "out" / "p.png", "png", image=shown)
    with Image.open(tmp_path / "out" / "p.png") as saved:
        assert not np.asarray(saved).any()
    record = json.loads(sidecar_path(tmp_path / "out" / "p.png").read_text())
    assert record["output"]["sha256"] == written.sha256 == digest(tmp_path / "out" / "p.png")
    assert record["input"]["sha256"] == digest(src) and record["command"] == ["test"]


def test_weight_hashes_cover_zip_members_and_are_computed_once(tmp_path, monkeypatch):
    member = GLOBAL_FILES["VAE_A_quality"][1]
    with zipfile.ZipFile(tmp_path / "w.zip", "w") as zf:
        zf.writestr(member, b"weights bytes")
    hashes = WeightHashes(OfficialSource(tmp_path / "w.zip"))
    calls = []
    real = hashes._hash
    monkeypatch.setattr(hashes, "_hash", lambda loc: calls.append(loc) or real(loc))
    for _ in range(3):
        got = hashes.describe(["VAE_A_quality"])
    assert got["VAE_A_quality"]["sha256"] == hashlib.sha256(b"weights bytes").hexdigest()
    assert len(calls) == 1


# ---------------------------------------------------------------------------------- resume


def test_resume_skips_finished_photos_and_redoes_missing_ones(tmp_path):
    inputs = [photo(tmp_path / "in" / f"{n}.png") for n in ("a", "b", "c")]
    out_dir = tmp_path / "out"
    fake = FakeRestorer()
    assert run_batch(fake, [tmp_path / "in"], out_dir)[0] == 0
    first = {p.name: p.stat().st_mtime_ns for p in out_dir.iterdir()}
    (out_dir / "b.png").unlink()
    os.utime(out_dir / "c.png", ns=(1, 1))  # touched, same bytes: the recorded sha256 still vouches for it
    fake.calls.clear()
    code, out, err = run_batch(fake, [tmp_path / "in"], out_dir, resume=True)
    assert code == 0 and "resuming: 3 of 3" in err
    assert out.count("already restored in an earlier run") == 2 and f"OK {inputs[1]}" in out
    assert len(fake.calls) == 1
    assert (out_dir / "a.png").stat().st_mtime_ns == first["a.png"]
    assert out.strip().splitlines()[-1].startswith("done: 1, failed: 0, skipped: 2")
    (out_dir / "a.png").write_bytes(b"edited by hand")  # no longer what the batch wrote: kept, not redone
    code, out, _ = run_batch(fake, [tmp_path / "in"], out_dir, resume=True)
    assert f"SKIPPED {inputs[0]}: {out_dir / 'a.png'} exists (use --overwrite" in out
    assert (out_dir / "a.png").read_bytes() == b"edited by hand"


def test_resume_finishes_an_item_interrupted_after_its_rename_but_keeps_foreign_files(tmp_path):
    inputs = [photo(tmp_path / "in" / f"{n}.png") for n in ("a", "b")]
    out_dir = tmp_path / "out"
    config = BatchConfig(inputs=(str(tmp_path / "in"),), outdir=out_dir, resume=True)
    assert run(config, io.StringIO(), io.StringIO(), restorer=FakeRestorer()) == 0
    state_file = config.state_path()
    state = json.loads(state_file.read_text())
    # as if killed between renaming a.png into place and recording it: written, sidecar gone, not done
    state["items"][0]["status"] = "pending"
    sidecar_path(out_dir / "a.png").unlink()
    # b.png replaced by someone else's file: never ours to overwrite
    (out_dir / "b.png").write_bytes(b"somebody else's file")
    state["items"][1]["status"] = "pending"
    state_file.write_text(json.dumps(state))
    stale = out_dir / f"{io_durable._temp_prefix(out_dir / 'a.png')}deadbeef{io_durable.TMP_SUFFIX}"
    stale.write_bytes(b"half a file from the killed run")
    out = io.StringIO()
    assert run(config, out, io.StringIO(), restorer=FakeRestorer()) == 0
    assert f"OK {inputs[0]}" in out.getvalue() and sidecar_path(out_dir / "a.png").exists()
    assert f"SKIPPED {inputs[1]}: {out_dir / 'b.png'} exists" in out.getvalue()
    assert (out_dir / "b.png").read_bytes() == b"somebody else's file" and not stale.exists()


def test_failed_photos_are_retried_on_resume_and_a_foreign_state_file_is_refused(tmp_path):
    bad = tmp_path / "in" / "bad.png"
    bad.parent.mkdir()
    bad.write_bytes(b"")
    state = tmp_path / "job.json"
    code, out, _ = run_batch(FakeRestorer(), [tmp_path / "in"], tmp_path / "out", state=state)
    assert code == 1 and json.loads(state.read_text())["items"][0]["status"] == "failed"
    photo(bad)
    code, out, _ = run_batch(FakeRestorer(), [tmp_path / "in"], tmp_path / "out", state=state, resume=True)
    assert code == 0 and f"OK {bad}" in out
    code, _, err = cli("restore", tmp_path / "in", "-o", tmp_path / "elsewhere", "--state", state, "--resume")
    assert code == 2 and "belongs to another batch" in err


def tiny_weights_folder(folder: Path) -> Path:
    save_state_dicts(folder, {name: recipe_state(GLOBAL_FILES[name][0]) for name in QUALITY_NETWORKS})
    return folder


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory) -> Path:
    """Quality-mode recipe weights as a safetensors folder (what a subprocess can load by path)."""
    return tiny_weights_folder(tmp_path_factory.mktemp("tiny-weights"))


SLOW_FSYNC = ("import os, sys, time\n"
              "real = os.fsync\n"
              "os.fsync = lambda fd: (time.sleep(0.1), real(fd))[1]  # a slow disk: widens the window to kill in\n"
              "from engine.cli.app import main\n"
              "sys.exit(main(sys.argv[1:]))\n")


@pytest.mark.slow
def test_kill_9_mid_batch_then_resume_matches_an_uninterrupted_run(tmp_path, tiny_weights):
    src = tmp_path / "scans"
    for i in range(6):
        photo(src / f"scan {i}.png", size=(40, 32))
    cv2.imwrite(str(src / "scan 6.tif"), RNG.integers(0, 65536, (32, 40, 3)).astype(np.uint16))
    env = {**os.environ, "HEIRLOOM_DATA_DIR": str(tmp_path / "userdata"), "PYTHONPATH": str(ROOT)}
    args = ["restore", str(src), "--weights", str(tiny_weights), "--device", "cpu"]

    # the uninterrupted run to compare with, in this process (the same CLI code, one interpreter and
    # weights load fewer); the killed and the resumed runs below are real subprocesses
    code, out, err = cli(*args, "-o", tmp_path / "reference")
    assert code == 0, out + err

    out_dir, state_file = tmp_path / "out", tmp_path / "job.json"
    args += ["--state", str(state_file)]
    child = subprocess.Popen([sys.executable, "-c", SLOW_FSYNC, *args, "-o", str(out_dir)], cwd=ROOT, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    def finished() -> int:
        try:
            return sum(i["status"] == "done" for i in json.loads(state_file.read_text())["items"])
        except FileNotFoundError:  # the state is replaced atomically: absent or complete, never half
            return 0

    deadline = time.monotonic() + 300
    while finished() < 1:  # kill once the first photo is done, in the middle of the next one
        assert child.poll() is None, "the batch ended before it could be killed"
        assert time.monotonic() < deadline, "no output appeared"
        time.sleep(0.01)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    killed_out = child.stdout.read()
    child.stdout.close()
    assert child.returncode == -signal.SIGKILL

    items = json.loads(state_file.read_text())["items"]
    done = [i for i in items if i["status"] == "done"]
    assert 0 < len(done) < len(items), killed_out  # really killed mid-run
    done_mtimes = {i["output"]: Path(i["output"]).stat().st_mtime_ns for i in done}

    resumed = subprocess.run([sys.executable, str(ROOT / "main.py"), *args, "-o", str(out_dir), "--resume"],
                             cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert resumed.stdout.count("already restored in an earlier run") == len(done)
    assert {o: Path(o).stat().st_mtime_ns for o in done_mtimes} == done_mtimes  # finished work not redone

    ref, got = tree(tmp_path / "reference"), tree(out_dir)
    assert sorted(got) == sorted(ref)  # every output exactly once, no temporary or partial files
    for name in ref:
        if name.endswith(".heirloom.json"):
            a, b = (json.loads((d / name).read_text()) for d in (tmp_path / "reference", out_dir))
            assert a["output"]["sha256"] == b["output"]["sha256"] == ref[name[: -len(".heirloom.json")]]
            assert a["input"]["sha256"] == b["input"]["sha256"]
            files = b["weights"]["files"]
            assert {n: f["sha256"] for n, f in files.items()} == {
                n: sha256_file(tiny_weights / f"{n}.safetensors") for n in QUALITY_NETWORKS}
        else:
            assert got[name] == ref[name], name  # bit for bit


# ---------------------------------------------------------------------------------- shards


def test_shards_split_a_collection_exactly_once(tmp_path):
    for i in range(9):
        photo(tmp_path / "in" / f"p{i}.png", size=(8, 8))
    out_dir = tmp_path / "out"
    seen: list[str] = []
    for k in range(3):
        code, out, _ = run_batch(FakeRestorer(), [tmp_path / "in"], out_dir, shard=(k, 3))
        assert code == 0
        seen += [line.split(" -> ")[1].split(" (")[0] for line in out.splitlines() if line.startswith("OK ")]
    assert sorted(Path(s).name for s in seen) == [f"p{i}.png" for i in range(9)]
    again = [i.output for k in range(3) for i in plan(BatchConfig((str(tmp_path / "in"),), out_dir, shard=(k, 3)))[0]]
    assert sorted(again) == sorted(seen)  # deterministic


def test_clashing_names_land_in_one_shard_and_are_reported_once(tmp_path):
    photo(tmp_path / "in" / "same.png")
    photo(tmp_path / "in" / "same.bmp")
    reports = []
    for k in range(4):
        items, failures = plan(BatchConfig((str(tmp_path / "in"),), tmp_path / "out", shard=(k, 4)))
        reports += [r for _, r in failures]
        assert len(items) + len(failures) in (0, 2)
    assert len(reports) == 1 and "already used" in reports[0]


@pytest.mark.parametrize("argv,needle", [
    (["--shard", "3/3"], "0 <= K < N"),
    (["--shard", "x"], "K/N"),
    (["--quality", "80"], "--quality applies only to --format jpeg"),
    (["--format", "jpeg", "--quality", "0"], "between 1 and 100"),
])
def test_usage_errors(tmp_path, argv, needle):
    code, _, err = cli("restore", photo(tmp_path / "p.png"), "-o", tmp_path / "out", *argv)
    assert code == 2 and needle in err


def test_parse_shard():
    assert parse_shard("0/1") == (0, 1) and parse_shard("7/8") == (7, 8)


def test_outputs_follow_the_input_format_or_the_one_asked_for(tmp_path):
    src = tmp_path / "in"
    photo(src / "a.jpg")
    photo(src / "b.tiff")
    photo(src / "c.png")
    code, out, _ = run_batch(FakeRestorer(), [src], tmp_path / "auto")
    assert code == 0 and sorted(p.name for p in (tmp_path / "auto").glob("*.*") if not p.name.endswith(".json")) == [
        "a.png", "b.tiff", "c.png"]
    code, out, _ = run_batch(FakeRestorer(), [src], tmp_path / "jpeg", fmt="jpeg", quality=70)
    assert code == 0
    with Image.open(tmp_path / "jpeg" / "b.jpg") as im:
        assert im.format == "JPEG"
    record = json.loads(sidecar_path(tmp_path / "jpeg" / "b.jpg").read_text())
    assert record["options"]["format"] == "jpeg" and record["options"]["quality"] == 70


def test_an_output_that_is_an_input_is_refused(tmp_path):
    album = tmp_path / "album"
    src = photo(album / "p.png")
    before = digest(src)
    code, out, _ = run_batch(FakeRestorer(), [src], album, overwrite=True)
    assert code == 1 and "would overwrite an input photo" in out and digest(src) == before


def test_provenance_records_the_model_card_of_our_weights(tmp_path):
    from engine.models.checkpoints import SafetensorsSource

    folder = tiny_weights_folder(tmp_path / "w")
    assert WeightHashes(SafetensorsSource(folder)).card() is None
    (folder / "model.json").write_text(json.dumps({"name": "heirloom-test", "networks": {}}), encoding="utf-8")
    card = WeightHashes(SafetensorsSource(folder)).card()
    assert card["name"] == "heirloom-test" and card["sha256"] == sha256_file(folder / "model.json")
