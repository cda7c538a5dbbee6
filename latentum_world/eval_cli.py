"""``latentum-world eval ...``: evaluate a trained model (``perception``: how well it reads maze images;
``world-model``: how far its open-loop imagination stays true to the real maze)."""

from __future__ import annotations

import argparse
from pathlib import Path

#: The bundled checkpoint, used when ``--model`` is not given.
DEFAULT_MODEL = Path(__file__).resolve().parent / "checkpoints" / "default"
# Mirrors of latentum_world.evaluation.perception's constants (not imported: torch would slow every command's start).
FEATURE_KINDS = ("continuous", "quantized", "projected")
# ... and of latentum_world.evaluation.answers'.
TASK3_PROTOCOLS = ("ranked", "generate")
DEFAULT_TASK3 = "ranked"
DEFAULT_SEED = 20261122
DEFAULT_GENERATED = 100
# ... and of latentum_world.evaluation.world_model's.
WORLD_POLICIES = ("random", "optimal")
DEFAULT_HORIZON = 16
DEFAULT_BATCH_SIZE = 64
# ... and of latentum_world.world.model's.
FLAG_SOURCES = ("questions", "readout", "both")
DEFAULT_FLAG_SOURCE = "both"

#: What to train when no model is found, per command.
PERCEPTION_TRAINING = ("`latentum-world train vlm` then `latentum-world train mbaq` (the final model is written to "
                       "runs/mbaq/final)")
WORLD_TRAINING = ("`latentum-world train all` (or the stages one by one: `train vlm`, `train mbaq`, `train gen`, `train lang`, "
                  "then `train world`; the final model is written to runs/world/final)")


def resolve_model_path(path: str | None, training: str = PERCEPTION_TRAINING, example: str = "runs/mbaq/final") -> Path:
    """``path``, or the bundled checkpoint; ``FileNotFoundError`` with what to do when neither exists
    (``training``: the commands that write a suitable model, ``example``: such a model's directory)."""
    if path is None:
        if DEFAULT_MODEL.is_dir():
            return DEFAULT_MODEL
        raise FileNotFoundError(
            f"no --model given and no bundled checkpoint at {DEFAULT_MODEL}; pass --model DIR (a trained model "
            f"directory), or train one: {training}"
        )
    p = Path(path)
    if not p.is_dir():
        raise FileNotFoundError(
            f"no such model directory: {p} (expected a trained model directory such as {example}, written by {training})"
        )
    return p


def pick_device(name: str):
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is available")
    return torch.device(name)


def at_least(flag: str, value: int, minimum: int) -> None:
    if value < minimum:
        raise ValueError(f"{flag} must be >= {minimum}, got {value}")


def load_for_eval(model_dir: Path, device: str):
    """The model and tokenizer in ``model_dir``, on ``device``, in eval mode."""
    from latentum_world.training.stages import load_model

    model, tokenizer = load_model(model_dir)
    return model.to(pick_device(device)).eval(), tokenizer


def cmd_perception(args: argparse.Namespace) -> int:
    from latentum_world.evaluation.perception import evaluate_perception

    model_dir = resolve_model_path(args.model)
    at_least("--generated", args.generated, 0)
    at_least("--batch-size", args.batch_size, 1)
    model, tokenizer = load_for_eval(model_dir, args.device)
    results = evaluate_perception(model, tokenizer, args.vsp, features=args.features, generated=args.generated,
                                  seed=args.seed, batch_size=args.batch_size, quiet=args.quiet, model_name=str(model_dir),
                                  task3=args.task3)
    return report(results, args.json)


def report(results, json_path: str | None) -> int:
    """Print a results table and, with ``--json``, write its numbers."""
    print(results.format_table())
    if json_path:
        from latentum_world.evaluation import write_json

        write_json(json_path, results.to_dict())
    return 0


