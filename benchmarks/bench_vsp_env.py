"""Steps per second of ``VSPMaze-v0`` (rgb observations) vs gymnasium's ``FrozenLake-v1`` + ``render()``.

Side by side in one process, random actions, per level and over levels 3..8, each env through
``gymnasium.make`` with its default wrappers. ``VSPMaze-v0`` is measured twice: drawing a fresh map at
every reset (its default) and replaying one fixed map per level, like ``FrozenLake-v1`` does.

    python benchmarks/bench_vsp_env.py [--seconds 3] [--out benchmarks/results/vsp_env.json]
"""

from __future__ import annotations

import argparse
import os
import platform
import time

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

import latentum_world  # noqa: E402,F401
from envs.vsp.formats import to_desc  # noqa: E402
from envs.vsp.maps import LEVELS, generate_map  # noqa: E402
from latentum_world.evaluation import write_json


def steps_per_second(env, seconds: float, render: bool, reset_options=None, seed: int = 0) -> float:
    rng = np.random.default_rng(seed)
    env.reset(seed=seed, options=reset_options)
    if render:
        env.render()
    steps, t0 = 0, time.perf_counter()
    while True:
        for _ in range(100):
            _, _, term, trunc, _ = env.step(int(rng.integers(4)))
            if render:
                env.render()
            steps += 1
            if term or trunc:
                env.reset(options=reset_options)
                if render:
                    env.render()
        elapsed = time.perf_counter() - t0
        if elapsed >= seconds:
            return steps / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=3.0, help="measuring time per configuration")
    parser.add_argument("--obs-size", type=int, default=128)
    parser.add_argument("--out", default="benchmarks/results/vsp_env.json")
    args = parser.parse_args()
    torch.set_num_threads(1)

    rows = {}
    for level in LEVELS:
        m = generate_map(np.random.default_rng(level), level)
        fl = gym.make("FrozenLake-v1", desc=to_desc(m), is_slippery=False, render_mode="rgb_array")
        ours = gym.make("VSPMaze-v0", obs_type="rgb", obs_size=args.obs_size, levels=[level])
        row = {
            "frozenlake_rgb_array_sps": steps_per_second(fl, args.seconds, render=True),
            "vspmaze_rgb_fixed_map_sps": steps_per_second(ours, args.seconds, render=False, reset_options={"map": m}),
            "vspmaze_rgb_fresh_maps_sps": steps_per_second(ours, args.seconds, render=False),
        }
        row["speedup_fixed_map"] = row["vspmaze_rgb_fixed_map_sps"] / row["frozenlake_rgb_array_sps"]
        row["speedup_fresh_maps"] = row["vspmaze_rgb_fresh_maps_sps"] / row["frozenlake_rgb_array_sps"]
        rows[str(level)] = row
        print(f"level {level}: FrozenLake {row['frozenlake_rgb_array_sps']:8.0f} sps | VSPMaze fixed map "
              f"{row['vspmaze_rgb_fixed_map_sps']:8.0f} ({row['speedup_fixed_map']:.1f}x) | fresh maps "
              f"{row['vspmaze_rgb_fresh_maps_sps']:8.0f} ({row['speedup_fresh_maps']:.1f}x)")
    # all levels mixed: harmonic mean over levels = time to take one step at each level
    def mixed(key):
        return len(LEVELS) / sum(1.0 / rows[str(lv)][key] for lv in LEVELS)

    summary = {k: mixed(k) for k in ("frozenlake_rgb_array_sps", "vspmaze_rgb_fixed_map_sps", "vspmaze_rgb_fresh_maps_sps")}
    summary["speedup_fixed_map"] = summary["vspmaze_rgb_fixed_map_sps"] / summary["frozenlake_rgb_array_sps"]
    summary["speedup_fresh_maps"] = summary["vspmaze_rgb_fresh_maps_sps"] / summary["frozenlake_rgb_array_sps"]
    summary["min_speedup_over_levels"] = min(min(r["speedup_fixed_map"], r["speedup_fresh_maps"]) for r in rows.values())
    print(f"levels 3-8 mixed: {summary['speedup_fixed_map']:.1f}x (fixed map), {summary['speedup_fresh_maps']:.1f}x (fresh maps); "
          f"worst level {summary['min_speedup_over_levels']:.1f}x")
    result = {
        "benchmark": "vsp_env_steps_per_second",
        "obs_size": args.obs_size,
        "seconds_per_config": args.seconds,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version(),
                    "gymnasium": gym.__version__},
        "levels": rows,
        "mixed_levels": summary,
        "target": "VSPMaze-v0 rgb@128 >= 10x FrozenLake-v1 rgb_array (step + render)",
        "meets_target": summary["min_speedup_over_levels"] >= 10.0,
    }
    write_json(args.out, result)


if __name__ == "__main__":
    main()
