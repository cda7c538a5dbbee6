"""LatentUM-VSP-v0, its vector env and the real maze with latent observations, on a tiny trained chain."""

import pickle
import shutil

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import latentum_world  # noqa: F401
from envs.latent_env import LatentUMVSPEnv
from envs.vsp.maps import VSPMap
from latentum_world.train_cli import train_all


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("runs")
    return str(train_all(["preset=debug", "num_threads=1"], out_root=root, memo_steps=3))


def make(world, **kw):
    return gym.make("LatentUM-VSP-v0", model=world, **kw)


@pytest.mark.parametrize("obs_type", ["latent", "tokens"])
def test_checkers(world, obs_type):
    gym_check_env(make(world, obs_type=obs_type).unwrapped, skip_render_check=True)
    sb3_check_env(LatentUMVSPEnv(model=world, obs_type=obs_type))
    gym_check_env(gym.make("VSPMaze-v0", obs_type=obs_type, model=world).unwrapped, skip_render_check=True)


def rollout(env, seed, steps=12):
    rng = np.random.default_rng(0)
    obs, info = env.reset(seed=seed)
    out = [obs.copy()]
    for _ in range(steps):
        obs, r, term, trunc, info = env.step(int(rng.integers(4)))
        out.append((obs.copy(), r, term, trunc))
        if term or trunc:
            obs, info = env.reset()
            out.append(obs.copy())
    return out


def same(a, b):
    return len(a) == len(b) and all(
        np.array_equal(x, y) if isinstance(x, np.ndarray) else (np.array_equal(x[0], y[0]) and x[1:] == y[1:]) for x, y in zip(a, b)
    )


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_same_seed_same_rollout(world, temperature):
    a = rollout(make(world, temperature=temperature, obs_type="tokens"), 5)
    b = rollout(make(world, temperature=temperature, obs_type="tokens"), 5)
    assert same(a, b)


def test_sampling_depends_on_seed(world):
    a = rollout(make(world, temperature=2.0, obs_type="tokens", levels=[8]), 1)
    b = rollout(make(world, temperature=2.0, obs_type="tokens", levels=[8]), 2)
    assert not same(a, b)


@pytest.mark.parametrize("flags_from", ["questions", "readout"])
def test_pickling_mid_episode(world, flags_from):
    env = LatentUMVSPEnv(model=world, obs_type="tokens", temperature=1.0, flags_from=flags_from, readout=True)
    env.reset(seed=4)
    env.step(1)
    clone = pickle.loads(pickle.dumps(env))
    for a in (2, 0, 3):
        if env._last["terminated"]:
            break
        o1, r1, t1, u1, i1 = env.step(a)
        o2, r2, t2, u2, i2 = clone.step(a)
        assert np.array_equal(o1, o2) and (r1, t1, u1) == (r2, t2, u2) and i1["board"] == i2["board"]


def test_render_modes_and_readout(world):
    env = make(world, render_mode="rgb_array")
    env.reset(seed=0)
    img = env.render()
    assert img.shape == (128, 128, 3) and img.dtype == np.uint8
    env = make(world, render_mode="ansi", readout=True)
    _, info = env.reset(seed=0)
    assert "board" in info and isinstance(env.render(), str)
    assert isinstance(info["real_map"], VSPMap)


@pytest.mark.parametrize("flags_from", ["questions", "readout"])
def test_vector_env_equals_single_envs(world, flags_from):
    n, seed = 3, 11
    kw = dict(obs_type="tokens", temperature=1.0, max_episode_steps=4, readout=True, flags_from=flags_from)
    vec = gym.make_vec("LatentUM-VSP-v0", num_envs=n, vectorization_mode="vector_entry_point", model=world, **kw)
    singles = [make(world, **kw) for _ in range(n)]
    vobs, vinfo = vec.reset(seed=seed)
    sresets = [e.reset(seed=seed + i) for i, e in enumerate(singles)]
    assert np.array_equal(vobs, np.stack([o for o, _ in sresets]))
    assert list(vinfo["board"]) == [info["board"] for _, info in sresets]  # one batched read-out = N single ones
    rng = np.random.default_rng(0)
    ended = [False] * n
    for _ in range(8):
        actions = rng.integers(4, size=n)
        vobs, vr, vt, vu, vinfo = vec.step(actions)
        for i, e in enumerate(singles):
            if ended[i]:  # next-step autoreset: the vector slot restarted; restart the single env the same way
                o = e.reset()[0]
                assert np.array_equal(vobs[i], o) and not vt[i] and not vu[i]
                ended[i] = False
                continue
            o, r, t, u, info = e.step(int(actions[i]))
            assert np.array_equal(vobs[i], o) and (vr[i], vt[i], vu[i]) == (r, t, u)
            assert vinfo["board"][i] == info["board"]
            ended[i] = t or u


def test_real_maze_with_latent_observation_matches_imagination_start(world):
    real = gym.make("VSPMaze-v0", obs_type="tokens", model=world)
    imagined = make(world, obs_type="tokens")
    for seed in range(3):
        o1, i1 = real.reset(seed=seed)
        o2, i2 = imagined.reset(seed=seed)
        assert i1["map"] == i2["real_map"] and np.array_equal(o1, o2)


