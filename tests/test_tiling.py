"""Tiling: plans, seam-free equality with untiled inference, out-of-memory shrinking, device choice."""

from __future__ import annotations

import weakref

import numpy as np
import pytest
import torch
from conftest import bank_for

from engine import device as dev
from engine.core.metrics import seam_score
from engine.core.pipeline import RestoreOptions, Restorer
from engine.core.plan import plan_restore
from engine.core.tiling import TiledRunner, TileSpec, plan_tiles


def photo(h: int, w: int) -> np.ndarray:
    rng = np.random.default_rng(5)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    img = np.stack([0.5 + 0.35 * np.sin(9 * xx + 2 * yy), 0.5 + 0.3 * np.cos(7 * yy), 0.4 + 0.4 * xx * yy], axis=2)
    return np.clip(img + rng.normal(0, 0.02, img.shape), 0, 1).astype(np.float32)


@pytest.mark.parametrize("h,w,tile,halo,align", [(200, 264, 96, 48, 4), (37, 53, 16, 5, 1), (64, 64, 64, 8, 8),
                                                 (130, 70, 32, 16, 8)])
def test_plan_cores_partition_the_image_and_boxes_match(h, w, tile, halo, align):
    tiles = plan_tiles(h, w, tile, halo, align)
    cover = np.zeros((h, w), int)
    sizes = set()
    for t in tiles:
        y0, y1, x0, x1 = t.core
        cover[y0:y1, x0:x1] += 1
        by0, by1, bx0, bx1 = t.box
        assert 0 <= by0 <= y0 and y1 <= by1 <= h and 0 <= bx0 <= x0 and x1 <= bx1 <= w
        assert y0 % align == 0 and x0 % align == 0
        sizes.add((by1 - by0, bx1 - bx0))
    assert (cover == 1).all()
    assert len(sizes) == 1, "every box has the same size, so tiles batch together"


@pytest.fixture(scope="module")
def restorer() -> Restorer:
    return Restorer(bank_for())


def chosen_tile(restorer: Restorer, options: RestoreOptions, mode, h: int, w: int) -> int | None:
    """The tile the run policy picks for an h x w network input."""
    return plan_restore(restorer.bank, options, mode, h, w, restorer.device).tile


def test_tiled_restoration_matches_untiled_without_seams(restorer):
    # 160 x 160: three tiles a side, the least for encoder boxes (64 + 2 x 48 halo) that are cut on
    # every side; each tile costs about a whole run of the mapping here, so fewer tiles, less time
    image = photo(160, 160)
    untiled = restorer.restore(image, RestoreOptions(tile="off"))
    tiled = restorer.restore(image, RestoreOptions(tile=64))
    assert untiled.tiling["tile"] is None and tiled.tiling["tile"] == 64
    diff = np.abs(tiled.image - untiled.image) * 255
    # the issue asks for <= 2 and <= 0.5 levels; with exact shared statistics we get ~0.02
    assert diff.max() <= 0.5 and diff.mean() <= 0.05, (diff.max(), diff.mean())
    tiles = plan_tiles(160, 160, 64, 48, 4)
    assert {t.box[:2] for t in tiles} == {(0, 152), (8, 160)} == {t.box[2:] for t in tiles}  # halos cut both ways
    rows = sorted({t.core[0] for t in tiles} - {0})
    cols = sorted({t.core[2] for t in tiles} - {0})
    assert rows and cols
    assert abs(seam_score(tiled.image, rows, cols) - seam_score(untiled.image, rows, cols)) < 0.05


def test_per_tile_statistics_would_show_seams(restorer):
    """The reason for shared statistics: normalising each tile on its own differs visibly."""
    enc = restorer.bank.get("VAE_A_quality")
    x = torch.from_numpy(photo(128, 128)).permute(2, 0, 1)[None] * 2 - 1
    with torch.inference_mode():
        whole = enc.encode(x)
        left, right = enc.encode(x[..., :64]), enc.encode(x[..., 64:])
    naive = torch.cat([left, right], dim=-1)
    shared = TiledRunner(enc.encode, enc, TileSpec(tile=64, halo=48, align=4, out_scale=0.25),
                         torch.device("cpu")).run(x)
    assert (shared - whole).abs().max() < 1e-3
    assert (naive - whole).abs().max() > 0.1


