"""The VSP maze board: a square grid with one player, one goal and some holes.

Coordinates are 0-based ``(row, col)`` with rows counted from the top, as in gym FrozenLake;
the VSP text formats print them 1-based (see :mod:`envs.vsp.formats`).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field, replace
from typing import Iterable

import numpy as np

Cell = tuple[int, int]

#: Action ids, gym FrozenLake order.
LEFT, DOWN, RIGHT, UP = 0, 1, 2, 3
ACTION_LETTERS = ("L", "D", "R", "U")
ACTION_NAMES = ("Left", "Down", "Right", "Up")
#: (d_row, d_col) of each action.
ACTION_DELTAS = ((0, -1), (1, 0), (0, 1), (-1, 0))

MIN_SIZE, MAX_SIZE = 2, 8
#: The benchmark's levels: level n is an n x n board.
LEVELS = (3, 4, 5, 6, 7, 8)


class InvalidMapError(ValueError):
    """A board that breaks the VSP rules (cell off the board, goal on a hole, ...)."""


def action_from_letter(letter: str) -> int:
    """``"L"|"D"|"R"|"U"`` -> action id; anything else raises ``ValueError``."""
    try:
        return ACTION_LETTERS.index(letter)
    except ValueError:
        raise ValueError(f"unknown action {letter!r}: expected one of L, D, R, U") from None


@dataclass(frozen=True)
class VSPMap:
    """An ``size x size`` FrozenLake board.

    :param size: side length ``n`` (the VSP level).
    :param player: the player's cell; it may stand on the goal or in a hole (rollout states).
    :param goal: the goal cell, never a hole.
    :param holes: hole cells.
    """

    size: int
    player: Cell
    goal: Cell
    holes: frozenset[Cell] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        object.__setattr__(self, "player", _as_cell(self.player))
        object.__setattr__(self, "goal", _as_cell(self.goal))
        object.__setattr__(self, "holes", frozenset(_as_cell(h) for h in self.holes))
        if not isinstance(self.size, (int, np.integer)) or not MIN_SIZE <= self.size <= MAX_SIZE:
            raise InvalidMapError(f"board size must be an int in [{MIN_SIZE}, {MAX_SIZE}], got {self.size!r}")
        object.__setattr__(self, "size", int(self.size))
        for name, cell in (("player", self.player), ("goal", self.goal)):
            if not self.on_board(cell):
                raise InvalidMapError(f"{name} {cell} is off the {self.size}x{self.size} board")
        for hole in self.holes:
            if not self.on_board(hole):
                raise InvalidMapError(f"hole {hole} is off the {self.size}x{self.size} board")
        if self.goal in self.holes:
            raise InvalidMapError(f"goal {self.goal} is on a hole")

    # ------------------------------------------------------------------ queries
    def on_board(self, cell: Cell) -> bool:
        return 0 <= cell[0] < self.size and 0 <= cell[1] < self.size

    @property
    def level(self) -> int:
        return self.size

    @property
    def on_goal(self) -> bool:
        return self.player == self.goal

    @property
    def in_hole(self) -> bool:
        return self.player in self.holes

    @property
    def terminal(self) -> bool:
        return self.on_goal or self.in_hole

    def cell_kind(self, cell: Cell) -> str:
        """``"hole" | "goal" | "ice"`` for the board under ``cell`` (ignores the player)."""
        if cell in self.holes:
            return "hole"
        return "goal" if cell == self.goal else "ice"

    def sorted_holes(self) -> list[Cell]:
        """Holes in raster order, the order every VSP format lists them."""
        return sorted(self.holes)

    # ------------------------------------------------------------------ dynamics
    def move(self, action: int) -> VSPMap:
        """Non-slippery FrozenLake step: a move off the edge leaves the player in place."""
        if not isinstance(action, (int, np.integer)) or not 0 <= action < 4:
            raise ValueError(f"unknown action {action!r}: expected an int in 0..3 (L, D, R, U)")
        dr, dc = ACTION_DELTAS[action]
        r, c = self.player[0] + dr, self.player[1] + dc
        if not self.on_board((r, c)):
            return self
        # hot path of every env step: the board is already valid, skip __post_init__
        moved = object.__new__(VSPMap)
        moved.__dict__.update(self.__dict__, player=(r, c))
        return moved

    def with_player(self, cell: Cell) -> VSPMap:
        return replace(self, player=cell)

    def shortest_path(self, start: Cell | None = None) -> list[int] | None:
        """Shortest hole-free action list from ``start`` (default: the player) to the goal, by BFS.

        Ties break in action order L, D, R, U, so the answer is deterministic. ``None`` if unreachable.
        """
        start = self.player if start is None else _as_cell(start)
        if start in self.holes:
            return None
        parent: dict[Cell, tuple[Cell, int] | None] = {start: None}
        queue = deque([start])
        while queue:
            cell = queue.popleft()
            if cell == self.goal:
                actions: list[int] = []
                while parent[cell] is not None:
                    cell, a = parent[cell]  # type: ignore[misc]
                    actions.append(a)
                return actions[::-1]
            for a, (dr, dc) in enumerate(ACTION_DELTAS):
                nxt = (cell[0] + dr, cell[1] + dc)
                if self.on_board(nxt) and nxt not in self.holes and nxt not in parent:
                    parent[nxt] = (cell, a)
                    queue.append(nxt)
        return None

    def distances_to_goal(self) -> np.ndarray:
        """``(n, n)`` int array: hole-free BFS distance from each cell to the goal, -1 where unreachable."""
        dist = np.full((self.size, self.size), -1, dtype=np.int64)
        dist[self.goal] = 0
        queue = deque([self.goal])
        while queue:
            r, c = queue.popleft()
            for dr, dc in ACTION_DELTAS:
                nr, nc = r + dr, c + dc
                if 0 <= nr < self.size and 0 <= nc < self.size and (nr, nc) not in self.holes and dist[nr, nc] < 0:
                    dist[nr, nc] = dist[r, c] + 1
                    queue.append((nr, nc))
        return dist

    @property
    def solvable(self) -> bool:
        return self.shortest_path() is not None

    @property
    def manhattan(self) -> int:
        return abs(self.player[0] - self.goal[0]) + abs(self.player[1] - self.goal[1])

    @property
    def is_detour(self) -> bool:
        """The benchmark's "detour" subset: the shortest path is longer than the Manhattan distance."""
        path = self.shortest_path()
        return path is not None and len(path) > self.manhattan

    # ------------------------------------------------------------------ arrays
    def to_grid(self, player: bool = True) -> np.ndarray:
        """``(n, n)`` uint8 cell codes: 0 ice, 1 hole, 2 goal, 3 player, 4 player on goal, 5 player in hole
        (``player=False``: the board alone, codes 0..2)."""
        grid = np.zeros((self.size, self.size), dtype=np.uint8)
        for h in self.holes:
            grid[h] = CODE_HOLE
        grid[self.goal] = CODE_GOAL
        if player:
            grid[self.player] = CODE_PLAYER_ON_GOAL if self.on_goal else CODE_PLAYER_IN_HOLE if self.in_hole else CODE_PLAYER
        return grid

    @classmethod
    def from_grid(cls, grid: np.ndarray) -> VSPMap:
        """Inverse of :meth:`to_grid`; raises :class:`InvalidMapError` unless there is exactly one player and goal."""
        grid = np.asarray(grid)
        if grid.ndim != 2 or grid.shape[0] != grid.shape[1]:
            raise InvalidMapError(f"grid must be square 2-D, got shape {grid.shape}")
        if grid.size and (grid.max() > CODE_PLAYER_IN_HOLE or grid.min() < 0):
            raise InvalidMapError(f"grid codes must be in 0..{CODE_PLAYER_IN_HOLE}")
        holes = {tuple(int(v) for v in x) for x in np.argwhere((grid == CODE_HOLE) | (grid == CODE_PLAYER_IN_HOLE))}
        players = np.argwhere(grid >= CODE_PLAYER)
        goals = np.argwhere((grid == CODE_GOAL) | (grid == CODE_PLAYER_ON_GOAL))
        if len(players) != 1:
            raise InvalidMapError(f"grid must hold exactly one player, found {len(players)}")
        if len(goals) != 1:
            raise InvalidMapError(f"grid must hold exactly one goal, found {len(goals)}")
        return cls(grid.shape[0], tuple(players[0]), tuple(goals[0]), frozenset(holes))  # type: ignore[arg-type]


