"""Agreement of ``LatentUM-VSP-v0`` with the real maze, measured through the env interface.

The batched env (``gym.make_vec(..., vectorization_mode="vector_entry_point", readout=True)``) starts
every slot from a real held-out map (drawn by the env from its seed: levels 3..8, the benchmark's
rule) and is stepped with uniformly random actions for ``--horizon`` steps. The same actions drive the
real dynamics from ``info["real_map"]``. At every step where the REAL episode is still running
(steps after a real termination are excluded) we compare:

* ``board``: the env's ``info["board"]`` (the model's VSP-table read-out of its imagined state) equals
  the real board. A step where the env has already ended while the real episode goes on counts as wrong.
* ``reward`` / ``terminated``: the env's reward and termination equal the real ones (counted on the
  same steps; termination also on the real episode's last step).

The JSON's ``errors`` section says where the misses come from: ``false_termination`` (the env ended an
episode the real maze goes on with: split by which answer ended it, whether the env's board read-out
of that state was right, and the model's P(Yes) there), ``missed_termination`` (the real episode ended,
the env's did not: split by goal / hole) and ``steps_after_early_end`` (real steps that count as wrong on
all three measures because the env had already ended the episode).

    python benchmarks/env_agreement.py [--model DIR] [--maps 500] [--horizon 16] [--num-envs 100]
        [--seed 20261123] [--examples N] [--flags-from questions|readout|both] [--out benchmarks/results/env_agreement.json]

``--examples N`` keeps the first N false terminations in full (``false_termination_examples``).
"""

from __future__ import annotations

import argparse
import time

import gymnasium as gym
import numpy as np
from tqdm import tqdm

import latentum_world  # noqa: F401  (registers the env ids)
from latentum_world.evaluation import write_json
from latentum_world.world.model import DEFAULT_FLAG_SOURCE, FLAG_SOURCES


