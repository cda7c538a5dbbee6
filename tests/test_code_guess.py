"""The transition memo that guesses imagined codes for the fused step's Jacobi rounds
(``latentum_world/world/code_guess.py``)."""

import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from envs.vsp.maps import LEVELS, generate_map
from envs.vsp.observation import model_renderer
from latentum_world.cli import main
from latentum_world.world.code_guess import MEMO_FILE, TransitionMemo, weights_fingerprint
from latentum_world.world.loading import BUNDLED, load_world_model
from latentum_world.world.memo_build import memo_is_current
from latentum_world.world.model import LatentWorldModel

V = 64


def state(seed: int) -> torch.Tensor:
    return torch.randint(V, (1, 16, 4), generator=torch.Generator().manual_seed(seed))


def test_a_remembered_change_is_guessed_and_the_rest_left_unchanged():
    memo = TransitionMemo(16, V)
    s, right = state(0), torch.tensor([2])
    assert torch.equal(memo.guess(s, right), s)  # nothing remembered: the current codes
    nxt = s.clone()
    nxt[0, 5], nxt[0, 6] = s[0, 6], s[0, 5]  # the player's two positions, next to each other
    memo.learn(s, right, nxt)
    assert len(memo) == 2  # only the positions that changed
    assert torch.equal(memo.guess(s, right), nxt)
    assert torch.equal(memo.guess(s, torch.tensor([0])), s)  # another action: another key


def test_entering_is_keyed_by_the_source_and_leaving_by_the_position_alone():
    memo = TransitionMemo(16, V)
    s, right = state(1), torch.tensor([2])
    nxt = s.clone()
    nxt[0, 5], nxt[0, 6] = state(2)[0, 0], state(2)[0, 1]  # the player leaves position 5 for 6, on its right
    memo.learn(s, right, nxt)
    assert len(memo.enter) == 1 and len(memo.leave) == 1
    other = s.clone()
    other[0, 5] = (s[0, 5] + 1) % V  # another source: position 6 is not guessed to change (nor is 5: other codes)
    assert torch.equal(memo.guess(other, right), other)
    far = s.clone()
    far[0, 15] = (s[0, 15] + 1) % V  # in neither key
    assert torch.equal(memo.guess(far, right)[0, 5:7], nxt[0, 5:7])
    turn = s.clone()
    turn[0, 9] = state(3)[0, 9]  # a change within position 9 alone: keyed without its neighbours
    memo.learn(s, torch.tensor([0]), turn)
    moved = s.clone()
    moved[0, 8] = (s[0, 8] + 1) % V  # position 9's left neighbour
    assert torch.equal(memo.guess(moved, torch.tensor([0]))[0, 9], turn[0, 9])


def test_a_remembered_key_follows_the_latest_outcome():
    memo = TransitionMemo(16, V)
    s, up = state(3), torch.tensor([3])
    nxt = s.clone()
    nxt[0, 0] = state(4)[0, 1]
    memo.learn(s, up, nxt)
    memo.learn(s, up, s)  # the same key, unchanged this time
    assert torch.equal(memo.guess(s, up), s)
    memo.learn(s, up, nxt)
    guess = memo.guess(s, up)
    assert torch.equal(guess, nxt)
    memo.learn(s, up, s, guess)  # told the guess: only its changes are looked up, with the same result
    assert torch.equal(memo.guess(s, up), s)


def test_batches_guess_row_by_row_and_the_memo_starts_afresh_when_full():
    memo = TransitionMemo(16, V, capacity=40)
    s = torch.cat([state(5), state(6)])
    actions = torch.tensor([1, 1])
    nxt = s.clone()
    nxt[0, 3] = state(7)[0, 3]
    memo.learn(s, actions, nxt)
    guess = memo.guess(s, actions)
    assert torch.equal(guess[0], nxt[0]) and torch.equal(guess[1], s[1])
    memo.learn(state(8).repeat(3, 1, 1), torch.tensor([0, 1, 2]), state(9).repeat(3, 1, 1))  # 48 keys > 40
    assert len(memo) == 48 and torch.equal(memo.guess(s, actions), s)


def test_latent_positions_must_form_a_square_grid():
    with pytest.raises(ValueError, match="square grid"):
        TransitionMemo(12, V)


def learned_memo() -> TransitionMemo:
    memo = TransitionMemo(16, V)
    s = torch.cat([state(10), state(11)])
    nxt = s.clone()
    nxt[0, 5], nxt[0, 6] = state(12)[0, 5], state(12)[0, 6]  # an entered and a left position
    nxt[1, 9] = state(13)[0, 9]
    memo.learn(s, torch.tensor([2, 0]), nxt)
    return memo


