"""Perception evaluation: how well a trained model reads maze images.

Two parts, both answered greedily by :func:`~latentum_world.evaluation.answers.answer` on continuous
or MBAQ-quantized image features:

* **Benchmark**: the VSP sub-tasks task1 ... task4 of a checkout (or ``vsp generate --task`` output).
  Each item's PNG is area-resized to the model's input size (:func:`~envs.vsp.observation.resize_image`,
  the one resize used for training images), its question phrased exactly as the training prompts phrase
  it (:mod:`latentum_world.data.prompts`), and the model's answer turned into the benchmark's answer text
  (:func:`to_benchmark_answer`) and scored by the task's own eval.py rule
  (:func:`envs.vsp.task_scoring.score_answer`), per split, per level and overall.
* **Generated held-out maps**: ``n`` fresh examples per level of every question kind in
  :data:`~latentum_world.data.understanding.TASKS` (judged by
  :func:`~latentum_world.evaluation.answers.is_correct`), the board read-out (the whole VSP table text,
  exact match) on ``n`` fresh benchmark-rule maps per level, and the perplexity of every MBAQ codebook
  over all those images. The random streams are :func:`heldout_rng`, disjoint from training's
  ``[seed, step, rank]`` streams and from the training-time evaluation seed.
"""

from __future__ import annotations

import functools

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from envs.vsp.loader import VSPItem, load_vsp
from envs.vsp.maps import LEVELS, generate_map
from envs.vsp.observation import resize_image
from envs.vsp.render import load_png
from envs.vsp.scoring import Tally, aligned_table, format_accuracy
from envs.vsp.task_scoring import TaskReport, gold_answer, item_level, score_task_items
from envs.vsp.task_texts import parse_task1_question, task1_question, task4_question
from envs.vsp.tasks import SUB_TASKS
from latentum_world.data import prompts
from latentum_world.data.understanding import TASKS, Example, UnderstandingData
from latentum_world.evaluation.answers import DEFAULT_TASK3, TASK3_PROTOCOLS, answer, is_correct, ranked_choices
from latentum_world.model.mbaq import codebook_perplexity

#: Default seed of the generated held-out maps.
DEFAULT_SEED = 20261122
#: Default number of generated items per level (per question kind, and for the board read-out).
DEFAULT_GENERATED = 100
#: Mixed into every held-out stream, so it cannot coincide with training's ``default_rng([seed, step, rank])``.
HELDOUT_TAG = 0x7E5E_A7ED
#: Stream part of the board read-out; question kind ``k`` uses ``1 + TASKS.index(k)``.
READOUT_PART = 0
FEATURE_KINDS = ("continuous", "quantized", "projected")
#: Benchmark splits, in report order.
SPLITS = ("maps", "example")



def heldout_rng(seed: int, part: int, level: int) -> np.random.Generator:
    """The generator of one held-out set: ``default_rng([seed, HELDOUT_TAG, part, level])``."""
    return np.random.default_rng([int(seed), HELDOUT_TAG, int(part), int(level)])


# ---------------------------------------------------------------------------- benchmark items
def benchmark_prompt(item: VSPItem) -> tuple[str, str]:
    """``(question, gold answer)`` of a benchmark item in the training prompts' wording.

    The gold answer is what a perfect model writes (the board's coordinate listing, then ``2,3 # | Yes``,
    ``player:3,2 goal:1,4`` and ``Left,Above``, or ``1,1 @ |1,2 _ |2,2 # | No``; for task3 the image's and
    the candidates' size, player and goal, then ``B``); it is
    never shown to the model, only used to check :func:`to_benchmark_answer` (an oracle must score 100 %).
    """
    if item.task == "task1":  # prompts.hole_question's wording, for the question file's cell
        cell = parse_task1_question(item.question or "")
        verdict = prompts.yes_no(bool(gold_answer(item)))  # the answer file decides
        if item.map is None:
            return task1_question(cell), verdict
        q, a = prompts.hole_question(item.map, cell)
        return q, a.rsplit(" ", 1)[0] + " " + verdict
    if item.task == "task2":
        if item.map is None:
            raise ValueError(f"task2 item {item.level_name}/{item.index} has no map file")
        q, _ = prompts.relation_question(item.map)
        return q, prompts.relation_answer(item.map, ",".join(gold_answer(item)))
    if item.task == "task3":
        if item.question is None or item.correct_index is None:
            raise ValueError(f"task3 item {item.level_name}/{item.index} needs its question and answer files")
        return prompts.matching_question(item.question, item.correct_index, item.candidates)
    if item.task == "task4":
        actions = item.actions
        if actions is None:
            raise ValueError(f"task4 item {item.level_name}/{item.index} has no question file")
        safe = bool(gold_answer(item))
        if item.map is None:
            return "Is this action sequence safe? " + task4_question(actions), prompts.yes_no(safe)
        q, a = prompts.safety_question(item.map, actions)
        return q, a.rsplit(" ", 1)[0] + " " + prompts.yes_no(safe)  # the answer file decides the verdict
    raise ValueError(f"not a sub-task item: {item.task!r}")


