"""Lossless conversion between :class:`VSPMap` and the benchmark's text encodings.

* ``table``: ``| | Col 1 | ... |`` then ``| Row r | c | ... |``; cells ``@`` player, ``*`` goal, ``#`` hole,
  ``_`` ice, ``%`` player on goal (task3's legend) and ``!`` player in a hole (this project's extension,
  for rollout states the benchmark never prints).
* ``pure_text``: the four-sentence description, 1-based coordinates.
* ``desc``: gym FrozenLake rows over ``S F H G`` (``S`` = the player).
* ``special_text``: the desc rows spelled with the table symbols (written here; parsed by the loader).

Every parser takes an optional ``source`` (a file name) and raises :class:`VSPFormatError`
naming it and the 1-based line at fault.
"""

from __future__ import annotations

import re
from pathlib import Path

from envs.vsp.maps import InvalidMapError, VSPMap

TABLE_SYMBOLS = {"player": "@", "goal": "*", "hole": "#", "ice": "_", "player_on_goal": "%", "player_in_hole": "!"}


class VSPFormatError(ValueError):
    """A malformed VSP text file; the message names the file and line."""

    def __init__(self, message: str, source: str | None = None, line: int | None = None):
        where = source or "<text>"
        if line is not None:
            where += f", line {line}"
        super().__init__(f"{where}: {message}")
        self.source, self.line = source, line


# ---------------------------------------------------------------------------- table
def to_table(m: VSPMap, player: bool = True) -> str:
    """The VSP table text, with the trailing newline the benchmark's files have (``player=False``: the board
    alone, every cell its bare ``#*_`` symbol, as a frame drawn without the player shows it)."""
    header = "| |" + "".join(f" Col {c + 1} |" for c in range(m.size))
    rows = [header]
    for r in range(m.size):
        rows.append(f"| Row {r + 1} | " + " | ".join(cell_symbol(m, (r, c), player) for c in range(m.size)) + " |")
    return "\n".join(rows) + "\n"


def cell_symbol(m: VSPMap, cell: tuple[int, int], player: bool = True) -> str:
    """The table symbol of ``cell``: ``@``/``%``/``!`` for the player (on ice / the goal / a hole), else ``#*_``
    (``player=False``: always the bare cell's)."""
    if player and cell == m.player:
        return "%" if m.on_goal else "!" if m.in_hole else "@"
    return {"hole": "#", "goal": "*", "ice": "_"}[m.cell_kind(cell)]


_HEADER_RE = re.compile(r"^\|\s*\|((?:\s*Col \d+\s*\|)+)\s*$")
_ROW_RE = re.compile(r"^\|\s*Row (\d+)\s*\|(.*)\|\s*$")


def parse_table(text: str, source: str | None = None, first_line: int = 1) -> VSPMap:
    """Parse a VSP table (``first_line`` offsets line numbers when the table sits inside a larger file)."""
    lines = [(i + first_line, ln) for i, ln in enumerate(text.splitlines()) if ln.strip()]
    if not lines:
        raise VSPFormatError("empty table", source, first_line)
    lineno, header = lines[0]
    hm = _HEADER_RE.match(header.strip())
    if not hm:
        raise VSPFormatError(f"expected a header like '| | Col 1 | Col 2 |', got {header!r}", source, lineno)
    cols = [int(x) for x in re.findall(r"Col (\d+)", hm.group(1))]
    n = len(cols)
    if cols != list(range(1, n + 1)):
        raise VSPFormatError(f"columns must be numbered 1..{n}, got {cols}", source, lineno)
    if len(lines) - 1 != n:
        raise VSPFormatError(f"a {n}-column table needs {n} rows, found {len(lines) - 1}", source, lineno)
    player = goal = None
    holes = set()
    for r, (lineno, line) in enumerate(lines[1:]):
        rm = _ROW_RE.match(line.strip())
        if not rm:
            raise VSPFormatError(f"expected a row like '| Row {r + 1} | _ | ... |', got {line!r}", source, lineno)
        if int(rm.group(1)) != r + 1:
            raise VSPFormatError(f"expected Row {r + 1}, got Row {rm.group(1)}", source, lineno)
        cells = [c.strip() for c in rm.group(2).split("|")]
        if len(cells) != n:
            raise VSPFormatError(f"Row {r + 1} has {len(cells)} cells, expected {n}", source, lineno)
        for c, sym in enumerate(cells):
            if sym in ("@", "%", "!"):
                if player is not None:
                    raise VSPFormatError(f"second player at Row {r + 1}, Col {c + 1}", source, lineno)
                player = (r, c)
            if sym in ("*", "%"):
                if goal is not None:
                    raise VSPFormatError(f"second goal at Row {r + 1}, Col {c + 1}", source, lineno)
                goal = (r, c)
            if sym in ("#", "!"):
                holes.add((r, c))
            if sym not in ("@", "%", "!", "*", "#", "_"):
                raise VSPFormatError(f"unknown cell symbol {sym!r} at Row {r + 1}, Col {c + 1}", source, lineno)
    if player is None or goal is None:
        raise VSPFormatError(f"table has no {'player' if player is None else 'goal'}", source, lines[0][0])
    return _build(n, player, goal, holes, source, lines[0][0])


