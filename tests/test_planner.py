"""The latent planner (agents/planner.py) and its real-maze scoring (agents/plan_eval.py)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from agents.imagination_errors import _kind, first_divergence
from agents.plan_eval import closed_loop, evaluate, execute, heldout_boards, main
from agents.planner import LatentBFSPlanner
from envs.vsp.formats import to_table
from envs.vsp.maps import VSPMap, generate_map
from latentum_world.world.model import WorldStep

FRAME = torch.zeros(16, 16, 3, dtype=torch.uint8)  # the fake worlds ignore pixels


class BoardWorld:
    """A stand-in world model with the real dynamics of one board: a state's "codes" are the player's
    cell ``(1, 2)``; ``lie_goal`` makes it claim the goal after any first step."""

    model = SimpleNamespace(config=SimpleNamespace(image_size=128, cell_pixels=16))  # what plan_eval renders for

    def __init__(self, board: VSPMap, lie_goal: bool = False):
        self.board, self.lie_goal = board, lie_goal
        self.codes = None
        self.steps = 0

    def reset(self, images, rows=None, draft_boards=None):
        if draft_boards and draft_boards[0] is not None:  # closed-loop planning hands over the current real board
            self.board = draft_boards[0]
        self.codes = torch.tensor([[self.board.player]]).repeat(len(images), 1, 1)  # (B, 1, 2)
        return self.codes

    def set_codes(self, codes, rows=None, draft_boards=None):
        self.codes = codes.clone()

    def read_board(self):
        return [self.board.with_player(tuple(c[0].tolist())) for c in self.codes]

    def step(self, actions, rows=None):
        nxt = [self.board.with_player(tuple(c[0].tolist())).move(int(a)) for c, a in zip(self.codes, actions)]
        self.steps += len(nxt)
        self.codes = torch.tensor([[m.player] for m in nxt])
        goal = torch.tensor([self.lie_goal or m.on_goal for m in nxt])
        ended = goal | torch.tensor([m.in_hole for m in nxt])
        return WorldStep(self.codes, goal.float(), ended, goal.float(), ended.float())


def test_search_equals_the_real_shortest_path_on_a_faithful_world():
    rng = np.random.default_rng(0)
    for i in range(60):
        board = generate_map(rng, 3 + i % 6)
        plan = LatentBFSPlanner(BoardWorld(board), batch_size=8).plan(FRAME)  # small calls: several per depth
        assert plan.actions == board.shortest_path()
        assert execute(board, plan.actions) == "goal"
        assert plan.depth == len(plan.actions)


def test_holes_are_not_expanded_and_no_goal_gives_no_plan():
    # the goal is walled off by holes: every route ends in one
    board = VSPMap(3, (0, 0), (2, 2), frozenset({(1, 2), (2, 1), (1, 1)}))
    world = BoardWorld(board)
    plan = LatentBFSPlanner(world).plan(FRAME)
    assert plan.actions is None
    assert plan.states == 5  # the hole-free cells reachable: (0,0), (0,1), (1,0), (0,2), (2,0)
    # max_depth bounds the search
    open_board = VSPMap(5, (0, 0), (4, 4), frozenset())
    assert LatentBFSPlanner(BoardWorld(open_board), max_depth=7).plan(FRAME).actions is None
    assert len(LatentBFSPlanner(BoardWorld(open_board), max_depth=8).plan(FRAME).actions) == 8


def test_a_lying_world_fails_in_the_real_maze():
    board = VSPMap(4, (0, 0), (3, 3), frozenset({(0, 1)}))
    plan = LatentBFSPlanner(BoardWorld(board, lie_goal=True)).plan(FRAME)
    assert plan.actions == [0]  # the first row (Left) "reaches the goal"
    assert execute(board, plan.actions) == "short"
    assert execute(board, [2]) == "hole"
    result = evaluate(LatentBFSPlanner(BoardWorld(board, lie_goal=True)), [board], progress=False)
    assert result["total"]["success"] == 0 and result["total"]["short"] == 1
    assert result["failures"] == [{"level": 4, "board": to_table(board), "outcome": "short", "shortest": 6, "actions": "L",
                                   "first_error": {"step": 1, "action": "L", "kind": "false_goal", "real_player": [0, 0],
                                                   "imagined_player": [0, 0]},
                                   "first_error_along": "plan"}]
    assert result["failure_first_errors"] == {"false_goal": 1}


class JumpingWorld(BoardWorld):
    """Moves the player two cells down per Down (one when the edge is one away), otherwise the real dynamics."""

    def step(self, actions, rows=None):
        out = super().step(actions, rows)
        for i, a in enumerate(actions.tolist()):
            if a == 1:
                again = self.board.with_player(tuple(self.codes[i, 0].tolist())).move(1)
                self.codes[i, 0] = torch.tensor(again.player)
        return out


def test_first_divergence_names_the_first_imagined_error():
    board = VSPMap(5, (0, 0), (4, 4), frozenset({(2, 3)}))
    assert first_divergence(BoardWorld(board), board, board.shortest_path()) is None  # a faithful world
    assert first_divergence(JumpingWorld(board), board, [2, 1]) == {
        "step": 2, "action": "D", "kind": "player_jump", "real_player": [1, 1], "imagined_player": [2, 1]}
    corner = VSPMap(5, (0, 4), (4, 4), frozenset())
    assert first_divergence(BoardWorld(corner), corner, [2, 0]) is None  # into the edge: both stay
    lying = first_divergence(BoardWorld(corner, lie_goal=True), corner, [2])
    assert lying["kind"] == "false_goal" and lying["real_player"] == [0, 4]
    assert _kind(corner, corner.move(3), corner.with_player((1, 4)), False, False) == "blocked_move"
    assert _kind(corner, corner.move(1), None, False, False) == "unreadable"
    moved_goal = VSPMap(5, (1, 4), (3, 3), frozenset())
    assert _kind(corner, corner.move(1), moved_goal, False, False) == "goal_moved"
    assert _kind(corner, corner.move(1), VSPMap(5, (1, 4), (4, 4), frozenset({(0, 0)})), False, False) == "holes_changed"
    assert _kind(corner, corner.move(1), corner.move(1), False, True) == "false_hole"


def test_closed_loop_replans_from_each_real_frame():
    rng = np.random.default_rng(1)
    for i in range(12):
        board = generate_map(rng, 3 + i % 6)
        world = BoardWorld(board)
        outcome, steps, transitions = closed_loop(LatentBFSPlanner(world), board, 2 * board.size**2)
        assert (outcome, steps) == ("goal", len(board.shortest_path()))
        assert transitions == world.steps
    # a world that always claims the goal one step away: each replan takes Left, the real player never arrives
    board = VSPMap(4, (2, 2), (3, 3), frozenset())
    assert closed_loop(LatentBFSPlanner(BoardWorld(board, lie_goal=True)), board, 5) == ("short", 5, 20)


def test_bad_inputs():
    world = BoardWorld(VSPMap(3, (0, 0), (2, 2), frozenset()))
    with pytest.raises(ValueError, match="max_depth"):
        LatentBFSPlanner(world, max_depth=0)
    with pytest.raises(ValueError, match="uint8"):
        LatentBFSPlanner(world).plan(torch.zeros(16, 16, 3))
    with pytest.raises(ValueError, match="one"):
        LatentBFSPlanner(world).plan(torch.zeros(2, 16, 16, 3, dtype=torch.uint8))


def test_bundled_model_plans_reach_the_real_goal():
    """The bundled world model, planning from real first frames alone, on held-out small boards."""
    from latentum_world.world.loading import load_world_model
    from latentum_world.world.model import LatentWorldModel

    model, tok = load_world_model()
    planner = LatentBFSPlanner(LatentWorldModel(model, tok))
    boards = heldout_boards(7, 2, levels=(3, 4, 5))
    result = evaluate(planner, boards, progress=False)
    assert result["total"]["boards"] == 6
    assert result["total"]["success"] == 1.0
    assert result["total"]["imagined_transitions_per_board"] >= 4


def test_cli_writes_json_and_tensorboard(tmp_path):
    out, tb = tmp_path / "plan.json", tmp_path / "tb"
    main(["--maps-per-level", "2", "--levels", "3", "--quiet", "--json", str(out), "--tensorboard", str(tb), "--show", "1"])
    data = json.loads(out.read_text())
    assert data["total"]["boards"] == 2 and set(data["levels"]) == {"3"} and "plans" not in data
    gifs = list((tb / "gifs").glob("level3_board*.gif"))
    assert len(gifs) == 1  # --show 1: one board pictured
    assert list(tb.glob("events.out.tfevents.*"))
    with pytest.raises(SystemExit):
        main(["--levels", "9"])
    with pytest.raises(SystemExit):
        main(["--model", str(tmp_path / "nope")])
