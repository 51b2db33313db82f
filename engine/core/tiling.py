"""Tiled inference: the whole photo never has to sit on the device at once.

Mechanism only (the policy that picks tile sizes lives in ``engine.device``/``engine.core.pipeline``):

* **Tiles.** The input is cut into evenly sized cores (aligned to the network's stride); each tile
  is its core plus a halo of context, shifted inward at the image border so that every tile box
  has the same size and border tiles see the same padding as the untiled image.
* **Seam-free instance norm.** The networks normalise with per-channel statistics over the whole
  feature map; per-tile statistics would shift colours from tile to tile. A first pass runs a
  batch of tiles together while every InstanceNorm pools its mean and variance over the *cores*
  of that batch, layer after layer; the statistics are recorded and every other tile is then
  normalised with exactly those numbers. When all tiles fit in that first batch, the pooled
  statistics are the whole-image statistics and, with a halo that covers the receptive field, the
  result equals untiled inference up to float rounding; for larger photos the first batch is an
  even spatial sample of tiles (an estimate of the whole-image statistics). Cost: none when the
  sample is every tile; otherwise the sample tiles are computed once (their outputs are kept).
* **Blending.** Overlapping tile outputs are feathered with linear ramps beyond the core.
* **Out of memory.** ``torch.OutOfMemoryError``, ``MemoryError`` or an exceeded RAM budget on a tile
  splits that tile into four and retries them (statistics are per image, so nothing else changes);
  in the first pass the batch shrinks, then the tile.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from engine.models.networks.blocks import SharedStatsInstanceNorm
from engine.models.registry import NetworkTraits
from engine.progress import Progress

Box = tuple[int, int, int, int]  # y0, y1, x0, x1 (end exclusive)


def pad_to_multiple(t: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Reflect-pad (N,C,H,W) on the bottom/right to multiples of ``multiple`` (replicate where the
    image is too small to reflect). Returns the padded tensor and the original (H, W)."""
    h, w = t.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph == 0 and pw == 0:
        return t, (h, w)
    mode = "reflect" if ph < h and pw < w else "replicate"
    return F.pad(t, (0, pw, 0, ph), mode=mode), (h, w)


class MemoryBudgetExceeded(MemoryError):
    """A tile would need more memory than the budget allows."""


@dataclass(frozen=True)
class Tile:
    core: Box  # the part of the input this tile is responsible for
    box: Box  # core + halo: what the network sees


@dataclass(frozen=True)
class TileSpec:
    """How one network is tiled. Sizes are in input pixels of that network."""

    tile: int  # core size
    halo: int  # context on each side (>= the network's receptive radius for exact results)
    align: int = 1  # tile boxes and cores start on multiples of this (the network's total stride)
    out_scale: float = 1.0  # output pixels per input pixel
    bytes_per_pixel: float = 0.0  # peak working memory per box pixel (0 = unknown, never checked)
    # one attention block over a whole box, computed box by box: min(this cap, 4 bytes * pixels^2)
    attention_bytes: float = 0.0
    feather: int = 0  # width of the blending ramp beyond the core, input pixels

    @classmethod
    def for_network(cls, traits: NetworkTraits, tile: int, align: int, widest_channels: int = 0,
                    attention_bytes: float = 0.0) -> TileSpec:
        """The tiling of one network, its halo, feather, scale and memory factor read from its
        descriptor; ``align`` is the caller's, because a chain of networks may need coarser
        alignment than the network alone (whole attention patches deeper in the chain)."""
        return cls(tile=tile, halo=traits.halo, align=align, out_scale=traits.out_scale,
                   bytes_per_pixel=traits.bytes_per_input_pixel(widest_channels),
                   attention_bytes=attention_bytes, feather=traits.feather)


def _even_cores(length: int, tile: int, align: int) -> list[tuple[int, int]]:
    count = max(1, math.ceil(length / max(tile, align)))
    size = math.ceil(length / count / align) * align
    return [(start, min(start + size, length)) for start in range(0, length, size)]


