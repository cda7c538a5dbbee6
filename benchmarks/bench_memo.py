"""Imagined transitions per second with the transition memo saved with the model against an empty one,
interleaved in one process (the machine's speed drifts over minutes, so the two are alternated window by window).

Each window resets 64 rows on real first frames of random held-out maps (both memos get the same maps in a
pair), restores the memo (the saved one, or empty) and steps random actions for ``--steps`` steps, restarting
ended rows from fresh real first frames, as ``bench_world_model.py`` does. Reports per window the transitions/s
and the Jacobi round rows per transition, and the medians.

    python benchmarks/bench_memo.py [--model DIR] [--compile] [--steps 150] [--pairs 6] [--out FILE]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from bench_world_model import DEFAULT_MODEL, Restarts, first_frames, load  # this folder is on sys.path when run as a script
from latentum_world.evaluation import write_json
from latentum_world.world.model import LatentWorldModel


def window(wm: LatentWorldModel, saved: tuple[dict, dict] | None, batch: int, steps: int, seed: int) -> dict:
    wm.memo.enter, wm.memo.leave = (dict(saved[0]), dict(saved[1])) if saved else ({}, {})
    images, maps = first_frames(batch, wm.model.config, seed=seed)
    wm.reset(images, draft_boards=maps)
    pool = Restarts(wm.model.config, seed=1000 + seed)
    gen = torch.Generator().manual_seed(seed)
    fused = wm.fused
    rows, rounds = fused.jacobi_rows, fused.round_rows
    t0 = time.perf_counter()
    for _ in range(steps):
        ended = torch.nonzero(wm.step(torch.randint(4, (batch,), generator=gen)).terminated).flatten()
        if len(ended):
            frames, starts = pool.take(len(ended))
            wm.reset(frames, rows=ended, draft_boards=starts)
    seconds = time.perf_counter() - t0
    return {"seed": seed, "transitions_per_second": batch * steps / seconds,
            "jacobi_round_rows_per_transition": (fused.round_rows - rounds) / (fused.jacobi_rows - rows)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=DEFAULT_MODEL, help="world model directory with a saved memo (default: bundled)")
    parser.add_argument("--compile", action="store_true", help="LatentWorldModel(compile=True)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=150, help="steps per window (default 150)")
    parser.add_argument("--pairs", type=int, default=6, help="windows per memo (default 6)")
    parser.add_argument("--out", default="benchmarks/results/memo_ab.json")
    args = parser.parse_args()
    model, tok, source = load(args.model)
    wm = LatentWorldModel(model, tok, compile=args.compile)
    if wm.memo is None or not len(wm.memo):
        raise SystemExit(f"{args.model} has no transition memo for its weights (make one: latentum-world memo --model DIR)")
    saved = (dict(wm.memo.enter), dict(wm.memo.leave))
    print(f"saved memo: {len(wm.memo)} keys; {torch.get_num_threads()} threads, compile={args.compile}")
    window(wm, saved, args.batch, 20, 10_000)  # warm-up (compiled: the compilation)
    window(wm, None, args.batch, 20, 10_001)
    runs = {"saved": [], "empty": []}
    for i in range(args.pairs):
        for name in (("saved", "empty") if i % 2 == 0 else ("empty", "saved")):
            r = window(wm, saved if name == "saved" else None, args.batch, args.steps, seed=i)
            runs[name].append(r)
            print(f"{name:5s} {r['transitions_per_second']:8.1f} transitions/s, "
                  f"{r['jacobi_round_rows_per_transition']:.3f} round rows per transition", flush=True)
    summary = {name: {"median_transitions_per_second": float(np.median([r["transitions_per_second"] for r in rs])),
                      "median_round_rows_per_transition": float(np.median([r["jacobi_round_rows_per_transition"] for r in rs]))}
               for name, rs in runs.items()}
    ratios = [a["transitions_per_second"] / b["transitions_per_second"] for a, b in zip(runs["saved"], runs["empty"])]
    print(f"median: saved {summary['saved']['median_transitions_per_second']:.1f}, empty "
          f"{summary['empty']['median_transitions_per_second']:.1f} transitions/s; pairwise ratios "
          + ", ".join(f"{x:.2f}" for x in ratios))
    write_json(args.out, {"benchmark": "transition_memo_saved_vs_empty", "model": source, "compiled": args.compile,
                          "batch_size": args.batch, "steps_per_window": args.steps, "saved_memo_keys": len(saved[0]) + len(saved[1]),
                          "threads": torch.get_num_threads(), "summary": summary, "pairwise_ratios": ratios, "windows": runs})


if __name__ == "__main__":
    main()
