"""``latentum-world eval world-model``: open-loop imagination compared with the real maze."""

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from envs.vsp.maps import LEVELS, VSPMap
from envs.vsp.observation import model_renderer
from latentum_world import eval_cli
from latentum_world.cli import build_parser, main
from latentum_world.evaluation import world_model as wmeval
from latentum_world.evaluation.world_model import (
    StartState,
    StepStats,
    evaluate_world_model,
    generated_start_states,
    make_sampling,
    vsp_start_states,
)
from latentum_world.train_cli import train
from latentum_world.training.stages import load_model
from latentum_world.world.model import LatentWorldModel, WorldStep

FIXTURE = Path(__file__).parent / "fixtures" / "vsp" / "maze"
ONLY_SHORT = "{task1: 1, task2: 0, task3: 0, task4: 0, player: 1, goal: 0, on_goal: 1, in_hole: 0, table: 0, next_move: 0}"
FAST = ["preset=debug", "stage.eval_every=1000", "num_threads=1"]
P, K = 16, 2  # the debug model's latent positions and codebooks



@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """A tiny debug chain vlm -> mbaq -> gen: ``(mbaq dir, gen dir)``."""
    root = tmp_path_factory.mktemp("chain")
    w = f"stage.data.weights={ONLY_SHORT}"
    vlm = train("vlm", FAST + [w, f"out_dir={root / 'vlm'}", "stage.steps=2"])
    mbaq = train("mbaq", FAST + [w, f"out_dir={root / 'mbaq'}", f"init_from={vlm}", "stage.steps=2"])
    gen = train("gen", FAST + [f"out_dir={root / 'gen'}", f"init_from={mbaq}", "stage.steps=1"])
    return mbaq, gen


@pytest.fixture(scope="module")
def world(chain):
    model, tok = load_model(chain[1])
    return model.eval(), tok


class Oracle(LatentWorldModel):
    """Knows the real maze: steps it as the evaluation does and answers with the truth (``lie=True``: always wrong).

    Start maps are taken in order from ``starts`` at every ``reset``; the state slots hold each row's index, so
    ``read_board`` of any subset of rows knows which boards to return. Its "MBAQ codes" are a hash of the image
    bytes, so they differ for any two different frames (the tiny model's quantizer is nearly blind): the
    evaluation must encode exactly the real next frame, elf facing included, for the codes to match.
    """

    def __init__(self, model, tok, starts, lie=False):
        super().__init__(model, tok)
        self.starts, self.next, self.lie = [s.map for s in starts], 0, lie

    def reset(self, images, rows=None, draft_boards=None):
        self.maps = self.starts[self.next : self.next + len(images)]
        self.next += len(images)
        assert self.next <= len(self.starts)
        expected = np.stack([model_renderer(self.model.config, m.size).render(m, None) for m in self.maps])
        np.testing.assert_array_equal(images.numpy(), expected)  # the real first frames
        self.state_embeds = torch.arange(len(images), dtype=torch.float)[:, None, None]
        self.codes = torch.zeros(len(images), P, K, dtype=torch.long)
        return self.codes

    def step(self, actions):
        actions = actions.tolist()
        self.maps = [m if m.terminal else m.move(a) for m, a in zip(self.maps, actions)]
        images = np.stack([model_renderer(self.model.config, m.size).render(m, a) for m, a in zip(self.maps, actions)])
        _, codes = self.encode(torch.from_numpy(images))
        reward = torch.tensor([float(m.on_goal) for m in self.maps])
        terminated = torch.tensor([m.terminal for m in self.maps])
        if self.lie:
            codes, reward, terminated = (codes + 1) % self.model.config.codebook_size, 1 - reward, ~terminated
        return WorldStep(codes, reward, terminated, reward, terminated.float())

    def encode(self, images):
        size = self.model.config.codebook_size
        codes = [np.frombuffer(hashlib.sha256(img.numpy().tobytes()).digest(), np.uint8)[: P * K] % size for img in images]
        return None, torch.from_numpy(np.stack(codes).astype(np.int64)).view(-1, P, K)

    def read_board(self, state_embeds=None, max_new_tokens=100, draft_boards=None):
        rows = state_embeds[:, 0, 0].long().tolist()
        return [None if self.lie else self.maps[i] for i in rows]


