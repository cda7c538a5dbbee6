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
