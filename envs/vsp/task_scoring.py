"""Score free-text answers to the VSP maze sub-tasks (task1 ... task4) exactly as the benchmark's eval.py files do.

Each task's ``maze/<task>/eval.py`` finds a marker in the model's output, deletes some characters and
compares what is left with the gold answer. The rules, quirks included:

* task1: the text after the first ``<Output>``, with ``" ' \\n . ( )`` deleted, stripped and lower-cased,
  must be exactly ``yes`` or ``no`` (trailing prose makes it invalid). Gold: the answer file (``Y``/``N``).
* task2: the text after the first ``'<Output> '`` (else ``'<Output>\\n'``; neither: invalid) is split on
  ``,``; each piece loses ``" ' \\n . *`` and surrounding blanks. Gold: ``Above``/``Below`` when the player's
  row is smaller/larger than the goal's, ``Left``/``Right`` likewise for columns (the map decides, not a
  file). Each gold component found among the pieces (exact, case-sensitive) is one "part" correct; an
  item is fully correct when all are found, so extra pieces are not penalised.
* task3: the text after the first ``<Answer>`` (else ``**Answer``, else ``Answer``), with
  ``" * : ' \\n . ( ) < > `` and backticks deleted and stripped, must be exactly one of ``A B C D``. Gold:
  the answer file's last line (0-based index).
* task4: only the 10 characters after the first ``<Output>`` (else ``**Output**``, else ``Output``) are
  read, with ``" ' \\n . : - *`` deleted, stripped and lower-cased; correct when they contain ``yes`` but not
  ``no`` for a ``Y`` item, ``no`` but not ``yes`` for an ``N`` item (so ``not safe`` reads as no). A
  missing marker is counted invalid but still scored, as eval.py does. Gold: the answer file (``Y``/``N``).

eval.py slices from ``find(marker) + len(marker)`` without checking for -1, so a text lacking the
marker is read from a fixed offset (7 in task1, 5 in task3 and task4); this is reproduced. A missing
answer is invalid and wrong (eval.py counts the exception). Every item counts in its level's total.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping

from envs.vsp.loader import VSPItem
from envs.vsp.maps import VSPMap
from envs.vsp.scoring import Tally, aligned_table, format_accuracy
from envs.vsp.task_texts import LETTERS, parse_task1_question, parse_yes_no_answer, task2_components
from envs.vsp.tasks import SUB_TASKS, is_safe


@dataclass(frozen=True)
class TaskResult:
    """One scored answer.

    :param correct: eval.py counts it correct (task2: every gold component present).
    :param valid: eval.py could read an answer (task4: it found an ``Output`` marker).
    :param parts_correct: task2 only: gold components present in the answer.
    :param parts_total: task2 only: gold components of the item.
    """

    correct: bool
    valid: bool
    parts_correct: int = 0
    parts_total: int = 0


def _after(text: str, marker: str) -> str:
    """eval.py's ``text[text.find(marker) + len(marker):]``, -1 included."""
    return text[text.find(marker) + len(marker) :]


def _delete(text: str, chars: str) -> str:
    return text.translate(str.maketrans("", "", chars))


# ---------------------------------------------------------------------------- task1
def parse_task1(answer: str) -> str | None:
    """``"yes"``, ``"no"`` or ``None`` (invalid), read as task1's eval.py reads it."""
    value = _delete(_after(answer, "<Output>"), "\"'\n.()").strip().lower()
    return value if value in ("yes", "no") else None


def score_task1(answer: str | None, hole: bool) -> TaskResult:
    """Score a task1 answer against the gold (``hole``: the cell asked about is a hole)."""
    value = None if answer is None else parse_task1(answer)
    return TaskResult(correct=value == ("yes" if hole else "no"), valid=value is not None)


