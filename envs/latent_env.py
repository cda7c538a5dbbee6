"""``LatentUM-VSP-v0``: the LatentUM world model as a Gymnasium environment.

``reset`` draws a REAL VSP map (the generator, a given map, or a VSP item), renders it, and encodes
the real first frame; every ``step`` is the model: the action is appended as text, the MoME
generation branch imagines the next state's MBAQ codes, and the understanding branch, reading the
imagined latents (no pixels), says whether the player is on the goal or in a hole.

## Action space
``Discrete(4)``: 0 Left, 1 Down, 2 Right, 3 Up.

## Observation space
* ``obs_type="latent"`` (default): ``Box(lo, hi, (P * code_dim,), float32)``, the quantized latent
  ``z_q`` of every position, flattened (16 x 64 = 1024 with the default model); ``lo``/``hi`` are the
  smallest and largest codebook entries.
* ``obs_type="tokens"``: ``Box(0, codebook_size - 1, (P * K,), int64)``, the codes themselves, flat
  (a Box, not MultiDiscrete, so SB3 feeds them as numbers instead of one-hot encoding them).

## Rewards
1 when the model says the player is on the goal, else 0 (by default its yes/no answer confirmed by its
board read-out; see ``flags_from``). The real start map is handed to the model only as a *draft* for that
read-out (:mod:`latentum_world.model.draft`): it decides how many tokens are checked per forward, never
which tokens the model writes.

## Episode end
Terminated when the model says the player is on the goal or in a hole; truncated after
``max_episode_steps``.

## Info
``real_map`` (the map the episode started from), ``level``, ``p_goal`` / ``p_hole`` (the model's
probabilities of "Yes"; 0 or 1 with ``flags_from="readout"``), and ``board`` (the model's VSP-table read-out of the state, a ``VSPMap`` or ``None``)
when ``readout=True``.

## Rendering
``rgb_array``: the pixel decoder's image of the imagined state (only for people; the model never
sees it). ``ansi``: the model's read-out as VSP table text.

## Registered ids
``LatentUM-VSP-v0`` (on ``import latentum_world``).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces

from envs.vsp.formats import to_table
from envs.vsp.maps import LEVELS
from envs.vsp.maze_env import start_map
from envs.vsp.observation import model_renderer
from latentum_world.model.depth_head import Sampling
from latentum_world.world.loading import load_world_model
from latentum_world.world.model import DEFAULT_FLAG_SOURCE, FLAG_SOURCES, LatentWorldModel

OBS_TYPES = ("latent", "tokens")


def latent_space(model, obs_type: str) -> spaces.Box:
    config = model.config
    p = config.latent_positions
    if obs_type == "latent":  # bounded by the codebook entries themselves
        with torch.no_grad():
            entries = torch.cat([vq.codebook for vq in model.quantizer.codebooks])
        return spaces.Box(float(entries.min()), float(entries.max()), (p * config.code_dim,), np.float32)
    if obs_type == "tokens":
        return spaces.Box(0, config.codebook_size - 1, (p * config.num_codebooks,), np.int64)
    raise ValueError(f"obs_type must be one of {OBS_TYPES}, got {obs_type!r}")


def codes_to_obs(model, codes: torch.Tensor, obs_type: str) -> np.ndarray:
    """Codes ``(B, P, K)`` -> observations ``(B, obs_dim)``."""
    if obs_type == "tokens":
        return codes.reshape(codes.shape[0], -1).cpu().numpy().astype(np.int64)
    with torch.no_grad():
        return model.quantizer.indices_to_latent(codes).reshape(codes.shape[0], -1).cpu().numpy().astype(np.float32)


class LatentUMVSPEnv(gym.Env):
    """See the module docstring.

    :param model: checkpoint directory (default: the bundled one).
    :param levels: levels real start maps are drawn from.
    :param obs_type: ``"latent"`` or ``"tokens"``.
    :param temperature: 0 = greedy codes; > 0 samples (with ``top_k`` / ``top_p``) from a generator seeded by ``reset``.
    :param max_episode_steps: truncation horizon.
    :param readout: also put the model's board read-out in ``info`` every step (slower: ~90 decoded tokens).
    :param device: ``"cpu"``, ``"cuda"`` or ``"auto"``.
    :param compile: compile the greedy step's fused pieces with ``torch.compile``
        (:mod:`latentum_world.world.fused_step`; sampled steps: :mod:`latentum_world.model.compiled`): about
        1.3x the steps per second at 64 envs on a 2-core CPU, after a warm-up in the first steps (about
        90 s with an empty Inductor cache, 25 s with a warm one); needs a C++ compiler.
    :param flags_from: where reward and termination come from: ``"both"`` (default: the understanding
        branch's yes/no answers about the imagined state, each "Yes" confirmed by its whole-board read-out
        of that state, decoded only then), ``"questions"`` (the answers alone: fastest, about 15-30 % more
        steps per second at 64 envs; with earlier models more false terminations, with the bundled one the same
        agreement on 1,500 held-out maps) or ``"readout"`` (the read-out alone, every step).
        See :class:`latentum_world.world.model.LatentWorldModel`.
    :param memo: where the greedy step's Jacobi guesses start (speed only: the same episodes either way):
        ``True`` (default), the transition memo saved with the checkpoint (``latentum-world memo``) if there is
        one; a path, that memo file; ``False``, an empty memo.
    """

    metadata = {"render_modes": ["rgb_array", "ansi"], "render_fps": 4}

    def __init__(self, model: str | None = None, levels=LEVELS, obs_type: str = "latent", temperature: float = 0.0,
                 top_k: int | None = None, top_p: float | None = None, max_episode_steps: int | None = 32,
                 readout: bool = False, hole_prob: float = 0.2, device: str = "cpu", render_mode: str | None = None,
                 compile: bool = False, flags_from: str = DEFAULT_FLAG_SOURCE, memo: bool | str = True):
        levels = (levels,) if isinstance(levels, (int, np.integer)) else tuple(levels)
        if not levels or any(lv not in LEVELS for lv in levels):
            raise ValueError(f"levels must be a non-empty subset of {LEVELS}, got {levels!r}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']} or None, got {render_mode!r}")
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        if flags_from not in FLAG_SOURCES:
            raise ValueError(f"flags_from must be one of {FLAG_SOURCES}, got {flags_from!r}")
        self.model, self.tokenizer = load_world_model(model, device)
        self.observation_space = latent_space(self.model, obs_type)
        self.action_space = spaces.Discrete(4)
        self.levels, self.obs_type, self.hole_prob = tuple(int(x) for x in levels), obs_type, hole_prob
        self.temperature, self.top_k, self.top_p = temperature, top_k, top_p
        self.max_episode_steps, self.readout, self.render_mode = max_episode_steps, readout, render_mode
        self._generator = torch.Generator(device=next(self.model.parameters()).device)
        self.compile, self.flags_from, self.memo_from = compile, flags_from, memo
        self.world = LatentWorldModel(self.model, self.tokenizer, self._sampling(), compile=compile, flags_from=flags_from,
                                      memo=memo)
        self.real_map = None
        self.elapsed_steps = 0
        self._last: dict[str, Any] = {}

    # pickling: the model is shared and reloaded from its checkpoint; the episode state travels
    def __getstate__(self):
        state = {k: v for k, v in self.__dict__.items() if k not in ("model", "tokenizer", "world", "_generator")}
        state["_model_path"] = self.model.config._name_or_path
        state["_device"] = str(next(self.model.parameters()).device)
        state["_generator_state"] = self._generator.get_state()
        state["_world_state"] = (self.world.codes, self.world.state_embeds)
        return state

    def __setstate__(self, state):
        codes, embeds = state.pop("_world_state")
        gen_state = state.pop("_generator_state")
        path, device = state.pop("_model_path"), state.pop("_device")
        self.__dict__.update(state)
        self.model, self.tokenizer = load_world_model(path, device)
        self._generator = torch.Generator(device=device)
        self._generator.set_state(gen_state)
        self.world = LatentWorldModel(self.model, self.tokenizer, self._sampling(), compile=getattr(self, "compile", False),
                                      flags_from=getattr(self, "flags_from", "questions"), memo=getattr(self, "memo_from", True))
        if codes is not None:
            self.world._set_state(embeds, codes, None, new_episode=True, draft_boards=[self.real_map])  # re-ingests the state: the same context

    def _sampling(self) -> Sampling:
        if self.temperature == 0:
            return Sampling(greedy=True)
        return Sampling(self.temperature, self.top_k, self.top_p, generator=self._generator)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        m = start_map(self.np_random, options, self.levels, self.hole_prob)
        # drawn after the map, so VSPMaze-v0 reset with the same seed starts from the same real map
        self._generator.manual_seed(int(self.np_random.integers(2**63 - 1)))
        self.real_map, self.elapsed_steps = m, 0
        image = model_renderer(self.model.config, m.size).render(m)
        codes = self.world.reset(torch.from_numpy(image)[None], draft_boards=[m])  # the draft: speed only
        self._last = {"terminated": False}
        return codes_to_obs(self.model, codes, self.obs_type)[0], self._info()

    def step(self, action):
        if self.real_map is None:
            raise RuntimeError("call reset() before step()")
        if self._last.get("terminated"):
            raise RuntimeError("the episode has terminated; call reset()")
        if isinstance(action, np.ndarray) and action.shape == () and np.issubdtype(action.dtype, np.integer):
            action = int(action)
        if not isinstance(action, (int, np.integer)) or isinstance(action, bool) or not 0 <= action < 4:
            raise ValueError(f"action must be an int in 0..3 (L, D, R, U), got {action!r}")
        out = self.world.step(torch.tensor([int(action)]))
        self.elapsed_steps += 1
        terminated = bool(out.terminated[0])
        truncated = not terminated and self.max_episode_steps is not None and self.elapsed_steps >= self.max_episode_steps
        self._last = {"terminated": terminated, "p_goal": float(out.p_goal[0]), "p_hole": float(out.p_hole[0])}
        obs = codes_to_obs(self.model, out.codes, self.obs_type)[0]
        return obs, float(out.reward[0]), terminated, truncated, self._info()

    def _info(self) -> dict[str, Any]:
        info = {"real_map": self.real_map, "level": self.real_map.size,
                "p_goal": self._last.get("p_goal", 0.0), "p_hole": self._last.get("p_hole", 0.0)}
        if self.readout:
            info["board"] = self.world.read_board()[0]
        return info

    def render(self):
        if self.render_mode == "ansi":
            board = self.world.read_board()[0]
            return to_table(board) if board is not None else "(the model's read-out is not a valid board)\n"
        if self.render_mode == "rgb_array":
            from latentum_world.world.decoder import decode_images

            return decode_images(self.model, self.world.codes)[0]
        return None
