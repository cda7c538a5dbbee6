"""``compile=True`` (latentum_world.model.compiled) gives the eager environment's episodes, on the bundled model."""

import gymnasium as gym
import numpy as np
import pytest

import latentum_world  # noqa: F401

pytestmark = pytest.mark.slow  # the first steps compile (about a minute on 2 cores)


def episodes(env, steps, seed):
    """Observations, rewards and endings of ``steps`` random actions (a single env resets when an episode ends)."""
    rng = np.random.default_rng(seed)
    vector = isinstance(env, gym.vector.VectorEnv)
    out = [env.reset(seed=seed)[0]]
    for _ in range(steps):
        obs, reward, terminated, truncated, _ = env.step(rng.integers(4, size=env.num_envs) if vector else int(rng.integers(4)))
        out.append((obs, reward, terminated, truncated))
        if not vector and (terminated or truncated):
            out.append(env.reset()[0])
    return out


def test_compiled_vector_env_matches_eager():
    """Greedy codes, rewards and endings agree step for step, including steps where only some slots move
    (next-step autoreset: a different batch size through the compiled loop)."""
    kw = dict(num_envs=3, vectorization_mode="vector_entry_point", obs_type="tokens", max_episode_steps=3, levels=(3, 4))
    eager = episodes(gym.make_vec("LatentUM-VSP-v0", **kw), 7, seed=3)
    compiled = episodes(gym.make_vec("LatentUM-VSP-v0", compile=True, **kw), 7, seed=3)
    assert np.array_equal(eager[0], compiled[0]) and len(eager) == len(compiled)
    for e, c in zip(eager[1:], compiled[1:]):
        assert all(np.array_equal(x, y) for x, y in zip(e, c))


def test_compiled_sampling_matches_eager():
    """Sampled codes (temperature 1) come from the same seeded generator draws as eagerly."""
    kw = dict(obs_type="tokens", temperature=1.0, max_episode_steps=None, levels=(3,))
    eager = episodes(gym.make("LatentUM-VSP-v0", **kw), 6, seed=5)
    compiled = episodes(gym.make("LatentUM-VSP-v0", compile=True, **kw), 6, seed=5)
    assert np.array_equal(eager[0], compiled[0])
    assert len(eager) == len(compiled)
    for e, c in zip(eager[1:], compiled[1:]):
        assert np.array_equal(e, c) if isinstance(e, np.ndarray) else (np.array_equal(e[0], c[0]) and e[1:] == c[1:])