# ---------------------------------------------------------------------------- task2
def parse_task2(answer: str) -> list[str] | None:
    """The cleaned comma-separated pieces after ``<Output>``, or ``None`` when the marker is missing."""
    at = answer.find("<Output> ")
    if at == -1:
        at = answer.find("<Output>\n")
    if at == -1:
        return None
    return [_delete(piece, "\"'\n.*").strip() for piece in answer[at + len("<Output> ") :].split(",")]


def score_task2(answer: str | None, m: VSPMap) -> TaskResult:
    """Score a task2 answer on board ``m``: full and per-component correctness."""
    gold = task2_components(m)
    pieces = None if answer is None else parse_task2(answer)
    found = 0 if pieces is None else sum(c in pieces for c in gold)
    valid = pieces is not None
    return TaskResult(correct=valid and found == len(gold), valid=valid, parts_correct=found, parts_total=len(gold))


# ---------------------------------------------------------------------------- task3
def parse_task3(answer: str) -> str | None:
    """The chosen letter ``"A"`` ... ``"D"``, or ``None`` (invalid), read as task3's eval.py reads it."""
    for marker in ("<Answer>", "**Answer"):
        if marker in answer:
            rest = _after(answer, marker)
            break
    else:
        rest = _after(answer, "Answer")  # missing too: eval.py reads from offset 5
    value = _delete(rest, "\"*:'\n.()<>`").strip()
    return value if value in tuple(LETTERS) else None


def score_task3(answer: str | None, correct_index: int) -> TaskResult:
    """Score a task3 answer against the 0-based index of the right candidate."""
    value = None if answer is None else parse_task3(answer)
    return TaskResult(correct=value is not None and value == LETTERS[correct_index], valid=value is not None)


# ---------------------------------------------------------------------------- task4
def parse_task4(answer: str) -> tuple[str, bool]:
    """The cleaned 10-character window eval.py reads, and whether an ``Output`` marker was found."""
    for marker in ("<Output>", "**Output**"):
        at = answer.find(marker)
        if at != -1:
            break
    else:
        marker = "Output"
        at = answer.find(marker)  # missing too: eval.py reads from offset 5
    start = at + len(marker)
    return _delete(answer[start : start + 10], "\"'\n.:-*").strip().lower(), at != -1


def score_task4(answer: str | None, safe: bool) -> TaskResult:
    """Score a task4 answer against the gold (``safe``: the sequence never enters a hole)."""
    if answer is None:
        return TaskResult(correct=False, valid=False)
    window, found = parse_task4(answer)
    said_yes = "yes" in window and "no" not in window
    said_no = "no" in window and "yes" not in window
    return TaskResult(correct=said_yes if safe else said_no, valid=found)


# ---------------------------------------------------------------------------- per item
def item_level(item: VSPItem) -> int:
    """The level number items are keyed by: the board side, or task4's step count."""
    return item.steps if item.task == "task4" and item.steps is not None else item.level


def gold_answer(item: VSPItem) -> bool | tuple[str, ...] | int:
    """The gold eval.py compares with: task1 hole? (answer file, else the map), task2 the components (map),
    task3 the right index (answer file), task4 safe? (answer file, else a replay of the question)."""
    if item.task == "task1":
        if item.answer is not None:
            return parse_yes_no_answer(item.answer)
        return parse_task1_question(item.question or "") in _board(item).holes
    if item.task == "task2":
        return task2_components(_board(item))
    if item.task == "task3":
        if item.correct_index is None:
            raise ValueError(f"task3 item {item.level_name}/{item.index} has no answer file")
        return item.correct_index
    if item.task == "task4":
        if item.answer is not None:
            return parse_yes_no_answer(item.answer)
        return is_safe(_board(item), item.actions or [])
    raise ValueError(f"not a sub-task item: {item.task!r} (expected one of {', '.join(SUB_TASKS)})")


def _board(item: VSPItem) -> VSPMap:
    if item.map is None:
        raise ValueError(f"{item.task} item {item.level_name}/{item.index} has no map file")
    return item.map


