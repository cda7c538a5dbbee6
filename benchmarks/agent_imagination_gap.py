"""Where an agent's success in imagination is not success in reality.

Runs a saved agent (``agents/train_sb3.py``'s output) greedily in ``LatentUM-VSP-v0`` and replays its actions on
the episode's real start map (real dynamics) alongside. Every imagined step's board read-out is compared with
the real board, and each episode is classed by (imagined outcome, real outcome). For episodes the model calls a
success but reality does not, the first step where the imagined board left the real one is kept, with what the
move was.

    python benchmarks/agent_imagination_gap.py --agent runs/agents/ppo_level3-4-5-6-7-8 [--episodes 200] [--out F]
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import gymnasium as gym

import latentum_world  # noqa: F401
from agents.train_sb3 import load_agent
from envs.vsp.formats import to_table
from envs.vsp.maps import ACTION_LETTERS
from latentum_world.evaluation import write_json


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--agent", required=True, help="directory written by agents.train_sb3")
    ap.add_argument("--episodes", type=int, default=200)
    ap.add_argument("--seed", type=int, default=2_000_000, help="episode i is reset with seed + i")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    agent = load_agent(args.agent)
    settings = json.loads((Path(args.agent) / "agent.json").read_text())
    env = gym.make("LatentUM-VSP-v0", model=settings["model"], levels=tuple(settings["levels"]),
                   max_episode_steps=settings["max_episode_steps"], readout=True)
    classes, divergence, examples = Counter(), Counter(), []
    for i in range(args.episodes):
        obs, info = env.reset(seed=args.seed + i)
        real, actions, first_wrong = info["real_map"], [], None
        real_outcome = None
        while True:
            a = int(agent.predict(obs, deterministic=True)[0])
            actions.append(a)
            obs, reward, terminated, truncated, info = env.step(a)
            if real_outcome is None:
                real = real.move(a)
                if real.terminal:
                    real_outcome = "goal" if real.on_goal else "hole"
                if first_wrong is None and info["board"] != real:
                    before = "".join(ACTION_LETTERS[x] for x in actions)
                    first_wrong = {"step": len(actions), "actions": before, "real": to_table(real),
                                   "imagined": None if info["board"] is None else to_table(info["board"])}
            if terminated or truncated:
                break
        imagined_outcome = "goal" if reward > 0 else ("hole" if terminated else "timeout")
        real_outcome = real_outcome or "timeout"
        classes[f"imagined {imagined_outcome} / real {real_outcome}"] += 1
        if imagined_outcome == "goal" and real_outcome != "goal":
            move = ACTION_LETTERS[actions[first_wrong["step"] - 1]] if first_wrong else "none"
            divergence[f"first wrong board after move {move}" if first_wrong else "boards right, goal wrong"] += 1
            if len(examples) < 20:
                examples.append({"episode": i, "level": info["real_map"].size, "start": to_table(info["real_map"]),
                                 "actions": "".join(ACTION_LETTERS[x] for x in actions), "first_wrong": first_wrong})
    env.close()
    for k, v in sorted(classes.items()):
        print(f"{k:40s} {v}")
    print("imagined goal, real not:", dict(divergence))
    if args.out:
        write_json(args.out, {"agent": args.agent, "episodes": args.episodes, "seed": args.seed,
                              "classes": dict(classes), "false_success_divergence": dict(divergence),
                              "examples": examples})


if __name__ == "__main__":
    main()