def cmd_world_model(args: argparse.Namespace) -> int:
    model_dir = resolve_model_path(args.model, WORLD_TRAINING, "runs/world/final")
    generated = args.generated
    if generated is None:  # neither source named: the generated held-out maps
        generated = 0 if args.vsp is not None else DEFAULT_GENERATED
    if generated < 0:
        raise ValueError(f"--generated must be >= 0, got {generated}")
    if args.vsp is None and generated == 0:
        raise ValueError("nothing to evaluate: pass --vsp DIR and/or --generated N (N >= 1)")
    if args.split is not None and args.vsp is None:
        raise ValueError("--split applies to --vsp only")
    if args.horizon < 1:
        raise ValueError(f"--horizon must be >= 1, got {args.horizon}")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.temperature is not None and not args.temperature > 0:
        raise ValueError(f"--temperature must be > 0, got {args.temperature} (leave it out for greedy imagination)")

    from latentum_world.evaluation.world_model import (
        evaluate_world_model,
        generated_start_states,
        make_sampling,
        vsp_start_states,
    )
    from latentum_world.training.stages import load_model
    from latentum_world.world.model import LatentWorldModel

    starts = []
    if args.vsp is not None:
        starts += vsp_start_states(args.vsp, args.split)
    if generated:
        starts += generated_start_states(generated, args.seed)
    device = pick_device(args.device)
    model, tokenizer = load_model(model_dir)
    model.to(device).eval()
    world = LatentWorldModel(model, tokenizer, make_sampling(args.temperature, args.seed, device), flags_from=args.flags_from)
    results = evaluate_world_model(world, starts, horizon=args.horizon, policy=args.policy, seed=args.seed,
                                   batch_size=args.batch_size, quiet=args.quiet, model_name=str(model_dir), vsp=args.vsp,
                                   generated_per_level=generated, temperature=args.temperature)
    return report(results, args.json)


def cmd_decoder(args: argparse.Namespace) -> int:
    model_dir = resolve_model_path(args.model, WORLD_TRAINING + " and `latentum-world train decoder`", "runs/world/final")
    decoder_path = Path(args.decoder) if args.decoder else model_dir / "decoder"
    if not (decoder_path / "model.safetensors").is_file():
        if args.decoder:
            raise FileNotFoundError(f"--decoder {args.decoder} holds no pixel decoder (no model.safetensors)")
        raise FileNotFoundError(f"{model_dir} has no pixel decoder in decoder/ (train one: `latentum-world train decoder "
                                f"init_from={model_dir}`, then copy its final/ to {model_dir / 'decoder'})")
    at_least("--generated", args.generated, 1)
    at_least("--batch-size", args.batch_size, 1)
    from latentum_world.evaluation.decoder import evaluate_decoder
    from latentum_world.model.quiet import from_pretrained_quietly
    from latentum_world.world.decoder import PixelDecoder

    model, tokenizer = load_for_eval(model_dir, args.device)
    decoder = from_pretrained_quietly(PixelDecoder, decoder_path).eval()
    c, d = model.config, decoder.config
    if (d.code_dim, d.grid_side, d.image_size) != (c.code_dim, c.grid_side, c.image_size):
        raise ValueError(f"the decoder at {decoder_path} decodes code_dim {d.code_dim}, grid {d.grid_side}, {d.image_size} px; "
                         f"the model at {model_dir} has {c.code_dim}, {c.grid_side}, {c.image_size}")
    results = evaluate_decoder(model, tokenizer, args.generated, args.seed, args.batch_size, quiet=args.quiet,
                               model_name=str(model_dir), decoder=decoder)
    results.decoder = str(decoder_path)
    return report(results, args.json)