def tallies(stats: dict):
    return [stats[name] for name in StepStats.TALLIES]


def test_help_and_mirrored_defaults(capsys):
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args(["eval", "world-model", "--help"])
    assert e.value.code == 0 and "--horizon" in capsys.readouterr().out
    assert eval_cli.WORLD_POLICIES == wmeval.POLICIES
    assert eval_cli.DEFAULT_HORIZON == wmeval.DEFAULT_HORIZON
    assert eval_cli.DEFAULT_BATCH_SIZE == wmeval.DEFAULT_BATCH_SIZE
    assert eval_cli.DEFAULT_SEED == wmeval.DEFAULT_SEED and eval_cli.DEFAULT_GENERATED == wmeval.DEFAULT_GENERATED
    from latentum_world.world import model as world_model

    assert eval_cli.FLAG_SOURCES == world_model.FLAG_SOURCES and eval_cli.DEFAULT_FLAG_SOURCE == world_model.DEFAULT_FLAG_SOURCE


def check_consistent(d: dict, horizon: int) -> None:
    """Counts add up: depths vs levels vs overall; code totals are steps * P * K; accuracies in [0, 1]."""
    depths = d["depths"]
    assert [x["depth"] for x in depths] == list(range(1, horizon + 1))
    steps = [x["steps"] for x in depths]
    assert steps == sorted(steps, reverse=True)  # episodes only ever end
    assert steps[0] == d["episodes"]["total"]  # no start is terminal: everyone takes the first step
    assert d["one_step"] == {k: v for k, v in depths[0].items() if k != "depth"}
    assert d["all_depths"]["steps"] == sum(steps)
    assert sum(lv["all_depths"]["steps"] for lv in d["levels"].values()) == sum(steps)
    for i in range(horizon):
        assert sum(lv["depths"][i]["steps"] for lv in d["levels"].values()) == steps[i]
    for lv, x in d["levels"].items():
        assert x["episodes"] == d["episodes"]["levels"][lv] == x["depths"][0]["steps"]
    for s in [d["all_depths"], *depths]:
        for name in ("board", "reward", "terminated"):
            assert s[name]["total"] == s["steps"]
        assert s["code_positions"]["total"] == s["steps"] * P and s["codes"]["total"] == s["steps"] * P * K
        assert s["board_invalid"] <= s["board"]["total"] - s["board"]["correct"]
        for t in tallies(s):
            assert 0 <= t["correct"] <= t["total"]
            assert (t["accuracy"] is None) == (t["total"] == 0)


