import numpy as np
import pytest
import torch
from tiny import TINY

from envs.vsp.formats import to_table
from envs.vsp.maps import generate_map
from latentum_world.data.understanding import Example, UnderstandingData, collate
from latentum_world.model.config import LatentUMConfig
from latentum_world.model.language import KVCache
from latentum_world.model.probe import probe_targets
from latentum_world.model.mbaq import MBAQuantizer, VectorQuantizer, codebook_perplexity
from latentum_world.model.modeling import LatentUMModel
from latentum_world.model.vision import VisionEncoder
from latentum_world.tokenizer import LatentUMTokenizer, build_tokenizer



@pytest.fixture(scope="module")
def tok():
    return build_tokenizer()


def tiny_model(tok, **kw):
    torch.manual_seed(0)
    return LatentUMModel(LatentUMConfig(vocab_size=len(tok), **{**TINY, **kw})).eval()


def examples(n=4, seed=0, kind=None):
    data = UnderstandingData(weights={"task1": 1, "table": 1, "player": 1, "task4": 1})
    return data.batch(np.random.default_rng(seed), n, kind or "table")


def test_tokenizer_round_trip_and_save(tok, tmp_path):
    rng = np.random.default_rng(0)
    for level in range(3, 9):
        m = generate_map(rng, level)
        for text in (to_table(m), to_table(m.with_player(m.goal)), "Is there a hole in row 3, column 1?", "5,3 4,3 No", "Done!"):
            assert tok.decode_text(tok.encode_text(text)) == text
    assert len(tok.encode_text(to_table(generate_map(rng, 8)))) == 90
    tok.save_pretrained(tmp_path)
    again = LatentUMTokenizer.from_pretrained(tmp_path)
    assert again.get_vocab() == tok.get_vocab()
    with pytest.raises(ValueError, match="outside the tokenizer's vocabulary"):
        tok.encode_text("zebra")


def test_forward_shapes_and_save_load(tok, tmp_path):
    model = tiny_model(tok)
    batch = collate(tok, examples(), model.config.latent_positions)
    out = model(**{k: batch[k] for k in ("input_ids", "attention_mask", "images", "labels")})
    b, t = batch["input_ids"].shape
    assert out.logits.shape == (b, t, len(tok)) and out.hidden_states.shape == (b, t, 32) and out.loss.ndim == 0
    q = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], images=batch["images"], features="quantized")
    assert q.quantizer.indices.shape == (b, 16, 2) and q.quantizer.z_q.shape == (b, 16, 16)
    model.save_pretrained(tmp_path)
    loaded = LatentUMModel.from_pretrained(tmp_path).eval()
    for (n1, p1), (n2, p2) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert n1 == n2 and torch.equal(p1, p2)
    torch.testing.assert_close(loaded(input_ids=batch["input_ids"], images=batch["images"]).logits,
                               model(input_ids=batch["input_ids"], images=batch["images"]).logits)


def test_placeholder_count_must_match(tok):
    model = tiny_model(tok)
    batch = collate(tok, examples(2), model.config.latent_positions)
    with pytest.raises(ValueError, match="placeholders"):
        model(input_ids=batch["input_ids"], images=batch["images"][:1])
    with pytest.raises(ValueError, match="images of shape"):
        model(input_ids=batch["input_ids"], images=torch.zeros(2, 64, 64, 3, dtype=torch.uint8))


def test_incremental_decoding_equals_full_forward(tok):
    model = tiny_model(tok)
    batch = collate(tok, examples(3), model.config.latent_positions, left_pad=False)
    ids, mask = batch["input_ids"], batch["attention_mask"]
    embeds = model.extract_feature(batch["images"])
    full = model(input_ids=ids, attention_mask=mask, image_embeds=embeds).logits
    cache = KVCache(model.config.num_layers)
    x = model.embed(ids, embeds)
    parts = []
    for s, e in ((0, 20), (20, 21), (21, ids.shape[1])):
        h = model.language_model(x[:, s:e], mask[:, s:e], cache=cache)
        parts.append(model.lm_head(h))
    inc = torch.cat(parts, 1)
    real = mask.bool()
    torch.testing.assert_close(inc[real], full[real], atol=1e-5, rtol=1e-5)


