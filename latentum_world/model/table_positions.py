"""Table positions: which VSP table and which row a text token sits in, as extra input embeddings.

VSP writes boards as text tables (``| | Col 1 | Col 2 |`` then ``| Row 1 | _ | @ |`` ...), and task3 puts
four of them in one question. To say where candidate (B)'s player is, a model must find the ``@`` of
the *second* table and the ``| Row r |`` that opens its line: two "most recent marker" look-ups over up
to a hundred tokens, which a 4-layer, 128-wide model never learned (task3 at 29-37 % whatever the
answer format, ``benchmarks/task3_lines.py``). Table-aware position embeddings, as TAPAS (Herzig et al.
2020) gives a table's tokens row / column / segment embeddings, put both facts in every token's input:

* ``table``: 1 for the tokens of the first table in the sequence, 2 for the second, ... (capped), 0
  outside tables. A table starts at its header token ``| |`` and ends at a blank line (two newlines
  in a row) or at any token that is not table syntax (``Col k``, ``Row k``, cell pieces, newlines).
* ``row``: ``r`` from a ``| Row r |`` token to the end of its line, inside a table; 0 elsewhere.

Both are causal functions of the ids (a token's indices depend only on it and what precedes it), so
the same embedding is computed whether a sequence is embedded whole or decoded token by token (see
:class:`TablePositions`). Index 0 has a fixed zero embedding: text with no tables embeds exactly as
without this module, and a model gains it with no change to what it computed before.
"""

from __future__ import annotations

import torch
from torch import nn

MAX_TABLES = 7  # tables counted 1..MAX_TABLES; later ones share the last index
MAX_ROWS = 8  # VSP levels go up to 8 x 8


class TableSyntax:
    """The token ids of VSP table syntax in the project's fixed vocabulary."""

    def __init__(self, vocabulary: list[str]):
        index = {tok: i for i, tok in enumerate(vocabulary)}
        self.header = index["| |"]
        self.newline = index["\n"]
        self.rows = {index[f"| Row {r} |"]: r for r in range(1, MAX_ROWS + 1)}
        pieces = [f" Col {k} |" for k in range(1, MAX_ROWS + 1)] + [f" {s} |" for s in "@*#_%!"]
        self.pieces = [self.header, self.newline, *self.rows, *(index[p] for p in pieces)]
        self.row_of = [self.rows.get(i, 0) for i in range(len(vocabulary))]  # token id -> r of ``| Row r |``, else 0
        # plain lists, made tensors on the ids' device at each call (models are built on the meta device)

    def coordinates(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(table, row)`` indices ``(B, T)`` (long) of every token of ``ids`` ``(B, T)``."""
        b, t = ids.shape
        pos = torch.arange(t, device=ids.device).expand(b, t)
        none = torch.full_like(pos, -1)
        newline = ids == self.newline
        piece = torch.isin(ids, torch.tensor(self.pieces, device=ids.device))
        blank = newline & torch.cat([torch.zeros_like(newline[:, :1]), newline[:, :-1]], dim=1)
        stop = ~piece | blank  # ends a table
        header = ids == self.header
        last_header = torch.where(header, pos, none).cummax(dim=1).values
        last_stop = torch.where(stop, pos, none).cummax(dim=1).values
        in_table = last_header > last_stop
        count = header.long().cumsum(dim=1).clamp(max=MAX_TABLES)
        table = torch.where(in_table, count, torch.zeros_like(count))
        row_of = torch.tensor(self.row_of, device=ids.device)
        marker = row_of[ids] > 0
        last_marker = torch.where(marker, pos, none).cummax(dim=1).values
        last_break = torch.where(newline | stop, pos, none).cummax(dim=1).values
        in_row = in_table & (last_marker > last_break)
        row = torch.where(in_row, row_of[ids.gather(1, last_marker.clamp(min=0))], torch.zeros_like(count))
        return table, row


class TablePositions(nn.Module):
    """Learned table / row embeddings added to text tokens' embeddings (index 0: always zero)."""

    def __init__(self, vocabulary: list[str], hidden_size: int):
        super().__init__()
        self.syntax = TableSyntax(vocabulary)
        self.table_embed = nn.Embedding(MAX_TABLES + 1, hidden_size, padding_idx=0)
        self.row_embed = nn.Embedding(MAX_ROWS + 1, hidden_size, padding_idx=0)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """``(B, T, d)`` to add to the token embeddings of ``ids`` ``(B, T)``."""
        table, row = self.syntax.coordinates(ids)
        return self.table_embed(table) + self.row_embed(row)
