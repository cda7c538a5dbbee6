"""Fixed-size model images of a maze: one area-averaging resize, and a fast incremental version of it.

Every image a model sees (env observations, training data, the benchmark's own PNGs) goes through
the same linear operator: area averaging from the 64-px-per-cell render down to ``size x size``,
``out = W_r @ img @ W_c^T`` per channel, rounded half up.

Two layouts (``cell_pixels``):

* ``0`` (*stretch*): the whole board is resized to fill ``size x size``; a cell then spans
  ``size / level`` pixels, which straddles ViT patches at most levels.
* ``k > 0`` (*cell-aligned*, the default of new models): the board is resized to ``level * k`` pixels
  and placed in the top-left corner of a black ``size x size`` canvas, so cell ``(r, c)`` is always the
  ``k x k`` block at ``(r*k, c*k)`` whatever the level. With ``k`` equal to the ViT patch size every
  cell is exactly one patch and every latent position covers whole cells, which makes the MBAQ codes
  a clean function of a few cells and puts a given cell at the same place at every level. :func:`resize_image` applies it to any
image; :class:`ObservationRenderer` produces the identical result for a :class:`VSPMap` far faster,
by summing precomputed per-cell contributions (the operator is linear and each cell only reaches a
small window of output pixels), which is what makes ``VSPMaze-v0``'s ``rgb`` observations cheap.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from envs.vsp.maps import VSPMap
from envs.vsp.render import MazeRenderer

#: Rounding offset: area averages are exact multiples of small fractions, so a 1e-4 nudge makes
#: "round half up" independent of the order the float sums were taken in.
_ROUND_EPS = 1e-4


def area_weights(in_size: int, out_size: int) -> np.ndarray:
    """``(out_size, in_size)`` float64 weights: output pixel ``o`` averages input span ``[o*s, (o+1)*s)``, ``s = in/out``."""
    if in_size < 1 or out_size < 1:
        raise ValueError(f"sizes must be positive, got in={in_size}, out={out_size}")
    s = in_size / out_size
    lo = np.arange(out_size)[:, None] * s  # (out, 1) start of each output span in input pixels
    i = np.arange(in_size)[None, :]  # (1, in)
    overlap = np.clip(np.minimum(lo + s, i + 1) - np.maximum(lo, i), 0.0, None)  # (out, in)
    return overlap / overlap.sum(axis=1, keepdims=True)


def round_pixels(x: np.ndarray) -> np.ndarray:
    """Float image -> uint8, round half up (see ``_ROUND_EPS``).

    Inputs are convex combinations of 0..255 pixels, so they lie in [0, 255] up to float noise and
    truncation after the +0.5 offset is the floor; no clip needed.
    """
    return (x + (0.5 + _ROUND_EPS)).astype(np.uint8)


def content_side(level: int, size: int, cell_pixels: int = 0) -> int:
    """Side in pixels of the board inside a ``size x size`` model image (see the module docstring)."""
    if not isinstance(cell_pixels, (int, np.integer)) or cell_pixels < 0:
        raise ValueError(f"cell_pixels must be an int >= 0, got {cell_pixels!r}")
    if cell_pixels == 0:
        return int(size)
    side = int(level) * int(cell_pixels)
    if side > size:
        raise ValueError(f"a level-{level} board at {cell_pixels} px per cell needs {side} px, more than the image's {size}")
    return side


def layout_weights(in_size: int, level: int, size: int, cell_pixels: int = 0) -> np.ndarray:
    """``(size, in_size)`` read-only weights of one axis: area averaging into the board's rows, zeros below it."""
    return _layout_weights(int(in_size), int(level), int(size), int(cell_pixels))


@lru_cache(maxsize=64)
def _layout_weights(in_size: int, level: int, size: int, cell_pixels: int) -> np.ndarray:
    side = content_side(level, size, cell_pixels)
    w = np.zeros((size, in_size))
    w[:side] = area_weights(in_size, side)
    w.setflags(write=False)
    return w