def benchmark_example(item: VSPItem, image_size: int, cell_pixels: int = 0) -> Example:
    """The item's PNG resized to the model's layout (``image_size``, ``cell_pixels``) and its question
    (see :func:`benchmark_prompt`)."""
    if item.image_path is None:
        raise FileNotFoundError(f"{item.task} item {item.split}/{item.level_name}/{item.index} has no img/{item.index}.png")
    image = resize_image(load_png(item.image_path), image_size, level=item.level, cell_pixels=cell_pixels)
    question, gold = benchmark_prompt(item)
    board = item.map if item.map is not None else item.correct_candidate
    return Example(image, question, gold, item.task, board)


def to_benchmark_answer(task: str, text: str) -> str:
    """A model answer as the benchmark's eval.py expects it.

    Only the final answer (the last line, after the interpretation's table) is kept: task1
    ``row 2, column 3: # | Yes`` -> ``<Output> Yes``; task2 ``Left,Above`` -> ``<Output> Left,Above``; task3
    ``B`` -> ``<Answer> B``; task4 ``4,2: _ | 3,2: # | No`` -> ``<Output> No`` (the last word: eval.py reads
    only the 10 characters after the marker). Nothing is repaired: a malformed answer stays malformed and
    scores as eval.py scores it.
    """
    text = prompts.final_answer(text)
    if task == "task2":
        return f"<Output> {text}"
    if task == "task3":
        return f"<Answer> {text}"
    if task in ("task1", "task4"):
        words = text.split()
        return f"<Output> {words[-1] if words else ''}"
    raise ValueError(f"not a sub-task: {task!r} (expected one of {', '.join(SUB_TASKS)})")


def load_benchmark_items(path: str | Path) -> dict[tuple[str, str], list[VSPItem]]:
    """task1 ... task4 items under ``path`` (a checkout, its ``maze`` folder, or anything :func:`load_vsp`
    takes), grouped by ``(task, split)`` in task and split order; task-main is ignored."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such VSP folder: {path}")
    if (path / "VSP-main" / "maze").is_dir():
        path = path / "VSP-main" / "maze"
    groups: dict[tuple[str, str], list[VSPItem]] = {}
    for it in load_vsp(path):
        if it.task in SUB_TASKS:
            groups.setdefault((it.task, it.split), []).append(it)
    if not groups:
        raise ValueError(f"{path}: no task1 ... task4 items (expected <maze>/task1 ... task4/<maps|example>/<level>/...)")
    return dict(sorted(groups.items(), key=lambda kv: (SUB_TASKS.index(kv[0][0]), SPLITS.index(kv[0][1]))))


# ---------------------------------------------------------------------------- answering
def answer_all(model, tokenizer, examples: list[Example], features: str, batch_size: int, desc: str = "",
               quiet: bool = False, task3: str = DEFAULT_TASK3) -> list[str]:
    """Greedy answers in ``examples`` order, batched by prompt length (less padding), with a progress bar;
    task3 items by ``task3``'s protocol (:data:`~latentum_world.evaluation.answers.TASK3_PROTOCOLS`)."""
    respond = functools.partial(answer, draft=True)  # reference answers draft the decoding: speed only
    if task3 == "ranked" and examples and all(ex.task == "task3" for ex in examples):
        respond = ranked_choices
    order = sorted(range(len(examples)), key=lambda i: len(examples[i].question))
    out: list[str | None] = [None] * len(examples)
    for start in tqdm(range(0, len(order), batch_size), desc=desc, disable=quiet, leave=False, unit="batch"):
        idx = order[start : start + batch_size]
        preds = respond(model, tokenizer, [examples[i] for i in idx], features=features, batch_size=batch_size)
        for i, p in zip(idx, preds):
            out[i] = p
    return out  # type: ignore[return-value]


# ---------------------------------------------------------------------------- results
@dataclass
class CodebookUsage:
    """Perplexity of each MBAQ codebook's code distribution over ``images`` images (``images * positions`` codes each)."""

    codebook_size: int
    images: int
    perplexity: list[float]

    def to_dict(self) -> dict:
        return {
            "codebook_size": self.codebook_size,
            "images": self.images,
            "codebooks": [{"perplexity": p, "fraction": p / self.codebook_size} for p in self.perplexity],
            "mean_perplexity": float(np.mean(self.perplexity)),
            "mean_fraction": float(np.mean(self.perplexity)) / self.codebook_size,
        }