def test_left_padded_generation_matches_unpadded(tok):
    model = tiny_model(tok)
    exs = examples(3, kind="player") + examples(1, kind="table")
    batch = collate(tok, exs, model.config.latent_positions, with_answers=False, left_pad=True)
    together = model.generate_text(batch["input_ids"], batch["attention_mask"], images=batch["images"], max_new_tokens=8)
    for i, ex in enumerate(exs):
        single = collate(tok, [ex], model.config.latent_positions, with_answers=False, left_pad=True)
        alone = model.generate_text(single["input_ids"], single["attention_mask"], images=single["images"], max_new_tokens=8)
        assert alone[0] == together[i]


def test_straight_through_gradient_reaches_encoder():
    cfg = LatentUMConfig(**TINY)
    q = MBAQuantizer(cfg).train()
    feats = torch.randn(3, 16, cfg.vision_feature_dim, requires_grad=True)
    out = q(feats)
    out.x_vq.sum().backward()
    assert feats.grad is not None and feats.grad.abs().sum() > 0
    assert all(p.grad is not None for p in q.down_proj.parameters())
    # z_q equals the chosen codebook entries in value
    torch.testing.assert_close(out.z_q.detach(), q.indices_to_latent(out.indices))


def test_dead_code_restart_and_usage():
    cfg = LatentUMConfig(**{**TINY, "max_restarts": 4})
    vq = VectorQuantizer(16, 8, cfg).train()
    z = torch.randn(256, 8) * 5 + 10  # far from every code: all assignments go to one or two codes
    for _ in range(600):  # 0.99**600 decays the initial uniform usage below the 3 % threshold
        vq(z)
    assert (vq.usage < cfg.dead_code_fraction / 16).sum() >= 4
    before = vq.codebook.detach().clone()
    n = vq.restart_dead_codes(torch.Generator().manual_seed(0))
    assert n == 4
    changed = (vq.codebook.detach() != before).any(1)
    assert changed.sum() == 4
    rows = vq.codebook.detach()[changed]
    assert all(any(torch.equal(r, zz) for zz in z) for r in rows)  # restarted from batch vectors
    assert torch.allclose(vq.usage[changed], torch.full((4,), 1 / 16))


def test_codebook_perplexity():
    uniform = torch.arange(64).view(-1, 1).repeat(1, 2) % 16
    assert torch.allclose(codebook_perplexity(uniform, 16), torch.tensor([16.0, 16.0]), atol=1e-3)
    constant = torch.zeros(64, 2, dtype=torch.long)
    assert torch.allclose(codebook_perplexity(constant, 16), torch.ones(2), atol=1e-3)


def test_local_vision_attention_keeps_features_local():
    """With ``vision_attention="local"`` a latent position's features depend only on its own image region."""
    config = LatentUMConfig(**{**TINY, "vision_attention": "local"})
    torch.manual_seed(0)
    vision = VisionEncoder(config).eval()
    images = torch.randint(0, 256, (1, config.image_size, config.image_size, 3), dtype=torch.uint8)
    edited = images.clone()
    region = config.patch_size * config.shuffle
    edited[0, :region, :region] = 255 - edited[0, :region, :region]  # only position 0's region
    with torch.no_grad():
        a, b = vision(images), vision(edited)  # (1, P, F)
    changed = (a - b).abs().amax(-1)[0] > 1e-6  # (P,)
    assert changed[0] and not changed[1:].any()
    with pytest.raises(ValueError, match="vision_attention"):
        LatentUMConfig(vision_attention="windowed")


def test_cell_piece_is_the_tables_piece():
    from latentum_world.data.prompts import cell_piece

    rng = np.random.default_rng(3)
    for level in (3, 8):
        m = generate_map(rng, level)
        for m in (m, m.with_player(m.goal), m.with_player(m.sorted_holes()[0]) if m.holes else m):
            rows = to_table(m).splitlines()[1:]
            for r in range(m.size):
                pieces = [" " + s.strip() + " |" for s in rows[r].split("|")[2:-1]]
                assert [cell_piece(m, (r, c)) for c in range(m.size)] == pieces