def resize_image(img: np.ndarray, size: int, level: int | None = None, cell_pixels: int = 0) -> np.ndarray:
    """Area-resize an ``(H, W, 3)`` uint8 RGB image to ``(size, size, 3)``; the one resize used for model inputs.

    :param img: RGB image, e.g. a 64-px-per-cell render or a benchmark PNG (``render.load_png``).
    :param size: output side in pixels.
    :param level: board side ``n`` of the maze in ``img``; needed by the cell-aligned layout.
    :param cell_pixels: ``0`` stretches the board over the whole image, ``k > 0`` gives each cell
        ``k x k`` pixels in the top-left corner of a black canvas (module docstring).
    """
    img = np.asarray(img)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) RGB image, got shape {img.shape}")
    if not isinstance(size, (int, np.integer)) or size < 1:
        raise ValueError(f"size must be a positive int, got {size!r}")
    if cell_pixels and level is None:
        raise ValueError("the cell-aligned layout (cell_pixels > 0) needs the board's level")
    if cell_pixels and img.shape[0] != img.shape[1]:
        raise ValueError(f"the cell-aligned layout needs a square board image, got shape {img.shape}")
    lvl = 1 if level is None else int(level)
    wr = layout_weights(img.shape[0], lvl, int(size), cell_pixels)  # (size, H)
    wc = layout_weights(img.shape[1], lvl, int(size), cell_pixels)  # (size, W)
    x = img.astype(np.float64)
    rows = np.tensordot(wr, x, axes=(1, 0))  # (size, W, 3)
    out = np.tensordot(rows, wc, axes=(1, 1)).transpose(0, 2, 1)  # (size, 3, size) -> (size, size, 3)
    return round_pixels(out)


# Looks of the player's cell: elf facing L/D/R/U over ice, elf over the goal, cracked hole.
_BOARD_KINDS = ("ice", "hole", "goal")


