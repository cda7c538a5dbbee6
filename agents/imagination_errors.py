"""Where imagination first parts from reality along a list of actions: the diagnosis of a failed plan.

:func:`first_divergence` replays actions in the world model from the real first frame and on the real
board side by side, and after every step compares the model's own board read-out of the imagined state and
its goal / hole verdicts with the real board. The first difference is named by a kind (:data:`KINDS`):

* ``player_jump``: the imagined player is on another cell than the real one after a real one-cell move
  (e.g. two or three cells on, or next to the goal);
* ``blocked_move``: the real move runs into the board's edge and the player stays, the imagined one moves;
* ``goal_moved`` / ``holes_changed``: the player is right, the goal or the holes are not;
* ``other_board``: another difference (e.g. the board's size); ``unreadable``: the read-out is no board;
* ``false_goal`` / ``false_hole`` / ``missed_goal`` / ``missed_hole``: the boards agree, the verdict does not.

``agents.plan_eval`` attaches it to every open-loop failure (along the plan; along the real shortest path
when no plan was found). On the bundled model's 13 failures of 600 held-out boards, every first error was
the model's picture of the board moving the player, goal or hole toward a shortcut (``docs/findings.md``).
"""

from __future__ import annotations

import torch

from envs.vsp.maps import ACTION_LETTERS, VSPMap
from envs.vsp.observation import model_renderer

KINDS = ("player_jump", "blocked_move", "goal_moved", "holes_changed", "other_board", "unreadable",
         "false_goal", "false_hole", "missed_goal", "missed_hole")


@torch.no_grad()
def first_divergence(world, board: VSPMap, actions: list[int]) -> dict | None:
    """The first step of ``actions`` after which the world model's read-out or verdicts differ from the real
    ``board`` run through the same actions: ``{"step": t (1-based), "action": letter, "kind": one of KINDS,
    "real_player": [r, c], "imagined_player": [r, c] or None}``; ``None`` when they agree until the actions
    end or the real episode does. ``world``: a :class:`~latentum_world.world.model.LatentWorldModel` (its
    state is reset to the board's first frame)."""
    frame = torch.from_numpy(model_renderer(world.model.config, board.size).render(board))[None]
    world.reset(frame, draft_boards=[board])
    for t, action in enumerate(actions, 1):
        before, board = board, board.move(action)
        out = world.step(torch.tensor([action]))
        imagined = world.read_board()[0]
        kind = _kind(before, board, imagined, bool(out.reward[0] > 0), bool(out.terminated[0]))
        if kind is not None:
            return {"step": t, "action": ACTION_LETTERS[action], "kind": kind, "real_player": list(board.player),
                    "imagined_player": None if imagined is None else list(imagined.player)}
        if board.on_goal or board.in_hole:
            return None
    return None


def _kind(before: VSPMap, real: VSPMap, imagined: VSPMap | None, said_goal: bool, said_ended: bool) -> str | None:
    """How the imagined step (its read-out ``imagined`` and verdicts) differs from the real one ``before -> real``."""
    if imagined is None:
        return "unreadable"
    if imagined.size != real.size:
        return "other_board"
    if imagined.player != real.player:
        return "blocked_move" if real.player == before.player else "player_jump"
    if imagined.goal != real.goal:
        return "goal_moved"
    if imagined.holes != real.holes:
        return "holes_changed"
    if imagined != real:
        return "other_board"
    said_hole = said_ended and not said_goal
    if said_goal != real.on_goal:
        return "false_goal" if said_goal else "missed_goal"
    if said_hole != real.in_hole:
        return "false_hole" if said_hole else "missed_hole"
    return None
