"""The wording of the VSP maze sub-tasks' question, answer and analysis files (task1 ... task4).

Every function returns a file's text exactly as the benchmark stores it (no trailing newline unless
the benchmark's file has one); all were checked byte for byte against the benchmark's 8 examples per
level (``maze/<task>/example/...``). The test items (``maze/<task>/maps/...``) carry no analysis, and
their task1/task4 answer files hold a bare ``Y`` or ``N``, which is what the benchmark's eval.py reads
as the gold answer; the in-context examples spell task1's answer ``<Output> Yes``.
"""

from __future__ import annotations

import re
from typing import Iterable, Sequence

from envs.vsp.formats import VSPFormatError, to_table
from envs.vsp.maps import ACTION_NAMES, Cell, VSPMap

#: task3's candidate labels, in order.
LETTERS = "ABCD"


def _at(cell: Cell, row: str = "Row", col: str = "Column") -> str:
    """A 0-based cell as the files print it: ``Row 2, Column 3`` (1-based)."""
    return f"{row} {cell[0] + 1}, {col} {cell[1] + 1}"


# ---------------------------------------------------------------------------- task1
_TASK1_QUESTION_RE = re.compile(r"^Is there a hole in row (\d+), column (\d+)\?$")


def task1_question(cell: Cell) -> str:
    """``Is there a hole in row r, column c?`` for a 0-based cell."""
    return f"Is there a hole in {_at(cell, 'row', 'column')}?"


def parse_task1_question(text: str, source: str | None = None) -> Cell:
    """The 0-based cell asked about in a task1 question."""
    m = _TASK1_QUESTION_RE.match(text.strip())
    if not m:
        raise VSPFormatError(f"expected 'Is there a hole in row r, column c?', got {text.strip()!r}", source, 1)
    return (int(m.group(1)) - 1, int(m.group(2)) - 1)


def yes_no_answer(yes: bool, output_line: bool = False) -> str:
    """task1/task4 gold answer file: ``Y``/``N``, or with ``output_line`` ``<Output> Yes``/``No`` (task1's examples)."""
    if output_line:
        return "<Output> Yes" if yes else "<Output> No"
    return "Y" if yes else "N"


def parse_yes_no_answer(text: str, source: str | None = None) -> bool:
    """Read a task1/task4 gold answer file: ``Y``/``N`` (test items and task4 examples) or ``<Output> Yes``/``No``."""
    value = text.strip()
    if value.startswith("<Output>"):
        value = value[len("<Output>") :].strip()
    if value in ("Y", "Yes"):
        return True
    if value in ("N", "No"):
        return False
    raise VSPFormatError(f"expected a Y/N answer (or '<Output> Yes'/'<Output> No'), got {text.strip()!r}", source, 1)


# ---------------------------------------------------------------------------- task2
def task2_components(m: VSPMap) -> tuple[str, ...]:
    """Where the player is relative to the goal, horizontal component first: ``("Left", "Above")``.

    A component is left out when player and goal share that row (column), as eval.py's gold set does.
    """
    (pr, pc), (gr, gc) = m.player, m.goal
    horizontal = ("Left",) if pc < gc else ("Right",) if pc > gc else ()
    vertical = ("Above",) if pr < gr else ("Below",) if pr > gr else ()
    return horizontal + vertical


def task2_answer(m: VSPMap, split: str = "maps") -> str:
    """task2's answer: ``<Output> Left,Above``; the examples put an ``<Interpret>`` paragraph first.

    The benchmark's test items have no task2 answer file (eval.py derives the gold from the map); this
    project writes the bare output line there. Note the level-8 examples order the output vertical
    first (``Below,Right``); this always writes horizontal first, which eval.py scores the same.
    """
    output = "<Output> " + ",".join(task2_components(m))
    if split != "example":
        return output
    pr, pc, gr, gc = m.player[0] + 1, m.player[1] + 1, m.goal[0] + 1, m.goal[1] + 1
    if pr == gr:
        rows = (
            f"The player is at row {pr}, and the goal is at row {gr}. "
            "The player is neither above nor below the goal."
        )
    else:
        first, word = ("player", "above") if pr < gr else ("goal", "below")
        rows = (
            f"The player is at row {pr}, and the goal is at row {gr}. Remember that row number is counted from top "
            f"to bottom. Comparing player (row={pr}) with goal (row={gr}), {first} is counted first, meaning "
            f"{first} is higher. Therefore, the player is {word} the goal."
        )
    if pc == gc:
        cols = (
            f"The player is at column {pc}, and the goal is at column {gc}. "
            "The player is neither to the left nor to the right of the goal."
        )
    else:
        first, word = ("player", "left") if pc < gc else ("goal", "right")
        cols = (
            f"The player is at column {pc}, and the goal is at column {gc}. Remember that column number is counted "
            f"from left to right. Comparing player (column={pc}) with goal (column={gc}), {first} is counted first, "
            f"meaning {first} is to the left. Therefore, the player is to the {word} of the goal."
        )
    return f"<Interpret>\n{rows}\n{cols}\n{output}"


