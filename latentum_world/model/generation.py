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
    b = image_embeds.shape[0]
    ids = image_block_ids(model, b, image_embeds.device)
    x = model.embed(ids, image_embeds)
    h = model.language_model(x, torch.ones_like(ids), cache=cache)
    return h[:, -1]


@torch.no_grad()
def ingest_text(model, cache: KVCache, ids: torch.Tensor) -> torch.Tensor:
    """Append text ids ``(B, T)`` through the understanding branch; returns the hidden states ``(B, T, d)``."""
    x = model.language_model.embed_tokens(ids)
    return model.language_model(x, torch.ones_like(ids), cache=cache)


@torch.no_grad()
def generate_state(model, cache: KVCache, sampling: Sampling | None = None, reingest: bool = True) -> torch.Tensor:
    """Imagine the next image after the cached prefix (which should end with the action text).

    :param cache: KV cache of the prefix, batch ``B``; on return it holds the prefix plus the
        re-ingested state (understanding branch), or just the prefix when ``reingest`` is False.
    :param sampling: how codes are drawn (default greedy).
    :returns: codes ``(B, P, K)``.
    """
    if not model.config.generation_branch:
        raise RuntimeError("this model has no generation branch; train the `gen` / `world` stages first")
    sampling = sampling or Sampling(greedy=True)
    c = model.config
    b = cache.key_valid.shape[0]
    device = cache.key_valid.device
    before = cache.length
    ones = torch.ones(b, 1, dtype=torch.long, device=device)
    x = model.language_model.embed_tokens(torch.full((b, 1), c.img_start_id, device=device))
    h = model.language_model(x, ones, gen_mask=True, cache=cache)[:, -1]  # (B, d) at <img>: predicts position 0
    codes = []
    for j in range(c.latent_positions):
        cj = model.depth_head.sample(h, sampling)  # (B, K)
        codes.append(cj)
        if j == c.latent_positions - 1:
            break
        x = model.slot_embeddings(model.project_latents(cj)[:, None], start=j)  # (B, 1, d): latent j in slot j
        h = model.language_model(x, ones, gen_mask=True, cache=cache)[:, -1]
    codes = torch.stack(codes, dim=1)  # (B, P, K)
    cache.crop(before)  # drop the generation branch's keys/values: the roll-back
    if reingest:
        ingest_image(model, cache, model.project_latents(codes))
    return codes
