"""Natively batched ``LatentUM-VSP-v0``: N imagined mazes, one model call per step.

``gym.make_vec("LatentUM-VSP-v0", num_envs=N, vectorization_mode="vector_entry_point")``. Each slot
keeps its own ``np_random`` (real start maps) and its own sampling generator, seeded exactly as the
single env seeds them, so slot ``i`` with seed ``s + i`` reproduces ``LatentUM-VSP-v0`` reset with
seed ``s + i``. Finished slots restart with a fresh REAL start state: by default on the next step
(Gymnasium's next-step autoreset: that step's action is ignored for them); with
``autoreset_mode=AutoresetMode.SAME_STEP`` (or ``"SameStep"``) in the step that ends them, which returns the new
start's observation and puts the last one in ``info["final_obs"]`` (an object array, set where
``info["_final_obs"]``) and that step's infos in ``info["final_info"]``, as Gymnasium's own vector envs do;
Stable-Baselines3 expects this (:class:`agents.sb3_vec_env.SB3VecEnv`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv

from envs.vsp.maps import LEVELS
from envs.vsp.maze_env import start_map
from envs.vsp.observation import model_renderer
from envs.latent_env import OBS_TYPES, codes_to_obs, latent_space
from latentum_world.model.depth_head import Sampling
from latentum_world.world.loading import load_world_model
from latentum_world.world.model import DEFAULT_FLAG_SOURCE, FLAG_SOURCES, LatentWorldModel


class LatentUMVSPVectorEnv(VectorEnv):
    """:param num_envs: slots; other parameters as :class:`envs.latent_env.LatentUMVSPEnv`."""

    metadata = {"render_modes": ["rgb_array"], "autoreset_mode": AutoresetMode.NEXT_STEP}
    AUTORESET_MODES = (AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP)

    def __init__(self, num_envs: int = 1, model: str | None = None, levels=LEVELS, obs_type: str = "latent",
                 temperature: float = 0.0, top_k: int | None = None, top_p: float | None = None,
                 max_episode_steps: int | None = 32, hole_prob: float = 0.2, device: str = "cpu",
                 render_mode: str | None = None, readout: bool = False, compile: bool = False,
                 flags_from: str = DEFAULT_FLAG_SOURCE, autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP,
                 memo: bool | str = True):
        try:
            autoreset_mode = AutoresetMode(autoreset_mode)
        except ValueError:
            autoreset_mode = None
        if autoreset_mode not in self.AUTORESET_MODES:
            raise ValueError(f"autoreset_mode must be one of {[m.value for m in self.AUTORESET_MODES]}")
        self.metadata = {**self.metadata, "autoreset_mode": autoreset_mode}
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        if obs_type not in OBS_TYPES:
            raise ValueError(f"obs_type must be one of {OBS_TYPES}, got {obs_type!r}")
        if flags_from not in FLAG_SOURCES:
            raise ValueError(f"flags_from must be one of {FLAG_SOURCES}, got {flags_from!r}")
        levels = (levels,) if isinstance(levels, (int, np.integer)) else tuple(levels)
        if not levels or any(lv not in LEVELS for lv in levels):
            raise ValueError(f"levels must be a non-empty subset of {LEVELS}, got {levels!r}")
        self.model, self.tokenizer = load_world_model(model, device)
        self.num_envs = num_envs
        self.single_observation_space = latent_space(self.model, obs_type)
        self.single_action_space = spaces.Discrete(4)
        self.observation_space = spaces.Box(
            np.repeat(self.single_observation_space.low[None], num_envs, 0),
            np.repeat(self.single_observation_space.high[None], num_envs, 0), dtype=self.single_observation_space.dtype)
        self.action_space = spaces.MultiDiscrete(np.full(num_envs, 4))
        self.levels, self.obs_type, self.hole_prob = tuple(int(x) for x in levels), obs_type, hole_prob
        self.max_episode_steps, self.render_mode, self.readout = max_episode_steps, render_mode, readout
        self.temperature = temperature
        dev = next(self.model.parameters()).device
        self._generators = [torch.Generator(device=dev) for _ in range(num_envs)]
        sampling = Sampling(greedy=True) if temperature == 0 else Sampling(temperature, top_k, top_p, generator=self._generators)
        self.world = LatentWorldModel(self.model, self.tokenizer, sampling, compile=compile, flags_from=flags_from,
                                      memo=memo)
        self._rngs = [seeding.np_random(None)[0] for _ in range(num_envs)]
        self.real_maps: list = [None] * num_envs
        self._elapsed = np.zeros(num_envs, dtype=np.int64)
        self._ended = np.zeros(num_envs, dtype=bool)

    # ------------------------------------------------------------------ helpers
    def _start(self, i: int, options: dict | None) -> np.ndarray:
        """Draw slot ``i``'s real map and seed its sampler; returns its first image."""
        rng = self._rngs[i]
        m = start_map(rng, options, self.levels, self.hole_prob)
        self._generators[i].manual_seed(int(rng.integers(2**63 - 1)))  # after the map, as the single env
        self.real_maps[i] = m
        self._elapsed[i] = 0
        self._ended[i] = False
        return model_renderer(self.model.config, m.size).render(m)

    def _infos(self, p_goal: np.ndarray, p_hole: np.ndarray) -> dict[str, Any]:
        info = {"real_map": np.array(self.real_maps, dtype=object), "level": np.array([m.size for m in self.real_maps]),
                "p_goal": p_goal, "p_hole": p_hole}
        if self.readout:  # every slot's read-out in one batched decode
            boards = np.empty(self.num_envs, dtype=object)
            boards[:] = self.world.read_board()
            info["board"] = boards
        return info

    # ------------------------------------------------------------------ API
    def reset(self, *, seed: int | list[int | None] | None = None, options: dict | None = None):
        if seed is not None:
            seeds = [seed + i for i in range(self.num_envs)] if isinstance(seed, int) else list(seed)
            if len(seeds) != self.num_envs:
                raise ValueError(f"expected {self.num_envs} seeds, got {len(seeds)}")
            self._rngs = [seeding.np_random(s)[0] for s in seeds]
        images = np.stack([self._start(i, options) for i in range(self.num_envs)])
        codes = self.world.reset(torch.from_numpy(images), draft_boards=list(self.real_maps))  # drafts: speed only
        zeros = np.zeros(self.num_envs)
        return codes_to_obs(self.model, codes, self.obs_type), self._infos(zeros, zeros)

    def step(self, actions):
        actions = np.asarray(actions)
        if actions.shape != (self.num_envs,) or not np.issubdtype(actions.dtype, np.integer) or ((actions < 0) | (actions > 3)).any():
            raise ValueError(f"actions must be {self.num_envs} ints in 0..3, got {actions.tolist()}")
        if self.real_maps[0] is None:
            raise RuntimeError("call reset() before step()")
        n = self.num_envs
        rewards, terminated, truncated = np.zeros(n), np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
        p_goal, p_hole = np.zeros(n), np.zeros(n)
        restart = np.flatnonzero(self._ended)
        active = np.flatnonzero(~self._ended)
        if len(restart):
            images = np.stack([self._start(int(i), None) for i in restart])
            self.world.reset(torch.from_numpy(images), rows=torch.from_numpy(restart),
                             draft_boards=[self.real_maps[i] for i in restart])
        if len(active):
            out = self.world.step(torch.from_numpy(actions[active]), rows=torch.from_numpy(active))
            rewards[active] = out.reward.cpu().numpy()
            terminated[active] = out.terminated.cpu().numpy()
            p_goal[active], p_hole[active] = out.p_goal.cpu().numpy(), out.p_hole.cpu().numpy()
            self._elapsed[active] += 1
            if self.max_episode_steps is not None:
                truncated[active] = ~terminated[active] & (self._elapsed[active] >= self.max_episode_steps)
        self._ended = terminated | truncated
        obs = codes_to_obs(self.model, self.world.codes, self.obs_type)
        infos = self._infos(p_goal, p_hole)
        ended = np.flatnonzero(self._ended)
        if self.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP and len(ended):
            final_obs = np.full(n, None, dtype=object)
            for i in ended:
                final_obs[i] = obs[i].copy()
            mask = self._ended.copy()
            final_info = {**infos, **{f"_{k}": mask for k in infos}}
            images = np.stack([self._start(int(i), None) for i in ended])  # clears _ended for them
            self.world.reset(torch.from_numpy(images), rows=torch.from_numpy(ended),
                             draft_boards=[self.real_maps[i] for i in ended])
            obs = codes_to_obs(self.model, self.world.codes, self.obs_type)
            p_goal, p_hole = p_goal.copy(), p_hole.copy()
            p_goal[ended] = p_hole[ended] = 0.0  # the restarted slots' infos are their reset's
            infos = {**self._infos(p_goal, p_hole), "final_obs": final_obs, "_final_obs": mask,
                     "final_info": final_info, "_final_info": mask}
        return obs, rewards, terminated, truncated, infos

    def render(self):
        if self.render_mode == "rgb_array":
            from latentum_world.world.decoder import decode_images

            return list(decode_images(self.model, self.world.codes))
        return None
