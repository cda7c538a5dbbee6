"""``latentum-world demo``: the main job.

Until the world model lands this is a short, non-interactive run over the REAL maze: generate maps of
every level in the benchmark's layout, solve them by BFS, score the plans (and a random-plan baseline)
with both rules, render a few boards to PNG and print the table.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from PIL import Image

from envs.vsp.loader import load_vsp
from envs.vsp.maps import ACTION_LETTERS, LEVELS
from envs.vsp.render import render_map
from envs.vsp.scoring import RULES, score_items
from latentum_world.vsp_cli import generate


def run(out: Path, count: int, seed: int) -> dict:
    t0 = time.perf_counter()
    maze = generate(out, list(LEVELS), count, seed, quiet=True)
    items = load_vsp(maze, task="task-main", split="maps")
    rng = np.random.default_rng(seed)
    bfs = {(it.level, it.index): ",".join(ACTION_LETTERS[a] for a in it.map.shortest_path()) for it in items}
    rand = {
        (it.level, it.index): ",".join(ACTION_LETTERS[a] for a in rng.integers(4, size=2 * len(it.map.shortest_path()) + 2))
        for it in items
    }
    plans_file = out / "plans_bfs.jsonl"
    plans_file.write_text("".join(json.dumps({"level": lv, "index": i, "plan": p}) + "\n" for (lv, i), p in bfs.items()))
    triples = [(it.level, it.index, it.map) for it in items]
    reports = {(name, rule): score_items(triples, plans, rule) for name, plans in (("bfs", bfs), ("random", rand)) for rule in RULES}
    png_dir = out / "png"
    png_dir.mkdir(exist_ok=True)
    for it in items:
        if it.index == 0:  # one picture per level, the elf facing its first BFS move
            first = it.map.shortest_path()[0]
            Image.fromarray(render_map(it.map.move(first), 64, first)).save(png_dir / f"level{it.level}_0_after_{ACTION_LETTERS[first]}.png")
    return {"maze": maze, "items": items, "reports": reports, "plans_file": plans_file, "png_dir": png_dir, "seconds": time.perf_counter() - t0}


def format_summary(result: dict) -> str:
    items, reports = result["items"], result["reports"]
    lines = [
        f"{'level':>6} {'maps':>5} {'holes':>6} {'path':>5} {'detour':>7} | {'BFS orig':>8} {'BFS strict':>10} | {'rand orig':>9} {'rand strict':>11}"
    ]
    for lv in LEVELS:
        its = [it for it in items if it.level == lv]
        holes = np.mean([len(it.map.holes) for it in its])
        path = np.mean([len(it.map.shortest_path()) for it in its])
        detour = np.mean([it.map.is_detour for it in its])
        acc = {k: r.to_dict()["levels"][str(lv)]["accuracy"] for k, r in reports.items()}
        lines.append(
            f"{lv:>6} {len(its):>5} {holes:>6.2f} {path:>5.2f} {detour:>7.1%} | {acc['bfs', 'original']:>8.1%} {acc['bfs', 'strict']:>10.1%} | "
            f"{acc['random', 'original']:>9.1%} {acc['random', 'strict']:>11.1%}"
        )
    overall = {k: r.to_dict()["overall"]["accuracy"] for k, r in reports.items()}
    lines.append(
        f"{'all':>6} {len(items):>5} {'':>6} {'':>5} {'':>7} | {overall['bfs', 'original']:>8.1%} {overall['bfs', 'strict']:>10.1%} | "
        f"{overall['random', 'original']:>9.1%} {overall['random', 'strict']:>11.1%}"
    )
    return "\n".join(lines)


def cmd_demo(args: argparse.Namespace) -> int:
    out = Path(args.out)
    print(f"Generating {args.count} maps per level (seed {args.seed}) in the VSP layout under {out} ...")
    result = run(out, args.count, args.seed)
    print(format_summary(result))
    print(f"\nmaps:  {result['maze']}   (score them: latentum-world vsp score --vsp {result['maze']} --plans {result['plans_file']})")
    print(f"PNGs:  {result['png_dir']}")
    print(f"done in {result['seconds']:.1f} s")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("demo", help="the main job: a short real-maze run (generate, solve, score, render)")
    p.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    p.add_argument("--count", type=int, default=100, help="maps per level")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_demo)