def test_out_of_memory_splits_the_tile_and_still_gives_the_full_result(restorer):
    enc = restorer.bank.get("VAE_A_quality")
    x = torch.from_numpy(photo(192, 192)).permute(2, 0, 1)[None] * 2 - 1
    spec = TileSpec(tile=64, halo=48, align=4, out_scale=0.25)
    reference = TiledRunner(enc.encode, enc, spec, torch.device("cpu"), max_first_batch=2).run(x)
    calls = []

    def flaky(batch: torch.Tensor) -> torch.Tensor:
        calls.append(tuple(batch.shape))
        if batch.shape[0] == 1 and batch.shape[-1] > 128:  # a whole single tile "does not fit"
            raise torch.OutOfMemoryError("fake: CUDA out of memory")
        return enc.encode(batch)

    runner = TiledRunner(flaky, enc, spec, torch.device("cpu"), max_first_batch=2)
    result = runner.run(x)
    assert runner.shrinks > 0 and any(c[-1] <= 128 for c in calls)
    assert result.shape == reference.shape
    assert (result - reference).abs().max() < 1e-3


class RunsOutOfMemoryOnce:
    """Stands in for a network: attempt number ``failing`` runs out of memory while holding its
    activations; records whether those were still alive when the next attempt (the retry) began."""

    def __init__(self, failing: int) -> None:
        self.failing, self.attempts = failing, 0
        self.failed: weakref.ref | None = None
        self.alive_at_retry: bool | None = None

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        self.attempts += 1
        if self.failed is not None and self.alive_at_retry is None:
            self.alive_at_retry = self.failed() is not None
        activations = batch.repeat(1, 8, 1, 1)
        if self.attempts == self.failing:
            self.failed = weakref.ref(activations)
            raise torch.OutOfMemoryError("fake: CUDA out of memory")
        return activations[:, :3]


@pytest.mark.parametrize("failing", [1, 2], ids=["first-batch", "later-tile"])
def test_a_tile_that_ran_out_of_memory_is_freed_before_the_retry_runs(failing):
    """The failed attempt's tensors (reachable from the exception's traceback while its handler
    runs) must be gone when the smaller tiles start, or the retry has less memory than the attempt."""
    net = RunsOutOfMemoryOnce(failing)
    x = torch.rand(1, 3, 32, 64)  # two 32 px tiles: the first is the statistics batch, the second comes later
    runner = TiledRunner(net, torch.nn.Identity(), TileSpec(tile=32, halo=0), torch.device("cpu"), max_first_batch=1)
    result = runner.run(x)
    assert runner.shrinks == 1 and net.failed is not None and net.alive_at_retry is False
    assert torch.equal(result, x)


def test_a_fake_memory_budget_shrinks_tiles_and_completes(restorer):
    enc = restorer.bank.get("VAE_A_quality")
    x = torch.from_numpy(photo(256, 256)).permute(2, 0, 1)[None] * 2 - 1
    spec = TileSpec(tile=128, halo=48, align=4, out_scale=0.25, bytes_per_pixel=1024)
    budget = 40 * 2**20  # one 224x224 box (49 MiB) does not fit; a 160x160 box (25 MiB) does
    runner = TiledRunner(enc.encode, enc, spec, torch.device("cpu"), budget_bytes=budget)
    result = runner.run(x)
    assert result.shape == (1, 64, 64, 64) and torch.isfinite(result).all()
    assert runner.shrinks > 0 and runner.spec.tile < 128


