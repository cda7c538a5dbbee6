"""Generating a state in latent space, and feeding it back without pixels.

``generate_state``: after ``<img>`` the MoME generation branch runs one step per latent position in
raster order; the depth head draws that position's K codes; the next input is
``visual_projector(z_q)``. Then the cache is rolled back to before ``<img>`` and the state is
re-ingested as ``<img> visual_projector(z_q) </img>`` through the UNDERSTANDING branch, so the model
goes on reasoning over what it imagined exactly as it would over an observed image slot.
"""

from __future__ import annotations

import torch

from latentum_world.model.depth_head import Sampling
from latentum_world.model.language import KVCache


def image_block_ids(model, batch: int, device) -> torch.Tensor:
    """``(B, P + 2)`` ids of ``<img> P x <img_ctx> </img>``."""
    c = model.config
    row = [c.img_start_id] + [c.img_context_id] * c.latent_positions + [c.img_end_id]
    return torch.tensor(row, device=device).expand(batch, -1)


@torch.no_grad()
def ingest_image(model, cache: KVCache, image_embeds: torch.Tensor) -> torch.Tensor:
    """Append ``<img> image_embeds </img>`` ``(B, P, d)`` through the understanding branch; returns the last hidden ``(B, d)``."""
    b, p, _ = image_embeds.shape
    if p != model.config.latent_positions:
        raise ValueError(f"expected {model.config.latent_positions} image embeddings per row, got shape {tuple(image_embeds.shape)}")
    ids = image_block_ids(model, b, image_embeds.device)
    ends = model.language_model.embed_tokens(ids[:, [0, -1]])  # (B, 2, d): <img>, </img>
    x = torch.cat([ends[:, :1], model.slot_embeddings(image_embeds).to(ends.dtype), ends[:, 1:]], dim=1)  # as model.embed
    h = model.language_model(x, torch.ones(b, p + 2, dtype=torch.long, device=x.device), cache=cache)
    return h[:, -1]


@torch.no_grad()
def ingest_text(model, cache: KVCache, ids: torch.Tensor) -> torch.Tensor:
    """Append text ids ``(B, T)`` through the understanding branch; returns the hidden states ``(B, T, d)``."""
    x = model.language_model.embed_tokens(ids)
    return model.language_model(x, torch.ones_like(ids), cache=cache)


def next_position(model, x: torch.Tensor, cache: KVCache, sampling: Sampling) -> torch.Tensor:
    """Input ``x`` ``(B, 1, d)`` through the generation branch after ``cache`` (which it extends), then the
    depth head: the codes ``(B, K)`` of the next latent position."""
    ones = torch.ones(x.shape[0], 1, dtype=torch.long, device=x.device)
    h = model.language_model(x, ones, gen_mask=True, cache=cache)[:, -1]  # (B, d)
    return model.depth_head.sample(h, sampling)


def after_latent(model, codes: torch.Tensor, slot_pos: torch.Tensor, cache: KVCache, sampling: Sampling) -> torch.Tensor:
    """:func:`next_position` after the latent with codes ``(B, K)`` written into its slot (``slot_pos`` ``(1, d)``:
    that slot's ``image_pos_embed`` row, passed as a tensor so compiled code does not specialise on the slot)."""
    x = model.slot_embeddings(model.project_latents(codes)[:, None], pos=slot_pos)  # (B, 1, d)
    return next_position(model, x, cache, sampling)


@torch.no_grad()
def generate_state(model, cache: KVCache, sampling: Sampling | None = None, reingest: bool = True,
                   compiled=None) -> torch.Tensor:
    """Imagine the next image after the cached prefix (which should end with the action text).

    :param cache: KV cache of the prefix, batch ``B``; on return it holds the prefix plus the
        re-ingested state (understanding branch), or just the prefix when ``reingest`` is False.
    :param sampling: how codes are drawn (default greedy).
    :param compiled: a :class:`~latentum_world.model.compiled.CompiledImagination` to run the per-position
        work with (default: eager; the same functions either way).
    :returns: codes ``(B, P, K)``.
    """
    if not model.config.generation_branch:
        raise RuntimeError("this model has no generation branch; train the `gen` / `world` stages first")
    sampling = sampling or Sampling(greedy=True)
    c = model.config
    b = cache.key_valid.shape[0]
    device = cache.key_valid.device
    before = cache.length
    first, then = (next_position, after_latent) if compiled is None else (compiled.next_position, compiled.after_latent)
    x = model.language_model.embed_tokens(torch.full((b, 1), c.img_start_id, device=device))
    codes = [first(model, x, cache, sampling)]  # at <img>: position 0
    for j in range(c.latent_positions - 1):  # latent j in slot j -> position j + 1
        codes.append(then(model, codes[-1], model.image_pos_embed[j : j + 1], cache, sampling))
    codes = torch.stack(codes, dim=1)  # (B, P, K)
    cache.crop(before)  # drop the generation branch's keys/values: the roll-back
    if reingest:
        ingest_image(model, cache, model.project_latents(codes))
    return codes
