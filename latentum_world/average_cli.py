"""``latentum-world average MODEL MODEL [...] --out DIR``: the weighted mean of fine-tuned checkpoints."""

from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    p = sub.add_parser(
        "average",
        help="average the weights of checkpoints fine-tuned from one model (a model soup)",
        description="Write the weighted mean of two or more model directories of the same architecture (for "
                    "example world fine-tunes of one bundle) as a new model directory; config and tokenizer come "
                    "from the first. Tensors equal in every input are copied; the pixel decoder is not.",
    )
    p.add_argument("models", nargs="+", help="model directories (config.json + model.safetensors)")
    p.add_argument("--out", required=True, help="directory to write the averaged model to")
    p.add_argument("--weights", type=float, nargs="+", help="one positive weight per model (default: equal)")
    p.add_argument("--overwrite", action="store_true", help="replace a model already in --out")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from latentum_world.training.averaging import average_checkpoints

    report = average_checkpoints(args.models, args.out, args.weights, overwrite=args.overwrite)
    weights = ", ".join(f"{w:.3g}" for w in report["weights"])
    print(f"averaged {report['averaged']} tensors (weights {weights}); {report['equal']} were equal in every input; "
          f"model in {args.out}")
    return 0
