"""``latentum-world demo``: the world model's imagination beside the real maze, or the real-maze job without a model."""

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from envs.vsp.maps import LEVELS
from latentum_world import demo
from latentum_world.cli import main
from latentum_world.evaluation.world_model import evaluate_world_model, generated_start_states, make_sampling
from latentum_world.train_cli import train_all
from latentum_world.world import loading
from latentum_world.world.model import LatentWorldModel


@pytest.fixture(scope="module")
def world_dir(tmp_path_factory):
    """A tiny but complete debug chain (vlm -> mbaq -> gen -> world, pixel decoder in ``decoder/``)."""
    torch.set_num_threads(1)
    return train_all(["preset=debug", "num_threads=1"], out_root=tmp_path_factory.mktemp("chain"), memo_steps=3)


def events(run_dir):
    acc = EventAccumulator(str(run_dir), size_guidance={"images": 0, "scalars": 0})
    acc.Reload()
    return acc


def test_without_any_model_says_how_to_train_and_runs_the_real_maze_job(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(loading, "BUNDLED", tmp_path / "no_checkpoint_here")
    out = tmp_path / "demo"
    assert main(["demo", "--logdir", str(out), "--count", "2", "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "No world model to show" in text and str(tmp_path / "no_checkpoint_here") in text
    assert "latentum-world train all --bundle latentum_world/checkpoints/default" in text
    assert "BFS orig" in text and "100.0%" in text  # the real-maze job's table
    assert len(list((out / "png").glob("*.png"))) == len(LEVELS)
    assert not list(out.rglob("events.out.tfevents.*"))


def test_bad_model_path_exits_2_with_a_clear_message(tmp_path, capsys):
    assert main(["demo", "--model", str(tmp_path / "missing"), "--logdir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert f"--model {tmp_path / 'missing'}: not a world-model directory" in err
    assert "config.json" in err
    assert not (tmp_path / "out").exists()
    assert main(["demo", "--episodes", "0"]) == 2
    assert "--episodes must be >= 1" in capsys.readouterr().err


def test_world_model_demo_prints_the_table_and_writes_tensorboard_and_gifs(world_dir, tmp_path, capsys):
    logdir = tmp_path / "runs"
    argv = ["demo", "--model", str(world_dir), "--episodes", "2", "--horizon", "3", "--seed", "5", "--logdir", str(logdir),
            "--quiet"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    for want in ("one step (depth 1)", "multi-step (depths 1..3)", "depth 3 only", "board read-out by depth",
                 "imagined transitions/s", f"tensorboard --logdir {logdir}"):
        assert want in text, want

    (run_dir,) = [p for p in logdir.iterdir() if p.is_dir()]
    assert list(run_dir.glob("events.out.tfevents.*"))
    numbers = json.loads((run_dir / "world_model.json").read_text())
    assert numbers["episodes"]["total"] == 2 * len(LEVELS) and numbers["horizon"] == 3 and numbers["policy"] == "random"
    assert numbers["one_step"]["steps"] == 2 * len(LEVELS)

    # the numbers are evaluate_world_model's, unchanged by the demo's recording of the rollouts
    model, tok = loading.load_world_model(world_dir)
    direct = evaluate_world_model(LatentWorldModel(model, tok, make_sampling(None)), generated_start_states(2, 5),
                                  horizon=3, seed=5, quiet=True, model_name=str(world_dir), generated_per_level=2).to_dict()
    for key in ("one_step", "all_depths", "depths", "levels", "episodes"):
        assert numbers[key] == direct[key], key

    acc = events(run_dir)
    scalars = acc.Tags()["scalars"]
    for tag in ("agreement/board_one_step", "agreement/board_multi_step", "agreement/reward_multi_step",
                "agreement/terminated_multi_step", "speed/imagined_transitions_per_second", "by_depth/board"):
        assert tag in scalars, tag
    assert acc.Scalars("agreement/board_one_step")[0].value == pytest.approx(numbers["one_step"]["board"]["accuracy"])
    assert [e.step for e in acc.Scalars("by_depth/board")] == [1, 2, 3]
    assert acc.Scalars("speed/imagined_transitions_per_second")[0].value > 0

    images = acc.Tags()["images"]
    strips = sorted(t for t in images if t.startswith("strips/"))
    assert strips == sorted(f"strips/level{lv}_ep0" for lv in LEVELS)  # --show 1: one episode per level
    assert sorted(t for t in images if t.startswith("videos/")) == sorted(f"videos/level{lv}_ep0" for lv in LEVELS)
    strip = acc.Images("strips/level3_ep0")[0]
    assert strip.height == 14 + 2 * 128 + 2 + 14  # captions, real row, imagined row, the model's answers

    gifs = sorted((run_dir / "gifs").glob("*.gif"))
    assert [g.name for g in gifs] == sorted(f"level{lv}_ep0.gif" for lv in LEVELS)
    with Image.open(gifs[0]) as g:
        assert g.size == (2 * 128 + 4, 14 + 128) and g.n_frames >= 1
        assert g.info.get("loop") == 0


def test_world_model_demo_without_decoder_or_moviepy(world_dir, tmp_path, capsys, monkeypatch):
    # no moviepy < 2: GIF files and strips still, no videos, no complaint
    monkeypatch.setattr(demo, "video_supported", lambda: False)
    logdir = tmp_path / "novideo"
    assert main(["demo", "--model", str(world_dir), "--episodes", "1", "--horizon", "1", "--logdir", str(logdir), "--quiet"]) == 0
    assert "0 videos" in capsys.readouterr().out
    (run_dir,) = list(logdir.iterdir())
    assert len(list((run_dir / "gifs").glob("*.gif"))) == len(LEVELS)
    images = events(run_dir).Tags()["images"]
    assert images and not [t for t in images if t.startswith("videos/")]

    # a model without its pixel decoder: the numbers, a note, no pictures
    bare = tmp_path / "bare"
    shutil.copytree(world_dir, bare, ignore=shutil.ignore_patterns("decoder"))
    logdir = tmp_path / "nodecoder"
    assert main(["demo", "--model", str(bare), "--episodes", "1", "--horizon", "1", "--logdir", str(logdir), "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "one step (depth 1)" in text and "no pixel decoder" in text
    (run_dir,) = list(logdir.iterdir())
    assert not (run_dir / "gifs").exists() and list(run_dir.glob("events.out.tfevents.*"))


def test_eval_decoder(world_dir, tmp_path, capsys):
    from latentum_world.evaluation.decoder import psnr_db

    out = tmp_path / "decoder.json"
    assert main(["eval", "decoder", "--model", str(world_dir), "--generated", "2", "--json", str(out), "--quiet"]) == 0
    result = json.loads(out.read_text())
    assert set(result["per_level"]) == {"3", "4", "5", "6", "7", "8"} and result["overall"]["n"] == 12
    assert 0 < result["overall"]["psnr_db"] < 100
    assert 0 <= result["overall"]["readout_decoded"] <= 1 and 0 <= result["overall"]["readout_real"] <= 1
    overall, levels = result["overall"], result["per_level"].values()
    assert overall["decoder_misses"] == sum(r["decoder_misses"] for r in levels)
    # the decoder's own misses are decoded misreads of states whose real image reads right: at least the
    # difference in misreads, at most all decoded misreads
    n = overall["n"]
    misses_dec, misses_real = round(n * (1 - overall["readout_decoded"])), round(n * (1 - overall["readout_real"]))
    assert max(0, misses_dec - misses_real) <= overall["decoder_misses"] <= misses_dec
    assert "PSNR dB" in capsys.readouterr().out
    a = np.zeros((4, 4, 3), np.uint8)
    assert psnr_db(a, a) == float("inf") and abs(psnr_db(a, a + 255) - 0.0) < 1e-9
    bare = tmp_path / "bare"
    shutil.copytree(world_dir, bare, ignore=shutil.ignore_patterns("decoder"))
    assert main(["eval", "decoder", "--model", str(bare), "--generated", "1"]) == 2
    assert "no pixel decoder" in capsys.readouterr().err
    # --decoder scores a decoder kept elsewhere: the same one gives the same numbers
    again = tmp_path / "again.json"
    args = ["eval", "decoder", "--model", str(bare), "--decoder", str(world_dir / "decoder"), "--generated", "2", "--quiet"]
    assert main(args + ["--json", str(again)]) == 0
    second = json.loads(again.read_text())
    assert second["overall"] == result["overall"] and second["decoder"] == str(world_dir / "decoder")
    assert main(["eval", "decoder", "--model", str(bare), "--decoder", str(tmp_path / "none"), "--generated", "1"]) == 2
    assert "holds no pixel decoder" in capsys.readouterr().err
