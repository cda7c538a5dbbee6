"""Warming a :class:`~latentum_world.world.code_guess.TransitionMemo` on a model's own rollouts and saving it next to
the checkpoint (``latentum-world memo``), so that envs built on that checkpoint start with warm Jacobi guesses.

The rollouts are what a user's first runs would see: ``LatentUM-VSP-v0``'s vector env at its defaults (every
level, truncation at 32 steps, next-step autoreset from fresh generated maps), random actions. Only the speed
of later envs depends on the result; what they imagine does not.
"""

from __future__ import annotations

import os
import time
import warnings
from pathlib import Path

import numpy as np
from tqdm import tqdm

from latentum_world.world.code_guess import MEMO_FILE, TransitionMemo, weights_fingerprint

DEFAULT_STEPS = 2000  # vector-env steps; at 64 envs about 3 minutes here (eager)
DEFAULT_NUM_ENVS = 64
DEFAULT_SEED = 20261205  # (the benchmarks' and evaluations' maps use other seeds)


class NoMemo(ValueError):
    """The model's imagination takes no transition memo (sampled or interpreted steps, or no square latent grid)."""


def memo_is_current(model: str | Path) -> bool:
    """Whether the model directory ``model`` holds a memo that loads for its weights (``train all`` then keeps it)."""
    from latentum_world.training.stages import load_model

    path = Path(model) / MEMO_FILE
    if not path.is_file():
        return False
    weights = load_model(model)[0]
    c = weights.config
    try:
        with warnings.catch_warnings():  # (made for other weights: rebuilt, no need to say so)
            warnings.simplefilter("ignore", UserWarning)
            return TransitionMemo(c.latent_positions, c.codebook_size).load(path, weights_fingerprint(weights))
    except ValueError:  # unreadable, or no square grid of latent positions
        return False


def build_memo(model: str | Path | None = None, steps: int = DEFAULT_STEPS, num_envs: int = DEFAULT_NUM_ENVS,
               seed: int = DEFAULT_SEED, out: str | Path | None = None, quiet: bool = False, device: str = "cpu") -> dict:
    """Roll ``num_envs`` imagined mazes of the world model at ``model`` (a directory; default the bundled one) for
    ``steps`` random-action steps from an empty memo, and write the memo to ``out`` (default
    ``<model>/transition_memo.safetensors``, replaced atomically). Returns a summary: keys, Jacobi round rows
    per imagined row over the first and the last tenth of the steps, seconds. ``device``: where the model runs
    (``"cpu"``, ``"cuda"`` or ``"auto"``)."""
    from latentum_world.world.loading import resolve_model_path
    from envs.latent_vector_env import LatentUMVSPVectorEnv

    if steps < 1 or num_envs < 1:
        raise ValueError(f"steps and num_envs must be >= 1, got {steps} and {num_envs}")
    path = resolve_model_path(model)
    out = Path(out) if out is not None else path / MEMO_FILE
    env = LatentUMVSPVectorEnv(num_envs=num_envs, model=str(path), device=device, memo=False)  # from empty
    world = env.world
    if world.memo is None:
        raise NoMemo(f"{path}: this model's imagination takes no memo (it needs greedy fused steps and a square "
                     "grid of latent positions)")
    rng = np.random.default_rng(seed)
    env.reset(seed=seed)
    fused, tenth = world.fused, max(1, steps // 10)
    marks = []  # (jacobi_rows, round_rows) at the ends of the first and the last tenth
    t0 = time.perf_counter()
    for t in tqdm(range(steps), desc="memo", unit="step", disable=quiet):
        if t in (0, tenth, steps - tenth):
            marks.append((fused.jacobi_rows, fused.round_rows))
        env.step(rng.integers(4, size=num_envs))
    marks.append((fused.jacobi_rows, fused.round_rows))
    env.close()
    seconds = time.perf_counter() - t0
    rate = lambda a, b: (b[1] - a[1]) / max(1, b[0] - a[0])  # noqa: E731
    summary = {"keys": len(world.memo), "steps": steps, "num_envs": num_envs, "seed": seed, "seconds": seconds,
               "round_rows_per_row_first_tenth": rate(marks[0], marks[1]),
               "round_rows_per_row_last_tenth": rate(marks[-2], marks[-1]), "path": str(out)}
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    world.memo.save(partial, weights_fingerprint(env.model), made_by="latentum-world memo", steps=str(steps),
                    num_envs=str(num_envs), seed=str(seed))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(partial, 0o666 & ~umask)  # (safetensors writes 0600: a bundled file must be readable by everyone)
    os.replace(partial, out)
    return summary
