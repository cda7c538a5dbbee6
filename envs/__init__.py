"""Gymnasium environments: the real VSP maze (:mod:`envs.vsp`) and, later, the world-model envs."""

from gymnasium.envs.registration import register, registry


def register_envs() -> None:
    """Register this project's env ids with Gymnasium (idempotent)."""
    if "VSPMaze-v0" not in registry:
        register(id="VSPMaze-v0", entry_point="envs.vsp.maze_env:VSPMazeEnv", max_episode_steps=None)
