"""The renderer against the VSP benchmark's own PNGs: same size, mean absolute difference per channel.

Every item with a map (task-main, task1, task2, task4) under a VSP checkout or ``../shared/vsp-examples``
is re-rendered from its table at 64 px per cell and compared with its ``img/<i>.png``. Target: <= 0.01.

    python benchmarks/render_vs_benchmark.py --vsp ../shared/vsp-examples [--out benchmarks/results/render_vs_benchmark.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from envs.vsp.loader import load_vsp
from envs.vsp.render import load_png, render_map
from latentum_world.evaluation import write_json


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vsp", default="../shared/vsp-examples")
    parser.add_argument("--out", default="benchmarks/results/render_vs_benchmark.json")
    args = parser.parse_args()
    worst, count, size_mismatch = np.zeros(3), 0, 0
    per_task: dict[str, int] = {}
    for it in load_vsp(Path(args.vsp) / "maze" if (Path(args.vsp) / "maze").is_dir() else args.vsp):
        if it.map is None or it.image_path is None:
            continue
        ref, ours = load_png(it.image_path), render_map(it.map, 64)
        if ref.shape != ours.shape:
            size_mismatch += 1
            continue
        mad = np.abs(ref.astype(np.int64) - ours.astype(np.int64)).mean(axis=(0, 1))  # (3,) per channel
        worst = np.maximum(worst, mad)
        count += 1
        per_task[it.task] = per_task.get(it.task, 0) + 1
    result = {"benchmark": "render_vs_benchmark_png", "images": count, "per_task": per_task, "size_mismatches": size_mismatch,
              "max_mean_abs_diff_per_channel": worst.tolist(), "target": 0.01,
              "meets_target": size_mismatch == 0 and bool((worst <= 0.01).all())}
    print(json.dumps(result, indent=2))
    write_json(args.out, result)


if __name__ == "__main__":
    main()
