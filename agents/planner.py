"""Planning in latent imagination: breadth-first search over the world model.

Given one REAL first frame, the planner never looks at the maze again. It searches the world model's
imagination breadth first: every frontier state is expanded with all four actions in one batched
:meth:`~latentum_world.world.model.LatentWorldModel.step` (the MoME generation branch imagines each next
state's codes; the understanding branch, reading them, says whether the player is on the goal or in a
hole), imagined states with identical codes are merged, states the model says are holes are not expanded,
and the search stops at the first depth where the model says an imagined state is the goal. The actions
that lead there are the plan: a shortest path *in imagination*, ties broken in action order L, D, R, U
(as :meth:`envs.vsp.maps.VSPMap.shortest_path` breaks them on the real board).

The imagined states are MBAQ codes, not boards: the player's sprite faces its last move, so one cell can
be two to four states (one per arrival direction). That costs search width, never correctness: a
state is merged only with an identical one, and the world model is Markov in its codes.

Scoring the plan is :mod:`agents.plan_eval`'s job (it executes the actions in the real maze).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from envs.vsp.maps import VSPMap
from latentum_world.world.model import LatentWorldModel

NUM_ACTIONS = 4


@dataclass
class Plan:
    actions: list[int] | None  # the plan (0 L, 1 D, 2 R, 3 U), or None: no imagined goal within max_depth
    depth: int  # the search depth reached (the plan's length when one was found)
    imagined_transitions: int  # world-model transitions spent (rows stepped)
    states: int  # distinct imagined states met (the start included)


class LatentBFSPlanner:
    """Breadth-first search over a :class:`~latentum_world.world.model.LatentWorldModel` (see the module docstring).

    :param world: the world model (greedy sampling gives a deterministic search).
    :param max_depth: give up after this many imagined steps without an imagined goal.
    :param max_states: give up once this many distinct imagined states are met (a bound on the work; a
        level-8 board has at most 64 cells x 4 facings).
    :param batch_size: rows per world-model call (a depth with more frontier rows takes several calls).
    """

    def __init__(self, world: LatentWorldModel, max_depth: int = 64, max_states: int = 1024, batch_size: int = 256):
        if max_depth < 1 or max_states < 1 or batch_size < NUM_ACTIONS:
            raise ValueError(f"need max_depth >= 1, max_states >= 1 and batch_size >= {NUM_ACTIONS}, got "
                             f"{max_depth}, {max_states}, {batch_size}")
        self.world, self.max_depth, self.max_states = world, max_depth, max_states
        self.batch_size = batch_size - batch_size % NUM_ACTIONS  # whole states per call

    @torch.no_grad()
    def plan(self, image: torch.Tensor | "np.ndarray", draft_board: VSPMap | None = None) -> Plan:  # noqa: F821
        """Search from the real frame ``image`` ``(S, S, 3)`` uint8.

        :param draft_board: optional: the board the frame shows, handed to the model only as the draft of
            its read-outs (:mod:`latentum_world.model.draft`: speed only, every answer is the model's own).
        """
        image = torch.as_tensor(image)
        if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != torch.uint8:
            raise ValueError(f"image must be one (S, S, 3) uint8 frame, got {tuple(image.shape)} {image.dtype}")
        start = self.world.reset(image[None], draft_boards=[draft_board])[0]  # (P, K): the real frame's MBAQ codes
        seen = {_key(start)}
        frontier: list[tuple[torch.Tensor | None, list[int]]] = [(None, [])]  # (codes, actions); None: the real frame
        transitions = 0
        for depth in range(1, self.max_depth + 1):
            children: list[tuple[torch.Tensor, list[int]]] = []
            per_call = self.batch_size // NUM_ACTIONS
            for lo in range(0, len(frontier), per_call):
                chunk = frontier[lo : lo + per_call]
                out = self._expand(image, chunk, draft_board)
                transitions += NUM_ACTIONS * len(chunk)
                goal, ended = out.reward > 0, out.terminated
                for row in range(len(goal)):
                    path = chunk[row // NUM_ACTIONS][1] + [row % NUM_ACTIONS]
                    if bool(goal[row]):  # rows are in frontier order x action order: the first goal is the tie-break
                        return Plan(path, depth, transitions, len(seen) + 1)
                    if bool(ended[row]):  # the model says hole: not expanded
                        continue
                    key = _key(out.codes[row])
                    if key not in seen:
                        seen.add(key)
                        children.append((out.codes[row], path))
            if not children or len(seen) >= self.max_states:
                return Plan(None, depth, transitions, len(seen))
            frontier = children
        return Plan(None, self.max_depth, transitions, len(seen))

    def _expand(self, image: torch.Tensor, chunk: list, draft_board: VSPMap | None):
        """One world-model step of every state in ``chunk`` under every action (state-major, then L, D, R, U)."""
        n = NUM_ACTIONS * len(chunk)
        drafts = [draft_board] * n
        if chunk[0][0] is None:  # the root: the real frame, as continuous features
            self.world.reset(image[None].expand(n, -1, -1, -1), draft_boards=drafts)
        else:
            codes = torch.stack([c for c, _ in chunk]).repeat_interleave(NUM_ACTIONS, dim=0)  # (n, P, K)
            self.world.set_codes(codes, draft_boards=drafts)
        return self.world.step(torch.arange(NUM_ACTIONS).repeat(len(chunk)))


def _key(codes: torch.Tensor) -> bytes:
    """A hashable identity of one state's codes ``(P, K)``."""
    return codes.to(torch.int16).cpu().numpy().tobytes()
