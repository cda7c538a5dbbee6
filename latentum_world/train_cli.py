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

    known = sorted(p.stem for p in (CONFIG_DIR / "stage").glob("*.yaml"))
    if stage not in known:
        raise ValueError(f"unknown stage {stage!r}; known stages: {', '.join(known)}")
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(config_name="train", overrides=[f"stage={stage}", *(overrides or [])])


def train(stage: str, overrides: list[str] | None = None) -> Path:
    """Run one stage; returns its final model directory."""
    from latentum_world.training.stages import STAGES
    from latentum_world.training.trainer import Trainer

    cfg = compose_config(stage, overrides)
    return Trainer(cfg, STAGES[stage](cfg)).run()


def cmd_train(args: argparse.Namespace) -> int:
    train(args.stage, args.overrides)
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train a stage (vlm, mbaq) with the shared trainer",
        description="Train one stage. Overrides are Hydra syntax, e.g. `stage.steps=200 out_dir=runs/x preset=debug`. "
        "Rerunning the same command resumes from the newest checkpoint in out_dir. Multi-process: "
        "`torchrun --nproc_per_node 2 -m latentum_world train vlm`.",
    )
    p.add_argument("stage", help="stage name (configs/stage/*.yaml): vlm, mbaq, gen, world")
    p.add_argument("overrides", nargs="*", help="Hydra overrides, key=value")
    p.set_defaults(func=cmd_train)
