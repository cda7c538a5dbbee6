"""The decoder-only language model: the understanding branch that MoME later doubles.

RMSNorm, rotary positions, causal SDPA attention with q/k norms, SwiGLU MLP and a KV cache that can
be cropped (the roll-back LatentUM needs before re-ingesting a generated image). Each layer is a
:class:`MoMELayer`: with ``generation_branch`` off it is a plain decoder layer; with it on, tokens
whose ``gen_mask`` is set use the ``*_vision`` copies of the projections, q/k norms and MLP, while
attention itself runs once over the joint sequence and the layer norms stay shared.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from latentum_world.model.config import LatentUMConfig


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x, (x.shape[-1],), self.weight, self.eps)  # x * rsqrt(mean(x^2) + eps) * weight


_ROTARY_TABLE_LENGTH = 4096
_rotary_table_cache: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}


def rotary_table(hd: int, theta: float, device, dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """``cos``, ``sin`` ``(L, hd)`` for positions ``0 .. L-1`` in the layout :func:`apply_rotary` takes
    (``[cos, cos]`` and ``[-sin, sin]`` over the two halves), made once per (size, device, dtype)."""
    key = (hd, theta, str(device), dtype)
    if key not in _rotary_table_cache:
        _rotary_table_cache[key] = _rotary_angles(torch.arange(_ROTARY_TABLE_LENGTH, device=device), hd, theta, dtype)
    return _rotary_table_cache[key]


def _rotary_angles(positions: torch.Tensor, hd: int, theta: float, dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """``(..., hd)`` tables for integer ``positions`` ``(...)``."""
    inv = 1.0 / (theta ** (torch.arange(0, hd, 2, device=positions.device, dtype=torch.float32) / hd))  # (hd/2,)
    ang = positions.to(torch.float32)[..., None] * inv  # (..., hd/2)
    cos, sin = ang.cos().to(dtype), ang.sin().to(dtype)
    return torch.cat([cos, cos], -1), torch.cat([-sin, sin], -1)


def rotary_tables(positions: torch.Tensor, hd: int, theta: float, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """``cos``, ``sin`` ``(B, 1, 1, T, hd)`` for integer ``positions`` ``(B, T)``, broadcasting over heads and
    over the stacked (q, k) pair: computed once per forward, shared by every layer (looked up in a table
    for positions below 4096)."""
    if torch.compiler.is_compiling() or (
        positions.numel() and int(positions.max()) < _ROTARY_TABLE_LENGTH and int(positions.min()) >= 0
    ):  # compiled (no data-dependent branch): positions must be below 4096, as in every imagination loop
        cos, sin = rotary_table(hd, theta, positions.device, dtype)
        return cos[positions][:, None, None], sin[positions][:, None, None]
    cos, sin = _rotary_angles(positions, hd, theta, dtype)
    return cos[:, None, None], sin[:, None, None]


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate ``x`` ``(..., T, hd)`` (half-split rotary embedding) with tables from :func:`rotary_table`:
    ``[x1 cos - x2 sin, x2 cos + x1 sin]`` written as ``x * [cos, cos] + [x2, x1] * [-sin, sin]``
    (four ops instead of seven, bit-identical)."""
    half = x.shape[-1] // 2
    return x * cos + torch.cat([x[..., half:], x[..., :half]], dim=-1) * sin


class KVCache:
    """Per-layer keys/values ``(B, h, S, hd)`` plus which cached keys are real (not padding)."""

    def __init__(self, num_layers: int):
        self.keys: list[torch.Tensor | None] = [None] * num_layers
        self.values: list[torch.Tensor | None] = [None] * num_layers
        self.key_valid: torch.Tensor | None = None  # (B, S) bool

    @property
    def length(self) -> int:
        return 0 if self.keys[0] is None else self.keys[0].shape[2]

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.keys[layer] is not None:
            k = torch.cat([self.keys[layer], k], dim=2)
            v = torch.cat([self.values[layer], v], dim=2)
        self.keys[layer], self.values[layer] = k, v
        return k, v

    def crop(self, length: int) -> None:
        """Forget everything after the first ``length`` positions (roll back)."""
        for i in range(len(self.keys)):
            if self.keys[i] is not None:
                self.keys[i] = self.keys[i][:, :, :length]
                self.values[i] = self.values[i][:, :, :length]
        if self.key_valid is not None:
            self.key_valid = self.key_valid[:, :length]

    def clone(self) -> KVCache:
        new = KVCache(len(self.keys))
        new.keys, new.values = list(self.keys), list(self.values)  # tensors are never modified in place
        new.key_valid = self.key_valid
        return new

    def assign(self, rows: torch.Tensor, other: KVCache) -> None:
        """Replace batch ``rows`` with ``other``'s rows (same length; out of place, so clones stay valid)."""
        if other.length != self.length:
            raise ValueError(f"cannot assign a cache of length {other.length} into one of length {self.length}")
        for i in range(len(self.keys)):
            self.keys[i] = self.keys[i].index_copy(0, rows, other.keys[i])
            self.values[i] = self.values[i].index_copy(0, rows, other.values[i])
        self.key_valid = self.key_valid.index_copy(0, rows, other.key_valid)

    def select(self, index: torch.Tensor) -> KVCache:
        """The cache of a subset / reordering of the batch."""
        new = KVCache(len(self.keys))
        new.keys = [None if k is None else k[index] for k in self.keys]
        new.values = [None if v is None else v[index] for v in self.values]
        new.key_valid = None if self.key_valid is None else self.key_valid[index]
        return new