def test_cli_on_vsp_fixture(chain, tmp_path, capsys):
    out = tmp_path / "wm.json"
    argv = ["eval", "world-model", "--vsp", str(FIXTURE), "--model", str(chain[1]), "--horizon", "3", "--json", str(out),
            "--quiet", "--device", "cpu"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "by depth" in printed and "board read-out" in printed and "transitions/s" in printed
    d = json.loads(out.read_text())
    assert d["model"] == str(chain[1]) and d["vsp"] == str(FIXTURE) and d["policy"] == "random" and d["horizon"] == 3
    assert d["sampling"] == {"greedy": True, "temperature": None, "seed": wmeval.DEFAULT_SEED}
    assert d["episodes"] == {"levels": {str(lv): 2 for lv in LEVELS}, "total": 12, "starts": {"task-main/example": 12}}
    assert d["generated"]["per_level"] == 0
    check_consistent(d, 3)
    speed = d["speed"]
    assert speed["transitions"] >= 12 and speed["seconds"] > 0 and speed["transitions_per_second"] > 0


def test_cli_generated_optimal(chain, tmp_path):
    out = tmp_path / "gen.json"
    assert main(["eval", "world-model", "--generated", "1", "--horizon", "3", "--policy", "optimal", "--model", str(chain[1]),
                 "--json", str(out), "--quiet", "--device", "cpu"]) == 0
    d = json.loads(out.read_text())
    assert d["vsp"] is None and d["generated"]["per_level"] == 1 and d["flags_from"] == "both"
    assert d["episodes"] == {"levels": {str(lv): 1 for lv in LEVELS}, "total": 6, "starts": {"generated": 6}}
    check_consistent(d, 3)
    # reward / termination from the read-out: the same imagination and read-out, kept from the step
    assert main(["eval", "world-model", "--generated", "1", "--horizon", "3", "--policy", "optimal", "--model", str(chain[1]),
                 "--json", str(out), "--quiet", "--device", "cpu", "--flags-from", "readout"]) == 0
    r = json.loads(out.read_text())
    assert r["flags_from"] == "readout"
    check_consistent(r, 3)
    for key in ("board", "board_invalid", "code_positions", "codes"):
        assert r["all_depths"][key] == d["all_depths"][key]
    # the starts are the held-out stream's maps, deterministic and solvable
    starts = generated_start_states(1)
    assert [s.level for s in starts] == list(LEVELS) and all(s.map.solvable for s in starts)
    assert [s.map for s in generated_start_states(1)] == [s.map for s in starts]


def test_steps_after_real_termination_are_excluded(world):
    model, tok = world
    one_step = VSPMap(3, player=(0, 0), goal=(0, 1), holes=frozenset({(1, 1)}))  # optimal: R reaches the goal
    two_steps = VSPMap(3, player=(0, 0), goal=(1, 1), holes=frozenset({(0, 1)}))  # D, R
    starts = [StartState(one_step, "a/x/level3/0"), StartState(two_steps, "a/x/level3/1")]
    for lm in (LatentWorldModel(model, tok), Oracle(model, tok, starts)):
        r = evaluate_world_model(lm, starts, horizon=4, policy="optimal", quiet=True).to_dict()
        assert [x["steps"] for x in r["depths"]] == [2, 1, 0, 0]
        assert r["depths"][0]["terminated_positive"]["total"] == 1 and r["depths"][0]["reward_positive"]["total"] == 1
        assert r["depths"][1]["terminated_positive"]["total"] == 1 and r["all_depths"]["steps"] == 3
        assert r["depths"][2]["board"] == {"correct": 0, "total": 0, "accuracy": None}
        assert r["speed"]["transitions"] == 4  # both rows imagined at depths 1 and 2, then every episode is over
    assert r["all_depths"]["board"]["accuracy"] == 1.0  # (the oracle)


@pytest.mark.parametrize("policy", ["random", "optimal"])
def test_oracle_scores_100_and_liar_0(world, policy):
    model, tok = world
    starts = vsp_start_states(FIXTURE) + generated_start_states(1, seed=5)
    runs = {}
    for batch_size, lie in ((5, False), (64, False), (7, True)):
        r = evaluate_world_model(Oracle(model, tok, starts, lie=lie), starts, horizon=6, policy=policy, seed=5,
                                 batch_size=batch_size, quiet=True).to_dict()
        check_consistent(r, 6)
        runs[batch_size] = r
        everything = [s for lv in r["levels"].values() for s in lv["depths"]] + r["depths"]
        for s in everything:
            for t in tallies(s):
                if t["total"]:
                    assert t["accuracy"] == (0.0 if lie else 1.0)
            assert s["board_invalid"] == (s["steps"] if lie else 0)
        misses = r["one_step_misses"]  # the liar's codes are wrong and it misreads the real codes too
        n = r["one_step"]["steps"] if lie else 0
        assert (misses["total"], misses["codes_exact"], misses["real_codes_misread"]) == (n, 0, n)
        assert len(misses["examples"]) == n and all(x["read"] is None for x in misses["examples"])
    # episodes end (goal or hole) under both policies, so the positive tallies are exercised
    assert runs[5]["all_depths"]["terminated_positive"]["total"] > 0
    if policy == "optimal":
        assert runs[5]["all_depths"]["reward_positive"]["total"] > 0
    # the actions are per-episode streams: the batch size changes nothing
    assert [x["steps"] for x in runs[5]["depths"]] == [x["steps"] for x in runs[64]["depths"]] == \
        [x["steps"] for x in runs[7]["depths"]]


class Misreader(Oracle):
    """Generates the real next codes exactly but reads no board at all."""

    def read_board(self, state_embeds=None, max_new_tokens=100, draft_boards=None):
        return [None] * len(state_embeds)


def test_one_step_misses_tell_reading_from_generation(world):
    model, tok = world
    starts = generated_start_states(1, seed=5)
    r = evaluate_world_model(Misreader(model, tok, starts), starts, horizon=2, seed=5, quiet=True)
    d = r.to_dict()["one_step_misses"]
    assert d["total"] == d["codes_exact"] == d["real_codes_misread"] == len(starts) - sum(s.map.terminal for s in starts)
    first = d["examples"][0]
    real = [s.map for s in starts if not s.map.terminal][0]
    assert first["episode"] == 0 and first["level"] == real.size and first["action"] in "LDRU"
    assert first["real"].startswith("| | Col 1") and first["read"] is None
    assert f"one-step board misses: {d['total']} ({d['total']} with the real next codes generated exactly" in r.format_table()


def test_seeded_sampling_is_reproducible(world):
    model, tok = world
    starts = generated_start_states(1)[:3]

    def run(seed):
        lm = LatentWorldModel(model, tok, make_sampling(1.0, seed))
        r = evaluate_world_model(lm, starts, horizon=2, seed=seed, quiet=True, temperature=1.0).to_dict()
        r.pop("speed")
        return r

    a = run(3)
    assert a == run(3) and a["sampling"] == {"greedy": False, "temperature": 1.0, "seed": 3}
    with pytest.raises(ValueError, match="temperature must be > 0"):
        make_sampling(0.0)


def test_bad_arguments(chain, tmp_path, monkeypatch, capsys):
    mbaq, gen = chain
    base = ["eval", "world-model", "--model", str(gen), "--quiet", "--device", "cpu"]
    cases = [
        (["--generated", "1", "--horizon", "0"], "--horizon must be >= 1"),
        (["--generated", "1", "--batch-size", "0"], "--batch-size must be >= 1"),
        (["--generated", "-1"], "--generated must be >= 0"),
        (["--generated", "0"], "nothing to evaluate"),
        (["--generated", "1", "--split", "maps"], "--split applies to --vsp only"),
        (["--generated", "1", "--temperature", "0"], "--temperature must be > 0"),
        (["--vsp", str(tmp_path / "nope")], "no such VSP folder"),
        (["--vsp", str(FIXTURE), "--split", "maps"], "no VSP items found"),
    ]
    for extra, message in cases:
        assert main(base + extra) == 2, extra
        assert message in capsys.readouterr().err, extra
    # a model without the generation branch
    assert main(["eval", "world-model", "--model", str(mbaq), "--generated", "1", "--quiet", "--device", "cpu"]) == 2
    assert "no generation branch" in capsys.readouterr().err
    # missing models say what to train
    assert main(["eval", "world-model", "--model", str(tmp_path / "missing"), "--generated", "1"]) == 2
    assert "no such model directory" in capsys.readouterr().err
    monkeypatch.setattr(eval_cli, "DEFAULT_MODEL", tmp_path / "checkpoints" / "default")
    assert main(["eval", "world-model", "--generated", "1"]) == 2
    err = capsys.readouterr().err
    assert "pass --model" in err and "latentum-world train all" in err and "`train lang`" in err
    with pytest.raises(SystemExit):
        build_parser().parse_args(base + ["--policy", "epsilon"])
    with pytest.raises(ValueError, match="policy must be one of"):
        evaluate_world_model(None, generated_start_states(1), policy="epsilon")
    with pytest.raises(ValueError, match="no start states"):
        evaluate_world_model(None, [])
