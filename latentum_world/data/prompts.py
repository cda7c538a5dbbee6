"""Questions and answers about one maze image, in VSP's wording.

One function per question kind returns ``(question, answer)`` text for a board state; the same
functions phrase the VSP benchmark's own items at evaluation time, so training and evaluation
share one format. The sequence the model sees is ``<img> P x <img_ctx> </img> question`` and it is
trained to continue with ``answer <eos>``.

The four VSP sub-tasks are answered *interpret first*, as the benchmark's own example answers are
written (``<Interpret>`` then ``<Output>``), and the last line is the final answer, worked out from
the interpretation; :func:`final_answer` returns that line and scorers read only it. task3 (match
the image to one of four tables) summarises the image and each candidate as size, player and goal
(:func:`matching_question`). task1, task2 and task4
interpret it as a *coordinate listing*: every cell as its ``r,c`` token followed by its table piece
(``1,1 _ |1,2 # |...``, a row per line). The questions are about coordinates, and a small model
cannot reliably count ``|`` pieces to find column 5 of a table; in the listing every lookup is the
copy of the piece that follows a given ``r,c`` token.
"""

from __future__ import annotations

from collections.abc import Sequence

from envs.vsp.formats import cell_symbol, to_table
from envs.vsp.task_texts import task1_question, task4_question
from envs.vsp.maps import ACTION_LETTERS, VSPMap

YES, NO = "Yes", "No"
#: task3's question line, before the benchmark's four candidate tables.
MATCHING_QUESTION = "Which map matches the image?"


def yes_no(flag: bool) -> str:
    return YES if flag else NO


def coordinate(cell: tuple[int, int]) -> str:
    """The one-token ``r,c`` name of a 0-based ``(row, column)`` cell (1-based, as VSP counts)."""
    return f"{cell[0] + 1},{cell[1] + 1}"


def cell_entry(m: VSPMap, cell: tuple[int, int]) -> str:
    """``3,2 # |``: the cell's coordinate token then its table piece, as the listing and traces write it."""
    return coordinate(cell) + cell_piece(m, cell)


def coordinate_listing(m: VSPMap) -> str:
    """Every cell of ``m`` as its ``r,c`` token (1-based) then its table piece, one line per row, each
    line ending in a newline: ``1,1 @ |1,2 _ |1,3 # |\n2,1 _ |...``."""
    return "".join("".join(cell_entry(m, (r, c)) for c in range(m.size)) + "\n" for r in range(m.size))


def listed(m: VSPMap | None, final: str) -> str:
    """``final`` after the coordinate listing of ``m``; with no board known just ``final``."""
    return final if m is None else coordinate_listing(m) + final


def final_answer(text: str) -> str:
    """The final answer of a model answer: its last line (the interpretation's lines come first)."""
    return text.rsplit("\n", 1)[-1].strip()


def cell_piece(m: VSPMap, cell: tuple[int, int]) -> str:
    """The table piece of ``cell`` (`` # |``, `` _ |``, ...), as :func:`~envs.vsp.formats.to_table` writes it."""
    return f" {cell_symbol(m, cell)} |"


def hole_question(m: VSPMap, cell: tuple[int, int]) -> tuple[str, str]:
    """VSP task1: the coordinate listing, then ``3,2 # | Yes`` (the asked cell's token, its piece copied
    from the listing, then the verdict)."""
    return task1_question(cell), listed(m, f"{cell_entry(m, cell)} {yes_no(cell in m.holes)}")


def relative_position(m: VSPMap) -> str:
    """VSP task2's answer: horizontal component first, a component left out when equal (as the examples write it)."""
    (pr, pc), (gr, gc) = m.player, m.goal
    parts = []
    if pc != gc:
        parts.append("Left" if pc < gc else "Right")
    if pr != gr:
        parts.append("Above" if pr < gr else "Below")
    return ",".join(parts)


def positions_line(m: VSPMap) -> str:
    """``player:3,2 goal:1,4`` then ``column 2 4 row 3 1``, each line ending in a newline: the two cells
    task2 compares, copied from the listing, then their columns and rows as single digits side by side.
    Comparing two digits is a small lookup; comparing the halves of two ``r,c`` tokens was not (the
    model with only the first line wrote a wrong direction after a right line on 11 % of items)."""
    (pr, pc), (gr, gc) = m.player, m.goal
    return f"player:{coordinate(m.player)} goal:{coordinate(m.goal)}\ncolumn {pc + 1} {gc + 1} row {pr + 1} {gr + 1}\n"


def relation_question(m: VSPMap) -> tuple[str, str]:
    """VSP task2 (the player must not stand on the goal): the coordinate listing, the player's and the
    goal's cells and their digits (:func:`positions_line`), then ``Left,Above``."""
    return "Where is the player relative to the goal?", relation_answer(m, relative_position(m))


def relation_answer(m: VSPMap | None, final: str) -> str:
    """A task2 answer with final line ``final`` (the answer file's) after ``m``'s interpretation."""
    return final if m is None else listed(m, positions_line(m) + final)


