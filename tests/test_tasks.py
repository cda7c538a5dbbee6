"""VSP maze sub-tasks (task1 ... task4): generation, the benchmark's file layout and wording, eval.py scoring."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pytest

from envs.vsp.formats import to_desc_text, to_special_text
from envs.vsp.loader import VSPItem, load_vsp
from envs.vsp.maps import LEVELS, VSPMap, generate_map
from envs.vsp.render import load_png, render_map
from envs.vsp.task_scoring import (
    TaskReport,
    gold_answer,
    item_level,
    parse_task1,
    parse_task3,
    parse_task4,
    score_answer,
    score_task1,
    score_task2,
    score_task3,
    score_task4,
    score_task_items,
)
from envs.vsp.task_texts import (
    LETTERS,
    parse_task1_question,
    parse_yes_no_answer,
    task1_question,
    task2_answer,
    task2_components,
    task3_analysis,
    task3_answer,
    task3_question,
    task4_analysis,
    task4_question,
    yes_no_answer,
)
from envs.vsp.tasks import (
    SUB_TASKS,
    TASK4_STEPS,
    generate_task_items,
    level_folder,
    task_file_kinds,
    task_levels,
    task_rng,
    write_task_items,
)
from latentum_world.cli import main

MAZE = Path(__file__).parent / "fixtures" / "vsp" / "maze"
#: The rows and columns each action moves by, written out again for an independent replay.
DELTA = {"L": (0, -1), "D": (1, 0), "R": (0, 1), "U": (-1, 0)}


@pytest.fixture(scope="module")
def examples() -> dict[str, list[VSPItem]]:
    return {task: load_vsp(MAZE, task=task) for task in SUB_TASKS}


def strip_paths(items: list[VSPItem]) -> list[VSPItem]:
    return [dataclasses.replace(it, image_path=None) for it in items]


def own_answer(item: VSPItem) -> str:
    """The example's own worked answer: the analysis where the task has one, else the answer file."""
    return item.analysis if item.analysis is not None else item.answer


# ---------------------------------------------------------------------------- the examples' files and wording
def test_every_example_scores_correct_with_its_own_answer(examples):
    for task, items in examples.items():
        assert items, task
        for it in items:
            result = score_answer(it, own_answer(it))
            assert result.correct and result.valid, (task, it.level_name, it.index)


def test_deliberately_wrong_answers_score_wrong(examples):
    flip = {"Left": "Right", "Right": "Left", "Above": "Below", "Below": "Above"}
    for task, items in examples.items():
        for it in items:
            gold = gold_answer(it)
            if task in ("task1", "task4"):
                wrong = "<Output> " + ("No" if gold else "Yes")
            elif task == "task2":
                wrong = "<Output> " + ",".join(flip[c] for c in gold)
            else:
                wrong = f"<Answer> {LETTERS[(gold + 1) % 4]}"
            assert not score_answer(it, wrong).correct, (task, it.level_name, it.index)
            assert not score_answer(it, None).correct


def test_golds_agree_with_the_maps(examples):
    for it in examples["task1"]:
        assert parse_yes_no_answer(it.answer) == (parse_task1_question(it.question) in it.map.holes)
    for it in examples["task4"]:
        assert parse_yes_no_answer(it.answer) == replay_is_safe(it.map, it.question)
    for it in examples["task3"]:  # the image shows the right candidate and no other
        image = load_png(it.image_path)
        assert [np.array_equal(image, render_map(c)) if render_map(c).shape == image.shape else False
                for c in it.candidates] == [k == it.correct_index for k in range(4)]


def test_templates_reproduce_the_example_files(examples):
    for it in examples["task1"]:
        cell = parse_task1_question(it.question)
        assert task1_question(cell) == it.question
        assert yes_no_answer(cell in it.map.holes, output_line=True) == it.answer
    for it in examples["task2"]:  # the fixtures are level 4, whose examples write the horizontal component first
        assert task2_answer(it.map, "example") == it.answer
        assert task2_answer(it.map) == it.answer.splitlines()[-1]
    for it in examples["task3"]:
        question = (MAZE / "task3" / "example" / it.level_name / "question" / f"{it.index}.txt").read_text()
        assert task3_question(it.candidates) == question
        assert task3_answer(it.candidate_sources, it.correct_index) == it.answer
        assert task3_analysis(it.candidates, it.correct_index) == it.analysis
    for it in examples["task4"]:
        hole_line = it.analysis.splitlines()[2]
        listed = [(int(r) - 1, int(c) - 1) for r, c in re.findall(r"Row (\d+), Column (\d+)", hole_line)]
        assert task4_analysis(it.map, it.actions, listed) == it.analysis
        assert task4_question(it.actions) == it.question
        assert yes_no_answer(parse_yes_no_answer(it.answer)) == it.answer
        folder = MAZE / "task4" / "example" / it.level_name
        assert to_desc_text(it.map) == (folder / "text" / f"{it.index}.txt").read_text()
        assert to_special_text(it.map) == (folder / "special_text" / f"{it.index}.txt").read_text()