def test_a_saved_memo_loads_for_the_same_weights_only(tmp_path):
    memo, path = learned_memo(), tmp_path / MEMO_FILE
    memo.save(path, "abc", made_by="test")
    again = TransitionMemo(16, V)
    assert again.load(path, "abc") and again.enter == memo.enter and again.leave == memo.leave
    other = TransitionMemo(16, V)
    with pytest.warns(UserWarning, match="other weights"):
        assert not other.load(path, "another model")
    assert len(other) == 0
    with pytest.warns(UserWarning, match="other weights"):  # made for another grid
        assert not TransitionMemo(25, V).load(path, "abc")


def test_a_file_that_is_not_a_memo_is_a_clear_error(tmp_path):
    bad = tmp_path / "corrupt.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(ValueError, match="not a readable transition memo"):
        TransitionMemo(16, V).load(bad, "abc")
    weights = tmp_path / "weights.safetensors"
    save_file({"w": torch.zeros(3)}, str(weights))
    with pytest.raises(ValueError, match="not a transition memo"):
        TransitionMemo(16, V).load(weights, "abc")


def test_the_fingerprint_follows_every_weight():
    layer = torch.nn.Linear(3, 2)
    before = weights_fingerprint(layer)
    assert weights_fingerprint(layer) == before
    with torch.no_grad():
        layer.bias[1] += 1e-7
    assert weights_fingerprint(layer) != before


@torch.no_grad()
def test_the_bundled_memo_speeds_up_imagination_without_changing_it():
    """The bundled checkpoint's memo loads (it was made for these weights) and saves Jacobi rounds on fresh maps,
    with the same codes, rewards and terminations as an empty memo."""
    model, tok = load_world_model(None, "cpu")
    warm, cold = LatentWorldModel(model, tok), LatentWorldModel(model, tok, memo=False)
    assert len(warm.memo) > 1000 and len(cold.memo) == 0
    rng = np.random.default_rng(99)
    maps = [generate_map(rng, LEVELS[i % len(LEVELS)]) for i in range(16)]
    frames = torch.from_numpy(np.stack([model_renderer(model.config, m.size).render(m, None) for m in maps]))
    for wm in (warm, cold):
        wm.reset(frames, draft_boards=maps)
    gen = torch.Generator().manual_seed(3)
    for _ in range(4):
        actions = torch.randint(4, (16,), generator=gen)
        a, b = warm.step(actions), cold.step(actions)
        assert torch.equal(a.codes, b.codes) and torch.equal(a.reward, b.reward) and torch.equal(a.terminated, b.terminated)
    assert warm.fused.round_rows < cold.fused.round_rows
    with pytest.raises(FileNotFoundError, match="no transition memo"):
        LatentWorldModel(model, tok, memo="no/such/memo.safetensors")


def test_memo_command_writes_a_memo_that_loads(tmp_path, capsys):
    out = tmp_path / "memo.safetensors"
    assert main(["memo", "--steps", "3", "--num-envs", "4", "--out", str(out), "--quiet"]) == 0
    assert "transition memo:" in capsys.readouterr().out
    model, tok = load_world_model(None, "cpu")
    wm = LatentWorldModel(model, tok, memo=out)
    assert len(wm.memo) > 0
    assert main(["memo", "--steps", "0", "--out", str(out)]) == 2  # a clear error, the file kept
    assert out.is_file()


def test_train_all_keeps_a_current_memo_and_rebuilds_a_stale_one(tmp_path):
    assert memo_is_current(BUNDLED)  # the bundled memo was made for the bundled weights
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"):
        shutil.copy(BUNDLED / name, tmp_path / name)
    assert not memo_is_current(tmp_path)  # none
    learned_memo().save(tmp_path / MEMO_FILE, "other weights")
    assert not memo_is_current(tmp_path)


def test_the_envs_take_the_memo_option():
    import gymnasium as gym

    import latentum_world  # noqa: F401  (registers the ids)

    assert len(gym.make("LatentUM-VSP-v0").unwrapped.world.memo) > 1000  # the bundled memo by default
    assert len(gym.make("LatentUM-VSP-v0", memo=False).unwrapped.world.memo) == 0
    vec = gym.make_vec("LatentUM-VSP-v0", num_envs=2, vectorization_mode="vector_entry_point", memo=False)
    assert len(vec.unwrapped.world.memo) == 0
