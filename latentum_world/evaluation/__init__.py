"""Evaluation of the model against the real maze: perception, MBAQ, world model."""

from __future__ import annotations

import json
from pathlib import Path


def write_json(path: str | Path, data: dict) -> Path:
    """Write ``data`` as indented JSON to ``path`` (parent folders made) and say so; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")
    print(f"wrote {path}")
    return path
