"""Dense fp32 matmul rate at the shapes one imagined step runs, against the 1024 x 1024 rate.

``bench_world_model.py`` reports utilisation against a 1024 x 1024 matmul loop. One imagined step at
``num_envs=64`` multiplies much smaller operands: per generated position a (64, 128) activation by the
layer's fused q/k/v (128 -> 384), output (128 -> 128), fused gate/up (128 -> 768) and down (384 -> 128)
weights; the re-ingested state and the questions are longer (64 rows x 18 or more tokens). This script
times each such product on its own, so the ceiling a step could reach on this machine if it were nothing
but matmuls is known: ``flops_per_transition / rate at these shapes``. Each product is timed through MKL
(``torch.mm``, what ``nn.Linear`` uses) and through oneDNN with the weight packed (what the fused greedy step
uses, :func:`~latentum_world.world.fused_step.packed_linear`); on this project's AMD CPUs oneDNN's is 1.5-2.3x
faster at most of these shapes (64 rows: 128 x 384, 128 x 768, 384 x 128; 1,152 rows), about 0.9x at 64 x 128 x 128.

    python benchmarks/matmul_shapes.py [--threads 2] [--rows 64] [--seconds 1] [--flops-per-transition 1.086e8]
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


KERNELS = ("mkl", "onednn")


def rate(m: int, k: int, n: int, seconds: float, kernel: str = "mkl") -> float:
    """FLOP/s of ``(m, k) @ (k, n)`` repeated for about ``seconds`` through ``kernel``."""
    return matmul_flops_per_second(seconds, shape=(m, k, n), kernel=kernel)["flops_per_second"]


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rows", type=int, default=64, help="batch rows (num_envs)")
    p.add_argument("--seconds", type=float, default=1.0)
    p.add_argument("--flops-per-transition", type=float, default=1.086e8,
                   help="from bench_world_model.py's JSON (flops_per_transition.flops)")
    p.add_argument("--out", default="benchmarks/results/matmul_shapes.json")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    peaks = {kernel: rate(1024, 1024, 1024, args.seconds * 2, kernel) for kernel in KERNELS}
    peak = max(peaks.values())  # the machine's rate: the faster library
    shapes = {}
    for name, tokens, k, n in SHAPES:
        m = args.rows * tokens
        rates = {kernel: rate(m, k, n, args.seconds, kernel) for kernel in KERNELS}
        shapes[name] = {"m": m, "k": k, "n": n, "flops_per_second": rates["mkl"],
                        "onednn_flops_per_second": rates["onednn"], "of_peak": max(rates.values()) / peak,
                        "transitions_per_second_if_all_flops_ran_at_this_rate": max(rates.values()) / args.flops_per_transition}
        print(f"{name:32s} ({m:5d} x {k} @ {k} x {n}): MKL {rates['mkl'] / 1e9:6.1f}, oneDNN {rates['onednn'] / 1e9:6.1f} "
              f"GFLOP/s -> ceiling {max(rates.values()) / args.flops_per_transition:6.0f} transitions/s")
    print("1024 x 1024: " + ", ".join(f"{k} {v / 1e9:.1f} GFLOP/s" for k, v in peaks.items())
          + f" -> ceiling {peak / args.flops_per_transition:.0f} transitions/s")
    result = {"benchmark": "matmul_rate_at_imagination_shapes", "threads": args.threads, "rows": args.rows,
              "peak_1024": peak, "peak_1024_by_kernel": peaks, "flops_per_transition": args.flops_per_transition,
              "shapes": shapes, "ceiling_at_peak": peak / args.flops_per_transition}
    write_json(args.out, result)
    return result


if __name__ == "__main__":
    main()