class ObservationRenderer:
    """``resize_image(render(m, 64, last_action), size, level, cell_pixels)`` for ``level x level`` maps, incrementally.

    :param level: board side ``n``.
    :param size: observation side in pixels.
    :param cell_size: the render's pixels per cell (64 = the benchmark's images).
    :param cell_pixels: layout, as in :func:`resize_image`.
    """

    max_cached_boards = 64  # ~0.4 MB each at 128 px

    def __init__(self, level: int, size: int, cell_size: int = 64, cell_pixels: int = 0):
        self.level, self.size, self.cell_size, self.cell_pixels = level, size, cell_size, cell_pixels
        self._boards: dict = {}
        renderer = MazeRenderer(cell_size)
        n, cs = level, cell_size
        w = layout_weights(n * cs, n, size, cell_pixels)  # (size, n*cs), same for rows and columns
        # output window [lo, hi) of each cell row/column, and its weights
        self._win = []
        for k in range(n):
            nz = np.flatnonzero(w[:, k * cs : (k + 1) * cs].sum(axis=1))
            self._win.append((int(nz[0]), int(nz[-1]) + 1))
        self._wblock = [w[lo:hi, k * cs : (k + 1) * cs] for k, (lo, hi) in enumerate(self._win)]  # (h_k, cs)

        # Board tiles by kind, and player tiles (elf facing a over ice / goal; cracked hole), from a 2x2 probe map.
        probe = VSPMap(2, player=(0, 0), goal=(0, 1), holes=frozenset({(1, 0)}))
        bg = renderer.background(probe)
        board_tiles = {"ice": bg[:cs, :cs], "goal": bg[:cs, cs:], "hole": bg[cs:, :cs]}
        self._board = {kind: self._contributions(t) for kind, t in board_tiles.items()}
        self._player = {}
        for a in range(4):
            self._player[("ice", a)] = self._contributions(renderer.player_tile(probe, a))
            self._player[("goal", a)] = self._contributions(renderer.player_tile(probe.with_player((0, 1)), a))
        in_hole = self._contributions(renderer.player_tile(probe.with_player((1, 0)), None))
        for a in range(4):
            self._player[("hole", a)] = in_hole

    def _contributions(self, tile: np.ndarray) -> list[list[np.ndarray]]:
        """Per cell (r, c): the ``(h_r, h_c, 3)`` float64 output window this tile adds when drawn there."""
        t = tile.astype(np.float64)
        out = []
        for r in range(self.level):
            rows = np.tensordot(self._wblock[r], t, axes=(1, 0))  # (h_r, cs, 3)
            out.append([np.einsum("pw,owc->opc", self._wblock[c], rows) for c in range(self.level)])
        return out

    def board(self, m: VSPMap) -> np.ndarray:
        """``(size, size, 3)`` float64: the resized board without the player (before rounding)."""
        if m.size != self.level:
            raise ValueError(f"this renderer is for level {self.level}, got a {m.size}x{m.size} map")
        acc = np.zeros((self.size, self.size, 3))
        for r in range(self.level):
            r0, r1 = self._win[r]
            for c in range(self.level):
                c0, c1 = self._win[c]
                acc[r0:r1, c0:c1] += self._board[m.cell_kind((r, c))][r][c]
        return acc

    def player_window(self, board: np.ndarray, m: VSPMap, last_action: int | None) -> tuple[slice, slice, np.ndarray]:
        """The rounded output window around the player's cell: ``(rows, cols, (h_r, h_c, 3) uint8)``."""
        r, c = m.player
        kind = m.cell_kind((r, c))
        a = 1 if last_action is None else int(last_action)
        (r0, r1), (c0, c1) = self._win[r], self._win[c]
        win = board[r0:r1, c0:c1] - self._board[kind][r][c] + self._player[(kind, a)][r][c]
        return slice(r0, r1), slice(c0, c1), round_pixels(win)

    def cached_board(self, m: VSPMap) -> tuple[np.ndarray, np.ndarray, dict]:
        """``(board, rounded board, window cache)`` for ``m``'s board, shared by every map with the same goal and
        holes (small levels repeat boards often). The window cache maps ``(player, last action)`` to
        :meth:`player_window` results; callers fill it."""
        key = (m.size, m.goal, m.holes)
        hit = self._boards.get(key)
        if hit is None:
            board = self.board(m)
            hit = (board, round_pixels(board), {})
            if len(self._boards) >= self.max_cached_boards:
                self._boards.pop(next(iter(self._boards)))  # oldest first
            self._boards[key] = hit
        return hit

    def render(self, m: VSPMap, last_action: int | None = None, player: bool = True) -> np.ndarray:
        """``(size, size, 3)`` uint8, equal to ``resize_image(render_map(m, cell_size, last_action), size, level, cell_pixels)``
        (``player=False``: the board alone, no player drawn anywhere)."""
        board = self.board(m)
        img = round_pixels(board)
        if not player:
            return img
        rows, cols, win = self.player_window(board, m, last_action)
        img[rows, cols] = win
        return img


def observation_renderer(level: int, size: int, cell_size: int = 64, cell_pixels: int = 0) -> ObservationRenderer:
    """Shared :class:`ObservationRenderer` per ``(level, size, cell_size, cell_pixels)`` (precomputation takes milliseconds)."""
    return _observation_renderer(int(level), int(size), int(cell_size), int(cell_pixels))


@lru_cache(maxsize=64)
def _observation_renderer(level: int, size: int, cell_size: int, cell_pixels: int) -> ObservationRenderer:
    return ObservationRenderer(level, size, cell_size, cell_pixels)


def model_renderer(config, level: int) -> ObservationRenderer:
    """The renderer of the images a model with ``config`` (a ``LatentUMConfig``) sees for ``level x level`` boards."""
    return observation_renderer(level, config.image_size, cell_pixels=config.cell_pixels)