def _tallies_dict(levels: dict[int, Tally]) -> dict:
    overall = Tally(sum(t.correct for t in levels.values()), sum(t.total for t in levels.values()))
    return {"levels": {str(lv): levels[lv].to_dict() for lv in sorted(levels)}, "overall": overall.to_dict()}


@dataclass
class PerceptionResults:
    """Everything ``latentum-world eval perception`` reports.

    :param benchmark: task -> split -> the benchmark's scoring of that split (:class:`TaskReport`).
    :param kinds: question kind -> board side -> tally on generated held-out examples (task4 boards are 5x5).
    :param readout: board side -> exact-match tally of the whole-table read-out on generated maps.
    :param codebooks: MBAQ codebook usage over every generated image (``None`` without generated maps).
    """

    model: str
    features: str
    vsp: str | None
    seed: int
    generated_per_level: int
    task3: str = DEFAULT_TASK3
    benchmark: dict[str, dict[str, TaskReport]] = field(default_factory=dict)
    kinds: dict[str, dict[int, Tally]] = field(default_factory=dict)
    readout: dict[int, Tally] = field(default_factory=dict)
    codebooks: CodebookUsage | None = None

    def to_dict(self) -> dict:
        """JSON-ready. ``benchmark[task][split]`` is :meth:`TaskReport.to_dict` (``levels``, ``overall``, task2's
        ``parts``); ``generated.kinds[kind]`` and ``generated.readout`` are ``{"levels": {"3": tally}, "overall":
        tally}`` with tallies ``{"correct", "total", "accuracy"}``; ``codebooks`` per codebook ``perplexity`` and
        ``fraction`` (of ``codebook_size``)."""
        return {
            "model": self.model,
            "features": self.features,
            "task3": self.task3,
            "vsp": self.vsp,
            "benchmark": {task: {split: r.to_dict() for split, r in splits.items()} for task, splits in self.benchmark.items()},
            "generated": {
                "seed": self.seed,
                "per_level": self.generated_per_level,
                "kinds": {kind: _tallies_dict(levels) for kind, levels in self.kinds.items()},
                "readout": _tallies_dict(self.readout) if self.readout else None,
            },
            "codebooks": None if self.codebooks is None else self.codebooks.to_dict(),
        }

    def format_table(self) -> str:
        parts = [f"model: {self.model}  features: {self.features}  task3: {self.task3}"]
        if self.benchmark:
            parts.append(f"== VSP benchmark ({self.vsp})")
            for task, splits in self.benchmark.items():
                for split, report in splits.items():
                    parts.append(f"[{split}] " + report.format_table())
        if self.kinds or self.readout:
            parts.append(f"== generated held-out maps (seed {self.seed}, {self.generated_per_level} per level)")
            levels = sorted({lv for t in self.kinds.values() for lv in t} | set(self.readout))
            rows = []
            named = [(k, v) for k, v in self.kinds.items()] + ([("table read-out", self.readout)] if self.readout else [])
            for name, tallies in named:
                overall = Tally(sum(t.correct for t in tallies.values()), sum(t.total for t in tallies.values()))
                rows.append((name, *[format_accuracy(tallies[lv]) if lv in tallies else "" for lv in levels],
                             format_accuracy(overall), str(overall.total)))
            parts.append(aligned_table(("kind", *[f"L{lv}" for lv in levels], "overall", "n"), rows))
        if self.codebooks is not None:
            c = self.codebooks
            rows = [(str(i), f"{p:.1f}", f"{100 * p / c.codebook_size:.1f}%") for i, p in enumerate(c.perplexity)]
            parts.append(f"== MBAQ codebook perplexity over {c.images} generated images (codebook size {c.codebook_size})")
            parts.append(aligned_table(("codebook", "perplexity", "of size"), rows))
        return "\n\n".join(parts)


# ---------------------------------------------------------------------------- evaluation
def evaluate_benchmark(model, tokenizer, path: str | Path, features: str = "continuous", batch_size: int = 64,
                       quiet: bool = False, task3: str = DEFAULT_TASK3) -> dict[str, dict[str, TaskReport]]:
    """Score the model on every task1 ... task4 item under ``path``: task -> split -> report."""
    size, cell_pixels = model.config.image_size, model.config.cell_pixels
    out: dict[str, dict[str, TaskReport]] = {}
    for (task, split), items in load_benchmark_items(path).items():
        examples = [benchmark_example(it, size, cell_pixels) for it in items]
        preds = answer_all(model, tokenizer, examples, features, batch_size, f"{task} {split}", quiet, task3)
        answers = {(item_level(it), it.index): to_benchmark_answer(task, p) for it, p in zip(items, preds)}
        out.setdefault(task, {})[split] = score_task_items(items, answers)
    return out


