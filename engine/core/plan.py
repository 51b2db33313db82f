"""The run policy of one restore, decided once: tile size, attention window, precision and the
networks' memory budget, as one typed ``ExecutionPlan``.

Why one home: the decisions depend on each other (a tile that covers the whole photo still tiles
when the attention must be windowed; the tile that fits depends on the budget left once the photo
and its full-size results are counted) and each reads the networks' descriptors. Spread over the
pipeline, the tiling and the device modules, every caller had to pass the options around and call
the pieces in the right order; here the pipeline asks once and runs what the plan says.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

import torch

from engine.core.translation import (
    NETWORKS,
    Mode,
    input_scales,
    latent_channels,
    tile_specs,
)
from engine.device import (
    DeviceError,
    choose_precision,
    memory_budget,
    process_memory_bytes,
)
from engine.models.checkpoints import ModelBank
from engine.models.networks.partial_nonlocal import AttentionRows
from engine.models.registry import BY_NAME, Attention

MIN_TILE = 64  # pixels: smaller tiles would be mostly halo
TILE_STEP = 32  # "auto" shrinks the tile by this much until its working set fits

Tile = int | Literal["auto", "off"]


def parse_tile(value: str | int) -> Tile:
    """The one reading of a tile setting (CLI ``--tile``, the GUI's tile combo, saved settings,
    ``RestoreOptions``): ``auto``, ``off`` or a tile side in pixels, at least MIN_TILE. Raises
    ValueError saying what is accepted."""
    text = str(value).strip().lower()
    if text in ("auto", "off"):
        return text
    if text.isdigit() and int(text) >= MIN_TILE:
        return int(text)
    raise ValueError(f"the tile size must be auto, off or a number of pixels (at least {MIN_TILE}), not {value!r}")


class PlanOptions(Protocol):
    """What the policy reads from a restore's options (``engine.core.pipeline.RestoreOptions``)."""

    @property
    def tile(self) -> Tile: ...

    @property
    def max_memory_gb(self) -> float | None: ...

    @property
    def precision(self) -> str: ...


# Global attention at scale. The partial non-local block compares every latent cell with every
# other: time grows with the square of the photo's area (a 6000 x 4000 scan has 1.5 million latent
# cells: ~10^15 multiply-adds for one attention layer, days on a CPU). A photo whose long side is
# at most EXACT_ATTENTION_SIDE pixels keeps the exact global attention. For a larger one (unless
# ``--tile off``) a mapping with dense attention runs in tiles whose window (core + margin) spans at
# most ATTENTION_WINDOW latent cells (512 image pixels): a hole borrows features from its surrounding
# 512 x 512 pixels instead of the whole photo, exactly as the official block would inside that
# window, and the cost grows linearly with the area. Encoder and decoder tiles are not affected.
EXACT_ATTENTION_SIDE = 1024
ATTENTION_WINDOW = 128


def attention_window(mode: Mode, options: PlanOptions, h: int, w: int) -> int | None:
    """The mapping's attention window (latent cells) for this photo, None = global."""
    dense = BY_NAME[NETWORKS[mode][1]].traits.attention is Attention.DENSE
    if not dense or options.tile == "off" or max(h, w) <= EXACT_ATTENTION_SIDE:
        return None
    return ATTENTION_WINDOW


MIN_NETWORK_BUDGET = 256 * 2**20  # below this the networks run with the smallest tiles anyway


def network_budget(budget: int, device: torch.device, pixels: int, latent_c: int) -> tuple[int, str | None]:
    """Bytes the networks' tiles may use out of a restoration's ``budget``, and a warning when the
    photo alone needs more than the budget.

    On the CPU the budget covers the whole process: what it already holds (the photo, its copies,
    the mask, the networks, the runtime) and the full-size results the tiled run will still
    allocate (latent maps and output accumulators) are taken off first. On a GPU the budget is
    device memory, which those CPU-side arrays do not use.
    """
    if device.type != "cpu":
        return budget, None
    held = process_memory_bytes() or 0
    latent = 4 * (latent_c + 1) * pixels / 16  # one latent map plus its blending weights
    to_come = int(max(2 * latent, latent + pixels * 16))  # mapping stage, or decoding (RGB + weights)
    left = budget - held - to_come
    if left >= MIN_NETWORK_BUDGET:
        return left, None
    need = (held + to_come + MIN_NETWORK_BUDGET) / 2**30
    return MIN_NETWORK_BUDGET, (f"this photo needs about {need:.1f} GB of memory, more than the limit of "
                                f"{budget / 2**30:.1f} GB; it was restored anyway with the smallest tiles "
                                "(raise the memory limit, or close other photos, to stay within it)")


