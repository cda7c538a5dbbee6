"""``latentum-world eval ...``: evaluate a trained model (``perception``: how well it reads maze images)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

#: The bundled checkpoint, used when ``--model`` is not given.
DEFAULT_MODEL = Path(__file__).resolve().parent / "checkpoints" / "default"
# Mirrors of latentum_world.evaluation.perception's constants (not imported: torch would slow every command's start).
FEATURE_KINDS = ("continuous", "quantized")
DEFAULT_SEED = 20261122
DEFAULT_GENERATED = 100


def resolve_model_path(path: str | None) -> Path:
    """``path``, or the bundled checkpoint; ``FileNotFoundError`` with what to do when neither exists."""
    if path is None:
        if DEFAULT_MODEL.is_dir():
            return DEFAULT_MODEL
        raise FileNotFoundError(
            f"no --model given and no bundled checkpoint at {DEFAULT_MODEL}; pass --model DIR (a trained model "
            "directory), or train one: `latentum-world train vlm` then `latentum-world train mbaq` "
            "(the final model is written to runs/mbaq/final)"
        )
    p = Path(path)
    if not p.is_dir():
        raise FileNotFoundError(
            f"no such model directory: {p} (expected a trained model directory such as runs/mbaq/final, "
            "written by `latentum-world train vlm` then `latentum-world train mbaq`)"
        )
    return p


def pick_device(name: str):
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is available")
    return torch.device(name)


def cmd_perception(args: argparse.Namespace) -> int:
    from latentum_world.evaluation.perception import evaluate_perception
    from latentum_world.training.stages import load_model

    model_dir = resolve_model_path(args.model)
    if args.generated < 0:
        raise ValueError(f"--generated must be >= 0, got {args.generated}")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    model, tokenizer = load_model(model_dir)
    model.to(pick_device(args.device)).eval()
    results = evaluate_perception(model, tokenizer, args.vsp, features=args.features, generated=args.generated,
                                  seed=args.seed, batch_size=args.batch_size, quiet=args.quiet, model_name=str(model_dir))
    print(results.format_table())
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results.to_dict(), indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    ev = sub.add_parser("eval", help="evaluate a trained model: perception")
    esub = ev.add_subparsers(dest="eval_command", required=True, metavar="{perception}")

    p = esub.add_parser(
        "perception",
        help="VSP task1-4 accuracy, per-kind accuracy and table read-out on held-out maps, MBAQ codebook usage",
        description="Answer the VSP benchmark's sub-tasks (task1..task4, every split present) from their images and "
        "score them by the benchmark's own rules; then answer every question kind on freshly generated held-out maps "
        "(N per level, levels 3..8), read out whole boards as VSP tables, and measure each MBAQ codebook's perplexity.",
    )
    p.add_argument("--vsp", required=True, help="VSP checkout, its maze folder, or `vsp generate --task ...` output")
    p.add_argument("--model", help="trained model directory (default: the bundled checkpoint latentum_world/checkpoints/default)")
    p.add_argument("--features", choices=FEATURE_KINDS, default="continuous",
                   help="image features: continuous (ViT + projector) or quantized (MBAQ codes); default continuous")
    p.add_argument("--generated", type=int, default=DEFAULT_GENERATED, metavar="N",
                   help=f"held-out items per level per question kind and read-out maps per level (default {DEFAULT_GENERATED}; 0: skip)")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"seed of the held-out maps (default {DEFAULT_SEED})")
    p.add_argument("--batch-size", type=int, default=64, help="answers decoded per batch (default 64)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="default: cuda if available")
    p.add_argument("--json", metavar="OUT", help="also write the numbers to this JSON file")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_perception)