def test_example_folders_hold_the_files_written_for_the_example_split():
    for task in SUB_TASKS:
        for level_dir in sorted((MAZE / task / "example").iterdir()):
            level = int(re.search(r"\d+", level_dir.name).group())
            side = 5 if task == "task4" else level
            kinds = {d.name for d in level_dir.iterdir() if d.is_dir()}
            assert kinds == {"img", *task_file_kinds(task, "example", side)}, level_dir


# ---------------------------------------------------------------------------- generation
@pytest.mark.parametrize("split", ["maps", "example"])
@pytest.mark.parametrize("task", SUB_TASKS)
def test_generated_items_round_trip_through_the_files(tmp_path, task, split):
    levels = (1, 9) if task == "task4" else (3, 8)
    for level in levels:
        items = generate_task_items(task, task_rng(5, task, level), level, 4, split)
        level_dir = write_task_items(tmp_path / "maze", task, level_folder(task, level), items)
        assert level_dir == tmp_path / "maze" / task / split / level_folder(task, level)
        back = load_vsp(level_dir)
        assert strip_paths(back) == items
        kinds = {d.name for d in level_dir.iterdir()}
        assert kinds == {"img", *task_file_kinds(task, split, 5 if task == "task4" else level)}
        for it in back:
            board = it.map if it.map is not None else it.correct_candidate
            np.testing.assert_array_equal(load_png(it.image_path), render_map(board, 64))
            assert score_answer(it, own_answer(it) if split == "example" else None).correct == (split == "example")


def test_generated_items_score_correct_with_their_gold():
    for task in SUB_TASKS:
        level = task_levels(task)[1]
        items = generate_task_items(task, task_rng(0, task, level), level, 6)
        for it in items:
            gold = gold_answer(it)
            answer = {
                "task1": lambda: "<Output> " + ("Yes" if gold else "No"),
                "task2": lambda: "<Output> " + ",".join(gold),
                "task3": lambda: f"<Answer> {LETTERS[gold]}",
                "task4": lambda: "<Output> " + ("Yes" if gold else "No"),
            }[task]()
            assert score_answer(it, answer).correct


def test_task1_boards_hold_half_holes_and_any_cell_is_asked():
    asked = set()
    for level in LEVELS:
        for it in generate_task_items("task1", task_rng(2, "task1", level), level, 30):
            assert len(it.map.holes) == (level * level + 1) // 2  # 5, 8, 13, 18, 25, 32 as in the benchmark
            cell = parse_task1_question(it.question)
            assert it.answer == ("Y" if cell in it.map.holes else "N")
            asked.add("player" if cell == it.map.player else "goal" if cell == it.map.goal else it.map.cell_kind(cell))
    assert asked == {"player", "goal", "hole", "ice"}


def test_task2_answers_put_the_horizontal_component_first():
    assert task2_answer(VSPMap(4, (3, 3), (0, 0))) == "<Output> Right,Below"
    assert task2_answer(VSPMap(4, (0, 1), (0, 3))) == "<Output> Left"
    assert task2_answer(VSPMap(4, (0, 2), (3, 2))) == "<Output> Above"
    text = task2_answer(VSPMap(4, (0, 2), (3, 2)), "example")
    assert "The player is neither to the left nor to the right of the goal." in text


def test_task3_candidates_one_right_one_same_size_two_other_sizes():
    for level in (3, 6):
        for it in generate_task_items("task3", task_rng(3, "task3", level), level, 20):
            right = it.correct_candidate
            assert it.candidate_sources[it.correct_index] == (level, it.index)
            others = [c for k, c in enumerate(it.candidates) if k != it.correct_index]
            assert all(c != right for c in others)
            same = [c for c in others if c.size == level]
            assert len(same) == 1 and same[0].player != right.player
            sizes = sorted(c.size for c in others if c.size != level)
            assert len(set(sizes)) == 2 and all(s in LEVELS for s in sizes)
            assert [lv for lv, _ in it.candidate_sources] == [c.size for c in it.candidates]
            assert all(c.solvable for c in it.candidates)


