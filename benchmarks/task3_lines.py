"""Where task3 answers go wrong, line by line.

A task3 answer is the image's summary, one summary per candidate table, then the letter
(``latentum_world.data.prompts.matching_question``). On held-out generated items this counts, for the
model's greedy answers, how often each part is right: the image line, each candidate's size / player-row /
goal-row token, whole candidate lines, and the final letter; and how often the letter is the one a reader
of the model's OWN summary lines would pick (the comparison step, apart from the reading). It tells
"cannot read a candidate table" apart from "reads them but picks the wrong letter".

    python benchmarks/task3_lines.py --model runs/mbaq/final --items 20 --out benchmarks/results/task3_lines.json
"""

from __future__ import annotations

import argparse

from envs.vsp.maps import LEVELS
from latentum_world.data.understanding import UnderstandingData
from latentum_world.evaluation.perception import answer_all, heldout_rng
from latentum_world.eval_cli import load_for_eval, resolve_model_path
from latentum_world.evaluation import write_json


def summary_fields(line: str) -> list[str]:
    """``(A) Col 5 || Row 3 | @ || Row 1 | * |`` -> ``["5", "3", "1"]`` (size, player row, goal row)."""
    body = line.split(")", 1)[-1] if line.startswith("(") else line.removeprefix("image")
    parts = [p.strip() for p in body.replace("||", "|").split("|") if p.strip()]
    # parts: "Col 5", "Row 3", "@", "Row 1", "*"
    nums = [p.split()[-1] for p in parts if p.startswith(("Col", "Row"))]
    return nums if len(nums) == 3 else []


def own_choice(lines: list[str]) -> str | None:
    """The letter of the first candidate whose summary equals the image's, by the model's own lines."""
    if len(lines) < 5:
        return None
    image = summary_fields(lines[0])
    for k, line in enumerate(lines[1:5]):
        if image and summary_fields(line) == image:
            return "ABCD"[k]
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None, help="model directory (default: the bundled checkpoint)")
    ap.add_argument("--items", type=int, default=20, help="held-out items per level (levels 3..8)")
    ap.add_argument("--features", choices=["continuous", "quantized"], default="continuous")
    ap.add_argument("--seed", type=int, default=4242, help="held-out seed (not the training seed)")
    ap.add_argument("--out", help="JSON results")
    args = ap.parse_args()
    if args.items < 1:
        raise SystemExit("--items must be >= 1")
    model_dir = resolve_model_path(args.model)
    model, tok = load_for_eval(model_dir, "cpu")
    examples = []
    for level in LEVELS:
        data = UnderstandingData(image_size=model.config.image_size, cell_pixels=model.config.cell_pixels, levels=(level,))
        rng = heldout_rng(args.seed, 3, level)
        examples += [data.example(rng, "task3") for _ in range(args.items)]
    preds = answer_all(model, tok, examples, args.features, batch_size=32, desc="task3")
    counts = {k: 0 for k in ("image_line", "candidate_lines", "size", "player_row", "goal_row", "letter",
                             "letter_follows_own_lines", "all_lines_right")}
    fields = 0
    for ex, pred in zip(examples, preds):
        gold, got = ex.answer.split("\n"), pred.strip().split("\n")
        got += [""] * (len(gold) - len(got))
        counts["image_line"] += got[0] == gold[0]
        counts["candidate_lines"] += sum(g == p for g, p in zip(gold[1:5], got[1:5]))
        for g, p in zip(gold[1:5], got[1:5]):
            gf, pf = summary_fields(g), summary_fields(p) or ["", "", ""]
            fields += 1
            for name, a, b in zip(("size", "player_row", "goal_row"), gf, pf):
                counts[name] += a == b
        letter = got[-1].strip()  # the final line, as the scorer reads it
        counts["letter"] += letter == gold[-1]
        counts["letter_follows_own_lines"] += own_choice(got) == letter
        counts["all_lines_right"] += got[: len(gold)] == gold
    n = len(examples)
    result = {
        "model": str(model_dir), "features": args.features, "items": n,
        "image_line": counts["image_line"] / n,
        "candidate_line": counts["candidate_lines"] / (4 * n),
        "candidate_size": counts["size"] / fields, "candidate_player_row": counts["player_row"] / fields,
        "candidate_goal_row": counts["goal_row"] / fields,
        "letter": counts["letter"] / n, "letter_follows_own_lines": counts["letter_follows_own_lines"] / n,
        "all_lines_right": counts["all_lines_right"] / n,
        "examples": [{"gold": ex.answer, "model": p} for ex, p in list(zip(examples, preds))[:6]],
    }
    for k, v in result.items():
        if isinstance(v, float):
            print(f"{k:28s} {100 * v:6.1f} %")
    if args.out:
        write_json(args.out, result)


if __name__ == "__main__":
    main()
