"""The VSP maze loader on the benchmark's own example files (tests/fixtures/vsp) and on broken copies."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from PIL import Image

from envs.vsp.formats import VSPFormatError
from envs.vsp.loader import SPLITS, TASKS, VSPItem, load_vsp
from envs.vsp.maps import VSPMap

FIXTURES = Path(__file__).parent / "fixtures" / "vsp"
MAZE = FIXTURES / "maze"


@pytest.fixture(scope="module")
def items() -> list[VSPItem]:
    return load_vsp(MAZE)


def by_task(items: list[VSPItem], task: str) -> list[VSPItem]:
    return [it for it in items if it.task == task]


# ---------------------------------------------------------------------------- loading and counts
def test_maze_folder_loads_every_task(items):
    counts = {t: len(by_task(items, t)) for t in TASKS}
    assert counts == {"task-main": 12, "task1": 4, "task2": 2, "task3": 2, "task4": 2}
    assert all(it.split == "example" for it in items)


def test_items_are_sorted_by_task_split_level_index(items):
    def key(it):
        number = int(re.search(r"\d+", it.level_name).group())
        return (TASKS.index(it.task), SPLITS.index(it.split), number, it.index)

    assert [key(it) for it in items] == sorted(key(it) for it in items)
    main = by_task(items, "task-main")
    assert [(it.level_name, it.index) for it in main[:4]] == [("level3", 0), ("level3", 1), ("level4", 0), ("level4", 1)]
    assert main[-1].level_name == "level8"


def test_checkout_root_task_split_and_level_folders(items):
    assert load_vsp(FIXTURES) == items  # a folder holding maze/
    main = load_vsp(MAZE / "task-main")
    assert main == by_task(items, "task-main")
    assert load_vsp(MAZE / "task-main" / "example") == main
    level = load_vsp(MAZE / "task1" / "example" / "level5")
    assert [(it.task, it.split, it.level_name, it.level, it.index) for it in level] == [
        ("task1", "example", "level5", 5, 0),
        ("task1", "example", "level5", 5, 1),
    ]
    assert load_vsp(str(MAZE / "task1" / "example" / "level5")) == level  # str paths too


def test_filters(items):
    assert len(load_vsp(MAZE, task="task1")) == 4
    assert len(load_vsp(MAZE, split="example")) == len(items)
    assert {it.level for it in load_vsp(MAZE / "task-main", levels=[3, 4])} == {3, 4}
    assert {(it.task, it.level) for it in load_vsp(MAZE, levels=3)} == {("task-main", 3), ("task1", 3), ("task3", 3)}
    assert [it.task for it in load_vsp(MAZE, levels=5)].count("task4") == 2  # ints match the board side
    assert {it.level_name for it in load_vsp(MAZE, levels=["level_step3", "level8"])} == {"level_step3", "level8"}


def test_task_main_items(items):
    for it in by_task(items, "task-main"):
        assert isinstance(it.map, VSPMap) and it.map.size == it.level
        assert it.answer.rstrip().splitlines()[-1].startswith("Action plan: ")
        assert it.question is None and it.steps is None and it.candidates is None
        assert it.image_path is not None and it.image_path.name == f"{it.index}.png"
        with Image.open(it.image_path) as img:
            assert img.size == (64 * it.level, 64 * it.level)
    first = by_task(items, "task-main")[0]
    assert first.map == VSPMap(3, (0, 0), (1, 1), frozenset({(2, 1), (2, 2)}))


def test_task1_answers_match_the_map(items):
    for it in by_task(items, "task1"):
        m = re.fullmatch(r"Is there a hole in row (\d+), column (\d+)\?", it.question.strip())
        cell = (int(m.group(1)) - 1, int(m.group(2)) - 1)
        assert it.answer.strip() == ("<Output> Yes" if cell in it.map.holes else "<Output> No")


def test_task2_answers_match_the_map(items):
    for it in by_task(items, "task2"):
        (pr, pc), (gr, gc) = it.map.player, it.map.goal
        parts = [p for p in ("Left" if pc < gc else "Right" if pc > gc else None,
                             "Above" if pr < gr else "Below" if pr > gr else None) if p]
        assert it.answer.strip().splitlines()[-1] == "<Output> " + ",".join(parts)


def test_task3_candidates_and_correct_index(items):
    task3 = by_task(items, "task3")
    assert [it.index for it in task3] == [0, 1]
    assert [it.correct_index for it in task3] == [3, 1]
    assert task3[0].candidate_sources == ((7, 5), (3, 65), (8, 33), (3, 0))
    main3 = {it.index: it.map for it in by_task(items, "task-main") if it.level == 3}
    for it in task3:
        assert it.map is None and it.image_path is not None and it.level == 3
        assert len(it.candidates) == 4
        assert int(it.answer.strip().splitlines()[-1]) == it.correct_index
        right = it.correct_candidate
        assert right is it.candidates[it.correct_index]
        assert right.size == it.level
        # the source line of the right candidate names this item, and it is the task-main example map
        assert it.candidate_sources[it.correct_index] == (it.level, it.index)
        assert right == main3[it.index]
        assert [c.size for c in it.candidates] == [lv for lv, _ in it.candidate_sources]
        assert it.analysis.strip().endswith(f"<Answer> {'ABCD'[it.correct_index]}")


def test_task4_steps_question_and_answer(items):
    task4 = by_task(items, "task4")
    assert len(task4) == 2
    for it in task4:
        assert it.level_name == "level_step3" and it.steps == 3 and it.level == 5 and it.map.size == 5
        assert re.fullmatch(r"[LDRU]{3}", it.question.strip())
        assert len(it.actions) == 3
        state, safe = it.map, True
        for a in it.actions:
            state = state.move(a)
            safe = safe and not state.in_hole
        assert it.answer.strip() == ("Y" if safe else "N")
    assert task4[0].question.strip() == "RLD" and task4[0].actions == [2, 0, 1]


# ---------------------------------------------------------------------------- malformed files
def copy_level(tmp_path: Path, task: str, level: str) -> Path:
    """Copy one fixture level folder into a fresh maze tree under tmp_path; return the copy."""
    dst = tmp_path / "maze" / task / "example" / level
    shutil.copytree(MAZE / task / "example" / level, dst)
    for f in dst.rglob("*"):
        f.chmod(0o644 if f.is_file() else 0o755)
    return dst


def edit_line(path: Path, lineno: int, new: str) -> None:
    lines = path.read_text().split("\n")
    lines[lineno - 1] = new
    path.write_text("\n".join(lines))


def assert_format_error(level_dir: Path, rel: str, line: int | None) -> VSPFormatError:
    with pytest.raises(VSPFormatError) as info:
        load_vsp(level_dir)
    err = info.value
    assert rel in str(err) and err.source.endswith(rel)
    if line is not None:
        assert err.line == line and f"line {line}:" in str(err)
    return err


def test_bad_table_row(tmp_path):
    level = copy_level(tmp_path, "task-main", "level3")
    edit_line(level / "table" / "0.txt", 3, "| Row 2 | _ | * |")
    assert_format_error(level, "table/0.txt", 3)


def test_wrong_cell_symbol(tmp_path):
    level = copy_level(tmp_path, "task-main", "level3")
    edit_line(level / "table" / "1.txt", 4, "| Row 3 | _ | X | _ |")
    err = assert_format_error(level, "table/1.txt", 4)
    assert "'X'" in str(err)


def test_non_square_desc(tmp_path):
    level = copy_level(tmp_path, "task4", "level_step3")
    edit_line(level / "text" / "1.txt", 4, "FFSF")
    assert_format_error(level, "text/1.txt", 4)


def test_bad_special_text_symbol(tmp_path):
    level = copy_level(tmp_path, "task4", "level_step3")
    edit_line(level / "special_text" / "0.txt", 2, "_#_?_")
    assert_format_error(level, "special_text/0.txt", 2)


def test_table_and_pure_text_disagree(tmp_path):
    level = copy_level(tmp_path, "task-main", "level3")
    edit_line(level / "pure_text" / "0.txt", 2, "The player is at: row 1, column 3;")
    err = assert_format_error(level, "pure_text/0.txt", 2)
    assert "table/0.txt" in str(err) and "player" in str(err)

    level = copy_level(tmp_path / "b", "task-main", "level3")
    edit_line(level / "pure_text" / "0.txt", 3, "The hole(s) are at: Row 3, Column 2;")
    err = assert_format_error(level, "pure_text/0.txt", 3)
    assert "holes" in str(err)


def test_desc_and_table_disagree(tmp_path):
    level = copy_level(tmp_path, "task4", "level_step3")
    text = level / "text" / "0.txt"
    rows = text.read_text().split("\n")
    edit_line(text, 2, rows[1].replace("H", "F", 1))  # a hole the table has goes missing in row 2
    err = assert_format_error(level, "text/0.txt", 2)
    assert "row 2" in str(err)


def test_map_size_must_match_level_folder(tmp_path):
    level = copy_level(tmp_path, "task-main", "level3")
    four = copy_level(tmp_path / "b", "task-main", "level4")
    for kind in ("table", "pure_text"):
        shutil.copy(four / kind / "0.txt", level / kind / "0.txt")
    err = assert_format_error(level, "table/0.txt", 1)
    assert "4x4" in str(err)


def test_task3_question_with_a_broken_block(tmp_path):
    level = copy_level(tmp_path, "task3", "level3")
    question = level / "question" / "0.txt"
    lines = question.read_text().split("\n")
    c_at = lines.index("(C)")
    row2 = c_at + 3  # 0-based: label, header, Row 1, Row 2
    assert lines[row2].startswith("| Row 2 |")
    edit_line(question, row2 + 1, "| Row 2 | _ | _ | # | _ | _ | _ | # |")  # 7 cells in an 8-column table
    assert row2 + 1 == 21  # the real line in the file, not the line inside the block
    err = assert_format_error(level, "question/0.txt", 21)
    assert "7 cells" in str(err)


def test_task3_question_labels_and_answer_checked(tmp_path):
    level = copy_level(tmp_path, "task3", "level3")
    question = level / "question" / "1.txt"
    b_line = question.read_text().split("\n").index("(B)") + 1
    edit_line(question, b_line, "(C)")  # (A), (C), (C), (D): (B) missing
    assert_format_error(level, "question/1.txt", b_line)

    level = copy_level(tmp_path / "b", "task3", "level3")
    edit_line(level / "answer" / "0.txt", 5, "4")  # only candidates 0..3
    assert_format_error(level, "answer/0.txt", 5)

    level = copy_level(tmp_path / "c", "task3", "level3")
    edit_line(level / "answer" / "0.txt", 1, "6-5")  # candidate (A) is 7x7
    assert_format_error(level, "answer/0.txt", 1)

    level = copy_level(tmp_path / "d", "task3", "level3")
    edit_line(level / "answer" / "1.txt", 5, "B")
    assert_format_error(level, "answer/1.txt", 5)


def test_task4_question_must_have_the_level_step_count(tmp_path):
    level = copy_level(tmp_path, "task4", "level_step3")
    (level / "question" / "1.txt").write_text("RL")
    assert_format_error(level, "question/1.txt", 1)
    (level / "question" / "1.txt").write_text("RXD")
    assert_format_error(level, "question/1.txt", 1)


# ---------------------------------------------------------------------------- not a VSP path
def test_non_vsp_paths_raise_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope"):
        load_vsp(tmp_path / "nope")
    with pytest.raises(ValueError, match="not a VSP maze folder"):
        load_vsp(tmp_path)
    f = tmp_path / "notes.txt"
    f.write_text("hi")
    with pytest.raises(ValueError, match="not a directory"):
        load_vsp(f)
    (tmp_path / "level3").mkdir()
    with pytest.raises(ValueError, match="must sit at <task>/<split>/level3"):
        load_vsp(tmp_path / "level3")
    (tmp_path / "maze" / "task1" / "example" / "level3").mkdir(parents=True)
    with pytest.raises(ValueError, match="no VSP items found"):
        load_vsp(tmp_path / "maze")


def test_bad_filters_raise():
    with pytest.raises(ValueError, match="unknown task"):
        load_vsp(MAZE, task="task9")
    with pytest.raises(ValueError, match="unknown split"):
        load_vsp(MAZE, split="test")
    with pytest.raises(ValueError, match="no VSP items found"):
        load_vsp(MAZE / "task-main", task="task1")
    with pytest.raises(ValueError, match="no VSP items found"):
        load_vsp(MAZE, split="maps")