def run(model: str | None, maps: int, horizon: int, num_envs: int, seed: int, quiet: bool = False,
        max_examples: int = 0, flags_from: str = DEFAULT_FLAG_SOURCE) -> dict:
    if maps % num_envs:
        raise ValueError(f"--maps ({maps}) must be a multiple of --num-envs ({num_envs})")
    env = gym.make_vec("LatentUM-VSP-v0", num_envs=num_envs, vectorization_mode="vector_entry_point", model=model,
                       readout=True, max_episode_steps=horizon, flags_from=flags_from)
    rng = np.random.default_rng(seed)
    board, reward, term = [], [], []  # per compared step: (level, depth, ok)
    false_term, missed_term, after_end = [], [], 0  # error records (see the module docstring)
    examples = []  # the first ``max_examples`` false terminations in full
    untimed = 0.0  # seconds spent keeping them
    t0 = time.perf_counter()
    for r in tqdm(range(maps // num_envs), desc="env agreement", disable=quiet):
        _, info = env.reset(seed=seed + r * num_envs)  # held-out: seeds far from training's
        real = list(info["real_map"])
        env_live = np.ones(num_envs, dtype=bool)
        real_live = np.ones(num_envs, dtype=bool)
        for depth in range(1, horizon + 1):
            actions = rng.integers(4, size=num_envs)
            _, rew, terminated, truncated, info = env.step(actions)
            for i in np.flatnonzero(real_live):
                real[i] = real[i].move(int(actions[i]))
                level = real[i].size
                real_term = real[i].on_goal or real[i].in_hole
                if env_live[i]:
                    b = info["board"][i]
                    board.append((level, depth, b is not None and b == real[i]))
                    reward.append((level, depth, float(rew[i]) == float(real[i].on_goal)))
                    term.append((level, depth, bool(terminated[i]) == real_term))
                    if terminated[i] and not real_term:
                        false_term.append({"level": level, "depth": depth, "p_goal": float(info["p_goal"][i]),
                                           "p_hole": float(info["p_hole"][i]), "board_right": b is not None and b == real[i]})
                        if len(examples) < max_examples:  # (not timed)
                            t_ex = time.perf_counter()
                            examples.append(_example(env, i, real[i], b, int(actions[i]), false_term[-1]))
                            untimed += time.perf_counter() - t_ex
                    elif real_term and not terminated[i]:
                        missed_term.append({"level": level, "depth": depth, "cause": "goal" if real[i].on_goal else "hole"})
                else:  # the env ended this episode early: nothing to compare with, so wrong
                    board.append((level, depth, False))
                    reward.append((level, depth, False))
                    term.append((level, depth, False))
                    after_end += 1
                real_live[i] = not real_term
            env_live &= ~(terminated | truncated)
    seconds = time.perf_counter() - t0 - untimed
    env.close()

    def summary(rows):
        a = np.array(rows, dtype=np.int64)
        out = {"accuracy": float(a[:, 2].mean()), "steps": int(len(a))}
        out["per_level"] = {int(lv): float(a[a[:, 0] == lv, 2].mean()) for lv in np.unique(a[:, 0])}
        out["per_depth"] = {int(d): float(a[a[:, 1] == d, 2].mean()) for d in np.unique(a[:, 1])}
        return out

    return {"maps": maps, "horizon": horizon, "policy": "random", "num_envs": num_envs, "seed": seed, "flags_from": flags_from,
            "board": summary(board), "reward": summary(reward), "termination": summary(term),
            "errors": error_summary(false_term, missed_term, after_end), "seconds": seconds,
            **({"false_termination_examples": examples} if max_examples else {})}


def _example(env, i: int, real, board, action: int, record: dict) -> dict:
    """One false termination: the real board after the move, the env's read-out of its imagined state, and the
    model's greedy goal / hole answers (interpretation and verdict) about that state."""
    from envs.vsp.formats import to_table

    world = env.unwrapped.world
    goal, hole = world.flag_questions.answers(world.state_embeds[i : i + 1], world.tok)[0]
    return {**record, "action": "LDRU"[action], "real_after": to_table(real),
            "readout": None if board is None else to_table(board), "goal_answer": goal, "hole_answer": hole}


def error_summary(false_term: list[dict], missed_term: list[dict], after_end: int) -> dict:
    """Counts behind the termination misses (records as collected by :func:`run`)."""
    by_goal = [r for r in false_term if r["p_goal"] > 0.5]
    p_yes = sorted(max(r["p_goal"], r["p_hole"]) for r in false_term)
    return {
        "false_termination": {
            "count": len(false_term),
            "by_goal_answer": len(by_goal),
            "by_hole_answer": len(false_term) - len(by_goal),
            "board_readout_right": sum(r["board_right"] for r in false_term),
            "p_yes_quartiles": [float(np.quantile(p_yes, q)) for q in (0.25, 0.5, 0.75)] if p_yes else [],
            "per_depth": {int(d): sum(r["depth"] == d for r in false_term) for d in sorted({r["depth"] for r in false_term})},
        },
        "missed_termination": {
            "count": len(missed_term),
            "goal": sum(r["cause"] == "goal" for r in missed_term),
            "hole": sum(r["cause"] == "hole" for r in missed_term),
        },
        "steps_after_early_end": after_end,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", help="world model directory (default: the bundled checkpoint)")
    ap.add_argument("--maps", type=int, default=500)
    ap.add_argument("--horizon", type=int, default=16)
    ap.add_argument("--num-envs", type=int, default=100)
    ap.add_argument("--seed", type=int, default=20261123)
    ap.add_argument("--out", default="benchmarks/results/env_agreement.json")
    ap.add_argument("--examples", type=int, default=0, help="keep the first N false terminations in full")
    ap.add_argument("--flags-from", choices=FLAG_SOURCES, default=DEFAULT_FLAG_SOURCE,
                    help="the env's reward / termination: the yes/no questions, the model's board read-out, or both "
                         "(each Yes confirmed by the read-out; the env's default)")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    result = run(args.model, args.maps, args.horizon, args.num_envs, args.seed, args.quiet, args.examples, args.flags_from)
    result["model"] = args.model or "bundled"
    write_json(args.out, result)
    for k in ("board", "reward", "termination"):
        print(f"{k:12s} {100 * result[k]['accuracy']:6.2f} % of {result[k]['steps']} steps")
    e = result["errors"]
    print(f"false terminations {e['false_termination']['count']} (goal answer {e['false_termination']['by_goal_answer']}, "
          f"board read-out right {e['false_termination']['board_readout_right']}), missed terminations "
          f"{e['missed_termination']['count']}, real steps after an early end {e['steps_after_early_end']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
