"""Stable-Baselines3 on the batched world model: a ``VecEnv`` over one natively batched Gymnasium vector env.

SB3 wraps a single ``gym.Env`` in its ``DummyVecEnv``, so ``PPO("MlpPolicy", gym.make("LatentUM-VSP-v0"))``
calls the model once per env per step. :class:`SB3VecEnv` hands SB3 the vector env instead
(:class:`envs.latent_vector_env.LatentUMVSPVectorEnv`, or any Gymnasium ``VectorEnv`` with same-step autoreset),
so every SB3 step is ONE batched model call for all ``num_envs`` mazes::

    env = SB3VecEnv.make("LatentUM-VSP-v0", num_envs=16, levels=(3,))
    agent = PPO("MlpPolicy", env, n_steps=64).learn(50_000)

SB3's conventions are kept: an ended slot's step already returns its next episode's first observation, with the
last one in ``infos[i]["terminal_observation"]`` and ``infos[i]["TimeLimit.truncated"]`` set on truncation;
``seed(s)`` makes the next ``reset`` seed slot ``i`` with ``s + i``. Wrap it in SB3's ``VecMonitor`` for the
episode return and length curves (``rollout/ep_rew_mean``) in TensorBoard.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode
from stable_baselines3.common.vec_env.base_vec_env import VecEnv


class SB3VecEnv(VecEnv):
    """:param env: a Gymnasium ``VectorEnv`` whose ``metadata["autoreset_mode"]`` is ``SAME_STEP``."""

    def __init__(self, env: gym.vector.VectorEnv):
        if env.metadata.get("autoreset_mode") != AutoresetMode.SAME_STEP:
            raise ValueError("SB3VecEnv needs a vector env with same-step autoreset (make it with "
                             "autoreset_mode='SameStep', or use SB3VecEnv.make)")
        self.env = env
        self._actions: np.ndarray | None = None
        super().__init__(env.num_envs, env.single_observation_space, env.single_action_space)

    @classmethod
    def make(cls, env_id: str = "LatentUM-VSP-v0", num_envs: int = 16, **kwargs) -> SB3VecEnv:
        """``gym.make_vec(env_id, num_envs, vectorization_mode="vector_entry_point", autoreset_mode="SameStep", **kwargs)``, wrapped."""
        import latentum_world  # noqa: F401  (registers the ids)

        return cls(gym.make_vec(env_id, num_envs=num_envs, vectorization_mode="vector_entry_point",
                                autoreset_mode=AutoresetMode.SAME_STEP, **kwargs))

    # ------------------------------------------------------------------ VecEnv API
    def reset(self) -> np.ndarray:
        seed = None if self._seeds[0] is None else [int(s) for s in self._seeds]  # seed() sets every slot
        obs, info = self.env.reset(seed=seed)
        self.reset_infos = [{} for _ in range(self.num_envs)]
        self._reset_seeds()
        self._reset_options()
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions).reshape(self.num_envs).astype(np.int64)

    def step_wait(self):
        if self._actions is None:
            raise RuntimeError("step_async() must come before step_wait()")
        obs, rewards, terminated, truncated, info = self.env.step(self._actions)
        self._actions = None
        dones = terminated | truncated
        infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        for i in np.flatnonzero(dones):
            infos[i]["terminal_observation"] = info["final_obs"][i]
            infos[i]["TimeLimit.truncated"] = bool(truncated[i] and not terminated[i])
        return obs, rewards.astype(np.float32), dones, infos

    def close(self) -> None:
        self.env.close()

    def get_attr(self, attr_name: str, indices=None) -> list[Any]:
        return [getattr(self.env, attr_name) for _ in self._get_indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices=None) -> None:
        setattr(self.env, attr_name, value)

    def env_method(self, method_name: str, *method_args, indices=None, **method_kwargs) -> list[Any]:
        return [getattr(self.env, method_name)(*method_args, **method_kwargs) for _ in self._get_indices(indices)]

    def env_is_wrapped(self, wrapper_class, indices=None) -> list[bool]:
        return [False for _ in self._get_indices(indices)]

    def seed(self, seed: int | None = None):
        """Seed slot ``i`` with ``seed + i`` at the next :meth:`reset`."""
        if seed is None:
            seed = int(np.random.randint(0, 2**31 - 1))
        self._seeds = [seed + i for i in range(self.num_envs)]
        return self._seeds