def choose_tile(bank: ModelBank, tile: Tile, mode: Mode, h: int, w: int, budget: int,
                window: int | None) -> int | None:
    """An explicit size wins (None when it covers the photo and no attention window is needed);
    "off" never tiles; "auto" runs untiled (exact, including the global attention) when the
    estimated peak fits the networks' budget, else picks the largest tile whose working set fits a
    quarter of it. A photo that fits but needs an attention ``window`` is one tile of its full size."""
    if tile == "off":
        return None
    if isinstance(tile, int):
        return None if tile >= max(h, w) and window is None else tile
    specs = tile_specs(bank, mode, 4)  # any tile size: only the memory factors and the encoder halo are read
    areas = [float(scale) ** 2 for scale in input_scales(mode)]  # network input cells per image pixel

    def peak(side_h: int, side_w: int) -> float:
        return max(side_h * side_w * area * spec.bytes_per_pixel for spec, area in zip(specs, areas))

    if peak(h, w) <= budget:
        return None if window is None else max(h, w)
    side, halo = max(h, w), specs[0].halo
    while side > MIN_TILE and peak(side + 2 * halo, side + 2 * halo) > budget / 4:
        side -= TILE_STEP
    return side


def choose_dtype(device: torch.device, preference: str, mode: Mode) -> torch.dtype | None:
    """The autocast dtype (None = exact float32) for the preference, checked against what every
    network of ``mode`` may run under."""
    dtype = choose_precision(device, preference)
    refusing = [name for name in NETWORKS[mode] if (dtype or torch.float32) not in BY_NAME[name].traits.precisions]
    if refusing:
        raise DeviceError(f"{', '.join(refusing)} cannot run in {precision_name(dtype)}; use fp32")
    return dtype


def precision_name(dtype: torch.dtype | None) -> str:
    """The dtype's name as a result's tiling facts record it: float32, bfloat16 or float16."""
    return str(dtype or torch.float32).removeprefix("torch.")


@dataclass(frozen=True)
class ExecutionPlan:
    """How one restore runs, decided before any network does."""

    tile: int | None  # image tile side in pixels; None = one untiled pass (exact, global attention)
    attention_window: int | None  # the mapping's window in latent cells; None = global attention
    precision: torch.dtype | None  # autocast dtype; None = exact float32
    network_budget: int  # bytes the networks' tiles may use
    over_budget: str | None = None  # why the photo alone needs more than the memory limit, if it does
    attention_rows: AttentionRows = "all"  # which attention rows are exact (engine.models.networks.partial_nonlocal)

    def facts(self) -> dict:
        """What a result records about the plan (the sidecar's tiling facts)."""
        return {"network_budget_mib": round(self.network_budget / 2**20), "precision": precision_name(self.precision),
                "attention_rows": self.attention_rows}


def plan_restore(bank: ModelBank, options: PlanOptions, mode: Mode, h: int, w: int,
                 device: torch.device) -> ExecutionPlan:
    """The plan for restoring an ``h`` x ``w`` network input (the padded photo) in ``mode``."""
    budget, over_budget = network_budget(memory_budget(device, options.max_memory_gb), device, h * w,
                                         latent_channels(bank, mode))
    window = attention_window(mode, options, h, w)
    return ExecutionPlan(tile=choose_tile(bank, options.tile, mode, h, w, budget, window),
                         attention_window=window, precision=choose_dtype(device, options.precision, mode),
                         network_budget=budget, over_budget=over_budget, attention_rows=attention_rows(bank, mode))


def attention_rows(bank: ModelBank, mode: Mode) -> AttentionRows:
    """Which rows of a dense attention the restore computes exactly: what the weights' card allows
    (official weights: all of them, as the official code does)."""
    dense = BY_NAME[NETWORKS[mode][1]].traits.attention is Attention.DENSE
    return bank.source.attention_rows() if dense else "all"
