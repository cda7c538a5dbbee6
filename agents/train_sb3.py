"""Train a Stable-Baselines3 agent in latent imagination, then score it in the REAL maze.

The agent learns only in ``LatentUM-VSP-v0`` (every step the world model; one batched model call for all
``--num-envs`` mazes, :class:`agents.sb3_vec_env.SB3VecEnv`) and never sees a real step while training. It is
then run unchanged in ``VSPMaze-v0(obs_type="latent")``, where the real frame is encoded by the same model, on
``--eval-episodes`` real mazes (seeds ``--eval-seed + i``), greedily. The same real mazes are also played by a
uniform random policy (the baseline an untrained agent gets), and the agent is scored in imagination too.

    python -m agents.train_sb3 [--algo ppo] [--levels 3] [--num-envs 32] [--timesteps 60000] [--seed 0]
        [--out runs/agents/ppo_level3] [--eval-episodes 200]

``--out`` gets SB3's TensorBoard run (``tensorboard --logdir OUT``: SB3's training curves, the real-maze
success rates as ``eval/*`` scalars, and the first ``--show`` real episodes beside the world model's imagination
under the same actions, as strips and GIFs, :mod:`agents.pictures`), the policy's weights (``policy.safetensors``, loaded with
:func:`load_agent`), ``agent.json`` (the command's settings) and ``eval.json`` (the scores).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from envs.vsp.maps import LEVELS

ALGOS = ("ppo", "a2c")
DEFAULT_EVAL_SEED = 1_000_000  # real-maze episodes are seeded from here on: apart from training's slot seeds


def make_agent(algo: str, env, seed: int, tensorboard_log: str | None = None, n_steps: int = 64):
    """A fresh SB3 agent (MLP policy on the flat latent observation) for ``env``."""
    from stable_baselines3 import A2C, PPO

    if algo == "ppo":
        return PPO("MlpPolicy", env, n_steps=n_steps, batch_size=min(256, n_steps * env.num_envs), n_epochs=4, learning_rate=3e-4, ent_coef=0.01,
                   gamma=0.95, seed=seed, tensorboard_log=tensorboard_log, device="cpu", verbose=0)
    if algo == "a2c":
        return A2C("MlpPolicy", env, n_steps=8, learning_rate=7e-4, ent_coef=0.01, gamma=0.95, seed=seed,
                   tensorboard_log=tensorboard_log, device="cpu", verbose=0)
    raise ValueError(f"algo must be one of {ALGOS}, got {algo!r}")


def save_agent(agent, out: Path, settings: dict) -> None:
    """The policy's weights as ``policy.safetensors`` and the settings as ``agent.json`` (no pickles)."""
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in agent.policy.state_dict().items()}, str(out / "policy.safetensors"))
    (out / "agent.json").write_text(json.dumps(settings, indent=2) + "\n")


def load_agent(out: str | Path, env=None):
    """The agent saved in ``out`` by this script (``env``: any env with the same spaces; default a 1-slot one)."""
    from safetensors.torch import load_file

    out = Path(out)
    if not (out / "agent.json").is_file() or not (out / "policy.safetensors").is_file():
        raise FileNotFoundError(f"{out} holds no agent (agent.json + policy.safetensors, written by agents.train_sb3)")
    settings = json.loads((out / "agent.json").read_text())
    if env is None:
        from agents.sb3_vec_env import SB3VecEnv

        env = SB3VecEnv.make(num_envs=1, model=settings["model"], levels=tuple(settings["levels"]))
    agent = make_agent(settings["algo"], env, settings["seed"])
    agent.policy.load_state_dict(load_file(str(out / "policy.safetensors")))
    return agent


def real_maze_scores(policy, model: str | None, levels, episodes: int, seed: int, max_steps: int,
                     keep: int = 0) -> dict:
    """Greedy ``policy(obs) -> action`` on ``episodes`` real mazes (seeds ``seed + i``): success rate, mean steps,
    and under ``"kept"`` the first ``keep`` episodes as (start board, actions)."""
    import gymnasium as gym

    import latentum_world  # noqa: F401

    env = gym.make("VSPMaze-v0", obs_type="latent", model=model, levels=levels, max_episode_steps=max_steps)
    runs = _real_episodes(env, lambda i, obs: int(policy(obs)), episodes, seed, max_steps)
    return {"episodes": episodes, "success": float(np.mean([won for _, _, won in runs])),
            "mean_steps": float(np.mean([len(actions) for _, actions, _ in runs])),
            "kept": [(start, actions) for start, actions, _ in runs[:keep]]}


def random_scores(levels, episodes: int, seed: int, max_steps: int) -> dict:
    """The same real mazes (same seeds) under a uniform random policy (seeded by the episode seed)."""
    import gymnasium as gym

    import latentum_world  # noqa: F401

    env = gym.make("VSPMaze-v0", obs_type="grid", levels=levels, max_episode_steps=max_steps)
    rngs = [np.random.default_rng(seed + i) for i in range(episodes)]
    runs = _real_episodes(env, lambda i, obs: int(rngs[i].integers(4)), episodes, seed, max_steps)
    return {"episodes": episodes, "success": float(np.mean([won for _, _, won in runs]))}


def _real_episodes(env, act, episodes: int, seed: int, max_steps: int) -> list[tuple]:
    """Episode ``i`` of the real maze ``env`` reset with ``seed + i``, actions ``act(i, obs)``: per episode
    (start board, actions, reached the goal). Closes ``env``."""
    runs = []
    for i in range(episodes):
        obs, info = env.reset(seed=seed + i)
        start, actions, reward = info["map"], [], 0.0
        for _ in range(max_steps):
            actions.append(act(i, obs))
            obs, reward, terminated, truncated, _ = env.step(actions[-1])
            if terminated or truncated:
                break
        runs.append((start, actions, reward > 0))
    env.close()
    return runs