def replay_is_safe(m: VSPMap, letters: str) -> bool:
    """Independent task4 replay: off-edge moves do nothing, the goal is not terminal, a hole is fatal."""
    r, c = m.player
    for letter in letters:
        dr, dc = DELTA[letter]
        if 0 <= r + dr < m.size and 0 <= c + dc < m.size:
            r, c = r + dr, c + dc
        if (r, c) in m.holes:
            return False
    return True


def test_task4_gold_matches_an_independent_replay_and_labels_are_balanced():
    for steps in TASK4_STEPS:
        items = generate_task_items("task4", task_rng(4, "task4", steps), steps, 12)
        assert sum(it.answer == "Y" for it in items) == 6
        for it in items:
            assert it.level == 5 and it.steps == steps and len(it.question) == steps
            assert (it.answer == "Y") == replay_is_safe(it.map, it.question)
            r, c = it.map.player
            for letter in it.question:  # the benchmark's walks never push against the edge
                r, c = r + DELTA[letter][0], c + DELTA[letter][1]
                assert 0 <= r < 5 and 0 <= c < 5


def test_seeded_generation_is_reproducible_and_levels_are_independent():
    for task in SUB_TASKS:
        a, b = task_levels(task)[:2]
        first = generate_task_items(task, task_rng(7, task, a), a, 3)
        assert generate_task_items(task, task_rng(7, task, a), a, 3) == first
        assert generate_task_items(task, task_rng(8, task, a), a, 3) != first
        assert generate_task_items(task, task_rng(7, task, b), b, 3) != first
    assert generate_map(task_rng(1, "task-main", 4), 4) == generate_map(np.random.default_rng([1, 4]), 4)


def test_bad_arguments_are_refused(tmp_path):
    with pytest.raises(ValueError, match="task4 has no level 4"):
        generate_task_items("task4", task_rng(0, "task4", 4), 4, 1)
    with pytest.raises(ValueError, match="unknown sub-task"):
        generate_task_items("task-main", np.random.default_rng(0), 3, 1)
    items = generate_task_items("task2", task_rng(0, "task2", 3), 3, 1)
    with pytest.raises(ValueError, match="written to task2/level4"):
        write_task_items(tmp_path, "task2", "level4", items)


# ---------------------------------------------------------------------------- eval.py parsing rules
def test_task1_parsing():
    assert parse_task1("<Interpret> ...\n<Output> Yes") == "yes"
    assert parse_task1('<Output> "(No)."\n') == "no"
    assert parse_task1("<Output> Yes, there is a hole.") is None  # trailing prose: invalid
    assert parse_task1("Output: yes") == "yes"  # no marker: eval.py reads from offset 7
    assert parse_task1("Yes") is None
    assert score_task1("<Output> no", hole=False).correct and not score_task1("<Output> no", hole=True).correct
    assert score_task1(None, hole=True) == score_task1("garbage", hole=True)


def test_task2_full_and_partial_credit():
    diagonal = VSPMap(4, (0, 0), (2, 3))  # Left, Above
    same_row = VSPMap(4, (1, 3), (1, 0))  # Right only
    same_col = VSPMap(4, (3, 2), (0, 2))  # Below only
    assert task2_components(diagonal) == ("Left", "Above")
    r = score_task2("<Output> Above, Left.", diagonal)
    assert (r.correct, r.parts_correct, r.parts_total) == (True, 2, 2)
    r = score_task2("<Output> Left,Below", diagonal)
    assert (r.correct, r.parts_correct, r.parts_total) == (False, 1, 2)
    r = score_task2("<Output> Right", same_row)
    assert (r.correct, r.parts_correct, r.parts_total) == (True, 1, 1)
    r = score_task2("<Output> Right,Above", same_row)  # an extra component is not penalised
    assert (r.correct, r.parts_correct, r.parts_total) == (True, 1, 1)
    r = score_task2("<Output>\n**Below**", same_col)
    assert (r.correct, r.parts_correct) == (True, 1)
    r = score_task2("<Output> Left", same_col)
    assert (r.correct, r.parts_correct, r.parts_total) == (False, 0, 1)
    r = score_task2("<Output> below", same_col)  # case-sensitive
    assert not r.correct and r.valid
    r = score_task2("Output: Below", same_col)  # no '<Output> ' marker: invalid, still counted
    assert (r.correct, r.valid, r.parts_total) == (False, False, 1)


