"""benchmarks/env_agreement.py and one_step_codes.py: their error breakdowns account for every miss they score."""

import importlib.util
import json
from pathlib import Path

import pytest

from envs.vsp.formats import parse_table
from envs.vsp.maps import VSPMap


def _benchmark(name):
    spec = importlib.util.spec_from_file_location(name, Path(__file__).parents[1] / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


env_agreement = _benchmark("env_agreement")
flag_answers = _benchmark("flag_answers")
one_step_codes = _benchmark("one_step_codes")


def test_termination_misses_are_the_false_missed_and_after_end_steps():
    # the bundled model; seed 0 has a false termination (so the kept examples are checked)
    result = env_agreement.run(None, maps=8, horizon=6, num_envs=4, seed=0, quiet=True, max_examples=2)
    t, e = result["termination"], result["errors"]
    examples = result["false_termination_examples"]  # kept in full: the real board after the move was not terminal
    assert len(examples) == min(2, e["false_termination"]["count"])
    for ex in examples:
        real = parse_table(ex["real_after"])
        assert not (real.on_goal or real.in_hole) and ex["action"] in "LDRU" and ex["goal_answer"] and ex["hole_answer"]
    wrong = round((1 - t["accuracy"]) * t["steps"])
    assert wrong == e["false_termination"]["count"] + e["missed_termination"]["count"] + e["steps_after_early_end"]
    f = e["false_termination"]
    assert f["by_goal_answer"] + f["by_hole_answer"] == f["count"] and 0 <= f["board_readout_right"] <= f["count"]
    assert e["missed_termination"]["goal"] + e["missed_termination"]["hole"] == e["missed_termination"]["count"]
    assert sum(f["per_depth"].values()) == f["count"] and all(1 <= d <= 6 for d in f["per_depth"])
    # every step of the real episodes is compared: at most maps x horizon, at least one per map
    assert 8 <= t["steps"] <= 8 * 6 and result["board"]["steps"] == t["steps"] == result["reward"]["steps"]


def test_flag_answers_count_every_state_and_playerless_boards():
    plain = flag_answers.run(None, "projected", states=12, seed=1, batch_size=6, quiet=True)["counts"]  # the bundled model
    assert plain["goal_states"] + plain["hole_states"] + plain["ice_states"] == 12
    assert plain["missed_goal"] <= plain["goal_states"] and plain["missed_hole"] <= plain["hole_states"]
    r = flag_answers.run(None, "projected", states=12, seed=1, batch_size=6, quiet=True, playerless=True)
    c = r["counts"]
    assert r["playerless"] and c["states"] == 12
    assert 0 <= c["table_on_goal"] <= c["table_player"] <= 12 and 0 <= c["goal_yes"] <= 12 and 0 <= c["hole_yes"] <= 12


def test_error_summary_counts_records():
    false_term = [{"level": 4, "depth": 2, "p_goal": 0.9, "p_hole": 0.1, "board_right": True},
                  {"level": 5, "depth": 3, "p_goal": 0.2, "p_hole": 0.7, "board_right": False}]
    missed = [{"level": 3, "depth": 1, "cause": "hole"}]
    e = env_agreement.error_summary(false_term, missed, after_end=7)
    f = e["false_termination"]
    assert f.pop("p_yes_quartiles") == pytest.approx([0.75, 0.8, 0.85])
    assert f == {"count": 2, "by_goal_answer": 1, "by_hole_answer": 1, "board_readout_right": 1, "per_depth": {2: 1, 3: 1}}
    assert e["missed_termination"] == {"count": 1, "goal": 0, "hole": 1} and e["steps_after_early_end"] == 7


def test_one_step_codes_flags_account_for_every_wrong_step(tmp_path):
    out = tmp_path / "codes.json"
    one_step_codes.main(["--states", "24", "--batch-size", "12", "--readout", "--examples", "24", "--out", str(out)])  # the bundled model
    r = json.loads(out.read_text())
    f = r["flags"]
    assert f["steps"] == r["exact_codes"]["whole_state"]["total"] == 24 and 0 <= f["real_terminal"] <= 24
    wrong_steps = f["wrong_with_exact_codes"] + f["wrong_with_wrong_codes"]
    # a step is wrong when any answer is; one step can be wrong on two answers at once
    assert wrong_steps <= f["false_goal"] + f["false_hole"] + f["missed_goal"] + f["missed_hole"] <= 2 * wrong_steps
    assert f["wrong_with_exact_codes"] <= r["exact_codes"]["whole_state"]["correct"] and 0 <= f["real_codes_wrong"] <= 24
    # the split by transition covers every state once and adds up to the whole-state tally
    kinds = r["whole_state_by_transition"]
    assert sum(k["total"] for k in kinds.values()) == 24
    assert sum(k["correct"] for k in kinds.values()) == r["exact_codes"]["whole_state"]["correct"]
    orders = r["whole_state_by_raster_order"]  # the bundle is cell-aligned: every state has an order
    assert sum(k["total"] for k in orders.values()) == 24
    assert sum(k["correct"] for k in orders.values()) == r["exact_codes"]["whole_state"]["correct"]
    # --examples keeps every state whose imagined codes were wrong (24 allowed), each with its wrong positions
    assert len(r["examples"]) == 24 - r["exact_codes"]["whole_state"]["correct"]
    assert all(e["wrong_positions"] and e["kind"] in one_step_codes.TRANSITIONS for e in r["examples"])
    assert sum(r["wrong_codes_by_failure"].values()) == len(r["examples"])
    assert all(k.split("/")[0] in one_step_codes.FAILURES for k in r["wrong_codes_by_failure"])
    # every wrong imagined read-out is counted once, with exact or with wrong codes
    ro = r["readout"]
    assert ro["steps"] == 24 and ro["imagined_right"] <= 24 and ro["real_codes_right"] <= 24
    assert ro["imagined_wrong_with_exact_codes"] + ro["imagined_wrong_with_wrong_codes"] == 24 - ro["imagined_right"]
    assert ro["imagined_wrong_with_exact_codes"] <= r["exact_codes"]["whole_state"]["correct"]


def test_raster_order_of_a_move():
    from types import SimpleNamespace

    c = SimpleNamespace(cell_pixels=16, image_size=128, grid_side=4)  # 2 x 2 cells per latent position
    order = one_step_codes.raster_order
    m = VSPMap(6, (2, 2), (5, 5))
    assert order(m, m.move(0), c) == "arrival_first"  # left into cell (2, 1): position 4 before position 5
    assert order(m, m.move(3), c) == "arrival_first"  # up into (1, 2): position 1
    assert order(m, m.move(2), c) == "same_position"  # right into (2, 3): still position 5
    assert order(m, m.move(1), c) == "same_position"  # down into (3, 2)
    assert order(m.with_player((1, 1)), m.with_player((1, 1)).move(2), c) == "departure_first"
    assert order(m, m.move(0), SimpleNamespace(cell_pixels=0, image_size=128, grid_side=4)) is None


def test_failure_kinds():
    fail = one_step_codes.failure_kind
    before = VSPMap(4, (1, 1), (0, 0), frozenset({(3, 3)}))
    after = before.move(2)  # right, onto ice at (1, 2)
    assert fail(before, after, after) == "read_right"
    assert fail(before, after, None) == "unreadable"
    assert fail(before, after, before) == "player_stayed"
    assert fail(before, after, before.with_player((0, 0))) == "player_read_on_goal"  # the player not drawn
    assert fail(before, after, after.with_player((2, 2))) == "other"


def test_transition_kinds():
    m = VSPMap(3, (0, 0), (0, 2), frozenset({(1, 0)}))
    kind = one_step_codes.transition_kind
    assert kind(m, m.move(0)) == "bump"  # left off the edge
    assert kind(m, m.move(1)) == "into_hole"
    assert kind(m, m.move(2)) == "onto_ice"
    assert kind(m.with_player((0, 1)), m.with_player((0, 1)).move(2)) == "onto_goal"


def test_flag_answers_counts_add_up():
    r = _benchmark("flag_answers").run(None, "quantized", states=40, seed=3, batch_size=16, quiet=True)  # the bundled model
    c = r["counts"]
    assert c["goal_states"] + c["hole_states"] + c["ice_states"] == 40
    assert c["missed_goal"] <= c["goal_states"] and c["missed_hole"] <= c["hole_states"]
    assert c["false_hole_beside_a_hole"] <= c["false_hole"] <= 40 - c["hole_states"]
    assert c["false_goal"] <= 40 - c["goal_states"]
