"""Seconds per training step of one stage, split into batch making, forward, backward and optimizer.

Builds the stage exactly as ``latentum-world train <stage>`` does (same config, same Hydra overrides), then
times ``--steps`` steps after ``--warmup`` untimed ones, in this process, with ``--threads`` torch threads. No
checkpoints, no evaluation, no TensorBoard: this is the cost of the step itself, for comparing configurations
(batch size, model sizes, micro-batches) before committing to a 30-60 minute run. This machine's timings vary
by about 15 % between identical runs: alternate the configurations being compared and repeat.

    python benchmarks/step_time.py vlm --out benchmarks/results/step_time_vlm.json
    python benchmarks/step_time.py vlm stage.batch_size=64 model.vision_mlp=256
    python benchmarks/step_time.py mbaq init_from=runs/vlm/final
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch


def time_steps(stage_name: str, overrides: list[str], steps: int, warmup: int) -> dict:
    from latentum_world.train_cli import compose_config
    from latentum_world.training.stages import STAGES

    cfg = compose_config(stage_name, overrides)
    stage = STAGES[stage_name](cfg)
    model, _ = stage.build(None)
    model.train()
    params = stage.trainable_parameters(model)
    optimizer = torch.optim.AdamW(params, lr=float(cfg.stage.lr))

    def step(s: int) -> tuple[float, float, float, float]:  # the body of Trainer.run's loop, timed in four parts
        t0 = time.perf_counter()
        batch = stage.batch(s, 0)
        t1 = time.perf_counter()
        loss, _ = stage.compute_loss(model, model, batch)
        t2 = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        t3 = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(params, float(cfg.stage.grad_clip))
        optimizer.step()
        stage.after_step(model, s)
        return t1 - t0, t2 - t1, t3 - t2, time.perf_counter() - t3

    for s in range(warmup):
        step(s)
    parts = np.array([step(s) for s in range(warmup, warmup + steps)])  # (steps, 4)
    total = parts.sum(1)
    return {
        "stage": stage_name,
        "overrides": overrides,
        "batch_size": int(cfg.stage.batch_size),
        "steps_timed": steps,
        "seconds_per_step": float(total.mean()),
        "seconds_per_step_median": float(np.median(total)),
        "split_seconds": dict(zip(("batch", "forward", "backward", "optimizer"), map(float, parts.mean(0)))),
        "projected_minutes_for_stage_steps": float(total.mean() * int(cfg.stage.steps) / 60),
        "stage_steps": int(cfg.stage.steps),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("stage", help="stage name (configs/stage/*.yaml)")
    p.add_argument("overrides", nargs="*", help="Hydra overrides, as for `latentum-world train`")
    p.add_argument("--steps", type=int, default=30, help="timed steps (default 30)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first (default 3)")
    p.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    p.add_argument("--out", type=Path, help="write the result as JSON here")
    args = p.parse_args(argv)
    if args.steps < 1 or args.warmup < 0:
        p.error("--steps must be at least 1 and --warmup at least 0")
    torch.set_num_threads(args.threads)
    result = time_steps(args.stage, args.overrides, args.steps, args.warmup)
    result.update(threads=args.threads, torch=torch.__version__, machine=platform.machine(), date=time.strftime("%Y-%m-%d"))
    split = " ".join(f"{k} {v:.3f}" for k, v in result["split_seconds"].items())
    print(f"{args.stage}: {result['seconds_per_step']:.3f} s/step ({split}); "
          f"{result['stage_steps']} steps ~ {result['projected_minutes_for_stage_steps']:.1f} min")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
