"""An understanding model's "Is the player on the goal?" / "Is the player in a hole?" answers on real states.

These two answers are the world model's reward and termination, so a false "Yes" ends an imagined episode
that the real maze goes on with. States are drawn the way training draws them
(``UnderstandingData.random_state``: start states, reachable cells, the goal, holes; the elf facing its last
move), encoded from their real images with ``--features continuous`` (ViT + projector) or ``quantized``
(MBAQ codes), and asked with ``FlagQuestions`` (P(Yes) > 0.5), exactly as ``LatentWorldModel`` decides.
False "in a hole" answers on ice states are split by whether a hole is beside the player.

``--playerless`` asks about the same states' boards drawn WITHOUT the player (what the world model shows when
its generation branch drops the player): every "Yes" is then false; ``table_player`` counts the read-outs
that still name a player cell (``@``, ``%`` or ``!``), ``table_on_goal`` those that put it on the goal.

    python benchmarks/flag_answers.py --model runs/mbaq/final [--features continuous|quantized|projected]
        [--states 2048] [--playerless] [--out F.json]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from tqdm import tqdm

from latentum_world.data.understanding import UnderstandingData
from latentum_world.world.model import FlagQuestions
from latentum_world.evaluation import write_json


@torch.no_grad()
def run(model_dir: str | None, features: str, states: int, seed: int, batch_size: int = 256, quiet: bool = False,
        playerless: bool = False) -> dict:
    from latentum_world.training.stages import load_model
    from latentum_world.world.loading import resolve_model_path

    model, tok = load_model(resolve_model_path(model_dir))
    model.eval()
    flag_questions = FlagQuestions(model, tok)  # the world model's own reward / termination questions
    c = model.config
    data = UnderstandingData(image_size=c.image_size, cell_pixels=c.cell_pixels)
    rng = np.random.default_rng(seed)
    drawn = [data.random_state(rng) for _ in range(states)]
    counts = {k: 0 for k in ("goal_states", "hole_states", "ice_states", "false_goal", "false_hole",
                             "false_hole_beside_a_hole", "missed_goal", "missed_hole")}
    if playerless:
        counts = {"states": 0, "goal_yes": 0, "hole_yes": 0, "table_player": 0, "table_on_goal": 0}
    for i in tqdm(range(0, states, batch_size), desc="flag answers", disable=quiet):
        chunk = drawn[i : i + batch_size]
        images = torch.from_numpy(np.stack([data.image(m, last, player=not playerless) for m, last in chunk]))
        embeds, _ = model.image_embeddings(images, features)
        pg, ph = flag_questions(embeds)
        if playerless:
            tables = _tables(model, tok, embeds)
            counts["states"] += len(chunk)
            counts["goal_yes"] += int((pg > 0.5).sum())
            counts["hole_yes"] += int((ph > 0.5).sum())
            counts["table_player"] += sum(bool(set(t) & set("@%!")) for t in tables)
            counts["table_on_goal"] += sum("%" in t for t in tables)
            continue
        for j, (m, _) in enumerate(chunk):
            goal, hole = bool(pg[j] > 0.5), bool(ph[j] > 0.5)
            counts["goal_states"] += m.on_goal
            counts["hole_states"] += m.in_hole
            counts["ice_states"] += not (m.on_goal or m.in_hole)
            counts["false_goal"] += goal and not m.on_goal
            counts["false_hole"] += hole and not m.in_hole
            beside = any(abs(m.player[0] - r) + abs(m.player[1] - cc) == 1 for r, cc in m.holes)
            counts["false_hole_beside_a_hole"] += hole and not m.in_hole and beside
            counts["missed_goal"] += m.on_goal and not goal
            counts["missed_hole"] += m.in_hole and not hole
    return {"model": model_dir or "bundled", "features": features, "states": states, "seed": seed,
            "playerless": playerless, "counts": counts}


def _tables(model, tok, embeds: torch.Tensor) -> list[str]:
    """The model's table read-out text of each image embedding ``(B, P, d)``, greedy."""
    from envs.vsp.maps import VSPMap
    from latentum_world.data.prompts import table_question
    from latentum_world.model.generation import image_block_ids

    b = embeds.shape[0]
    prompt = torch.tensor(tok.encode_text(table_question(VSPMap(3, (0, 0), (1, 1)))[0]), device=embeds.device)
    ids = torch.cat([image_block_ids(model, b, embeds.device), prompt[None].expand(b, -1)], dim=1)
    out = model.generate_text(ids, torch.ones_like(ids), image_embeds=embeds, max_new_tokens=100)
    return [tok.decode_text(seq) for seq in out]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", help="model directory (default: the bundled checkpoint)")
    ap.add_argument("--features", choices=("continuous", "quantized", "projected"), default="continuous")
    ap.add_argument("--playerless", action="store_true", help="ask about the boards drawn without the player")
    ap.add_argument("--states", type=int, default=2048)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--out")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    result = run(args.model, args.features, args.states, args.seed, quiet=args.quiet, playerless=args.playerless)
    print(", ".join(f"{k} {v}" for k, v in result["counts"].items()))
    if args.out:
        write_json(args.out, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