def route(x: torch.Tensor, gen_mask: torch.Tensor | bool | None, text_fn, vision_fn) -> torch.Tensor:
    """Hard MoME routing of ``x`` ``(B, T, ...)``: ``vision_fn`` where ``gen_mask`` ``(B, T)`` is set, else ``text_fn``.

    ``gen_mask=True`` routes every token to the generation branch (the imagination loop) without
    inspecting a mask; ``None`` / ``False`` route every token to the understanding branch.
    """
    if vision_fn is None or gen_mask is None or gen_mask is False:
        return text_fn(x)
    if gen_mask is True:
        return vision_fn(x)
    if not bool(gen_mask.any()):
        return text_fn(x)
    if bool(gen_mask.all()):
        return vision_fn(x)
    text_out = text_fn(x[~gen_mask])  # (n_text, ...)
    out = x.new_empty((*gen_mask.shape, *text_out.shape[1:]))
    out[~gen_mask] = text_out
    out[gen_mask] = vision_fn(x[gen_mask])
    return out


def fused_linear(owner: nn.Module, key: str, linears: list[nn.Linear], x: torch.Tensor) -> torch.Tensor:
    """``cat([l(x) for l in linears], -1)`` as ONE matmul when no gradient is recorded (inference).

    The concatenated weight is cached on ``owner`` and rebuilt whenever a weight is replaced, moved or
    updated in place (tracked by storage pointer and version counter), so it never goes stale. With
    gradients on (training) the separate layers run, so parameters and their gradients are untouched.
    Bias-free layers only.
    """
    if torch.is_grad_enabled():
        return torch.cat([lin(x) for lin in linears], dim=-1)
    if torch.compiler.is_compiling():  # traced once: the concatenation is part of the compiled graph
        return F.linear(x, torch.cat([lin.weight for lin in linears], dim=0))
    stamp = tuple((lin.weight.data_ptr(), lin.weight._version, lin.weight.dtype) for lin in linears)
    cache = owner.__dict__.setdefault("_fused_weights", {})
    hit = cache.get(key)
    if hit is None or hit[0] != stamp:
        hit = cache[key] = (stamp, torch.cat([lin.weight for lin in linears], dim=0))
    return F.linear(x, hit[1])


class SwiGLU(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.gate = nn.Linear(dim, hidden, bias=False)
        self.up = nn.Linear(dim, hidden, bias=False)
        self.down = nn.Linear(hidden, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled():
            return self.down(F.silu(self.gate(x)) * self.up(x))
        gate, up = fused_linear(self, "gate_up", [self.gate, self.up], x).chunk(2, dim=-1)  # inference: one matmul
        return self.down(F.silu(gate) * up)


class MoMEAttention(nn.Module):
    """Causal self-attention with per-branch q/k/v/o projections and q/k norms, one shared attention op."""

    def __init__(self, config: LatentUMConfig):
        super().__init__()
        d, self.h, self.hd, self.theta = config.hidden_size, config.num_heads, config.head_dim, config.rope_theta
        self.q_proj, self.k_proj, self.v_proj, self.o_proj = (nn.Linear(d, d, bias=False) for _ in range(4))
        self.q_norm, self.k_norm = RMSNorm(self.hd, config.rms_eps), RMSNorm(self.hd, config.rms_eps)
        self.has_vision = False

    def add_generation_branch(self) -> None:
        """Create the ``*_vision`` copies, initialised from the (trained) text weights."""
        for name in ("q_proj", "k_proj", "v_proj", "o_proj", "q_norm", "k_norm"):
            setattr(self, f"{name}_vision", _copy(getattr(self, name)))
        self.has_vision = True

    def _branch(self, name: str):
        return getattr(self, f"{name}_vision") if self.has_vision else None

    def forward(self, x, rope, attn_mask, gen_mask=None, cache: KVCache | None = None, layer: int = 0):
        """:param rope: ``(cos, sin)`` ``(B, 1, 1, T, hd)`` from :func:`rotary_tables` for this chunk's positions."""
        b, t, d = x.shape
        gm = gen_mask if self.has_vision else None

        def branch_qkv(suffix: str):
            projs = [getattr(self, f"{n}_proj{suffix}") for n in "qkv"]
            q_norm, k_norm = getattr(self, f"q_norm{suffix}"), getattr(self, f"k_norm{suffix}")

            def fn(z: torch.Tensor) -> torch.Tensor:  # (..., d) -> (..., 3, h, hd): normed q, normed k, v
                q, k, v = fused_linear(self, "qkv" + suffix, projs, z).view(*z.shape[:-1], 3, self.h, self.hd).unbind(-3)
                return torch.stack([q_norm(q), k_norm(k), v], dim=-3)

            return fn

        qkv = route(x, gm, branch_qkv(""), branch_qkv("_vision") if gm is not None else None)  # (B, T, 3, h, hd)
        qkv = qkv.transpose(1, 3)  # (B, h, 3, T, hd)
        q, k = apply_rotary(qkv[:, :, :2], *rope).unbind(2)  # q and k rotated in one go: 2 x (B, h, T, hd)
        v = qkv[:, :, 2]
        if cache is not None:
            k, v = cache.update(layer, k, v)  # (B, h, S, hd)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)  # (B, h, T, hd)
        out = out.transpose(1, 2).reshape(b, t, d)
        return route(out, gm, self.o_proj, self._branch("o_proj") if gm is not None else None)


class MoMELayer(nn.Module):
    """Decoder layer: shared norms, branch-routed attention projections and MLP."""

    def __init__(self, config: LatentUMConfig):
        super().__init__()
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_eps)
        self.self_attn = MoMEAttention(config)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_eps)
        self.mlp = SwiGLU(config.hidden_size, config.mlp_size)
        self.has_vision = False

    def add_generation_branch(self) -> None:
        self.self_attn.add_generation_branch()
        self.mlp_vision = _copy(self.mlp)
        self.has_vision = True

    def forward(self, x, rope, attn_mask, gen_mask=None, cache=None, layer=0):
        x = x + self.self_attn(self.input_layernorm(x), rope, attn_mask, gen_mask, cache, layer)
        h = self.post_attention_layernorm(x)
        return x + route(h, gen_mask if self.has_vision else None, self.mlp, getattr(self, "mlp_vision", None))


