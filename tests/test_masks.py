"""The brushed-mask store: keyed by photo content, never writes next to the photo."""

from pathlib import Path

import numpy as np
from PIL import Image

from engine.masks import MaskStore


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