def score_answer(item: VSPItem, answer: str | None) -> TaskResult:
    """Score a model's free-text ``answer`` (``None``: no answer) to ``item`` by its task's eval.py rule."""
    gold = gold_answer(item)
    if item.task == "task1":
        return score_task1(answer, bool(gold))
    if item.task == "task2":
        return score_task2(answer, _board(item))
    if item.task == "task3":
        return score_task3(answer, int(gold))
    return score_task4(answer, bool(gold))


# ---------------------------------------------------------------------------- reports
@dataclass
class TaskReport:
    """Per-level and overall results of one sub-task.

    :param task: ``"task1"`` ... ``"task4"``.
    :param results: ``(level, index)`` -> result (level: see :func:`item_level`).
    :param level_names: level -> folder name (``"level3"``, ``"level_step3"``).
    """

    task: str
    results: dict[tuple[int, int], TaskResult] = field(default_factory=dict)
    level_names: dict[int, str] = field(default_factory=dict)

    def _select(self, level: int | None) -> list[TaskResult]:
        return [r for (lv, _), r in self.results.items() if level is None or lv == level]

    def tally(self, level: int | None = None) -> Tally:
        """Correct items out of all items of ``level`` (``None``: all levels)."""
        results = self._select(level)
        return Tally(sum(r.correct for r in results), len(results))

    def parts(self, level: int | None = None) -> Tally:
        """task2: gold components found out of all gold components (eval.py's "each correct rate")."""
        results = self._select(level)
        return Tally(sum(r.parts_correct for r in results), sum(r.parts_total for r in results))

    def invalid(self, level: int | None = None) -> int:
        return sum(not r.valid for r in self._select(level))

    def _summary(self, level: int | None) -> dict:
        out = self.tally(level).to_dict() | {"invalid": self.invalid(level)}
        if self.task == "task2":
            out["parts"] = self.parts(level).to_dict()
        return out

    def to_dict(self) -> dict:
        """JSON-ready: ``{"task", "levels": {"3": {"level_name", "correct", "total", "accuracy", "invalid"
        [, "parts"]}, ...}, "overall": {...}}`` (``parts`` for task2 only)."""
        levels = {str(lv): {"level_name": self.level_names[lv]} | self._summary(lv) for lv in sorted(self.level_names)}
        return {"task": self.task, "levels": levels, "overall": self._summary(None)}

    def format_table(self) -> str:
        """An aligned text table: one row per level, then overall (task2 adds the per-component columns)."""
        header = ("level", "correct", "total", "accuracy", "invalid")
        if self.task == "task2":
            header += ("parts", "of", "part acc")
        rows = []
        for name, lv in [(self.level_names[lv], lv) for lv in sorted(self.level_names)] + [("overall", None)]:
            t = self.tally(lv)
            row = (name, str(t.correct), str(t.total), format_accuracy(t), str(self.invalid(lv)))
            if self.task == "task2":
                p = self.parts(lv)
                row += (str(p.correct), str(p.total), format_accuracy(p))
            rows.append(row)
        return f"task: {self.task}\n" + aligned_table(header, rows)


def score_task_items(items: Iterable[VSPItem], answers: Mapping[tuple[int, int], str | None]) -> TaskReport:
    """Score one sub-task's items.

    :param items: items of one task, e.g. ``load_vsp(path, task="task2", split="maps")``.
    :param answers: ``(level, index)`` -> the model's free-text answer (level: the board side, or task4's
        step count); an item without an answer counts as invalid and wrong.
    :raises ValueError: items of several tasks, a non-sub-task item, or an item listed twice.
    """
    report: TaskReport | None = None
    for it in items:
        if report is None:
            report = TaskReport(it.task)
        if it.task != report.task:
            raise ValueError(f"items of several tasks ({report.task}, {it.task}); score one task at a time")
        key = (item_level(it), it.index)
        if key in report.results:
            raise ValueError(f"item ({it.level_name}, index {it.index}) listed twice")
        report.results[key] = score_answer(it, answers.get(key))
        report.level_names[key[0]] = it.level_name
    if report is None:
        raise ValueError("no items to score")
    return report
