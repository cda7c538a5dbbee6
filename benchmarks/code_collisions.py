"""Do a latent position's MBAQ codes determine what that position shows?

In the cell-aligned layout with local ViT attention each latent position covers 2 x 2 cells, and its
codes depend only on them. This draws random rollout states (player anywhere, elf facing any way),
encodes them, and groups every position's code tuple with its content: the four cells' kinds (ice,
hole, goal, off the board) and whether the player stands on one of them. A code tuple seen with two
different contents is a *collision*: the quantizer gave two different local scenes the same codes, so
nothing downstream (reading, generation) can tell them apart from that position alone. The elf's facing
and the level are left out of the content (the board read-out does not ask for them).

    python benchmarks/code_collisions.py [--model DIR] [--states 4096] [--out benchmarks/results/code_collisions.json]
"""

from __future__ import annotations

import argparse
from collections import Counter, defaultdict

import numpy as np
import torch

from latentum_world.data.understanding import UnderstandingData
from latentum_world.evaluation import write_json
from latentum_world.world.loading import load_world_model


def position_content(m, pr: int, pc: int, cells: int) -> tuple[str, ...]:
    """The ``cells x cells`` cells under latent position ``(pr, pc)``: ``i``/``h``/``g`` (+ ``P``: the player) or ``X`` (off the board)."""
    out = []
    for i in range(cells):
        for j in range(cells):
            cell = (pr * cells + i, pc * cells + j)
            if not m.on_board(cell):
                out.append("X")
                continue
            out.append(m.cell_kind(cell)[0] + ("P" if m.player == cell else ""))
    return tuple(out)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None, help="model directory (default: the bundled checkpoint)")
    ap.add_argument("--states", type=int, default=4096)
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)

    model, _ = load_world_model(args.model, "cpu")
    c = model.config
    if not c.cell_pixels:
        raise SystemExit("this check needs the cell-aligned layout (cell_pixels > 0)")
    grid = c.grid_side  # latent positions per side
    cells = c.image_size // grid // c.cell_pixels  # cells per position side
    data = UnderstandingData(image_size=c.image_size, cell_pixels=c.cell_pixels)
    rng = np.random.default_rng(args.seed)
    states = [data.random_state(rng) for _ in range(args.states)]
    seen: dict[tuple, Counter] = defaultdict(Counter)  # code tuple -> content -> count
    with torch.no_grad():
        for i in range(0, len(states), args.batch_size):
            chunk = states[i:i + args.batch_size]
            images = torch.from_numpy(np.stack([data.image(m, last) for m, last in chunk]))
            codes = model.quantizer.encode(model.get_vit_feature(images))  # (B, P, K)
            for (m, _), row in zip(chunk, codes.tolist()):
                for p, code in enumerate(row):
                    seen[tuple(code)][position_content(m, p // grid, p % grid, cells)] += 1
    total = sum(sum(v.values()) for v in seen.values())
    colliding = {k: v for k, v in seen.items() if len(v) > 1}
    minority = sum(sum(v.values()) - max(v.values()) for v in colliding.values())
    player_on_goal = sum(n for v in colliding.values() for content, n in v.items()
                         if "gP" in content and n < max(v.values()))
    worst = sorted(colliding.items(), key=lambda kv: -(sum(kv[1].values()) - max(kv[1].values())))[:10]
    result = {
        "model": args.model or "bundled", "states": args.states, "seed": args.seed,
        "positions": total, "code_tuples": len(seen), "colliding_tuples": len(colliding),
        "minority_positions": minority, "minority_share": minority / total,
        "minority_player_on_goal": player_on_goal,
        "worst": [{"codes": list(k), "contents": {" ".join(ct): n for ct, n in v.most_common()}} for k, v in worst],
    }
    print(f"{len(seen)} code tuples over {total} positions; {len(colliding)} seen with more than one content;"
          f" {minority} positions ({100 * minority / total:.2f} %) share their codes with a more common other content"
          f" ({player_on_goal} of them: the player on the goal)")
    for w in result["worst"][:5]:
        print("  ", w["codes"], w["contents"])
    if args.out:
        write_json(args.out, result)


if __name__ == "__main__":
    main()
