"""The transition memo that guesses imagined codes for the fused step's Jacobi rounds
(``latentum_world/world/code_guess.py``)."""

import pytest
import torch

from latentum_world.world.code_guess import TransitionMemo

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
    assert len(memo.table) == 2  # only the positions that changed
    assert torch.equal(memo.guess(s, right), nxt)
    assert torch.equal(memo.guess(s, torch.tensor([0])), s)  # another action: another key


def test_the_key_holds_the_neighbour_the_player_comes_from():
    memo = TransitionMemo(16, V)
    s, right = state(1), torch.tensor([2])
    nxt = s.clone()
    nxt[0, 6] = state(2)[0, 0]
    memo.learn(s, right, nxt)
    other = s.clone()
    other[0, 5] = (s[0, 5] + 1) % V  # position 6's left neighbour, where a move right comes from
    assert torch.equal(memo.guess(other, right)[0, 6], s[0, 6])  # not this key
    far = s.clone()
    far[0, 15] = (s[0, 15] + 1) % V  # not part of position 6's key
    assert torch.equal(memo.guess(far, right)[0, 6], nxt[0, 6])


def test_a_remembered_key_follows_the_latest_outcome():
    memo = TransitionMemo(16, V)
    s, up = state(3), torch.tensor([3])
    nxt = s.clone()
    nxt[0, 0] = state(4)[0, 1]
    memo.learn(s, up, nxt)
    memo.learn(s, up, s)  # the same key, unchanged this time
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
    assert len(memo.table) == 48 and torch.equal(memo.guess(s, actions), s)


def test_latent_positions_must_form_a_square_grid():
    with pytest.raises(ValueError, match="square grid"):
        TransitionMemo(12, V)