def test_task3_parsing():
    assert parse_task3("<Analysis> ...\n<Answer> (B)") == "B"
    assert parse_task3("**Answer:** C") == "C"
    assert parse_task3("Final Answer: `D`.") == "D"
    assert parse_task3("<Answer> b") is None
    assert parse_task3("<Answer> B, because ...") is None
    assert parse_task3("abcd A") == "A"  # no marker: eval.py reads from offset 5
    assert score_task3("<Answer> C", 2).correct and not score_task3("<Answer> C", 1).correct


def test_task4_parsing_reads_ten_characters():
    assert parse_task4("<Analysis> ...\n<Output> Yes") == ("yes", True)
    assert parse_task4("**Output**: No.") == ("no", True)
    assert score_task4("<Output> No, it is not safe", safe=False).correct
    assert not score_task4("<Output> Yes, not", safe=True).correct  # 'no' (of 'not') in the window
    assert score_task4("<Output>      Yes, definitely", safe=True).correct
    assert not score_task4("<Output>           Yes", safe=True).correct  # beyond the 10-character window
    r = score_task4("It is safe. yes", safe=True)  # no marker: invalid, yet eval.py still reads text[5:15]
    assert (r.valid, r.correct) == (False, True)
    assert parse_task4("12345no") == ("no", False)


# ---------------------------------------------------------------------------- reports
def test_task_report_per_level_and_overall():
    items = generate_task_items("task2", task_rng(9, "task2", 3), 3, 4)
    items += generate_task_items("task2", task_rng(9, "task2", 5), 5, 2)
    answers = {(it.level, it.index): "<Output> " + ",".join(task2_components(it.map)) for it in items}
    answers[(3, 0)] = None  # missing: invalid and wrong
    answers[(5, 1)] = "<Output> Left,Right,Above,Below"  # everything: full credit under eval.py
    report = score_task_items(items, answers)
    assert isinstance(report, TaskReport) and report.task == "task2"
    d = json.loads(json.dumps(report.to_dict()))
    assert d["levels"]["3"]["level_name"] == "level3"
    assert (d["levels"]["3"]["correct"], d["levels"]["3"]["total"], d["levels"]["3"]["invalid"]) == (3, 4, 1)
    assert d["overall"]["correct"] == 5 and d["overall"]["total"] == 6
    assert d["overall"]["parts"]["total"] == sum(len(task2_components(it.map)) for it in items)
    table = report.format_table()
    assert table.splitlines()[0] == "task: task2" and "part acc" in table and "overall" in table

    steps = generate_task_items("task4", task_rng(9, "task4", 3), 3, 2)
    report = score_task_items(steps, {(3, 0): "<Output> " + ("Yes" if gold_answer(steps[0]) else "No")})
    assert item_level(steps[0]) == 3
    assert report.to_dict()["levels"] == {
        "3": {"level_name": "level_step3", "correct": 1, "total": 2, "accuracy": 0.5, "invalid": 1}
    }
    with pytest.raises(ValueError, match="listed twice"):
        score_task_items(steps + steps[:1], {})
    with pytest.raises(ValueError, match="several tasks"):
        score_task_items(steps + items, {})


# ---------------------------------------------------------------------------- CLI
def test_cli_generates_every_task(tmp_path, capsys):
    out = tmp_path / "gen"
    for task in SUB_TASKS:
        level = ["--level", "3"] if task != "task4" else []
        assert main(["vsp", "generate", "--task", task, *level, "--count", "2", "--seed", "4", "--out", str(out)]) == 0
    for task in ("task1", "task2", "task3"):
        items = load_vsp(out / "maze", task=task)
        assert strip_paths(items) == generate_task_items(task, task_rng(4, task, 3), 3, 2)
    items = load_vsp(out / "maze", task="task4")
    assert sorted({it.level_name for it in items}) == sorted(f"level_step{k}" for k in TASK4_STEPS)
    step7 = [it for it in items if it.steps == 7]
    assert strip_paths(step7) == generate_task_items("task4", task_rng(4, "task4", 7), 7, 2)

    assert main(["vsp", "generate", "--task", "task3", "--level", "4", "--count", "1", "--split", "example",
                 "--out", str(out)]) == 0
    (item,) = load_vsp(out / "maze" / "task3" / "example")
    assert item.analysis.endswith(f"<Answer> {LETTERS[item.correct_index]}")

    capsys.readouterr()
    assert main(["vsp", "generate", "--task", "task4", "--level", "4", "--count", "1", "--out", str(out)]) == 2
    assert "step counts 1, 3, 5, 7, 9" in capsys.readouterr().err
    assert main(["vsp", "generate", "--task", "task1", "--hole-prob", "0.5", "--count", "1", "--out", str(out)]) == 2
    assert main(["vsp", "generate", "--level", "9", "--count", "1", "--out", str(out)]) == 2
