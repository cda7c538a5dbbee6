"""Pixel-exact re-implementation of gym FrozenLake's ``rgb_array`` render for VSP boards, without pygame.

gymnasium (< 1.4) draws each cell as the ice sprite, then the hole / goal / start-stool sprite, then a
1 px (180, 200, 230) outline; last the elf (or, in a hole, the cracked hole) on the player's cell. The
VSP benchmark's images are those renders with no stool, at 64 px per cell. This module reproduces them
from the sprites of the installed gymnasium with two facts measured on pygame-ce 2.5.8 / SDL 2.32.10:

* ``pygame.transform.scale`` is SDL's nearest neighbour: source index ``(inc // 2 + i * inc) >> 16``
  with ``inc = (32 << 16) // size`` (checked for every size 1..599);
* blitting a per-pixel-alpha sprite onto the (alpha-less) window is, per channel,
  ``(src * (a + 1) + dst * (256 - a)) >> 8`` (checked for all 256**3 (src, dst, a) triples).

Every tile is composited once per cell size and cached, so a render is numpy block copies.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import warnings
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from envs.vsp.maps import DOWN, VSPMap

BORDER_COLOR = (180, 200, 230)
SPRITE_NAMES = ("ice", "hole", "cracked_hole", "goal", "elf_left", "elf_down", "elf_right", "elf_up")
ICE, HOLE, GOAL = 0, 1, 2  # indices into the board-tile stack


def sprite_dir() -> Path:
    """The installed gymnasium's ``envs/toy_text/img`` folder (found without importing gymnasium)."""
    spec = importlib.util.find_spec("gymnasium")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("gymnasium is not installed; the VSP renderer needs its FrozenLake sprites (gymnasium>=1.0,<1.4)")
    return Path(next(iter(spec.submodule_search_locations))) / "envs" / "toy_text" / "img"


def load_png(path: str | Path) -> np.ndarray:
    """Read an image as ``(H, W, 3)`` uint8 RGB (alpha, if any, is dropped).

    :param path: image file.
    """
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()


@lru_cache(maxsize=1)
def _sprites() -> dict[str, np.ndarray]:
    """The 32x32 FrozenLake sprites as ``(32, 32, 4)`` uint8 RGBA (palette transparency expanded)."""
    folder = sprite_dir()
    version = importlib.metadata.version("gymnasium")
    missing = [n for n in SPRITE_NAMES if not (folder / f"{n}.png").is_file()]
    if missing:
        raise FileNotFoundError(
            f"FrozenLake sprites {missing} not found in {folder} (gymnasium {version}); the VSP renderer needs "
            "the sprite set of gymnasium>=1.0,<1.4 (1.4 replaced it): install e.g. 'gymnasium>=1.0,<1.4'"
        )
    if tuple(int(p) for p in version.split(".")[:2] if p.isdigit()) >= (1, 4):
        warnings.warn(f"gymnasium {version} ships new FrozenLake sprites; renders will not match the VSP images (<1.4)")
    out = {}
    for name in SPRITE_NAMES:
        with Image.open(folder / f"{name}.png") as im:
            out[name] = np.asarray(im.convert("RGBA"), dtype=np.uint8).copy()
    return out


