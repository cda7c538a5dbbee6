"""Vision side of the understanding model: ViT -> pixel shuffle -> ``mlp1`` projector.

``get_vit_feature`` stops before the projector: it is the MBAQ quantizer's input, as in the paper.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from latentum_world.model.config import LatentUMConfig

# ImageNet statistics, as the reference preprocesses images.
IMAGE_MEAN = (0.485, 0.456, 0.406)
IMAGE_STD = (0.229, 0.224, 0.225)


def normalize_images(images: torch.Tensor) -> torch.Tensor:
    """``(B, H, W, 3)`` uint8 -> ``(B, 3, H, W)`` float, ImageNet-normalized."""
    x = images.permute(0, 3, 1, 2).float() / 255.0  # (B, 3, H, W)
    mean = x.new_tensor(IMAGE_MEAN).view(1, 3, 1, 1)
    std = x.new_tensor(IMAGE_STD).view(1, 3, 1, 1)
    return (x - mean) / std


def written_out_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Bidirectional attention over ``(B, h, N, hd)`` as plain matmuls and a softmax: on the 4-token windows of
    local attention, forward only, about 4x faster than PyTorch's fused CPU kernel (whose backward is the
    faster one). The same values up to float rounding."""
    return (q @ k.transpose(-1, -2) * q.shape[-1] ** -0.5).softmax(-1) @ v


class ViTBlock(nn.Module):
    """Pre-norm transformer block with bidirectional attention. ``written_out`` (set on inference copies, such
    as the fused world-model step's encoder): attention through :func:`written_out_attention` instead of
    ``F.scaled_dot_product_attention`` (the model itself keeps one kernel, in training and evaluation alike)."""

    written_out = False

    def __init__(self, dim: int, heads: int, mlp: int):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp), nn.GELU(), nn.Linear(mlp, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)  # 3 x (B, h, N, hd)
        attn = (written_out_attention if self.written_out else F.scaled_dot_product_attention)(q, k, v)  # (B, h, N, hd)
        x = x + self.proj(attn.transpose(1, 2).reshape(b, n, d))
        return x + self.mlp(self.norm2(x))


class VisionEncoder(nn.Module):
    """ViT over fixed-size maze images; returns pixel-shuffled features ``(B, P, vision_feature_dim)``."""

    def __init__(self, config: LatentUMConfig):
        super().__init__()
        self.config = config
        side = config.image_size // config.patch_size
        self.patch_embed = nn.Conv2d(3, config.vision_hidden, config.patch_size, stride=config.patch_size)
        self.pos_embed = nn.Parameter(torch.zeros(1, side * side, config.vision_hidden))
        self.blocks = nn.ModuleList(
            ViTBlock(config.vision_hidden, config.vision_heads, config.vision_mlp) for _ in range(config.vision_layers)
        )
        self.norm = nn.LayerNorm(config.vision_hidden)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """:param images: ``(B, H, W, 3)`` uint8 at ``config.image_size``. Returns ``(B, P, 4*vision_hidden)``."""
        c = self.config
        if images.dim() != 4 or tuple(images.shape[1:]) != (c.image_size, c.image_size, 3):
            raise ValueError(f"expected images of shape (B, {c.image_size}, {c.image_size}, 3), got {tuple(images.shape)}")
        x = self.patch_embed(normalize_images(images))  # (B, Dv, S, S)
        b, d, s, _ = x.shape
        x = x.flatten(2).transpose(1, 2) + self.pos_embed  # (B, S*S, Dv)
        if c.vision_attention == "local":
            # each latent position's r x r patches attend only to each other: (B*P, r*r, Dv), grouped in
            # pixel-shuffle order, so the output needs no further shuffle
            r = c.shuffle
            x = x.view(b, s // r, r, s // r, r, d).permute(0, 1, 3, 2, 4, 5).reshape(-1, r * r, d)
            for block in self.blocks:
                x = block(x)
            return self.norm(x).reshape(b, (s // r) ** 2, r * r * d)  # (B, P, Dv*shuffle^2)
        for block in self.blocks:
            x = block(x)
        x = self.norm(x)
        return pixel_shuffle(x.view(b, s, s, d), c.shuffle)  # (B, P, Dv*shuffle^2)


def pixel_shuffle(x: torch.Tensor, r: int) -> torch.Tensor:
    """``(B, S, S, D)`` -> ``(B, (S/r)^2, D*r^2)``: each ``r x r`` block of patches becomes one position, raster order."""
    b, s, _, d = x.shape
    x = x.view(b, s // r, r, s // r, r, d).permute(0, 1, 3, 2, 4, 5)  # (B, S/r, S/r, r, r, D)
    return x.reshape(b, (s // r) ** 2, r * r * d)


class VisionProjector(nn.Module):
    """``mlp1``: continuous ViT features -> language-model input space (observed images)."""

    def __init__(self, config: LatentUMConfig):
        super().__init__()
        self.net = nn.Sequential(
            nn.LayerNorm(config.vision_feature_dim),
            nn.Linear(config.vision_feature_dim, config.hidden_size),
            nn.GELU(),
            nn.Linear(config.hidden_size, config.hidden_size),
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features)  # (B, P, d)