# ---------------------------------------------------------------------------- task3
def task3_question(candidates: Sequence[VSPMap]) -> str:
    """The candidate tables ``(A)`` ... ``(D)``: a blank first line, blocks separated by a blank line."""
    return "\n" + "\n".join(f"({LETTERS[k]})\n{to_table(c)}" for k, c in enumerate(candidates))


def task3_answer(sources: Iterable[tuple[int, int]], correct_index: int) -> str:
    """One ``level-index`` line per candidate (the benchmark maps they were taken from), then the 0-based answer."""
    return "\n".join([f"{level}-{index}" for level, index in sources] + [str(correct_index)])


def task3_analysis(candidates: Sequence[VSPMap], correct_index: int) -> str:
    """The examples' reasoning: rule out the other sizes, then tell the two same-size maps apart by the player.

    Needs exactly one other candidate of the right size, with the player elsewhere (the benchmark's layout).
    """
    gold = candidates[correct_index]
    same = [k for k, c in enumerate(candidates) if c.size == gold.size]
    other = [k for k in range(len(candidates)) if k not in same]
    if len(same) != 2 or len(other) != 2:
        raise ValueError("task3's analysis needs two candidates of the image's size and two of other sizes")
    rival = next(k for k in same if k != correct_index)
    if candidates[rival].player == gold.player:
        raise ValueError("task3's analysis tells the same-size candidates apart by the player, which they share")
    sizes = " ".join(f"Candidate {LETTERS[k]} is a {c.size}-by-{c.size} maze." for k, c in enumerate(candidates))
    n = gold.size
    lines = [
        "<Analysis>",
        "- First, we focus on the difference of the maze shape betweeen the candidates and the input image.",
        f"- We begin by examining the input image. It is a {n}-by-{n} maze. We then review the candidates.",
        f"- {sizes} Therefore, Candidate {LETTERS[other[0]]} and {LETTERS[other[1]]} cannot be correct. "
        f"Now we only need to choose from Candidate {LETTERS[same[0]]} and {LETTERS[same[1]]}.",
        "- For the remaining candidates, we compare the positions of the players, goals, and the holes in the maze.",
        f"- We first check the input image. What is the position of the player in the image? The player is in "
        f"{_at(gold.player, 'row', 'column')}. We then check the remaining candidates. For Candidate "
        f"{LETTERS[correct_index]}, the textual representation indicates the player is also at "
        f"{_at(gold.player, 'row', 'column')}, matching the input image. For Candidate {LETTERS[rival]}, the player "
        f"is located at {_at(candidates[rival].player, 'row', 'column')}. Hence, Candidate {LETTERS[rival]} is not "
        "the correct answer.",
        f"<Answer> {LETTERS[correct_index]}",
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------------------- task4
def task4_question(actions: Sequence[int]) -> str:
    """The action letters run together: ``RLD``."""
    return "".join("LDRU"[a] for a in actions)


def task4_analysis(m: VSPMap, actions: Sequence[int], listed_holes: Sequence[Cell] | None = None) -> str:
    """The examples' step-by-step replay, stopping at the first hole, then ``<Output> Yes``/``No``.

    :param listed_holes: the holes in the order (and multiplicity) the analysis lists them; default raster
        order. The benchmark lists the base map's holes in raster order, then the hole it put on the path
        of a ``No`` item, even when that cell already was a hole.
    """
    holes = m.sorted_holes() if listed_holes is None else list(listed_holes)
    head = (
        f"<Analysis> At the beginning:\n- The player is at {_at(m.player)};\n"
        f"- There are {len(holes)} holes, and they are at: " + " ".join(f"{_at(h)};" for h in holes)
    )
    steps, state, safe = [], m, True
    for a in actions:
        state = state.move(a)
        where = (
            f"The current action is: {ACTION_NAMES[a]}\n"
            f"After this action, the player is now at {_at(state.player)}."
        )
        if state.in_hole:
            steps.append(f"{where} There is a hole at this grid. Therefore, the action is not safe.")
            safe = False
            break
        steps.append(f"{where} There is no holes at this grid, so we move to next action.")
    return head + "\n" + "\n\n".join(steps) + "\n<Output> " + ("Yes" if safe else "No")