def board_summary(m: VSPMap) -> str:
    """`` Col 5 || Row 3 | @ || Row 1 | * |``: the board's size as its table's last column header, then the
    row header of the player's row with the player's piece, then the goal's. Every token is one the
    board's VSP table holds (:func:`~envs.vsp.formats.to_table`), so summarising a candidate table is
    copying three of its tokens: the header before ``| Row 1 |``, and the ``| Row r |`` before the
    ``@`` (``*``). Columns are left out: a column is found only by counting ``|`` pieces, which the
    session-6 summary (``5 @3,2 *1,4``) needed and the model never learned (task3 29 %). With these
    summaries task3 is still 35 %: sizes are copied right 99.8 % of the time, a candidate's rows only
    39 % (``benchmarks/task3_lines.py``)."""
    (pr, _), (gr, _) = m.player, m.goal
    return f" Col {m.size} || Row {pr + 1} |{cell_piece(m, m.player)}| Row {gr + 1} |{cell_piece(m, m.goal)}"


def matching_question(candidates_text: str, correct: int, candidates: Sequence[VSPMap] | None = None) -> tuple[str, str]:
    """VSP task3: ``candidates_text`` is the benchmark's question file (four tables (A)-(D)), ``candidates``
    the boards it shows. The answer reasons like the benchmark's own analysis (rule out the other sizes,
    then tell the same-size maps apart by the player), as one :func:`board_summary` per board: the
    image's, then each candidate's, then the letter of the one that agrees::

        image Col 5 || Row 3 | @ || Row 1 | * |
        (A) Col 4 || Row 1 | @ || Row 4 | * |
        (B) Col 5 || Row 2 | @ || Row 5 | * |
        (C) Col 5 || Row 3 | @ || Row 1 | * |
        (D) Col 7 || Row 6 | @ || Row 1 | * |
        C

    Each summary is a handful of tokens copied from its table and each comparison is a match between
    two of them, where comparing four whole tables is beyond a small model (39-42 % with the tables
    written out). The same-size rival has another player cell, but may share the player's and the
    goal's rows (3.6 % of 3,000 generated items); the letter is then the right one all the same, and a model can
    only guess between the two. With no boards known (a benchmark item without parsed candidates) the
    answer is just the letter."""
    letter = "ABCD"[correct]
    if candidates is None:
        return MATCHING_QUESTION + candidates_text, letter
    lines = [f"image{board_summary(candidates[correct])}"]
    lines += [f"({'ABCD'[k]}){board_summary(c)}" for k, c in enumerate(candidates)]
    return MATCHING_QUESTION + candidates_text, "\n".join(lines + [letter])


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
    """VSP task4. After the coordinate listing, the answer walks the sequence cell by cell from the start,
    up to the first hole: ``1,1 @ |1R1,2 _ |2D2,2 # | No``. Each step writes its number, its action
    letter, then the cell's ``r,c`` token and its piece copied from the listing, so a small model tracks
    the player instead of guessing; scorers read the last word. The numbers keep its place in the
    sequence: without them, sequences that revisit cells (``DUDU``) lost it (the trace went wrong on
    14 % of items, every error there)."""
    cells, safe = safety_trace(m, actions)
    trace = cell_entry(m, m.player) + "".join(f"{k + 1}{ACTION_LETTERS[a]}{cell_entry(m, cell)}"
                                              for k, (a, cell) in enumerate(zip(actions, cells)))
    return "Is this action sequence safe? " + task4_question(actions), listed(m, f"{trace} {yes_no(safe)}")


def player_question(m: VSPMap) -> tuple[str, str]:
    return "Where is the player?", f"row {m.player[0] + 1}, column {m.player[1] + 1}"


def goal_question(m: VSPMap) -> tuple[str, str]:
    return "Where is the goal?", f"row {m.goal[0] + 1}, column {m.goal[1] + 1}"


def flag_answer(m: VSPMap, flag: bool, interpreted: bool) -> str:
    """``Yes``/``No``, or (``interpreted``) the player's cell first: ``3,2 ! | Yes``, its ``r,c`` token and its
    table piece (``%`` on the goal, ``!`` in a hole, ``@`` on ice), then the verdict read from the piece.
    With one Yes/No token the verdict is the only supervision of a subtle sprite difference: the bundled
    (direct) model says "in a hole" about 178 of 2,048 real states wrongly, an interpreted retrain about
    12 (``benchmarks/flag_answers.py``), since the verdict now follows the player read-out it gets right."""
    return f"{cell_entry(m, m.player)} {yes_no(flag)}" if interpreted else yes_no(flag)


def on_goal_question(m: VSPMap, interpreted: bool = False) -> tuple[str, str]:
    return "Is the player on the goal?", flag_answer(m, m.on_goal, interpreted)


def in_hole_question(m: VSPMap, interpreted: bool = False) -> tuple[str, str]:
    return "Is the player in a hole?", flag_answer(m, m.in_hole, interpreted)


def playerless_questions(m: VSPMap, kind: str, interpreted: bool = False) -> tuple[str, str]:
    """A ``table`` / ``on_goal`` / ``in_hole`` question about ``m``'s board drawn WITHOUT the player (what the
    world model shows when its generation branch drops the player). The table has no player; the player is
    neither on the goal nor in a hole (``interpreted``: the goal's cell is written, bare, then ``No``)."""
    if kind == "table":
        return table_question(m)[0], to_table(m, player=False)
    question = {"on_goal": on_goal_question, "in_hole": in_hole_question}[kind](m)[0]
    answer = f"{coordinate(m.goal)} {cell_symbol(m, m.goal, player=False)} | {NO}" if interpreted else NO
    return question, answer


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
    "board_summary",
    "cell_entry",
    "coordinate",
    "coordinate_listing",
    "listed",
    "positions_line",
    "relation_answer",
    "goal_question",
    "cell_piece",
    "final_answer",
    "flag_answer",
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
    "playerless_questions",
    "table_question",
]
