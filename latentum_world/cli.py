"""The ``latentum-world`` command line."""

from __future__ import annotations

import argparse
import sys

from latentum_world import __version__, average_cli, demo, eval_cli, memo_cli, train_cli, vsp_cli
from envs.vsp.formats import VSPFormatError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="latentum-world", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{demo,train,eval,vsp,average,memo}")
    demo.add_parser(sub)
    train_cli.add_parser(sub)
    eval_cli.add_parser(sub)
    vsp_cli.add_parser(sub)
    average_cli.add_parser(sub)
    memo_cli.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # `train all --bundle DIR key=value`: Hydra overrides after the flags are still overrides
        if args.command == "train" and all("=" in e and not e.startswith("-") for e in extra):
            args.overrides = [*args.overrides, *extra]
        else:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return int(args.func(args) or 0)
    except (FileNotFoundError, FileExistsError, VSPFormatError, ValueError) as e:
        print(f"latentum-world: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
