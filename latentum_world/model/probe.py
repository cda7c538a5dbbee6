"""A dense perception auxiliary for the vision encoder (used by stage ``vlm`` only).

From each latent position's ViT features it predicts the board cell under each of its patches
(ice, hole, goal, player, player on goal, player in hole) and the board's level. It stands in for
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


class VisionProbe(nn.Module):
    def __init__(self, config: LatentUMConfig):
        super().__init__()
        self.per_position = config.shuffle**2
        self.cells = nn.Linear(config.vision_feature_dim, self.per_position * NUM_CELL_CODES)
        self.level = nn.Linear(config.vision_feature_dim, len(LEVELS))

    def loss(self, features: torch.Tensor, cell_targets: torch.Tensor, level_targets: torch.Tensor) -> torch.Tensor:
        """:param features: ``(B, P, F)`` ViT features; :param cell_targets: ``(B, P, r*r)``; :param level_targets: ``(B,)``."""
        b, p, _ = features.shape
        cells = self.cells(features).view(b, p, self.per_position, NUM_CELL_CODES)  # (B, P, r*r, C)
        level = self.level(features)  # (B, P, L): every position says which level it sees
        return F.cross_entropy(cells.reshape(-1, NUM_CELL_CODES), cell_targets.reshape(-1)) + F.cross_entropy(
            level.reshape(-1, len(LEVELS)), level_targets[:, None].expand(b, p).reshape(-1)
        )


def probe_targets(m: VSPMap, config: LatentUMConfig) -> np.ndarray:
    """``(P, r*r)`` cell codes under each patch's centre, in the pixel-shuffle order of the features."""
    side, r = config.image_size // config.patch_size, config.shuffle
    centre = (np.arange(side) * config.patch_size + config.patch_size / 2) * m.size / config.image_size
    cell = np.floor(centre).astype(np.int64)  # (side,) board row/column under each patch centre
    codes = m.to_grid().astype(np.int64)[cell[:, None], cell[None, :]]  # (side, side)
    g = side // r
    return codes.reshape(g, r, g, r).transpose(0, 2, 1, 3).reshape(g * g, r * r)
