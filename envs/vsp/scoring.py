"""Score main-task action plans on VSP maps, under the benchmark's rule and the stricter one.

Two rules (see :data:`RULES`):

* ``original``: the benchmark's own ``maze/task-main/eval.py``. The plan is replayed in gym's
  non-slippery ``FrozenLake-v1``: a move off the edge leaves the player in place; the episode ends
  at a hole (failure) or at the goal (success, later moves are ignored); a plan consumed before the
  goal fails; an unparseable answer fails (eval.py counts any exception as a failure). ``gym.make``
  wraps the env in a 100-step ``TimeLimit``, so a goal first reached after move 100 also fails
  (:data:`ORIGINAL_STEP_LIMIT`).
* ``strict`` (later papers): a move off the edge fails; stepping on a hole fails; after the whole
  plan the player must stand on the goal, so walking on past the goal fails. The goal does not end
  the episode, so a plan that passes the goal and comes back to it still succeeds.

Plans are parsed from free text exactly as eval.py does, see :func:`parse_plan`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from envs.vsp.maps import ACTION_LETTERS, VSPMap

RULES = ("original", "strict")
#: gym registers FrozenLake-v1 with ``max_episode_steps=100``; eval.py stops at truncation with reward 0.
ORIGINAL_STEP_LIMIT = 100
#: The answer markers eval.py looks for, in order.
PLAN_MARKERS = ("Action plan: ", "Action Plan: ")
#: The characters eval.py deletes from every comma-separated piece before stripping whitespace.
_DELETED_CHARS = str.maketrans("", "", "\"'\n.")


# ---------------------------------------------------------------------------- plan parsing
def _parse_pieces(text: str) -> list[int] | None:
    """eval.py's cleaning of the text after the marker: split on ',', delete ``" ' \\n .``, strip, map."""
    actions = []
    for piece in text.split(","):
        piece = piece.translate(_DELETED_CHARS).strip()
        if piece not in ACTION_LETTERS:  # eval.py: KeyError in action_number_map -> failure
            return None
        actions.append(ACTION_LETTERS.index(piece))
    return actions


def parse_plan(text: str) -> list[int] | None:
    """Extract the action plan from a model's free-text answer, exactly as the benchmark's eval.py does.

    Finds the first ``'Action plan: '`` (else the first ``'Action Plan: '``), takes everything after
    it, splits on ``','``, deletes ``"``, ``'``, newlines and ``.`` from each piece and strips
    whitespace; every piece must then be exactly one of ``L D R U`` (upper case). Anything else,
    including trailing prose after the plan and an empty plan, is unparseable: ``None``.

    With neither marker present eval.py slices from a garbage offset (``find`` returns -1, so it
    keeps ``text[12:]``); that never yields a clean plan from a real answer, so this returns ``None``.
    """
    for marker in PLAN_MARKERS:
        at = text.find(marker)
        if at != -1:
            return _parse_pieces(text[at + len(marker) :])
    return None


def as_plan(plan: str | Sequence[int | str] | None) -> list[int] | None:
    """Normalise a plan to action ids, or ``None`` when it is unparseable.

    * ``None`` -> ``None``.
    * A string holding a marker (``'Action plan: '``/``'Action Plan: '``) is free text: :func:`parse_plan`.
    * Any other string is a bare letter list like ``"R,D,D"``, cleaned the same way (so ``"R, D."``
      works and ``"r,d"`` does not). Note the benchmark itself fails a raw answer that lacks the marker;
      pass raw model outputs through :func:`parse_plan` to keep that behaviour.
    * A sequence of action ids ``0..3`` (L, D, R, U) or letters ``"L" "D" "R" "U"``.

    An empty plan is unparseable. A sequence with an unknown entry is unparseable.
    """
    if plan is None:
        return None
    if isinstance(plan, str):
        if any(marker in plan for marker in PLAN_MARKERS):
            return parse_plan(plan)
        return _parse_pieces(plan)
    if isinstance(plan, (Sequence, np.ndarray)):
        actions = []
        for a in plan:
            if isinstance(a, str) and a in ACTION_LETTERS:
                actions.append(ACTION_LETTERS.index(a))
            elif isinstance(a, (int, np.integer)) and not isinstance(a, bool) and 0 <= a < 4:
                actions.append(int(a))
            else:
                return None
        return actions or None
    raise TypeError(f"a plan must be a string, a sequence of actions or None, got {type(plan).__name__}")


# ---------------------------------------------------------------------------- replay
def _check_rule(rule: str) -> None:
    if rule not in RULES:
        raise ValueError(f"unknown rule {rule!r}: expected one of {', '.join(RULES)}")


def score_plan(m: VSPMap, plan: str | Sequence[int | str] | None, rule: str = "original") -> bool:
    """Whether ``plan`` (anything :func:`as_plan` accepts) solves map ``m`` under ``rule``."""
    _check_rule(rule)
    actions = as_plan(plan)
    if actions is None:
        return False
    state = m
    if rule == "original":
        for step, a in enumerate(actions, start=1):
            state = state.move(a)
            if state.in_hole:
                return False
            if state.on_goal:
                return True
            if step >= ORIGINAL_STEP_LIMIT:  # TimeLimit truncation, reward 0
                return False
        return False
    for a in actions:  # strict
        nxt = state.move(a)
        if nxt.player == state.player or nxt.in_hole:  # bumped the edge, or fell in
            return False
        state = nxt
    return state.on_goal


# ---------------------------------------------------------------------------- reports
@dataclass
class Tally:
    """``correct`` out of ``total``; ``accuracy`` is ``None`` for an empty set."""

    correct: int = 0
    total: int = 0

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.total if self.total else None

    def add(self, ok: bool) -> None:
        self.total += 1
        self.correct += int(ok)

    def to_dict(self) -> dict:
        return {"correct": self.correct, "total": self.total, "accuracy": self.accuracy}


@dataclass
class ScoreReport:
    """Per-level, overall and detour-subset accuracy of one scoring run.

    :param rule: the rule used (see :data:`RULES`).
    :param levels: level -> tally.
    :param detour: the maps whose shortest path is longer than the player-goal Manhattan distance.
    :param results: ``(level, index)`` -> success, for every item scored.
    """

    rule: str
    levels: dict[int, Tally] = field(default_factory=dict)
    detour: Tally = field(default_factory=Tally)
    results: dict[tuple[int, int], bool] = field(default_factory=dict)

    @property
    def overall(self) -> Tally:
        return Tally(sum(t.correct for t in self.levels.values()), sum(t.total for t in self.levels.values()))

    def to_dict(self) -> dict:
        """JSON-ready: ``{"rule", "levels": {"3": {"correct", "total", "accuracy"}, ...}, "overall", "detour"}``."""
        return {
            "rule": self.rule,
            "levels": {str(lv): self.levels[lv].to_dict() for lv in sorted(self.levels)},
            "overall": self.overall.to_dict(),
            "detour": self.detour.to_dict(),
        }

    def format_table(self) -> str:
        """An aligned text table: one row per level, then overall and detour."""
        rows = [(str(lv), self.levels[lv]) for lv in sorted(self.levels)]
        rows += [("overall", self.overall), ("detour", self.detour)]
        header = ("level", "correct", "total", "accuracy")
        cells = [(name, str(t.correct), str(t.total), format_accuracy(t)) for name, t in rows]
        return f"rule: {self.rule}\n" + aligned_table(header, cells)


def format_accuracy(t: Tally) -> str:
    """``"87.5%"``, or ``"-"`` for an empty tally."""
    return "-" if t.accuracy is None else f"{100 * t.accuracy:.1f}%"


def aligned_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """Columns padded to a common width (the first left-aligned, the rest right-aligned), a rule under the header."""
    cells = [tuple(header)] + [tuple(r) for r in rows]
    widths = [max(len(row[k]) for row in cells) for k in range(len(header))]

    def fmt(row: tuple[str, ...]) -> str:
        return "  ".join([row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:])])

    return "\n".join([fmt(cells[0]), "  ".join("-" * w for w in widths)] + [fmt(row) for row in cells[1:]])


def score_items(
    items: Iterable[tuple[int, int, VSPMap]],
    plans: Mapping[tuple[int, int], object],
    rule: str = "original",
) -> ScoreReport:
    """Score a plan per item.

    :param items: ``(level, index, map)`` triples, e.g.
        ``[(it.level, it.index, it.map) for it in load_vsp(path, task="task-main", split="maps")]``.
    :param plans: ``(level, index)`` -> plan (anything :func:`as_plan` accepts). An item without a plan
        counts as a failure; plans for items not listed are ignored.
    :raises ValueError: unknown rule, or an item listed twice.
    """
    _check_rule(rule)
    report = ScoreReport(rule)
    for level, index, m in items:
        key = (int(level), int(index))
        if key in report.results:
            raise ValueError(f"item (level {key[0]}, index {key[1]}) listed twice")
        ok = key in plans and score_plan(m, plans[key], rule)
        report.results[key] = ok
        report.levels.setdefault(key[0], Tally()).add(ok)
        if m.is_detour:
            report.detour.add(ok)
    return report


def read_plans_jsonl(path: str | Path) -> dict[tuple[int, int], str | list | None]:
    """Read plans from JSON lines ``{"level": L, "index": i, "plan": "R,D,..."}``.

    ``plan`` may be a string (free text or a bare letter list), a list of ids/letters, or ``null``
    (no answer: a failure). Other keys are ignored; blank lines are skipped.

    :raises ValueError: a malformed line (naming the file and line number) or a repeated ``(level, index)``.
    """
    path = Path(path)
    plans: dict[tuple[int, int], str | list | None] = {}
    seen_at: dict[tuple[int, int], int] = {}
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue

            def bad(msg: str) -> ValueError:
                return ValueError(f"{path}, line {lineno}: {msg}")

            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise bad(f"invalid JSON ({e.msg})") from None
            if not isinstance(rec, dict):
                raise bad(f"expected a JSON object, got {type(rec).__name__}")
            for k in ("level", "index", "plan"):
                if k not in rec:
                    raise bad(f"missing key {k!r}")
            level, index, plan = rec["level"], rec["index"], rec["plan"]
            for k, v in (("level", level), ("index", index)):
                if isinstance(v, bool) or not isinstance(v, int):
                    raise bad(f"{k!r} must be an integer, got {v!r}")
            if plan is not None and not isinstance(plan, (str, list)):
                raise bad(f"'plan' must be a string, a list or null, got {type(plan).__name__}")
            key = (level, index)
            if key in plans:
                raise bad(f"duplicate plan for level {level}, index {index} (first on line {seen_at[key]})")
            plans[key] = plan
            seen_at[key] = lineno
    return plans