def _box(core: tuple[int, int], size: int, length: int) -> tuple[int, int]:
    """A window of ``size`` around ``core``, shifted to stay inside [0, length)."""
    if size >= length:
        return 0, length
    centre_start = core[0] - (size - (core[1] - core[0])) // 2
    start = min(max(centre_start, 0), length - size)
    return start, start + size


def plan_tiles(height: int, width: int, tile: int, halo: int, align: int = 1) -> list[Tile]:
    rows, cols = _even_cores(height, tile, align), _even_cores(width, tile, align)
    box_h = min(height, math.ceil((rows[0][1] - rows[0][0] + 2 * halo) / align) * align)
    box_w = min(width, math.ceil((cols[0][1] - cols[0][0] + 2 * halo) / align) * align)
    tiles = []
    for r in rows:
        by = _box(r, box_h, height)
        for c in cols:
            bx = _box(c, box_w, width)
            tiles.append(Tile((r[0], r[1], c[0], c[1]), (by[0], by[1], bx[0], bx[1])))
    return tiles


class SharedNormStats:
    """Instance-norm statistics shared by all tiles of one image (see the module docstring)."""

    def __init__(self) -> None:
        self.values: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.collecting = True
        self.index = 0
        self.cores: list[Box] = []  # per batch element, relative to its box
        self.box_hw = (1, 1)

    def start_batch(self, cores: list[Box], box_hw: tuple[int, int]) -> None:
        self.cores, self.box_hw, self.index = cores, box_hw, 0

    def freeze(self) -> None:
        self.collecting = False

    def normalize(self, x: torch.Tensor, eps: float) -> torch.Tensor:
        if self.collecting:
            mean, var = self._pooled(x)
            self.values.append((mean, var))
        else:
            mean, var = self.values[self.index]
            self.index += 1
        scale = torch.rsqrt(var + eps).view(1, -1, 1, 1)
        # x * scale - mean * scale in one output allocation (a full-resolution map can be GBs)
        return torch.addcmul(-mean.view(1, -1, 1, 1) * scale, x, scale)

    def _pooled(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and variance over the cores, accumulated in float64 a band of rows at a time so the
        temporaries stay small (whole float64 copies of a big first batch cost several GB)."""
        sy, sx = x.shape[-2] / self.box_hw[0], x.shape[-1] / self.box_hw[1]
        regions = [x[b, :, round(y0 * sy):round(y1 * sy), round(x0 * sx):round(x1 * sx)]
                   for b, (y0, y1, x0, x1) in enumerate(self.cores)]
        count = sum(r.shape[1] * r.shape[2] for r in regions)
        mean = sum(band.double().sum(dim=(1, 2)) for band in _row_bands(regions)) / count
        centred = mean.view(-1, 1, 1)
        var = sum((band.double() - centred).square_().sum(dim=(1, 2)) for band in _row_bands(regions)) / count
        return mean.to(x.dtype), var.to(x.dtype)


STATS_BAND_ELEMENTS = 4 * 2**20  # float64 temporaries of at most 32 MB while pooling statistics


def _row_bands(regions: list[torch.Tensor]) -> Iterator[torch.Tensor]:
    """(C, h, w) regions -> views of at most ``STATS_BAND_ELEMENTS`` elements, whole rows each."""
    for r in regions:
        c, h, w = r.shape
        rows = max(1, STATS_BAND_ELEMENTS // max(c * w, 1))
        for y in range(0, h, rows):
            yield r[:, y:y + rows]


@contextmanager
def shared_norm_stats(module: nn.Module, stats: SharedNormStats) -> Iterator[SharedNormStats]:
    norms = [m for m in module.modules() if isinstance(m, SharedStatsInstanceNorm)]
    for m in norms:
        m.shared = stats
    try:
        yield stats
    finally:
        for m in norms:
            m.shared = None


def _crop(t: torch.Tensor, box: Box, scale: float) -> torch.Tensor:
    y0, y1, x0, x1 = (round(v * scale) for v in box)
    return t[..., y0:y1, x0:x1]


def _relative(core: Box, box: Box) -> Box:
    return core[0] - box[0], core[1] - box[0], core[2] - box[2], core[3] - box[2]


def _ramp(length: int, lo_pad: int, hi_pad: int, feather: int) -> torch.Tensor:
    """1 on [lo_pad, length - hi_pad) (the core), falling linearly to 0 over up to ``feather``
    pixels on each side of it, 0 beyond."""
    idx = torch.arange(length, dtype=torch.float32)
    w = torch.ones(length)
    f_lo, f_hi = min(feather, lo_pad), min(feather, hi_pad)
    if lo_pad:
        w = torch.minimum(w, ((idx - (lo_pad - f_lo) + 1) / (f_lo + 1)).clamp(0, 1))
    if hi_pad:
        w = torch.minimum(w, (((length - hi_pad + f_hi) - idx) / (f_hi + 1)).clamp(0, 1))
    return w


class TiledRunner:
    """Runs ``fn`` over tiles of a (1,C,H,W) CPU tensor; see the module docstring."""

    def __init__(self, fn: Callable[..., torch.Tensor], module: nn.Module, spec: TileSpec, device: torch.device,
                 budget_bytes: int | None = None, max_first_batch: int = 16) -> None:
        self.fn, self.module, self.spec, self.device = fn, module, spec, device
        self.budget_bytes = budget_bytes
        self.max_first_batch = max_first_batch
        self.shrinks = 0  # how often a tile had to be split (for provenance and tests)

    def _check_budget(self, boxes: int, box_hw: tuple[int, int]) -> None:
        if self.budget_bytes and self.spec.bytes_per_pixel:
            pixels = box_hw[0] * box_hw[1]
            need = boxes * pixels * self.spec.bytes_per_pixel + min(self.spec.attention_bytes, 4.0 * pixels**2)
            if need > self.budget_bytes:
                raise MemoryBudgetExceeded(f"tile needs ~{need / 2**20:.0f} MiB, budget {self.budget_bytes / 2**20:.0f} MiB")

    def _run_batch(self, x: torch.Tensor, aux: Sequence[tuple[torch.Tensor, float]], tiles: list[Tile],
                   stats: SharedNormStats) -> torch.Tensor:
        box_hw = (tiles[0].box[1] - tiles[0].box[0], tiles[0].box[3] - tiles[0].box[2])
        self._check_budget(len(tiles), box_hw)
        batch = torch.cat([_crop(x, t.box, 1.0) for t in tiles]).to(self.device)
        extra = [torch.cat([_crop(a, t.box, s) for t in tiles]).to(self.device) for a, s in aux]
        stats.start_batch([_relative(t.core, t.box) for t in tiles], box_hw)
        with torch.inference_mode(), shared_norm_stats(self.module, stats):
            return self.fn(batch, *extra).float().cpu()

    def run(self, x: torch.Tensor, aux: Sequence[tuple[torch.Tensor, float]] = (),
            progress: Progress | None = None) -> torch.Tensor:
        progress = progress or Progress()
        spec = self.spec
        _, _, h, w = x.shape
        tiles = plan_tiles(h, w, spec.tile, spec.halo, spec.align)
        first = self._first_batch_size(len(tiles))
        while True:
            sample = [tiles[round(i * (len(tiles) - 1) / max(first - 1, 1))] for i in range(first)] if first < len(tiles) else tiles
            stats = SharedNormStats()
            try:
                sample_out = self._run_batch(x, aux, sample, stats)
                break
            except (torch.OutOfMemoryError, MemoryError) as exc:
                self.shrinks += 1
                if first > 1:
                    first = max(1, first // 2)
                    continue
                if spec.tile <= 4 * spec.align:
                    raise MemoryError(f"not enough memory even for the smallest tile: {exc}") from None
                spec = TileSpec(**{**spec.__dict__, "tile": max(spec.align, spec.tile // 2)})
                self.spec = spec
                tiles = plan_tiles(h, w, spec.tile, spec.halo, spec.align)
                first = self._first_batch_size(len(tiles))
        stats.freeze()
        out_c = sample_out.shape[1]
        s = spec.out_scale
        out = torch.zeros(1, out_c, round(h * s), round(w * s))
        weight = torch.zeros(1, 1, round(h * s), round(w * s))
        for t, o in zip(sample, sample_out):
            self._accumulate(out, weight, t, o[None], h, w)
        rest = [t for t in tiles if t not in sample]
        done = len(sample)
        progress.report(done / len(tiles))
        for t in rest:
            progress.check()
            for sub, o in self._run_with_retry(x, aux, t, stats, spec):
                self._accumulate(out, weight, sub, o, h, w)
            done += 1
            progress.report(done / len(tiles))
        return out.div_(weight.clamp_min_(1e-12))  # in place: the output can be a full-size photo

    def _first_batch_size(self, count: int) -> int:
        first = min(count, self.max_first_batch)
        return max(1, first)

    def _run_with_retry(self, x, aux, tile: Tile, stats: SharedNormStats,
                        spec: TileSpec) -> list[tuple[Tile, torch.Tensor]]:
        try:
            return [(tile, self._run_batch(x, aux, [tile], stats))]
        except (torch.OutOfMemoryError, MemoryError):
            self.shrinks += 1
            y0, y1, x0, x1 = tile.core
            if max(y1 - y0, x1 - x0) <= spec.align * 2:
                raise
        # The halves run only now, outside the except block: the exception is gone, and with its
        # traceback the failed attempt's frames and the tensors they held (its batch, activations).
        results = []
        for sub in self._split(tile, x.shape[-2:], spec):
            results += self._run_with_retry(x, aux, sub, stats, spec)
        return results

    @staticmethod
    def _split(tile: Tile, image_hw: tuple[int, int], spec: TileSpec) -> list[Tile]:
        """``tile``'s core cut in half each way (aligned), each part with its own halo inside the image."""
        h, w = image_hw
        y0, y1, x0, x1 = tile.core
        half = max(spec.align, math.ceil(max(y1 - y0, x1 - x0) / 2 / spec.align) * spec.align)
        subs = []
        for sub in plan_tiles(y1 - y0, x1 - x0, half, 0, spec.align):
            cy0, cy1, cx0, cx1 = sub.core
            core = (y0 + cy0, y0 + cy1, x0 + cx0, x0 + cx1)
            size_y = min(h, math.ceil((cy1 - cy0 + 2 * spec.halo) / spec.align) * spec.align)
            size_x = min(w, math.ceil((cx1 - cx0 + 2 * spec.halo) / spec.align) * spec.align)
            by, bx = _box(core[:2], size_y, h), _box(core[2:], size_x, w)
            subs.append(Tile(core, (by[0], by[1], bx[0], bx[1])))
        return subs

    def _accumulate(self, out: torch.Tensor, weight: torch.Tensor, tile: Tile, result: torch.Tensor, h: int, w: int) -> None:
        s = self.spec.out_scale
        by0, by1, bx0, bx1 = (round(v * s) for v in tile.box)
        cy0, cy1, cx0, cx1 = (round(v * s) for v in tile.core)
        feather = round(self.spec.feather * s)
        wy = _ramp(by1 - by0, cy0 - by0, by1 - cy1, feather)
        wx = _ramp(bx1 - bx0, cx0 - bx0, bx1 - cx1, feather)
        wmap = (wy[:, None] * wx[None, :])[None, None]
        out[..., by0:by1, bx0:bx1] += result * wmap
        weight[..., by0:by1, bx0:bx1] += wmap