def test_bad_inputs(world, tmp_path):
    env = make(world)
    env.reset(seed=0)
    for bad in (4, -1, 1.5, "L"):
        with pytest.raises(ValueError, match="action"):
            env.step(bad)
    with pytest.raises(ValueError, match="obs_type"):
        make(world, obs_type="pixels")
    with pytest.raises(FileNotFoundError, match="not a LatentUM model directory"):
        make(str(tmp_path / "nowhere"))
    mbaq = tmp_path.parent / "runs0" / "mbaq" / "final"
    if mbaq.exists():
        with pytest.raises(ValueError, match="no generation branch"):
            make(str(mbaq))
    corrupt = tmp_path / "corrupt"
    shutil.copytree(world, corrupt)
    (corrupt / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(Exception, match="(?i)safetensors|header|deserializ|invalid"):
        make(str(corrupt))
    vec = gym.make_vec("LatentUM-VSP-v0", num_envs=2, vectorization_mode="vector_entry_point", model=world)
    vec.reset(seed=0)
    with pytest.raises(ValueError, match="actions"):
        vec.step(np.array([0, 7]))


def test_bundled_checkpoint_is_the_default_and_small():
    """``gym.make("LatentUM-VSP-v0")`` with no ``model`` uses the checkpoint shipped in the package."""
    from latentum_world.world.loading import BUNDLED

    files = [p for p in BUNDLED.rglob("*") if p.is_file()]
    assert (BUNDLED / "model.safetensors").is_file() and (BUNDLED / "decoder" / "model.safetensors").is_file()
    assert sum(p.stat().st_size for p in files) < 20 * 2**20
    env = gym.make("LatentUM-VSP-v0", render_mode="rgb_array")
    obs, info = env.reset(seed=0, options={"level": 4})
    assert env.observation_space.contains(obs) and info["real_map"].size == 4
    obs, reward, terminated, truncated, info = env.step(2)
    assert env.observation_space.contains(obs) and reward in (0.0, 1.0)
    assert env.render().shape == (128, 128, 3)


@pytest.mark.parametrize("flags_from", ["readout", "both"])
def test_readout_flags_follow_the_models_own_board(flags_from):
    """``flags_from="readout"``: reward and termination are the bundled model's table read-out of each imagined
    state (``%`` on the goal, ``!`` in a hole), and that read-out is kept for ``read_board()``. ``"both"``: a
    "Yes" to a question stands only where the player's piece in that read-out agrees."""
    from envs.vsp.observation import model_renderer
    from latentum_world.world.loading import load_world_model
    from latentum_world.world.model import LatentWorldModel

    model, tok = load_world_model()
    wm = LatentWorldModel(model, tok, flags_from=flags_from)
    # the player beside the goal (right) and a hole (down): R ends on the goal, D in the hole, L bumps
    maps = [VSPMap(3, player=(0, 0), goal=(0, 1), holes=frozenset({(1, 0)}))] * 3
    maps.append(VSPMap(4, player=(2, 2), goal=(3, 3), holes=frozenset({(0, 0)})))
    images = np.stack([model_renderer(model.config, m.size).render(m) for m in maps])
    wm.reset(torch.from_numpy(images))
    out = wm.step(torch.tensor([2, 1, 0, 3]))
    kept, fresh = wm.read_board(), wm.read_board(wm.state_embeds)
    assert kept == fresh  # decoded once in the step (or on demand), the same as decoding again
    assert None not in kept  # (so the expectations below are well defined)
    # the early-stopping decode that confirms a Yes finds the player's piece of the same read-out
    assert wm._player_pieces(wm.state_embeds) == [{(True, False): "%", (False, True): "!"}.get((b.on_goal, b.in_hole), "@")
                                                  for b in kept]
    said_goal = [b is not None and b.on_goal for b in kept]
    said_hole = [b is not None and b.in_hole for b in kept]
    if flags_from == "both":  # a question's Yes and the read-out must agree
        said_goal = [s and p > 0.5 for s, p in zip(said_goal, out.p_goal.tolist())]
        said_hole = [s and p > 0.5 for s, p in zip(said_hole, out.p_hole.tolist())]
    said_end = [g or h for g, h in zip(said_goal, said_hole)]
    assert out.reward.tolist() == [float(s) for s in said_goal] and out.terminated.tolist() == said_end
    assert out.terminated.tolist() == [True, True, False, False] and out.reward.tolist() == [1.0, 0.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="flags_from"):
        LatentWorldModel(model, tok, flags_from="pixels")
    with pytest.raises(ValueError, match="flags_from"):
        gym.make("LatentUM-VSP-v0", flags_from="pixels")


def test_loading_prints_no_progress_bar_and_keeps_the_users_setting(capfd):
    """Loading the small checkpoints (at every ``gym.make``) writes nothing to stderr, and a user's own
    transformers progress-bar setting is the same afterwards."""
    from transformers.utils import logging as hf_logging

    from latentum_world.model.quiet import from_pretrained_quietly
    from latentum_world.training.stages import load_model
    from latentum_world.world.decoder import PixelDecoder
    from latentum_world.world.loading import BUNDLED

    hf_logging.enable_progress_bar()  # (a stage trained earlier in this process restores the setting it found)
    load_model(BUNDLED)
    from_pretrained_quietly(PixelDecoder, BUNDLED / "decoder")
    assert "Loading weights" not in capfd.readouterr().err
    assert hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        load_model(BUNDLED)
        assert not hf_logging.is_progress_bar_enabled()
    finally:
        hf_logging.enable_progress_bar()