def test_fused_inference_projections_match_training_path_and_follow_weight_updates():
    """Without gradients, q/k/v and gate/up run as one matmul on a cached concatenated weight; the result
    equals the separate layers' and the cache is rebuilt after an in-place optimizer update."""
    torch.manual_seed(0)
    model = LatentUMModel(LatentUMConfig(**TINY))
    model.add_generation_branch()
    lm = model.language_model
    x = torch.randn(2, 5, TINY["hidden_size"])
    gen = torch.tensor([[False, True, True, False, True], [True, False, False, False, True]])

    def run(grad: bool) -> torch.Tensor:
        with torch.set_grad_enabled(grad):
            return lm(x, gen_mask=gen).detach()

    torch.testing.assert_close(run(False), run(True), rtol=1e-5, atol=1e-5)
    with torch.no_grad():  # an optimizer step changes weights in place
        for p in lm.parameters():
            p.add_(0.05 * torch.randn_like(p))
    torch.testing.assert_close(run(False), run(True), rtol=1e-5, atol=1e-5)
    # gen_mask=True (the imagination loop's shortcut) is the all-generation mask
    with torch.no_grad():
        torch.testing.assert_close(lm(x, gen_mask=True), lm(x, gen_mask=torch.ones(2, 5, dtype=torch.bool)))


def test_probe_targets_follow_the_image_layout():
    """Cell-aligned (16 px per cell): patch (i, j) is cell (i, j) up to the level, "outside" beyond it."""
    from envs.vsp.maps import VSPMap
    from latentum_world.model.probe import NUM_CELL_CODES, OUTSIDE, VisionProbe

    m = VSPMap(3, player=(2, 0), goal=(1, 2), holes=frozenset({(0, 0), (0, 1)}))
    cfg = LatentUMConfig(cell_pixels=16)  # 8 x 8 patches, shuffle 2
    t = probe_targets(m, cfg)  # (16 positions, 4 patches) in pixel-shuffle order
    grid = t.reshape(4, 4, 2, 2).transpose(0, 2, 1, 3).reshape(8, 8)  # back to the 8 x 8 patch grid
    np.testing.assert_array_equal(grid[:3, :3], m.to_grid())
    assert (grid[3:] == OUTSIDE).all() and (grid[:, 3:] == OUTSIDE).all()
    assert VisionProbe(cfg).num_codes == NUM_CELL_CODES + 1
    stretched = probe_targets(m, LatentUMConfig(cell_pixels=0))  # the board fills the image: no outside
    assert (stretched != OUTSIDE).all() and VisionProbe(LatentUMConfig()).num_codes == NUM_CELL_CODES


def test_on_goal_and_in_hole_confusers():
    """confusers=c: about c of the on_goal questions show the player in a hole (answer No), and of the
    in_hole questions the player on the goal; without them in-hole states are rare among on_goal questions."""
    rng = np.random.default_rng(0)
    for kind, other in (("on_goal", "in_hole"), ("in_hole", "on_goal")):
        data = UnderstandingData(cell_pixels=16, confusers=0.25)
        exs = [data.example(rng, kind) for _ in range(800)]
        confused = [ex for ex in exs if getattr(ex.map, other)]
        assert 0.18 < len(confused) / len(exs) < 0.32
        assert all(ex.answer.strip() == "No" for ex in confused)
        assert 0.45 < np.mean([ex.answer.strip() == "Yes" for ex in exs]) < 0.55
    plain = [UnderstandingData(cell_pixels=16).example(rng, "on_goal") for _ in range(800)]
    assert np.mean([ex.map.in_hole for ex in plain]) < 0.12  # without confusers holes come from random_state only
    with pytest.raises(ValueError, match="confusers"):
        UnderstandingData(confusers=0.7)


def test_near_misses_put_the_player_on_ice_beside_the_asked_about_cell():
    """near_misses=n: about n of the in_hole questions show the player on ice next to a hole (answer No),
    of the on_goal questions next to the goal; the Yes half is untouched."""
    for kind in ("in_hole", "on_goal"):

        def beside(m):
            r, c = m.player
            near = {(r + 1, c), (r - 1, c), (r, c + 1), (r, c - 1)}
            return not m.in_hole and not m.on_goal and bool(near & (m.holes if kind == "in_hole" else {m.goal}))

        shares = {}
        for near_misses in (0.0, 0.2):
            rng = np.random.default_rng(1)
            exs = [UnderstandingData(cell_pixels=16, confusers=0.1, near_misses=near_misses).example(rng, kind) for _ in range(800)]
            assert all(ex.answer.strip() == "No" for ex in exs if beside(ex.map))
            assert 0.45 < np.mean([ex.answer.strip() == "Yes" for ex in exs]) < 0.55
            shares[near_misses] = np.mean([beside(ex.map) for ex in exs])
        # random states already stand beside a hole/goal now and then; near misses add about 0.2 x (1 - that)
        assert 0.08 < shares[0.2] - shares[0.0] < 0.25, shares
    with pytest.raises(ValueError, match="near_misses"):
        UnderstandingData(confusers=0.3, near_misses=0.3)


