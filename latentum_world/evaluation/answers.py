"""Answering batches of image questions with the model, and scoring the answers."""

from __future__ import annotations

import numpy as np
import torch

from envs.vsp.loader import parse_candidates
from latentum_world.data import prompts
from latentum_world.data.prompts import final_answer
from latentum_world.data.understanding import Example, collate

SUB_TASKS = ("task1", "task2", "task3", "task4")
#: How task3 (which of four text maps is the image?) is answered: ``ranked`` (the default: multiple choice by
#: likelihood, the candidate table the model finds most likely as its own read-out of the image; see
#: :func:`ranked_choices`) or ``generate`` (the model writes its answer to the question, as every other task; the
#: stage ``vlm`` no longer trains that answer, which a 4-layer model never learned beyond chance).
TASK3_PROTOCOLS = ("ranked", "generate")
DEFAULT_TASK3 = "ranked"


@torch.no_grad()
def answer(model, tokenizer, examples: list[Example], features: str = "continuous", batch_size: int = 64,
           max_new_tokens: int = 200, draft: bool = False) -> list[str]:
    """Greedy answers to ``examples``. Their ``answer`` fields are ignored, except with ``draft``: each
    reference answer is then checked as a draft (:func:`~latentum_world.model.draft.draft_greedy_decode`), which
    makes long answers such as whole tables one forward where the model agrees; the answers are the model's
    own greedy tokens either way."""
    device = next(model.parameters()).device
    eos = model.config.eos_token_id
    out: list[str] = []
    for i in range(0, len(examples), batch_size):
        chunk = examples[i : i + batch_size]
        b = collate(tokenizer, chunk, model.config.latent_positions, with_answers=False, left_pad=True)
        drafts = [tokenizer.encode_text(ex.answer) + [eos] for ex in chunk] if draft else None
        ids = model.generate_text(b["input_ids"].to(device), b["attention_mask"].to(device), images=b["images"].to(device),
                                  features=features, max_new_tokens=max_new_tokens, drafts=drafts)
        out.extend(tokenizer.decode_text(x) for x in ids)
    return out


@torch.no_grad()
def answer_logliks(model, tokenizer, examples: list[Example], features: str = "continuous", batch_size: int = 64) -> list[float]:
    """Log-likelihood (nats, summed over the answer's tokens and ``<eos>``) of each example's ``answer`` after its
    image and question: what the model would pay, teacher-forced, to write that answer."""
    device = next(model.parameters()).device
    out: list[float] = []
    for i in range(0, len(examples), batch_size):
        b = collate(tokenizer, examples[i : i + batch_size], model.config.latent_positions, with_answers=True)
        logits = model(b["input_ids"].to(device), b["attention_mask"].to(device), images=b["images"].to(device),
                       features=features).logits  # (B, T, vocab)
        labels = b["labels"][:, 1:].to(device)  # (B, T-1): token t+1 is predicted at t
        logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
        picked = logp.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)  # (B, T-1)
        out.extend((picked * (labels != -100)).sum(dim=1).tolist())
    return out


def task3_choices(question: str) -> tuple:
    """The candidate boards (A), (B), ... shown in a task3 question (the training prompt's wording: the
    question line, then the benchmark's four tables)."""
    head = prompts.MATCHING_QUESTION
    if not question.startswith(head):
        raise ValueError(f"not a task3 question (expected it to start with {head!r}): {question[:60]!r}")
    return parse_candidates(question[len(head):])


@torch.no_grad()
def ranked_choices(model, tokenizer, examples: list[Example], features: str = "continuous", batch_size: int = 64) -> list[str]:
    """task3 as multiple choice by likelihood, the protocol used to evaluate language models on multiple-choice
    questions they cannot answer in free form: each candidate table of the question is scored as the model's
    own read-out of the image (``Describe the map as a table.`` -> that table, :func:`answer_logliks`) and the
    answer is the letter of the most likely one. The question's wording is not read; the model's reading of
    the image decides. Returns one letter per example."""
    scored: list[Example] = []
    spans: list[tuple[int, int]] = []
    for ex in examples:
        boards = task3_choices(ex.question)
        spans.append((len(scored), len(boards)))
        for board in boards:
            q, a = prompts.table_question(board)
            scored.append(Example(ex.image, q, a, "table", board))
    ll = answer_logliks(model, tokenizer, scored, features, batch_size)
    return ["ABCDEFGH"[max(range(n), key=lambda k: ll[s + k])] for s, n in spans]


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
