"""Weight averaging of fine-tuned checkpoints ("model soup", Wortsman et al. 2022).

Checkpoints fine-tuned from one common ancestor usually sit in one basin of the loss, so their weighted
mean is itself a good model and often better than each. Here it mixes ``world`` fine-tunes of one bundle:
one trained longer is sharper at single steps and looser over long rollouts, its parent the reverse.
Only models of the same architecture (equal ``config.json`` up to bookkeeping keys) and the same tensors
can be averaged; integer tensors (none in LatentUM today) must then be equal in every input.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

WEIGHTS = "model.safetensors"
COPIED = ("config.json", "tokenizer.json", "tokenizer_config.json")
BOOKKEEPING = {"_name_or_path", "transformers_version"}  # config keys that may differ between averageable models


def _config(path: Path) -> dict:
    if not (path / "config.json").is_file() or not (path / WEIGHTS).is_file():
        raise FileNotFoundError(f"{path} is not a model directory (needs config.json and {WEIGHTS})")
    return {k: v for k, v in json.loads((path / "config.json").read_text()).items() if k not in BOOKKEEPING}


def average_checkpoints(paths: list[str | Path], out: str | Path, weights: list[float] | None = None,
                        overwrite: bool = False) -> dict:
    """Write the weighted mean of the models at ``paths`` to ``out`` (config and tokenizer of the first).

    :param weights: one positive number per model (normalised to sum 1); default equal weights.
    :param overwrite: replace a model already at ``out`` (never one of the inputs).
    :returns: ``{"averaged": tensors that differ between inputs, "equal": tensors equal in all, "weights": [...]}``.
    """
    paths = [Path(p) for p in paths]
    out = Path(out)
    if len(paths) < 2:
        raise ValueError(f"averaging needs at least two models, got {len(paths)}")
    weights = [1.0] * len(paths) if weights is None else [float(w) for w in weights]
    if len(weights) != len(paths):
        raise ValueError(f"{len(weights)} weights for {len(paths)} models")
    if any(not w > 0 for w in weights):
        raise ValueError(f"weights must be positive, got {weights}")
    weights = [w / sum(weights) for w in weights]
    if any(out.resolve() == p.resolve() for p in paths if p.exists()):
        raise ValueError(f"the output {out} is one of the inputs; write the average somewhere else")
    if (out / WEIGHTS).exists() and not overwrite:
        raise FileExistsError(f"{out} already holds a model; pass overwrite=True (--overwrite) to replace it")

    configs = [_config(p) for p in paths]
    for p, c in zip(paths[1:], configs[1:]):
        diff = sorted(k for k in set(c) | set(configs[0]) if c.get(k) != configs[0].get(k))
        if diff:
            raise ValueError(f"{p} and {paths[0]} are different models (config keys differ: {', '.join(diff)})")

    states = [load_file(str(p / WEIGHTS)) for p in paths]
    names = states[0].keys()
    for p, s in zip(paths[1:], states[1:]):
        if s.keys() != names:
            missing = sorted(set(names) ^ set(s.keys()))
            raise ValueError(f"{p} and {paths[0]} hold different tensors (for example {missing[0]})")
    mean, averaged = {}, 0
    for name in names:
        ts = [s[name] for s in states]
        if any(t.shape != ts[0].shape for t in ts):
            raise ValueError(f"tensor {name} has shapes {[tuple(t.shape) for t in ts]} in the inputs")
        if all(torch.equal(t, ts[0]) for t in ts[1:]):
            mean[name] = ts[0]
        elif not ts[0].is_floating_point():
            raise ValueError(f"integer tensor {name} differs between the inputs and cannot be averaged")
        else:
            acc = sum(w * t.double() for w, t in zip(weights, ts))  # float64 sum, then the inputs' dtype
            mean[name] = acc.to(ts[0].dtype)
            averaged += 1

    out.mkdir(parents=True, exist_ok=True)
    tmp = out / (WEIGHTS + ".tmp")
    save_file({k: v.contiguous() for k, v in mean.items()}, str(tmp), metadata={"format": "pt"})
    tmp.replace(out / WEIGHTS)
    for name in COPIED:
        if (paths[0] / name).is_file():
            shutil.copy(paths[0] / name, out / name)
    report = {"inputs": [str(p) for p in paths], "weights": weights, "averaged": averaged,
              "equal": len(mean) - averaged}
    (out / "averaged_from.json").write_text(json.dumps(report, indent=2) + "\n")
    return report
