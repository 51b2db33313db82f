"""The refinement stage: the latent chain's output refined at the photo's own resolution.

Runs when the weights have a ``refine`` network (Heirloom's own; official weights never do). Tiled
always (``REFINE_TILE`` px cores, the network's receptive radius as halo): the network has no
normalisation, so tiles equal the untiled result, and a 24 MP scan never needs its full-size
feature maps at once. A 1 MP photo is one tile.
"""

from __future__ import annotations

import torch

from engine.core.tiling import TiledRunner, TileSpec, pad_to_multiple
from engine.core.translation import autocast
from engine.models.checkpoints import ModelBank
from engine.models.registry import BY_NAME
from engine.progress import Progress

REFINE = "refine"
REFINE_TILE = 1024  # core px (1120 px boxes with the halo); the memory budget splits tiles further when needed


def has_refinement(bank: ModelBank) -> bool:
    """Whether the bank's weights carry a refinement network."""
    return bank.source.has(BY_NAME[REFINE])


def refine(bank: ModelBank, restored: torch.Tensor, photo: torch.Tensor, holes: torch.Tensor | None,
           budget_bytes: int | None = None, precision: torch.dtype | None = None,
           progress: Progress | None = None, tile: int = REFINE_TILE) -> torch.Tensor:
    """restored, photo (1,3,H,W) in [-1, 1] (photo: holes filled white, as the chain saw it), holes
    (1,1,H,W) 0/1 or None (quality mode: nothing masked). Returns the refined (1,3,H,W) on the CPU,
    in [-1, 1] before clamping. H, W need not be multiples of anything: the network's own multiple is
    reached by reflect padding that is cropped afterwards."""
    network = bank.get(REFINE)
    traits = BY_NAME[REFINE].traits
    device = next(network.parameters()).device
    h, w = restored.shape[-2:]
    if holes is None:
        holes = torch.zeros((1, 1, h, w))
    multiple = traits.spatial_multiple
    restored, _ = pad_to_multiple(restored.cpu(), multiple)
    photo, _ = pad_to_multiple(photo.cpu(), multiple)
    holes, _ = pad_to_multiple(holes.cpu().float(), multiple)

    def run(restored_tile: torch.Tensor, photo_tile: torch.Tensor, holes_tile: torch.Tensor) -> torch.Tensor:
        with autocast(device, precision):
            return network(photo_tile, restored_tile, holes_tile)

    widest = max(m.out_channels for m in network.modules() if isinstance(m, torch.nn.Conv2d))
    spec = TileSpec.for_network(traits, tile, traits.spatial_multiple, widest)
    runner = TiledRunner(run, network, spec, device, budget_bytes, max_first_batch=1)
    refined = runner.run(restored.float(), [(photo.float(), 1.0), (holes, 1.0)], progress=progress)
    return refined[..., :h, :w]
