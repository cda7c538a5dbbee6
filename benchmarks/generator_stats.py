"""Map generator statistics per level vs the VSP benchmark's 100 released test maps per level.

Reference means (from the benchmark's task-main maps, levels 3..8): holes 1.22, 2.53, 4.45, 6.43,
9.51, 12.39; shortest path 2.11, 2.70, 3.20, 4.53, 5.23, 5.41. Target: each within 15 %.

    python benchmarks/generator_stats.py [--maps 2000] [--seed 0] [--out benchmarks/results/generator_stats.json]
"""

from __future__ import annotations

import argparse

import numpy as np

from envs.vsp.maps import LEVELS, generate_map
from latentum_world.evaluation import write_json

REF_HOLES = dict(zip(LEVELS, (1.22, 2.53, 4.45, 6.43, 9.51, 12.39)))
REF_PATH = dict(zip(LEVELS, (2.11, 2.70, 3.20, 4.53, 5.23, 5.41)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--maps", type=int, default=2000, help="maps per level")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="benchmarks/results/generator_stats.json")
    args = parser.parse_args()
    rows, worst = {}, 0.0
    print(f"{'level':>5} {'holes':>7} {'ref':>6} {'rel':>7} {'path':>6} {'ref':>5} {'rel':>7}")
    for level in LEVELS:
        rng = np.random.default_rng([args.seed, level])
        maps = [generate_map(rng, level) for _ in range(args.maps)]
        holes = float(np.mean([len(m.holes) for m in maps]))
        path = float(np.mean([len(m.shortest_path()) for m in maps]))
        rel_h, rel_p = holes / REF_HOLES[level] - 1, path / REF_PATH[level] - 1
        worst = max(worst, abs(rel_h), abs(rel_p))
        rows[str(level)] = {"mean_holes": holes, "ref_holes": REF_HOLES[level], "rel_holes": rel_h,
                            "mean_shortest_path": path, "ref_shortest_path": REF_PATH[level], "rel_shortest_path": rel_p}
        print(f"{level:>5} {holes:>7.2f} {REF_HOLES[level]:>6.2f} {rel_h:>+7.1%} {path:>6.2f} {REF_PATH[level]:>5.2f} {rel_p:>+7.1%}")
    result = {"benchmark": "generator_stats", "maps_per_level": args.maps, "seed": args.seed, "levels": rows,
              "max_abs_relative_error": worst, "target": 0.15, "meets_target": worst <= 0.15}
    print(f"max |relative error| = {worst:.1%} (target <= 15%)")
    write_json(args.out, result)


if __name__ == "__main__":
    main()