def _scale(img: np.ndarray, size: int) -> np.ndarray:
    """SDL nearest-neighbour scale of a square ``(s, s, C)`` image to ``(size, size, C)``."""
    inc = (img.shape[0] << 16) // size
    idx = (inc // 2 + np.arange(size, dtype=np.int64) * inc) >> 16
    return img[idx[:, None], idx[None, :]]


def _blit(dst: np.ndarray, src: np.ndarray) -> np.ndarray:
    """pygame-ce/SDL per-pixel-alpha blit of RGBA ``src`` onto RGB ``dst`` (both ``(cs, cs, .)``)."""
    a = src[..., 3:].astype(np.uint32)
    out = (src[..., :3].astype(np.uint32) * (a + 1) + dst.astype(np.uint32) * (256 - a)) >> 8
    return out.astype(np.uint8)


def _check_action(last_action: int | None) -> int:
    if last_action is None:
        return DOWN
    if isinstance(last_action, (bool, np.bool_)) or not isinstance(last_action, (int, np.integer)) or not 0 <= last_action < 4:
        raise ValueError(f"last_action must be None or an int in 0..3 (L, D, R, U), got {last_action!r}")
    return int(last_action)


class MazeRenderer:
    """Renders :class:`VSPMap` boards like gym FrozenLake (no stool) at a fixed cell size.

    :param cell_size: pixels per cell side (gym uses 64 for every VSP level, 3..8).
    """

    def __init__(self, cell_size: int = 64):
        if isinstance(cell_size, (bool, np.bool_)) or not isinstance(cell_size, (int, np.integer)) or cell_size < 4:
            raise ValueError(f"cell_size must be an int >= 4, got {cell_size!r}")
        self.cell_size = cs = int(cell_size)
        sp = {k: _scale(v, cs) for k, v in _sprites().items()}
        ice = _blit(np.zeros((cs, cs, 3), np.uint8), sp["ice"])
        board = [ice, _blit(ice, sp["hole"]), _blit(ice, sp["goal"])]
        for tile in board:  # pygame.draw.rect(surface, color, (x, y, cs, cs), 1), drawn after the cell's sprites
            tile[[0, -1], :] = BORDER_COLOR
            tile[:, [0, -1]] = BORDER_COLOR
        self._board = np.stack(board)  # (3, cs, cs, 3): ICE, HOLE, GOAL
        elves = [sp[f"elf_{d}"] for d in ("left", "down", "right", "up")]
        # (2, 4, cs, cs, 3): [ice | goal][action]: the elf over the bordered tile
        self._elf = np.stack([np.stack([_blit(self._board[k], e) for e in elves]) for k in (ICE, GOAL)])
        self._cracked = _blit(self._board[HOLE], sp["cracked_hole"])  # (cs, cs, 3); opaque, hides the border
        for arr in (self._board, self._elf, self._cracked):
            arr.setflags(write=False)
        self._ice_boards: dict[int, np.ndarray] = {}

    def _ice_board(self, n: int) -> np.ndarray:
        """The all-ice ``n x n`` board, cached per ``n``: ``(n*cs, n*cs, 3)`` uint8, read-only."""
        board = self._ice_boards.get(n)
        if board is None:
            board = np.tile(self._board[ICE], (n, n, 1))
            board.setflags(write=False)
            self._ice_boards[n] = board
        return board

    def background(self, m: VSPMap) -> np.ndarray:
        """The board with borders, without the player: ``(n*cs, n*cs, 3)`` uint8.

        :param m: the board (its ``player`` is ignored).
        """
        cs = self.cell_size
        img = self._ice_board(m.size).copy()  # one memcpy, then only the hole and goal cells
        for kind, cells in ((HOLE, m.holes), (GOAL, (m.goal,))):
            for r, c in cells:
                img[r * cs : (r + 1) * cs, c * cs : (c + 1) * cs] = self._board[kind]
        return img

    def player_tile(self, m: VSPMap, last_action: int | None = None) -> np.ndarray:
        """The player's cell as the full render shows it: ``(cs, cs, 3)`` uint8.

        :param m: the board.
        :param last_action: the elf faces this action's way (0..3 = L, D, R, U); ``None`` = down, as after reset.
        """
        action = _check_action(last_action)
        if m.in_hole:
            return self._cracked.copy()
        return self._elf[1 if m.on_goal else 0, action].copy()

    def render(self, m: VSPMap, last_action: int | None = None) -> np.ndarray:
        """The full frame, equal to gym's ``rgb_array`` render (no stool): ``(n*cs, n*cs, 3)`` uint8.

        :param m: the board.
        :param last_action: see :meth:`player_tile`.
        """
        tile = self.player_tile(m, last_action)
        img = self.background(m)
        r, c = m.player
        cs = self.cell_size
        img[r * cs : (r + 1) * cs, c * cs : (c + 1) * cs] = tile
        return img


_RENDERERS: dict[int, MazeRenderer] = {}


def render_map(m: VSPMap, cell_size: int = 64, last_action: int | None = None) -> np.ndarray:
    """Render ``m`` with a cached :class:`MazeRenderer` for ``cell_size``: ``(n*cs, n*cs, 3)`` uint8.

    :param m: the board.
    :param cell_size: pixels per cell side (>= 4).
    :param last_action: the elf's facing (0..3 = L, D, R, U), ``None`` = down.
    """
    renderer = _RENDERERS.get(cell_size) if isinstance(cell_size, int) and not isinstance(cell_size, bool) else None
    if renderer is None:
        renderer = MazeRenderer(cell_size)
        _RENDERERS[renderer.cell_size] = renderer
    return renderer.render(m, last_action)
