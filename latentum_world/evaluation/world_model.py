"""World-model evaluation: how far open-loop imagination stays true to the real maze.

Every episode starts from a REAL first frame (the board rendered as the model sees images,
:func:`~envs.vsp.observation.model_renderer`, elf facing down, which is exactly the benchmark PNG
resized). The :class:`~latentum_world.world.model.LatentWorldModel` then imagines ``horizon`` transitions
open-loop (it never sees another real frame), while the real maze is stepped alongside with the same
actions. The policy acts on the REAL state: uniform random actions, or the BFS shortest path of the real
board (random once the path is exhausted); each episode draws from its own generator
(:func:`action_rng`), so the actions do not depend on the batch size.

At each depth ``d = 1 .. horizon`` and for every episode still running in reality (the step that reaches
the goal or a hole is counted; every later one is not: the episode is over), three things are compared:

* **board**: the model's VSP-table read-out of its imagined state (:meth:`LatentWorldModel.read_board`)
  against the real board, exact match (a read-out that is not a valid table is wrong, and also counted as
  ``board_invalid``);
* **reward / terminated**: the model's answers (from the understanding branch) against the real env's:
  reward 1 iff the real player is on the goal, terminated iff on the goal or in a hole; ``reward_positive``
  and ``terminated_positive`` are the same comparisons restricted to the steps where the real value is 1;
* **codes**: the imagined codes against the MBAQ codes of the real next frame (the board rendered with the
  elf facing the move): ``code_positions`` counts latent positions whose K codes all match, ``codes``
  individual codes.

The imagination is timed (``LatentWorldModel.step`` only: the transition and its reward / termination
answers, not the encoding of the real frames; the read-out only where it IS the reward / termination,
``flags_from="readout"``) and reported as transitions per second.

Every one-step board miss is also kept (``one_step_misses``: the real and the read boards, whether the
imagined codes were the real next frame's exactly, and whether the model reads the real codes right), so
a miss can be told apart as a reading error (the real codes are misread too) or a generation error.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from envs.vsp.formats import to_table
from envs.vsp.maps import ACTION_LETTERS, LEVELS, VSPMap, generate_map
from envs.vsp.observation import model_renderer
from envs.vsp.scoring import Tally, aligned_table, format_accuracy
from latentum_world.data.rollouts import choose_action
from latentum_world.evaluation.perception import DEFAULT_GENERATED, DEFAULT_SEED, heldout_rng
from latentum_world.model.depth_head import Sampling

#: Policies the evaluation can follow (on the real state).
POLICIES = ("random", "optimal")
DEFAULT_HORIZON = 16
DEFAULT_BATCH_SIZE = 64
#: Stream part of the generated start maps in :func:`~latentum_world.evaluation.perception.heldout_rng`
#: (perception uses parts ``0 .. len(TASKS)``), so they differ from perception's held-out maps too.
START_PART = 0x57A7
#: Mixed into every episode's action stream (:func:`action_rng`).
ACTION_TAG = 0xAC7


@dataclass(frozen=True)
class StartState:
    """One episode's real start: the board and where it came from (``task-main/maps/level3/0``, ``generated/level3/0``)."""

    map: VSPMap
    name: str

    @property
    def level(self) -> int:
        return self.map.size


def vsp_start_states(path: str | Path, split: str | None = None) -> list[StartState]:
    """The task-main items under ``path`` (a checkout, its ``maze`` folder, or ``vsp generate`` output):
    split ``maps`` where present, else ``example`` (or the given ``split``)."""
    from latentum_world.vsp_cli import find_maze_root, main_items

    items = main_items(find_maze_root(path), split)
    return [StartState(it.map, f"task-main/{it.split}/{it.level_name}/{it.index}") for it in items if it.map is not None]


def generated_start_states(n: int, seed: int = DEFAULT_SEED, levels=LEVELS) -> list[StartState]:
    """``n`` fresh benchmark-rule maps per level (hole probability 0.2), from ``heldout_rng(seed, START_PART, level)``:
    disjoint from training's streams and from perception's held-out sets."""
    out = []
    for level in levels:
        rng = heldout_rng(seed, START_PART, level)
        out.extend(StartState(generate_map(rng, level), f"generated/level{level}/{i}") for i in range(n))
    return out


def action_rng(seed: int, episode: int) -> np.random.Generator:
    """The action stream of episode ``episode`` (its index in the start list)."""
    return np.random.default_rng([int(seed), ACTION_TAG, int(episode)])


def make_sampling(temperature: float | None, seed: int = DEFAULT_SEED, device: str | torch.device = "cpu") -> Sampling:
    """Greedy when ``temperature`` is ``None``, else temperature sampling from a ``torch.Generator`` seeded with ``seed``."""
    if temperature is None:
        return Sampling(greedy=True)
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    return Sampling(temperature=temperature, generator=torch.Generator(device=device).manual_seed(int(seed)))


