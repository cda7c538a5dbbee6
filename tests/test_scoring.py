"""Main-task plan scoring: the benchmark's eval.py rule, the strict rule, plan parsing, reports."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from envs.vsp.loader import load_vsp
from envs.vsp.maps import DOWN, LEFT, RIGHT, UP, VSPMap
from envs.vsp.scoring import (
    ORIGINAL_STEP_LIMIT,
    RULES,
    ScoreReport,
    as_plan,
    parse_plan,
    read_plans_jsonl,
    score_items,
    score_plan,
)

MAZE = Path(__file__).parent / "fixtures" / "vsp" / "maze"

#   @ _ *
#   _ # _
#   _ _ _
OPEN = VSPMap(3, (0, 0), (0, 2), frozenset({(1, 1)}))
#   @ * #
#   _ _ _
#   _ _ _
GOAL_THEN_HOLE = VSPMap(3, (0, 0), (0, 1), frozenset({(0, 2)}))
#   @ # *      shortest path D,R,R,U (4) > Manhattan distance (2): a detour map
#   _ _ _
#   _ _ _
DETOUR = VSPMap(3, (0, 0), (0, 2), frozenset({(0, 1)}))


def both(m: VSPMap, plan) -> tuple[bool, bool]:
    return score_plan(m, plan, "original"), score_plan(m, plan, "strict")


# ---------------------------------------------------------------------------- the two rules
def test_direct_success_under_both_rules():
    assert both(OPEN, "R,R") == (True, True)
    assert both(OPEN, [RIGHT, RIGHT]) == (True, True)


def test_off_edge_bump_then_success():
    assert both(OPEN, "U,R,R") == (True, False)  # U off the top edge: nothing (original) / failure (strict)
    assert both(OPEN, "L,R,R") == (True, False)
    assert both(OPEN, "R,R,R") == (True, False)  # past the goal into the edge: original stops at the goal


def test_walking_past_the_goal():
    m = VSPMap(3, (0, 0), (0, 1), frozenset())
    assert both(m, "R,D") == (True, False)  # original stops at the goal; strict ends on (1, 1)
    assert both(m, "R,D,U") == (True, True)  # strict: the goal is not terminal, ending on it succeeds


def test_goal_then_hole():
    assert both(GOAL_THEN_HOLE, "R,R") == (True, False)  # original ignores moves after the goal


def test_stopping_short():
    assert both(OPEN, "R") == (False, False)
    assert both(OPEN, "D,D") == (False, False)


def test_hole():
    assert both(OPEN, "D,R,R,U,U") == (False, False)  # (1, 0) -> (1, 1): hole, before the goal
    assert both(OPEN, "R,D") == (False, False)  # (0, 1) -> (1, 1): hole
    assert both(DETOUR, "R,R") == (False, False)
    assert both(DETOUR, "D,R,R,U") == (True, True)


def test_original_step_limit_of_gym_timelimit():
    m = VSPMap(3, (0, 0), (2, 2), frozenset())
    pad = ORIGINAL_STEP_LIMIT - 4
    assert score_plan(m, [LEFT] * pad + [RIGHT, RIGHT, DOWN, DOWN]) is True  # goal on move 100
    assert score_plan(m, [LEFT] * (pad + 1) + [RIGHT, RIGHT, DOWN, DOWN]) is False  # truncated at 100
    assert score_plan(m, [RIGHT, RIGHT, DOWN, DOWN] + [UP] * 200) is True  # later moves ignored


def test_unparseable_plans_fail():
    for plan in ("I would go right twice", "Action plan: r,r", "Action plan: ", "", None, [], [7]):
        assert both(OPEN, plan) == (False, False), plan


def test_unknown_rule():
    with pytest.raises(ValueError, match="unknown rule"):
        score_plan(OPEN, "R,R", rule="lenient")
    with pytest.raises(ValueError, match="unknown rule"):
        score_items([], {}, rule="lenient")
    assert RULES == ("original", "strict")


# ---------------------------------------------------------------------------- parsing as eval.py does
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Action plan: R,D", [RIGHT, DOWN]),
        ("<Output>\nAction plan: R,D", [RIGHT, DOWN]),
        ("Action plan: R, D, L, U", [RIGHT, DOWN, LEFT, UP]),
        ("Action plan: R,D.", [RIGHT, DOWN]),  # period-terminated
        ("Action plan: 'R', 'D'", [RIGHT, DOWN]),  # quoted
        ('Action plan: "R","D"', [RIGHT, DOWN]),
        ('Action plan: "R,D".', [RIGHT, DOWN]),
        ("Action plan: R,\nD\n", [RIGHT, DOWN]),  # newlines are deleted
        ("Action Plan: R,D", [RIGHT, DOWN]),  # the capitalised marker
        ("Action Plan: L\nAction plan: R,D", [RIGHT, DOWN]),  # 'Action plan: ' is looked for first
        ("Action plan: R,D\nAction plan: U", None),  # the first marker wins: 'D' + 'Action plan: U' is junk
        ("Action plan: r,d", None),  # lower case: KeyError in eval.py
        ("Action plan: Right,Down", None),
        ("Action plan: R D", None),
        ("Action plan: RD", None),
        ("Action plan: R,D\nHope this helps", None),  # trailing prose sticks to the last piece
        ("Action plan: ", None),  # empty
        ("Action plan: R,,D", None),
        ("Action plan:R,D", None),  # the marker includes the space
        ("ACTION PLAN: R,D", None),
        ("R,D", None),  # no marker: eval.py slices from a garbage offset
    ],
)
def test_parse_plan_like_eval_py(text, expected):
    assert parse_plan(text) == expected


def test_as_plan_forms():
    assert as_plan("Action plan: R,D") == [RIGHT, DOWN]
    assert as_plan("R,D,L,U") == [RIGHT, DOWN, LEFT, UP]  # a bare letter list
    assert as_plan(" R, D.") == [RIGHT, DOWN]
    assert as_plan("r,d") is None
    assert as_plan("go right") is None
    assert as_plan("") is None
    assert as_plan(None) is None
    assert as_plan([2, 1]) == [RIGHT, DOWN]
    assert as_plan((2, 1)) == [RIGHT, DOWN]
    assert as_plan(np.array([2, 1])) == [RIGHT, DOWN]
    assert as_plan(["R", "D"]) == [RIGHT, DOWN]
    assert as_plan(["R", 1]) == [RIGHT, DOWN]
    assert as_plan([]) is None
    assert as_plan([4]) is None and as_plan([-1]) is None and as_plan([True]) is None
    assert as_plan(["r"]) is None and as_plan(["Right"]) is None
    with pytest.raises(TypeError):
        as_plan(3.5)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- the benchmark's examples
@pytest.fixture(scope="module")
def main_items():
    return load_vsp(MAZE / "task-main")


def test_every_example_answer_solves_its_map_under_both_rules(main_items):
    assert len(main_items) == 12
    for it in main_items:
        plan = parse_plan(it.answer)
        assert plan is not None, it
        assert it.answer.rstrip().endswith("Action plan: " + ",".join("LDRU"[a] for a in plan))
        assert both(it.map, it.answer) == (True, True), it
        assert len(plan) == len(it.map.shortest_path())  # the examples are optimal


def test_examples_score_perfectly_and_detour_subset(main_items):
    triples = [(it.level, it.index, it.map) for it in main_items]
    plans = {(it.level, it.index): it.answer for it in main_items}
    for rule in RULES:
        report = score_items(triples, plans, rule)
        assert report.overall.correct == report.overall.total == 12
        assert sorted(report.levels) == [3, 4, 5, 6, 7, 8]
        assert all(t.correct == t.total == 2 for t in report.levels.values())
        # among items 0-1 only the two level-6 examples need a detour
        assert {(lv, i) for lv, i, m in triples if m.is_detour} == {(6, 0), (6, 1)}
        assert (report.detour.correct, report.detour.total) == (2, 2)


# ---------------------------------------------------------------------------- reports
def test_report_counts_missing_items_and_detours():
    items = [(3, 0, OPEN), (3, 1, DETOUR), (3, 2, GOAL_THEN_HOLE), (4, 0, DETOUR)]
    plans = {(3, 0): "U,R,R", (3, 1): "Action plan: D,R,R,U", (3, 2): [2, 2], (9, 9): "R"}  # (4, 0) missing
    original = score_items(items, plans, "original")
    assert original.results == {(3, 0): True, (3, 1): True, (3, 2): True, (4, 0): False}
    assert (original.levels[3].correct, original.levels[3].total) == (3, 3)
    assert (original.levels[4].correct, original.levels[4].total) == (0, 1)
    assert (original.overall.correct, original.overall.total) == (3, 4)
    assert (original.detour.correct, original.detour.total) == (1, 2)

    strict = score_items(items, plans, "strict")
    assert strict.results == {(3, 0): False, (3, 1): True, (3, 2): False, (4, 0): False}
    assert strict.to_dict() == {
        "rule": "strict",
        "levels": {
            "3": {"correct": 1, "total": 3, "accuracy": pytest.approx(1 / 3)},
            "4": {"correct": 0, "total": 1, "accuracy": 0.0},
        },
        "overall": {"correct": 1, "total": 4, "accuracy": 0.25},
        "detour": {"correct": 1, "total": 2, "accuracy": 0.5},
    }
    json.dumps(strict.to_dict())  # JSON-ready


def test_report_table_is_aligned():
    report = score_items([(3, 0, OPEN), (8, 0, VSPMap(8, (0, 0), (0, 1)))], {(3, 0): "R,R"})
    table = report.format_table()
    lines = table.splitlines()
    assert lines[0] == "rule: original"
    assert lines[1].split() == ["level", "correct", "total", "accuracy"]
    body = lines[3:]
    assert [ln.split() for ln in body] == [
        ["3", "1", "1", "100.0%"],
        ["8", "0", "1", "0.0%"],
        ["overall", "1", "2", "50.0%"],
        ["detour", "0", "0", "-"],
    ]
    assert len({len(ln) for ln in lines[1:]}) == 1  # every row the same width
    assert ScoreReport("original").format_table().splitlines()[-2].split() == ["overall", "0", "0", "-"]


def test_duplicate_items_raise():
    with pytest.raises(ValueError, match="listed twice"):
        score_items([(3, 0, OPEN), (3, 0, DETOUR)], {})


# ---------------------------------------------------------------------------- plans files
def test_read_plans_jsonl_round_trip(tmp_path, main_items):
    path = tmp_path / "plans.jsonl"
    lines = [json.dumps({"level": it.level, "index": it.index, "plan": it.answer, "model": "x"}) for it in main_items]
    letters = list(main_items[3].answer.rstrip().rsplit("Action plan: ", 1)[1].replace(",", ""))
    lines[3] = json.dumps({"level": main_items[3].level, "index": main_items[3].index, "plan": letters})
    lines[5] = json.dumps({"level": main_items[5].level, "index": main_items[5].index, "plan": None})
    path.write_text("\n".join(lines[:6]) + "\n\n" + "\n".join(lines[6:]) + "\n")  # a blank line is skipped
    plans = read_plans_jsonl(path)
    assert len(plans) == 12 and plans[(4, 1)] == letters and plans[(5, 1)] is None
    report = score_items([(it.level, it.index, it.map) for it in main_items], plans)
    assert report.results[(4, 1)] is True and report.results[(5, 1)] is False
    assert (report.overall.correct, report.overall.total) == (11, 12)


@pytest.mark.parametrize(
    ("bad_line", "message"),
    [
        ("{not json", "invalid JSON"),
        ("[1, 2]", "expected a JSON object"),
        ('{"level": 3, "plan": "R"}', "missing key 'index'"),
        ('{"level": "3", "index": 0, "plan": "R"}', "'level' must be an integer"),
        ('{"level": 3, "index": true, "plan": "R"}', "'index' must be an integer"),
        ('{"level": 3, "index": 1.5, "plan": "R"}', "'index' must be an integer"),
        ('{"level": 3, "index": 1, "plan": {"a": 1}}', "'plan' must be a string, a list or null"),
        ('{"level": 3, "index": 0, "plan": "U"}', r"duplicate plan for level 3, index 0 \(first on line 1\)"),
    ],
)
def test_read_plans_jsonl_errors_name_file_and_line(tmp_path, bad_line, message):
    path = tmp_path / "plans.jsonl"
    path.write_text('{"level": 3, "index": 0, "plan": "R,D"}\n\n' + bad_line + "\n")
    with pytest.raises(ValueError, match=message) as info:
        read_plans_jsonl(path)
    assert str(info.value).startswith(f"{path}, line 3: ")
