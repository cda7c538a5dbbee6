"""``latentum-world memo [--model DIR]``: warm the Jacobi guesses of a world model and save them in its directory."""

from __future__ import annotations

import argparse

from latentum_world.world.memo_build import DEFAULT_NUM_ENVS, DEFAULT_SEED, DEFAULT_STEPS


def add_parser(sub) -> None:
    p = sub.add_parser(
        "memo",
        help="warm a world model's transition memo (its imagination's speed-up) and save it with the model",
        description="Roll the world model's vector env with random actions from an empty transition memo and save "
                    "the memo as transition_memo.safetensors in the model directory, where envs load it: their "
                    "fused steps then start from warm Jacobi guesses. Speed only; what the model imagines is the "
                    "same with or without it. `latentum-world train all` runs this for the model it makes.",
    )
    p.add_argument("--model", help="world-model directory (default: the bundled checkpoint)")
    p.add_argument("--steps", type=int, default=DEFAULT_STEPS, help=f"vector-env steps (default {DEFAULT_STEPS})")
    p.add_argument("--num-envs", type=int, default=DEFAULT_NUM_ENVS, help=f"imagined mazes per step (default {DEFAULT_NUM_ENVS})")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"maps and actions (default {DEFAULT_SEED})")
    p.add_argument("--out", help="file to write (default: <model>/transition_memo.safetensors)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto (default cpu)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from latentum_world.world.memo_build import build_memo

    s = build_memo(args.model, args.steps, args.num_envs, args.seed, args.out, args.quiet, args.device)
    print(f"transition memo: {s['keys']} keys from {s['steps']} steps x {s['num_envs']} envs in {s['seconds']:.0f} s; "
          f"Jacobi round rows per imagined row {s['round_rows_per_row_first_tenth']:.3f} in the first tenth, "
          f"{s['round_rows_per_row_last_tenth']:.3f} in the last; written to {s['path']}")
    return 0