def generated_examples(image_size: int, n: int, seed: int = DEFAULT_SEED, levels=LEVELS, cell_pixels: int = 0,
                       flag_answers: str = "direct") -> dict[str, list[Example]]:
    """The held-out sets: ``n`` examples per level of every kind in ``TASKS`` (task4 is always 5x5, as the
    benchmark's), and under ``"readout"`` ``n`` benchmark-rule maps per level (hole probability 0.2, player at
    the start, elf facing down: the benchmark's image) asked for the whole table."""
    sets: dict[str, list[Example]] = {}
    for k, kind in enumerate(TASKS):
        sets[kind] = []
        for level in levels:
            data = UnderstandingData(image_size=image_size, cell_pixels=cell_pixels, levels=(level,), flag_answers=flag_answers)
            rng = heldout_rng(seed, 1 + k, level)
            sets[kind].extend(data.example(rng, kind) for _ in range(n))
    data = UnderstandingData(image_size=image_size, cell_pixels=cell_pixels)
    sets["readout"] = []
    for level in levels:
        rng = heldout_rng(seed, READOUT_PART, level)
        for _ in range(n):
            m = generate_map(rng, level)
            q, a = prompts.table_question(m)
            sets["readout"].append(Example(data.image(m, None), q, a, "table", m))
    return sets


@torch.no_grad()
def codebook_usage(model, images: list[np.ndarray], batch_size: int = 256) -> CodebookUsage:
    """Perplexity of each codebook over the codes ``quantizer.encode(get_vit_feature(images))``."""
    device = next(model.parameters()).device
    codes = []
    for i in range(0, len(images), batch_size):
        x = torch.from_numpy(np.stack(images[i : i + batch_size])).to(device)
        codes.append(model.quantizer.encode(model.get_vit_feature(x)).cpu())
    size = model.config.codebook_size
    ppl = codebook_perplexity(torch.cat(codes), size)
    return CodebookUsage(size, len(images), [float(v) for v in ppl])


def evaluate_generated(model, tokenizer, n: int = DEFAULT_GENERATED, seed: int = DEFAULT_SEED, features: str = "continuous",
                       batch_size: int = 64, quiet: bool = False, task3: str = DEFAULT_TASK3) -> tuple[dict, dict, CodebookUsage]:
    """``(kinds, readout, codebooks)`` of :class:`PerceptionResults` on :func:`generated_examples`."""
    sets = generated_examples(model.config.image_size, n, seed, cell_pixels=model.config.cell_pixels,
                              flag_answers=model.config.flag_answers)
    kinds: dict[str, dict[int, Tally]] = {}
    readout: dict[int, Tally] = {}
    for name, examples in sets.items():
        preds = answer_all(model, tokenizer, examples, features, batch_size, name, quiet, task3)
        tallies = readout if name == "readout" else kinds.setdefault(name, {})
        for ex, p in zip(examples, preds):
            ok = p == ex.answer if name == "readout" else is_correct(ex.task, p, ex.answer)
            tallies.setdefault(ex.map.size, Tally()).add(ok)
    images = [ex.image for examples in sets.values() for ex in examples]
    return kinds, readout, codebook_usage(model, images)


def evaluate_perception(model, tokenizer, vsp: str | Path | None, features: str = "continuous",
                        generated: int = DEFAULT_GENERATED, seed: int = DEFAULT_SEED, batch_size: int = 64,
                        quiet: bool = False, model_name: str = "", task3: str = DEFAULT_TASK3) -> PerceptionResults:
    """Both parts (``vsp=None`` skips the benchmark, ``generated=0`` the held-out maps); ``task3``: how task3 is
    answered (``generate`` or ``ranked``, :data:`~latentum_world.evaluation.answers.TASK3_PROTOCOLS`)."""
    if features not in FEATURE_KINDS:
        raise ValueError(f"features must be one of {FEATURE_KINDS}, got {features!r}")
    if task3 not in TASK3_PROTOCOLS:
        raise ValueError(f"task3 must be one of {TASK3_PROTOCOLS}, got {task3!r}")
    if generated < 0 or batch_size < 1:
        raise ValueError(f"need generated >= 0 and batch_size >= 1, got {generated} and {batch_size}")
    model.eval()
    results = PerceptionResults(model_name, features, None if vsp is None else str(vsp), seed, generated, task3)
    if vsp is not None:
        results.benchmark = evaluate_benchmark(model, tokenizer, vsp, features, batch_size, quiet, task3)
    if generated:
        results.kinds, results.readout, results.codebooks = evaluate_generated(
            model, tokenizer, generated, seed, features, batch_size, quiet, task3)
    return results
