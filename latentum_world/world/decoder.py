"""The pixel decoder: MBAQ latents ``z_q`` -> RGB, for people only (``render()``, TensorBoard).

A separate small network trained on FROZEN codes (stage ``decoder``): it never sends gradients into
the model, and the model never sees its images (except in the explicitly named pixel-mediated
baseline). Saved as its own Hugging Face directory ``<model dir>/decoder``.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel

from latentum_world.model.quiet import from_pretrained_quietly


class PixelDecoderConfig(PretrainedConfig):
    model_type = "latentum_pixel_decoder"

    def __init__(self, code_dim: int = 64, grid_side: int = 4, image_size: int = 128, channels=(96, 96, 64, 48, 32),
                 context_layers: int = 0, context_heads: int = 4, **kw):
        self.code_dim, self.grid_side, self.image_size, self.channels = code_dim, grid_side, image_size, list(channels)
        self.context_layers, self.context_heads = context_layers, context_heads
        super().__init__(**kw)


class UpBlock(nn.Module):
    """2x nearest upsampling, then two 3x3 convolutions, each group-normalised (without the norms the
    residual sum grew ~30x per block and training diverged to a constant image)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.norm1 = nn.GroupNorm(_groups(cout), cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.norm2 = nn.GroupNorm(_groups(cout), cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2, mode="nearest")
        x = F.gelu(self.norm1(self.conv1(x)))
        return x + F.gelu(self.norm2(self.conv2(x)))


def _groups(channels: int) -> int:
    return next(g for g in (8, 4, 2, 1) if channels % g == 0)


class PixelDecoder(PreTrainedModel):
    config_class = PixelDecoderConfig
    base_model_prefix = "decoder"

    def __init__(self, config: PixelDecoderConfig):
        super().__init__(config)
        ups = int(np.log2(config.image_size // config.grid_side))
        if config.grid_side * 2**ups != config.image_size or len(config.channels) != ups:
            raise ValueError(f"need {ups} channel widths to go from {config.grid_side} to {config.image_size} pixels")
        self.stem = nn.Conv2d(config.code_dim, config.channels[0], 1)
        width, positions = config.channels[0], config.grid_side**2
        if width % config.context_heads:
            raise ValueError(f"channels[0]={width} must split evenly over context_heads={config.context_heads}")
        # self-attention over all positions before upsampling: what a position shows can depend on the others
        # (as it does for the language model that reads the codes); without it the decoder drew ghosts of
        # holes and goals where one position's codes alone were ambiguous
        self.context_pos = nn.Parameter(0.02 * torch.randn(positions, width)) if config.context_layers else None
        self.context = nn.ModuleList(
            nn.TransformerEncoderLayer(width, config.context_heads, 2 * width, dropout=0.0, activation="gelu",
                                       batch_first=True, norm_first=True)
            for _ in range(config.context_layers))
        chans = [config.channels[0], *config.channels]
        self.blocks = nn.ModuleList(UpBlock(chans[i], chans[i + 1]) for i in range(ups))
        self.out = nn.Conv2d(config.channels[-1], 3, 3, padding=1)
        self.post_init()

    def forward(self, z_q: torch.Tensor) -> torch.Tensor:
        """``(B, P, code_dim)`` -> ``(B, 3, S, S)`` in [0, 1]."""
        b, p, c = z_q.shape
        g = self.config.grid_side
        x = self.stem(z_q.transpose(1, 2).reshape(b, c, g, g))  # raster order of positions = rows of the grid
        if self.context_pos is not None:
            t = x.flatten(2).transpose(1, 2) + self.context_pos  # (B, P, width)
            for layer in self.context:
                t = layer(t)
            x = t.transpose(1, 2).reshape(b, -1, g, g)
        for block in self.blocks:
            x = block(x)
        return torch.sigmoid(self.out(x))

    def loss(self, z_q: torch.Tensor, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """MSE against uint8 images ``(B, S, S, 3)``, and the batch PSNR in dB."""
        target = images.permute(0, 3, 1, 2).float() / 255.0
        mse = F.mse_loss(self(z_q), target)
        return mse, 10 * torch.log10(1.0 / mse.detach().clamp(min=1e-10))


def decoder_dir(model) -> Path:
    return Path(model.config._name_or_path) / "decoder"


@lru_cache(maxsize=4)
def _load_decoder(path: str) -> PixelDecoder:
    return from_pretrained_quietly(PixelDecoder, path).eval()


def to_pictures(img: torch.Tensor) -> np.ndarray:
    """The decoder's ``(B, 3, S, S)`` output in [0, 1] -> ``(B, S, S, 3)`` uint8 pictures."""
    return (img.permute(0, 2, 3, 1).clamp(0, 1) * 255 + 0.5).to(torch.uint8).cpu().numpy()


@torch.no_grad()
def decode_images(model, codes: torch.Tensor, decoder: PixelDecoder | None = None) -> np.ndarray:
    """``(B, S, S, 3)`` uint8 pictures of codes ``(B, P, K)``, by ``decoder`` (default: the one saved beside the model)."""
    if decoder is None:
        path = decoder_dir(model)
        if not (path / "model.safetensors").is_file():
            raise FileNotFoundError(f"no pixel decoder at {path}; train one with `latentum-world train decoder init_from=<model dir>`")
        decoder = _load_decoder(str(path))
    z_q = model.quantizer.indices_to_latent(codes.to(next(model.parameters()).device))
    return to_pictures(decoder.to(z_q.device)(z_q))  # (B, 3, S, S) -> uint8