def test_pooled_statistics_in_row_bands_equal_the_whole_cores(monkeypatch):
    """The first pass pools mean and variance over the cores a band of rows at a time (small
    float64 temporaries); the result must be the statistics of exactly those core pixels."""
    import engine.core.tiling as tiling

    monkeypatch.setattr(tiling, "STATS_BAND_ELEMENTS", 3 * 40)  # force many bands
    x = torch.randn(2, 3, 20, 24) * torch.tensor([1.0, 3.0, 0.5]).view(1, 3, 1, 1) + 2.0
    stats = tiling.SharedNormStats()
    cores = [(2, 18, 4, 20), (0, 10, 0, 24)]
    stats.start_batch(cores, (20, 24))
    mean, var = stats._pooled(x)
    pixels = torch.cat([x[0, :, 2:18, 4:20].reshape(3, -1), x[1, :, 0:10, :].reshape(3, -1)], dim=1)
    assert torch.allclose(mean, pixels.mean(1), atol=1e-5)
    assert torch.allclose(var, pixels.var(1, unbiased=False), atol=1e-4)
    y = stats.normalize(x, 1e-5)  # one allocation: x * scale - mean * scale
    expected = (x - pixels.mean(1).view(1, 3, 1, 1)) / torch.sqrt(pixels.var(1, unbiased=False) + 1e-5).view(1, 3, 1, 1)
    assert torch.allclose(y, expected, atol=1e-4)


def test_attention_memory_counts_once_per_batch_against_the_budget(restorer):
    """A box's attention block (4 bytes x pixels^2, capped) is part of what a batch needs: with it
    a tile that would otherwise fit is shrunk until the quadratic term fits."""
    enc = restorer.bank.get("VAE_A_quality")
    x = torch.from_numpy(photo(128, 128)).permute(2, 0, 1)[None] * 2 - 1
    plain = TileSpec(tile=128, halo=0, align=4, out_scale=0.25, bytes_per_pixel=1)
    runner = TiledRunner(enc.encode, enc, plain, torch.device("cpu"), budget_bytes=2**30)
    runner.run(x)
    assert runner.shrinks == 0
    quadratic = TileSpec(tile=128, halo=0, align=4, out_scale=0.25, bytes_per_pixel=1, attention_bytes=2**40)
    runner = TiledRunner(enc.encode, enc, quadratic, torch.device("cpu"), budget_bytes=2**30)
    result = runner.run(x)  # 4 * (128^2)^2 = 1 GiB does not fit next to the rest; 64^2 boxes do
    assert runner.shrinks > 0 and runner.spec.tile <= 64 and result.shape[-2:] == (32, 32)


def test_the_networks_get_the_budget_minus_what_the_process_holds(monkeypatch):
    """--max-memory bounds the whole process on the CPU: held memory and the full-size results
    still to come are taken off the networks' share; too little left -> smallest tiles + warning."""
    import engine.core.plan as plan

    gib = 2**30
    monkeypatch.setattr(plan, "process_memory_bytes", lambda: gib)
    pixels = 6000 * 4000
    left, warning = plan.network_budget(4 * gib, torch.device("cpu"), pixels, latent_c=32)
    latent = 4 * 33 * pixels / 16
    assert left == int(4 * gib - gib - int(latent + 16 * pixels)) and warning is None
    left, warning = plan.network_budget(int(1.2 * gib), torch.device("cpu"), pixels, latent_c=32)
    assert left == plan.MIN_NETWORK_BUDGET
    assert "more than the limit of 1.2 GB" in warning and "raise the memory limit" in warning
    # GPU budgets are device memory: the CPU-side arrays do not count
    assert plan.network_budget(4 * gib, torch.device("cuda:0"), pixels, 32) == (4 * gib, None)


def test_a_memory_limit_below_what_the_photo_needs_still_restores_and_says_so(restorer):
    image = photo(96, 128)
    result = restorer.restore(image, RestoreOptions(max_memory_gb=0.2))  # the test process holds more
    assert result.image.shape == (96, 128, 3) and np.isfinite(result.image).all()
    assert any("more than the limit of 0.2 GB" in w for w in result.warnings), result.warnings
    assert result.tiling["network_budget_mib"] == 256


