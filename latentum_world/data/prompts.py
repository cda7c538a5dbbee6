"""Questions and answers about one maze image, in VSP's wording.

One function per question kind returns ``(question, answer)`` text for a board state; the same
functions phrase the VSP benchmark's own items at evaluation time, so training and evaluation
share one format. The sequence the model sees is ``<img> P x <img_ctx> </img> question`` and it is
trained to continue with ``answer <eos>``.

The four VSP sub-tasks are answered *interpret first*, as the benchmark's own example answers are
written (``<Interpret>`` then ``<Output>``): the answer starts with the board as VSP table text (the
model's read-out of the image), and its last line is the final answer, worked out from that text.
:func:`final_answer` returns that last line; scorers read only it.
"""

from __future__ import annotations

from envs.vsp.formats import cell_symbol, to_table
from envs.vsp.task_texts import task1_question, task4_question
from envs.vsp.maps import ACTION_LETTERS, VSPMap

YES, NO = "Yes", "No"


def yes_no(flag: bool) -> str:
    return YES if flag else NO


def interpreted(m: VSPMap | None, final: str) -> str:
    """``final`` after the interpretation (the board's VSP table text, which ends in a newline); with no
    board known (a benchmark item without a map file) just ``final``."""
    return final if m is None else to_table(m) + final


def final_answer(text: str) -> str:
    """The final answer of a model answer: its last line (the interpretation's table lines come first)."""
    return text.rsplit("\n", 1)[-1].strip()


def cell_piece(m: VSPMap, cell: tuple[int, int]) -> str:
    """The table piece of ``cell`` (`` # |``, `` _ |``, ...), as :func:`~envs.vsp.formats.to_table` writes it."""
    return f" {cell_symbol(m, cell)} |"


def hole_question(m: VSPMap, cell: tuple[int, int]) -> tuple[str, str]:
    """VSP task1: the table, then ``row r, column c: # | Yes`` (the cell's table piece, then the verdict)."""
    r, c = cell
    return task1_question(cell), interpreted(m, f"row {r + 1}, column {c + 1}:{cell_piece(m, cell)} {yes_no(cell in m.holes)}")


def relative_position(m: VSPMap) -> str:
    """VSP task2's answer: horizontal component first, a component left out when equal (as the examples write it)."""
    (pr, pc), (gr, gc) = m.player, m.goal
    parts = []
    if pc != gc:
        parts.append("Left" if pc < gc else "Right")
    if pr != gr:
        parts.append("Above" if pr < gr else "Below")
    return ",".join(parts)


def relation_question(m: VSPMap) -> tuple[str, str]:
    """VSP task2 (the player must not stand on the goal): the table, then ``Left,Above``."""
    return "Where is the player relative to the goal?", interpreted(m, relative_position(m))


def matching_question(candidates_text: str, correct: int, m: VSPMap | None = None) -> tuple[str, str]:
    """VSP task3: ``candidates_text`` is the benchmark's question file (four tables (A)-(D)); the answer is
    the image's table (``m``, the correct candidate), then the letter."""
    return "Which map matches the image?" + candidates_text, interpreted(m, "ABCD"[correct])


def safety_trace(m: VSPMap, actions: list[int]) -> tuple[list[tuple[int, int]], bool]:
    """Replay ``actions`` (off-edge moves do nothing); the positions visited up to the first hole, and safety."""
    cells, state = [], m
    for a in actions:
        state = state.move(a)
        cells.append(state.player)
        if state.in_hole:
            return cells, False
    return cells, True


def safety_question(m: VSPMap, actions: list[int]) -> tuple[str, str]:
    """VSP task4. After the table, the answer walks the sequence cell by cell (``row,col`` and the cell's
    table piece per move, up to the first hole) before ``Yes``/``No``, so a small model tracks the player
    instead of guessing; scorers read the last word."""
    cells, safe = safety_trace(m, actions)
    trace = "".join(f"{r + 1},{c + 1}:{cell_piece(m, (r, c))} " for r, c in cells)
    return "Is this action sequence safe? " + task4_question(actions), interpreted(m, f"{trace}{yes_no(safe)}")


def player_question(m: VSPMap) -> tuple[str, str]:
    return "Where is the player?", f"row {m.player[0] + 1}, column {m.player[1] + 1}"


def goal_question(m: VSPMap) -> tuple[str, str]:
    return "Where is the goal?", f"row {m.goal[0] + 1}, column {m.goal[1] + 1}"


def on_goal_question(m: VSPMap) -> tuple[str, str]:
    return "Is the player on the goal?", yes_no(m.on_goal)


def in_hole_question(m: VSPMap) -> tuple[str, str]:
    return "Is the player in a hole?", yes_no(m.in_hole)


def table_question(m: VSPMap) -> tuple[str, str]:
    """The whole board as VSP table text (``%`` player on goal, ``!`` player in a hole)."""
    return "Describe the map as a table.", to_table(m)


def next_move_question(m: VSPMap) -> tuple[str, str]:
    """The first move of the BFS shortest path (ties broken L, D, R, U); ``Done!`` on the goal."""
    if m.in_hole:
        raise ValueError("no next move from a hole")
    if m.on_goal:
        return "What is the next move to reach the goal?", "Done!"
    path = m.shortest_path()
    if path is None:
        raise ValueError("the goal is unreachable")
    return "What is the next move to reach the goal?", ACTION_LETTERS[path[0]]


__all__ = [
    "goal_question",
    "interpreted",
    "cell_piece",
    "final_answer",
    "hole_question",
    "in_hole_question",
    "matching_question",
    "next_move_question",
    "on_goal_question",
    "player_question",
    "relation_question",
    "relative_position",
    "safety_question",
    "safety_trace",
    "table_question",
]
