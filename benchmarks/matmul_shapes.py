"""Dense fp32 matmul rate at the shapes one imagined step runs, against the 1024 x 1024 rate.

``bench_world_model.py`` reports utilisation against a 1024 x 1024 matmul loop. One imagined step at
``num_envs=64`` multiplies much smaller operands: per generated position a (64, 128) activation by the
layer's fused q/k/v (128 -> 384), output (128 -> 128), fused gate/up (128 -> 768) and down (384 -> 128)
weights; the re-ingested state and the questions are longer (64 rows x 18 or more tokens). This script
times each such product on its own, so the ceiling a step could reach on this machine if it were nothing
but matmuls is known: ``flops_per_transition / rate at these shapes``.

    python benchmarks/matmul_shapes.py [--threads 2] [--rows 64] [--seconds 1] [--flops-per-transition 1.19e8]
        [--out benchmarks/results/matmul_shapes.json]
"""

from __future__ import annotations

import argparse

import torch

from bench_world_model import matmul_flops_per_second  # this folder is on sys.path when run as a script
from latentum_world.evaluation import write_json
from latentum_world.model.config import LatentUMConfig

_DEFAULT = LatentUMConfig()  # configs/model/default.yaml's sizes are LatentUMConfig's defaults
HIDDEN, MLP = _DEFAULT.hidden_size, _DEFAULT.mlp_size
# (name, tokens per row, in features, out features): the language model's fused products per layer
SHAPES = [
    ("qkv, one token", 1, HIDDEN, 3 * HIDDEN),
    ("o, one token", 1, HIDDEN, HIDDEN),
    ("gate+up, one token", 1, HIDDEN, 2 * MLP),
    ("down, one token", 1, MLP, HIDDEN),
    ("qkv, re-ingest (18 tokens)", 18, HIDDEN, 3 * HIDDEN),
    ("gate+up, re-ingest (18 tokens)", 18, HIDDEN, 2 * MLP),
]


def rate(m: int, k: int, n: int, seconds: float) -> float:
    """FLOP/s of ``(m, k) @ (k, n)`` repeated for about ``seconds``."""
    return matmul_flops_per_second(seconds, shape=(m, k, n))["flops_per_second"]


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rows", type=int, default=64, help="batch rows (num_envs)")
    p.add_argument("--seconds", type=float, default=1.0)
    p.add_argument("--flops-per-transition", type=float, default=1.19e8,
                   help="from bench_world_model.py's JSON (flops_per_transition.flops)")
    p.add_argument("--out", default="benchmarks/results/matmul_shapes.json")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    peak = rate(1024, 1024, 1024, args.seconds * 2)
    shapes = {}
    for name, tokens, k, n in SHAPES:
        r = rate(args.rows * tokens, k, n, args.seconds)
        shapes[name] = {"m": args.rows * tokens, "k": k, "n": n, "flops_per_second": r, "of_peak": r / peak,
                        "transitions_per_second_if_all_flops_ran_at_this_rate": r / args.flops_per_transition}
        print(f"{name:32s} ({args.rows * tokens:5d} x {k} @ {k} x {n}): {r / 1e9:6.1f} GFLOP/s = {r / peak:5.1%} of peak"
              f" -> ceiling {r / args.flops_per_transition:6.0f} transitions/s")
    print(f"1024 x 1024 peak: {peak / 1e9:.1f} GFLOP/s -> ceiling {peak / args.flops_per_transition:.0f} transitions/s")
    result = {"benchmark": "matmul_rate_at_imagination_shapes", "threads": args.threads, "rows": args.rows,
              "peak_1024": peak, "flops_per_transition": args.flops_per_transition, "shapes": shapes,
              "ceiling_at_peak": peak / args.flops_per_transition}
    write_json(args.out, result)
    return result


if __name__ == "__main__":
    main()
