"""Guesses of an imagined step's codes, from the model's own earlier steps: the starting point of the fused
step's Jacobi rounds (:meth:`~latentum_world.world.fused_step.FusedStep.imagine`).

A step moves the player by at most one cell, so the next state's codes equal the current ones except at the
one or two latent positions whose image region the player leaves or enters (each position covers a block of
cells on a row-major ``G x G`` grid). :class:`TransitionMemo` remembers what the model generated the last
time a position changed, under what that change depends on locally, and guesses it the next time (the other
positions: unchanged). It is a pool of the model's own outputs, as lookahead decoding keeps one of n-grams: a
guess only decides how many Jacobi rounds a row takes, never which codes the model emits, so a wrong or
stale guess only costs time.

A memo warmed on the model's own rollouts is saved next to its checkpoint (:data:`MEMO_FILE`, written by
``latentum-world memo``, and by ``latentum-world train all`` for the model it makes; the bundled checkpoint
ships one), so that an env starts with the guesses a long run would have learned: on random-policy steps at 64
rows, 1.41 rounds per row from an empty memo over the first 170 steps against 1.10 from one warmed over 2,000
steps of other maps (``docs/findings.md``). The file is tied to the weights it was made with
(:func:`weights_fingerprint`); another model's memo is ignored with a warning.
"""

from __future__ import annotations

import hashlib
import math
import warnings
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from envs.vsp.maps import ACTION_DELTAS

MEMO_FILE = "transition_memo.safetensors"  # in a model directory: its warmed TransitionMemo
MEMO_FORMAT = "latentum-transition-memo/1"  # the key scheme of TransitionMemo._keys (a new scheme: a new version)


