"""Drafts of the world model's VSP-table read-outs (:mod:`latentum_world.model.draft`): token ids of an episode's
start board drawn without the player, cut before the last cell where the piece a read-out looks for could stand.

A read-out up to the player's piece is checked against its draft in one forward, so a shorter draft is a
cheaper forward; where the piece comes later than the draft, decoding goes on token by token. Drafts decide
speed only, never the text (every emitted token is the model's greedy choice).

The table's tokens are one per header cell, row label, cell and line end (``| |``, `` Col 1 |``, ... ``\\n``,
``| Row 1 |``, `` _ |``, ...), so a draft is assembled from those pieces instead of formatting and tokenizing
the whole table for every new board and cut (which cost about 2 ms per step of 64 envs, whose resets bring new
boards). The assembly is checked against the tokenizer once per board size; a tokenizer that splits the table
otherwise is used as is.
"""

from __future__ import annotations

import dataclasses
import math
from functools import lru_cache

from envs.vsp.formats import cell_symbol, to_table
from envs.vsp.maps import VSPMap
from envs.vsp.observation import content_side


class TableDrafts:
    """Read-out drafts for one tokenizer, cached per ``(board, pieces, region)``.

    :param tokenizer: the model's tokenizer (``encode_text``, ``convert_tokens_to_ids``).
    """

    max_cached = 4096

    def __init__(self, tokenizer):
        self.tok = tokenizer
        self._cache: dict = {}
        self._pieces: dict = {}  # board size -> its token pieces, or None where the tokenizer does not compose

    def __call__(self, board: VSPMap, expected: str = "", region: frozenset | None = None) -> list[int]:
        """Ids of ``board``'s table without the player; with ``expected`` pieces (``"%"``: the player on the goal,
        ``"!"``: in a hole), only up to the last cell where one could stand, among the cells in ``region`` if
        any of them could hold one."""
        key = (board.size, board.goal, board.holes, expected, region)
        draft = self._cache.get(key)
        if draft is None:
            if len(self._cache) >= self.max_cached:
                self._cache.clear()
            cells = ([board.goal] if "%" in expected else []) + (sorted(board.holes) if "!" in expected else [])
            if region is not None:
                cells = [c for c in cells if c in region] or cells
            draft = self._cache[key] = self._draft(board, max(cells) if cells else None)
        return draft

    def _draft(self, board: VSPMap, stop: tuple[int, int] | None) -> list[int]:
        """The table's ids without the player, up to (not including) cell ``stop`` (the table lists cells row by
        row)."""
        pieces = self._pieces_of(board.size)
        if pieces is None:
            return self._tokenized(board, stop)
        header, labels, newline, symbols = pieces
        ids = list(header)
        for r in range(board.size):
            ids.append(labels[r])
            ids.extend(symbols[cell_symbol(board, (r, c), player=False)] for c in range(board.size))
            ids.append(newline)
        if stop is not None:
            ids = ids[: len(header) + stop[0] * (board.size + 2) + 1 + stop[1]]
        return ids

    def _pieces_of(self, size: int):
        if size not in self._pieces:
            ids = self.tok.convert_tokens_to_ids
            header = [ids("| |")] + [ids(f" Col {c + 1} |") for c in range(size)] + [ids("\n")]
            pieces = (header, [ids(f"| Row {r + 1} |") for r in range(size)], ids("\n"),
                      {s: ids(f" {s} |") for s in "_#*@%!"})
            self._pieces[size] = pieces  # checked against the tokenizer on a probe board, whole and cut
            probe = VSPMap(size, (0, 0), (size - 1, size - 1), frozenset({(size - 1, 0)}))
            if any(self._draft(probe, stop) != self._tokenized(probe, stop) for stop in (None, probe.goal)):
                self._pieces[size] = None
        return self._pieces[size]

    def _tokenized(self, board: VSPMap, stop: tuple[int, int] | None) -> list[int]:
        """:meth:`_draft` by the tokenizer: the whole player-less table, cut where placing the player at ``stop``
        first changes its tokens."""
        full = self.tok.encode_text(to_table(board, player=False))
        if stop is None:
            return full
        placed = self.tok.encode_text(to_table(dataclasses.replace(board, player=stop), player=True))
        return full[: next((i for i, (a, b) in enumerate(zip(full, placed)) if a != b), len(full))]


def cells_in_positions(size: int, positions: tuple[int, ...], image_size: int, cell_pixels: int, grid: int) -> frozenset:
    """The cells of a ``size x size`` board (laid out in the model's ``image_size`` images with ``cell_pixels``, see
    :func:`~envs.vsp.observation.content_side`) that overlap the image regions of latent ``positions`` (a
    row-major ``grid x grid``)."""
    return _cells_in_positions(int(size), tuple(sorted(positions)), int(image_size), int(cell_pixels), int(grid))


@lru_cache(maxsize=4096)
def _cells_in_positions(size: int, positions: tuple[int, ...], image_size: int, cell_pixels: int, grid: int) -> frozenset:
    cell = content_side(size, image_size, cell_pixels) / size  # pixels per cell
    span = image_size / grid  # pixels per latent position

    def spans(k: int) -> range:  # the latent rows (or columns) cell row (or column) k overlaps
        return range(int(k * cell // span), min(grid, math.ceil((k + 1) * cell / span)))

    wanted = set(positions)
    return frozenset((r, c) for r in range(size) for c in range(size)
                     if any(i * grid + j in wanted for i in spans(r) for j in spans(c)))
