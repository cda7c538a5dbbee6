"""Generate the VSP maze sub-task items (task1 ... task4) as the benchmark drew them, and write them in its layout.

Each generator returns :class:`~envs.vsp.loader.VSPItem` objects holding the files' exact texts, so that
:func:`write_task_items` followed by :func:`~envs.vsp.loader.load_vsp` gives the same items back (with
``image_path`` filled in). The rules below were read off the benchmark's released files:

* task1 (is there a hole at a cell?): player and goal on two distinct uniform cells, then exactly
  ``ceil(n*n / 2)`` of the other cells are holes (5, 8, 13, 18, 25, 32 for levels 3..8, in all 48
  examples and the test maps spot-checked); the map need not be solvable (31 of the 48 examples are
  not). The cell asked about is uniform over the board, so it can be the player's or the goal's.
* task2 (player relative to goal): a main-task map (:func:`~envs.vsp.maps.generate_map`).
* task3 (which table matches the image?): four main-task maps: the image's, one more of the same
  size with the player elsewhere, and two of two other, distinct sizes; the right one at a uniform
  position, the rest shuffled.
* task4 (is this action sequence safe?): a 5x5 main-task map and a walk of ``k`` moves that never
  leaves the board; exactly half the items of a level are unsafe. A safe walk never steps into a
  hole (the goal does not stop it); an unsafe one is safe up to a uniform step ``t``, and the cell
  it first enters at step ``t`` (never the start or the goal) becomes a hole; later moves are free.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from envs.vsp.formats import to_desc_text, to_pure_text, to_special_text, to_table
from envs.vsp.loader import TASK4_SIZE, VSPItem
from envs.vsp.maps import ACTION_DELTAS, LEVELS, Cell, VSPMap, generate_map
from envs.vsp.render import render_map
from envs.vsp.task_texts import (
    task1_question,
    task2_answer,
    task3_analysis,
    task3_answer,
    task3_question,
    task4_analysis,
    task4_question,
    yes_no_answer,
)

#: The sub-tasks generated here (task-main maps come from :func:`~envs.vsp.maps.generate_map` directly).
SUB_TASKS = ("task1", "task2", "task3", "task4")
#: task4's levels: the length of the action sequence.
TASK4_STEPS = (1, 3, 5, 7, 9)
#: task3's candidate sources name benchmark maps ``level-index`` with index below this (100 maps per level).
SOURCE_POOL = 100
_SEED_IDS = {"task1": 1, "task2": 2, "task3": 3, "task4": 4}


def task_levels(task: str) -> tuple[int, ...]:
    """The level numbers of a task: board sides 3..8, or task4's step counts 1, 3, 5, 7, 9."""
    return TASK4_STEPS if task == "task4" else LEVELS


def level_folder(task: str, level: int) -> str:
    """The level folder's name: ``level5``, or ``level_step5`` for task4 (``level`` = the step count)."""
    return f"level_step{level}" if task == "task4" else f"level{level}"


def task_rng(seed: int, task: str, level: int) -> np.random.Generator:
    """The random stream of one (seed, task, level), independent of every other level and task.

    ``task-main`` keeps the stream ``vsp generate`` always used, ``default_rng([seed, level])``.
    """
    if task == "task-main":
        return np.random.default_rng([seed, level])
    return np.random.default_rng([seed, _SEED_IDS[task], level])


def _check(task: str, level: int, count: int, split: str) -> None:
    if level not in task_levels(task):
        raise ValueError(f"{task} has no level {level!r}: expected one of {task_levels(task)}")
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    if split not in ("maps", "example"):
        raise ValueError(f"split must be 'maps' or 'example', got {split!r}")


