import pickle

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import latentum_world  # noqa: F401  (registers the ids)
from envs.vsp.formats import to_desc, to_table
from envs.vsp.maps import LEVELS, VSPMap, generate_map
from envs.vsp.maze_env import GRID_PAD, VSPMazeEnv
from envs.vsp.maps import VSPMap
from envs.vsp.observation import resize_image
from envs.vsp.render import render_map


@pytest.mark.parametrize("obs_type", ["rgb", "grid"])
def test_checkers(obs_type):
    gym_check_env(gym.make("VSPMaze-v0", obs_type=obs_type).unwrapped, skip_render_check=True)
    sb3_check_env(VSPMazeEnv(obs_type=obs_type), warn=True)


def rollout(env, seed, steps=50, actions_seed=0):
    rng = np.random.default_rng(actions_seed)
    obs, info = env.reset(seed=seed)
    trace = [(obs.copy(), 0.0, False, False, info["map"])]
    for _ in range(steps):
        obs, r, term, trunc, info = env.step(int(rng.integers(4)))
        trace.append((obs.copy(), r, term, trunc, info["map"]))
        if term or trunc:
            obs, info = env.reset()
            trace.append((obs.copy(), 0.0, False, False, info["map"]))
    return trace


def assert_same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x[0], y[0])
        assert x[1:] == y[1:]


@pytest.mark.parametrize("obs_type", ["rgb", "grid"])
def test_same_seed_same_rollout(obs_type):
    a = rollout(gym.make("VSPMaze-v0", obs_type=obs_type), seed=7)
    b = rollout(gym.make("VSPMaze-v0", obs_type=obs_type), seed=7)
    c = rollout(gym.make("VSPMaze-v0", obs_type=obs_type), seed=8)
    assert_same(a, b)
    assert [x[4] for x in a] != [x[4] for x in c]


def test_pickling_mid_episode():
    env = VSPMazeEnv(levels=[8])
    env.reset(seed=3)
    env.step(1)
    clone = pickle.loads(pickle.dumps(env))
    for a in [2, 2, 1, 0, 3]:
        o1, r1, t1, u1, i1 = env.step(a) if not env.map.terminal else (None,) * 5
        o2, r2, t2, u2, i2 = clone.step(a) if not clone.map.terminal else (None,) * 5
        if o1 is None:
            assert o2 is None
            break
        np.testing.assert_array_equal(o1, o2)
        assert (r1, t1, u1, i1["map"]) == (r2, t2, u2, i2["map"])


@pytest.mark.parametrize("level", LEVELS)
def test_dynamics_match_gym_frozenlake(level):
    rng = np.random.default_rng(level)
    for episode in range(15):
        m = generate_map(rng, level)
        ours = VSPMazeEnv(obs_type="grid", max_episode_steps=None)
        ours.reset(seed=episode, options={"map": m})
        ref = gym.make("FrozenLake-v1", desc=to_desc(m), is_slippery=False)
        ref.reset(seed=episode)
        for _ in range(40):
            a = int(rng.integers(4))
            _, r1, t1, _, info = ours.step(a)
            s, r2, t2, _, _ = ref.step(a)
            assert divmod(int(s), level) == info["map"].player
            assert (r1, t1) == (float(r2), t2)
            if t1:
                break


@pytest.mark.parametrize("cell_pixels", [0, 16])
@pytest.mark.parametrize("level", [3, 5, 7, 8])
def test_rgb_observation_is_the_resized_render(level, cell_pixels):
    env = VSPMazeEnv(levels=[level], obs_size=128, cell_pixels=cell_pixels)
    obs, info = env.reset(seed=level)
    rng = np.random.default_rng(0)
    last = None
    for _ in range(12):
        expected = resize_image(render_map(info["map"], 64, last), 128, level=level, cell_pixels=cell_pixels)
        np.testing.assert_array_equal(obs, expected)
        if info["map"].terminal:
            break
        last = int(rng.integers(4))
        obs, _, _, _, info = env.step(last)


def test_grid_observation_padding_and_level():
    m = VSPMap(3, (0, 0), (2, 2), frozenset({(1, 1)}))
    obs, info = VSPMazeEnv(obs_type="grid").reset(options={"map": m})
    assert obs.shape == (8, 8) and info["level"] == 3
    np.testing.assert_array_equal(obs[:3, :3], m.to_grid())
    assert (obs[3:, :] == GRID_PAD).all() and (obs[:, 3:] == GRID_PAD).all()


