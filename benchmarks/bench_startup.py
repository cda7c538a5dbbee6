"""Seconds from a fresh Python process to the first observation of ``LatentUM-VSP-v0``.

Each run is a new interpreter that times ``import latentum_world`` + ``gym.make("LatentUM-VSP-v0")`` +
the first ``reset`` (model load from the checkpoint directory included), as a user's first script
would. The interpreter's own start-up is not counted.

    python benchmarks/bench_startup.py [--model DIR] [--runs 5] [--out benchmarks/results/startup.json]
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys

from latentum_world.evaluation import write_json

SNIPPET = """
import time
t0 = time.perf_counter()
import gymnasium as gym
import latentum_world
t1 = time.perf_counter()
kwargs = {} if MODEL is None else {"model": MODEL}
env = gym.make("LatentUM-VSP-v0", **kwargs)
t2 = time.perf_counter()
obs, info = env.reset(seed=0)
t3 = time.perf_counter()
print(t1 - t0, t2 - t1, t3 - t2)
"""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", help="checkpoint directory (default: the bundled one)")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--out", default="benchmarks/results/startup.json")
    args = ap.parse_args(argv)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    runs = []
    for _ in range(args.runs):
        code = f"MODEL = {args.model!r}\n" + SNIPPET
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
        imp, make, reset = (float(x) for x in out.stdout.split()[-3:])
        runs.append({"import": imp, "make": make, "reset": reset, "total": imp + make + reset})
    totals = sorted(r["total"] for r in runs)
    result = {"benchmark": "import + gym.make + first reset, fresh process", "model": args.model or "bundled",
              "runs": runs, "median_total_s": totals[len(totals) // 2], "max_total_s": totals[-1],
              "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "loadavg": os.getloadavg()}}
    write_json(args.out, result)
    print(f"median {result['median_total_s']:.2f} s, max {result['max_total_s']:.2f} s over {args.runs} runs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
