"""Whole env steps per second through the vector env for each ``flags_from`` (bundled model, eager, readout=False).

    python benchmarks/results/session16_2026-12-03/env_speed_flags_from.py [questions readout both]
(writes env_speed_flags_from.json in the current directory)
"""
import time, json, numpy as np, gymnasium as gym, torch
import latentum_world  # noqa
torch.set_num_threads(2)
import sys
FLAGS = sys.argv[1:] or ["questions", "readout", "both"]
out = {}
for n, steps in ((64, 30), (1, 60)):
    for flags in FLAGS:
        env = gym.make_vec("LatentUM-VSP-v0", num_envs=n, vectorization_mode="vector_entry_point", flags_from=flags, max_episode_steps=16)
        env.reset(seed=0); rng = np.random.default_rng(0)
        for _ in range(3): env.step(rng.integers(4, size=n))
        t0 = time.perf_counter()
        for _ in range(steps): env.step(rng.integers(4, size=n))
        dt = time.perf_counter() - t0
        out[f"{n}_{flags}"] = n * steps / dt
        print(n, flags, round(n * steps / dt, 1), "env steps/s", flush=True)
json.dump(out, open("env_speed_flags_from.json", "w"), indent=1)