def test_reset_options_and_rewards():
    env = VSPMazeEnv(obs_type="grid")
    m = VSPMap(3, (0, 0), (0, 1), frozenset({(1, 0)}))
    for given in (m, to_table(m), to_desc(m), "\n".join(to_desc(m))):
        _, info = env.reset(options={"map": given})
        assert info["map"] == m
    _, r, term, trunc, _ = env.step(2)
    assert (r, term, trunc) == (1.0, True, False)
    env.reset(options={"map": m})
    _, r, term, _, _ = env.step(1)
    assert (r, term) == (0.0, True)
    with pytest.raises(RuntimeError, match="reset"):
        env.step(0)
    for _ in range(5):
        _, info = env.reset(options={"level": 6})
        assert info["level"] == 6


def test_truncation():
    env = VSPMazeEnv(obs_type="grid", max_episode_steps=3)
    env.reset(options={"map": VSPMap(3, (0, 0), (2, 2))})
    outs = [env.step(0) for _ in range(3)]  # bump into the wall three times
    assert [o[3] for o in outs] == [False, False, True] and not any(o[2] for o in outs)


def test_render_modes():
    m = VSPMap(4, (0, 0), (3, 3), frozenset({(1, 1)}))
    env = VSPMazeEnv(render_mode="rgb_array")
    env.reset(options={"map": m})
    env.step(2)
    np.testing.assert_array_equal(env.render(), render_map(m.move(2), 64, 2))
    text_env = VSPMazeEnv(render_mode="ansi")
    text_env.reset(options={"map": m})
    text_env.step(1)
    out = text_env.render()
    assert "(Down)" in out and to_table(m.move(1)) in out
    quiet = VSPMazeEnv()
    quiet.reset(seed=0)
    assert quiet.render() is None


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"levels": [2]}, "levels"),
        ({"levels": [9]}, "levels"),
        ({"levels": []}, "levels"),
        ({"obs_type": "pixels"}, "obs_type"),
        ({"render_mode": "human"}, "render_mode"),
        ({"obs_size": 4}, "obs_size"),
    ],
)
def test_bad_constructor_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        VSPMazeEnv(**kwargs)


def test_bad_actions_and_options():
    env = VSPMazeEnv(obs_type="grid")
    env.reset(seed=0, options={"map": VSPMap(4, (1, 1), (3, 3))})
    for bad in (4, -1, 1.5, "R", None, True):
        with pytest.raises(ValueError, match="action"):
            env.step(bad)
    env.step(np.int64(2))
    env.step(np.array(1))
    with pytest.raises(ValueError, match="level"):
        env.reset(options={"level": 10})
    with pytest.raises(ValueError, match="unknown reset options"):
        env.reset(options={"lvl": 3})
    with pytest.raises(TypeError, match="VSP map"):
        env.reset(options={"map": 42})


def test_cell_aligned_layout_puts_each_cell_in_its_own_block():
    """cell_pixels=16: cell (r, c) is the 16 x 16 block at (16r, 16c) at every level, black beyond the board."""
    blocks = {}
    for level in (3, 5, 8):
        m = VSPMap(level, player=(0, 0), goal=(1, 2), holes=frozenset({(2, 1)}))
        img = resize_image(render_map(m, 64, None), 128, level=level, cell_pixels=16)
        side = 16 * level
        assert not img[side:].any() and not img[:, side:].any()
        for cell in ((0, 0), (1, 2), (2, 1), (2, 2)):
            r, c = cell
            blocks.setdefault(cell, []).append(img[16 * r : 16 * r + 16, 16 * c : 16 * c + 16])
    for cell, same in blocks.items():  # the same cell content looks identical whatever the level
        for b in same[1:]:
            np.testing.assert_array_equal(b, same[0])
    assert not np.array_equal(blocks[(1, 2)][0], blocks[(2, 1)][0])  # goal and hole differ


def test_layout_errors():
    img = render_map(VSPMap(3, player=(0, 0), goal=(2, 2), holes=frozenset()), 64, None)
    with pytest.raises(ValueError, match="needs the board's level"):
        resize_image(img, 128, cell_pixels=16)
    with pytest.raises(ValueError, match="more than the image"):
        resize_image(img, 32, level=3, cell_pixels=16)
    with pytest.raises(ValueError, match="does not fit"):
        VSPMazeEnv(levels=[8], obs_size=64, cell_pixels=16)
