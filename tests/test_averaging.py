"""``latentum-world average``: the weighted mean of checkpoints of one architecture."""

import json

import pytest
import torch
from safetensors.torch import load_file

from latentum_world.cli import main
from latentum_world.model.config import LatentUMConfig
from latentum_world.model.modeling import LatentUMModel
from latentum_world.tokenizer import build_tokenizer
from latentum_world.training.averaging import average_checkpoints
from latentum_world.training.stages import load_model
from tiny import TINY


def save_tiny(path, seed, **kw):
    torch.manual_seed(seed)
    tok = build_tokenizer()
    model = LatentUMModel(LatentUMConfig(vocab_size=len(tok), **{**TINY, **kw}))
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return load_file(str(path / "model.safetensors"))


def test_weighted_mean_of_two_models(tmp_path):
    a, b = save_tiny(tmp_path / "a", 0), save_tiny(tmp_path / "b", 1)
    shared = "language_model.layers.0.input_layernorm.weight"  # initialised to ones in both: equal tensors are copied as they are
    assert torch.equal(a[shared], b[shared])
    report = average_checkpoints([tmp_path / "a", tmp_path / "b"], tmp_path / "mean", weights=[1, 3])
    assert report["weights"] == [0.25, 0.75] and report["averaged"] > 0 and report["equal"] > 0
    mean = load_file(str(tmp_path / "mean" / "model.safetensors"))
    assert mean.keys() == a.keys()
    differing = [k for k in a if not torch.equal(a[k], b[k])]
    assert len(differing) == report["averaged"]
    for k in a:
        torch.testing.assert_close(mean[k], 0.25 * a[k] + 0.75 * b[k], rtol=0, atol=1e-6)
    assert torch.equal(mean[shared], a[shared])
    model, tok = load_model(tmp_path / "mean")  # a loadable model directory with the first input's tokenizer
    assert model.config.hidden_size == TINY["hidden_size"] and len(tok) == model.config.vocab_size
    assert json.loads((tmp_path / "mean" / "averaged_from.json").read_text())["weights"] == [0.25, 0.75]


def test_bad_inputs_are_refused_and_lose_nothing(tmp_path, capsys):
    save_tiny(tmp_path / "a", 0)
    save_tiny(tmp_path / "b", 1)
    save_tiny(tmp_path / "wide", 2, mlp_size=TINY["mlp_size"] * 2)
    before = (tmp_path / "a" / "model.safetensors").read_bytes()
    with pytest.raises(ValueError, match="mlp_size"):
        average_checkpoints([tmp_path / "a", tmp_path / "wide"], tmp_path / "x")
    with pytest.raises(ValueError, match="one of the inputs"):
        average_checkpoints([tmp_path / "a", tmp_path / "b"], tmp_path / "a", overwrite=True)
    with pytest.raises(ValueError, match="at least two"):
        average_checkpoints([tmp_path / "a"], tmp_path / "x")
    with pytest.raises(ValueError, match="positive"):
        average_checkpoints([tmp_path / "a", tmp_path / "b"], tmp_path / "x", weights=[1, 0])
    with pytest.raises(FileNotFoundError, match="not a model directory"):
        average_checkpoints([tmp_path / "a", tmp_path / "nothing"], tmp_path / "x")
    assert not (tmp_path / "x").exists()
    assert (tmp_path / "a" / "model.safetensors").read_bytes() == before

    assert main(["average", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "m")]) == 0
    assert "model in" in capsys.readouterr().out
    first = (tmp_path / "m" / "model.safetensors").read_bytes()
    assert main(["average", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "m"), "--weights", "1", "2"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (tmp_path / "m" / "model.safetensors").read_bytes() == first
    assert main(["average", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "m"),
                 "--weights", "1", "2", "--overwrite"]) == 0
    assert (tmp_path / "m" / "model.safetensors").read_bytes() != first