CODE_ICE, CODE_HOLE, CODE_GOAL, CODE_PLAYER, CODE_PLAYER_ON_GOAL, CODE_PLAYER_IN_HOLE = range(6)


def _as_cell(cell: Iterable[int]) -> Cell:
    r, c = (int(v) for v in cell)
    return (r, c)


def generate_map(
    rng: np.random.Generator,
    level: int,
    hole_prob: float = 0.2,
    max_tries: int = 10_000,
) -> VSPMap:
    """Draw a board by the benchmark's rule.

    Player and goal on two distinct uniform cells; every other cell a hole with probability
    ``hole_prob``; resample until a 4-connected hole-free path joins them.

    :param rng: source of randomness (``np.random.default_rng(seed)``).
    :param level: board side ``n``.
    :param hole_prob: probability that a free cell is a hole (0.2 in the main task, ~0.5 in task1).
    """
    if not isinstance(level, (int, np.integer)) or not MIN_SIZE <= level <= MAX_SIZE:
        raise ValueError(f"level must be an int in [{MIN_SIZE}, {MAX_SIZE}], got {level!r}")
    if not 0.0 <= hole_prob < 1.0:
        raise ValueError(f"hole_prob must be in [0, 1), got {hole_prob}")
    n = int(level)
    for _ in range(max_tries):
        player_idx, goal_idx = rng.choice(n * n, size=2, replace=False)
        is_hole = rng.random(n * n) < hole_prob
        is_hole[[player_idx, goal_idx]] = False
        m = VSPMap(
            n,
            divmod(int(player_idx), n),
            divmod(int(goal_idx), n),
            frozenset(divmod(int(i), n) for i in np.flatnonzero(is_hole)),
        )
        if m.solvable:
            return m
    raise RuntimeError(f"no solvable level-{n} map in {max_tries} tries at hole_prob={hole_prob}")
