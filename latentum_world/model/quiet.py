"""Loading a small local checkpoint without transformers' "Loading weights" progress bar."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

from transformers.utils import logging as hf_logging


@contextmanager
def no_progress_bar():
    """Turn transformers' progress bars off inside the block and restore the caller's setting after it."""
    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def from_pretrained_quietly(cls, path: str | Path, **kwargs):
    """``cls.from_pretrained(path)`` for a checkpoint that loads in well under a second: the bar is only noise
    on stderr (for example at every ``gym.make``)."""
    with no_progress_bar():
        return cls.from_pretrained(path, **kwargs)
