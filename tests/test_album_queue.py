"""The album queue's persisted state: survives restarts and crashes, never redoes finished photos,
never takes over a file it did not write, and never crashes on a damaged state file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import RecipeSource
from PIL import Image

from engine.core.pipeline import RestoreOptions, RestoreResult, as_float_rgb
from engine.io.durable import sha256_file
from engine.jobs.album_queue import (
    DONE,
    FAILED,
    PENDING,
    RUNNING,
    SKIPPED,
    AlbumQueue,
    QueueItem,
    choose_output,
    expand_paths,
    restore_item,
)
from engine.jobs.batch import BatchConfig, PhotoProcessor
from engine.progress import Progress
from engine.store.masks import MaskStore
from engine.store.provenance import sidecar_path


@pytest.fixture(autouse=True)
def data_dir(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("HEIRLOOM_DATA_DIR", str(tmp_path / "userdata"))
    return tmp_path / "userdata"


def photo(path: Path, seed: int = 0, size: tuple[int, int] = (20, 14)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return path


class InvertingRestorer:
    """The 'restoration' is the photo inverted: these tests are about the queue, not the networks."""

    def __init__(self) -> None:
        self.bank = SimpleNamespace(source=RecipeSource({}))
        self.device = torch.device("cpu")
        self.masks: list[np.ndarray | None] = []

    def prepare(self, options: RestoreOptions, has_user_mask: bool = False) -> None:
        pass

    def restore(self, image, options=RestoreOptions(), user_mask=None, progress=None) -> RestoreResult:
        self.masks.append(user_mask)
        return RestoreResult(1.0 - as_float_rgb(image), options.mode(user_mask is not None), user_mask, None, {},
                             brushed=user_mask is not None)


def test_state_round_trips_and_ids_stay_unique(tmp_path):
    state = tmp_path / "q" / "queue.json"
    queue, warnings = AlbumQueue.load(state)
    assert warnings == [] and queue.items == [] and not state.exists()  # first run: quietly empty
    a, b = photo(tmp_path / "a.png"), photo(tmp_path / "b.png", 1)
    added = queue.add([a, b, a, tmp_path / "." / "b.png"])
    assert [i.name for i in added] == ["a.png", "b.png"]  # duplicates, however spelled, are ignored
    assert added[0].size == a.stat().st_size
    queue.set_output_dir(tmp_path / "out")
    queue.set_settings({"scratch": True, "tile": "auto"})
    item = queue.claim_next()
    assert item is added[0] and item.status == RUNNING and item.started
    queue.finish(item, FAILED, error="Cannot read the photo: broken")

    again, warnings = AlbumQueue.load(state)
    assert warnings == []
    assert [(i.id, i.path, i.status, i.error) for i in again.items] == [
        (item.id, str(a.resolve()), FAILED, "Cannot read the photo: broken"),
        (added[1].id, str(b.resolve()), PENDING, None)]
    assert again.output_dir == str(tmp_path / "out") and again.settings == {"scratch": True, "tile": "auto"}
    assert again.retry()[0].status == PENDING
    new = again.add([photo(tmp_path / "c.png", 2)])[0]
    assert new.id not in {i.id for i in again.items[:-1]}
    assert again.remove([new.id]) == [new.id] and len(again.items) == 2


def test_a_photo_running_when_the_app_died_is_pending_again(tmp_path):
    state = tmp_path / "queue.json"
    queue, _ = AlbumQueue.load(state)
    first, second = queue.add([photo(tmp_path / "a.png"), photo(tmp_path / "b.png", 1)])
    queue.finish(queue.claim_next(), DONE)
    running = queue.claim_next()
    running.progress = 0.6
    queue.save()  # ... and the process is killed here
    assert queue.remove([running.id]) == []  # the running photo cannot be removed

    again, warnings = AlbumQueue.load(state)
    assert warnings == []
    assert [(i.status, i.progress) for i in again.items] == [(DONE, 1.0), (PENDING, 0.0)]
    assert again.claim_next().id == second.id  # the finished photo is never claimed again
    assert again.claim_next() is None


@pytest.mark.parametrize("content", [b"{not json", b'{"version": 1, "items": [{"id": "x"}]}', b"[]",
                                     b'{"version": 99, "items": []}', b"\xff\xfe\x00"])
def test_a_damaged_state_file_is_kept_as_a_backup_and_the_queue_starts_empty(tmp_path, content):
    state = tmp_path / "queue.json"
    state.write_bytes(content)
    queue, warnings = AlbumQueue.load(state)
    assert queue.items == [] and len(warnings) == 1 and "damaged" in warnings[0]
    backups = list(tmp_path.glob("queue.json.corrupt-*"))
    assert len(backups) == 1 and backups[0].read_bytes() == content
    assert backups[0].name in warnings[0]
    queue.add([photo(tmp_path / "a.png")])  # the queue works and replaces the damaged file
    assert len(AlbumQueue.load(state)[0].items) == 1


def test_folders_are_searched_recursively_for_images_only(tmp_path):
    album = tmp_path / "album"
    for rel in ("b.png", "a.JPG", "sub/c.tif", "sub/deeper/d.webp", ".hidden/e.png", ".f.png"):
        (album / rel).parent.mkdir(parents=True, exist_ok=True)
        (album / rel).write_bytes(b"x")
    (album / "notes.txt").write_text("not a photo")
    images, ignored = expand_paths([album, album / "notes.txt", tmp_path / "missing.png"])
    assert [p.relative_to(album).as_posix() for p in images] == ["a.JPG", "b.png", "sub/c.tif",
                                                                 "sub/deeper/d.webp"]
    assert ignored == [album / "notes.txt", tmp_path / "missing.png"]


def test_restore_item_hashes_its_photo_once(tmp_path, content_hashes):
    """One sha256 of the input per item: the output check, the decoded photo, the brushed mask's
    lookup and the provenance record all use it (a big scan is not hashed three times)."""
    queue, _ = AlbumQueue.load(tmp_path / "queue.json")
    src = photo(tmp_path / "album" / "p.png")
    masks = MaskStore(tmp_path / "masks")
    brushed = np.zeros((14, 20), bool)
    brushed[3:5, 2:9] = True
    masks.save(src, brushed)
    restorer = InvertingRestorer()
    processor = PhotoProcessor(BatchConfig(inputs=(), outdir=tmp_path / "out", argv=("test",)), restorer)
    queue.add([src])
    content_hashes.clear()
    assert restore_item(queue, queue.claim_next(), processor, tmp_path / "out", masks, Progress()) == DONE
    of_the_photo = [name for name, what in content_hashes if what in (src.resolve(), src.read_bytes())]
    assert of_the_photo == ["sha256_file"]
    assert np.array_equal(restorer.masks[0], brushed)  # the mask was still found by that one digest
    record = json.loads(sidecar_path(tmp_path / "out" / "p.png").read_text())
    assert record["input"]["sha256"] == sha256_file(src) == queue.items[0].input_sha256


def test_restore_item_writes_with_provenance_and_never_takes_over_a_file(tmp_path):
    queue, _ = AlbumQueue.load(tmp_path / "queue.json")
    src = photo(tmp_path / "album" / "p.png")
    twin = tmp_path / "elsewhere" / "p.png"  # same content, other folder: already restored once
    twin.parent.mkdir()
    shutil.copy(src, twin)
    other = photo(tmp_path / "other" / "p.png", seed=5)  # same name, other photo
    outdir = tmp_path / "out"
    outdir.mkdir()
    (outdir / "notes.png").write_bytes(b"someone else's file")
    masks = MaskStore(tmp_path / "masks")
    brushed = np.zeros((14, 20), bool)
    brushed[3:5, 2:9] = True
    masks.save(src, brushed)
    original = src.read_bytes()

    restorer = InvertingRestorer()
    processor = PhotoProcessor(BatchConfig(inputs=(), outdir=outdir, argv=("test",)), restorer)
    items = queue.add([src, twin, other])
    results = []
    while (item := queue.claim_next()) is not None:
        results.append(restore_item(queue, item, processor, outdir, masks, Progress()))
    assert results == [DONE, SKIPPED, DONE]
    assert src.read_bytes() == original
    assert items[0].output == str(outdir / "p.png") and items[1].output == str(outdir / "p.png")
    assert items[2].output == str(outdir / "p (2).png")  # never the other photo's output
    assert "already restored" in items[1].error
    assert np.array_equal(restorer.masks[0], brushed) and restorer.masks[1] is None
    record = json.loads(sidecar_path(outdir / "p.png").read_text())
    assert record["input"]["sha256"] == sha256_file(src) and record["mask"]["source"] == "brushed"
    assert record["mask"]["file"] == str(masks.mask_path(src).resolve())
    assert items[0].output_sha256 == sha256_file(outdir / "p.png") and items[0].writing_sha256
    with Image.open(outdir / "p.png") as out:
        assert np.array_equal(np.asarray(out), 255 - np.asarray(Image.open(src)))

    # A file we did not write is never replaced; our own interrupted write is finished in place.
    stranger = QueueItem(99, str(photo(tmp_path / "x" / "notes.png", seed=3)), 1)
    assert choose_output(stranger, outdir, "png", "0" * 64) == (outdir / "notes (2).png", False)
    stranger.output, stranger.writing_sha256 = str(outdir / "notes.png"), sha256_file(outdir / "notes.png")
    assert choose_output(stranger, outdir, "png", "0" * 64) == (outdir / "notes.png", False)
