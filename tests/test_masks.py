"""The brushed-mask store: keyed by photo content, never writes next to the photo."""

from pathlib import Path

import numpy as np
from PIL import Image

from engine.io.decode import read_photo
from engine.store.masks import BRUSHED, MaskStore


def make_photo(path: Path, value: int) -> Path:
    Image.fromarray(np.full((20, 30, 3), value, np.uint8)).save(path)
    return path


def test_save_load_follows_content_not_path(tmp_path: Path) -> None:
    photos = tmp_path / "album"
    photos.mkdir()
    photo = make_photo(photos / "a.png", 10)
    store = MaskStore(tmp_path / "store")
    mask = np.zeros((20, 30), bool)
    mask[5:8, 2:20] = True
    store.save(photo, mask)
    assert sorted(p.name for p in photos.iterdir()) == ["a.png"]  # nothing written beside the photo
    assert np.array_equal(store.load(photo, (20, 30)), mask)
    moved = photo.rename(photos / "renamed.png")
    assert np.array_equal(store.load(moved), mask)
    other = make_photo(photos / "b.png", 99)
    assert store.load(other) is None
    assert store.load(moved, (21, 30)) is None  # size changed outside Heirloom: ignore, never misapply


def test_empty_mask_deletes_and_entries_export(tmp_path: Path) -> None:
    photo = make_photo(tmp_path / "p.png", 50)
    store = MaskStore(tmp_path / "store")
    mask = np.zeros((20, 30), bool)
    mask[0, 0] = True
    store.save(photo, mask)
    assert [e.photo.name for e in store.entries()] == ["p.png"]
    assert store.export_folder(tmp_path / "out") == 1
    assert (np.asarray(Image.open(tmp_path / "out" / "p.png")) > 127).sum() == 1
    store.save(photo, np.zeros((20, 30), bool))
    assert store.load(photo) is None and store.entries() == []


def test_an_opened_photo_is_keyed_by_the_digest_it_was_read_with(tmp_path: Path, content_hashes) -> None:
    """A PhotoFile brings its sha256: no second hash, and the same key as hashing its path."""
    photo = make_photo(tmp_path / "p.png", 70)
    opened = read_photo(photo)
    store = MaskStore(tmp_path / "store")
    mask = np.zeros((20, 30), bool)
    mask[2:4, 5:9] = True
    content_hashes.clear()
    store.save(opened, mask)
    assert np.array_equal(store.load(opened, (20, 30)), mask) and store.origin(opened) == BRUSHED
    assert content_hashes == []
    assert np.array_equal(store.load(photo), mask) and store.mask_path(photo) == store.mask_path(opened)