def test_auto_policy_tiles_only_when_the_budget_requires_it(restorer):
    from engine.core.translation import Mode

    assert chosen_tile(restorer, RestoreOptions(), Mode.QUALITY, 256, 256) is None  # fits: exact untiled
    tile = chosen_tile(restorer, RestoreOptions(max_memory_gb=0.25), Mode.QUALITY, 4000, 6000)
    assert tile is not None and 64 <= tile < 4000
    assert chosen_tile(restorer, RestoreOptions(tile="off", max_memory_gb=0.01), Mode.QUALITY, 4000, 6000) is None
    assert chosen_tile(restorer, RestoreOptions(tile=512), Mode.SCRATCH, 1000, 1000) == 512


def test_large_scratch_photos_bound_the_attention_window_and_nothing_else(restorer):
    """Plenty of memory: quality mode stays one piece at any size; a scratch photo up to the exact
    attention limit too; beyond it the mapping (only) runs in windows of ATTENTION_WINDOW cells."""
    from engine.core.plan import (
        ATTENTION_WINDOW,
        EXACT_ATTENTION_SIDE,
        attention_window,
    )
    from engine.core.translation import Mode, tile_specs

    roomy = RestoreOptions(max_memory_gb=1000)
    assert chosen_tile(restorer, roomy, Mode.QUALITY, 4000, 6000) is None
    assert chosen_tile(restorer, roomy, Mode.SCRATCH, EXACT_ATTENTION_SIDE, 800) is None  # exact global attention
    assert attention_window(Mode.SCRATCH, roomy, EXACT_ATTENTION_SIDE, 800) is None
    tile = chosen_tile(restorer, roomy, Mode.SCRATCH, 4000, 6000)
    window = attention_window(Mode.SCRATCH, roomy, 4000, 6000)
    assert tile == 6000 and window == ATTENTION_WINDOW  # encoder/decoder in one piece
    enc, mapping, dec = tile_specs(restorer.bank, Mode.SCRATCH, tile, window)
    assert mapping.tile + 2 * mapping.halo <= ATTENTION_WINDOW and enc.tile == 6000 and dec.tile == 1500
    off = RestoreOptions(tile="off")
    assert chosen_tile(restorer, off, Mode.SCRATCH, 4000, 6000) is None and attention_window(Mode.SCRATCH, off, 4000, 6000) is None


def test_windowed_attention_restores_a_large_scratch_photo_in_full(tmp_path, monkeypatch):
    """A small stand-in for a big scan (tiny networks, lowered limits): the tiled, windowed result
    covers the whole photo and, away from the holes, equals the global run."""
    from tiny_weights import make_tiny_weights

    import engine.core.plan as plan
    from engine.models.checkpoints import ModelBank, SafetensorsSource

    restorer = Restorer(ModelBank(SafetensorsSource(make_tiny_weights(tmp_path / "w", output_tone="model")),
                                  torch.device("cpu")))
    rgb = photo(96, 128)
    mask = np.zeros((96, 128), bool)
    mask[40:44, 20:110] = True
    global_run = restorer.restore(rgb, RestoreOptions(scratch=False, tile="off"), user_mask=mask)
    monkeypatch.setattr(plan, "EXACT_ATTENTION_SIDE", 64)
    monkeypatch.setattr(plan, "ATTENTION_WINDOW", 8 + 2 * 24)
    windowed = restorer.restore(rgb, RestoreOptions(scratch=False), user_mask=mask)
    assert windowed.tiling["attention_window"] == 56 and windowed.image.shape == rgb.shape
    assert np.isfinite(windowed.image).all()
    far = np.ones_like(mask)
    far[20:64] = False  # away from the holes the attention plays no part: same as the global run
    assert np.abs(windowed.image[far] - global_run.image[far]).max() < 2 / 255
    assert np.abs(windowed.image[~far] - global_run.image[~far]).mean() < 0.1


def test_scratch_and_hr_modes_tile_too(restorer):
    image = photo(96, 128)
    mask = np.zeros((96, 128), bool)
    mask[40:44, 10:110] = True
    # HR detects at 64 px (not the official 256): the detector is not tiled here and took half the time
    for options in (RestoreOptions(tile=64), RestoreOptions(tile=64, hr=True, detection_scale=64)):
        result = restorer.restore(image, options, user_mask=mask)
        assert result.image.shape == (96, 128, 3) and result.tiling["tile"] == 64


