"""Real maze rollouts for world-model training: episodes from a mix of policies.

Random, epsilon-greedy around the shortest path and optimal policies at levels 3..8, so holes,
wall bumps and goals all occur. A frame is the board state plus the elf's last move (what the real
env renders); the data are pure functions of the generator passed in.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from envs.vsp.maps import LEVELS, VSPMap, generate_map

POLICIES = ("random", "epsilon", "optimal")


@dataclass
class Episode:
    frames: list[tuple[VSPMap, int | None]]  # (state, last action) for s_0 .. s_T
    actions: list[int]  # a_0 .. a_{T-1}

    def __len__(self) -> int:
        return len(self.actions)


def choose_action(rng: np.random.Generator, m: VSPMap, policy: str, epsilon: float) -> int:
    if policy == "random" or (policy == "epsilon" and rng.random() < epsilon):
        return int(rng.integers(4))
    path = m.shortest_path()
    return int(rng.integers(4)) if not path else path[0]


def rollout(rng: np.random.Generator, level: int | None = None, policy: str | None = None, max_steps: int = 16,
            levels: tuple[int, ...] = LEVELS, hole_prob: float = 0.2, continue_after_end: bool = False) -> Episode:
    """One episode from a fresh map. Ends at a hole or the goal unless ``continue_after_end``
    (the world model must also learn that terminal states stay put: every move from the goal or a hole
    is still answered by the model, so a few episodes walk on)."""
    level = int(rng.choice(levels)) if level is None else level
    policy = POLICIES[int(rng.integers(len(POLICIES)))] if policy is None else policy
    if policy not in POLICIES:
        raise ValueError(f"policy must be one of {POLICIES}, got {policy!r}")
    epsilon = float(rng.uniform(0.1, 0.5))
    m = generate_map(rng, level, hole_prob)
    frames: list[tuple[VSPMap, int | None]] = [(m, None)]
    actions: list[int] = []
    for _ in range(max_steps):
        a = choose_action(rng, m, policy, epsilon) if not m.terminal else int(rng.integers(4))
        if m.terminal and not continue_after_end:
            break
        m = m if m.terminal else m.move(a)
        actions.append(a)
        frames.append((m, a))
    return Episode(frames, actions)


def transition_window(rng: np.random.Generator, length: int, max_steps: int = 16, levels: tuple[int, ...] = LEVELS,
                      terminal_focus: float = 0.0) -> Episode:
    """``length`` consecutive transitions from a rollout (episodes too short are extended by walking on in place).

    With probability ``terminal_focus`` the window is placed so that it holds the move that ended the
    episode (into a hole or onto the goal), when there was one: uniform windows see that single step of
    an episode rarely, and it is the step whose next state (the elf drawn fallen in, or on the goal) the
    world model gets wrong most often."""
    if not 0.0 <= terminal_focus <= 1.0:
        raise ValueError(f"terminal_focus must be in [0, 1], got {terminal_focus}")
    focus = terminal_focus > 0 and rng.random() < terminal_focus  # drawn only when used: seeded streams unchanged at 0
    ep = rollout(rng, max_steps=max_steps, levels=levels, continue_after_end=rng.random() < 0.2)
    while len(ep) < length:  # pad short episodes: terminal states stay where they are
        m, _ = ep.frames[-1]
        a = int(rng.integers(4))
        nxt = m if m.terminal else m.move(a)
        ep.frames.append((nxt, a))
        ep.actions.append(a)
    end = next((t for t in range(1, len(ep.frames)) if ep.frames[t][0].terminal), None)  # s_end: first terminal state
    if focus and end is not None:  # windows [start, start + length) holding transition end - 1
        lo, hi = max(0, end - length), min(end - 1, len(ep) - length)
        start = int(rng.integers(lo, hi + 1))
    else:
        start = int(rng.integers(len(ep) - length + 1))
    return Episode(ep.frames[start : start + length + 1], ep.actions[start : start + length])
