"""Understanding examples made on the fly: a random board state, its image, one question, its answer.

Boards come from the benchmark's generator (levels 3..8, hole probability 0.2 or 0.5); the player is
put anywhere a rollout can take it (its start, any free cell, the goal, a hole) and the elf faces a
random last move, so the model also understands states the world model will imagine. Kinds are
mixed by ``weights`` within a batch (task3's long prompts in batches of their own); everything is a
pure function of ``(seed, step, rank)``, which is what makes interrupted training resume bit-identically.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from functools import partial

import numpy as np
import torch

from envs.vsp.maps import LEVELS, VSPMap, generate_map
from envs.vsp.observation import observation_renderer
from envs.vsp.task_texts import task3_question
from envs.vsp.tasks import generate_task1_map, task3_candidates, task4_instance
from latentum_world.data import prompts
from latentum_world.model.config import FLAG_ANSWERS
from latentum_world.tokenizer import IMG_CONTEXT, IMG_END, IMG_START

TASKS = ("task1", "task2", "task3", "task4", "player", "goal", "on_goal", "in_hole", "table", "next_move")
DEFAULT_WEIGHTS = {
    "task1": 0.14, "task2": 0.08, "task3": 0.10, "task4": 0.12, "player": 0.08,
    "goal": 0.06, "on_goal": 0.05, "in_hole": 0.05, "table": 0.20, "next_move": 0.12,
}


@dataclass
class Example:
    image: np.ndarray  # (S, S, 3) uint8
    question: str
    answer: str
    task: str
    map: VSPMap | None = None
    player_drawn: bool = True  # False: the image shows ``map``'s board without the player (``playerless``)


@dataclass
class UnderstandingData:
    """Sampler of understanding examples.

    :param image_size: model image side (the env's ``rgb`` observation size).
    :param cell_pixels: image layout (``LatentUMConfig.cell_pixels``; 0 = stretch the board).
    :param confusers: share of the on_goal / in_hole questions whose answer is No although the player
        stands on the OTHER special cell (in a hole when asked about the goal, on the goal when asked
        about a hole). Without them a model can learn "unusual player sprite -> Yes" for both questions;
        the first cell-aligned model did, and its reward said Yes in every hole.
    :param near_misses: share of the on_goal / in_hole questions whose answer is No with the player on ice
        right beside a hole (or the goal): the states the confuser-trained model still called in-hole.
        ``confusers + near_misses`` is at most 0.5.
    :param levels: board sizes to draw.
    :param hole_probs: hole probabilities to draw from (0.2: main task, 0.5: task1's density).
    :param weights: question kind -> sampling weight.
    :param flag_answers: the on_goal / in_hole answer format, ``"direct"`` or ``"interpreted"``
        (``LatentUMConfig.flag_answers``; stages take it from the model they train).
    :param playerless: share of the ``table``, ``on_goal`` and ``in_hole`` examples whose image is the board
        drawn WITHOUT the player, answered as such (:func:`~latentum_world.data.prompts.playerless_questions`:
        a table with no player; neither on the goal nor in a hole). The world model's generation branch
        sometimes drops the player, and an understanding model that never saw such a frame reads it as
        the player standing on the goal (a false reward and termination). 0.0 (default) draws none and
        leaves the example stream unchanged.
    """

    image_size: int = 128
    cell_pixels: int = 0
    confusers: float = 0.0
    near_misses: float = 0.0
    levels: tuple[int, ...] = LEVELS
    hole_probs: tuple[float, ...] = (0.2, 0.2, 0.5)
    weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    flag_answers: str = "direct"
    playerless: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.playerless <= 1.0:
            raise ValueError(f"playerless must be in [0, 1], got {self.playerless}")
        if self.flag_answers not in FLAG_ANSWERS:
            raise ValueError(f"flag_answers must be one of {FLAG_ANSWERS}, got {self.flag_answers!r}")
        if not 0.0 <= self.confusers <= 0.5:
            raise ValueError(f"confusers must be in [0, 0.5] (half the questions are the Yes case), got {self.confusers}")
        if self.near_misses < 0 or self.confusers + self.near_misses > 0.5:
            raise ValueError(f"near_misses must be >= 0 with confusers + near_misses <= 0.5, got {self.near_misses} "
                             f"(confusers {self.confusers})")
        unknown = set(self.weights) - set(TASKS)
        if unknown:
            raise ValueError(f"unknown question kinds {sorted(unknown)}; known: {TASKS}")
        self._kinds = [k for k in TASKS if self.weights.get(k, 0) > 0]
        w = np.array([self.weights[k] for k in self._kinds], dtype=np.float64)
        self._probs = w / w.sum()

    # ------------------------------------------------------------------ states
    def random_state(self, rng: np.random.Generator, level: int | None = None, hole_prob: float | None = None) -> tuple[VSPMap, int | None]:
        """A board with the player where rollouts take it, and the elf's last move (``None``: facing down, as at reset)."""
        level = int(rng.choice(self.levels)) if level is None else level
        hole_prob = float(rng.choice(self.hole_probs)) if hole_prob is None else hole_prob
        m = generate_map(rng, level, hole_prob)
        u = rng.random()
        if u < 0.45:
            pass  # the generated start
        elif u < 0.75:
            # any cell a rollout can reach: hole-free-connected to the start, hence to the goal
            reach = m.distances_to_goal()
            free = [(int(r), int(c)) for r, c in np.argwhere(reach > 0)]
            m = m.with_player(free[rng.integers(len(free))])
        elif u < 0.875 or not m.holes:
            m = m.with_player(m.goal)
        else:
            holes = m.sorted_holes()
            m = m.with_player(holes[rng.integers(len(holes))])
        last = None if rng.random() < 0.3 else int(rng.integers(4))
        return m, last

    def state_near_holes(self, rng: np.random.Generator, level: int | None = None) -> tuple[VSPMap, int | None]:
        """A :meth:`random_state` board with the player moved into a hole or onto ice beside one (even odds;
        unchanged when the board has no hole): the states whose 2 x 2 code tuples are rarest, where the
        pixel decoder most often draws a hole as ice (session 21)."""
        m, last = self.random_state(rng, level)
        beside = rng.random() < 0.5
        m = _beside_special_cell(m, rng, goal=False) if beside else _on_special_cell(m, rng, goal=False)
        return m, last

    def image(self, m: VSPMap, last_action: int | None, player: bool = True) -> np.ndarray:
        return observation_renderer(m.size, self.image_size, cell_pixels=self.cell_pixels).render(m, last_action, player)

    @classmethod
    def from_stage(cls, data: dict, **overrides) -> "UnderstandingData":
        """From a stage's resolved ``data`` config (``image_size``, ``cell_pixels``, ...); ``overrides`` win."""
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown stage.data keys {sorted(unknown)}; known: {sorted(known)}")
        kw = {k: tuple(v) if k in ("levels", "hole_probs") else v for k, v in data.items()}
        return cls(**{**kw, **overrides})

    def check_model(self, config) -> None:
        """Raise if images drawn here are not laid out like ``config`` (a ``LatentUMConfig``) expects."""
        ours, theirs = (self.image_size, self.cell_pixels), (config.image_size, config.cell_pixels)
        if ours != theirs:
            raise ValueError(f"data images (image_size, cell_pixels) = {ours} but the model expects {theirs}; "
                             f"set stage.data to the model's layout")

    def for_model(self, config) -> "UnderstandingData":
        """This sampler for ``config``'s model: raises on another image layout (:meth:`check_model`) and
        answers the on_goal / in_hole questions in the model's ``flag_answers`` format."""
        self.check_model(config)
        return replace(self, flag_answers=config.flag_answers)

    # ------------------------------------------------------------------ examples
    def example(self, rng: np.random.Generator, kind: str, level: int | None = None) -> Example:
        """One example of ``kind``; its board of ``level`` (default: drawn from ``levels``; task4 is always 5x5)."""
        if level is None:
            level = int(rng.choice(self.levels))
        if kind == "task4":  # as the benchmark builds them: 5x5, 1..9 moves, half unsafe
            m, actions, _ = task4_instance(rng, int(rng.integers(1, 10)), safe=bool(rng.random() < 0.5))
            q, a = prompts.safety_question(m, actions)
            return Example(self.image(m, None), q, a, kind, m)
        if kind == "task3":  # four candidate tables, one of them the image's board (start states)
            candidates, correct, _ = task3_candidates(rng, level, 0)
            q, a = prompts.matching_question(task3_question(candidates), correct, candidates)
            m = candidates[correct]
            return Example(self.image(m, None), q, a, kind, m)
        if kind == "task1" and rng.random() < 0.5:  # the benchmark's own task1 boards: half the cells holes
            m = generate_task1_map(rng, level)
            cell = (int(rng.integers(m.size)), int(rng.integers(m.size)))
            q, a = prompts.hole_question(m, cell)
            return Example(self.image(m, None), q, a, kind, m)
        m, last = self.random_state(rng, level)
        if self.playerless > 0 and kind in ("table", "on_goal", "in_hole") and rng.random() < self.playerless:
            q, a = prompts.playerless_questions(m, kind, interpreted=self.flag_answers == "interpreted")
            return Example(self.image(m, last, player=False), q, a, kind, m, player_drawn=False)
        if kind in ("on_goal", "in_hole") and rng.random() < 0.5:
            # balanced yes/no: these two answers are the world model's reward and termination, and the
            # states they say yes to are rare in random_state (1 in 8 each)
            m = _on_special_cell(m, rng, goal=kind == "on_goal")
        elif kind in ("on_goal", "in_hole") and (self.confusers > 0 or self.near_misses > 0):
            # a No whose player sprite is the other special one, or on ice beside the asked-about cell
            # (2x: these branches see half the questions)
            u = rng.random()
            if u < 2 * self.confusers:
                m = _on_special_cell(m, rng, goal=kind == "in_hole")
            elif u < 2 * (self.confusers + self.near_misses):
                m = _beside_special_cell(m, rng, goal=kind == "on_goal")
        if kind == "task2":
            while m.on_goal:
                m, last = self.random_state(rng, level)
        if kind == "next_move":
            while m.in_hole:
                m, last = self.random_state(rng, level)
        if kind == "task1":
            cell = (int(rng.integers(m.size)), int(rng.integers(m.size)))
            q, a = prompts.hole_question(m, cell)
        else:
            q, a = {
                "task2": prompts.relation_question,
                "player": prompts.player_question,
                "goal": prompts.goal_question,
                "on_goal": partial(prompts.on_goal_question, interpreted=self.flag_answers == "interpreted"),
                "in_hole": partial(prompts.in_hole_question, interpreted=self.flag_answers == "interpreted"),
                "table": prompts.table_question,
                "next_move": prompts.next_move_question,
            }[kind](m)
        return Example(self.image(m, last), q, a, kind, m)

    def batch(self, rng: np.random.Generator, size: int, kind: str | None = None) -> list[Example]:
        """``size`` examples of ``kind``, or (``kind=None``) a training batch: kinds and levels mixed by
        weight, except that the long task3 prompts (four tables, ~300 tokens) come in batches of their own
        (drawn with task3's weight). Padding is cut by the trainer's length-sorted micro-batches.

        Tried and dropped (session 6): batches of one length group (the coordinate-listing kinds, the
        one-line kinds). Each one-line batch got a full AdamW step, the listing kinds got far fewer, and
        at step 2000 the board read-out was 25 % against 92 % with mixed batches. Batches of a single
        level were worse still (17 % at step 2000)."""
        if kind is not None:
            return [self.example(rng, kind) for _ in range(size)]
        if "task3" in self._kinds and rng.random() < self._probs[self._kinds.index("task3")]:
            return [self.example(rng, "task3") for _ in range(size)]
        short = [i for i, k in enumerate(self._kinds) if k != "task3"]
        p = self._probs[short] / self._probs[short].sum()
        kinds = rng.choice(len(short), size=size, p=p)
        return [self.example(rng, self._kinds[short[i]]) for i in kinds]


def batch_rng(seed: int, step: int, rank: int = 0) -> np.random.Generator:
    """The generator of training batch ``step`` on ``rank``: a pure function of the three."""
    return np.random.default_rng([seed, step, rank])


def image_block(tokenizer, positions: int) -> list[int]:
    """``<img> positions x <img_ctx> </img>`` ids."""
    ids = tokenizer.convert_tokens_to_ids([IMG_START, IMG_CONTEXT, IMG_END])
    return [ids[0]] + [ids[1]] * positions + [ids[2]]


def probe_batch(examples: list[Example], config) -> dict[str, torch.Tensor]:
    """Dense perception targets of a batch (see :mod:`latentum_world.model.probe`)."""
    from latentum_world.model.probe import probe_targets

    cells = torch.from_numpy(np.stack([probe_targets(ex.map, config, ex.player_drawn) for ex in examples]))  # (B, P, r*r)
    levels = torch.tensor([LEVELS.index(ex.map.size) for ex in examples])  # (B,)
    return {"probe_cells": cells, "probe_levels": levels}


def collate(tokenizer, examples: list[Example], positions: int, with_answers: bool = True, left_pad: bool = False) -> dict[str, torch.Tensor]:
    """Tokenize a batch.

    Training (``with_answers``): right-padded ``prompt answer <eos>`` with labels on answer and ``<eos>`` only.
    Decoding (``with_answers=False``): left-padded prompts, ready for ``generate_text``.
    Returns ``input_ids`` / ``attention_mask`` / ``labels`` ``(B, T)`` and ``images`` ``(B, S, S, 3)`` uint8.
    """
    head = image_block(tokenizer, positions)
    rows, labels = [], []
    for ex in examples:
        prompt = head + tokenizer.encode_text(ex.question)
        if with_answers:
            answer = tokenizer.encode_text(ex.answer) + [tokenizer.eos_token_id]
            rows.append(prompt + answer)
            labels.append([-100] * len(prompt) + answer)
        else:
            rows.append(prompt)
            labels.append([-100] * len(prompt))
    t = max(len(r) for r in rows)
    pad = tokenizer.pad_token_id
    ids = torch.full((len(rows), t), pad, dtype=torch.long)
    lab = torch.full((len(rows), t), -100, dtype=torch.long)
    mask = torch.zeros((len(rows), t), dtype=torch.long)
    for i, (r, lb) in enumerate(zip(rows, labels)):
        sl = slice(t - len(r), t) if left_pad else slice(0, len(r))
        ids[i, sl] = torch.tensor(r)
        lab[i, sl] = torch.tensor(lb)
        mask[i, sl] = 1
    images = torch.from_numpy(np.stack([ex.image for ex in examples]))
    return {"input_ids": ids, "attention_mask": mask, "labels": lab, "images": images}


def _beside_special_cell(m: VSPMap, rng: np.random.Generator, goal: bool) -> VSPMap:
    """``m`` with the player on an ice cell next to the goal (``goal``) or to a hole; ``m`` unchanged when
    there is no such cell."""
    targets = [m.goal] if goal else m.sorted_holes()
    cells = sorted({(r + dr, c + dc) for r, c in targets for dr, dc in ((0, 1), (1, 0), (0, -1), (-1, 0))
                    if 0 <= r + dr < m.size and 0 <= c + dc < m.size})
    ice = [cell for cell in cells if cell not in m.holes and cell != m.goal]
    return m.with_player(ice[rng.integers(len(ice))]) if ice else m


def _on_special_cell(m: VSPMap, rng: np.random.Generator, goal: bool) -> VSPMap:
    """``m`` with the player on the goal (``goal``, or when there is no hole), else in a random hole."""
    if goal or not m.holes:
        return m.with_player(m.goal)
    return m.with_player(m.sorted_holes()[rng.integers(len(m.holes))])
