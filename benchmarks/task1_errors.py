"""Where VSP task1 answers go wrong: in the coordinate listing, or in the copy of the asked cell's piece.

A task1 answer is the board as a coordinate listing (``1,1 _ |1,2 # |...``), then the final line
``4,2 # | Yes``: the asked cell's ``r,c`` token, its piece copied from the listing, the verdict. This
answers held-out task1 items (as ``eval perception`` draws them) and counts, per level, the right answers,
the answers whose listing is exactly right, and the wrong answers with a right listing (copy errors).

    python benchmarks/task1_errors.py [--model DIR] [--levels 6 7 8] [--per-level 100] [--out F.json]
"""

from __future__ import annotations

import argparse
import json


from latentum_world.data.prompts import final_answer
from latentum_world.evaluation.answers import is_correct
from latentum_world.evaluation.perception import DEFAULT_SEED, answer_all, generated_examples


def run(model_dir: str | None, levels: list[int], per_level: int, seed: int, quiet: bool = False) -> dict:
    from latentum_world.training.stages import load_model
    from latentum_world.world.loading import resolve_model_path

    model, tok = load_model(resolve_model_path(model_dir))
    model.eval()
    c = model.config
    examples = generated_examples(c.image_size, per_level, seed, levels=tuple(levels), cell_pixels=c.cell_pixels,
                                  flag_answers=c.flag_answers)["task1"]
    preds = answer_all(model, tok, examples, "continuous", 64, "task1", quiet)
    items, per = [], {}
    for ex, p in zip(examples, preds):
        ok = is_correct(ex.task, p, ex.answer)
        listing_ok = ex.answer.rsplit("\n", 1)[0] == p.rsplit("\n", 1)[0]
        items.append({"level": ex.map.size, "ok": ok, "listing_ok": listing_ok, "question": ex.question,
                      "gold": final_answer(ex.answer), "pred": final_answer(p)})
        t = per.setdefault(str(ex.map.size), {"items": 0, "correct": 0, "listing_right": 0, "copy_errors": 0})
        t["items"] += 1
        t["correct"] += ok
        t["listing_right"] += listing_ok
        t["copy_errors"] += (not ok) and listing_ok
    return {"model": model_dir or "bundled", "seed": seed, "levels": per, "items": items}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", help="model directory (default: the bundled checkpoint)")
    ap.add_argument("--levels", type=int, nargs="+", default=[6, 7, 8])
    ap.add_argument("--per-level", type=int, default=100)
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED)
    ap.add_argument("--out", help="write the counts and every item to this JSON file")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args()
    res = run(args.model, args.levels, args.per_level, args.seed, args.quiet)
    for level, t in res["levels"].items():
        print(f"level {level}: {t['correct']}/{t['items']} right, listing right {t['listing_right']}, copy errors {t['copy_errors']}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
