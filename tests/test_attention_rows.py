"""Hole attention rows (issue 18): exact at holes (and within a reach), local elsewhere;
chosen per weights by the card, recorded in the result; and the allocator tuning."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from engine.core.pipeline import RestoreOptions, Restorer
from engine.core.plan import plan_restore
from engine.core.translation import Mode
from engine.device import keep_large_buffers_mapped, process_memory_bytes
from engine.models.checkpoints import CheckpointError, ModelBank, SafetensorsSource
from engine.models.networks import partial_nonlocal
from engine.models.networks.partial_nonlocal import (
    PartialNonLocalBlock,
    grow,
    local_attention,
    partial_attention,
)
from tests.tiny_weights import make_tiny_weights


def block_and_input(res_blocks: int, seed: int = 0, c: int = 8, h: int = 12, w: int = 16):
    torch.manual_seed(seed)
    block = PartialNonLocalBlock(c, res_blocks).eval()
    x = torch.randn(1, c, h, w)
    mask = torch.zeros(1, 1, 4 * h, 4 * w)
    mask[..., 18:23, :] = 1.0  # a crack across the photo
    mask[..., 30:40, 44:52] = 1.0  # and a hole
    return block, x, mask


def test_without_residual_blocks_hole_rows_give_exactly_the_official_output():
    """With no 3x3 convolution after the attention (reach 0) and no normalisation statistics, a
    hole's output depends on its own row only: the cheap form must be the official one."""
    block, x, mask = block_and_input(res_blocks=0)
    with torch.inference_mode():
        exact = block(x, mask, rows="all")
        cheap = block(x, mask, rows="holes")
    torch.testing.assert_close(cheap, exact, rtol=1e-5, atol=1e-6)


def test_rows_within_reach_of_a_hole_are_exact_and_the_others_local(monkeypatch):
    monkeypatch.setattr(partial_nonlocal, "LOCAL_BLOCK", 4)
    monkeypatch.setattr(partial_nonlocal, "LOCAL_MARGIN", 2)
    block, x, mask = block_and_input(res_blocks=2)
    c, h, w = x.shape[1:]
    with torch.inference_mode():
        g = block.g(x).reshape(c, -1).t()
        theta = block.theta(x).reshape(c, -1).t()
        phi = block.phi(x).reshape(c, -1)
        valid = torch.nn.functional.interpolate(1 - mask, size=(h, w))  # any validity map will do here
        valid = (valid > 0.5).float().reshape(-1)
        every = partial_attention(theta, phi, g, valid)
        cheap = block._hole_rows(theta, phi, g, valid, h, w, None, exact_reach=block.reach)
    near = grow(valid.view(h, w) < 0.5, block.reach).reshape(-1)
    assert block.reach == 4 and 0 < near.float().mean() < 1
    torch.testing.assert_close(cheap[near], every[near], rtol=1e-5, atol=1e-6)
    assert not torch.allclose(cheap[~near], every[~near])  # far rows really are computed another way
    # a far row attends to the valid keys of its block grown by the margin, with the official weights
    row = int((~near).nonzero()[0, 0])
    ry, rx = divmod(row, w)
    block_y, block_x = ry // 4 * 4, rx // 4 * 4
    ys = torch.arange(max(0, block_y - 2), min(h, block_y + 6))
    xs = torch.arange(max(0, block_x - 2), min(w, block_x + 6))
    keys = (ys[:, None] * w + xs[None, :]).reshape(-1)
    local = local_attention(theta, phi, g, valid, h, w, block=4, margin=2)
    torch.testing.assert_close(local[~near], cheap[~near])
    weights = torch.softmax(theta[row] @ phi[:, keys], dim=0) * valid[keys]
    torch.testing.assert_close(local[row], (weights / weights.sum()) @ g[keys], rtol=1e-5, atol=1e-6)


def test_training_always_computes_every_row():
    block, x, mask = block_and_input(res_blocks=1)
    block.train()
    assert torch.is_grad_enabled()
    torch.testing.assert_close(block(x, mask, rows="holes"), block(x, mask, rows="all"))


@pytest.fixture()
def tiny_folder(tmp_path):
    return make_tiny_weights(tmp_path / "tiny")


def with_card(folder, **entries):
    card_path = folder / "model.json"
    card = json.loads(card_path.read_text())
    card.update(entries)
    card_path.write_text(json.dumps(card))
    return folder


def test_the_card_chooses_the_rows_and_the_result_records_them(tiny_folder):
    assert SafetensorsSource(tiny_folder).attention_rows() == "all"  # without the entry: the official computation
    bank = ModelBank(SafetensorsSource(with_card(tiny_folder, attention_rows="holes")), torch.device("cpu"))
    options = RestoreOptions(scratch=True, faces=False)
    assert plan_restore(bank, options, Mode.SCRATCH, 64, 64, torch.device("cpu")).attention_rows == "holes"
    assert plan_restore(bank, options, Mode.QUALITY, 64, 64, torch.device("cpu")).attention_rows == "all"
    photo = np.random.default_rng(0).random((48, 64, 3)).astype(np.float32)
    mask = np.zeros((48, 64), bool)
    mask[20:24] = True
    result = Restorer(bank).restore(photo, options, user_mask=mask)
    assert result.tiling["attention_rows"] == "holes"


def test_an_unknown_rows_entry_is_refused_with_what_is_accepted(tiny_folder):
    with pytest.raises(CheckpointError, match="attention_rows 'some'.*'all' or 'holes'"):
        SafetensorsSource(with_card(tiny_folder, attention_rows="some")).attention_rows()


def test_the_shipped_default_weights_use_hole_rows():
    from engine.store.catalogue import resolve_weights

    assert resolve_weights("default").attention_rows() == "holes"


def test_the_allocator_keeps_buffers_and_their_free_heap_does_not_count_as_held():
    import sys

    from engine.device import _heap_free_bytes

    if not sys.platform.startswith("linux"):
        pytest.skip("glibc only")
    assert keep_large_buffers_mapped()
    junk = [bytearray(8 * 2**20) for _ in range(8)]  # below the 32 MiB threshold: served by the heap
    del junk
    kept = _heap_free_bytes()
    assert kept >= 48 * 2**20  # freed, but kept mapped for the next restore instead of returned
    with open("/proc/self/statm") as fh:
        resident = int(fh.read().split()[1]) * 4096
    held = process_memory_bytes()
    assert held is not None and held <= resident - 48 * 2**20 + 8 * 2**20  # the kept heap is not counted