# ---------------------------------------------------------------------------- results
@dataclass
class StepStats:
    """Comparisons over a set of counted (episode, depth) steps."""

    steps: int = 0
    board: Tally = field(default_factory=Tally)
    board_invalid: int = 0
    reward: Tally = field(default_factory=Tally)
    reward_positive: Tally = field(default_factory=Tally)
    terminated: Tally = field(default_factory=Tally)
    terminated_positive: Tally = field(default_factory=Tally)
    code_positions: Tally = field(default_factory=Tally)
    codes: Tally = field(default_factory=Tally)

    TALLIES = ("board", "reward", "reward_positive", "terminated", "terminated_positive", "code_positions", "codes")

    def merge(self, other: StepStats) -> StepStats:
        self.steps += other.steps
        self.board_invalid += other.board_invalid
        for name in self.TALLIES:
            a, b = getattr(self, name), getattr(other, name)
            a.correct += b.correct
            a.total += b.total
        return self

    @classmethod
    def total(cls, parts) -> StepStats:
        out = cls()
        for p in parts:
            out.merge(p)
        return out

    def to_dict(self) -> dict:
        d: dict = {"steps": self.steps, "board_invalid": self.board_invalid}
        d.update({name: getattr(self, name).to_dict() for name in self.TALLIES})
        return d


