"""``VSPMaze-v0``: the real VSP FrozenLake maze as a Gymnasium environment.

A fresh map is drawn by the benchmark's rule (:func:`envs.vsp.maps.generate_map`) at every reset,
at a level chosen uniformly from ``levels``, unless ``options`` fixes the level or the map.

## Action space
``Discrete(4)``: 0 = Left, 1 = Down, 2 = Right, 3 = Up (gym FrozenLake order). Non-slippery:
a move off the edge leaves the player where it is.

## Observation space
* ``obs_type="rgb"`` (default): ``Box(0, 255, (obs_size, obs_size, 3), uint8)``, the benchmark's
  64-px-per-cell render area-resized to ``obs_size`` (128 by default) whatever the level; exactly
  :func:`envs.vsp.observation.resize_image` of :func:`envs.vsp.render.render_map`. ``cell_pixels=k``
  instead gives every cell ``k x k`` pixels from the top-left corner of a black canvas (the layout of
  LatentUM models; see :mod:`envs.vsp.observation`).
* ``obs_type="grid"``: ``Box(0, 6, (8, 8), uint8)`` cell codes (0 ice, 1 hole, 2 goal, 3 player,
  4 player on goal, 5 player in hole) in the top-left ``n x n`` corner, padded with 6; the level is in ``info``.
* ``obs_type="latent"`` / ``"tokens"``: the real frame encoded by a LatentUM checkpoint (``model``, default
  the bundled one) exactly as ``LatentUM-VSP-v0`` observes, so a policy trained in imagination acts
  in the real maze unchanged.

## Rewards
1 on reaching the goal, else 0.

## Episode end
Terminated when the player reaches the goal or falls into a hole; truncated after
``max_episode_steps`` steps (``None`` disables it).

## Info
``level`` (n), ``map`` (the current :class:`VSPMap`, player included), ``last_action``.

## Rendering
``rgb_array``: the full-resolution render (64 px per cell, like the benchmark's PNGs, elf facing the
last action); ``ansi``: the VSP table text of the current state, under the last action.

## Registered ids
``VSPMaze-v0`` (registered on ``import latentum_world``).

## Reset options
``{"level": n}`` draws a map of that level; ``{"map": m}`` plays the given map, where ``m`` is a
:class:`VSPMap`, VSP table text, gym desc rows, or an item from :func:`envs.vsp.loader.load_vsp`.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from envs.vsp.formats import parse_desc, parse_table, to_table
from envs.vsp.maps import ACTION_NAMES, LEVELS, MAX_SIZE, VSPMap, generate_map
from envs.vsp.observation import observation_renderer
from envs.vsp.render import render_map

GRID_PAD = 6
OBS_TYPES = ("rgb", "grid", "latent", "tokens")


class VSPMazeEnv(gym.Env):
    """The real VSP maze; see the module docstring.

    :param levels: levels to draw maps from (each in 3..8).
    :param hole_prob: hole probability of the map generator (the benchmark uses 0.2).
    :param obs_type: ``"rgb"`` or ``"grid"``.
    :param obs_size: side of ``rgb`` observations in pixels.
    :param cell_pixels: layout of ``rgb`` observations: 0 stretches the board over the image, ``k > 0`` draws
        each cell ``k x k`` px from the top-left corner. ``latent``/``tokens`` use the model's own layout.
    :param max_episode_steps: truncation horizon (``None``: never truncate).
    :param render_mode: ``"rgb_array"``, ``"ansi"`` or ``None``.
    """

    metadata = {"render_modes": ["rgb_array", "ansi"], "render_fps": 4}

    def __init__(
        self,
        levels: tuple[int, ...] | list[int] | int = LEVELS,
        hole_prob: float = 0.2,
        obs_type: str = "rgb",
        obs_size: int = 128,
        cell_pixels: int = 0,
        max_episode_steps: int | None = 100,
        render_mode: str | None = None,
        model: str | None = None,
        device: str = "cpu",
    ):
        levels = (levels,) if isinstance(levels, (int, np.integer)) else tuple(levels)
        if not levels or any(not isinstance(lv, (int, np.integer)) or lv not in LEVELS for lv in levels):
            raise ValueError(f"levels must be a non-empty subset of {LEVELS}, got {levels!r}")
        if obs_type not in OBS_TYPES:
            raise ValueError(f"obs_type must be one of {OBS_TYPES}, got {obs_type!r}")
        if not isinstance(obs_size, (int, np.integer)) or obs_size < 8:
            raise ValueError(f"obs_size must be an int >= 8, got {obs_size!r}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']} or None, got {render_mode!r}")
        if max_episode_steps is not None and max_episode_steps < 1:
            raise ValueError(f"max_episode_steps must be positive or None, got {max_episode_steps}")
        if not 0.0 <= hole_prob < 1.0:
            raise ValueError(f"hole_prob must be in [0, 1), got {hole_prob}")
        self.levels = tuple(int(lv) for lv in levels)
        self.hole_prob = hole_prob
        self.obs_type = obs_type
        self.obs_size = int(obs_size)
        self.cell_pixels = int(cell_pixels)
        if max(self.levels) * self.cell_pixels > self.obs_size or self.cell_pixels < 0:
            raise ValueError(f"cell_pixels {cell_pixels} does not fit level-{max(self.levels)} boards in {obs_size} px")
        self.max_episode_steps = max_episode_steps
        self.render_mode = render_mode
        self.action_space = spaces.Discrete(4)
        self._encoder = None
        if obs_type in ("latent", "tokens"):
            from envs.latent_env import latent_space
            from latentum_world.world.loading import load_world_model

            self._encoder, _ = load_world_model(model, device)
            # the model's image, rendered as the world model sees it
            self.obs_size, self.cell_pixels = self._encoder.config.image_size, self._encoder.config.cell_pixels
            self.observation_space = latent_space(self._encoder, obs_type)
        elif obs_type == "rgb":
            self.observation_space = spaces.Box(0, 255, (self.obs_size, self.obs_size, 3), np.uint8)
        else:
            self.observation_space = spaces.Box(0, GRID_PAD, (MAX_SIZE, MAX_SIZE), np.uint8)
        self.map: VSPMap | None = None
        self.last_action: int | None = None
        self.elapsed_steps = 0
        self._renderer = None  # the observation renderer of the current level (rgb, latent, tokens)
        self._board: np.ndarray | None = None  # resized board without the player (rgb only)
        self._board_u8: np.ndarray | None = None
        self._windows: dict = {}  # (player cell, last action) -> rounded observation window, for this board

    # ------------------------------------------------------------------ API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self.map = start_map(self.np_random, options, self.levels, self.hole_prob)
        self.last_action = None
        self.elapsed_steps = 0
        if self.obs_type != "grid":
            self._renderer = observation_renderer(self.map.size, self.obs_size, cell_pixels=self.cell_pixels)
            self._board, self._board_u8, self._windows = self._renderer.cached_board(self.map)
        return self._observation(), self._info()

    def step(self, action):
        if self.map is None:
            raise RuntimeError("call reset() before step()")
        if self.map.terminal:
            raise RuntimeError("the episode has terminated; call reset()")
        if not isinstance(action, (int, np.integer)) or isinstance(action, bool):
            if isinstance(action, np.ndarray) and action.shape == () and np.issubdtype(action.dtype, np.integer):
                action = int(action)
            else:
                raise ValueError(f"action must be an int in 0..3 (L, D, R, U), got {action!r}")
        if not 0 <= action < 4:
            raise ValueError(f"action must be an int in 0..3 (L, D, R, U), got {action!r}")
        self.map = self.map.move(int(action))
        self.last_action = int(action)
        self.elapsed_steps += 1
        terminated = self.map.terminal
        reward = 1.0 if self.map.on_goal else 0.0
        truncated = (not terminated) and self.max_episode_steps is not None and self.elapsed_steps >= self.max_episode_steps
        return self._observation(), reward, terminated, truncated, self._info()

    def render(self):
        if self.map is None:
            raise RuntimeError("call reset() before render()")
        if self.render_mode == "rgb_array":
            return render_map(self.map, 64, self.last_action)
        if self.render_mode == "ansi":
            head = f"  ({ACTION_NAMES[self.last_action]})\n" if self.last_action is not None else "\n"
            return head + to_table(self.map)
        return None

    # ------------------------------------------------------------------ helpers
    def _observation(self) -> np.ndarray:
        assert self.map is not None
        if self.obs_type == "grid":
            grid = np.full((MAX_SIZE, MAX_SIZE), GRID_PAD, dtype=np.uint8)
            grid[: self.map.size, : self.map.size] = self.map.to_grid()
            return grid
        # the board is fixed within an episode (and shared by equal boards), so each (cell, facing) window is computed once
        key = (self.map.player, self.last_action)
        patch = self._windows.get(key)
        if patch is None:
            patch = self._windows[key] = self._renderer.player_window(self._board, self.map, self.last_action)
        obs = self._board_u8.copy()
        rows, cols, win = patch
        obs[rows, cols] = win
        if self._encoder is not None:
            return self._encode(obs)
        return obs

    def _encode(self, image: np.ndarray) -> np.ndarray:
        import torch

        from envs.latent_env import codes_to_obs

        with torch.no_grad():
            x = torch.from_numpy(image)[None].to(next(self._encoder.parameters()).device)
            codes = self._encoder.quantizer.encode(self._encoder.get_vit_feature(x))
        return codes_to_obs(self._encoder, codes, self.obs_type)[0]

    def _info(self) -> dict[str, Any]:
        assert self.map is not None
        return {"level": self.map.size, "map": self.map, "last_action": self.last_action}


def start_map(rng: np.random.Generator, options: dict[str, Any] | None, levels: tuple[int, ...], hole_prob: float) -> VSPMap:
    """The real map an episode starts from: ``options["map"]`` (any form :func:`coerce_map` takes), or a map drawn
    by the benchmark's rule at ``options["level"]`` or at a level drawn from ``levels``. Validates the options."""
    options = dict(options or {})
    unknown = set(options) - {"level", "map"}
    if unknown:
        raise ValueError(f"unknown reset options {sorted(unknown)}; expected 'level' and/or 'map'")
    if options.get("map") is not None:
        m = coerce_map(options["map"])
        if options.get("level") is not None and options["level"] != m.size:
            raise ValueError(f"options give level {options['level']} but a {m.size}x{m.size} map")
        if m.size not in LEVELS:
            raise ValueError(f"map size {m.size} is not a VSP level {LEVELS}")
        return m
    level = options.get("level")
    if level is None:
        level = levels[int(rng.integers(len(levels)))]
    elif level not in LEVELS:
        raise ValueError(f"level must be one of {LEVELS}, got {level!r}")
    return generate_map(rng, int(level), hole_prob)


def coerce_map(value: Any) -> VSPMap:
    """A :class:`VSPMap` from a map, a loader item (``.map``), VSP table text or gym desc rows."""
    if isinstance(value, VSPMap):
        return value
    inner = getattr(value, "map", None)
    if isinstance(inner, VSPMap):
        return inner
    if isinstance(value, str):
        return parse_table(value) if value.lstrip().startswith("|") else parse_desc(value)
    if isinstance(value, (list, tuple)) and all(isinstance(r, (str, bytes)) for r in value):
        return parse_desc([r.decode() if isinstance(r, bytes) else r for r in value])
    raise TypeError(f"cannot make a VSP map from {type(value).__name__}; pass a VSPMap, table text or desc rows")
