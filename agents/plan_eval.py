"""Score the latent planner in the REAL maze.

For held-out generated boards (levels 3..8, ``--maps-per-level`` each), the planner
(:class:`agents.planner.LatentBFSPlanner`) searches the world model's imagination from the real first frame
alone; its plan is then executed open-loop on the real board (non-slippery FrozenLake dynamics,
:meth:`envs.vsp.maps.VSPMap.move`). A plan **succeeds** when the real player reaches the goal without
entering a hole; it is **optimal** when it also has the length of the real shortest path. Per level and in
total the JSON holds the success and optimal rates, the plans' failure kinds (no plan found, ended in a
hole, stopped short of the goal), the imagined transitions spent per board and the seconds per board; every
failed board is listed under ``failures`` (its VSP table, the actions taken, the outcome and, open-loop, where
imagination first parted from the real board: :mod:`agents.imagination_errors`), and the first errors' kinds
are tallied under ``failure_first_errors``.

``--replan`` scores the planner closed-loop instead (model-predictive control): after every real step it
plans again from the new real frame and takes only the plan's first action, for at most ``2 n^2`` real
steps on an ``n x n`` board; imagination errors then cost at most a detour instead of the episode.

    python -m agents.plan_eval [--model DIR] [--maps-per-level 20] [--seed 20261129] [--replan] [--json OUT]
        [--tensorboard runs/plans] [--show 2]

``--tensorboard`` writes the success rates as scalars and, for the first ``--show`` boards of each level, the
plan replayed in imagination beside the real maze under the same actions: a strip (real frames above the
pixel decoder's pictures of the imagined states, with the model's goal / hole verdicts) and a GIF.

The boards are drawn from :func:`latentum_world.evaluation.perception.heldout_rng` with their own stream
part, so they are neither training boards nor those of the other evaluations.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter

import numpy as np
import torch
from tqdm import tqdm

from agents.imagination_errors import first_divergence
from envs.vsp.formats import to_table
from envs.vsp.maps import ACTION_LETTERS, LEVELS, VSPMap, generate_map
from envs.vsp.observation import model_renderer

#: Stream part of :func:`~latentum_world.evaluation.perception.heldout_rng` for the planner's boards.
PLAN_PART = 0x91A4
DEFAULT_SEED = 20261129


def execute(board: VSPMap, actions: list[int]) -> str:
    """Run ``actions`` on the real ``board``: ``"goal"``, ``"hole"`` (the episode ends there) or ``"short"``
    (the actions ran out elsewhere)."""
    for a in actions:
        board = board.move(a)
        if board.on_goal:
            return "goal"
        if board.in_hole:
            return "hole"
    return "short"


def closed_loop(planner, board: VSPMap, max_steps: int) -> tuple[str, int, int]:
    """Replan from every real frame and take the first action: ``(outcome, real steps, imagined transitions)``
    with outcome ``"goal"``, ``"hole"``, ``"no_plan"`` or ``"short"`` (``max_steps`` ran out)."""
    renderer = model_renderer(planner.world.model.config, board.size)
    last, transitions = None, 0
    for step in range(max_steps):
        plan = planner.plan(torch.from_numpy(renderer.render(board, last)), draft_board=board)
        transitions += plan.imagined_transitions
        if plan.actions is None:
            return "no_plan", step, transitions
        last = plan.actions[0]
        board = board.move(last)
        if board.on_goal or board.in_hole:
            return ("goal" if board.on_goal else "hole"), step + 1, transitions
    return "short", max_steps, transitions


def heldout_boards(seed: int, maps_per_level: int, levels=LEVELS) -> list[VSPMap]:
    from latentum_world.evaluation.perception import heldout_rng

    boards = []
    for level in levels:
        rng = heldout_rng(seed, PLAN_PART, level)
        boards += [generate_map(rng, level) for _ in range(maps_per_level)]
    return boards


def evaluate(planner, boards: list[VSPMap], progress: bool = True, replan: bool = False) -> dict:
    """Plan on each board from its real first frame and execute the plan for real (``replan``: closed-loop,
    :func:`closed_loop`); the tallies (see the module docstring) and, under ``"plans"``, each board's
    open-loop plan (``None`` with ``replan``)."""
    config = planner.world.model.config
    rows, plans, failures = [], [], []
    for board in tqdm(boards, desc="planning (closed-loop)" if replan else "planning", disable=not progress):
        t0 = time.perf_counter()
        actions = None
        if replan:
            outcome, length, transitions = closed_loop(planner, board, 2 * board.size**2)
        else:
            plan = planner.plan(torch.from_numpy(model_renderer(config, board.size).render(board)), draft_board=board)
            outcome = "no_plan" if plan.actions is None else execute(board, plan.actions)
            actions, transitions = plan.actions, plan.imagined_transitions
            length = None if actions is None else len(actions)
            plans.append(actions)
        seconds = time.perf_counter() - t0
        shortest = len(board.shortest_path())
        if outcome != "goal":
            failure = {"level": board.size, "board": to_table(board), "outcome": outcome, "shortest": shortest,
                       "actions": None if actions is None else "".join(ACTION_LETTERS[a] for a in actions)}
            if not replan:  # where imagination first parted from reality: along the plan, or the real shortest path
                failure["first_error"] = first_divergence(planner.world, board, actions or board.shortest_path())
                failure["first_error_along"] = "plan" if actions else "real shortest path"
            failures.append(failure)
        rows.append({"level": board.size, "outcome": outcome, "length": length, "shortest": shortest,
                     "optimal": outcome == "goal" and length == shortest, "imagined_transitions": transitions,
                     "seconds": seconds})
    causes = Counter((f["first_error"] or {}).get("kind", "none found") for f in failures if "first_error" in f)
    return {"total": _summary(rows), "levels": {str(lv): _summary([r for r in rows if r["level"] == lv])
                                                for lv in sorted({r["level"] for r in rows})},
            "failures": failures, "failure_first_errors": dict(causes.most_common()),
            "plans": plans if not replan else [None] * len(rows)}


def write_tensorboard(logdir, world, boards: list[VSPMap], result: dict, show: int) -> dict:
    """Scalars of ``result`` and, for the first ``show`` planned boards per level, strips and GIFs (see the module
    docstring) under ``logdir``; returns what was written."""
    from pathlib import Path

    from torch.utils.tensorboard import SummaryWriter

    from agents.pictures import can_draw, log_episode

    logdir = Path(logdir)
    written = {"logdir": str(logdir), "strips": 0, "gifs": []}
    with SummaryWriter(log_dir=str(logdir)) as writer:
        for name, s in [*result["levels"].items(), ("all", result["total"])]:
            writer.add_scalar(f"plan/success/{name}", s["success"], 0)
            writer.add_scalar(f"plan/optimal/{name}", s["optimal"], 0)
        if not can_draw(world):
            written["no_pictures"] = "no pixel decoder in the model's checkpoint"
            return written
        shown: dict[int, int] = {}
        for i, (board, actions) in enumerate(zip(boards, result["plans"])):
            if actions is None or shown.get(board.size, 0) >= show:
                continue
            shown[board.size] = shown.get(board.size, 0) + 1
            path = log_episode(writer, logdir / "gifs", world, board, actions, f"plans/level{board.size}_board{i}")
            written["strips"] += 1
            written["gifs"].append(str(path))
    return written


def _summary(rows: list[dict]) -> dict:
    n = len(rows)
    count = lambda kind: sum(r["outcome"] == kind for r in rows)  # noqa: E731
    return {"boards": n, "success": count("goal") / n, "optimal": sum(r["optimal"] for r in rows) / n,
            "no_plan": count("no_plan"), "hole": count("hole"), "short": count("short"),
            "imagined_transitions_per_board": float(np.mean([r["imagined_transitions"] for r in rows])),
            "seconds_per_board": float(np.mean([r["seconds"] for r in rows]))}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="world-model directory (default: the bundled checkpoint)")
    parser.add_argument("--maps-per-level", type=int, default=20, help="held-out boards per level 3..8 (default 20)")
    parser.add_argument("--levels", default=",".join(map(str, LEVELS)), help="comma-separated levels (default 3..8)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"held-out board seed (default {DEFAULT_SEED})")
    parser.add_argument("--max-depth", type=int, default=64, help="imagined steps searched at most (default 64)")
    parser.add_argument("--flags-from", default="both", choices=("questions", "readout", "both"),
                        help="where the model's goal / hole answers come from (default 'both', the env's)")
    parser.add_argument("--replan", action="store_true", help="closed-loop: replan from every real frame")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto (default cpu)")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--tensorboard", metavar="LOGDIR", help="write scalars, plan strips and GIFs here")
    parser.add_argument("--show", type=int, default=2, help="boards per level pictured in TensorBoard (default 2)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    levels = tuple(int(x) for x in args.levels.split(",") if x)
    if args.maps_per_level < 1 or not levels or any(lv not in LEVELS for lv in levels):
        parser.error(f"--maps-per-level must be >= 1 and --levels a subset of {LEVELS}")

    from agents.planner import LatentBFSPlanner
    from latentum_world.world.loading import load_world_model, resolve_model_path
    from latentum_world.world.model import LatentWorldModel

    try:
        path = resolve_model_path(args.model)
        model, tok = load_world_model(path, args.device)
    except (FileNotFoundError, ValueError) as e:
        parser.error(str(e))
    planner = LatentBFSPlanner(LatentWorldModel(model, tok, flags_from=args.flags_from), max_depth=args.max_depth)
    boards = heldout_boards(args.seed, args.maps_per_level, levels)
    t0 = time.perf_counter()
    result = evaluate(planner, boards, progress=not args.quiet, replan=args.replan)
    print(f"{'level':>6} {'boards':>6} {'success':>8} {'optimal':>8} {'no plan':>8} {'hole':>5} {'short':>6} {'transitions':>12} {'s/board':>7}")
    for name, s in [*result["levels"].items(), ("all", result["total"])]:
        print(f"{name:>6} {s['boards']:6d} {100 * s['success']:7.1f}% {100 * s['optimal']:7.1f}% {s['no_plan']:8d} "
              f"{s['hole']:5d} {s['short']:6d} {s['imagined_transitions_per_board']:12.1f} {s['seconds_per_board']:7.2f}")
    if result["failure_first_errors"]:
        print("imagination's first error on the failed boards (agents/imagination_errors.py): "
              + ", ".join(f"{k} {n}" for k, n in result["failure_first_errors"].items()))
    plans = result.pop("plans")
    if args.tensorboard:
        written = write_tensorboard(args.tensorboard, planner.world, boards, {**result, "plans": plans}, args.show)
        print(f"TensorBoard: tensorboard --logdir {args.tensorboard}  ({written['strips']} plan strips"
              + (f"; {written['no_pictures']}" if "no_pictures" in written else "") + ")")
    if args.json:
        from latentum_world.evaluation import write_json

        write_json(args.json, {"benchmark": "latent_bfs_planner_in_real_maze", "model": str(path), "seed": args.seed,
                               "maps_per_level": args.maps_per_level, "max_depth": args.max_depth,
                               "mode": "closed-loop (replan every real step)" if args.replan else "open-loop (one plan)",
                               "flags_from": args.flags_from, "threads": torch.get_num_threads(),
                               "wall_seconds": time.perf_counter() - t0, **result})


if __name__ == "__main__":
    main()
