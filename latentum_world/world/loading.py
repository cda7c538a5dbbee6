"""Finding and loading world-model checkpoints (the bundled default or a user's directory)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import torch

BUNDLED = Path(__file__).resolve().parent.parent / "checkpoints" / "default"


def resolve_model_path(path: str | Path | None) -> Path:
    """``path``, or the bundled default checkpoint; a clear error when neither exists."""
    p = Path(path) if path is not None else BUNDLED
    if not (p / "config.json").is_file() or not (p / "model.safetensors").is_file():
        if path is None:
            raise FileNotFoundError(
                f"no bundled checkpoint at {p}; pass model=<dir> or train one with `latentum-world train all`"
            )
        raise FileNotFoundError(f"{p} is not a LatentUM model directory (needs config.json and model.safetensors)")
    return p


@lru_cache(maxsize=4)
def _load(path: str, device: str):
    from latentum_world.training.stages import load_model

    model, tok = load_model(path)
    if not model.config.generation_branch:
        raise ValueError(f"{path} has no generation branch: it is an understanding/MBAQ checkpoint, not a world model")
    return model.to(torch.device(device)).eval(), tok


def load_world_model(path: str | Path | None = None, device: str = "cpu"):
    """(model, tokenizer) of a world-model checkpoint, shared between envs in one process (read-only use)."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return _load(str(resolve_model_path(path).resolve()), device)
