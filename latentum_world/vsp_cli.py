"""``latentum-world vsp ...``: tools over VSP checkouts and generated maps in the benchmark's layout."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from PIL import Image
from tqdm import tqdm

from envs.vsp.formats import to_pure_text, to_table
from envs.vsp.loader import load_vsp
from envs.vsp.maps import ACTION_LETTERS, LEVELS, VSPMap, action_from_letter, generate_map
from envs.vsp.render import render_map
from envs.vsp.scoring import RULES, ScoreReport, read_plans_jsonl, score_items
from envs.vsp.tasks import SUB_TASKS, generate_task_items, level_folder, task_levels, task_rng, write_task_items


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
        rng = task_rng(seed, "task-main", level)  # default_rng([seed, level])
        level_dir = maze / "task-main" / "maps" / f"level{level}"
        for i in tqdm(range(count), desc=f"level {level}", disable=quiet, leave=False):
            write_item(level_dir, i, generate_map(rng, level, hole_prob))
    return maze


def generate_task(
    out: Path, task: str, levels: list[int], count: int, seed: int, split: str = "maps", quiet: bool = False
) -> Path:
    """Generate ``count`` items per level of a sub-task into ``out/maze/<task>/<split>/<level folder>/...``.

    Each level draws from its own stream, :func:`~envs.vsp.tasks.task_rng` ``(seed, task, level)``; for task4
    the levels are the step counts. Returns the maze folder.
    """
    maze = out / "maze"
    for level in tqdm(levels, desc=task, disable=quiet, leave=False):
        items = generate_task_items(task, task_rng(seed, task, level), level, count, split)
        write_task_items(maze, task, level_folder(task, level), items)
    return maze


def main_items(maze: Path, split: str | None):
    items = load_vsp(maze, task="task-main", split=split)
    if split is None:  # prefer the test items; fall back to the in-context examples
        test = [it for it in items if it.split == "maps"]
        items = test or items
    return items


def cmd_generate(args: argparse.Namespace) -> int:
    task = args.task
    allowed = LEVELS if task == "task-main" else task_levels(task)
    levels = args.level or list(allowed)
    bad = [lv for lv in levels if lv not in allowed]
    if bad:
        what = "step counts" if task == "task4" else "levels"
        raise ValueError(f"{task} has no level {bad[0]}: --level takes {what} {', '.join(map(str, allowed))}")
    if task == "task-main":
        if args.split != "maps":
            raise ValueError("task-main items can only be generated as test maps (--split maps)")
        hole_prob = 0.2 if args.hole_prob is None else args.hole_prob
        maze = generate(Path(args.out), levels, args.count, args.seed, hole_prob)
        print(f"wrote {args.count} maps per level for levels {levels} under {maze}/task-main/maps/")
        return 0
    if args.hole_prob is not None:
        raise ValueError(f"--hole-prob applies to task-main only ({task} follows the benchmark's own rule)")
    maze = generate_task(Path(args.out), task, levels, args.count, args.seed, args.split)
    print(f"wrote {args.count} {task} items per level for levels {levels} under {maze}/{task}/{args.split}/")
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

    p = vsub.add_parser("generate", help="write generated items in the benchmark's layout (img, table, question, ...)")
    p.add_argument("--task", choices=("task-main",) + SUB_TASKS, default="task-main",
                   help="which task's items (default task-main: maps with table, pure_text, img)")
    p.add_argument("--level", type=int, action="append",
                   help="level (repeatable; default all): board side 3..8, or for task4 the step count 1, 3, 5, 7, 9")
    p.add_argument("--count", type=int, default=100, help="items per level (default 100, like the benchmark)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--hole-prob", type=float, help="task-main only: hole probability (default 0.2, the benchmark's)")
    p.add_argument("--split", choices=["maps", "example"], default="maps",
                   help="maps (test items, default) or example (in-context examples, with analysis files)")
    p.add_argument("--out", required=True, help="output folder; items go to OUT/maze/<task>/<split>/<level>/")
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

