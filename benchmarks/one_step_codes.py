"""One imagined step against the real next frame, at the level of MBAQ codes.

From real random states (player anywhere, non-terminal) and random actions, the world model imagines
one transition from the REAL frame; its codes are compared with the MBAQ codes of the real next
frame, split into the positions the move changed, the unchanged positions on the board, and (in
the cell-aligned layout) the black margin beyond the board. This separates "the generation branch
drew the wrong codes" from "the understanding branch misread right codes" when
``eval world-model``'s board read-out disagrees with reality.

The same split for the step's termination: ``flags`` counts the steps whose goal / hole answers
(P(Yes) > 0.5, as the env decides) disagree with the real next state, separately where the imagined
codes were exactly the real next frame's (the understanding branch misread right codes) and where
they were not (the generation branch drew a wrong state); ``by_transition`` splits whole-state exactness by
what the move did (a step onto ice, a bump against the edge, a step into a hole, onto the goal) and
``whole_state_by_raster_order`` by whether the player's new cell is generated before its old one (moves left or up
across a position border: the generation branch must draw the arrival from the context alone);
``real_codes_wrong`` asks the same two
questions about the real next frame's own codes (``visual_projector(z_q)``, no generation at all).

``--readout`` also reads the whole board (VSP table) from the imagined state and from the real next
frame's codes, and splits wrong imagined read-outs by whether the codes were exact: it tells how much of
``eval world-model``'s one-step board error is reading, not generation. ``--examples N`` (with
``--readout``) keeps the first N transitions whose imagined codes were wrong: the move, the real boards
before and after, what the model read from its imagined state, and the positions it drew wrong.
``wrong_codes_by_failure`` (with ``--readout``) counts every state with wrong codes by how its read-out
went wrong (:func:`failure_kind`) and by its raster order.

    python benchmarks/one_step_codes.py --model runs/world/final --states 3072 --out benchmarks/results/one_step_codes.json
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from envs.vsp.formats import to_table
from envs.vsp.maps import ACTION_LETTERS
from envs.vsp.observation import content_side
from latentum_world.data.understanding import UnderstandingData
from latentum_world.world.loading import load_world_model
from latentum_world.world.model import LatentWorldModel
from latentum_world.evaluation import write_json


def board_mask(level: int, config) -> torch.Tensor:
    """``(P,)`` bool: latent positions that show part of a ``level x level`` board."""
    g, region = config.grid_side, config.image_size // config.grid_side  # positions per side, pixels per position
    side = content_side(level, config.image_size, config.cell_pixels)
    covered = -(-side // region)  # positions per side the board reaches
    m = torch.zeros(g, g, dtype=torch.bool)
    m[:covered, :covered] = True
    return m.flatten()


def rates(tallies: dict[str, list[int]]) -> dict[str, dict]:
    """``{name: [correct, total]}`` -> ``{name: {"correct", "total", "accuracy"}}`` (accuracy ``None`` when empty)."""
    return {k: {"correct": a, "total": n, "accuracy": a / n if n else None} for k, (a, n) in tallies.items()}


TRANSITIONS = ("onto_ice", "bump", "into_hole", "onto_goal")


def transition_kind(before, after) -> str:
    """What a move did: ``bump`` (off the edge: the player stays, facing the move), ``into_hole``,
    ``onto_goal`` or ``onto_ice``."""
    if after.player == before.player:
        return "bump"
    return "into_hole" if after.in_hole else "onto_goal" if after.on_goal else "onto_ice"


RASTER = ("same_position", "arrival_first", "departure_first")


def raster_order(before, after, config) -> str | None:
    """Where a move's arrival cell lies in the generation order (raster over latent positions): in the
    player's own position (``same_position``: bumps and moves within a position), in an earlier position
    than the departure (``arrival_first``: moves left or up across a position border) or a later one
    (``departure_first``). ``None`` unless the layout is cell-aligned (``cell_pixels`` > 0)."""
    if not config.cell_pixels:
        return None
    cells = config.image_size // config.grid_side // config.cell_pixels  # cells per position side
    a, d = ((r // cells) * config.grid_side + c // cells for r, c in (after.player, before.player))
    return "same_position" if a == d else "arrival_first" if a < d else "departure_first"


FAILURES = ("read_right", "player_stayed", "player_read_on_goal", "unreadable", "other")


def failure_kind(before, after, read) -> str:
    """What a state with wrong imagined codes looks like to the model's own read-out ``read``: still
    the right board (``read_right``), the player left where it was (``player_stayed``), the player read
    on the goal although it is not there (``player_read_on_goal``: the signature of a player the
    generation branch did not draw, which the understanding branch takes for one standing on the goal),
    no valid board (``unreadable``) or anything else."""
    if read is None:
        return "unreadable"
    if read == after:
        return "read_right"
    if read.player == before.player != after.player:
        return "player_stayed"
    if read.player == read.goal and after.player != after.goal:
        return "player_read_on_goal"
    return "other"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None, help="world model directory (default: the bundled checkpoint)")
    ap.add_argument("--states", type=int, default=3072)  # 384 is too few: 97.7 vs 94.8 % whole-state was noise
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--readout", action="store_true", help="also score the board read-out of imagined and real codes (slower)")
    ap.add_argument("--examples", type=int, default=0, help="with --readout: keep this many wrong transitions in the JSON")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    if args.examples and not args.readout:
        ap.error("--examples needs --readout")

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
    by_transition = {k: [0, 0] for k in TRANSITIONS}
    by_raster = {k: [0, 0] for k in RASTER}
    readout = {k: 0 for k in ("steps", "imagined_right", "real_codes_right", "imagined_wrong_with_exact_codes",
                              "imagined_wrong_with_wrong_codes")}
    flags = {k: 0 for k in ("steps", "real_terminal", "false_goal", "false_hole", "missed_goal", "missed_hole",
                            "wrong_with_exact_codes", "wrong_with_wrong_codes", "real_codes_wrong")}
    examples = []
    failures: dict[str, int] = {}  # "<failure>/<raster order>" -> wrong-code states
    for i in range(0, len(states), args.batch_size):
        chunk, acts = states[i : i + args.batch_size], actions[i : i + args.batch_size]
        now = torch.from_numpy(np.stack([data.image(m, last) for m, last in chunk]))
        nxt = [m.move(int(a)) for (m, _), a in zip(chunk, acts)]
        real_next = torch.from_numpy(np.stack([data.image(m, int(a)) for m, a in zip(nxt, acts)]))
        codes_now = wm.reset(now, draft_boards=[m for m, _ in chunk])  # drafts: read-out speed only
        out = wm.step(torch.from_numpy(acts))
        imagined = out.codes  # (B, P, K)
        _, codes_next = wm.encode(real_next)
        ok = (imagined == codes_next).all(-1)  # (B, P)
        changed = (codes_next != codes_now).any(-1)
        board = torch.stack([board_mask(m.size, c) for m in nxt])
        for name, mask in (("changed", changed), ("unchanged_board", board & ~changed), ("margin", ~board),
                           ("all", torch.ones_like(ok))):
            tallies[name][0] += int(ok[mask].sum())
            tallies[name][1] += int(mask.sum())
        exact = ok.all(-1)  # (B,) the whole state's codes
        tallies["whole_state"][0] += int(exact.sum())
        tallies["whole_state"][1] += len(chunk)
        real_embeds = model.project_latents(codes_next)
        real_goal, real_hole = wm.answer_flags(real_embeds)
        if args.readout:
            said, said_real = wm.read_board(), wm.read_board(real_embeds, draft_boards=nxt)
        for j, ((m_now, _), m) in enumerate(zip(chunk, nxt)):
            kind = transition_kind(m_now, m)
            by_transition[kind][0] += int(exact[j])
            by_transition[kind][1] += 1
            order = raster_order(m_now, m, c)
            if order is not None:
                by_raster[order][0] += int(exact[j])
                by_raster[order][1] += 1
            if args.readout:
                right = said[j] == m
                readout["steps"] += 1
                readout["imagined_right"] += int(right)
                readout["real_codes_right"] += int(said_real[j] == m)
                if not right:
                    readout["imagined_wrong_with_exact_codes" if bool(exact[j]) else "imagined_wrong_with_wrong_codes"] += 1
                if not bool(exact[j]):
                    failure = failure_kind(m_now, m, said[j])
                    failures[f"{failure}/{order}"] = failures.get(f"{failure}/{order}", 0) + 1
                    if len(examples) < args.examples:
                        examples.append({
                            "kind": kind, "raster_order": order, "failure": failure, "level": m.size,
                            "action": ACTION_LETTERS[int(acts[j])],
                            "before": to_table(m_now), "after": to_table(m),
                            "read_from_imagined": None if said[j] is None else to_table(said[j]),
                            "read_right": bool(right), "p_goal": float(out.p_goal[j]), "p_hole": float(out.p_hole[j]),
                            "wrong_positions": torch.nonzero(~ok[j]).flatten().tolist(),
                            "changed_positions": torch.nonzero(changed[j]).flatten().tolist()})
            said_goal, said_hole = bool(out.p_goal[j] > 0.5), bool(out.p_hole[j] > 0.5)
            errors = {"false_goal": said_goal and not m.on_goal, "false_hole": said_hole and not m.in_hole,
                      "missed_goal": m.on_goal and not said_goal, "missed_hole": m.in_hole and not said_hole}
            flags["steps"] += 1
            flags["real_terminal"] += int(m.on_goal or m.in_hole)
            for k, v in errors.items():
                flags[k] += int(v)
            flags["real_codes_wrong"] += int(bool(real_goal[j] > 0.5) != m.on_goal or bool(real_hole[j] > 0.5) != m.in_hole)
            if any(errors.values()):
                flags["wrong_with_exact_codes" if bool(exact[j]) else "wrong_with_wrong_codes"] += 1
    result = {"model": args.model or "bundled", "states": len(states), "seed": args.seed,
              "exact_codes": rates(tallies), "whole_state_by_transition": rates(by_transition),
              "whole_state_by_raster_order": rates(by_raster),
              "flags": flags}
    if args.readout:
        result["readout"] = readout
        result["wrong_codes_by_failure"] = dict(sorted(failures.items(), key=lambda kv: -kv[1]))
    if args.examples:
        result["examples"] = examples
    for k, v in result["exact_codes"].items():
        acc = "-" if v["accuracy"] is None else f"{100 * v['accuracy']:.1f} %"
        print(f"{k:16s} {acc:>8s} of {v['total']} {'states' if k == 'whole_state' else 'positions'}")
    print("whole state by transition: " + ", ".join(
        f"{k} {a}/{n}" for k, (a, n) in by_transition.items()))
    print("whole state by where the arrival is generated: " + ", ".join(
        f"{k} {a}/{n}" for k, (a, n) in by_raster.items()))
    print("goal / hole answers: " + ", ".join(f"{k} {v}" for k, v in flags.items()))
    if args.readout:
        print("board read-out: " + ", ".join(f"{k} {v}" for k, v in readout.items()))
        print("wrong codes, as read / where the arrival is generated: " + ", ".join(
            f"{k} {v}" for k, v in result["wrong_codes_by_failure"].items()))
    if args.out:
        write_json(args.out, result)


if __name__ == "__main__":
    main()
