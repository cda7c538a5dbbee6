"""A dense perception auxiliary for the vision encoder (used by stage ``vlm`` only).

From each latent position's ViT features it predicts the board cell under each of its patches
(ice, hole, goal, player, player on goal, player in hole; plus "outside the board" in the
cell-aligned layout) and the board's level. It stands in for
the large-scale pretraining the reference's InternViT brings: without it, the language model has to
discover from answer tokens alone where the player is, and that takes many times longer on a CPU.
It never sees MBAQ codes and is not used at inference.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from envs.vsp.maps import LEVELS, VSPMap
from latentum_world.model.config import LatentUMConfig

NUM_CELL_CODES = 6
OUTSIDE = NUM_CELL_CODES  # the probe's code for a patch beyond the board (cell-aligned layout only)


def num_cell_codes(config: LatentUMConfig) -> int:
    return NUM_CELL_CODES + (1 if config.cell_pixels else 0)


class VisionProbe(nn.Module):
    def __init__(self, config: LatentUMConfig):
        super().__init__()
        self.per_position = config.shuffle**2
        self.num_codes = num_cell_codes(config)
        self.cells = nn.Linear(config.vision_feature_dim, self.per_position * self.num_codes)
        self.level = nn.Linear(config.vision_feature_dim, len(LEVELS))

    def loss(self, features: torch.Tensor, cell_targets: torch.Tensor, level_targets: torch.Tensor) -> torch.Tensor:
        """:param features: ``(B, P, F)`` ViT features; :param cell_targets: ``(B, P, r*r)``; :param level_targets: ``(B,)``."""
        b, p, _ = features.shape
        cells = self.cells(features).view(b, p, self.per_position, self.num_codes)  # (B, P, r*r, C)
        level = self.level(features)  # (B, P, L): every position says which level it sees
        return F.cross_entropy(cells.reshape(-1, self.num_codes), cell_targets.reshape(-1)) + F.cross_entropy(
            level.reshape(-1, len(LEVELS)), level_targets[:, None].expand(b, p).reshape(-1)
        )


def probe_targets(m: VSPMap, config: LatentUMConfig, player: bool = True) -> np.ndarray:
    """``(P, r*r)`` cell codes under each patch's centre, in the pixel-shuffle order of the features
    (``player=False``: of the board drawn without the player)."""
    side, r = config.image_size // config.patch_size, config.shuffle
    centre_px = np.arange(side) * config.patch_size + config.patch_size / 2  # (side,) patch centres in pixels
    if config.cell_pixels:
        cell = np.floor(centre_px / config.cell_pixels).astype(np.int64)  # cells from the top-left corner
    else:
        cell = np.floor(centre_px * m.size / config.image_size).astype(np.int64)  # the board stretched over the image
    inside = cell < m.size
    cell = np.minimum(cell, m.size - 1)
    codes = m.to_grid(player).astype(np.int64)[cell[:, None], cell[None, :]]  # (side, side)
    codes[~(inside[:, None] & inside[None, :])] = OUTSIDE
    g = side // r
    return codes.reshape(g, r, g, r).transpose(0, 2, 1, 3).reshape(g * g, r * r)
