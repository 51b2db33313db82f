"""A new weights folder made from an existing one with some networks replaced (the detector, the
refinement), built in a staging folder beside the destination and renamed into place at the end:
the folder appears complete or not at all, and the source folder is never touched."""

from __future__ import annotations

import json
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import torch

from engine.io.durable import sha256_file
from engine.models.checkpoints import SafetensorsSource, save_state_dicts


def read_card(weights: Path) -> dict:
    return json.loads((Path(weights) / SafetensorsSource.CARD).read_text(encoding="utf-8"))


def write_card(folder: Path, card: dict) -> None:
    (Path(folder) / SafetensorsSource.CARD).write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")


def put_network(folder: Path, card: dict, name: str, state: dict[str, torch.Tensor]) -> None:
    """Write ``name``'s safetensors into ``folder``, its hash into ``card`` and the card to disk."""
    save_state_dicts(folder, {name: state})
    card.setdefault("files", {})[f"{name}.safetensors"] = sha256_file(Path(folder) / f"{name}.safetensors")
    write_card(folder, card)


@contextmanager
def staged_copy(weights: Path, dest: Path, replaced: tuple[str, ...]) -> Iterator[Path]:
    """A staging copy of ``weights`` without the ``replaced`` networks' files, renamed to ``dest``
    when the block ends without an error (and removed when it does not). ``dest`` must not exist."""
    dest = Path(dest)
    if dest.exists():
        raise FileExistsError(f"{dest} already exists; choose a new folder for the weights")
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    skipped = {f"{name}.safetensors" for name in replaced}
    try:
        for item in Path(weights).iterdir():
            if item.is_file() and item.name not in skipped:
                shutil.copy2(item, staging / item.name)
        yield staging
        staging.rename(dest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
