"""The shared trainer: resume equivalence, frozen modules in mbaq, learning, 2-process torchrun."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers.utils import logging as hf_logging

from latentum_world.train_cli import compose_config, train
from latentum_world.training.stages import STAGES, load_model
from latentum_world.training.trainer import Trainer

# Hydra merges dict overrides into the defaults, so every kind is named (0 = off)
ONLY_SHORT = "{task1: 1, task2: 0, task3: 0, task4: 0, player: 1, goal: 0, on_goal: 1, in_hole: 0, table: 0, next_move: 0}"
FAST = ["preset=debug", f"stage.data.weights={ONLY_SHORT}", "stage.eval_every=1000"]


def weights(path: Path) -> dict:
    return load_file(str(path / "model.safetensors"))


def assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_unknown_stage_and_bad_override():
    with pytest.raises(ValueError, match="unknown stage"):
        compose_config("nope")
    with pytest.raises(ValueError, match="bad override for stage vlm"):  # one line, not Hydra's traceback
        compose_config("vlm", ["stage.no_such_key_anywhere=1"])
    with pytest.raises(ValueError, match="preset/fast"):
        compose_config("vlm", ["preset=fast"])


def test_resume_gives_the_same_weights(tmp_path):
    full = train("vlm", FAST + [f"out_dir={tmp_path / 'full'}", "stage.steps=6", "stage.save_every=3"])
    # interrupted: stop after 3 steps (same schedule length), then rerun the full command
    cfg = compose_config("vlm", FAST + [f"out_dir={tmp_path / 'cut'}", "stage.steps=6", "stage.save_every=3"])
    stage = STAGES["vlm"](cfg)
    trainer = Trainer(cfg, stage)
    original = stage.batch

    def crash_after_three(step, rank):
        if step == 3:
            raise KeyboardInterrupt
        return original(step, rank)

    stage.batch = crash_after_three
    hf_logging.enable_progress_bar()
    with pytest.raises(KeyboardInterrupt):
        trainer.run()
    assert hf_logging.is_progress_bar_enabled()  # the trainer silences transformers' bars only while it runs
    assert (tmp_path / "cut" / "checkpoint-3").is_dir() and not (tmp_path / "cut" / "final").exists()
    resumed = train("vlm", FAST + [f"out_dir={tmp_path / 'cut'}", "stage.steps=6", "stage.save_every=3"])
    assert_same_weights(weights(full), weights(resumed))


def test_debug_preset_learns_a_fixed_batch(tmp_path):
    cfg = compose_config("vlm", FAST + [f"out_dir={tmp_path}", "stage.lr=3e-3"])
    stage = STAGES["vlm"](cfg)
    model, _ = stage.build(None)
    batch = stage.batch(0, 0)
    opt = torch.optim.AdamW(stage.trainable_parameters(model), lr=3e-3)
    losses = []
    for _ in range(60):
        loss, _ = stage.compute_loss(model, model, batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0]


def test_mbaq_trains_only_the_quantizer(tmp_path):
    vlm = train("vlm", FAST + [f"out_dir={tmp_path / 'vlm'}", "stage.steps=2"])
    mbaq = train("mbaq", FAST + [f"out_dir={tmp_path / 'mbaq'}", f"init_from={vlm}", "stage.steps=4", "stage.eval_every=4"])
    before, after = weights(vlm), weights(mbaq)
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("quantizer.") for k in changed)
    assert any(k.startswith("quantizer.codebooks") for k in changed)
    assert (tmp_path / "mbaq" / "tb").is_dir()
    model, tok = load_model(mbaq)
    assert model.config.num_codebooks == 2 and tok.eos_token_id == model.config.eos_token_id


def test_mbaq_up_proj_only_keeps_every_code(tmp_path):
    vlm = train("vlm", FAST + [f"out_dir={tmp_path / 'vlm'}", "stage.steps=2"])
    mbaq = train("mbaq", FAST + [f"out_dir={tmp_path / 'mbaq'}", f"init_from={vlm}", "stage.steps=3"])
    refit = train("mbaq", FAST + [f"out_dir={tmp_path / 'refit'}", f"init_from={mbaq}", "stage.steps=3",
                                  "stage.train=up_proj", "stage.lr=1e-2"])
    before, after = weights(mbaq), weights(refit)
    changed = {k for k in before if not torch.equal(before[k], after[k]) and not k.endswith(".usage")}  # usage: EMA statistics
    assert changed and all(k.startswith("quantizer.up_proj.") for k in changed)
    assert any(k.startswith("quantizer.codebooks.") for k in before)  # codebooks and down_proj were compared, unchanged
    with pytest.raises(ValueError, match="stage.train must be"):
        train("mbaq", FAST + [f"out_dir={tmp_path / 'bad'}", f"init_from={mbaq}", "stage.train=codebooks"])


def test_mbaq_requires_a_model(tmp_path):
    with pytest.raises(ValueError, match="init_from"):
        train("mbaq", FAST + [f"out_dir={tmp_path}", "stage.init_from=null"])
    with pytest.raises(FileNotFoundError, match="missing, which does not exist: set init_from"):
        train("mbaq", FAST + [f"out_dir={tmp_path}", f"init_from={tmp_path / 'missing'}"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="not a LatentUM model directory"):
        train("mbaq", FAST + [f"out_dir={tmp_path / 'o'}", f"init_from={tmp_path / 'empty'}"])


def test_a_stage_run_alone_names_the_stage_to_train_first(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no runs/ here
    with pytest.raises(FileNotFoundError, match=r"runs/lang/final, which does not exist: train stage lang first"):
        train("world", ["preset=debug", f"out_dir={tmp_path / 'w'}"])
    with pytest.raises(ValueError, match="bad override for stage world"):  # world has no data.weights
        compose_config("world", ["stage.data.weights={table: 1.0}"])


def test_torchrun_two_processes(tmp_path):
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or shutil.which("torchrun")
    if torchrun is None:
        pytest.skip("torchrun not installed")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [torchrun, "--standalone", "--nproc_per_node", "2", "-m", "latentum_world", "train", "vlm", *FAST,
           f"out_dir={tmp_path}", "stage.steps=3"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert (tmp_path / "final" / "model.safetensors").is_file()
    assert (tmp_path / "checkpoint-3").is_dir()
    # mbaq: the quantizer runs once per step through DDP, the language model on length chunks
    cmd = [torchrun, "--standalone", "--nproc_per_node", "2", "-m", "latentum_world", "train", "mbaq", *FAST,
           f"out_dir={tmp_path / 'mbaq'}", f"init_from={tmp_path / 'final'}", "stage.steps=2"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    before, after = weights(tmp_path / "final"), weights(tmp_path / "mbaq" / "final")
    assert any(not torch.equal(v, after[k]) for k, v in before.items() if k.startswith("quantizer."))


def test_mbaq_stage_chooses_the_quantizer_sizes(tmp_path):
    """``model.num_codebooks`` etc. at the mbaq stage size a fresh quantizer; the rest of the model is kept."""
    vlm = train("vlm", FAST + [f"out_dir={tmp_path / 'vlm'}", "stage.steps=2"])
    mbaq = train("mbaq", FAST + [f"out_dir={tmp_path / 'mbaq'}", f"init_from={vlm}", "stage.steps=2",
                                 "model.num_codebooks=4", "model.codebook_size=16"])
    model, _ = load_model(mbaq)
    assert (model.config.num_codebooks, model.config.codebook_size) == (4, 16)
    assert len(model.quantizer.codebooks) == 4 and model.quantizer.codebooks[0].codebook.shape[0] == 16
    before, after = weights(vlm), weights(mbaq)
    assert all(torch.equal(v, after[k]) for k, v in before.items() if not k.startswith("quantizer."))


def test_length_chunks_give_the_whole_batch_loss(tmp_path):
    """vlm's micro-batches (length-sorted, each cut to its own longest row) sum to the whole batch's loss and gradient."""
    cfg = compose_config("vlm", FAST + [f"out_dir={tmp_path}", "stage.batch_size=6"])
    stage = STAGES["vlm"](cfg)
    model, _ = stage.build(None)
    batch = stage.batch(1, 0)
    grads, losses = [], []
    for chunks in (1, 3):
        stage.sc.micro_batches = chunks
        model.zero_grad()
        loss, metrics = stage.compute_loss(model, model, batch)
        loss.backward()
        losses.append((loss.item(), metrics["losses/answer_ce"]))
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)
    assert torch.allclose(grads[0], grads[1], rtol=1e-4, atol=1e-6)
    from latentum_world.training.stages import length_chunks

    parts = length_chunks(batch, 3)
    assert sum(share for _, share in parts) == pytest.approx(1.0)
    assert sum(sub["input_ids"].shape[0] for sub, _ in parts) == 6
    assert all(sub["attention_mask"][:, -1].any() for sub, _ in parts)  # no all-padding column left


def test_mbaq_length_chunks_give_the_whole_batch_loss(tmp_path):
    """mbaq quantizes the whole batch once and reads it in length chunks: the same KL, vq loss and quantizer
    gradient as one padded pass (``micro_batches=1``)."""
    import copy

    vlm = train("vlm", FAST + [f"out_dir={tmp_path / 'vlm'}", "stage.steps=2"])
    cfg = compose_config("mbaq", FAST + [f"out_dir={tmp_path / 'mbaq'}", f"init_from={vlm}", "stage.batch_size=6",
                                         "stage.data.weights.table=1"])
    stage = STAGES["mbaq"](cfg)
    built, _ = stage.build(None)
    batch = stage.batch(1, 0)
    assert batch["attention_mask"].sum(1).unique().numel() > 1  # rows of several lengths, so chunks cut padding
    results = []
    for chunks in (1, 3):
        model = copy.deepcopy(built)  # the quantizer's usage statistics move with every call
        stage.sc.micro_batches = chunks
        loss, metrics = stage.compute_loss(model, model, batch)
        loss.backward()
        grad = torch.cat([p.grad.flatten() for n, p in model.named_parameters() if p.grad is not None])
        assert all(n.startswith("quantizer.") for n, p in model.named_parameters() if p.grad is not None)
        results.append((metrics["losses/kl"], metrics["losses/vq"], grad))
    assert results[0][0] > 0 and results[0][0] == pytest.approx(results[1][0], rel=1e-4)
    assert results[0][1] == pytest.approx(results[1][1], rel=1e-6)
    assert torch.allclose(results[0][2], results[1][2], rtol=1e-3, atol=1e-6)
