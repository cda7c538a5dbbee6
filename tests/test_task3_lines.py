"""benchmarks/task3_lines.py reads task3 summaries the way prompts.board_summary writes them."""

import importlib.util
from pathlib import Path

import numpy as np

from envs.vsp.task_texts import task3_question
from envs.vsp.tasks import task3_candidates
from latentum_world.data import prompts

_spec = importlib.util.spec_from_file_location("task3_lines", Path(__file__).parents[1] / "benchmarks" / "task3_lines.py")
task3_lines = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(task3_lines)


def test_summary_fields_and_own_choice_follow_the_answer_format():
    rng = np.random.default_rng(3)
    for level in (3, 6, 8):
        candidates, correct, _ = task3_candidates(rng, level, 0)
        _, answer = prompts.matching_question(task3_question(candidates), correct, candidates)
        lines = answer.splitlines()
        gold = candidates[correct]
        assert task3_lines.summary_fields(lines[0]) == [str(level), str(gold.player[0] + 1), str(gold.goal[0] + 1)]
        for k, c in enumerate(candidates):
            assert task3_lines.summary_fields(lines[1 + k]) == [str(c.size), str(c.player[0] + 1), str(c.goal[0] + 1)]
        # a reader of these lines picks the right letter unless a rival shares size and rows (then the first)
        assert task3_lines.own_choice(lines) in "ABCD"[: correct + 1]
    assert task3_lines.summary_fields("(A) garbage") == [] and task3_lines.own_choice(["image"]) is None