@dataclass
class WorldModelResults:
    """Everything ``latentum-world eval world-model`` reports.

    :param stats: ``(level, depth)`` -> comparisons of the steps counted at that depth on that level's boards.
    :param episodes: level -> number of episodes.
    :param starts: start-state source -> number of episodes (``"task-main/maps"``, ``"generated"``, ...).
    :param transitions: imagined transitions timed (every row of every ``step`` call, ended episodes included).
    :param seconds: wall time of those ``step`` calls.
    """

    model: str
    vsp: str | None
    generated_per_level: int
    seed: int
    horizon: int
    policy: str
    temperature: float | None
    batch_size: int
    device: str = "cpu"
    flags_from: str = "questions"  # where reward / termination come from (LatentWorldModel.flags_from)
    episodes: dict[int, int] = field(default_factory=dict)
    starts: dict[str, int] = field(default_factory=dict)
    stats: dict[tuple[int, int], StepStats] = field(default_factory=dict)
    transitions: int = 0
    seconds: float = 0.0
    one_step_misses: list[dict] = field(default_factory=list)

    def cell(self, level: int, depth: int) -> StepStats:
        return self.stats.setdefault((level, depth), StepStats())

    @property
    def levels(self) -> list[int]:
        return sorted(self.episodes)

    def depth_stats(self, depth: int, level: int | None = None) -> StepStats:
        return StepStats.total(s for (lv, d), s in self.stats.items() if d == depth and (level is None or lv == level))

    def level_stats(self, level: int | None = None) -> StepStats:
        return StepStats.total(s for (lv, _), s in self.stats.items() if level is None or lv == level)

    @property
    def transitions_per_second(self) -> float | None:
        return self.transitions / self.seconds if self.seconds > 0 else None

    def to_dict(self) -> dict:
        """JSON-ready. Stats objects are ``{"steps", "board_invalid", "board", "reward", "reward_positive",
        "terminated", "terminated_positive", "code_positions", "codes"}`` with tallies ``{"correct", "total",
        "accuracy"}``; ``depths`` is the curve over all levels (entry ``i`` is depth ``i + 1``), ``levels[L]`` the
        same per level plus ``all_depths``; ``one_step`` is depth 1 and ``all_depths`` everything."""
        depths = range(1, self.horizon + 1)
        return {
            "model": self.model,
            "vsp": self.vsp,
            "generated": {"seed": self.seed, "per_level": self.generated_per_level},
            "policy": self.policy,
            "horizon": self.horizon,
            "sampling": {"greedy": self.temperature is None, "temperature": self.temperature, "seed": self.seed},
            "flags_from": self.flags_from,
            "batch_size": self.batch_size,
            "episodes": {"levels": {str(lv): self.episodes[lv] for lv in self.levels}, "total": sum(self.episodes.values()),
                         "starts": dict(self.starts)},
            "one_step": self.depth_stats(1).to_dict(),
            "all_depths": self.level_stats().to_dict(),
            "depths": [{"depth": d, **self.depth_stats(d).to_dict()} for d in depths],
            "levels": {
                str(lv): {
                    "episodes": self.episodes[lv],
                    "one_step": self.depth_stats(1, lv).to_dict(),
                    "all_depths": self.level_stats(lv).to_dict(),
                    "depths": [{"depth": d, **self.depth_stats(d, lv).to_dict()} for d in depths],
                }
                for lv in self.levels
            },
            "one_step_misses": self.miss_counts() | {"examples": self.one_step_misses},
            "speed": {"device": self.device, "batch_size": self.batch_size, "transitions": self.transitions,
                      "seconds": self.seconds, "transitions_per_second": self.transitions_per_second},
        }

    def miss_counts(self) -> dict:
        """One-step board misses split by cause: ``codes_exact`` (the imagined codes were the real next frame's,
        so the miss is the reading's) and ``real_codes_misread`` (the real codes are misread too)."""
        m = self.one_step_misses
        return {"total": len(m), "codes_exact": sum(x["codes_exact"] for x in m),
                "real_codes_misread": sum(not x["real_codes_read_right"] for x in m)}

    def format_table(self) -> str:
        sampling = "greedy" if self.temperature is None else f"temperature {self.temperature} (seed {self.seed})"
        sources = ", ".join(f"{n} {name}" for name, n in self.starts.items())
        parts = [f"model: {self.model}  policy: {self.policy}  horizon: {self.horizon}  sampling: {sampling}"
                 f"  reward/termination from: {self.flags_from}\n"
                 f"episodes: {sum(self.episodes.values())} ({sources})"]
        header = ("", "steps", "board", "reward", "reward=1", "term", "term=1", "positions", "codes")

        def row(name: str, s: StepStats) -> tuple[str, ...]:
            return (name, str(s.steps), *[format_accuracy(getattr(s, t)) for t in StepStats.TALLIES])

        parts.append("== by depth (all levels)")
        parts.append(aligned_table(("depth",) + header[1:],
                                   [row(str(d), self.depth_stats(d)) for d in range(1, self.horizon + 1)]))
        parts.append("== by level (all depths)")
        rows = [row(f"L{lv}", self.level_stats(lv)) for lv in self.levels]
        rows += [row("one step", self.depth_stats(1)), row("all depths", self.level_stats())]
        parts.append(aligned_table(("level",) + header[1:], rows))
        parts.append("== board read-out exact match by depth and level")
        rows = []
        for d in range(1, self.horizon + 1):
            rows.append((str(d), *[format_accuracy(self.depth_stats(d, lv).board) for lv in self.levels],
                         format_accuracy(self.depth_stats(d).board)))
        parts.append(aligned_table(("depth", *[f"L{lv}" for lv in self.levels], "all"), rows))
        tps = self.transitions_per_second
        parts.append(f"imagination: {self.transitions} transitions in {self.seconds:.2f} s = "
                     f"{'-' if tps is None else f'{tps:.1f}'} transitions/s (batch {self.batch_size}, {self.device}; "
                     f"LatentWorldModel.step incl. reward/termination from the {self.flags_from}"
                     f"{', excl. read-out' if self.flags_from == 'questions' else ''})")
        c = self.miss_counts()
        parts.append(f"one-step board misses: {c['total']} ({c['codes_exact']} with the real next codes generated exactly; "
                     f"{c['real_codes_misread']} where the real next codes are misread too)")
        return "\n\n".join(parts)


