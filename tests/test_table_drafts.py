"""The read-outs' drafts (``latentum_world/world/table_drafts.py``): assembled from the table's token pieces, they
equal the tokenizer's ids of the player-less table, cut where placing the player first changes them."""

import dataclasses

import numpy as np
import pytest

from envs.vsp.formats import to_table
from envs.vsp.maps import LEVELS, generate_map
from latentum_world.tokenizer import build_tokenizer
from latentum_world.world.table_drafts import TableDrafts, cells_in_positions


@pytest.fixture(scope="module")
def tok():
    return build_tokenizer()


def tokenized_cut(tok, board, stop):
    full = tok.encode_text(to_table(board, player=False))
    placed = tok.encode_text(to_table(dataclasses.replace(board, player=stop), player=True))
    return full[: next(i for i, (a, b) in enumerate(zip(full, placed)) if a != b)]


def test_assembled_drafts_equal_the_tokenized_tables(tok):
    drafts = TableDrafts(tok)
    rng = np.random.default_rng(0)
    for level in LEVELS:
        for _ in range(5):
            board = generate_map(rng, level)
            assert drafts(board) == tok.encode_text(to_table(board, player=False))
            assert drafts(board, "%") == tokenized_cut(tok, board, board.goal)
            holes = drafts(board, "!")
            assert holes == (tokenized_cut(tok, board, max(board.holes)) if board.holes else drafts(board))
            assert drafts(board, "%!") == tokenized_cut(tok, board, max([board.goal, *board.holes]))
        assert drafts._pieces[level] is not None  # every level composes: no tokenizer call per board


def test_a_region_cuts_the_draft_at_its_last_possible_cell(tok):
    drafts = TableDrafts(tok)
    board = generate_map(np.random.default_rng(3), 8)
    first, last = min(board.holes), max(board.holes)
    assert first != last
    assert drafts(board, "!", frozenset({first})) == tokenized_cut(tok, board, first)
    assert len(drafts(board, "!", frozenset({first}))) < len(drafts(board, "!"))
    assert drafts(board, "!", frozenset({(-1, -1)})) == drafts(board, "!")  # no hole there: the whole board's cut


class Untidy:
    """A tokenizer whose table ids do not compose from the pieces: drafts fall back to tokenizing."""

    def __init__(self, tok):
        self.tok = tok

    def encode_text(self, text):
        return [0] + self.tok.encode_text(text)

    def convert_tokens_to_ids(self, token):
        return self.tok.convert_tokens_to_ids(token)


def test_a_tokenizer_that_does_not_compose_is_used_as_is(tok):
    untidy = Untidy(tok)
    drafts = TableDrafts(untidy)
    board = generate_map(np.random.default_rng(4), 5)
    assert drafts(board, "%") == tokenized_cut(untidy, board, board.goal)
    assert drafts._pieces[5] is None


def test_cells_in_positions_follow_the_image_layout():
    # 16 px cells in the top-left corner of 128 px images, 4 x 4 latent positions of 32 px: 2 x 2 cells each
    assert cells_in_positions(8, (0,), 128, 16, 4) == {(0, 0), (0, 1), (1, 0), (1, 1)}
    assert cells_in_positions(8, (15,), 128, 16, 4) == {(6, 6), (6, 7), (7, 6), (7, 7)}
    assert cells_in_positions(4, (5,), 128, 16, 4) == {(2, 2), (2, 3), (3, 2), (3, 3)}
    assert cells_in_positions(4, (3,), 128, 16, 4) == frozenset()  # right of a 64 px board
    # stretched over the image (cell_pixels 0): a 3 x 3 board's 42.7 px cells overlap two positions a side
    assert cells_in_positions(3, (0,), 128, 0, 4) == {(0, 0)}
    assert cells_in_positions(3, (1,), 128, 0, 4) == {(0, 0), (0, 1)}
