"""Answering batches of image questions with the model, and scoring the answers."""

from __future__ import annotations

import numpy as np
import torch

from latentum_world.data.prompts import final_answer
from latentum_world.data.understanding import Example, collate

SUB_TASKS = ("task1", "task2", "task3", "task4")


@torch.no_grad()
def answer(model, tokenizer, examples: list[Example], features: str = "continuous", batch_size: int = 64,
           max_new_tokens: int = 200) -> list[str]:
    """Greedy answers to ``examples`` (their ``answer`` fields are ignored)."""
    device = next(model.parameters()).device
    out: list[str] = []
    for i in range(0, len(examples), batch_size):
        chunk = examples[i : i + batch_size]
        b = collate(tokenizer, chunk, model.config.latent_positions, with_answers=False, left_pad=True)
        ids = model.generate_text(b["input_ids"].to(device), b["attention_mask"].to(device), images=b["images"].to(device),
                                  features=features, max_new_tokens=max_new_tokens)
        out.extend(tokenizer.decode_text(x) for x in ids)
    return out


def is_correct(kind: str, predicted: str, gold: str) -> bool:
    """Exact match, except for the VSP sub-tasks, judged on the final answer (the last line, after the
    interpretation; see :func:`~latentum_world.data.prompts.final_answer`): task1 and task4 on its last
    word (Yes/No), task2 as VSP's "full correctness" (every gold direction present among the
    comma-separated answer), task3 on the letter."""
    if kind in SUB_TASKS:
        predicted, gold = final_answer(predicted), final_answer(gold)
    if kind in ("task1", "task4"):
        words = predicted.split()
        return bool(words) and words[-1] == gold.split()[-1]
    if kind == "task2":
        pred = {p.strip() for p in predicted.split(",")}
        return set(gold.split(",")) <= pred
    return predicted == gold


def accuracy_by_kind(examples: list[Example], predictions: list[str]) -> dict[str, float]:
    kinds: dict[str, list[bool]] = {}
    for ex, pred in zip(examples, predictions):
        kinds.setdefault(ex.task, []).append(is_correct(ex.task, pred, ex.answer))
    return {k: float(np.mean(v)) for k, v in sorted(kinds.items())}
