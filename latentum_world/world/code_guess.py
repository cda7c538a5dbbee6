"""Guesses of an imagined step's codes, from the model's own earlier steps: the starting point of the fused
step's Jacobi rounds (:meth:`~latentum_world.world.fused_step.FusedStep.imagine`).

A step moves the player by at most one cell, so the next state's codes equal the current ones except at the
one or two latent positions whose image region the player leaves or enters (each position covers a block of
cells on a row-major ``G x G`` grid). What such a position becomes depends, almost always, on its own codes,
the action, the codes of the position the player would come from and whether the move would leave the grid.
:class:`TransitionMemo` remembers, under that key, what the model generated the last time a position changed,
and guesses it the next time the key comes up (the other positions: unchanged). It is a pool of the model's
own outputs, as lookahead decoding keeps one of n-grams: a guess only decides how many Jacobi rounds a row
takes, never which codes the model emits, so a wrong or stale guess only costs time.
"""

from __future__ import annotations

import math

import torch

from envs.vsp.maps import ACTION_DELTAS


class TransitionMemo:
    """The latest codes each latent position changed to, keyed by ``(position, action, its codes, the codes of
    the position the player would come from, whether the move leaves the grid)``.

    :param positions: ``P`` latent positions, a row-major square grid; :param codebook_size: ``V``;
    :param capacity: the memo starts afresh beyond this many keys (about 100 bytes each).
    """

    def __init__(self, positions: int, codebook_size: int, capacity: int = 1 << 20):
        grid = math.isqrt(positions)
        if grid * grid != positions:
            raise ValueError(f"TransitionMemo needs a square grid of latent positions, got {positions}")
        self.capacity, self.codebook_size = capacity, codebook_size
        rows, cols = torch.arange(positions) // grid, torch.arange(positions) % grid
        source, leaves = [], []
        for dr, dc in ACTION_DELTAS:  # per action: where a player entering each position comes from
            r, c = rows - dr, cols - dc
            inside = (r >= 0) & (r < grid) & (c >= 0) & (c < grid)
            source.append(torch.where(inside, r * grid + c, -1))
            r, c = rows + dr, cols + dc
            leaves.append((r < 0) | (r >= grid) | (c < 0) | (c >= grid))
        self.source = torch.stack(source)  # (4, P): -1 where that position is outside the grid
        self.leaves = torch.stack(leaves)  # (4, P): the move from this position's cells may leave the grid
        self.table: dict[int, int] = {}  # key -> the code id (see _ids) the position changed to

    def _ids(self, codes: torch.Tensor) -> torch.Tensor:
        """``(B, P, K)`` codes -> ``(B, P)`` int64 ids ``sum_k codes[k] * V^k`` (exact while ``K log2 V <= 62``;
        beyond it they wrap, which only makes guesses collide)."""
        radix = self.codebook_size ** torch.arange(codes.shape[-1], device=codes.device)
        return (codes.long() * radix).sum(-1)

    def _keys(self, ids: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """The memo's keys ``(B, P)`` int64 (a hash: a collision only makes a guess wrong)."""
        b, p = ids.shape
        actions = actions.long().cpu()
        ids = ids.cpu()
        source = self.source[actions]  # (B, P)
        neighbour = torch.where(source >= 0, ids.gather(1, source.clamp(min=0)), -1)  # (B, P)
        head = (torch.arange(p) * 4 + actions[:, None]) * 2 + self.leaves[actions].long()  # (B, P)
        big = 1_000_000_007
        return (head * big + neighbour) * big + ids  # (wraps in int64: still a fine hash)

    def guess(self, codes: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """The guessed next codes ``(B, P, K)`` after ``codes`` ``(B, P, K)`` and ``actions`` ``(B,)``."""
        if not self.table:
            return codes
        ids = self._ids(codes)
        table = self.table
        found = torch.tensor([table.get(k, -1) for k in self._keys(ids, actions).flatten().tolist()]).view(ids.shape)
        hit = found >= 0
        if not bool(hit.any()):
            return codes
        digits = found.clamp(min=0)[..., None] // self.codebook_size ** torch.arange(codes.shape[-1])
        remembered = (digits % self.codebook_size).to(device=codes.device, dtype=codes.dtype)  # (B, P, K)
        return torch.where(hit.to(codes.device)[..., None], remembered, codes)

    def learn(self, codes: torch.Tensor, actions: torch.Tensor, next_codes: torch.Tensor) -> None:
        """Remember the step from ``codes`` to ``next_codes`` (both ``(B, P, K)``) under ``actions`` ``(B,)``: every
        position that changed, and every remembered key whose position did not change this time."""
        ids, nxt = self._ids(codes), self._ids(next_codes)
        keys = self._keys(ids, actions).flatten().tolist()
        nxt, changed = nxt.flatten().tolist(), (ids != nxt).flatten().tolist()
        table = self.table
        if len(table) + len(keys) > self.capacity:
            table.clear()
        for key, value, change in zip(keys, nxt, changed):
            if change or key in table:
                table[key] = value
