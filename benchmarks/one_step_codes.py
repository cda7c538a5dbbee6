"""One imagined step against the real next frame, at the level of MBAQ codes.

From real random states (player anywhere, non-terminal) and random actions, the world model imagines
one transition from the REAL frame; its codes are compared with the MBAQ codes of the real next
frame, split into the positions the move changed, the unchanged positions on the board, and (in
the cell-aligned layout) the black margin beyond the board. This separates "the generation branch
drew the wrong codes" from "the understanding branch misread right codes" when
``eval world-model``'s board read-out disagrees with reality.

    python benchmarks/one_step_codes.py --model runs/world/final --states 384 --out benchmarks/results/one_step_codes.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from envs.vsp.observation import content_side
from latentum_world.data.understanding import UnderstandingData
from latentum_world.world.loading import load_world_model
from latentum_world.world.model import LatentWorldModel


def board_mask(level: int, config) -> torch.Tensor:
    """``(P,)`` bool: latent positions that show part of a ``level x level`` board."""
    g, region = config.grid_side, config.image_size // config.grid_side  # positions per side, pixels per position
    side = content_side(level, config.image_size, config.cell_pixels)
    covered = -(-side // region)  # positions per side the board reaches
    m = torch.zeros(g, g, dtype=torch.bool)
    m[:covered, :covered] = True
    return m.flatten()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None, help="world model directory (default: the bundled checkpoint)")
    ap.add_argument("--states", type=int, default=384)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()

    model, tok = load_world_model(args.model, "cpu")
    wm = LatentWorldModel(model, tok)
    c = model.config
    data = UnderstandingData(image_size=c.image_size, cell_pixels=c.cell_pixels)
    rng = np.random.default_rng(args.seed)
    states = []
    while len(states) < args.states:
        m, last = data.random_state(rng)
        if not m.terminal:
            states.append((m, last))
    actions = rng.integers(0, 4, len(states))
    tallies = {k: [0, 0] for k in ("changed", "unchanged_board", "margin", "all", "whole_state")}
    for i in range(0, len(states), args.batch_size):
        chunk, acts = states[i : i + args.batch_size], actions[i : i + args.batch_size]
        now = torch.from_numpy(np.stack([data.image(m, last) for m, last in chunk]))
        nxt = [m.move(int(a)) for (m, _), a in zip(chunk, acts)]
        real_next = torch.from_numpy(np.stack([data.image(m, int(a)) for m, a in zip(nxt, acts)]))
        codes_now = wm.reset(now)
        imagined = wm.step(torch.from_numpy(acts)).codes  # (B, P, K)
        _, codes_next = wm.encode(real_next)
        ok = (imagined == codes_next).all(-1)  # (B, P)
        changed = (codes_next != codes_now).any(-1)
        board = torch.stack([board_mask(m.size, c) for m in nxt])
        for name, mask in (("changed", changed), ("unchanged_board", board & ~changed), ("margin", ~board),
                           ("all", torch.ones_like(ok))):
            tallies[name][0] += int(ok[mask].sum())
            tallies[name][1] += int(mask.sum())
        tallies["whole_state"][0] += int(ok.all(-1).sum())
        tallies["whole_state"][1] += len(chunk)
    result = {"model": args.model or "bundled", "states": len(states), "seed": args.seed,
              "exact_codes": {k: {"correct": a, "total": n, "accuracy": a / n if n else None} for k, (a, n) in tallies.items()}}
    for k, v in result["exact_codes"].items():
        acc = "-" if v["accuracy"] is None else f"{100 * v['accuracy']:.1f} %"
        print(f"{k:16s} {acc:>8s} of {v['total']} {'states' if k == 'whole_state' else 'positions'}")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