# ---------------------------------------------------------------------------- pure_text
def to_pure_text(m: VSPMap) -> str:
    """The VSP pure_text description (no trailing newline, like the benchmark's files)."""
    if m.in_hole or m.on_goal:
        raise ValueError("pure_text cannot describe a player standing on the goal or in a hole")
    lines = [
        f"This is a {m.size}x{m.size} map.",
        f"The player is at: row {m.player[0] + 1}, column {m.player[1] + 1};",
    ]
    if m.holes:
        holes = " ".join(f"Row {r + 1}, Column {c + 1};" for r, c in m.sorted_holes())
        lines.append(f"The hole(s) are at: {holes}")
    else:
        lines.append("There is no holes in this map;")
    lines.append(f"The goal is at: Row {m.goal[0] + 1}, Column {m.goal[1] + 1}.")
    return "\n".join(lines)


_SIZE_RE = re.compile(r"^This is a (\d+)x(\d+) map\.$")
_PLAYER_RE = re.compile(r"^The player is at: row (\d+), column (\d+);$")
_HOLES_RE = re.compile(r"^The hole\(s\) are at: ((?:Row \d+, Column \d+;\s*)+)$")
_NO_HOLES = "There is no holes in this map;"
_GOAL_RE = re.compile(r"^The goal is at: Row (\d+), Column (\d+)\.$")


def parse_pure_text(text: str, source: str | None = None) -> VSPMap:
    lines = [(i + 1, ln.strip()) for i, ln in enumerate(text.splitlines()) if ln.strip()]
    if len(lines) != 4:
        raise VSPFormatError(f"pure_text needs 4 non-empty lines, found {len(lines)}", source, None)
    (l1, size), (l2, player), (l3, holes), (l4, goal) = lines
    sm = _SIZE_RE.match(size)
    if not sm or sm.group(1) != sm.group(2):
        raise VSPFormatError(f"expected 'This is a NxN map.', got {size!r}", source, l1)
    pm = _PLAYER_RE.match(player)
    if not pm:
        raise VSPFormatError(f"expected 'The player is at: row r, column c;', got {player!r}", source, l2)
    if holes == _NO_HOLES:
        hole_cells = set()
    else:
        hm = _HOLES_RE.match(holes)
        if not hm:
            raise VSPFormatError(f"expected 'The hole(s) are at: Row r, Column c; ...', got {holes!r}", source, l3)
        hole_cells = {(int(r) - 1, int(c) - 1) for r, c in re.findall(r"Row (\d+), Column (\d+)", hm.group(1))}
    gm = _GOAL_RE.match(goal)
    if not gm:
        raise VSPFormatError(f"expected 'The goal is at: Row r, Column c.', got {goal!r}", source, l4)
    n = int(sm.group(1))
    p = (int(pm.group(1)) - 1, int(pm.group(2)) - 1)
    g = (int(gm.group(1)) - 1, int(gm.group(2)) - 1)
    return _build(n, p, g, hole_cells, source, l1)


# ---------------------------------------------------------------------------- gym desc
def to_desc(m: VSPMap) -> list[str]:
    """gym FrozenLake ``desc`` rows (``S`` = the player)."""
    if m.in_hole or m.on_goal:
        raise ValueError("gym desc cannot hold a player standing on the goal or in a hole")
    rows = []
    for r in range(m.size):
        row = ""
        for c in range(m.size):
            row += "S" if (r, c) == m.player else {"hole": "H", "goal": "G", "ice": "F"}[m.cell_kind((r, c))]
        rows.append(row)
    return rows


def to_desc_text(m: VSPMap) -> str:
    """The benchmark's ``text`` file (task1, task4): desc rows joined by newlines."""
    return "\n".join(to_desc(m))


def to_special_text(m: VSPMap) -> str:
    """The benchmark's ``special_text`` file (task1, task4): table symbols ``@ * # _`` per row, no separators."""
    return to_desc_text(m).translate(str.maketrans({"S": "@", "G": "*", "H": "#", "F": "_"}))


def parse_desc(rows: str | list[str], source: str | None = None) -> VSPMap:
    """Parse gym desc rows (a list, or text with one row per line)."""
    if isinstance(rows, str):
        rows = rows.splitlines()
    numbered = [(i + 1, r.strip()) for i, r in enumerate(rows) if r.strip()]
    n = len(numbered)
    if n == 0:
        raise VSPFormatError("empty desc", source, None)
    player = goal = None
    holes = set()
    for r, (lineno, row) in enumerate(numbered):
        if len(row) != n:
            raise VSPFormatError(f"row {row!r} has {len(row)} cells, expected {n} (the board must be square)", source, lineno)
        for c, ch in enumerate(row):
            if ch == "S":
                if player is not None:
                    raise VSPFormatError("second start cell 'S'", source, lineno)
                player = (r, c)
            elif ch == "G":
                if goal is not None:
                    raise VSPFormatError("second goal cell 'G'", source, lineno)
                goal = (r, c)
            elif ch == "H":
                holes.add((r, c))
            elif ch != "F":
                raise VSPFormatError(f"unknown desc cell {ch!r} (expected S, F, H or G)", source, lineno)
    if player is None or goal is None:
        raise VSPFormatError(f"desc has no {'S' if player is None else 'G'} cell", source, None)
    return _build(n, player, goal, holes, source, None)


def _build(n, player, goal, holes, source, line) -> VSPMap:
    try:
        return VSPMap(n, player, goal, frozenset(holes))
    except InvalidMapError as e:
        raise VSPFormatError(str(e), source, line) from None


def read_map(path: str | Path) -> VSPMap:
    """Read a map from a table, pure_text or desc file, by content."""
    path = Path(path)
    text = path.read_text()
    first = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    if first.startswith("|"):
        return parse_table(text, str(path))
    if first.startswith("This is a"):
        return parse_pure_text(text, str(path))
    return parse_desc(text, str(path))