# ---------------------------------------------------------------------------- task1
def generate_task1_map(rng: np.random.Generator, level: int) -> VSPMap:
    """A task1 board: distinct uniform player and goal, exactly ``ceil(n*n/2)`` holes elsewhere, solvable or not."""
    n = int(level)
    player, goal, *others = rng.permutation(n * n)
    holes = rng.choice(np.array(others), size=(n * n + 1) // 2, replace=False)
    return VSPMap(n, divmod(int(player), n), divmod(int(goal), n), frozenset(divmod(int(h), n) for h in holes))


def task1_items(rng: np.random.Generator, level: int, count: int, split: str = "maps") -> list[VSPItem]:
    """``count`` task1 items of one level: a board and a uniformly drawn cell to ask about."""
    _check("task1", level, count, split)
    items = []
    for i in range(count):
        m = generate_task1_map(rng, level)
        cell = divmod(int(rng.integers(level * level)), level)
        answer = yes_no_answer(cell in m.holes, output_line=split == "example")
        items.append(_item("task1", split, level, i, m, question=task1_question(cell), answer=answer))
    return items


# ---------------------------------------------------------------------------- task2
def task2_items(rng: np.random.Generator, level: int, count: int, split: str = "maps") -> list[VSPItem]:
    """``count`` task2 items of one level: main-task boards with the ``<Output> Left,Above`` answer."""
    _check("task2", level, count, split)
    maps = [generate_map(rng, level) for _ in range(count)]
    return [_item("task2", split, level, i, m, answer=task2_answer(m, split)) for i, m in enumerate(maps)]


# ---------------------------------------------------------------------------- task3
def task3_candidates(
    rng: np.random.Generator, level: int, index: int
) -> tuple[tuple[VSPMap, ...], int, tuple[tuple[int, int], ...]]:
    """Four candidate boards for the image of board ``(level, index)``.

    :returns: ``(candidates, correct_index, sources)``; the right board's source is ``(level, index)``,
        the others get their own level and a random index below :data:`SOURCE_POOL`.
    """
    gold = generate_map(rng, level)
    rival = generate_map(rng, level)
    while rival.player == gold.player:
        rival = generate_map(rng, level)
    other_levels = rng.choice([lv for lv in LEVELS if lv != level], size=2, replace=False)
    rival_index = int(rng.integers(SOURCE_POOL - 1))
    rival_index += int(rival_index >= index)  # any index but the image's own
    wrong = [(rival, (level, rival_index))]
    wrong += [(generate_map(rng, int(lv)), (int(lv), int(rng.integers(SOURCE_POOL)))) for lv in other_levels]
    slots = [wrong[k] for k in rng.permutation(3)]
    correct = int(rng.integers(4))
    slots.insert(correct, (gold, (level, index)))
    return tuple(board for board, _ in slots), correct, tuple(source for _, source in slots)


def task3_items(rng: np.random.Generator, level: int, count: int, split: str = "maps") -> list[VSPItem]:
    """``count`` task3 items of one level. Like the benchmark's, they hold no map file: ``map`` is ``None``
    and the image shows :attr:`~envs.vsp.loader.VSPItem.correct_candidate`."""
    _check("task3", level, count, split)
    items = []
    for i in range(count):
        candidates, correct, sources = task3_candidates(rng, level, i)
        items.append(
            VSPItem(
                task="task3",
                split=split,
                level_name=level_folder("task3", level),
                level=level,
                index=i,
                map=None,
                image_path=None,
                question=task3_question(candidates),
                answer=task3_answer(sources, correct),
                candidates=candidates,
                correct_index=correct,
                candidate_sources=sources,
                analysis=task3_analysis(candidates, correct) if split == "example" else None,
            )
        )
    return items


# ---------------------------------------------------------------------------- task4
def is_safe(m: VSPMap, actions: Sequence[int]) -> bool:
    """task4's gold: the replay (off-edge moves do nothing, the goal does not stop it) never enters a hole."""
    state = m
    for a in actions:
        state = state.move(a)
        if state.in_hole:
            return False
    return True


def _board_moves(m: VSPMap, cell: Cell) -> list[tuple[int, Cell]]:
    """The moves from ``cell`` that stay on the board, as ``(action, next cell)``."""
    moves = [(a, (cell[0] + dr, cell[1] + dc)) for a, (dr, dc) in enumerate(ACTION_DELTAS)]
    return [(a, nxt) for a, nxt in moves if m.on_board(nxt)]


def _walk(
    rng: np.random.Generator, m: VSPMap, steps: int, trap_step: int | None
) -> tuple[list[int], Cell | None] | None:
    """One task4 walk on base board ``m`` (see the module notes); ``None`` when it gets stuck."""
    cell, visited, actions, trap = m.player, {m.player}, [], None
    for t in range(1, steps + 1):
        moves = _board_moves(m, cell)
        if trap_step is None or t < trap_step:
            moves = [(a, nxt) for a, nxt in moves if nxt not in m.holes]
        elif t == trap_step:
            moves = [(a, nxt) for a, nxt in moves if nxt not in visited and nxt != m.goal]
        if not moves:
            return None
        a, cell = moves[int(rng.integers(len(moves)))]
        visited.add(cell)
        actions.append(a)
        trap = cell if t == trap_step else trap
    return actions, trap


def task4_instance(rng: np.random.Generator, steps: int, safe: bool) -> tuple[VSPMap, list[int], list[Cell]]:
    """A board and ``steps`` actions whose answer is ``safe``.

    :returns: ``(board, actions, listed_holes)``; ``listed_holes`` is the hole list in the order the
        benchmark's analysis prints it (the base board's holes, then the trap, even if already a hole).
    """
    while True:
        base = generate_map(rng, TASK4_SIZE)
        trap_step = None if safe else int(rng.integers(1, steps + 1))
        walk = _walk(rng, base, steps, trap_step)
        if walk is None:
            continue
        actions, trap = walk
        listed = base.sorted_holes() + ([trap] if trap is not None else [])
        return VSPMap(TASK4_SIZE, base.player, base.goal, frozenset(listed)), actions, listed


def task4_items(rng: np.random.Generator, steps: int, count: int, split: str = "maps") -> list[VSPItem]:
    """``count`` task4 items of level ``level_step{steps}``; ``ceil(count/2)`` safe ones, in random order."""
    _check("task4", steps, count, split)
    safe_flags = rng.permutation(np.arange(count) < (count + 1) // 2)
    items = []
    for i, safe in enumerate(safe_flags):
        m, actions, listed = task4_instance(rng, steps, bool(safe))
        analysis = task4_analysis(m, actions, listed) if split == "example" else None
        question, answer = task4_question(actions), yes_no_answer(bool(safe))
        items.append(_item("task4", split, steps, i, m, question=question, answer=answer, analysis=analysis))
    return items


_GENERATORS = {"task1": task1_items, "task2": task2_items, "task3": task3_items, "task4": task4_items}


def generate_task_items(
    task: str, rng: np.random.Generator, level: int, count: int, split: str = "maps"
) -> list[VSPItem]:
    """``count`` items of ``task`` at ``level`` (task4: the step count), numbered 0..count-1."""
    if task not in _GENERATORS:
        raise ValueError(f"unknown sub-task {task!r}: expected one of {', '.join(SUB_TASKS)}")
    return _GENERATORS[task](rng, level, count, split)


def _item(
    task: str,
    split: str,
    level: int,
    index: int,
    m: VSPMap,
    question: str | None = None,
    answer: str | None = None,
    analysis: str | None = None,
) -> VSPItem:
    """A generated item with a map file (task1, task2, task4); ``level`` is task4's step count."""
    return VSPItem(
        task=task,
        split=split,
        level_name=level_folder(task, level),
        level=m.size,
        index=index,
        map=m,
        image_path=None,
        question=question,
        answer=answer,
        steps=level if task == "task4" else None,
        analysis=analysis,
    )


# ---------------------------------------------------------------------------- writing
#: The files of a test item (split ``maps``), besides ``img``.
TASK_FILES = {
    "task1": ("table", "pure_text", "question", "answer"),
    "task2": ("table", "pure_text", "answer"),  # the benchmark has no task2 answer files; written for the gold
    "task3": ("question", "answer"),
    "task4": ("table", "pure_text", "text", "special_text", "question", "answer"),
}
_MAP_WRITERS = {"table": to_table, "pure_text": to_pure_text, "text": to_desc_text, "special_text": to_special_text}


def task_file_kinds(task: str, split: str, level: int) -> tuple[str, ...]:
    """The text files (kind folders) an item has; the in-context examples add ``analysis`` (task3, task4)
    and, in task1 from level 4 on, the ``text`` and ``special_text`` boards."""
    kinds = TASK_FILES[task]
    if split == "example":
        if task == "task1" and level >= 4:
            kinds += ("text", "special_text")
        if task in ("task3", "task4"):
            kinds += ("analysis",)
    return kinds


def write_task_items(out_maze_dir: str | Path, task: str, level_name: str, items: Sequence[VSPItem]) -> Path:
    """Write items as ``out_maze_dir/<task>/<split>/<level_name>/<kind>/<index>.txt`` and ``img/<index>.png``.

    The split comes from the items (all must share it); images are :func:`~envs.vsp.render.render_map`
    at 64 px per cell. Returns the level folder.

    :raises ValueError: an unknown task, or an item of another task, level or split, or one missing a file's text.
    """
    if task not in TASK_FILES:
        raise ValueError(f"unknown sub-task {task!r}: expected one of {', '.join(SUB_TASKS)}")
    splits = {it.split for it in items}
    if len(splits) > 1:
        raise ValueError(f"items of several splits {sorted(splits)}; write one split at a time")
    split = splits.pop() if splits else "maps"
    level_dir = Path(out_maze_dir) / task / split / level_name
    for it in items:
        if (it.task, it.level_name) != (task, level_name):
            raise ValueError(f"item {it.task}/{it.level_name}/{it.index} written to {task}/{level_name}")
        board = it.map if it.map is not None else it.correct_candidate
        if board is None:
            raise ValueError(f"item {task}/{level_name}/{it.index} has neither a map nor a correct candidate")
        for kind in task_file_kinds(task, split, board.size):
            text = _MAP_WRITERS[kind](board) if kind in _MAP_WRITERS else getattr(it, kind)
            if text is None:
                raise ValueError(f"item {task}/{level_name}/{it.index} has no {kind} text")
            (level_dir / kind).mkdir(parents=True, exist_ok=True)
            (level_dir / kind / f"{it.index}.txt").write_text(text, encoding="utf-8")
        (level_dir / "img").mkdir(parents=True, exist_ok=True)
        Image.fromarray(render_map(board, 64)).save(level_dir / "img" / f"{it.index}.png")
    return level_dir
