"""Read the VSP benchmark's maze scenario from a checkout, in the benchmark's own layout.

The layout is ``<maze>/<task>/<split>/<level>/<kind>/<i>.<ext>``:

* ``<task>``: one of :data:`TASKS`;
* ``<split>``: ``maps`` (the test items, 100 per level) or ``example`` (the 8 in-context examples);
* ``<level>``: ``level3`` ... ``level8`` (an ``n x n`` board), or ``level_step1`` ... ``level_step9``
  for task4 (5x5 boards; the number is the length of the action sequence asked about);
* ``<kind>``: ``img`` (``.png``) or one of the text kinds ``table``, ``pure_text``, ``text`` (gym desc
  rows), ``special_text`` (table symbols without the pipes), ``question``, ``answer``, ``analysis``.

:func:`load_vsp` accepts the ``maze`` folder, a checkout root holding ``maze/``, a task folder, a split
folder or a level folder, and infers what it can from the path. Every map encoding present for an item
is parsed and must describe the same board; malformed files raise :class:`VSPFormatError` naming the
file and the line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from envs.vsp.formats import VSPFormatError, parse_desc, parse_pure_text, parse_table
from envs.vsp.maps import VSPMap, action_from_letter

TASKS = ("task-main", "task1", "task2", "task3", "task4")
#: Split folders, in the order items are sorted (test items first).
SPLITS = ("maps", "example")
#: Map encodings, in order of preference for :attr:`VSPItem.map`.
MAP_KINDS = ("table", "pure_text", "text", "special_text")
TEXT_KINDS = MAP_KINDS + ("question", "answer", "analysis")
IMAGE_KIND = "img"
#: Side of every task4 board.
TASK4_SIZE = 5

_LEVEL_RE = re.compile(r"^level(\d+)$")
_STEP_LEVEL_RE = re.compile(r"^level_step(\d+)$")
_ITEM_FILE_RE = re.compile(r"^(\d+)\.(txt|png)$")


@dataclass(frozen=True)
class VSPItem:
    """One benchmark item (a test map or an in-context example).

    :param task: ``"task-main"``, ``"task1"``, ... (see :data:`TASKS`).
    :param split: ``"maps"`` (test items) or ``"example"``.
    :param level_name: the level folder's name, ``"level3"`` ... or ``"level_step5"``.
    :param level: board side ``n`` (5 for task4).
    :param index: the item number ``i`` (the files' stem).
    :param map: the board, from ``table`` (else ``pure_text``, else ``text``, else ``special_text``);
        ``None`` where the item has no map file (task3).
    :param image_path: ``img/i.png`` where present.
    :param question: raw text of ``question/i.txt`` where present.
    :param answer: raw text of ``answer/i.txt`` where present.
    :param steps: task4's action-sequence length (the ``k`` in ``level_step{k}``); else ``None``.
    :param candidates: task3's text maps (A), (B), ... parsed from the question; else ``None``.
    :param correct_index: task3's 0-based index of the right candidate (the answer's last line).
    :param candidate_sources: task3's ``(level, index)`` per candidate, from the answer's other lines
        (``"7-5"`` = level 7, item 5); ``None`` if the answer has only the index line.
    :param analysis: raw text of ``analysis/i.txt`` where present (task3, task4).
    """

    task: str
    split: str
    level_name: str
    level: int
    index: int
    map: VSPMap | None
    image_path: Path | None
    question: str | None
    answer: str | None
    steps: int | None = None
    candidates: tuple[VSPMap, ...] | None = None
    correct_index: int | None = None
    candidate_sources: tuple[tuple[int, int], ...] | None = None
    analysis: str | None = None

    @property
    def actions(self) -> list[int] | None:
        """task4: the question's action sequence as action ids (``"RLD"`` -> ``[2, 0, 1]``); else ``None``."""
        if self.task != "task4" or self.question is None:
            return None
        return [action_from_letter(ch) for ch in self.question.strip()]

    @property
    def correct_candidate(self) -> VSPMap | None:
        """task3: the candidate the answer file marks as right."""
        if self.candidates is None or self.correct_index is None:
            return None
        return self.candidates[self.correct_index]


