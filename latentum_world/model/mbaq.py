"""MBAQ: model-behaviour-aligned quantization of the vision features.

MLP down-projection -> product quantization (K codebooks, each over its own slice of the latent;
straight-through estimator; codebook + commitment + entropy terms; EMA usage with dead-code restart
from batch vectors) -> MLP up-projection into the language model's input space. The codes are
trained (stage ``mbaq``) to keep the frozen model's answers, never to reconstruct pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from latentum_world.model.config import LatentUMConfig


@dataclass
class MBAQOutput:
    x_vq: torch.Tensor  # (B, P, d) language-model input embeddings of the quantized image
    z_q: torch.Tensor  # (B, P, code_dim) quantized latent (straight-through)
    indices: torch.Tensor  # (B, P, K) code of each position in each codebook
    loss: torch.Tensor  # () codebook + commitment + entropy terms, averaged over codebooks


class VectorQuantizer(nn.Module):
    """One codebook of ``size`` entries over ``dim`` channels."""

    def __init__(self, size: int, dim: int, config: LatentUMConfig):
        super().__init__()
        self.size, self.dim = size, dim
        self.commitment_weight, self.entropy_weight = config.commitment_weight, config.entropy_weight
        self.decay, self.dead_fraction, self.max_restarts = config.usage_decay, config.dead_code_fraction, config.max_restarts
        self.codebook = nn.Parameter(torch.empty(size, dim).uniform_(-1.0 / size, 1.0 / size))
        self.register_buffer("usage", torch.full((size,), 1.0 / size))  # EMA of each code's share of assignments
        self._last_z: torch.Tensor | None = None

    def distances(self, z: torch.Tensor) -> torch.Tensor:
        """Squared L2 distances ``(N, size)`` from ``z`` ``(N, dim)`` to every code."""
        return z.pow(2).sum(1, keepdim=True) - 2 * z @ self.codebook.t() + self.codebook.pow(2).sum(1)[None]

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``z`` ``(N, dim)`` -> (straight-through ``z_q`` ``(N, dim)``, indices ``(N,)``, loss ``()``)."""
        d2 = self.distances(z)  # (N, size)
        idx = d2.argmin(1)  # (N,)
        z_q = self.codebook[idx]  # (N, dim)
        loss = F.mse_loss(z_q, z.detach()) + self.commitment_weight * F.mse_loss(z, z_q.detach())
        if self.entropy_weight:
            avg = torch.softmax(-d2, dim=1).mean(0)  # (size,) batch-averaged soft assignment
            entropy = -(avg * torch.log(avg + 1e-10)).sum()
            loss = loss - self.entropy_weight * entropy
        if self.training:
            with torch.no_grad():
                counts = torch.bincount(idx, minlength=self.size).float()
                if dist.is_available() and dist.is_initialized():
                    dist.all_reduce(counts)
                self.usage.mul_(self.decay).add_(counts / counts.sum().clamp(min=1), alpha=1 - self.decay)
                self._last_z = z.detach()
        return z + (z_q - z).detach(), idx, loss

    @torch.no_grad()
    def restart_dead_codes(self, generator: torch.Generator | None = None) -> int:
        """Re-initialise up to ``max_restarts`` codes used less than ``dead_fraction`` of uniform from batch vectors.

        Call after the optimizer step (never inside forward: the codebook is saved for backward).
        Rank 0 decides and broadcasts, so DDP replicas stay identical. Returns the number restarted.
        """
        if self._last_z is None:
            return 0
        dead = torch.nonzero(self.usage < self.dead_fraction / self.size).flatten()
        n = min(len(dead), self.max_restarts, len(self._last_z))
        if n:
            pick = torch.randperm(len(self._last_z), generator=generator, device=self._last_z.device)[:n]
            self.codebook.data[dead[:n]] = self._last_z[pick]
            self.usage[dead[:n]] = 1.0 / self.size
        if dist.is_available() and dist.is_initialized():
            dist.broadcast(self.codebook.data, 0)
            dist.broadcast(self.usage, 0)
        self._last_z = None
        return n


class MBAQuantizer(nn.Module):
    """Product quantizer over ``num_codebooks`` slices of a down-projected latent, with an up-projection."""

    def __init__(self, config: LatentUMConfig):
        super().__init__()
        self.config = config
        k, c = config.num_codebooks, config.code_dim // config.num_codebooks
        self.down_proj = nn.Sequential(
            nn.Linear(config.vision_feature_dim, config.quantizer_hidden), nn.GELU(), nn.Linear(config.quantizer_hidden, config.code_dim)
        )
        self.codebooks = nn.ModuleList(VectorQuantizer(config.codebook_size, c, config) for _ in range(k))
        self.up_proj = nn.Sequential(
            nn.Linear(config.code_dim, config.quantizer_hidden), nn.GELU(), nn.Linear(config.quantizer_hidden, config.hidden_size)
        )

    def forward(self, features: torch.Tensor) -> MBAQOutput:
        """:param features: ViT features ``(B, P, vision_feature_dim)``."""
        b, p, _ = features.shape
        z = self.down_proj(features).reshape(b * p, self.config.num_codebooks, -1)  # (B*P, K, c)
        outs = [vq(z[:, i]) for i, vq in enumerate(self.codebooks)]
        z_q = torch.cat([o[0] for o in outs], dim=1).view(b, p, -1)  # (B, P, code_dim)
        indices = torch.stack([o[1] for o in outs], dim=1).view(b, p, -1)  # (B, P, K)
        loss = torch.stack([o[2] for o in outs]).mean()
        return MBAQOutput(self.up_proj(z_q), z_q, indices, loss)

    @torch.no_grad()
    def encode(self, features: torch.Tensor) -> torch.Tensor:
        """Codes ``(B, P, K)`` of ViT features ``(B, P, F)``."""
        b, p, _ = features.shape
        z = self.down_proj(features).reshape(b * p, self.config.num_codebooks, -1)
        return torch.stack([vq.distances(z[:, i]).argmin(1) for i, vq in enumerate(self.codebooks)], 1).view(b, p, -1)

    def indices_to_latent(self, indices: torch.Tensor) -> torch.Tensor:
        """Codes ``(..., K)`` -> ``z_q`` ``(..., code_dim)`` by codebook lookup."""
        if indices.shape[-1] != len(self.codebooks):
            raise ValueError(f"expected {len(self.codebooks)} codes per position, got shape {tuple(indices.shape)}")
        return torch.cat([vq.codebook[indices[..., i]] for i, vq in enumerate(self.codebooks)], dim=-1)

    def indices_to_feature(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Codes -> (``z_q``, ``up_proj(z_q)``)."""
        z_q = self.indices_to_latent(indices)
        return z_q, self.up_proj(z_q)

    def restart_dead_codes(self, generator: torch.Generator | None = None) -> int:
        return sum(vq.restart_dead_codes(generator) for vq in self.codebooks)


def codebook_perplexity(indices: torch.Tensor, codebook_size: int) -> torch.Tensor:
    """Perplexity ``(K,)`` of each codebook's code distribution over ``indices`` ``(..., K)``."""
    flat = indices.reshape(-1, indices.shape[-1])
    out = []
    for i in range(flat.shape[1]):
        p = torch.bincount(flat[:, i], minlength=codebook_size).float()
        p = p / p.sum()
        out.append(torch.exp(-(p * torch.log(p + 1e-10)).sum()))
    return torch.stack(out)
