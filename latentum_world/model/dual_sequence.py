"""Dual-sequence teacher forcing for the MoME generation branch (the reference's vision-only stage).

U: the understanding sequence (text branch), with earlier target images present as
``visual_projector(z_q)`` of NOISY codes (about 15 % replaced at random: the model learns to go on
from its own imperfect imaginations). G: for each target image, a block ``<img> + P-1 clean latents``
on the generation branch, which sees U up to (not including) that image's ``<img>`` and itself causally,
never another block. (The reference lets the G ``<img>`` also see U's ``<img>``; at inference the text
branch has not processed that ``<img>`` yet, so we leave it out and training matches generation exactly.) G tokens sit at the same rotary positions as the U slots they shadow, and their
final hidden states feed the depth head against the target codes.
"""

from __future__ import annotations

import torch


def noisy_codes(codes: torch.Tensor, ratio: float, codebook_size: int, generator: torch.Generator | None) -> torch.Tensor:
    """Replace each code by a uniform random one with probability ``ratio``."""
    if ratio <= 0:
        return codes
    flip = torch.rand(codes.shape, generator=generator, device=codes.device) < ratio
    rand = torch.randint(codebook_size, codes.shape, generator=generator, device=codes.device)
    return torch.where(flip, rand, codes)


def dual_attention(u_valid: torch.Tensor, delims: list[int], p: int) -> torch.Tensor:
    """``(B, 1, T, T)`` bool mask, ``T = L_U + len(delims) * p``; ``u_valid`` ``(B, L_U)`` marks real U tokens."""
    b, lu = u_valid.shape
    t = lu + len(delims) * p
    dev = u_valid.device
    allowed = torch.zeros(b, t, t, dtype=torch.bool, device=dev)
    causal = torch.ones(lu, lu, dtype=torch.bool, device=dev).tril()
    allowed[:, :lu, :lu] = causal[None] & u_valid[:, None, :]
    block = torch.ones(p, p, dtype=torch.bool, device=dev).tril()
    for n, d in enumerate(delims):
        r0 = lu + n * p
        allowed[:, r0 : r0 + p, :d] = u_valid[:, None, :d]
        allowed[:, r0 : r0 + p, r0 : r0 + p] = block
    idx = torch.arange(t, device=dev)
    allowed[:, idx, idx] = True  # no all-masked rows (padding)
    return allowed[:, None]


def dual_positions(u_valid: torch.Tensor, delims: list[int], p: int) -> torch.Tensor:
    """``(B, T)`` rotary positions: U counts its real tokens; G token ``i`` of a block sits at its ``<img>``'s position + ``i``."""
    u_pos = (u_valid.long().cumsum(1) - 1).clamp(min=0)  # (B, L_U)
    blocks = [u_pos[:, d : d + 1] + torch.arange(p, device=u_valid.device)[None] for d in delims]  # each (B, P)
    return torch.cat([u_pos, *blocks], dim=1)