# ---------------------------------------------------------------------------- public entry point
def load_vsp(
    path: str | Path,
    task: str | None = None,
    split: str | None = None,
    levels: Iterable[int | str] | int | str | None = None,
) -> list[VSPItem]:
    """Load the VSP maze items under ``path``.

    :param path: the ``maze`` folder (all tasks), a checkout root holding ``maze/``, a task folder
        (``.../task1``), a split folder (``.../task1/maps``) or a level folder (``.../task1/maps/level3``).
        Task, split and level are inferred from the path's components.
    :param task: keep only this task.
    :param split: keep only this split (``"maps"`` or ``"example"``).
    :param levels: keep only these levels: ints match the board side (:attr:`VSPItem.level`, so ``5``
        selects every task4 level), strings match the folder name (``"level_step3"``).
    :returns: items sorted by task (in :data:`TASKS` order), split (:data:`SPLITS` order), level
        (by number) and index.
    :raises FileNotFoundError: ``path`` does not exist.
    :raises ValueError: ``path`` is not one of the folders above, a filter is unknown, or nothing is left.
    :raises VSPFormatError: a malformed or inconsistent file (the message names the file and line).
    """
    path = Path(path)
    if task is not None and task not in TASKS:
        raise ValueError(f"unknown task {task!r}: expected one of {', '.join(TASKS)}")
    if split is not None and split not in SPLITS:
        raise ValueError(f"unknown split {split!r}: expected one of {', '.join(SPLITS)}")
    level_filter = _level_filter(levels)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or directory (expected a VSP maze, task or level folder)")
    if not path.is_dir():
        raise ValueError(f"{path}: not a directory (expected a VSP maze, task or level folder)")

    items = []
    for task_name, split_name, level_dir in _level_dirs(path):
        if (task is not None and task_name != task) or (split is not None and split_name != split):
            continue
        level_name = level_dir.name
        if level_filter is not None and not _level_selected(level_filter, level_name, _board_side(level_name)):
            continue
        items.extend(_load_level(task_name, split_name, level_dir))
    if not items:
        raise ValueError(
            f"{path}: no VSP items found (task={task!r}, split={split!r}, levels={levels!r}); expected "
            f"<maze>/<task>/<maps|example>/<level>/<kind>/<i>.txt files"
        )
    items.sort(key=lambda it: (TASKS.index(it.task), SPLITS.index(it.split), _level_sort_key(it.level_name), it.index))
    return items


# ---------------------------------------------------------------------------- path resolution
def _level_dirs(path: Path) -> list[tuple[str, str, Path]]:
    """``(task, split, level_dir)`` for every level folder under ``path``; ``ValueError`` if not a VSP path."""
    name = path.name
    if _is_level_name(name):
        split_dir = path.parent
        task_dir = split_dir.parent
        if split_dir.name in SPLITS and task_dir.name in TASKS:
            return [(task_dir.name, split_dir.name, path)]
        raise ValueError(
            f"{path}: a level folder must sit at <task>/<split>/{name} with task in {TASKS} and split in "
            f"{SPLITS}, got {task_dir.name}/{split_dir.name}/{name}"
        )
    if name in SPLITS and path.parent.name in TASKS:
        return [(path.parent.name, name, d) for d in _subdirs(path) if _is_level_name(d.name)]
    if name in TASKS:
        return _task_level_dirs(path)
    maze = path if _has_task_dirs(path) else path / "maze" if _has_task_dirs(path / "maze") else None
    if maze is None:
        raise ValueError(
            f"{path}: not a VSP maze folder (holding {', '.join(TASKS)}), task folder, split folder "
            f"(maps, example) or level folder (level<n>, level_step<k>)"
        )
    out = []
    for task_dir in _subdirs(maze):
        if task_dir.name in TASKS:
            out.extend(_task_level_dirs(task_dir))
    return out


def _task_level_dirs(task_dir: Path) -> list[tuple[str, str, Path]]:
    out = []
    for split_name in SPLITS:
        split_dir = task_dir / split_name
        if split_dir.is_dir():
            out.extend((task_dir.name, split_name, d) for d in _subdirs(split_dir) if _is_level_name(d.name))
    return out


