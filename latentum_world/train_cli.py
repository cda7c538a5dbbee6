"""``latentum-world train <stage> [hydra overrides]``: compose ``configs/`` and run the stage."""

from __future__ import annotations

import argparse
from pathlib import Path

from omegaconf import DictConfig

import configs

CONFIG_DIR = Path(configs.__file__).resolve().parent


def compose_config(stage: str, overrides: list[str] | None = None) -> DictConfig:
    """The training config for ``stage`` with Hydra ``overrides`` (e.g. ``["preset=debug", "stage.steps=10"]``)."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    known = sorted(p.stem for p in (CONFIG_DIR / "stage").glob("*.yaml"))
    if stage not in known:
        raise ValueError(f"unknown stage {stage!r}; known stages: {', '.join(known)}")
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        try:
            return compose(config_name="train", overrides=[f"stage={stage}", *(overrides or [])])
        except (HydraException, OmegaConfBaseException) as e:  # a mistyped key or group, a missing `=`: one line, no traceback
            raise ValueError(f"bad override for stage {stage}: {e}".splitlines()[0]) from e


def train(stage: str, overrides: list[str] | None = None) -> Path:
    """Run one stage; returns its final model directory."""
    from latentum_world.training.stages import STAGES
    from latentum_world.training.trainer import Trainer

    cfg = compose_config(stage, overrides)
    return Trainer(cfg, STAGES[stage](cfg)).run()


PIPELINE = ("vlm", "mbaq", "gen", "lang", "world", "decoder")  # the reference's order: A, B, C1 lang-only, C2 vision-only


def train_all(overrides: list[str] | None = None, out_root: str | Path = "runs", bundle: str | Path | None = None,
              memo_steps: int | None = None) -> Path:
    """Every stage in order, each starting from the previous one's final model; rerunning resumes.

    The world model goes to ``out_root/world/final`` with its pixel decoder copied into ``decoder/`` and its
    transition memo (``latentum-world memo`` for ``memo_steps`` steps, default 2,000: warm Jacobi guesses, a few
    minutes; 0: none) written beside it; with
    ``bundle`` the result is also copied there (the packaged default checkpoint is made this way).
    """
    import os
    import shutil
    import time

    from latentum_world.world.memo_build import DEFAULT_STEPS, NoMemo, build_memo, memo_is_current

    out_root = Path(out_root)
    memo_steps = DEFAULT_STEPS if memo_steps is None else memo_steps
    previous, times = None, {}
    for stage in PIPELINE:
        t0 = time.perf_counter()
        extra = [f"out_dir={out_root / stage}"] + ([f"init_from={previous}"] if previous is not None else [])
        final = train(stage, [*(overrides or []), *extra])
        times[stage] = time.perf_counter() - t0
        if stage != "decoder":
            previous = final
    world = out_root / "world" / "final"
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun: the stages ran on every rank, the rest is rank 0's
        return world
    shutil.rmtree(world / "decoder", ignore_errors=True)
    shutil.copytree(out_root / "decoder" / "final", world / "decoder")
    t0 = time.perf_counter()
    if memo_steps and not memo_is_current(world):  # the imagination's warm Jacobi guesses (speed only), kept when rerun
        try:
            summary = build_memo(world, steps=memo_steps)
            print(f"transition memo: {summary['keys']} keys ({summary['steps']} steps x {summary['num_envs']} envs)")
        except NoMemo as e:
            print(f"transition memo: none ({e})")
    times["memo"] = time.perf_counter() - t0
    print("stage wall times: " + ", ".join(f"{k} {v / 60:.1f} min" for k, v in times.items()) + f"; total {sum(times.values()) / 60:.1f} min")
    if bundle is not None:
        bundle = Path(bundle)
        shutil.rmtree(bundle, ignore_errors=True)
        shutil.copytree(world, bundle)
        print(f"bundled checkpoint written to {bundle}")
    return world


def cmd_train(args: argparse.Namespace) -> int:
    if args.stage == "all":
        train_all(args.overrides, args.out_root or "runs", args.bundle, args.memo_steps)
    else:
        if args.bundle:
            raise ValueError("--bundle only applies to `train all`")
        if args.memo_steps is not None:
            raise ValueError("--memo-steps only applies to `train all` (for one model: `latentum-world memo --model DIR`)")
        if args.out_root is not None:
            raise ValueError(f"--out-root only applies to `train all`; for one stage set out_dir=<dir> (e.g. out_dir={args.out_root}/{args.stage})")
        train(args.stage, args.overrides)
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train a stage (vlm, mbaq, gen, lang, world, decoder) or all of them",
        description="Train one stage. Overrides are Hydra syntax, e.g. `stage.steps=200 out_dir=runs/x preset=debug`. "
        "Rerunning the same command resumes from the newest checkpoint in out_dir. Multi-process: "
        "`torchrun --nproc_per_node 2 -m latentum_world train vlm`.",
    )
    p.add_argument("stage", help="stage name (configs/stage/*.yaml): vlm, mbaq, gen, lang, world, decoder; or `all` for the default pipeline (" + ", ".join(PIPELINE) + ")")
    p.add_argument("overrides", nargs="*", help="Hydra overrides, key=value")
    p.add_argument("--out-root", help="`train all`: one folder per stage under this (default runs/)")
    p.add_argument("--bundle", help="`train all`: also copy the finished model here (the package's default: "
                   "latentum_world/checkpoints/default)")
    p.add_argument("--memo-steps", type=int, help="`train all`: steps of the transition memo's warm-up rollouts "
                   "(default 2000; 0: no memo), see `latentum-world memo`")
    p.set_defaults(func=cmd_train)
