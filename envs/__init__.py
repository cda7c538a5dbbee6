"""Gymnasium environments: the real VSP maze (:mod:`envs.vsp`) and the LatentUM world model over it."""

from gymnasium.envs.registration import register, registry


def register_envs() -> None:
    """Register this project's env ids with Gymnasium (idempotent)."""
    if "VSPMaze-v0" not in registry:
        register(id="VSPMaze-v0", entry_point="envs.vsp.maze_env:VSPMazeEnv", max_episode_steps=None)
    if "LatentUM-VSP-v0" not in registry:
        register(
            id="LatentUM-VSP-v0",
            entry_point="envs.latent_env:LatentUMVSPEnv",
            vector_entry_point="envs.latent_vector_env:LatentUMVSPVectorEnv",
            max_episode_steps=None,  # the env truncates itself (max_episode_steps argument)
        )
