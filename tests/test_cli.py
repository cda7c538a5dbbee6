import json
import subprocess
import sys

import numpy as np
import pytest

from envs.vsp.loader import load_vsp
from envs.vsp.maps import ACTION_LETTERS
from envs.vsp.render import load_png, render_map
from latentum_world.cli import build_parser, main


def test_every_subcommand_has_help(capsys):
    for argv in (["--help"], ["demo", "--help"], ["vsp", "--help"], ["vsp", "generate", "--help"],
                 ["vsp", "render", "--help"], ["vsp", "score", "--help"], ["vsp", "play", "--help"]):
        with pytest.raises(SystemExit) as e:
            build_parser().parse_args(argv)
        assert e.value.code == 0
        assert "usage" in capsys.readouterr().out


def test_generate_score_render_round_trip(tmp_path, capsys):
    out = tmp_path / "gen"
    assert main(["vsp", "generate", "--level", "3", "--level", "6", "--count", "5", "--seed", "1", "--out", str(out)]) == 0
    items = load_vsp(out / "maze", task="task-main")
    assert [(it.level, it.index) for it in items] == [(3, i) for i in range(5)] + [(6, i) for i in range(5)]
    for it in items:
        np.testing.assert_array_equal(load_png(it.image_path), render_map(it.map))
    # same seed, same maps; level streams are independent
    again = tmp_path / "again"
    main(["vsp", "generate", "--level", "6", "--count", "5", "--seed", "1", "--out", str(again)])
    assert [it.map for it in load_vsp(again / "maze")] == [it.map for it in items if it.level == 6]

    plans = tmp_path / "plans.jsonl"
    lines = [{"level": it.level, "index": it.index, "plan": ",".join(ACTION_LETTERS[a] for a in it.map.shortest_path())}
             for it in items if it.index != 4]  # item 4 of each level missing: counts as a failure
    plans.write_text("".join(json.dumps(x) + "\n" for x in lines))
    report = tmp_path / "report.json"
    assert main(["vsp", "score", "--vsp", str(out), "--plans", str(plans), "--rule", "strict", "--json", str(report)]) == 0
    numbers = json.loads(report.read_text())
    assert numbers["overall"] == {"correct": 8, "total": 10, "accuracy": 0.8}
    assert numbers["levels"]["3"]["correct"] == 4 and numbers["rule"] == "strict"

    rendered = tmp_path / "rendered"
    assert main(["vsp", "render", "--vsp", str(out), "--out", str(rendered)]) == 0
    np.testing.assert_array_equal(load_png(rendered / "level6" / "img" / "2.png"), load_png(items[7].image_path))


def test_errors_exit_2_with_message(tmp_path, capsys):
    assert main(["vsp", "score", "--vsp", str(tmp_path / "missing"), "--plans", "x.jsonl"]) == 2
    assert "no such VSP folder" in capsys.readouterr().err
    bad = tmp_path / "plans.jsonl"
    bad.write_text('{"level": 3, "index": 0, "plan": "R"}\nnot json\n')
    main(["vsp", "generate", "--level", "3", "--count", "1", "--out", str(tmp_path / "g")])
    assert main(["vsp", "score", "--vsp", str(tmp_path / "g"), "--plans", str(bad)]) == 2
    assert "line 2" in capsys.readouterr().err


def test_play_reads_keys_from_stdin():
    proc = subprocess.run([sys.executable, "-m", "latentum_world", "vsp", "play", "--level", "3", "--seed", "1"],
                          input="R\nX\nn\nq\n", capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "(Right)" in proc.stdout and "unknown key" in proc.stdout and "| Row 3 |" in proc.stdout


def test_demo_runs_and_scores(tmp_path, capsys, monkeypatch):
    from latentum_world.world import loading

    monkeypatch.setattr(loading, "BUNDLED", tmp_path / "no_checkpoint")  # no world model: the real-maze job
    assert main(["demo", "--out", str(tmp_path), "--count", "3"]) == 0
    out = capsys.readouterr().out
    assert "BFS orig" in out and "100.0%" in out
    assert len(list((tmp_path / "png").glob("*.png"))) == 6


def test_train_overrides_may_follow_the_flags(monkeypatch):
    """`train all --bundle DIR key=value` passes ``key=value`` on as a Hydra override; other strays still fail."""
    from latentum_world import train_cli

    seen = {}
    monkeypatch.setattr(train_cli, "train_all",
                        lambda overrides, out_root, bundle, memo_steps: seen.update(o=overrides, b=bundle, m=memo_steps))
    assert main(["train", "all", "stage.steps=1", "--bundle", "somewhere", "--memo-steps", "5", "num_threads=1"]) == 0
    assert seen == {"o": ["stage.steps=1", "num_threads=1"], "b": "somewhere", "m": 5}
    with pytest.raises(SystemExit):
        main(["train", "all", "--bundle", "x", "--no-such-flag"])


def test_train_flags_of_train_all_are_refused_for_one_stage(capsys):
    assert main(["train", "vlm", "--out-root", "elsewhere"]) == 2
    assert "out_dir=elsewhere/vlm" in capsys.readouterr().err
    assert main(["train", "vlm", "--bundle", "x"]) == 2
    assert "--bundle only applies" in capsys.readouterr().err
    assert main(["train", "vlm", "--memo-steps", "5"]) == 2
    assert "latentum-world memo --model" in capsys.readouterr().err


def test_each_stage_defaults_to_the_previous_pipeline_stage():
    """Run alone, every stage of ``train all`` starts from the stage before it (``runs/<previous>/final``), so
    ``latentum-world train <stage>`` after ``train <previous>`` follows the same chain as ``train all``."""
    from pathlib import Path

    import yaml

    from latentum_world.train_cli import PIPELINE

    stages = Path(__file__).resolve().parents[1] / "configs" / "stage"
    assert PIPELINE.index("lang") < PIPELINE.index("world")  # lang-only before vision-only, as in the paper
    assert yaml.safe_load((stages / f"{PIPELINE[0]}.yaml").read_text()).get("init_from") is None
    for previous, stage in zip(PIPELINE, PIPELINE[1:]):
        init = yaml.safe_load((stages / f"{stage}.yaml").read_text())["init_from"]
        assert init == f"runs/{previous}/final", (stage, init)


def test_train_all_leaves_the_final_assembly_to_rank_0(monkeypatch, tmp_path):
    """Under torchrun every rank trains the stages; only rank 0 copies the decoder, writes the memo and bundles."""
    from latentum_world import train_cli

    ran = []
    monkeypatch.setattr(train_cli, "train", lambda stage, overrides: ran.append(stage) or tmp_path / stage / "final")
    monkeypatch.setenv("RANK", "1")
    assert train_cli.train_all([], out_root=tmp_path, bundle=tmp_path / "bundle") == tmp_path / "world" / "final"
    assert ran == list(train_cli.PIPELINE) and not (tmp_path / "bundle").exists()
    monkeypatch.setenv("RANK", "0")  # rank 0 goes on to copy the (here missing) decoder
    with pytest.raises(FileNotFoundError):
        train_cli.train_all([], out_root=tmp_path, bundle=tmp_path / "bundle")