def test_interpreted_flag_answers_name_the_players_cell_then_the_verdict(tok):
    """``flag_answers="interpreted"``: ``3,2 ! | Yes``, the player's ``r,c`` token and table piece (two
    tokens, the same for both questions) then the verdict, which the piece decides; "direct" keeps one token."""
    from latentum_world.data.prompts import cell_piece, coordinate

    rng = np.random.default_rng(2)
    data = UnderstandingData(cell_pixels=16, confusers=0.25, near_misses=0.1, flag_answers="interpreted")
    for kind in ("on_goal", "in_hole"):
        for ex in (data.example(rng, kind) for _ in range(200)):
            m, piece = ex.map, {"on_goal": " % |", "in_hole": " ! |"}[kind]
            ids = tok.encode_text(ex.answer)
            assert len(ids) == 3 and tok.convert_ids_to_tokens(ids)[:2] == [coordinate(m.player), cell_piece(m, m.player)]
            assert ex.answer.endswith("Yes") == (cell_piece(m, m.player) == piece) == getattr(m, kind)
    assert UnderstandingData(cell_pixels=16).example(rng, "in_hole").answer in ("Yes", "No")
    with pytest.raises(ValueError, match="flag_answers"):
        UnderstandingData(flag_answers="verbose")


def test_playerless_examples_show_and_describe_the_board_without_the_player(tok):
    """``playerless``: the frame is the board with no player drawn (the same whatever the player's cell), the
    table names no player, the flag answers say No (interpreted: the bare goal cell, two tokens as usual), the
    probe sees no player, and other kinds are untouched."""
    from envs.vsp.formats import VSPFormatError, parse_table
    from envs.vsp.observation import observation_renderer
    from latentum_world.data.prompts import coordinate
    from latentum_world.data.understanding import probe_batch
    from latentum_world.model.config import LatentUMConfig

    rng = np.random.default_rng(4)
    data = UnderstandingData(cell_pixels=16, playerless=1.0, flag_answers="interpreted")
    for kind in ("table", "on_goal", "in_hole"):
        for ex in (data.example(rng, kind) for _ in range(30)):
            m = ex.map
            assert not ex.player_drawn
            renderer = observation_renderer(m.size, 128, cell_pixels=16)
            moved = m.with_player(next((r, c) for r in range(m.size) for c in range(m.size) if (r, c) != m.player))
            assert np.array_equal(ex.image, renderer.render(moved, player=False))  # no trace of the player
            assert not np.array_equal(ex.image, renderer.render(m))
            if kind == "table":
                assert not set(ex.answer) & set("@%!") and ex.answer.count("*") == 1
                with pytest.raises((VSPFormatError, ValueError)):
                    parse_table(ex.answer)  # not a board a rollout can be in
            else:
                assert ex.answer == f"{coordinate(m.goal)} * | No" and len(tok.encode_text(ex.answer)) == 3
            cells = probe_batch([ex], LatentUMConfig(cell_pixels=16))["probe_cells"]
            assert int(cells.max()) in (1, 2, 6) and not bool(((cells >= 3) & (cells <= 5)).any())  # no player codes
    assert data.example(rng, "player").player_drawn  # only table / on_goal / in_hole questions lose the player
    assert UnderstandingData(cell_pixels=16, playerless=1.0).example(rng, "on_goal").answer == "No"
    with pytest.raises(ValueError, match="playerless"):
        UnderstandingData(playerless=1.5)


