import json
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny import TINY

from envs.vsp.loader import load_vsp
from envs.vsp.maps import LEVELS
from envs.vsp.observation import observation_renderer
from latentum_world import eval_cli
from latentum_world.cli import build_parser, main
from latentum_world.data.understanding import TASKS
from latentum_world.evaluation import answers, perception
from latentum_world.data.understanding import Example, UnderstandingData, collate
from envs.vsp.formats import to_table
from latentum_world.evaluation.perception import (
    benchmark_example,
    evaluate_perception,
    load_benchmark_items,
    to_benchmark_answer,
)
from latentum_world.model.config import LatentUMConfig
from latentum_world.model.modeling import LatentUMModel
from latentum_world.tokenizer import build_tokenizer

FIXTURE = Path(__file__).parent / "fixtures" / "vsp" / "maze"



@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A random tiny model saved with its tokenizer: ``(model, tokenizer, directory)``."""
    tok = build_tokenizer()
    torch.manual_seed(0)
    ids = tok.convert_tokens_to_ids(["<img>", "</img>", "<img_ctx>"])
    config = LatentUMConfig(vocab_size=len(tok), pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                            img_start_id=ids[0], img_end_id=ids[1], img_context_id=ids[2], **TINY)
    model = LatentUMModel(config).eval()
    path = tmp_path_factory.mktemp("model")
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return model, tok, path


@pytest.fixture(scope="module")
def generated_vsp(tmp_path_factory):
    """``vsp generate --task`` output: 2 test items (split ``maps``, bare Y/N answer files) per level of every sub-task."""
    out = tmp_path_factory.mktemp("vsp")
    for task in ("task1", "task2", "task3", "task4"):
        assert main(["vsp", "generate", "--task", task, "--count", "2", "--seed", "3", "--out", str(out)]) == 0
    return out


def oracle(model, tokenizer, examples, **kw):
    return [ex.answer for ex in examples]


_FLIP = {"Yes": "No", "No": "Yes", "Left": "Right", "Right": "Left", "Above": "Below", "Below": "Above"}


def wrong(model, tokenizer, examples, **kw):
    """Right format, wrong content: yes/no and directions flipped, the next letter for task3, ``x`` elsewhere."""
    out = []
    for ex in examples:
        table, _, final = ex.answer.rpartition("\n")  # interpretation, final answer
        table = table + "\n" if table else ""
        if ex.task == "task2":
            out.append(table + ",".join(_FLIP[w] for w in final.split(",")))
        elif ex.task == "task3":
            out.append(table + "ABCD"[("ABCD".index(final) + 1) % 4])
        elif ex.task in ("task1", "task4"):
            *trace, verdict = final.split(" ")
            out.append(table + " ".join(trace + [_FLIP[verdict]]))
        else:
            out.append("x")
    return out


def accuracies(d):
    """Every accuracy-bearing tally dict in a JSON tree."""
    if isinstance(d, dict):
        if "accuracy" in d:
            yield d
        for v in d.values():
            yield from accuracies(v)


def test_help_and_mirrored_defaults(capsys):
    for argv in (["eval", "--help"], ["eval", "perception", "--help"]):
        with pytest.raises(SystemExit) as e:
            build_parser().parse_args(argv)
        assert e.value.code == 0
        assert "usage" in capsys.readouterr().out
    assert eval_cli.DEFAULT_SEED == perception.DEFAULT_SEED
    assert eval_cli.DEFAULT_GENERATED == perception.DEFAULT_GENERATED
    assert eval_cli.FEATURE_KINDS == perception.FEATURE_KINDS
    assert eval_cli.TASK3_PROTOCOLS == answers.TASK3_PROTOCOLS and eval_cli.DEFAULT_TASK3 == answers.DEFAULT_TASK3


def test_cli_json_structure(tiny, tmp_path, capsys):
    _, _, model_dir = tiny
    out = tmp_path / "perception.json"
    argv = ["eval", "perception", "--vsp", str(FIXTURE), "--model", str(model_dir), "--generated", "2", "--json", str(out),
            "--quiet", "--batch-size", "16"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "VSP benchmark" in printed and "table read-out" in printed and "perplexity" in printed
    d = json.loads(out.read_text())
    assert d["features"] == "continuous" and d["model"] == str(model_dir)

    bench = d["benchmark"]
    assert list(bench) == ["task1", "task2", "task3", "task4"]
    assert all(list(splits) == ["example"] for splits in bench.values())  # the fixture holds in-context examples only
    totals = {t: {lv: x["total"] for lv, x in s["example"]["levels"].items()} for t, s in bench.items()}
    assert totals == {"task1": {"3": 2, "5": 2}, "task2": {"4": 2}, "task3": {"3": 2}, "task4": {"3": 2}}
    assert bench["task4"]["example"]["levels"]["3"]["level_name"] == "level_step3"
    assert bench["task2"]["example"]["overall"]["parts"]["total"] == 4

    gen = d["generated"]
    assert gen["seed"] == perception.DEFAULT_SEED and gen["per_level"] == 2
    assert list(gen["kinds"]) == list(TASKS)
    for kind, r in gen["kinds"].items():
        assert r["overall"]["total"] == 12
        expected = {"5": 12} if kind == "task4" else {str(lv): 2 for lv in LEVELS}  # task4 boards are 5x5
        assert {lv: x["total"] for lv, x in r["levels"].items()} == expected
    assert {lv: x["total"] for lv, x in gen["readout"]["levels"].items()} == {str(lv): 2 for lv in LEVELS}
    assert gen["readout"]["overall"]["total"] == 12

    for t in accuracies(d):
        assert 0 <= t["accuracy"] <= 1 and 0 <= t["correct"] <= t["total"]

    cb = d["codebooks"]
    assert cb["codebook_size"] == 16 and cb["images"] == 11 * 12 and len(cb["codebooks"]) == 2
    for c in cb["codebooks"]:
        assert 1 - 1e-4 <= c["perplexity"] <= 16 + 1e-4
        assert c["fraction"] == pytest.approx(c["perplexity"] / 16)


def test_quantized_features_and_no_generated(tiny, tmp_path):
    _, _, model_dir = tiny
    out = tmp_path / "q.json"
    assert main(["eval", "perception", "--vsp", str(FIXTURE), "--model", str(model_dir), "--features", "quantized",
                 "--generated", "0", "--json", str(out), "--quiet"]) == 0
    d = json.loads(out.read_text())
    assert d["features"] == "quantized" and d["codebooks"] is None and d["generated"]["kinds"] == {}
    assert d["benchmark"]["task1"]["example"]["overall"]["total"] == 4


@pytest.mark.parametrize("vsp", ["fixture", "generated"])
def test_oracle_scores_100_and_flipped_answers_0(tiny, generated_vsp, vsp, monkeypatch):
    model, tok, _ = tiny
    path = FIXTURE if vsp == "fixture" else generated_vsp
    n = 1 if vsp == "fixture" else 0
    monkeypatch.setattr(perception, "answer", oracle)
    good = evaluate_perception(model, tok, path, generated=n, quiet=True, task3="generate").to_dict()
    monkeypatch.setattr(perception, "answer", wrong)
    bad = evaluate_perception(model, tok, path, generated=n, quiet=True, task3="generate").to_dict()
    if vsp == "generated":  # every level of every sub-task, split "maps"
        assert {t: sorted(s["maps"]["levels"], key=int) for t, s in good["benchmark"].items()} == {
            "task1": ["3", "4", "5", "6", "7", "8"], "task2": ["3", "4", "5", "6", "7", "8"],
            "task3": ["3", "4", "5", "6", "7", "8"], "task4": ["1", "3", "5", "7", "9"]}
    good_tallies, bad_tallies = list(accuracies(good)), list(accuracies(bad))
    assert len(good_tallies) == len(bad_tallies) > 10
    assert all(t["accuracy"] == 1.0 for t in good_tallies)
    assert all(t["accuracy"] == 0.0 for t in bad_tallies)
    for splits in good["benchmark"].values():
        for r in splits.values():
            assert r["overall"]["invalid"] == 0


def test_answer_conversion_and_benchmark_images():
    assert to_benchmark_answer("task1", " Yes") == "<Output> Yes"
    assert to_benchmark_answer("task2", "Left,Above") == "<Output> Left,Above"
    assert to_benchmark_answer("task3", "C") == "<Answer> C"
    assert to_benchmark_answer("task4", "4,2 3,2 No") == "<Output> No"
    assert to_benchmark_answer("task4", "") == "<Output> "
    with pytest.raises(ValueError):
        to_benchmark_answer("task-main", "R")
    # benchmark PNGs resized to the model's input size are exactly the training images of the same boards
    # in both layouts: stretched (cell_pixels 0) and cell-aligned (16 px per cell, black beyond the board)
    for cell_pixels in (0, 16):
        for (task, _), items in load_benchmark_items(FIXTURE).items():
            for it in items:
                ex = benchmark_example(it, 128, cell_pixels)
                expected = observation_renderer(ex.map.size, 128, cell_pixels=cell_pixels).render(ex.map, None)
                np.testing.assert_array_equal(ex.image, expected)
                if cell_pixels:
                    side = 16 * ex.map.size
                    assert not ex.image[side:].any() and not ex.image[:, side:].any()
                    assert ex.image[:side, :side].min(axis=(0, 1)).max() > 0  # the board is drawn up to its edge
    q = benchmark_example(load_vsp(FIXTURE, task="task3")[0], 128).question
    assert q.startswith("Which map matches the image?\n(A)\n| | Col 1 |")
    q4 = benchmark_example(load_vsp(FIXTURE, task="task4")[0], 128)
    assert q4.question.startswith("Is this action sequence safe? ") and q4.answer.split()[-1] in ("Yes", "No")


def test_missing_model_exits_2(tmp_path, monkeypatch, capsys):
    missing = tmp_path / "nope"
    assert main(["eval", "perception", "--vsp", str(FIXTURE), "--model", str(missing)]) == 2
    assert f"no such model directory: {missing}" in capsys.readouterr().err
    monkeypatch.setattr(eval_cli, "DEFAULT_MODEL", tmp_path / "checkpoints" / "default")
    assert main(["eval", "perception", "--vsp", str(FIXTURE)]) == 2
    err = capsys.readouterr().err
    assert "pass --model" in err and "latentum-world train vlm" in err and "latentum-world train mbaq" in err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["eval", "perception", "--vsp", str(FIXTURE), "--model", str(empty)]) == 2
    assert "not a LatentUM model directory" in capsys.readouterr().err


def test_answer_logliks_are_the_teacher_forced_loss(tiny):
    model, tok, _ = tiny
    data = UnderstandingData(image_size=model.config.image_size, cell_pixels=model.config.cell_pixels)
    rng = np.random.default_rng(4)
    examples = [data.example(rng, kind) for kind in ("table", "task1", "player")]
    ll = answers.answer_logliks(model, tok, examples, batch_size=2)  # mixed lengths, padded batches
    for ex, got in zip(examples, ll):
        b = collate(tok, [ex], model.config.latent_positions)
        out = model(b["input_ids"], b["attention_mask"], images=b["images"], labels=b["labels"])
        n = int((b["labels"] != -100).sum())
        assert got == pytest.approx(-out.loss.item() * n, rel=1e-4)


def test_ranked_task3_answers_with_the_most_likely_read_out(tiny, monkeypatch):
    model, tok, _ = tiny
    data = UnderstandingData(image_size=model.config.image_size, cell_pixels=model.config.cell_pixels)
    rng = np.random.default_rng(5)
    examples = [data.example(rng, "task3") for _ in range(6)]
    truth = {ex.image.tobytes(): to_table(ex.map) for ex in examples}
    # the real model's choice is the argmax of its own read-out likelihoods
    letters = answers.ranked_choices(model, tok, examples, batch_size=5)
    for ex, letter in zip(examples, letters):
        boards = answers.task3_choices(ex.question)
        ll = answers.answer_logliks(model, tok, [Example(ex.image, "Describe the map as a table.", to_table(c), "table")
                                                 for c in boards])
        assert letter == "ABCD"[int(np.argmax(ll))]
    # a scorer that prefers the image's own table picks the right letter every time
    monkeypatch.setattr(answers, "answer_logliks", lambda m, t, exs, *a, **k: [
        0.0 if ex.answer == truth[ex.image.tobytes()] else -1.0 for ex in exs])
    letters = answers.ranked_choices(model, tok, examples)
    assert all(answers.is_correct("task3", p, ex.answer) for p, ex in zip(letters, examples))
    with pytest.raises(ValueError, match="not a task3 question"):
        answers.task3_choices("Describe the map as a table.")


def test_cli_task3_ranked(tiny, tmp_path, monkeypatch):
    _, _, model_dir = tiny
    out = tmp_path / "ranked.json"
    calls = []
    real = answers.ranked_choices
    monkeypatch.setattr(perception, "ranked_choices", lambda *a, **k: calls.append(len(a[2])) or real(*a, **k))
    assert main(["eval", "perception", "--vsp", str(FIXTURE), "--model", str(model_dir), "--generated", "1",
                 "--task3", "ranked", "--json", str(out), "--quiet"]) == 0
    d = json.loads(out.read_text())
    assert d["task3"] == "ranked"
    assert sum(calls) == 2 + 6  # the fixture's two task3 items, then one generated per level; nothing else
    assert d["benchmark"]["task3"]["example"]["overall"]["invalid"] == 0  # a letter, always
    with pytest.raises(ValueError, match="task3 must be one of"):
        evaluate_perception(tiny[0], tiny[1], None, generated=1, task3="letters")
