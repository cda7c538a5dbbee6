"""Why the pixel decoder's own re-read misses happen: code collisions in MBAQ, or the decoder.

On `latentum-world eval decoder`'s held-out states (same stream and seed), each state is read out from the
decoded image and from the real image (continuous features). A decoded miss whose real image is read right is
a *decoder's own miss*. For each one, the first wrongly read cell is located in the 4 x 4 grid of latent
positions (2 x 2 cells each), and the MBAQ code tuple of that position is looked up over all states: if the
same tuple also stands for a different 2 x 2 table content somewhere in the set, the codes cannot tell the
two apart (a *collision*), and no decoder of these codes can draw that position right every time.

    python benchmarks/results/session21_2026-12-03/decoder_miss_causes.py --model M [--per-level 500] [--out F.json]
"""

from __future__ import annotations

import argparse
import collections
from pathlib import Path

import numpy as np
import torch

from envs.vsp.maps import LEVELS
from latentum_world.data import prompts
from latentum_world.data.understanding import Example, UnderstandingData
from latentum_world.eval_cli import load_for_eval
from latentum_world.evaluation import write_json
from latentum_world.evaluation.answers import answer
from latentum_world.evaluation.decoder import DECODER_PART
from latentum_world.evaluation.perception import heldout_rng
from latentum_world.world.decoder import PixelDecoder, decode_images


def table_grid(text: str) -> list[list[str]]:
    """A VSP table answer -> its pieces, row by row (``[]`` if it is not a table)."""
    rows = [line for line in text.split("\n") if line.startswith("| Row")]
    return [[x.strip() for x in line.split("|")[2:-1]] for line in rows]


def position_content(grid: list[list[str]], position: int, side: int = 4) -> str:
    """The 2 x 2 pieces of one latent position, raster order; ``.`` outside the board."""
    r, c = divmod(position, side)
    n = len(grid)
    return "".join(grid[y][x] if y < n and x < n else "." for y in (2 * r, 2 * r + 1) for x in (2 * c, 2 * c + 1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="latentum_world/checkpoints/default")
    ap.add_argument("--per-level", type=int, default=500)
    ap.add_argument("--seed", type=int, default=20261122)  # eval decoder's default
    ap.add_argument("--out")
    args = ap.parse_args()
    torch.set_num_threads(2)
    model, tok = load_for_eval(args.model, "cpu")
    decoder = PixelDecoder.from_pretrained(str(Path(args.model) / "decoder")).eval()
    data = UnderstandingData(image_size=model.config.image_size, cell_pixels=model.config.cell_pixels)
    side = model.config.grid_side
    contents = collections.defaultdict(collections.Counter)  # code tuple -> 2x2 table contents it stood for
    misses = []
    for level in LEVELS:
        rng = heldout_rng(args.seed, DECODER_PART, level)
        states = [data.random_state(rng, level=level) for _ in range(args.per_level)]
        real = np.stack([data.image(m, last) for m, last in states])  # (N, S, S, 3) uint8
        with torch.no_grad():
            codes = torch.cat([model.quantizer.encode(model.get_vit_feature(torch.from_numpy(real[i:i + 64])))
                               for i in range(0, len(real), 64)])  # (N, P, K)
        decoded = decode_images(model, codes, decoder)
        question = prompts.table_question(states[0][0])[0]
        truths = [prompts.table_question(m)[1] for m, _ in states]
        reads = {}
        for name, images in (("decoded", decoded), ("real", real)):
            examples = [Example(img, question, t, "table", m) for img, t, (m, _) in zip(images, truths, states)]
            reads[name] = answer(model, tok, examples, features="continuous", batch_size=64, draft=True)
        for i, truth in enumerate(truths):
            grid = table_grid(truth)
            tuples = [tuple(c) for c in codes[i].tolist()]
            for p, t in enumerate(tuples):
                contents[t][position_content(grid, p, side)] += 1
            if reads["decoded"][i] != truth and reads["real"][i] == truth:
                read = table_grid(reads["decoded"][i])
                wrong = [(y, x) for y in range(len(grid)) for x in range(len(grid))
                         if len(read) != len(grid) or len(read[y]) != len(grid) or read[y][x] != grid[y][x]]
                y, x = wrong[0]
                p = (y // 2) * side + x // 2
                misses.append({"level": level, "index": i, "cell": [y + 1, x + 1], "truth": grid[y][x],
                               "read": read[y][x] if len(read) == len(grid) and len(read[y]) == len(grid) else None,
                               "position": p, "codes": list(tuples[p])})
        print(f"level {level}: {sum(m['level'] == level for m in misses)} decoder's own misses", flush=True)
    for m in misses:
        seen = contents[tuple(m["codes"])]
        m["tuple_contents"] = dict(seen)
        m["collision"] = len(seen) > 1
    colliding = [t for t, c in contents.items() if len(c) > 1]
    out = {"model": args.model, "states": args.per_level * len(LEVELS), "seed": args.seed,
           "positions": sum(sum(c.values()) for c in contents.values()), "code_tuples": len(contents),
           "tuples_with_more_than_one_content": len(colliding),
           "positions_in_minority_content": sum(sum(contents[t].values()) - max(contents[t].values()) for t in colliding),
           "decoder_own_misses": len(misses), "of_which_collisions": sum(m["collision"] for m in misses),
           "misses": misses}
    print({k: v for k, v in out.items() if k != "misses"})
    for m in misses:
        print(m["level"], m["index"], m["cell"], m["truth"], "->", m["read"], "collision" if m["collision"] else "",
              m["tuple_contents"])
    if args.out:
        write_json(args.out, out)


if __name__ == "__main__":
    main()