def test_coordinate_listing_makes_every_lookup_a_copy():
    """task1/2/4 answers reason over the coordinate listing: two tokens per cell (``r,c`` and the piece),
    and the piece each final line quotes is the one that follows the same ``r,c`` token in the listing."""
    from latentum_world.data import prompts
    from latentum_world.tokenizer import build_tokenizer

    tok = build_tokenizer()
    rng = np.random.default_rng(5)
    coords = set(tok.convert_tokens_to_ids([f"{r},{c}" for r in range(1, 9) for c in range(1, 9)]))
    for level in (3, 5, 8):
        m = generate_map(rng, level)
        ids = tok.encode_text(prompts.coordinate_listing(m))
        assert len(ids) == 2 * level * level + level  # r,c + piece per cell, a newline per row
        listing = {t: ids[i + 1] for i, t in enumerate(ids) if t in coords}  # r,c token -> the piece after it
        assert len(listing) == level * level
        for r in range(level):
            for c in range(level):
                cell = (r, c)
                _, answer = prompts.hole_question(m, cell)
                final = tok.encode_text(prompts.final_answer(answer))
                coord = tok.convert_tokens_to_ids(f"{r + 1},{c + 1}")
                assert final[0] == coord and final[1] == listing[coord] == tok.encode_text(prompts.cell_piece(m, cell))[0]
                assert prompts.final_answer(answer).endswith("Yes" if cell in m.holes else "No")
        board = m.with_player((0, 0)) if m.goal != (0, 0) else m
        _, answer = prompts.relation_question(board)
        gr, gc = board.goal
        assert answer.splitlines()[-3].startswith("player:1,1 goal:")
        assert answer.splitlines()[-2] == f"column 1 {gc + 1} row 1 {gr + 1}"
    m = generate_map(rng, 5)
    moves = [2, 2, 1]
    _, answer = prompts.safety_question(m, moves)
    cells, safe = prompts.safety_trace(m, moves)
    trace = tok.convert_ids_to_tokens(tok.encode_text(prompts.final_answer(answer)))
    assert trace[0] == f"{m.player[0] + 1},{m.player[1] + 1}" and trace[-1] == " " + prompts.yes_no(safe)
    # each step: its number, its action letter, then the cell's r,c token and piece
    steps = [trace[2 + 4 * k: 6 + 4 * k] for k in range(len(cells))]
    assert [s[:3] for s in steps] == [[str(k + 1), "LDRU"[a], f"{r + 1},{c + 1}"] for k, (a, (r, c)) in enumerate(zip(moves, cells))]
    assert [s[3] for s in steps] == [prompts.cell_piece(m, cell) for cell in cells]


def test_task3_answer_summarises_image_and_candidates(tok):
    """task3's reasoning: the image's size / player / goal, each candidate's, then the letter of the one
    that agrees (and in the benchmark's layout only one does)."""
    from envs.vsp.task_texts import task3_question
    from envs.vsp.tasks import task3_candidates
    from latentum_world.data import prompts

    rng = np.random.default_rng(11)
    for level in (3, 4, 8):
        candidates, correct, _ = task3_candidates(rng, level, 0)
        question, answer = prompts.matching_question(task3_question(candidates), correct, candidates)
        lines = answer.splitlines()
        assert question.startswith("Which map matches the image?\n(A)\n")
        assert lines[0] == "image" + prompts.board_summary(candidates[correct])
        assert lines[1:5] == [f"({'ABCD'[k]}){prompts.board_summary(c)}" for k, c in enumerate(candidates)]
        agree = [k for k in range(4) if lines[1 + k][3:] == lines[0][5:]]
        # the right one agrees; a rival agrees only when it has the same size and the same player/goal rows
        assert correct in agree and lines[-1] == "ABCD"[correct]
        assert all(candidates[k].size == level for k in agree)
    gold = candidates[correct]
    (pr, _), (gr, _) = gold.player, gold.goal
    assert prompts.board_summary(gold) == f" Col {gold.size} || Row {pr + 1} | @ || Row {gr + 1} | * |"
    # every summary token is a token of the board's own table (copied, never counted)
    table_ids = set(tok.encode_text(to_table(gold)))
    assert set(tok.encode_text(prompts.board_summary(gold))) <= table_ids
    assert len(tok.encode_text(prompts.board_summary(gold))) == 5
    assert prompts.matching_question("q", 2)[1] == "C"  # no boards known: just the letter


def test_training_batches_mix_kinds_and_levels():
    """task3 batches hold task3 only (its prompts are ~300 tokens); every other batch mixes kinds and
    levels (batches of one length group starved the coordinate-listing kinds)."""
    data = UnderstandingData()
    kinds, mixed_levels, mixed_kinds, task3_batches = [], 0, 0, 0
    for step in range(80):
        batch = data.batch(np.random.default_rng([0, step]), 8)
        tasks = {ex.task for ex in batch}
        if "task3" in tasks:
            assert tasks == {"task3"}
            task3_batches += 1
        else:
            mixed_kinds += len(tasks) > 2
        mixed_levels += len({ex.map.size for ex in batch}) > 1
        kinds += [ex.task for ex in batch]
    share = {k: kinds.count(k) / len(kinds) for k in data.weights}
    assert all(share[k] > 0 for k in data.weights)
    assert abs(share["table"] - data.weights["table"] / sum(data.weights.values())) < 0.08
    assert 2 <= task3_batches <= 20  # about 10 % of the batches
    assert mixed_kinds >= 0.9 * (80 - task3_batches) and mixed_levels > 70