def imagined_scores(agent, env, episodes: int) -> dict:
    """Greedy episodes in imagination (the training env's batched slots): the share the model says reach the goal.

    Each round resets every slot and counts only its FIRST episode, until ``episodes`` are counted: counting
    episodes as they finish would over-sample the short ones (small boards, near goals), which succeed more."""
    wins = done_eps = 0
    while done_eps < episodes:
        obs = env.reset()
        counted = np.zeros(env.num_envs, dtype=bool)
        while not counted.all():
            actions, _ = agent.predict(obs, deterministic=True)
            obs, rewards, dones, _ = env.step(actions)
            new = dones & ~counted
            wins += int((rewards[new] > 0).sum())
            counted |= dones
        done_eps += env.num_envs
    return {"episodes": done_eps, "success": wins / done_eps}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--algo", default="ppo", choices=ALGOS)
    parser.add_argument("--model", help="world-model directory (default: the bundled checkpoint)")
    parser.add_argument("--levels", default="3", help="comma-separated levels of the training and real mazes (default 3)")
    parser.add_argument("--num-envs", type=int, default=32, help="imagined mazes per batched model call (default 32)")
    parser.add_argument("--timesteps", type=int, default=60_000, help="imagined steps to train on (default 60,000)")
    parser.add_argument("--max-episode-steps", type=int, default=16, help="truncation, imagined and real (default 16)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-episodes", type=int, default=200, help="real mazes the agent is scored on (default 200)")
    parser.add_argument("--eval-seed", type=int, default=DEFAULT_EVAL_SEED)
    parser.add_argument("--show", type=int, default=4, help="real episodes pictured beside imagination (default 4)")
    parser.add_argument("--out", default=None, help="output directory (default runs/agents/<algo>_level<levels>)")
    parser.add_argument("--compile", action="store_true", help="compile the world model's step (torch.compile: about "
                        "1.2-1.3x the imagined steps/s at 64 envs after a 25-90 s warm-up; needs gcc)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    levels = tuple(int(x) for x in args.levels.split(",") if x)
    if not levels or any(lv not in LEVELS for lv in levels):
        parser.error(f"--levels must be a subset of {LEVELS}")
    if args.num_envs < 1 or args.timesteps < 1 or args.eval_episodes < 1 or args.max_episode_steps < 1:
        parser.error("--num-envs, --timesteps, --eval-episodes and --max-episode-steps must be >= 1")
    out = Path(args.out or f"runs/agents/{args.algo}_level{'-'.join(map(str, levels))}")

    from torch.utils.tensorboard import SummaryWriter

    from agents.sb3_vec_env import SB3VecEnv
    from latentum_world.world.loading import resolve_model_path

    try:
        model = str(resolve_model_path(args.model))
    except FileNotFoundError as e:
        parser.error(str(e))
    torch.manual_seed(args.seed)
    from stable_baselines3.common.vec_env import VecMonitor

    env = VecMonitor(SB3VecEnv.make(num_envs=args.num_envs, model=model, levels=levels, compile=args.compile,
                                    max_episode_steps=args.max_episode_steps))  # episode return / length curves
    env.seed(args.seed)
    agent = make_agent(args.algo, env, args.seed, tensorboard_log=str(out))
    t0 = time.perf_counter()
    agent.learn(args.timesteps, progress_bar=not args.quiet, tb_log_name="train")
    train_seconds = time.perf_counter() - t0
    settings = {"algo": args.algo, "model": model, "levels": list(levels), "num_envs": args.num_envs,
                "timesteps": args.timesteps, "max_episode_steps": args.max_episode_steps, "seed": args.seed}
    save_agent(agent, out, settings)

    policy = lambda obs: agent.predict(obs, deterministic=True)[0]  # noqa: E731
    real = real_maze_scores(policy, model, levels, args.eval_episodes, args.eval_seed, args.max_episode_steps,
                            keep=args.show)
    kept = real.pop("kept")
    baseline = random_scores(levels, args.eval_episodes, args.eval_seed, args.max_episode_steps)
    imagined = imagined_scores(agent, env, args.eval_episodes)
    env.close()
    result = {**settings, "train_seconds": train_seconds, "imagined_steps_per_second": args.timesteps / train_seconds,
              "real_maze": real, "random_policy_real_maze": baseline, "imagination": imagined,
              "eval_seed": args.eval_seed}
    (out / "eval.json").write_text(json.dumps(result, indent=2) + "\n")
    with SummaryWriter(log_dir=str(out / "eval")) as writer:
        writer.add_scalar("eval/real_maze_success", real["success"], args.timesteps)
        writer.add_scalar("eval/random_policy_real_maze_success", baseline["success"], args.timesteps)
        writer.add_scalar("eval/imagination_success", imagined["success"], args.timesteps)
        from agents.pictures import can_draw, log_episode
        from latentum_world.world.loading import load_world_model
        from latentum_world.world.model import LatentWorldModel

        world = LatentWorldModel(*load_world_model(model))
        if kept and can_draw(world):
            for i, (board, actions) in enumerate(kept):
                log_episode(writer, out / "gifs", world, board, actions, f"agent/real_episode{i}_level{board.size}")
    print(f"trained {args.timesteps} imagined steps in {train_seconds:.0f} s; real mazes (levels {args.levels}, "
          f"{args.eval_episodes} episodes): success {100 * real['success']:.1f} % (random policy "
          f"{100 * baseline['success']:.1f} %; in imagination {100 * imagined['success']:.1f} %)")
    print(f"wrote {out}/ (policy.safetensors, agent.json, eval.json); tensorboard --logdir {out}")


if __name__ == "__main__":
    main()