def _subdirs(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_dir()) if path.is_dir() else []


def _has_task_dirs(path: Path) -> bool:
    return path.is_dir() and any((path / t).is_dir() for t in TASKS)


def _is_level_name(name: str) -> bool:
    return bool(_LEVEL_RE.match(name) or _STEP_LEVEL_RE.match(name))


def _board_side(level_name: str) -> int:
    m = _LEVEL_RE.match(level_name)
    return int(m.group(1)) if m else TASK4_SIZE


def _steps(level_name: str) -> int | None:
    m = _STEP_LEVEL_RE.match(level_name)
    return int(m.group(1)) if m else None


def _level_sort_key(level_name: str) -> tuple[int, int]:
    m = _LEVEL_RE.match(level_name)
    if m:
        return (0, int(m.group(1)))
    return (1, int(_STEP_LEVEL_RE.match(level_name).group(1)))  # type: ignore[union-attr]


def _level_filter(levels) -> tuple[set[int], set[str]] | None:
    if levels is None:
        return None
    if isinstance(levels, (int, str)):
        levels = [levels]
    ints, names = set(), set()
    for lv in levels:
        if isinstance(lv, bool) or not isinstance(lv, (int, str)):
            raise ValueError(f"levels must hold ints (board sides) or level folder names, got {lv!r}")
        (names if isinstance(lv, str) else ints).add(lv)
    return ints, names


def _level_selected(level_filter: tuple[set[int], set[str]], level_name: str, side: int) -> bool:
    ints, names = level_filter
    return side in ints or level_name in names


# ---------------------------------------------------------------------------- one level folder
def _load_level(task: str, split: str, level_dir: Path) -> list[VSPItem]:
    """Every item of one level folder; the item numbers are the union of the kind folders' file stems."""
    files: dict[str, dict[int, Path]] = {}
    for kind in TEXT_KINDS + (IMAGE_KIND,):
        ext = "png" if kind == IMAGE_KIND else "txt"
        kind_dir = level_dir / kind
        if not kind_dir.is_dir():
            continue
        for f in kind_dir.iterdir():
            m = _ITEM_FILE_RE.match(f.name)
            if m and m.group(2) == ext and f.is_file():
                files.setdefault(kind, {})[int(m.group(1))] = f
    indices = sorted(set().union(*(d.keys() for d in files.values()))) if files else []
    return [_load_item(task, split, level_dir.name, i, {k: d[i] for k, d in files.items() if i in d}) for i in indices]


def _load_item(task: str, split: str, level_name: str, index: int, paths: dict[str, Path]) -> VSPItem:
    texts = {kind: p.read_text(encoding="utf-8") for kind, p in paths.items() if kind != IMAGE_KIND}
    level = _board_side(level_name)
    steps = _steps(level_name)
    board = _load_map(texts, paths, level, level_name)

    candidates = correct_index = sources = None
    if task == "task3" and "question" in texts:
        candidates = parse_candidates(texts["question"], str(paths["question"]))
        if "answer" in texts:
            correct_index, sources = parse_task3_answer(texts["answer"], str(paths["answer"]), candidates)
    if task == "task4" and "question" in texts:
        _check_task4_question(texts["question"], str(paths["question"]), steps)

    return VSPItem(
        task=task,
        split=split,
        level_name=level_name,
        level=level,
        index=index,
        map=board,
        image_path=paths.get(IMAGE_KIND),
        question=texts.get("question"),
        answer=texts.get("answer"),
        steps=steps,
        candidates=candidates,
        correct_index=correct_index,
        candidate_sources=sources,
        analysis=texts.get("analysis"),
    )


