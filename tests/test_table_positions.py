"""Table / row embeddings of VSP text tables (latentum_world/model/table_positions.py)."""

import numpy as np
import pytest
import torch
from tiny import TINY

from envs.vsp.formats import to_table
from envs.vsp.maps import generate_map
from envs.vsp.task_texts import task3_question
from envs.vsp.tasks import task3_candidates
from latentum_world.data.understanding import UnderstandingData, collate
from latentum_world.model.config import LatentUMConfig
from latentum_world.model.modeling import LatentUMModel
from latentum_world.model.table_positions import TableSyntax
from latentum_world.tokenizer import build_tokenizer, vocabulary


@pytest.fixture(scope="module")
def tok():
    return build_tokenizer()


@pytest.fixture(scope="module")
def syntax():
    return TableSyntax(vocabulary())


def coordinates_of(tok, syntax, text):
    ids = torch.tensor([tok.encode_text(text)])
    table, row = syntax.coordinates(ids)
    return tok.convert_ids_to_tokens(ids[0].tolist()), table[0].tolist(), row[0].tolist()


def test_every_player_of_a_task3_question_knows_its_table_and_row(tok, syntax):
    rng = np.random.default_rng(3)
    for _ in range(5):
        candidates, _, _ = task3_candidates(rng, int(rng.integers(3, 9)), 0)
        tokens, table, row = coordinates_of(tok, syntax, "Which map matches the image?" + task3_question(candidates))
        players = [(t, r) for tk, t, r in zip(tokens, table, row) if tk.strip(" |") in ("@", "%")]
        assert players == [(k + 1, m.player[0] + 1) for k, m in enumerate(candidates)]
        # headers and newlines carry no row; words and letters outside the tables carry nothing
        for tk, t, r in zip(tokens, table, row):
            if tk in ("| |", "\n") or tk.startswith(" Col"):
                assert r == 0
            if tk in ("(", ")", "A", "B", "C", "D", "Which", " map"):
                assert (t, r) == (0, 0)


def test_text_without_tables_gets_no_positions(tok, syntax):
    _, table, row = coordinates_of(tok, syntax, "Is there a hole in row 3, column 1? 2,3 # | Yes")
    assert set(table) == {0} and set(row) == {0}
    # row markers outside a table (task3's summaries) are not table rows
    _, table, row = coordinates_of(tok, syntax, "image Col 5 || Row 3 | @ || Row 1 | * |")
    assert set(table) == {0} and set(row) == {0}


def test_coordinates_are_causal(tok, syntax):
    m = generate_map(np.random.default_rng(0), 6)
    ids = torch.tensor([tok.encode_text("Describe the map as a table\n" + to_table(m) + "\n\nDone!")])
    table, row = syntax.coordinates(ids)
    for t in range(1, ids.shape[1] + 1):
        pt, pr = syntax.coordinates(ids[:, :t])
        assert torch.equal(pt, table[:, :t]) and torch.equal(pr, row[:, :t])
    assert table.max() == 1 and row.max() == 6


def test_table_positions_change_only_table_tokens_and_decode_like_a_full_forward(tok):
    torch.manual_seed(0)
    model = LatentUMModel(LatentUMConfig(vocab_size=len(tok), table_positions=True, **TINY)).eval()
    assert not model.table_positions.table_embed.weight[0].any() and not model.table_positions.row_embed.weight[0].any()
    plain = tok.encode_text("Is there a hole in row 3, column 1?")
    ids = torch.tensor([plain])
    assert torch.equal(model.embed_text(ids), model.language_model.embed_tokens(ids))
    table_ids = torch.tensor([tok.encode_text(to_table(generate_map(np.random.default_rng(1), 4)))])
    assert not torch.equal(model.embed_text(table_ids), model.language_model.embed_tokens(table_ids))
    # embedding a continuation with its context equals slicing the embedding of the whole
    whole = model.embed_text(table_ids)
    assert torch.equal(model.embed_text(table_ids[:, 20:], context=table_ids[:, :20]), whole[:, 20:])
    # greedy token-by-token answers (table positions from the sequence so far) = argmax of one full forward
    data = UnderstandingData(weights={"table": 1})
    exs = data.batch(np.random.default_rng(0), 2, "table")
    batch = collate(tok, exs, model.config.latent_positions, with_answers=False, left_pad=True)
    answers = model.generate_text(batch["input_ids"], batch["attention_mask"], images=batch["images"], max_new_tokens=12)
    special = {model.config.img_start_id, model.config.img_end_id, model.config.img_context_id}
    for i, ans in enumerate(answers):
        ans = ans[: next((k for k, a in enumerate(ans) if a in special), len(ans))]  # an untrained model may write image tokens
        assert len(ans) >= 4
        single = collate(tok, [exs[i]], model.config.latent_positions, with_answers=False)
        full = torch.cat([single["input_ids"], torch.tensor([ans])], dim=1)
        out = model(input_ids=full, attention_mask=torch.ones_like(full), images=single["images"])
        n = single["input_ids"].shape[1]
        assert out.logits[0, n - 1 : n - 1 + len(ans)].argmax(-1).tolist() == ans


def test_added_table_positions_start_as_a_no_op_and_round_trip(tok, tmp_path):
    torch.manual_seed(0)
    model = LatentUMModel(LatentUMConfig(vocab_size=len(tok), **TINY)).eval()
    assert model.table_positions is None
    ids = torch.tensor([tok.encode_text(to_table(generate_map(np.random.default_rng(2), 5)))])
    before = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
    model.add_table_positions()
    assert torch.equal(model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits, before)
    with pytest.raises(RuntimeError, match="already has table positions"):
        model.add_table_positions()
    with torch.no_grad():
        model.table_positions.row_embed.weight[1:].normal_()
    model.save_pretrained(tmp_path)
    loaded = LatentUMModel.from_pretrained(tmp_path).eval()
    assert loaded.config.table_positions
    torch.testing.assert_close(loaded(input_ids=ids, attention_mask=torch.ones_like(ids)).logits,
                               model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits)