# ---------------------------------------------------------------------------- evaluation
def _images(maps: list[VSPMap], last_actions: list[int | None], config) -> torch.Tensor:
    return torch.from_numpy(np.stack([model_renderer(config, m.size).render(m, a) for m, a in zip(maps, last_actions)]))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def rollout_batch(world_model, starts: list[StartState], first_index: int, results: WorldModelResults) -> None:
    """Roll one batch of episodes (episode ``first_index + i`` is ``starts[i]``) and add its comparisons to ``results``."""
    wm, horizon, policy = world_model, results.horizon, results.policy
    config = wm.model.config
    maps = [s.map for s in starts]
    rngs = [action_rng(results.seed, first_index + i) for i in range(len(starts))]
    wm.reset(_images(maps, [None] * len(maps), config), draft_boards=maps)  # start boards draft the read-outs (speed only)
    running = [not m.terminal for m in maps]  # a start on the goal or in a hole has nothing to imagine
    for depth in range(1, horizon + 1):
        if not any(running):
            break
        actions = [choose_action(rng, m, policy, 0.0) for rng, m in zip(rngs, maps)]
        _sync(wm.device)
        t0 = time.perf_counter()
        out = wm.step(torch.tensor(actions, dtype=torch.long))
        _sync(wm.device)
        results.seconds += time.perf_counter() - t0
        results.transitions += len(maps)
        maps = [m if m.terminal else m.move(a) for m, a in zip(maps, actions)]  # ended episodes stay put
        rows = [i for i, r in enumerate(running) if r]
        real = [maps[i] for i in rows]
        _, real_codes = wm.encode(_images(real, [actions[i] for i in rows], config))
        idx = torch.tensor(rows, dtype=torch.long, device=wm.device)
        if getattr(wm, "flags_from", "questions") == "readout":  # decoded in the step already
            kept = wm.read_board()
            boards = [kept[i] for i in rows]
        else:
            boards = wm.read_board(wm.state_embeds[idx], draft_boards=[starts[i].map for i in rows])
        eq = out.codes[idx].to(real_codes.device) == real_codes  # (n, P, K)
        pos_ok, code_ok = eq.all(-1).sum(-1).tolist(), eq.sum((-1, -2)).tolist()
        p, k = eq.shape[1], eq.shape[2]
        reward, terminated = out.reward[idx].tolist(), out.terminated[idx].tolist()
        for j, i in enumerate(rows):
            m = maps[i]
            s = results.cell(m.size, depth)
            s.steps += 1
            s.board.add(boards[j] == m)
            s.board_invalid += boards[j] is None
            real_reward = 1.0 if m.on_goal else 0.0
            s.reward.add(float(reward[j]) == real_reward)
            if m.on_goal:
                s.reward_positive.add(float(reward[j]) == 1.0)
            s.terminated.add(bool(terminated[j]) == m.terminal)
            if m.terminal:
                s.terminated_positive.add(bool(terminated[j]))
            s.code_positions.correct += int(pos_ok[j])
            s.code_positions.total += p
            s.codes.correct += int(code_ok[j])
            s.codes.total += p * k
            running[i] = not m.terminal
        if depth == 1:
            _record_misses(wm, results, first_index, rows, [maps[i] for i in rows], [actions[i] for i in rows], boards,
                           real_codes, [pos_ok[j] == p for j in range(len(rows))])


def _record_misses(wm, results: WorldModelResults, first_index: int, rows: list[int], real: list[VSPMap],
                   actions: list[int], boards: list[VSPMap | None], real_codes: torch.Tensor, exact: list[bool]) -> None:
    """Keep every one-step board miss, with the model's read-out of the real next frame's own codes."""
    missed = [j for j, b in enumerate(boards) if b != real[j]]
    if not missed:
        return
    codes = real_codes[torch.tensor(missed, dtype=torch.long, device=real_codes.device)].to(wm.device)
    read_real = wm.read_board(wm.model.project_latents(codes), draft_boards=[real[j] for j in missed])
    for j, rr in zip(missed, read_real):
        results.one_step_misses.append({
            "episode": first_index + rows[j], "level": real[j].size, "action": ACTION_LETTERS[actions[j]],
            "real": to_table(real[j]), "read": None if boards[j] is None else to_table(boards[j]),
            "codes_exact": bool(exact[j]), "real_codes_read_right": rr == real[j],
        })


def evaluate_world_model(world_model, starts: list[StartState], horizon: int = DEFAULT_HORIZON, policy: str = "random",
                         seed: int = DEFAULT_SEED, batch_size: int = DEFAULT_BATCH_SIZE, quiet: bool = False,
                         model_name: str = "", vsp: str | Path | None = None, generated_per_level: int = 0,
                         temperature: float | None = None) -> WorldModelResults:
    """Roll ``world_model`` (a :class:`LatentWorldModel`, its sampling already set: see :func:`make_sampling`)
    from every start state, in batches of ``batch_size``; ``vsp``, ``generated_per_level`` and ``temperature``
    are only recorded in the results."""
    if policy not in POLICIES:
        raise ValueError(f"policy must be one of {POLICIES}, got {policy!r}")
    if horizon < 1 or batch_size < 1:
        raise ValueError(f"need horizon >= 1 and batch_size >= 1, got {horizon} and {batch_size}")
    if not starts:
        raise ValueError("no start states to evaluate")
    results = WorldModelResults(model_name, None if vsp is None else str(vsp), generated_per_level, seed, horizon, policy,
                                temperature, batch_size, str(world_model.device), getattr(world_model, "flags_from", "questions"))
    for s in starts:
        results.episodes[s.level] = results.episodes.get(s.level, 0) + 1
        source = s.name.rsplit("/", 2)[0]  # task-main/maps, generated
        results.starts[source] = results.starts.get(source, 0) + 1
    for lv in results.episodes:  # every (level, depth) cell exists, so empty depths show as empty tallies
        for d in range(1, horizon + 1):
            results.cell(lv, d)
    for start in tqdm(range(0, len(starts), batch_size), desc="world model", disable=quiet, leave=False, unit="batch"):
        rollout_batch(world_model, starts[start : start + batch_size], start, results)
    return results