def _load_map(texts: dict[str, str], paths: dict[str, Path], level: int, level_name: str) -> VSPMap | None:
    """Parse every map encoding present, check they agree and that the board fits the level folder."""
    maps: dict[str, VSPMap] = {}
    for kind in MAP_KINDS:
        if kind in texts:
            maps[kind] = _PARSERS[kind](texts[kind], str(paths[kind]))
    if not maps:
        return None
    primary_kind = next(iter(maps))
    primary = maps[primary_kind]
    if primary.size != level:
        raise VSPFormatError(
            f"a {primary.size}x{primary.size} map in level folder {level_name!r} (expected {level}x{level})",
            str(paths[primary_kind]),
            _first_content_line(texts[primary_kind]),
        )
    for kind, other in maps.items():
        if other != primary:
            what, line = _first_difference(kind, texts[kind], primary, other)
            raise VSPFormatError(
                f"{kind} disagrees with {paths[primary_kind]}: {what}", str(paths[kind]), line
            )
    return primary


def parse_special_text(text: str, source: str | None = None) -> VSPMap:
    """Parse a ``special_text`` file: one line per row over the table symbols ``@ * # _``, no separators."""
    for lineno, line in enumerate(text.splitlines(), start=1):
        for ch in line.strip():
            if ch not in _SPECIAL_TO_DESC:
                raise VSPFormatError(f"unknown special_text cell {ch!r} (expected @, *, # or _)", source, lineno)
    return parse_desc(text.translate(str.maketrans(_SPECIAL_TO_DESC)), source)


_SPECIAL_TO_DESC = {"@": "S", "*": "G", "#": "H", "_": "F"}
_PARSERS = {
    "table": parse_table,
    "pure_text": parse_pure_text,
    "text": parse_desc,
    "special_text": parse_special_text,
}


def _content_lines(text: str) -> list[int]:
    """1-based numbers of the non-blank lines."""
    return [i for i, ln in enumerate(text.splitlines(), start=1) if ln.strip()]


def _first_content_line(text: str) -> int | None:
    lines = _content_lines(text)
    return lines[0] if lines else None


def _first_difference(kind: str, text: str, expected: VSPMap, got: VSPMap) -> tuple[str, int | None]:
    """Describe where ``got`` (parsed from ``text``) first differs from ``expected``, and at which line."""
    lines = _content_lines(text)

    def line_at(k: int) -> int | None:
        return lines[k] if k < len(lines) else None

    def cell(c) -> str:  # 1-based, as the files print them
        return f"row {c[0] + 1}, column {c[1] + 1}"

    if got.size != expected.size:
        return f"board is {got.size}x{got.size}, expected {expected.size}x{expected.size}", line_at(0)
    if kind == "pure_text":  # four sentences: size, player, holes, goal
        if got.player != expected.player:
            return f"player at {cell(got.player)}, expected {cell(expected.player)}", line_at(1)
        if got.holes != expected.holes:
            extra = "; ".join(cell(h) for h in sorted(got.holes - expected.holes)) or "none"
            missing = "; ".join(cell(h) for h in sorted(expected.holes - got.holes)) or "none"
            return f"holes differ (extra: {extra}; missing: {missing})", line_at(2)
        return f"goal at {cell(got.goal)}, expected {cell(expected.goal)}", line_at(3)
    # grid encodings: one line per board row (the table has a header line first)
    offset = 1 if kind == "table" else 0
    for r in range(expected.size):
        for c in range(expected.size):
            if _cell_code(got, (r, c)) != _cell_code(expected, (r, c)):
                return (
                    f"{cell((r, c))} is {_cell_code(got, (r, c))}, expected {_cell_code(expected, (r, c))}",
                    line_at(r + offset),
                )
    return "boards differ", None  # unreachable: equal sizes and equal cells mean equal maps


def _cell_code(m: VSPMap, cell) -> str:
    if cell == m.player:
        return "the player"
    return {"hole": "a hole", "goal": "the goal", "ice": "ice"}[m.cell_kind(cell)]


# ---------------------------------------------------------------------------- task3 and task4 files
_LABEL_RE = re.compile(r"^\s*\(([A-Z])\)\s*$")


