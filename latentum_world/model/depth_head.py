"""The depth head: turns one latent position's hidden state into its K codebook indices.

A small causal transformer over the depth sequence ``[h_t, E_1(c_1), ..., E_{K-1}(c_{K-1})]``:
per-codebook input embeddings, one shared output layer over the codebook entries (RQ-Transformer
style, as in the reference's autoregressive head). Position ``k`` of the output predicts ``c_{k+1}``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from latentum_world.model.config import LatentUMConfig
from latentum_world.model.language import RMSNorm, SwiGLU, apply_rotary, rotary_table


class DepthBlock(nn.Module):
    def __init__(self, dim: int, heads: int, mlp: int, eps: float):
        super().__init__()
        self.h, self.hd = heads, dim // heads
        self.norm1, self.norm2 = RMSNorm(dim, eps), RMSNorm(dim, eps)
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.q_norm, self.k_norm = RMSNorm(self.hd, eps), RMSNorm(self.hd, eps)
        self.o = nn.Linear(dim, dim, bias=False)
        self.mlp = SwiGLU(dim, mlp)

    def forward(self, x: torch.Tensor, kv: list | None = None) -> torch.Tensor:
        """``x`` ``(N, k, d)``: the whole depth sequence (``kv=None``) or ONE new step appended to ``kv``
        (a ``[keys, values]`` list this call extends: incremental sampling)."""
        n, k, d = x.shape
        start = 0 if kv is None or kv[0] is None else kv[0].shape[2]
        q, key, v = self.qkv(self.norm1(x)).view(n, k, 3, self.h, self.hd).unbind(2)  # 3 x (N, k, h, hd)
        cos, sin = rotary_table(self.hd, 10000.0, x.device, x.dtype)  # (L, hd): every row shares positions
        rope = cos[start : start + k], sin[start : start + k]  # (k, hd)
        qk = torch.stack([self.q_norm(q), self.k_norm(key)], dim=1).transpose(2, 3)  # (N, 2, h, k, hd)
        q, key = apply_rotary(qk, *rope).unbind(1)  # (N, h, k, hd) each: both rotated in one go
        v = v.transpose(1, 2)
        if kv is not None:
            if kv[0] is not None:
                key, v = torch.cat([kv[0], key], 2), torch.cat([kv[1], v], 2)
            kv[0], kv[1] = key, v
        att = F.scaled_dot_product_attention(q, key, v, is_causal=start == 0 and k > 1)  # (N, h, k, hd)
        x = x + self.o(att.transpose(1, 2).reshape(n, k, d))
        return x + self.mlp(self.norm2(x))


class DepthHead(nn.Module):
    def __init__(self, config: LatentUMConfig):
        super().__init__()
        d, self.k, self.v = config.hidden_size, config.num_codebooks, config.codebook_size
        self.code_embed = nn.ModuleList(nn.Embedding(self.v, d) for _ in range(self.k - 1))  # E_1 .. E_{K-1}
        self.layers = nn.ModuleList(DepthBlock(d, config.depth_heads, config.mlp_size, config.rms_eps) for _ in range(config.depth_layers))
        self.norm = RMSNorm(d, config.rms_eps)
        self.head = nn.Linear(d, self.v, bias=False)  # shared by every codebook

    def _run(self, seq: torch.Tensor, kv: list | None = None) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            seq = layer(seq, None if kv is None else kv[i])
        return self.head(self.norm(seq))  # (N, len, V)

    def forward(self, h: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits ``(N, K, V)`` from hidden states ``h`` ``(N, d)`` and target codes ``(N, K)``."""
        prev = [self.code_embed[i](codes[:, i]) for i in range(self.k - 1)]  # K-1 x (N, d)
        return self._run(torch.stack([h, *prev], dim=1))  # (N, K, d) -> (N, K, V)

    def loss(self, h: torch.Tensor, codes: torch.Tensor, weights: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Cross-entropy over all codebooks (weighted per position by ``weights`` ``(N,)`` if given), and
        per-position exact code accuracy (all K right)."""
        logits = self(h, codes)
        ce = F.cross_entropy(logits.reshape(-1, self.v), codes.reshape(-1), reduction="none").view(codes.shape)  # (N, K)
        ce = ce.mean() if weights is None else (ce.mean(-1) * weights).sum() / weights.sum()
        acc = (logits.argmax(-1) == codes).all(-1).float().mean()
        return ce, acc

    @torch.no_grad()
    def sample(self, h: torch.Tensor, sampling: Sampling) -> torch.Tensor:
        """Codes ``(N, K)`` for hidden states ``(N, d)``, one codebook at a time."""
        kv = [[None, None] for _ in self.layers]  # cached keys/values: each sub-step runs one new token
        step = h[:, None]  # (N, 1, d)
        codes = []
        for i in range(self.k):
            c = sampling.pick(self._run(step, kv)[:, -1])  # (N,)
            codes.append(c)
            if i < self.k - 1:
                step = self.code_embed[i](c)[:, None]
        return torch.stack(codes, dim=1)


class Sampling:
    """How codes are drawn: greedy, or temperature / top-k / top-p from a seeded ``torch.Generator``."""

    def __init__(self, temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
                 greedy: bool = False, generator: torch.Generator | None = None):
        if temperature <= 0 and not greedy:
            raise ValueError(f"temperature must be > 0 (or use greedy=True), got {temperature}")
        if top_p is not None and not 0 < top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {top_p}")
        self.temperature, self.top_k, self.top_p, self.greedy, self.generator = temperature, top_k, top_p, greedy, generator

    def pick(self, logits: torch.Tensor) -> torch.Tensor:
        if self.greedy:
            return logits.argmax(-1)
        logits = logits / self.temperature
        if self.top_k is not None and self.top_k < logits.shape[-1]:
            kth = logits.topk(self.top_k, dim=-1).values[:, -1:]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        if self.top_p is not None and self.top_p < 1:
            sorted_logits, order = logits.sort(dim=-1, descending=True)
            probs = sorted_logits.softmax(-1)
            drop = probs.cumsum(-1) - probs > self.top_p  # keep the smallest prefix reaching top_p
            sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
            logits = torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)
        probs = logits.softmax(-1)
        if isinstance(self.generator, (list, tuple)):  # one generator per row: rows independent of batch company
            if len(self.generator) != probs.shape[0]:
                raise ValueError(f"{len(self.generator)} generators for {probs.shape[0]} rows")
            return torch.cat([torch.multinomial(p[None], 1, generator=g)[0] for p, g in zip(probs, self.generator)])
        return torch.multinomial(probs, 1, generator=self.generator).squeeze(-1)