def add_run_options(p: argparse.ArgumentParser, seed_of: str | None = None, batch_of: str | None = None) -> None:
    """``--device``, ``--json`` and ``--quiet``, the same for every evaluation; with ``seed_of`` / ``batch_of``
    also ``--seed`` (of those things) and ``--batch-size`` (those things per batch, default 64)."""
    if seed_of is not None:
        p.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"seed of the {seed_of} (default {DEFAULT_SEED})")
    if batch_of is not None:
        p.add_argument("--batch-size", type=int, default=64, help=f"{batch_of} per batch (default 64)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="default: cuda if available")
    p.add_argument("--json", metavar="OUT", help="also write the numbers to this JSON file")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def add_parser(sub: argparse._SubParsersAction) -> None:
    ev = sub.add_parser("eval", help="evaluate a trained model: perception, world-model, decoder")
    esub = ev.add_subparsers(dest="eval_command", required=True, metavar="{perception,world-model,decoder}")

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
                   help="image features: continuous (ViT + projector), quantized (MBAQ codes through up_proj) or projected (MBAQ codes through visual_projector, as the world model reads imagined states); default continuous")
    p.add_argument("--generated", type=int, default=DEFAULT_GENERATED, metavar="N",
                   help=f"held-out items per level per question kind and read-out maps per level (default {DEFAULT_GENERATED}; 0: skip)")
    p.add_argument("--task3", choices=TASK3_PROTOCOLS, default=DEFAULT_TASK3,
                   help="how task3 (which of four text maps matches the image) is answered: ranked (default: multiple "
                   "choice by likelihood, the candidate table the model finds most likely as its own read-out of the "
                   "image) or generate (the model writes its answer to the question; stage vlm no longer trains it)")
    add_run_options(p, seed_of="held-out maps", batch_of="answers decoded")
    p.set_defaults(func=cmd_perception)

    w = esub.add_parser(
        "world-model",
        help="open-loop imagination vs the real maze: board read-out, reward/termination and code accuracy per depth",
        description="From each start map's real first frame, let the world model imagine H steps open-loop under a "
        "policy acting on the real maze (stepped alongside), and compare at every depth the model's board read-out "
        "(exact match), its reward and termination answers, and its imagined MBAQ codes (those of the real next frame) "
        "with reality; steps after the real episode ended are not counted. Start maps: the VSP task-main items (--vsp) "
        f"and/or N fresh held-out maps per level 3..8 (--generated; the default, {DEFAULT_GENERATED} per level, when "
        "--vsp is not given). Also times the imagination (transitions per second).",
    )
    w.add_argument("--vsp", help="VSP checkout, its maze folder, or `vsp generate` output: start from its task-main maps")
    w.add_argument("--split", choices=["maps", "example"], help="task-main split of --vsp (default: maps if present, else example)")
    w.add_argument("--generated", type=int, metavar="N",
                   help=f"also start from N fresh held-out maps per level (default {DEFAULT_GENERATED} without --vsp, 0 with it)")
    w.add_argument("--model", help="trained world model directory, e.g. runs/world/final "
                   "(default: the bundled checkpoint latentum_world/checkpoints/default)")
    w.add_argument("--horizon", type=int, default=DEFAULT_HORIZON, metavar="H",
                   help=f"imagined steps per episode (default {DEFAULT_HORIZON})")
    w.add_argument("--policy", choices=WORLD_POLICIES, default="random",
                   help="actions, chosen on the real state: random, or optimal (BFS shortest path, then random); default random")
    w.add_argument("--flags-from", choices=FLAG_SOURCES, default=DEFAULT_FLAG_SOURCE,
                   help="where reward / termination come from: the model's yes/no answers, its board read-out, or "
                        "both (each Yes confirmed by the read-out; the default)")
    w.add_argument("--temperature", type=float, metavar="T",
                   help="sample the imagined codes at temperature T from a generator seeded with --seed (default: greedy)")
    w.add_argument("--seed", type=int, default=DEFAULT_SEED,
                   help=f"seed of the generated maps, the actions and the sampling (default {DEFAULT_SEED})")
    w.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE,
                   help=f"episodes imagined in parallel (default {DEFAULT_BATCH_SIZE})")
    add_run_options(w)
    w.set_defaults(func=cmd_world_model)

    d = esub.add_parser(
        "decoder",
        help="pixel decoder: PSNR against the real render, and the model's board read-out of the decoded images",
        description="On N held-out states per level 3..8 (player anywhere, elf facing any way): decode the real image's "
        "MBAQ codes to RGB, measure PSNR against the real image, then re-encode the decoded image as an observed "
        "image and read it out as a VSP table (exact match with the real board; the real images' read-out is the "
        "reference).",
    )
    d.add_argument("--model", help="model directory with its pixel decoder in decoder/ (default: the bundled checkpoint)")
    d.add_argument("--decoder", metavar="DIR", help="a pixel decoder directory to score instead of <model>/decoder "
                   "(e.g. a `train decoder` run's final/)")
    d.add_argument("--generated", type=int, default=DEFAULT_GENERATED, metavar="N",
                   help=f"held-out states per level (default {DEFAULT_GENERATED})")
    add_run_options(d, seed_of="held-out states", batch_of="images")
    d.set_defaults(func=cmd_decoder)