def _copy(module: nn.Module) -> nn.Module:
    import copy

    return copy.deepcopy(module)


class LanguageModel(nn.Module):
    """Token embeddings, MoME layers, final norm; the text head lives on the wrapper (shared by both branches)."""

    def __init__(self, config: LatentUMConfig):
        super().__init__()
        self.config = config
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(MoMELayer(config) for _ in range(config.num_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_eps)

    def forward(
        self,
        inputs_embeds: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        gen_mask: torch.Tensor | None = None,
        cache: KVCache | None = None,
        positions: torch.Tensor | None = None,
        attn_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """:param inputs_embeds: ``(B, T, d)``; :param attention_mask: ``(B, T)`` 1 = real token.

        ``attn_mask`` ``(B, 1, T, S)`` bool overrides the causal mask (dual-sequence training).
        Returns the final hidden states ``(B, T, d)``.
        """
        b, t, _ = inputs_embeds.shape
        past = cache.length if cache is not None else 0
        valid = torch.ones(b, t, dtype=torch.bool, device=inputs_embeds.device) if attention_mask is None else attention_mask.bool()
        if cache is not None:
            cache.key_valid = valid if cache.key_valid is None else torch.cat([cache.key_valid, valid], dim=1)
            key_valid = cache.key_valid  # (B, S)
        else:
            key_valid = valid
        if positions is None:
            # positions count real tokens only, so left padding does not shift them
            prev = key_valid[:, :past].sum(1, keepdim=True) if past else torch.zeros(b, 1, dtype=torch.long, device=valid.device)
            positions = prev + valid.long().cumsum(1) - 1  # (B, T)
            positions = positions.clamp(min=0)
        if attn_mask is None and (torch.compiler.is_compiling() or not (t == 1 and bool(key_valid.all()))):
            attn_mask = causal_mask(key_valid, t, past)  # (one new token over unpadded keys sees them all: no mask;
            # compiled code always builds it, as the check would read tensor data)
        rope = rotary_tables(positions, self.config.head_dim, self.config.rope_theta, inputs_embeds.dtype)
        x = inputs_embeds
        for i, layer in enumerate(self.layers):
            x = layer(x, rope, attn_mask, gen_mask, cache, i)
        return self.norm(x)


def causal_mask(key_valid: torch.Tensor, t: int, past: int) -> torch.Tensor:
    """``(B, 1, T, S)`` bool: query ``i`` (absolute ``past + i``) sees real keys up to itself.

    Each query also sees itself, so a padding query never has an all-masked row (which gives NaNs).
    """
    s = key_valid.shape[1]
    q_pos = torch.arange(past, past + t, device=key_valid.device)[:, None]  # (T, 1)
    k_pos = torch.arange(s, device=key_valid.device)[None, :]  # (1, S)
    allowed = (k_pos <= q_pos)[None] & key_valid[:, None, :]  # (B, T, S)
    allowed |= (k_pos == q_pos)[None]
    return allowed[:, None]
