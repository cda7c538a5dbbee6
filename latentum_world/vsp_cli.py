"""``latentum-world vsp ...``: tools over VSP checkouts and generated maps in the benchmark's layout."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from envs.vsp.formats import to_pure_text, to_table
from envs.vsp.loader import load_vsp
from envs.vsp.maps import ACTION_LETTERS, LEVELS, VSPMap, action_from_letter, generate_map
from envs.vsp.render import render_map
from envs.vsp.scoring import RULES, ScoreReport, read_plans_jsonl, score_items


def find_maze_root(path: str | Path) -> Path:
    """Accept a VSP checkout (``.../VSP-main`` or its parent), its ``maze`` folder, or anything below it."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such VSP folder: {path}")
    for candidate in (path / "maze", path / "VSP-main" / "maze"):
        if candidate.is_dir():
            return candidate
    return path


def write_item(level_dir: Path, index: int, m: VSPMap) -> None:
    """Write one map as the benchmark stores a main-task item: table, pure_text and img."""
    for kind, text in (("table", to_table(m)), ("pure_text", to_pure_text(m))):
        (level_dir / kind).mkdir(parents=True, exist_ok=True)
        (level_dir / kind / f"{index}.txt").write_text(text)
    (level_dir / "img").mkdir(parents=True, exist_ok=True)
    Image.fromarray(render_map(m, 64)).save(level_dir / "img" / f"{index}.png")


def generate(out: Path, levels: list[int], count: int, seed: int, hole_prob: float = 0.2, quiet: bool = False) -> Path:
    """Generate ``count`` maps per level into ``out/maze/task-main/maps/level{L}/...``; returns the maze folder.

    Each level draws from its own stream, ``default_rng([seed, level])``, so adding a level never changes another's maps.
    """
    maze = out / "maze"
    for level in levels:
        rng = np.random.default_rng([seed, level])
        level_dir = maze / "task-main" / "maps" / f"level{level}"
        for i in tqdm(range(count), desc=f"level {level}", disable=quiet, leave=False):
            write_item(level_dir, i, generate_map(rng, level, hole_prob))
    return maze


def main_items(maze: Path, split: str | None):
    items = load_vsp(maze, task="task-main", split=split)
    if split is None:  # prefer the test items; fall back to the in-context examples
        test = [it for it in items if it.split == "maps"]
        items = test or items
    return items


def cmd_generate(args: argparse.Namespace) -> int:
    levels = args.level or list(LEVELS)
    maze = generate(Path(args.out), levels, args.count, args.seed, args.hole_prob)
    print(f"wrote {args.count} maps per level for levels {levels} under {maze}/task-main/maps/")
    return 0


def cmd_render(args: argparse.Namespace) -> int:
    items = main_items(find_maze_root(args.vsp), args.split)
    out = Path(args.out)
    for it in tqdm(items, desc="render"):
        d = out / f"level{it.level}" / "img"
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(render_map(it.map, 64)).save(d / f"{it.index}.png")
    print(f"rendered {len(items)} main-task items into {out}/level*/img/")
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    items = main_items(find_maze_root(args.vsp), args.split)
    plans = read_plans_jsonl(args.plans)
    report: ScoreReport = score_items(((it.level, it.index, it.map) for it in items), plans, rule=args.rule)
    print(report.format_table())
    if args.json:
        Path(args.json).write_text(json.dumps(report.to_dict(), indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


def cmd_play(args: argparse.Namespace) -> int:
    import gymnasium as gym

    import latentum_world  # noqa: F401  (registers the ids)

    env = gym.make("VSPMaze-v0", obs_type="grid", render_mode="ansi", levels=[args.level])
    env.reset(seed=args.seed)
    print("Keys: L D R U then Enter; n = new maze; q = quit.")
    print(env.render())
    while True:
        try:
            key = input("move> ").strip().upper()
        except EOFError:
            return 0
        if key in ("Q", "QUIT"):
            return 0
        if key == "N":
            env.reset()
            print(env.render())
            continue
        if key not in ACTION_LETTERS:
            print("  unknown key; use L, D, R, U, n or q")
            continue
        _, reward, terminated, truncated, _ = env.step(action_from_letter(key))
        print(env.render())
        if terminated or truncated:
            print("  goal reached!" if reward > 0 else "  fell into a hole." if terminated else "  out of steps.")
            env.reset()
            print("new maze:\n" + env.render())


def add_parser(sub: argparse._SubParsersAction) -> None:
    vsp = sub.add_parser("vsp", help="VSP benchmark tools: generate, render, score, play")
    vsub = vsp.add_subparsers(dest="vsp_command", required=True, metavar="{generate,render,score,play}")

    p = vsub.add_parser("generate", help="write generated maps in the benchmark's layout (table, pure_text, img)")
    p.add_argument("--level", type=int, action="append", choices=LEVELS, help="level (repeatable; default all)")
    p.add_argument("--count", type=int, default=100, help="maps per level (default 100, like the benchmark)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--hole-prob", type=float, default=0.2, help="hole probability (benchmark main task: 0.2)")
    p.add_argument("--out", required=True, help="output folder; maps go to OUT/maze/task-main/maps/level{L}/")
    p.set_defaults(func=cmd_generate)

    p = vsub.add_parser("render", help="re-render every main-task item's table to OUT/level{L}/img/{i}.png")
    p.add_argument("--vsp", required=True, help="VSP checkout, its maze folder, a task or a level folder")
    p.add_argument("--out", required=True)
    p.add_argument("--split", choices=["maps", "example"], help="default: maps if present, else example")
    p.set_defaults(func=cmd_render)

    p = vsub.add_parser("score", help="score main-task plans (JSON lines {level, index, plan})")
    p.add_argument("--vsp", required=True, help="VSP checkout, its maze folder, a task or a level folder")
    p.add_argument("--plans", required=True, help='JSON lines: {"level": L, "index": i, "plan": "R,D,..."}')
    p.add_argument("--rule", choices=RULES, default="original", help="original (the benchmark's) or strict")
    p.add_argument("--split", choices=["maps", "example"], help="default: maps if present, else example")
    p.add_argument("--json", help="also write the numbers to this JSON file")
    p.set_defaults(func=cmd_score)

    p = vsub.add_parser("play", help="play a maze in the terminal")
    p.add_argument("--level", type=int, default=4, choices=LEVELS)
    p.add_argument("--seed", type=int, default=None)
    p.set_defaults(func=cmd_play)