class FakeCuda:
    def __init__(self, count: int) -> None:
        self.count = count

    def is_available(self) -> bool:
        return self.count > 0

    def device_count(self) -> int:
        return self.count

    def mem_get_info(self, index=0):
        return (3 * 2**30, 8 * 2**30)

    def get_device_name(self, index=0) -> str:
        return f"Fake GPU {index}"


def test_device_choice_with_fake_gpus(monkeypatch):
    monkeypatch.setattr(dev.torch, "cuda", FakeCuda(2))
    monkeypatch.setattr(dev, "_mps_available", lambda: False)
    assert dev.choose_device("auto").device == torch.device("cuda:0")
    assert dev.choose_device("cuda:1").device == torch.device("cuda:1")
    fallback = dev.choose_device("cuda:5")
    assert fallback.device.type == "cpu" and "only 2 CUDA device" in fallback.note
    names = [d.name for d in dev.list_devices()]
    assert names == ["cpu", "cuda:0", "cuda:1"]
    assert dev.memory_budget(torch.device("cuda:0")) == int(3 * 2**30 * 0.8)
    assert dev.memory_budget(torch.device("cuda:0"), max_memory_gb=1.5) == int(1.5 * 2**30)


def test_device_fallbacks_without_gpus(monkeypatch):
    monkeypatch.setattr(dev.torch, "cuda", FakeCuda(0))
    monkeypatch.setattr(dev, "_mps_available", lambda: False)
    assert dev.choose_device("auto").device.type == "cpu"
    cuda = dev.choose_device("cuda")
    assert cuda.device.type == "cpu" and "no usable CUDA GPU" in cuda.note
    mps = dev.choose_device("mps")
    assert mps.device.type == "cpu" and "MPS" in mps.note
    with pytest.raises(dev.DeviceError):
        dev.choose_device("tpu")
    assert [d.name for d in dev.list_devices()] == ["cpu"]
    assert dev.memory_budget(torch.device("cpu")) > 0


def test_detector_tiles_match_the_whole_map(restorer, monkeypatch):
    import engine.core.detection as detection

    # 3 x 3 tiles of 64 px; with the U-Net's 128 px halo every box is the whole input, as it was at
    # 320 x 384 with 128 px tiles (at a quarter of the cost)
    x = torch.rand(1, 1, 160, 192, generator=torch.Generator().manual_seed(0)) * 2 - 1
    whole = torch.sigmoid(detection.run_detector(restorer.bank, x, (160, 192), False))
    monkeypatch.setattr(detection, "UNTILED_DETECTOR_PIXELS", 1)
    monkeypatch.setattr(detection, "DETECTOR_TILE", 64)
    tiled = torch.sigmoid(detection.run_detector(restorer.bank, x, (160, 192), False))
    assert (tiled - whole).abs().max() < 1e-5


def test_detection_scale_choices(restorer):
    from engine.core.detection import detection_short_side

    assert detection_short_side("official", 3000, 2000) == 256
    assert detection_short_side("full", 3000, 2000) == 2000
    assert detection_short_side(512, 3000, 2000) == 512
    image = photo(72, 100)
    full = restorer.restore(image, RestoreOptions(scratch=True, detection_scale="full"))
    official = restorer.restore(image, RestoreOptions(scratch=True))
    assert full.detected.shape == official.detected.shape == (72, 100)
    assert not np.allclose(full.detected, official.detected)


def test_precision_choice(monkeypatch):
    cpu = torch.device("cpu")
    assert dev.choose_precision(cpu, "fp32") is None
    assert dev.choose_precision(cpu, "bf16") is torch.bfloat16
    with pytest.raises(dev.DeviceError):
        dev.choose_precision(cpu, "fp16")
    with pytest.raises(dev.DeviceError):
        dev.choose_precision(cpu, "fp8")
    monkeypatch.setattr(dev, "_cpu_has_native_bf16", lambda: False)
    assert dev.choose_precision(cpu, "auto") is None  # emulated bf16 would be slower than fp32
    monkeypatch.setattr(dev, "_cpu_has_native_bf16", lambda: True)
    assert dev.choose_precision(cpu, "auto") is torch.bfloat16

