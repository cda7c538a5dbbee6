"""Checkpoints: a Hugging Face model directory (config.json, model.safetensors, tokenizer files) plus
``trainer_state.pt`` (optimizer, schedule, step, RNG), read back with ``weights_only=True``."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import torch

TRAINER_STATE = "trainer_state.pt"
_CKPT_RE = re.compile(r"^checkpoint-(\d+)$")


def checkpoints(out_dir: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints under ``out_dir``, oldest first."""
    found = []
    if out_dir.is_dir():
        for d in out_dir.iterdir():
            m = _CKPT_RE.match(d.name)
            if m and (d / TRAINER_STATE).is_file() and (d / "model.safetensors").is_file():
                found.append((int(m.group(1)), d))
    return sorted(found)


def latest_checkpoint(out_dir: Path) -> Path | None:
    found = checkpoints(out_dir)
    return found[-1][1] if found else None


def save_checkpoint(out_dir: Path, step: int, model, tokenizer, state: dict, keep: int) -> Path:
    """Write ``out_dir/checkpoint-{step}`` atomically (a temporary folder renamed at the end); prune old ones."""
    final = out_dir / f"checkpoint-{step}"
    tmp = out_dir / f".tmp-checkpoint-{step}"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    torch.save(state, tmp / TRAINER_STATE)
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    for _, old in checkpoints(out_dir)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def load_trainer_state(ckpt: Path) -> dict:
    return torch.load(ckpt / TRAINER_STATE, weights_only=True)