def parse_candidates(text: str, source: str | None = None) -> tuple[VSPMap, ...]:
    """Parse task3's question: blocks ``(A)``, ``(B)``, ... each followed by a VSP table.

    Labels must run A, B, C, ... in order; each table is parsed with :func:`parse_table` at its real
    line number, so errors name the line in the question file.
    """
    lines = text.splitlines()
    labels = [(i, m.group(1)) for i, ln in enumerate(lines) if (m := _LABEL_RE.match(ln))]
    if not labels:
        raise VSPFormatError("no candidate blocks '(A)', '(B)', ... found", source, None)
    first = labels[0][0]
    stray = next((i for i in range(first) if lines[i].strip()), None)
    if stray is not None:
        raise VSPFormatError(f"unexpected text before '(A)': {lines[stray]!r}", source, stray + 1)
    candidates = []
    for k, (i, label) in enumerate(labels):
        expected = chr(ord("A") + k)
        if label != expected:
            raise VSPFormatError(f"expected candidate ({expected}), got ({label})", source, i + 1)
        end = labels[k + 1][0] if k + 1 < len(labels) else len(lines)
        block = "\n".join(lines[i + 1 : end])
        if not block.strip():
            raise VSPFormatError(f"candidate ({label}) has no table", source, i + 1)
        candidates.append(parse_table(block, source, first_line=i + 2))
    return tuple(candidates)


_SOURCE_RE = re.compile(r"^(\d+)-(\d+)$")


def parse_task3_answer(
    text: str, source: str | None = None, candidates: tuple[VSPMap, ...] | None = None
) -> tuple[int, tuple[tuple[int, int], ...] | None]:
    """Parse task3's answer file: optional ``level-index`` lines (one per candidate), then the 0-based index.

    With ``candidates`` given, checks the index is in range and that each source's level matches the
    size of its candidate.

    :returns: ``(correct_index, candidate_sources or None)``.
    """
    numbered = [(i, ln.strip()) for i, ln in enumerate(text.splitlines(), start=1) if ln.strip()]
    if not numbered:
        raise VSPFormatError("empty task3 answer (expected the right candidate's index on the last line)", source, None)
    last_no, last = numbered[-1]
    if not last.isdigit():
        raise VSPFormatError(f"expected the right candidate's 0-based index on the last line, got {last!r}", source, last_no)
    correct = int(last)
    if candidates is not None and not correct < len(candidates):
        raise VSPFormatError(f"candidate index {correct} out of range for {len(candidates)} candidates", source, last_no)
    sources = None
    if len(numbered) > 1:
        parsed = []
        for lineno, ln in numbered[:-1]:
            m = _SOURCE_RE.match(ln)
            if not m:
                raise VSPFormatError(f"expected a candidate source like '7-5' (level-index), got {ln!r}", source, lineno)
            parsed.append((lineno, int(m.group(1)), int(m.group(2))))
        if candidates is not None:
            if len(parsed) != len(candidates):
                raise VSPFormatError(
                    f"{len(parsed)} candidate source lines for {len(candidates)} candidates", source, parsed[0][0]
                )
            for k, ((lineno, lv, _), cand) in enumerate(zip(parsed, candidates)):
                if lv != cand.size:
                    raise VSPFormatError(
                        f"source level {lv} for candidate ({chr(ord('A') + k)}), which is {cand.size}x{cand.size}",
                        source,
                        lineno,
                    )
        sources = tuple((lv, i) for _, lv, i in parsed)
    return correct, sources


_ACTIONS_RE = re.compile(r"^[LDRU]+$")


def _check_task4_question(text: str, source: str, steps: int | None) -> None:
    """task4's question is the action letters run together, as many as the level folder's step count."""
    numbered = [(i, ln.strip()) for i, ln in enumerate(text.splitlines(), start=1) if ln.strip()]
    if len(numbered) != 1 or not _ACTIONS_RE.match(numbered[0][1]):
        line = numbered[1][0] if len(numbered) > 1 else numbered[0][0] if numbered else None
        raise VSPFormatError("expected one line of action letters L, D, R, U (e.g. 'RLD')", source, line)
    lineno, actions = numbered[0]
    if steps is not None and len(actions) != steps:
        raise VSPFormatError(f"{len(actions)} actions in a level_step{steps} question", source, lineno)