def weights_fingerprint(model: torch.nn.Module) -> str:
    """The SHA-256 of ``model``'s state dict (names and raw bytes, in name order): what a saved memo was made
    with (about 10 ms for the bundled model)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy())
    return digest.hexdigest()


class TransitionMemo:
    """The latest codes a latent position changed to, in two tables: a position the player *enters* (it changed,
    and so did the one the move comes from), keyed by ``(position, action, its codes, the codes of that
    source position)``; any other changed position (the player leaves it, or moves or turns within it), keyed
    by ``(position, action, its codes, whether the move would leave the grid)``. Entering is looked up first.
    On steps of random policies from fresh boards, whole rows were guessed right about 55 % of the time over
    the first 50 steps of 64 rows and about 87 % after 250 (``benchmarks/bench_world_model.py`` records the
    rounds this saves).

    :param positions: ``P`` latent positions, a row-major square grid; :param codebook_size: ``V``;
    :param capacity: the tables start afresh beyond this many keys in all (about 100 bytes each).
    """

    def __init__(self, positions: int, codebook_size: int, capacity: int = 1 << 20):
        grid = math.isqrt(positions)
        if grid * grid != positions:
            raise ValueError(f"TransitionMemo needs a square grid of latent positions, got {positions}")
        self.capacity, self.codebook_size = capacity, codebook_size
        rows, cols = torch.arange(positions) // grid, torch.arange(positions) % grid
        source, blocked = [], []
        for dr, dc in ACTION_DELTAS:  # per action: where a player entering each position comes from
            r, c = rows - dr, cols - dc
            inside = (r >= 0) & (r < grid) & (c >= 0) & (c < grid)
            source.append(torch.where(inside, r * grid + c, -1))
            r, c = rows + dr, cols + dc
            blocked.append((r < 0) | (r >= grid) | (c < 0) | (c >= grid))
        self.source = torch.stack(source)  # (4, P): -1 where that position is outside the grid
        self.blocked = torch.stack(blocked)  # (4, P): the move from this position's cells may leave the grid
        self.enter: dict[int, int] = {}  # key -> the code id (see _ids) the position changed to
        self.leave: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self.enter) + len(self.leave)

    def save(self, path: str | Path, fingerprint: str, **metadata: str) -> None:
        """Write both tables to the safetensors file ``path`` (int64 keys and code ids), stamped with the model's
        :func:`weights_fingerprint` and any further string ``metadata`` (e.g. how it was made)."""
        tables = {}
        for name, table in (("enter", self.enter), ("leave", self.leave)):
            tables[f"{name}_keys"] = torch.tensor(list(table.keys()), dtype=torch.int64)
            tables[f"{name}_codes"] = torch.tensor(list(table.values()), dtype=torch.int64)
        save_file(tables, str(path), metadata={**metadata, "format": MEMO_FORMAT, "weights_sha256": fingerprint,
                                               "positions": str(self.source.shape[1]),
                                               "codebook_size": str(self.codebook_size)})

    def load(self, path: str | Path, fingerprint: str) -> bool:
        """Add the tables saved at ``path`` (see :meth:`save`). Returns ``False``, with a warning, and adds nothing
        when they were made for other weights (``fingerprint``), another grid or codebook, or another key
        scheme; a file that is not a memo raises ``ValueError``."""
        path = Path(path)
        try:
            with safe_open(str(path), "pt") as f:
                metadata = f.metadata() or {}
                tables = {name: f.get_tensor(name) for name in f.keys()}
        except (SafetensorError, OSError) as e:
            raise ValueError(f"{path} is not a readable transition memo ({e}); delete it, or rebuild it with "
                             f"`latentum-world memo --model {path.parent}`") from e
        names = {f"{t}_{c}" for t in ("enter", "leave") for c in ("keys", "codes")}
        if metadata.get("format", "").split("/")[0] != MEMO_FORMAT.split("/")[0] or set(tables) != names or any(
                tables[f"{t}_keys"].shape != tables[f"{t}_codes"].shape for t in ("enter", "leave")):
            raise ValueError(f"{path} is not a transition memo (format {MEMO_FORMAT}); delete it, or rebuild it with "
                             f"`latentum-world memo --model {path.parent}`")
        made_for = (metadata.get("format"), metadata.get("weights_sha256"), metadata.get("positions"),
                    metadata.get("codebook_size"))
        if made_for != (MEMO_FORMAT, fingerprint, str(self.source.shape[1]), str(self.codebook_size)):
            warnings.warn(f"{path} was made for other weights or another memo format; not used (imagination is "
                          f"exact either way, only slower at first). Rebuild it: `latentum-world memo --model "
                          f"{path.parent}`", stacklevel=2)
            return False
        self.enter.update(zip(tables["enter_keys"].tolist(), tables["enter_codes"].tolist()))
        self.leave.update(zip(tables["leave_keys"].tolist(), tables["leave_codes"].tolist()))
        return True

    def _ids(self, codes: torch.Tensor) -> torch.Tensor:
        """``(B, P, K)`` codes -> ``(B, P)`` int64 ids ``sum_k codes[k] * V^k`` on the CPU (exact while
        ``K log2 V <= 62``; beyond it they wrap, which only makes guesses collide)."""
        radix = self.codebook_size ** torch.arange(codes.shape[-1])
        return (codes.long().cpu() * radix).sum(-1)

    def _keys(self, ids: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per ``(row, position)``: the enter key, the leave key (int64 hashes: a collision only makes a guess
        wrong) and the source position ``(B, P)`` (-1: none)."""
        p = ids.shape[1]
        actions = actions.long().cpu()
        source = self.source[actions]  # (B, P)
        head = torch.arange(p) * 4 + actions[:, None]  # (B, P)
        big = 1_000_000_007
        enter = ((head * 2 + 1) * big + ids.gather(1, source.clamp(min=0))) * big + ids  # (wraps in int64: still a hash)
        leave = ((head * 2) * big + self.blocked[actions].long()) * big + ids
        return enter, leave, source

    def guess(self, codes: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """The guessed next codes ``(B, P, K)`` after ``codes`` ``(B, P, K)`` and ``actions`` ``(B,)``."""
        if not len(self):
            return codes
        ids = self._ids(codes)
        enter_keys, leave_keys, source = self._keys(ids, actions)
        enter, leave = self.enter, self.leave
        found = [enter.get(e, -1) if s >= 0 else -1 for e, s in zip(enter_keys.flatten().tolist(), source.flatten().tolist())]
        found = [f if f >= 0 else leave.get(k, -1) for f, k in zip(found, leave_keys.flatten().tolist())]
        found = torch.tensor(found).view(ids.shape)  # (B, P): a code id, or -1
        hit = found >= 0
        if not bool(hit.any()):
            return codes
        digits = found.clamp(min=0)[..., None] // self.codebook_size ** torch.arange(codes.shape[-1])
        remembered = (digits % self.codebook_size).to(device=codes.device, dtype=codes.dtype)  # (B, P, K)
        return torch.where(hit.to(codes.device)[..., None], remembered, codes)

    def learn(self, codes: torch.Tensor, actions: torch.Tensor, next_codes: torch.Tensor,
              guess: torch.Tensor | None = None) -> None:
        """Remember the step from ``codes`` to ``next_codes`` (both ``(B, P, K)``) under ``actions`` ``(B,)``: every
        position that changed, and every remembered key whose position did not change this time (``guess``: this
        step's :meth:`guess`, whose changes are the only remembered keys such a position can have; without it
        every position is looked up)."""
        ids, nxt = self._ids(codes), self._ids(next_codes)
        enter_keys, leave_keys, source = self._keys(ids, actions)
        changed = ids != nxt  # (B, P)
        entered = changed & (source >= 0) & changed.gather(1, source.clamp(min=0))  # its source changed too
        stale = ~changed if guess is None else (self._ids(guess) != ids) & ~changed  # remembered, but unchanged now
        if len(self) + changed.sum() > self.capacity:
            self.enter.clear()
            self.leave.clear()
        enter, leave = self.enter, self.leave
        todo = torch.nonzero(changed | stale, as_tuple=True)
        for e, k, value, into, old in zip(enter_keys[todo].tolist(), leave_keys[todo].tolist(), nxt[todo].tolist(),
                                          entered[todo].tolist(), stale[todo].tolist()):
            if old:  # unchanged: correct what a key remembered
                if e in enter:
                    enter[e] = value
                if k in leave:
                    leave[k] = value
            elif into:
                enter[e] = value
            else:
                leave[k] = value
